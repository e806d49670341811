package statetest

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// minutesAgo returns a timestamp m minutes before the subtest started.
func (e *env) minutesAgo(m int) time.Time { return e.now.Add(time.Duration(-m) * time.Minute) }

func testLateSetSuperseded(e *env) {
	cases := []struct {
		name string
		p    engine.Primitive
		cur  engine.Value
		late engine.Value
	}{
		{"int", engine.PrimitiveInt, engine.Int(500), engine.Int(600)},
		{"string", engine.PrimitiveString, engine.String("now"), engine.String("yesterday")},
		{"list", engine.PrimitiveIntList, engine.IntList([]int64{1}), engine.IntList([]int64{2, 3})},
	}
	for _, c := range cases {
		f := e.feature("late_set_"+c.name, c.p)
		k := e.keys(f, "a")
		e.set(f, k, c.cur, e.minutesAgo(1))
		w := e.setW(f, k, c.late, e.minutesAgo(30))
		e.wantSuperseded(c.name+": late Set", w, e.minutesAgo(1), false)
		e.wantGet(f, k, 0, c.cur, e.minutesAgo(1))
		e.wantAbsent(f, k, 1)
		// One nanosecond later than the current value is enough to replace it.
		later := e.minutesAgo(1).Add(time.Nanosecond)
		e.set(f, k, c.late, later)
		e.wantGet(f, k, 0, c.late, later)
	}
}

func testLateSetAmongVersions(e *env) {
	f := e.feature("late_versions", engine.PrimitiveString, staleness(2*time.Hour), keepPrevious(3, time.Hour))
	k := e.keys(f, "a")
	t := e.minutesAgo
	e.set(f, k, engine.String("A"), t(10))
	e.set(f, k, engine.String("C"), t(6))
	e.set(f, k, engine.String("D"), t(4))
	// B, written late, lands between C and A.
	e.wantSuperseded("B at -8m", e.setW(f, k, engine.String("B"), t(8)), t(4), true)
	e.wantGet(f, k, 0, engine.String("D"), t(4))
	e.wantGet(f, k, 1, engine.String("C"), t(6))
	e.wantGet(f, k, 2, engine.String("B"), t(8))
	e.wantGet(f, k, 3, engine.String("A"), t(10))
	// X is older than all three versions kept: dropped, nothing moves.
	e.wantSuperseded("X at -12m", e.setW(f, k, engine.String("X"), t(12)), t(4), false)
	e.wantGet(f, k, 1, engine.String("C"), t(6))
	e.wantGet(f, k, 3, engine.String("A"), t(10))
	// Y lands first among the previous versions; the oldest (A) falls out.
	e.wantSuperseded("Y at -5m", e.setW(f, k, engine.String("Y"), t(5)), t(4), true)
	e.wantGet(f, k, 0, engine.String("D"), t(4))
	e.wantGet(f, k, 1, engine.String("Y"), t(5))
	e.wantGet(f, k, 2, engine.String("C"), t(6))
	e.wantGet(f, k, 3, engine.String("B"), t(8))
	// A current value written later still pushes the late ones down in order.
	e.set(f, k, engine.String("E"), t(2))
	e.wantGet(f, k, 0, engine.String("E"), t(2))
	e.wantGet(f, k, 1, engine.String("D"), t(4))
	e.wantGet(f, k, 2, engine.String("Y"), t(5))
	e.wantGet(f, k, 3, engine.String("C"), t(6))

	// Late writes into a history that is not full yet, in reverse order.
	g := e.feature("late_versions_growing", engine.PrimitiveInt, keepPrevious(3, time.Hour))
	e.set(g, k, engine.Int(0), t(1))
	for i := 2; i <= 4; i++ {
		e.wantSuperseded("growing "+strconv.Itoa(i), e.setW(g, k, engine.Int(int64(i)), t(i)), t(1), true)
	}
	for v := 1; v <= 3; v++ {
		e.wantGet(g, k, v, engine.Int(int64(v+1)), t(v+1))
	}
}

func testLateSetDropped(e *env) {
	k := "a"
	t := e.minutesAgo
	// No previous versions kept: a late write is dropped.
	n := e.feature("late_dropped_none", engine.PrimitiveInt)
	e.set(n, k, engine.Int(1), t(1))
	e.wantSuperseded("no versions", e.setW(n, k, engine.Int(2), t(2)), t(1), false)
	e.wantGet(n, k, 0, engine.Int(1), t(1))
	e.wantAbsent(n, k, 1)

	// Beyond Versions: one version kept, and it is newer than the late write.
	one := e.feature("late_dropped_beyond", engine.PrimitiveInt, keepPrevious(1, time.Hour))
	e.set(one, k, engine.Int(1), t(3))
	e.set(one, k, engine.Int(2), t(1))
	e.wantSuperseded("beyond versions", e.setW(one, k, engine.Int(9), t(5)), t(1), false)
	e.wantGet(one, k, 0, engine.Int(2), t(1))
	e.wantGet(one, k, 1, engine.Int(1), t(3))

	// Already KeepPrevious.Over old: it could never be served, so it is dropped.
	over := e.feature("late_dropped_over", engine.PrimitiveInt, staleness(2*time.Hour), keepPrevious(2, 30*time.Minute))
	e.set(over, k, engine.Int(1), t(10))
	e.wantSuperseded("past over", e.setW(over, k, engine.Int(2), t(40)), t(10), false)
	e.wantGet(over, k, 0, engine.Int(1), t(10))
	e.wantAbsent(over, k, 1)
}

func testEqualTimestamps(e *env) {
	k := "a"
	t := e.minutesAgo
	// Same timestamp as the current value: the later write wins, the earlier becomes @-1.
	f := e.feature("equal_ts", engine.PrimitiveString, keepPrevious(3, time.Hour))
	e.set(f, k, engine.String("first"), t(1))
	e.set(f, k, engine.String("second"), t(1))
	e.wantGet(f, k, 0, engine.String("second"), t(1))
	e.wantGet(f, k, 1, engine.String("first"), t(1))

	// Same timestamp as a previous version: the later write is the newer of the two.
	g := e.feature("equal_ts_previous", engine.PrimitiveString, keepPrevious(3, time.Hour))
	e.set(g, k, engine.String("old"), t(5))
	e.set(g, k, engine.String("cur"), t(1))
	e.wantSuperseded("equal to @-1", e.setW(g, k, engine.String("late"), t(5)), t(1), true)
	e.wantGet(g, k, 0, engine.String("cur"), t(1))
	e.wantGet(g, k, 1, engine.String("late"), t(5))
	e.wantGet(g, k, 2, engine.String("old"), t(5))

	// Without previous versions too.
	n := e.feature("equal_ts_none", engine.PrimitiveInt)
	e.set(n, k, engine.Int(1), t(1))
	e.set(n, k, engine.Int(2), t(1))
	e.wantGet(n, k, 0, engine.Int(2), t(1))
}

func testExpiredCurrent(e *env) {
	// A current value past its expiry (staleness here) counts as absent: an even older write
	// is applied (and is not served either), whether or not the State has forgotten it yet.
	k := "a"
	f := e.feature("expired_current", engine.PrimitiveInt) // staleness 1h
	e.set(f, k, engine.Int(1), e.now.Add(-2*time.Hour))
	e.set(f, k, engine.Int(2), e.now.Add(-3*time.Hour))
	e.wantAbsent(f, k, 0)
	// With KeepPrevious the current value lives for max(staleness, Over).
	g := e.feature("expired_current_versions", engine.PrimitiveInt, keepPrevious(2, 90*time.Minute))
	e.set(g, k, engine.Int(1), e.now.Add(-100*time.Minute))
	e.set(g, k, engine.Int(2), e.now.Add(-110*time.Minute))
	e.wantAbsent(g, k, 1)
	h := e.feature("retained_current_versions", engine.PrimitiveInt, keepPrevious(2, 90*time.Minute))
	e.set(h, k, engine.Int(1), e.now.Add(-70*time.Minute))
	e.wantSuperseded("late under a retained current value", e.setW(h, k, engine.Int(2), e.now.Add(-80*time.Minute)), e.now.Add(-70*time.Minute), true)
	e.wantGet(h, k, 1, engine.Int(2), e.now.Add(-80*time.Minute))
}

func testLateUpdate(e *env) {
	k := "a"
	t := e.minutesAgo
	// Update of a scalar is a Set: ordered by event time.
	s := e.feature("late_update_scalar", engine.PrimitiveFloat, keepPrevious(1, time.Hour))
	if w, err := e.st.Update(e.ctx, s, k, engine.Float(1.5), t(1)); err != nil || w.Superseded {
		e.Fatalf("Update = %+v, %v; want applied", w, err)
	}
	w, err := e.st.Update(e.ctx, s, k, engine.Float(2.5), t(2))
	if err != nil {
		e.Fatalf("late Update: %v", err)
	}
	if !w.Value.Equal(engine.Float(2.5)) {
		e.Errorf("late Update: Value = %v, want 2.5", w.Value)
	}
	e.wantSuperseded("late Update", w, t(1), true)
	e.wantGet(s, k, 0, engine.Float(1.5), t(1))
	e.wantGet(s, k, 1, engine.Float(2.5), t(2))

	// Update of a list appends, in call order.
	l := e.feature("late_update_list", engine.PrimitiveStringList)
	for _, c := range []struct {
		v  string
		ts time.Time
	}{{"a", t(1)}, {"b", t(5)}} {
		w, err := e.st.Update(e.ctx, l, k, engine.StringList([]string{c.v}), c.ts)
		if err != nil || w.Superseded {
			e.Fatalf("Update list %q = %+v, %v; want applied", c.v, w, err)
		}
	}
	e.wantGet(l, k, 0, engine.StringList([]string{"a", "b"}), t(1))
}

func testAppendIncrCallOrder(e *env) {
	k := "a"
	t := e.minutesAgo
	// Every increment counts, late or not; the timestamp never goes back.
	c := e.feature("call_order_incr", engine.PrimitiveInt, keepPrevious(2, time.Hour))
	steps := []struct {
		by   int64
		ts   time.Time
		want int64
		at   time.Time
	}{
		{1, t(5), 1, t(5)},
		{10, t(1), 11, t(1)},
		{100, t(9), 111, t(1)}, // late: still added
	}
	for _, s := range steps {
		if got := e.incr(c, k, engine.Int(s.by), s.ts); !got.Equal(engine.Int(s.want)) {
			e.Errorf("Incr by %d at %v = %v, want %d", s.by, s.ts, got, s.want)
		}
	}
	e.wantGet(c, k, 0, engine.Int(111), t(1))
	e.wantGet(c, k, 1, engine.Int(11), t(1))
	e.wantGet(c, k, 2, engine.Int(1), t(5))

	// Appends keep call order, not timestamp order.
	l := e.feature("call_order_append", engine.PrimitiveStringList)
	e.append(l, k, engine.StringList([]string{"x"}), t(1))
	e.append(l, k, engine.StringList([]string{"y"}), t(9))
	e.append(l, k, engine.StringList([]string{"z"}), t(3))
	e.wantGet(l, k, 0, engine.StringList([]string{"x", "y", "z"}), t(1))

	// A Set after late increments is ordered against the counter's timestamp.
	e.wantSuperseded("Set older than the counter", e.setW(c, k, engine.Int(0), t(2)), t(1), true)
	e.wantGet(c, k, 0, engine.Int(111), t(1))
}

func testConcurrentLateSets(e *env) {
	// Writers race Sets of distinct timestamps in random order: whatever the interleaving,
	// the latest is current and the next ones are the previous versions, in order, and
	// exactly the writes older than those report superseded-and-dropped.
	const n = workers * 50
	f := e.feature("concurrent_late_sets", engine.PrimitiveInt, keepPrevious(3, time.Hour))
	k := "hot"
	order := rand.Perm(n)
	ts := func(i int) time.Time { return e.now.Add(-time.Minute).Add(time.Duration(i) * time.Millisecond) }
	type report struct {
		i int
		w engine.Written
	}
	reports := make(chan report, n)
	parallel(func(w int) {
		for j := w; j < n; j += workers {
			i := order[j]
			out, err := e.st.Set(e.ctx, f, k, engine.Int(int64(i)), ts(i))
			if err != nil {
				e.Errorf("Set %d: %v", i, err)
				return
			}
			reports <- report{i, out}
		}
	})
	close(reports)
	e.wantGet(f, k, 0, engine.Int(n-1), ts(n-1))
	for v := 1; v <= 3; v++ {
		e.wantGet(f, k, v, engine.Int(int64(n-1-v)), ts(n-1-v))
	}
	got := 0
	for r := range reports {
		got++
		if r.w.Superseded && !r.w.Current.After(ts(r.i)) {
			e.Errorf("Set %d superseded by a value at %v, not later than its own %v", r.i, r.w.Current, ts(r.i))
		}
		if r.i == n-1 && r.w.Superseded {
			e.Errorf("the latest Set was superseded")
		}
	}
	if got != n {
		e.Errorf("%d of %d Sets reported", got, n)
	}
}
