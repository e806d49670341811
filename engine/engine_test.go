package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// clock is a settable time source shared by the engine and the store under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type recorder struct {
	mu sync.Mutex
	ns []engine.Notification
}

func (r *recorder) Publish(_ context.Context, n engine.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ns = append(r.ns, n)
	return nil
}
func (r *recorder) Subscribe(ctx context.Context, _ string, _ func(context.Context, engine.Notification) error) error {
	<-ctx.Done()
	return ctx.Err()
}
func (r *recorder) DeleteGroup(context.Context, string) error { return nil }
func (r *recorder) Close() error                              { return nil }

type fixture struct {
	e     *engine.Engine
	clock *clock
	notes *recorder
}

func newFixture(t testing.TB, opts ...engine.Option) *fixture {
	t.Helper()
	c := &clock{t: t0}
	st := memory.New(memory.WithClock(c.Now))
	t.Cleanup(func() { st.Close() })
	rec := &recorder{}
	opts = append([]engine.Option{engine.WithClock(c.Now), engine.WithNotifier(rec),
		engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	return &fixture{e: engine.New(st, opts...), clock: c, notes: rec}
}

func (fx *fixture) apply(t testing.TB, f *engine.Feature) {
	t.Helper()
	if err := fx.e.Apply(context.Background(), f); err != nil {
		t.Fatalf("apply %s: %v", f.FQN, err)
	}
}

func scalar(fqn string, p engine.Primitive) *engine.Feature {
	return &engine.Feature{FQN: fqn, Primitive: p, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func windowed(fqn string) *engine.Feature {
	f := scalar(fqn, engine.PrimitiveFloat)
	f.Aggrs = engine.AllAggrs
	f.Granularity = time.Minute
	f.Freshness = 5 * time.Minute
	f.Staleness = time.Hour
	return f
}

var ctx = context.Background()

func TestFreshnessAndStaleness(t *testing.T) {
	tests := []struct {
		age       time.Duration
		wantFound bool
		wantFresh bool
	}{
		{-time.Minute, true, true}, // future timestamps are fresh
		{0, true, true},
		{time.Minute - time.Nanosecond, true, true},
		{time.Minute, true, false}, // age == freshness: served, not fresh
		{30 * time.Minute, true, false},
		{time.Hour - time.Nanosecond, true, false},
		{time.Hour, false, false}, // age == staleness: not served
		{48 * time.Hour, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.age.String(), func(t *testing.T) {
			fx := newFixture(t)
			fx.apply(t, scalar("t.v", engine.PrimitiveInt))
			// Write at t0 − age + (the age is measured at t0).
			ts := t0.Add(-tt.age)
			fx.clock.Set(ts) // the write happens at its timestamp
			if _, err := fx.e.Set(ctx, "t.v", engine.Keys{"id": "a"}, 7, ts); err != nil {
				t.Fatal(err)
			}
			fx.clock.Set(t0)
			res, err := fx.e.Get(ctx, "t.v", engine.Keys{"id": "a"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Found() != tt.wantFound || res.Fresh != tt.wantFresh {
				t.Fatalf("age %v: found=%v fresh=%v, want found=%v fresh=%v", tt.age, res.Found(), res.Fresh, tt.wantFound, tt.wantFresh)
			}
			if res.Found() && (res.Value.Int() != 7 || !res.Timestamp.Equal(ts)) {
				t.Fatalf("got %v at %v, want 7 at %v", res.Value, res.Timestamp, ts)
			}
		})
	}
}

func TestEveryPrimitiveRoundTrip(t *testing.T) {
	ts := t0.Add(-time.Second)
	tests := []struct {
		p    engine.Primitive
		in   any
		want engine.Value
	}{
		{engine.PrimitiveInt, 42, engine.Int(42)},
		{engine.PrimitiveInt, "-9", engine.Int(-9)},
		{engine.PrimitiveFloat, 1.5, engine.Float(1.5)},
		{engine.PrimitiveString, "héllo;\\", engine.String("héllo;\\")},
		{engine.PrimitiveBool, true, engine.Bool(true)},
		{engine.PrimitiveTimestamp, "2026-01-02T03:04:05.123456789Z", engine.Timestamp(time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC))},
		{engine.PrimitiveIntList, []any{1, 2.0, "3"}, engine.IntList([]int64{1, 2, 3})},
		{engine.PrimitiveFloatList, []float64{0.5}, engine.FloatList([]float64{0.5})},
		{engine.PrimitiveStringList, []string{"a", ""}, engine.StringList([]string{"a", ""})},
		{engine.PrimitiveBoolList, []any{true, "false"}, engine.BoolList([]bool{true, false})},
		{engine.PrimitiveTimestampList, []any{0}, engine.TimestampList([]time.Time{time.Unix(0, 0).UTC()})},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			fx := newFixture(t)
			fx.apply(t, scalar("t.v", tt.p))
			if _, err := fx.e.Set(ctx, "t.v", engine.Keys{"id": "a"}, tt.in, ts); err != nil {
				t.Fatal(err)
			}
			res, err := fx.e.Get(ctx, "t.v", engine.Keys{"id": "a"})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Value.Equal(tt.want) {
				t.Fatalf("got %v, want %v", res.Value, tt.want)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("t.i", engine.PrimitiveInt))
	fx.apply(t, scalar("t.s", engine.PrimitiveString))
	fx.apply(t, scalar("t.l", engine.PrimitiveIntList))
	fx.apply(t, windowed("t.w"))
	k := engine.Keys{"id": "a"}
	tests := []struct {
		name    string
		do      func() error
		wantErr error
		wantMsg []string
	}{
		{"type mismatch", func() error { _, err := fx.e.Set(ctx, "t.i", k, "abc", time.Time{}); return err },
			engine.ErrTypeMismatch, []string{"t.i", "want int", `string "abc"`}},
		{"fraction to int", func() error { _, err := fx.e.Set(ctx, "t.i", k, 1.5, time.Time{}); return err },
			engine.ErrTypeMismatch, []string{"t.i", "want int", "1.5"}},
		{"null", func() error { _, err := fx.e.Set(ctx, "t.i", k, nil, time.Time{}); return err },
			engine.ErrTypeMismatch, []string{"got null"}},
		{"list element", func() error { _, err := fx.e.Set(ctx, "t.l", k, []any{1, "x"}, time.Time{}); return err },
			engine.ErrTypeMismatch, []string{"t.l", "element 1"}},
		{"scalar for list set", func() error { _, err := fx.e.Set(ctx, "t.l", k, 1, time.Time{}); return err },
			engine.ErrTypeMismatch, []string{"want []int"}},
		{"append to scalar", func() error { _, err := fx.e.Append(ctx, "t.i", k, 1, time.Time{}); return err },
			engine.ErrUnsupported, []string{"append"}},
		{"append to window", func() error { _, err := fx.e.Append(ctx, "t.w", k, 1, time.Time{}); return err },
			engine.ErrUnsupported, []string{"windowed"}},
		{"incr string", func() error { _, err := fx.e.Incr(ctx, "t.s", k, 1, time.Time{}); return err },
			engine.ErrUnsupported, []string{"incr"}},
		{"missing key", func() error { _, err := fx.e.Set(ctx, "t.i", engine.Keys{}, 1, time.Time{}); return err },
			engine.ErrInvalidKeys, []string{`missing key "id"`}},
		{"unknown key", func() error {
			_, err := fx.e.Set(ctx, "t.i", engine.Keys{"id": "a", "x": "b"}, 1, time.Time{})
			return err
		}, engine.ErrInvalidKeys, []string{`unknown key "x"`}},
		{"unknown feature", func() error { _, err := fx.e.Set(ctx, "t.nope", k, 1, time.Time{}); return err },
			engine.ErrFeatureNotFound, []string{"t.nope"}},
		{"bad fqn", func() error { _, err := fx.e.Set(ctx, "t.i+sum", k, 1, time.Time{}); return err },
			engine.ErrInvalidSelector, nil},
		{"window too old", func() error {
			_, err := fx.e.Update(ctx, "t.w", k, 1, t0.Add(-2*time.Hour))
			return err
		}, engine.ErrOutOfWindow, []string{"t.w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("t.i", engine.PrimitiveInt))
	kp := scalar("t.kp", engine.PrimitiveInt)
	kp.KeepPrevious = &engine.KeepPrevious{Versions: 2, Over: time.Hour}
	fx.apply(t, kp)
	w := windowed("t.w")
	w.Aggrs = engine.AggrSet(0).With(engine.AggrSum)
	fx.apply(t, w)
	k := engine.Keys{"id": "a"}
	tests := []struct {
		sel     string
		wantErr error
	}{
		{"t.i+sum", engine.ErrUnsupported},
		{"t.w+avg", engine.ErrUnsupported},
		{"t.i@-1", engine.ErrVersionOutOfRange},
		{"t.kp@-3", engine.ErrVersionOutOfRange},
		{"t.i[nope]", engine.ErrUnsupported},
		{"t.zz", engine.ErrFeatureNotFound},
		{"t.i+", engine.ErrInvalidSelector},
		{"", engine.ErrInvalidSelector},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			if _, err := fx.e.Get(ctx, tt.sel, k); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%q) err = %v, want %v", tt.sel, err, tt.wantErr)
			}
		})
	}
}

func TestDefaultNamespace(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("default.score", engine.PrimitiveFloat))
	if _, err := fx.e.Set(ctx, "score", engine.Keys{"id": "a"}, 0.5, time.Time{}); err != nil {
		t.Fatal(err)
	}
	res, err := fx.e.Get(ctx, "SCORE", engine.Keys{"id": "a"})
	if err != nil || res.Value.Float() != 0.5 || res.FQN != "default.score" {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestWindow(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, windowed("fraud.amount"))
	k := engine.Keys{"id": "card1"}
	// 60 one-minute buckets make the window; put values in three buckets inside it and
	// one in a bucket that has just left it (61 minutes ago).
	writes := []struct {
		ago time.Duration
		x   float64
	}{
		{10 * time.Second, 10}, {20 * time.Second, 30},
		{5 * time.Minute, -4},
		{59 * time.Minute, 100},
		{61 * time.Minute, 1000}, // outside the window, still kept for the historian
	}
	for _, w := range writes {
		if _, err := fx.e.Update(ctx, "fraud.amount", k, w.x, t0.Add(-w.ago)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := fx.e.Get(ctx, "fraud.amount", k)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Value.Window()
	want := engine.WindowResult{Aggrs: engine.AllAggrs, Sum: 136, Count: 4, Min: -4, Max: 100}
	if res.Value.Kind() != engine.KindWindow || got != want {
		t.Fatalf("window = %v, want %v", res.Value, engine.Window(want))
	}
	if !res.Fresh || !res.Timestamp.Equal(t0.Add(-10*time.Second)) {
		t.Fatalf("fresh=%v ts=%v", res.Fresh, res.Timestamp)
	}
	for sel, want := range map[string]float64{"+sum": 136, "+count": 4, "+min": -4, "+max": 100, "+avg": 34, "+mean": 34} {
		res, err := fx.e.Get(ctx, "fraud.amount"+sel, k)
		if err != nil || res.Value.Kind() != engine.KindFloat || res.Value.Float() != want {
			t.Errorf("%s = %v (%v), want %v", sel, res.Value, err, want)
		}
	}
	// Two minutes later the 59-minute-old bucket has left the window.
	fx.clock.Add(2 * time.Minute)
	res, _ = fx.e.Get(ctx, "fraud.amount+sum", k)
	if res.Value.Float() != 36 || !res.Fresh {
		t.Fatalf("after 2m: sum=%v fresh=%v, want 36, still fresh (2m10s < 5m)", res.Value, res.Fresh)
	}
	dead, err := fx.e.DeadBuckets(ctx, "fraud.amount")
	if err != nil {
		t.Fatal(err)
	}
	var deadSum float64
	for _, b := range dead {
		deadSum += b.Sum
	}
	if len(dead) != 2 || deadSum != 1100 {
		t.Fatalf("dead buckets = %+v, want the 59m and 61m ones", dead)
	}
	// Long after, nothing is served.
	fx.clock.Add(2 * time.Hour)
	if res, _ := fx.e.Get(ctx, "fraud.amount", k); res.Found() {
		t.Fatalf("expired window served: %v", res.Value)
	}
}

func TestWindowIntFeatureAndIncr(t *testing.T) {
	fx := newFixture(t)
	f := windowed("t.clicks")
	f.Primitive = engine.PrimitiveInt
	fx.apply(t, f)
	k := engine.Keys{"id": "u"}
	for range 3 {
		if _, err := fx.e.Incr(ctx, "t.clicks", k, 1, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.e.Update(ctx, "t.clicks", k, 0.5, time.Time{}); !errors.Is(err, engine.ErrTypeMismatch) {
		t.Fatalf("fractional add to int window: err = %v", err)
	}
	res, _ := fx.e.Get(ctx, "t.clicks+count", k)
	if res.Value.Float() != 3 {
		t.Fatalf("count = %v", res.Value)
	}
	if n := len(fx.notes.ns); n != 3 || !fx.notes.ns[0].Windowed || !fx.notes.ns[0].ActiveBucket {
		t.Fatalf("notifications = %+v", fx.notes.ns)
	}
}

func TestKeepPrevious(t *testing.T) {
	fx := newFixture(t)
	f := scalar("geo.city", engine.PrimitiveString)
	f.KeepPrevious = &engine.KeepPrevious{Versions: 2, Over: 24 * time.Hour}
	fx.apply(t, f)
	k := engine.Keys{"id": "u"}
	for i, city := range []string{"Lisbon", "Porto", "Faro"} {
		fx.clock.Set(t0.Add(time.Duration(i) * time.Minute))
		if _, err := fx.e.Set(ctx, "geo.city", k, city, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for sel, want := range map[string]string{"geo.city": "Faro", "geo.city@-0": "Faro", "geo.city@-1": "Porto", "geo.city@-2": "Lisbon"} {
		res, err := fx.e.Get(ctx, sel, k)
		if err != nil || res.Value.Str() != want {
			t.Errorf("%s = %v (%v), want %s", sel, res.Value, err, want)
		}
	}
	// The previous values outlive staleness (1h) up to over (24h).
	fx.clock.Add(3 * time.Hour)
	if res, _ := fx.e.Get(ctx, "geo.city", k); res.Found() {
		t.Errorf("current value served past staleness")
	}
	if res, _ := fx.e.Get(ctx, "geo.city@-1", k); res.Value.Str() != "Porto" || res.Fresh {
		t.Errorf("@-1 after 3h = %v fresh=%v", res.Value, res.Fresh)
	}
	fx.clock.Add(24 * time.Hour)
	if res, _ := fx.e.Get(ctx, "geo.city@-1", k); res.Found() {
		t.Errorf("@-1 served past over")
	}
}

func TestUpdateDispatchAndIncr(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("t.n", engine.PrimitiveInt))
	fx.apply(t, scalar("t.f", engine.PrimitiveFloat))
	fx.apply(t, scalar("t.tags", engine.PrimitiveStringList))
	k := engine.Keys{"id": "a"}
	if v, err := fx.e.Update(ctx, "t.n", k, 5, time.Time{}); err != nil || v.Int() != 5 {
		t.Fatalf("update scalar = %v, %v", v, err)
	}
	if v, err := fx.e.Incr(ctx, "t.n", k, 2, time.Time{}); err != nil || v.Int() != 7 {
		t.Fatalf("incr = %v, %v", v, err)
	}
	if v, err := fx.e.Incr(ctx, "t.f", k, 0.25, time.Time{}); err != nil || v.Float() != 0.25 {
		t.Fatalf("incr float from absent = %v, %v", v, err)
	}
	if _, err := fx.e.Update(ctx, "t.tags", k, "a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	v, err := fx.e.Update(ctx, "t.tags", k, []string{"b", "c"}, time.Time{})
	if err != nil || !v.Equal(engine.StringList([]string{"a", "b", "c"})) {
		t.Fatalf("update list = %v, %v", v, err)
	}
	if v, err := fx.e.Append(ctx, "t.tags", k, "d", time.Time{}); err != nil || v.Len() != 4 {
		t.Fatalf("append = %v, %v", v, err)
	}
	// Set replaces a list.
	if _, err := fx.e.Set(ctx, "t.tags", k, []string{"z"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	res, _ := fx.e.Get(ctx, "t.tags", k)
	if !res.Value.Equal(engine.StringList([]string{"z"})) {
		t.Fatalf("after set = %v", res.Value)
	}
	// A counter whose value went stale restarts from zero.
	fx.clock.Add(2 * time.Hour)
	if v, _ := fx.e.Incr(ctx, "t.n", k, 1, time.Time{}); v.Int() != 1 {
		t.Fatalf("incr after staleness = %v, want 1", v)
	}
}

func TestPipelineOrderReplaceReject(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	mw := map[string]engine.Middleware{}
	add := func(name string, fn func(engine.Value) (engine.Value, error)) {
		mw[name] = func(ctx context.Context, c *engine.Call, v engine.Value) (engine.Value, error) {
			mu.Lock()
			trace = append(trace, c.Stage.String()+":"+name)
			mu.Unlock()
			return fn(v)
		}
	}
	pass := func(v engine.Value) (engine.Value, error) { return v, nil }
	add("a", pass)
	add("b", pass)
	add("c", pass)
	add("double", func(v engine.Value) (engine.Value, error) { return engine.Int(v.Int() * 2), nil })
	add("plus1", func(v engine.Value) (engine.Value, error) { return engine.Int(v.Int() + 1), nil })
	add("deny", func(v engine.Value) (engine.Value, error) {
		if v.Int() < 0 {
			return engine.Null, fmt.Errorf("%w: negative", engine.ErrRejected)
		}
		return v, nil
	})
	resolver := engine.MiddlewareResolverFunc(func(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		fn, ok := mw[ref.Name]
		if !ok {
			return nil, fmt.Errorf("unknown middleware %q", ref.Name)
		}
		return fn, nil
	})
	fx := newFixture(t, engine.WithMiddlewareResolver(resolver))
	f := scalar("t.p", engine.PrimitiveInt)
	f.Middlewares = []engine.MiddlewareRef{
		{Name: "c", Stages: []engine.Stage{engine.StagePreSet}, Priority: 10},
		{Name: "a", Stages: []engine.Stage{engine.StagePreSet, engine.StagePostGet}, Priority: 1},
		{Name: "b", Stages: []engine.Stage{engine.StagePreSet}, Priority: 10}, // ties keep manifest order: c before b
		{Name: "deny", Stages: []engine.Stage{engine.StagePreSet}, Priority: 0},
		{Name: "double", Stages: []engine.Stage{engine.StagePreSet}, Priority: 5},
		{Name: "plus1", Stages: []engine.Stage{engine.StagePostGet}, Priority: 5},
	}
	fx.apply(t, f)
	k := engine.Keys{"id": "a"}
	if _, err := fx.e.Set(ctx, "t.p", k, 4, time.Time{}); err != nil {
		t.Fatal(err)
	}
	res, err := fx.e.Get(ctx, "t.p", k)
	if err != nil || res.Value.Int() != 9 {
		t.Fatalf("get = %v, %v; want (4*2)+1 = 9", res.Value, err)
	}
	want := "preSet:deny preSet:a preSet:double preSet:c preSet:b postGet:a postGet:plus1"
	if got := strings.Join(trace, " "); got != want {
		t.Fatalf("order:\n got %s\nwant %s", got, want)
	}
	_, err = fx.e.Set(ctx, "t.p", k, -1, time.Time{})
	if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), "deny") {
		t.Fatalf("rejection err = %v", err)
	}
	if res, _ := fx.e.Get(ctx, "t.p", k); res.Value.Int() != 9 {
		t.Fatalf("rejected write changed the value: %v", res.Value)
	}
	if err := fx.e.Apply(ctx, func() *engine.Feature {
		g := scalar("t.q", engine.PrimitiveInt)
		g.Middlewares = []engine.MiddlewareRef{{Name: "nope", Stages: []engine.Stage{engine.StagePreGet}}}
		return g
	}()); err == nil || !strings.Contains(err.Error(), "spec.middlewares[0]") {
		t.Fatalf("unknown middleware: err = %v", err)
	}
}

func TestPreGetShortCircuitAndTypeGuard(t *testing.T) {
	resolver := engine.MiddlewareResolverFunc(func(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		switch ref.Name {
		case "default":
			return func(context.Context, *engine.Call, engine.Value) (engine.Value, error) { return engine.Int(99), nil }, nil
		default:
			return func(context.Context, *engine.Call, engine.Value) (engine.Value, error) {
				return engine.String("x"), nil
			}, nil
		}
	})
	fx := newFixture(t, engine.WithMiddlewareResolver(resolver))
	f := scalar("t.d", engine.PrimitiveInt)
	f.Middlewares = []engine.MiddlewareRef{{Name: "default", Stages: []engine.Stage{engine.StagePreGet}}}
	fx.apply(t, f)
	if res, err := fx.e.Get(ctx, "t.d", engine.Keys{"id": "a"}); err != nil || res.Value.Int() != 99 {
		t.Fatalf("short circuit = %v, %v", res.Value, err)
	}
	g := scalar("t.g", engine.PrimitiveInt)
	g.Middlewares = []engine.MiddlewareRef{{Name: "wrongtype", Stages: []engine.Stage{engine.StagePreSet}}}
	fx.apply(t, g)
	if _, err := fx.e.Set(ctx, "t.g", engine.Keys{"id": "a"}, 1, time.Time{}); !errors.Is(err, engine.ErrTypeMismatch) {
		t.Fatalf("middleware changing the type: err = %v", err)
	}
}

func TestTimeout(t *testing.T) {
	resolver := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(ctx context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			<-ctx.Done() // a middleware that only stops when told
			return v, ctx.Err()
		}, nil
	})
	fx := newFixture(t, engine.WithMiddlewareResolver(resolver))
	for _, st := range []engine.Stage{engine.StagePreGet, engine.StagePostGet, engine.StagePreSet, engine.StagePostSet} {
		f := scalar("t.slow_"+strings.ToLower(st.String()), engine.PrimitiveInt)
		f.Timeout = 20 * time.Millisecond
		f.Middlewares = []engine.MiddlewareRef{{Name: "slow", Stages: []engine.Stage{st}}}
		fx.apply(t, f)
		_, errSet := fx.e.Set(ctx, f.FQN, engine.Keys{"id": "a"}, 1, time.Time{})
		_, errGet := fx.e.Get(ctx, f.FQN, engine.Keys{"id": "a"})
		err := errGet
		if st == engine.StagePreSet || st == engine.StagePostSet {
			err = errSet
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want DeadlineExceeded", st, err)
		}
	}
	// The engine keeps serving other features.
	fx.apply(t, scalar("t.ok", engine.PrimitiveInt))
	if _, err := fx.e.Set(ctx, "t.ok", engine.Keys{"id": "a"}, 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func TestApplyRules(t *testing.T) {
	fx := newFixture(t)
	a := scalar("t.a", engine.PrimitiveFloat)
	a.Dependencies = []string{"t.b"}
	fx.apply(t, a)
	b := scalar("t.b", engine.PrimitiveFloat)
	b.Dependencies = []string{"t.c"}
	fx.apply(t, b)
	c := scalar("t.c", engine.PrimitiveFloat)
	c.Dependencies = []string{"t.a"}
	err := fx.e.Apply(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "t.c → t.a → t.b → t.c") {
		t.Fatalf("cycle: err = %v", err)
	}
	changed := scalar("t.a", engine.PrimitiveInt)
	if err := fx.e.Apply(ctx, changed); !errors.Is(err, engine.ErrIncompatibleChange) {
		t.Fatalf("primitive change: err = %v", err)
	}
	a2 := a.Clone()
	a2.Freshness = 2 * time.Minute
	fx.apply(t, a2) // compatible change
	if fd, _ := fx.e.FeatureDescriptor(ctx, "t.a"); fd.Freshness != 2*time.Minute {
		t.Fatalf("replacement not applied")
	}
	if err := fx.e.Delete(ctx, "t.a"); err != nil {
		t.Fatal(err)
	}
	if err := fx.e.Delete(ctx, "t.a"); !errors.Is(err, engine.ErrFeatureNotFound) {
		t.Fatalf("double delete: %v", err)
	}
	fx.apply(t, changed) // after delete the type may change
	invalid := scalar("t.bad", engine.PrimitiveInt)
	invalid.Staleness = time.Second
	var fe *engine.FieldError
	if err := fx.e.Apply(ctx, invalid); !errors.As(err, &fe) || fe.Path != "spec.staleness" {
		t.Fatalf("invalid: err = %v", err)
	}
	if got := len(fx.e.Features()); got != 2 {
		t.Fatalf("features = %d, want 2", got)
	}
}

func TestConcurrentIncr(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("t.n", engine.PrimitiveInt))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := fx.e.Incr(ctx, "t.n", engine.Keys{"id": "a"}, 1, time.Time{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if res, _ := fx.e.Get(ctx, "t.n", engine.Keys{"id": "a"}); res.Value.Int() != 1600 {
		t.Fatalf("total = %v, want 1600", res.Value)
	}
}
