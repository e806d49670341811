package memory

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/statetest"
	"github.com/osprey-ml/osprey/plugins"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, func(*testing.T) engine.State { return New() })
}

func TestConformanceWithoutJanitor(t *testing.T) {
	statetest.Run(t, func(*testing.T) engine.State { return New(WithJanitorInterval(0)) })
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newTest(t *testing.T, opts ...Option) (*State, *fakeClock) {
	t.Helper()
	c := &fakeClock{t: t0}
	s := New(append([]Option{WithClock(c.Now), WithJanitorInterval(0)}, opts...)...)
	t.Cleanup(func() { s.Close() })
	return s, c
}

func feature(fqn string, p engine.Primitive) *engine.Feature {
	return &engine.Feature{FQN: fqn, Primitive: p, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func windowedFeature(fqn string) *engine.Feature {
	f := feature(fqn, engine.PrimitiveFloat)
	f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
	return f
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setErr keeps the error of a Set.
func setErr(_ engine.Written, err error) error { return err }

func TestSweep(t *testing.T) {
	s, c := newTest(t)
	scalar := feature("t.scalar", engine.PrimitiveInt) // staleness 1h
	kept := feature("t.kept", engine.PrimitiveInt)
	kept.Staleness = 10 * time.Minute
	kept.KeepPrevious = &engine.KeepPrevious{Versions: 2, Over: 2 * time.Hour}
	win := windowedFeature("t.win") // staleness 1h, granularity 1m

	must(t, setErr(s.Set(ctx, scalar, "a", engine.Int(1), t0)))
	must(t, setErr(s.Set(ctx, scalar, "b", engine.Int(1), t0.Add(30*time.Minute))))
	must(t, setErr(s.Set(ctx, kept, "a", engine.Int(1), t0)))
	must(t, setErr(s.Set(ctx, kept, "a", engine.Int(2), t0.Add(time.Minute))))
	must(t, s.WindowAdd(ctx, win, "a", 1, t0))
	must(t, s.WindowAdd(ctx, win, "b", 1, t0))
	c.Add(30 * time.Minute)
	must(t, s.WindowAdd(ctx, win, "b", 2, c.Now()))
	if n := s.Len(); n != 5 {
		t.Fatalf("Len = %d, want 5", n)
	}
	var scratch []entityRef

	// At t0+1h: scalar/a is stale (deleted); kept/a's current value is stale but may still
	// become a previous value, and its history is alive (kept).
	c.Add(30 * time.Minute)
	if n := s.sweep(&scratch); n != 1 {
		t.Fatalf("sweep at +1h removed %d, want 1", n)
	}
	if _, _, found, _ := s.Get(ctx, kept, "a", 1); !found {
		t.Fatalf("sweep removed a previous value still inside Over")
	}

	// At t0+1h30m: scalar/b stale. The bucket at t0 expires at t0+1m+1h+10m.
	c.Add(30 * time.Minute)
	if n := s.sweep(&scratch); n != 2 {
		t.Fatalf("sweep at +1h30m removed %d, want 2 (scalar/b and win/a)", n)
	}
	// win/b still has its bucket from t0+30m; its t0 bucket was dropped.
	e := s.shardFor(win.FQN, "b").get(win.FQN, "b")
	if e == nil || len(e.buckets) != 1 || e.buckets[0].Sum != 2 {
		t.Fatalf("win/b after sweep = %+v, want only the t0+30m bucket", e)
	}

	// At t0+3h everything is gone, including the per-feature indexes.
	c.Add(90 * time.Minute)
	if n := s.sweep(&scratch); n != 2 {
		t.Fatalf("sweep at +3h removed %d, want 2", n)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after all expired = %d", n)
	}
	for i := range s.shards {
		if len(s.shards[i].features) != 0 {
			t.Fatalf("shard %d still indexes %d features", i, len(s.shards[i].features))
		}
	}
}

func TestJanitorGoroutine(t *testing.T) {
	c := &fakeClock{t: t0}
	s := New(WithClock(c.Now), WithJanitorInterval(time.Millisecond))
	defer s.Close()
	f := feature("t.j", engine.PrimitiveString)
	for i := range 100 {
		must(t, setErr(s.Set(ctx, f, strconv.Itoa(i), engine.String("x"), t0)))
	}
	time.Sleep(5 * time.Millisecond)
	if n := s.Len(); n != 100 {
		t.Fatalf("janitor removed live entities: Len = %d", n)
	}
	c.Add(time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor did not remove expired entities: Len = %d", s.Len())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClose(t *testing.T) {
	s := New(WithJanitorInterval(time.Millisecond))
	must(t, s.Close())
	must(t, s.Close())
	select {
	case <-s.done:
	default:
		t.Fatal("janitor still running after Close")
	}
	f := feature("t.c", engine.PrimitiveInt)
	if err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
	if _, err := s.Set(ctx, f, "a", engine.Int(1), t0); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
	if _, _, _, err := s.Get(ctx, f, "a", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestErrors(t *testing.T) {
	s, _ := newTest(t)
	i := feature("t.i", engine.PrimitiveInt)
	w := windowedFeature("t.w")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"set wrong type", setErr(s.Set(ctx, i, "a", engine.String("x"), t0)), engine.ErrTypeMismatch},
		{"set null", setErr(s.Set(ctx, i, "a", engine.Null, t0)), engine.ErrTypeMismatch},
		{"set windowed", setErr(s.Set(ctx, w, "a", engine.Float(1), t0)), engine.ErrUnsupported},
		{"get windowed", func() error { _, _, _, err := s.Get(ctx, w, "a", 0); return err }(), engine.ErrUnsupported},
		{"negative version", func() error { _, _, _, err := s.Get(ctx, i, "a", -1); return err }(), engine.ErrVersionOutOfRange},
		{"window add unwindowed", s.WindowAdd(ctx, i, "a", 1, t0), engine.ErrUnsupported},
		{"window add NaN", s.WindowAdd(ctx, w, "a", math.NaN(), t0), engine.ErrTypeMismatch},
		{"window add Inf", s.WindowAdd(ctx, w, "a", math.Inf(-1), t0), engine.ErrTypeMismatch},
		{"window add expired", s.WindowAdd(ctx, w, "a", 1, t0.Add(-2*time.Hour)), engine.ErrOutOfWindow},
		{"buckets unwindowed", func() error { _, err := s.WindowBuckets(ctx, i, "a", engine.WindowSpan{}); return err }(), engine.ErrUnsupported},
		{"dead buckets unwindowed", func() error { _, err := s.DeadWindowBuckets(ctx, i, engine.WindowSpan{}); return err }(), engine.ErrUnsupported},
		{"update windowed string", func() error { _, err := s.Update(ctx, w, "a", engine.String("x"), t0); return err }(), engine.ErrTypeMismatch},
		{"incr windowed", func() error { _, err := s.Incr(ctx, w, "a", engine.Float(1), t0); return err }(), engine.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	// An overflowing Incr fails and leaves the value alone.
	must(t, setErr(s.Set(ctx, i, "max", engine.Int(math.MaxInt64-1), t0)))
	if _, err := s.Incr(ctx, i, "max", engine.Int(2), t0); !errors.Is(err, engine.ErrOverflow) {
		t.Fatalf("Incr past MaxInt64: err = %v, want %v", err, engine.ErrOverflow)
	}
	if v, _, _, _ := s.Get(ctx, i, "max", 0); v.Int() != math.MaxInt64-1 {
		t.Fatalf("value after failed Incr = %v", v)
	}
	// Nothing was written by the failed calls.
	if _, _, found, _ := s.Get(ctx, i, "a", 0); found {
		t.Fatal("a failed Set wrote a value")
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.DeadWindowBuckets(ctxDone, w, engine.WindowSpan{First: 0, Last: math.MaxInt64}); !errors.Is(err, context.Canceled) {
		t.Fatalf("DeadWindowBuckets with a cancelled context: %v", err)
	}
}

// TestFirstKept checks firstKept against engine.BucketExpiry, including granularities that
// do not divide staleness or the grace period and times before the epoch.
func TestFirstKept(t *testing.T) {
	for _, g := range []time.Duration{time.Nanosecond, 7 * time.Millisecond, time.Second, 7 * time.Minute, time.Hour} {
		for _, st := range []time.Duration{g, 3*g + 1, time.Hour} {
			f := &engine.Feature{Staleness: st, Granularity: g}
			for _, now := range []time.Time{t0, t0.Add(123456789), time.Unix(0, -987654321), time.Unix(0, 0)} {
				keep := firstKept(now.UnixNano(), f)
				if exp := engine.BucketExpiry(keep, st, g); !exp.After(now) {
					t.Errorf("g=%v st=%v now=%v: bucket %d kept but expired at %v", g, st, now, keep, exp)
				}
				if exp := engine.BucketExpiry(keep-1, st, g); exp.After(now) {
					t.Errorf("g=%v st=%v now=%v: bucket %d dropped but expires at %v", g, st, now, keep-1, exp)
				}
			}
		}
	}
}

func TestVersionsResize(t *testing.T) {
	s, _ := newTest(t)
	f := feature("t.v", engine.PrimitiveInt)
	f.KeepPrevious = &engine.KeepPrevious{Versions: 3, Over: time.Hour}
	set := func(f *engine.Feature, n int64) { must(t, setErr(s.Set(ctx, f, "a", engine.Int(n), t0))) }
	want := func(f *engine.Feature, versions ...int64) {
		t.Helper()
		for i, w := range versions {
			v, _, found, err := s.Get(ctx, f, "a", i)
			if err != nil || !found || v.Int() != w {
				t.Fatalf("@-%d = %v (found %v, %v), want %d", i, v, found, err, w)
			}
		}
		if _, _, found, _ := s.Get(ctx, f, "a", len(versions)); found {
			t.Fatalf("@-%d found, want only %d versions", len(versions), len(versions)-1)
		}
	}
	for n := range int64(6) {
		set(f, n)
	}
	want(f, 5, 4, 3, 2)
	// Re-applied with fewer versions, then more.
	fewer := f.Clone()
	fewer.KeepPrevious.Versions = 2
	want(fewer, 5, 4, 3)
	set(fewer, 6)
	want(fewer, 6, 5, 4)
	more := f.Clone()
	more.KeepPrevious.Versions = 4
	set(more, 7)
	set(more, 8)
	set(more, 9)
	want(more, 9, 8, 7, 6, 5)
	// Re-applied without keepPrevious: the history goes.
	none := f.Clone()
	none.KeepPrevious = nil
	set(none, 10)
	want(f, 10)
}

func TestTypeChange(t *testing.T) {
	s, _ := newTest(t)
	i := feature("t.x", engine.PrimitiveInt)
	must(t, setErr(s.Set(ctx, i, "a", engine.Int(41), t0)))
	fl := feature("t.x", engine.PrimitiveFloat) // the feature deleted and re-applied as float
	v, err := s.Incr(ctx, fl, "a", engine.Float(0.5), t0)
	if err != nil || v.Float() != 0.5 {
		t.Fatalf("Incr over a value of the old type = %v, %v; want 0.5", v, err)
	}
	l := feature("t.x", engine.PrimitiveIntList)
	v, err = s.Append(ctx, l, "a", engine.IntList([]int64{1}), t0)
	if err != nil || !v.Equal(engine.IntList([]int64{1})) {
		t.Fatalf("Append over a value of the old type = %v, %v; want [1]", v, err)
	}
}

func TestTimestampOfAccumulatedValue(t *testing.T) {
	s, _ := newTest(t)
	f := feature("t.n", engine.PrimitiveInt)
	if _, err := s.Incr(ctx, f, "a", engine.Int(1), t0); err != nil {
		t.Fatal(err)
	}
	// A late write (older timestamp) adds to the value without making it look older.
	if _, err := s.Incr(ctx, f, "a", engine.Int(1), t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	v, ts, _, _ := s.Get(ctx, f, "a", 0)
	if v.Int() != 2 || !ts.Equal(t0) {
		t.Fatalf("got %v at %v, want 2 at %v", v, ts, t0)
	}
}

func TestAppendAmortisedAndClipped(t *testing.T) {
	s, _ := newTest(t)
	f := feature("t.l", engine.PrimitiveIntList)
	var prev engine.Value
	for i := range 1000 {
		v, err := s.Append(ctx, f, "a", engine.IntList([]int64{int64(i)}), t0)
		if err != nil {
			t.Fatal(err)
		}
		if l := v.Ints(); cap(l) != len(l) {
			t.Fatalf("Append #%d returned a list with spare capacity %d > %d", i, cap(l), len(l))
		}
		// A holder appending to an earlier result must not change the store.
		_ = append(prev.Ints(), -1)
		prev = v
	}
	v, _, _, _ := s.Get(ctx, f, "a", 0)
	for i, x := range v.Ints() {
		if x != int64(i) {
			t.Fatalf("element %d = %d", i, x)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.Append(ctx, f, "a", engine.IntList([]int64{1}), t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Append to a long list allocates %v times per call, want amortised ≤ 2", allocs)
	}
}

func TestAllocations(t *testing.T) {
	s, c := newTest(t)
	f := feature("t.a", engine.PrimitiveFloat)
	must(t, setErr(s.Set(ctx, f, "key", engine.Float(1), t0)))
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = s.Get(ctx, f, "key", 0) }); n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Set(ctx, f, "key", engine.Float(2), t0) }); n != 0 {
		t.Errorf("Set of an existing entity allocates %v times", n)
	}
	w := windowedFeature("t.w")
	for i := range 60 {
		must(t, s.WindowAdd(ctx, w, "key", 1, t0.Add(-time.Duration(i)*time.Minute)))
	}
	span := engine.AliveSpan(c.Now(), w.Staleness, w.Granularity)
	if n := testing.AllocsPerRun(100, func() { _, _ = s.WindowBuckets(ctx, w, "key", span) }); n != 1 {
		t.Errorf("WindowBuckets allocates %v times, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.WindowAdd(ctx, w, "key", 1, t0) }); n != 0 {
		t.Errorf("WindowAdd to an existing bucket allocates %v times", n)
	}
}

func TestRegistered(t *testing.T) {
	st, err := plugins.NewState(ctx, "memory", plugins.Config{"janitor_interval": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s, ok := st.(*State); !ok || s.janitorInterval != 10*time.Second {
		t.Fatalf("NewState(memory) = %T %+v", st, st)
	}
	if b, ok := st.(engine.Blocker); !ok || !b.NonBlocking() {
		t.Fatal("memory state does not report NonBlocking")
	}
	for _, cfg := range []plugins.Config{{"janitor_interval": "soon"}, {"janitor_interval": "-1s"}, {"janitor": "1s"}} {
		if _, err := plugins.NewState(ctx, "memory", cfg); !errors.Is(err, plugins.ErrInvalidConfig) {
			t.Errorf("NewState(memory, %v): err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	st, err = plugins.NewState(ctx, "memory", plugins.Config{"janitor_interval": "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.(*State).done != nil {
		t.Fatal("janitor_interval 0 started a janitor")
	}
}
