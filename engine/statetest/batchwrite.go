package statetest

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// testBatchWrite checks that a BatchWriter's batch does exactly what its writes' single
// calls (Write.Apply) do, one after the other: the same reports, write by write — values,
// superseded writes, errors — and the same values, versions and buckets left behind. The
// batch writes one twin of each entity, the single calls the other.
func testBatchWrite(e *env) {
	bw, ok := e.st.(engine.BatchWriter)
	if !ok {
		e.Skipf("%T does not implement engine.BatchWriter: the engine writes an Ingest's values one by one", e.st)
	}
	const g = time.Minute
	scalar := e.feature("bw_scalar", engine.PrimitiveString, staleness(2*time.Hour), keepPrevious(2, time.Hour))
	float := e.feature("bw_float", engine.PrimitiveFloat)
	integer := e.feature("bw_int", engine.PrimitiveInt)
	list := e.feature("bw_list", engine.PrimitiveIntList)
	win := e.feature("bw_window", engine.PrimitiveFloat, windowed(g, 10*time.Minute))
	t := func(m int) time.Time { return e.now.Add(time.Duration(-m) * time.Minute) }

	type step struct {
		what   string
		op     engine.Op
		f      *engine.Feature
		entity string
		v      engine.Value
		ts     time.Time
	}
	steps := []step{
		{"set", engine.OpSet, scalar, "a", engine.String("A"), t(30)},
		{"later set", engine.OpSet, scalar, "a", engine.String("B"), t(10)},
		{"late set, kept", engine.OpSet, scalar, "a", engine.String("late"), t(20)},
		{"update", engine.OpUpdate, scalar, "a", engine.String("C"), t(5)},
		{"late set, dropped", engine.OpSet, scalar, "a", engine.String("old"), t(100)},
		{"set of the wrong type", engine.OpSet, scalar, "a", engine.Int(1), t(1)},
		{"other entity", engine.OpSet, scalar, "b", engine.String("X"), t(1)},
		{"incr", engine.OpIncr, float, "a", engine.Float(1.5), t(3)},
		{"incr, earlier", engine.OpIncr, float, "a", engine.Float(2), t(4)},
		{"incr by infinity", engine.OpIncr, float, "a", engine.Float(math.Inf(1)), t(2)},
		{"incr to the max", engine.OpIncr, integer, "a", engine.Int(math.MaxInt64 - 1), t(2)},
		{"incr past the max", engine.OpIncr, integer, "a", engine.Int(2), t(1)},
		{"incr after the overflow", engine.OpIncr, integer, "a", engine.Int(1), t(1)},
		{"incr of a list", engine.OpIncr, list, "a", engine.IntList([]int64{1}), t(1)},
		{"append", engine.OpAppend, list, "a", engine.IntList([]int64{1, 2}), t(3)},
		{"update of a list", engine.OpUpdate, list, "a", engine.IntList([]int64{3}), t(2)},
		{"append to a scalar", engine.OpAppend, scalar, "b", engine.String("Y"), t(1)},
		{"window add", engine.OpUpdate, win, "a", engine.Float(3), t(0)},
		{"window add, earlier bucket", engine.OpUpdate, win, "a", engine.Float(-4), t(2)},
		{"window add, same bucket", engine.OpUpdate, win, "a", engine.Float(0.5), t(2).Add(time.Second)},
		{"window add, expired bucket", engine.OpUpdate, win, "a", engine.Float(1), t(1000)},
		{"window add to infinity", engine.OpUpdate, win, "a", engine.Float(math.MaxFloat64), t(0)},
		{"window add past infinity", engine.OpUpdate, win, "a", engine.Float(math.MaxFloat64), t(0)},
		{"window add of a string", engine.OpUpdate, win, "a", engine.String("x"), t(0)},
		{"set of a windowed feature", engine.OpSet, win, "b", engine.Float(2), t(1)},
	}
	twin := func(side string) []engine.Write {
		ws := make([]engine.Write, len(steps))
		for i, s := range steps {
			ws[i] = engine.Write{Op: s.op, Feature: s.f, Keys: e.keys(s.f, side+s.entity), Value: s.v, Timestamp: s.ts}
		}
		return ws
	}
	batch, single := twin("batch-"), twin("single-")
	got := bw.WriteBatch(e.ctx, batch)
	if len(got) != len(batch) {
		e.Fatalf("WriteBatch of %d writes returned %d reports", len(batch), len(got))
	}
	for i, s := range steps {
		want := single[i].Apply(e.ctx, e.st)
		if !sameWrite(got[i], want) {
			e.Errorf("%s: WriteBatch's write %d = %s,\n  single call = %s", s.what, i, fmtWrite(got[i]), fmtWrite(want))
		}
	}
	// What the two left behind.
	for _, entity := range []string{"a", "b"} {
		for _, f := range []*engine.Feature{scalar, float, integer, list} {
			for version := range 3 {
				if version > 0 && f.KeepPrevious == nil {
					break
				}
				b := e.single(engine.Read{Feature: f, Keys: e.keys(f, "batch-"+entity), Version: version})
				s := e.single(engine.Read{Feature: f, Keys: e.keys(f, "single-"+entity), Version: version})
				if !sameRead(b, s) {
					e.Errorf("%s %s @-%d after the batch = %s,\n  after the single calls = %s", f.FQN, entity, version, fmtRead(b), fmtRead(s))
				}
			}
		}
		span := engine.WindowSpan{First: engine.BucketID(t(10), g), Last: engine.BucketID(e.now, g)}
		bb, err := e.st.WindowBuckets(e.ctx, win, e.keys(win, "batch-"+entity), span)
		if err != nil {
			e.Fatalf("WindowBuckets: %v", err)
		}
		sb, err := e.st.WindowBuckets(e.ctx, win, e.keys(win, "single-"+entity), span)
		if err != nil {
			e.Fatalf("WindowBuckets: %v", err)
		}
		if b, s := engine.MergeBuckets(bb, span), engine.MergeBuckets(sb, span); b != s || len(bb) != len(sb) {
			e.Errorf("window %s after the batch: %d buckets, %+v; after the single calls: %d buckets, %+v", entity, len(bb), b, len(sb), s)
		}
	}

	if out := bw.WriteBatch(e.ctx, nil); len(out) != 0 {
		e.Errorf("WriteBatch(nil) = %d reports, want none", len(out))
	}
	// A batch under an ended context fails every write, and writes nothing.
	ended, cancel := context.WithCancel(e.ctx)
	cancel()
	w := engine.Write{Op: engine.OpSet, Feature: scalar, Keys: e.keys(scalar, "ended"), Value: engine.String("no"), Timestamp: t(0)}
	for i, r := range bw.WriteBatch(ended, []engine.Write{w, w}) {
		if r.Err == nil {
			e.Errorf("WriteBatch under an ended context: write %d reports no error", i)
		}
	}
	e.wantAbsent(scalar, w.Keys, 0)
}

// sameWrite compares two reports exactly; errors by their text, since the batch must report
// what the single call would have.
func sameWrite(a, b engine.WriteReport) bool {
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
		return false
	}
	x, y := a.Written, b.Written
	return x.Value.Equal(y.Value) && x.Value.Kind() == y.Value.Kind() && x.Superseded == y.Superseded &&
		x.Kept == y.Kept && x.Current.Equal(y.Current)
}

func fmtWrite(r engine.WriteReport) string {
	w := r.Written
	return fmt.Sprintf("{%v (%s), superseded %v by %v, kept %v, err %v}", w.Value, w.Value.Kind(), w.Superseded, w.Current, w.Kept, r.Err)
}
