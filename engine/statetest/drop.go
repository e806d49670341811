package statetest

import (
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// testDrop: Drop removes a feature's values, previous versions and buckets for every
// entity, touches no other feature (not even one whose FQN extends it), and leaves the
// feature writable from empty.
func testDrop(e *env) {
	ts := e.now.Add(-time.Second)
	f := e.feature("drop", engine.PrimitiveInt, keepPrevious(2, time.Hour))
	other := &engine.Feature{}
	*other = *f
	other.FQN = f.FQN + "x" // a prefix match would remove it too
	k1, k2 := e.keys(f, "a"), e.keys(f, "b")
	e.set(f, k1, engine.Int(1), ts)
	e.set(f, k1, engine.Int(2), ts)
	e.set(f, k2, engine.Int(3), ts)
	e.set(other, k1, engine.Int(4), ts)

	w := e.feature("drop_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour))
	e.windowAdd(w, k1, 5, ts)
	e.windowAdd(w, k2, 6, ts.Add(-2*time.Minute))

	for _, g := range []*engine.Feature{f, w} {
		if err := e.st.Drop(e.ctx, g); err != nil {
			e.Fatalf("Drop(%s): %v", g.FQN, err)
		}
	}
	e.wantAbsent(f, k1, 0)
	e.wantAbsent(f, k1, 1)
	e.wantAbsent(f, k2, 0)
	e.wantGet(other, k1, 0, engine.Int(4), ts)
	span := engine.AliveSpan(e.now, w.Staleness, w.Granularity)
	for _, k := range []string{k1, k2} {
		if bs := e.buckets(w, k, span); len(bs) != 0 {
			e.Errorf("buckets of %q after Drop: %+v", k, bs)
		}
	}
	if dead, err := e.st.DeadWindowBuckets(e.ctx, w, span); err != nil || len(dead) != 0 {
		e.Errorf("DeadWindowBuckets after Drop = %+v, %v; want none", dead, err)
	}

	// The feature starts again from empty: no previous version comes back.
	e.set(f, k1, engine.Int(7), ts)
	e.wantGet(f, k1, 0, engine.Int(7), ts)
	e.wantAbsent(f, k1, 1)

	// Dropping what has nothing stored succeeds.
	if err := e.st.Drop(e.ctx, e.feature("drop_empty", engine.PrimitiveString)); err != nil {
		e.Errorf("Drop of a feature with nothing stored: %v", err)
	}
}
