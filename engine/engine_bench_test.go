package engine_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// The benchmarks of BENCHMARKS.md: the engine over the in-process store.

func BenchmarkGetScalar(b *testing.B) {
	fx := newFixture(b, engine.WithNotifier(nil))
	fx.clock.Set(time.Now())
	fx.e = engine.New(fx.e.State(), engine.WithClock(time.Now), quiet)
	fx.apply(b, scalar("bench.score", engine.PrimitiveFloat))
	k := engine.Keys{"id": "user-42"}
	if _, err := fx.e.Set(ctx, "bench.score", k, 0.5, time.Time{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := fx.e.Get(ctx, "bench.score", k)
		if err != nil || !res.Found() {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkUpdateScalar(b *testing.B) {
	fx := newFixture(b)
	fx.e = engine.New(fx.e.State(), engine.WithClock(time.Now), quiet)
	fx.apply(b, scalar("bench.score", engine.PrimitiveFloat))
	k := engine.Keys{"id": "user-42"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fx.e.Update(ctx, "bench.score", k, 0.5, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

func windowBench(b *testing.B) (*fixture, engine.Keys) {
	fx := newFixture(b)
	fx.e = engine.New(fx.e.State(), engine.WithClock(time.Now), quiet)
	fx.apply(b, windowed("bench.amount"))
	k := engine.Keys{"id": "card-1"}
	now := time.Now()
	for i := range 60 { // one value in each of the 60 live buckets
		if _, err := fx.e.Update(ctx, "bench.amount", k, float64(i), now.Add(-time.Duration(i)*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	return fx, k
}

func BenchmarkUpdateWindowed(b *testing.B) {
	fx, k := windowBench(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fx.e.Update(ctx, "bench.amount", k, 12.5, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetWindowed60(b *testing.B) {
	fx, k := windowBench(b)
	b.ReportAllocs()
	for b.Loop() {
		res, err := fx.e.Get(ctx, "bench.amount", k)
		if err != nil || res.Value.Window().Count < 59 {
			b.Fatal(res, err)
		}
	}
}

// blockingState hides the in-process store's NonBlocking and WindowAggregate, as a networked
// State would not offer the first: the engine then arms the timeout timer on every call.
type blockingState struct{ engine.State }

// BenchmarkGetScalarTimed is BenchmarkGetScalar with the timeout timer armed: the cost the
// engine avoids for non-blocking stores (RATIONALE.md).
func BenchmarkGetScalarTimed(b *testing.B) {
	fx := newFixture(b)
	fx.e = engine.New(blockingState{fx.e.State()}, engine.WithClock(time.Now), quiet)
	fx.apply(b, scalar("bench.score", engine.PrimitiveFloat))
	k := engine.Keys{"id": "user-42"}
	if _, err := fx.e.Set(ctx, "bench.score", k, 0.5, time.Time{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := fx.e.Get(ctx, "bench.score", k)
		if err != nil || !res.Found() {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkGetWindowed60Copy is BenchmarkGetWindowed60 without the push-down: the buckets
// are copied out of the store and aggregated by the engine.
func BenchmarkGetWindowed60Copy(b *testing.B) {
	fx, k := windowBench(b)
	fx.e = engine.New(blockingState{fx.e.State()}, engine.WithClock(time.Now), quiet)
	fx.apply(b, windowed("bench.amount"))
	b.ReportAllocs()
	for b.Loop() {
		res, err := fx.e.Get(ctx, "bench.amount", k)
		if err != nil || res.Value.Window().Count < 59 {
			b.Fatal(res, err)
		}
	}
}

var quiet = engine.WithLogger(slog.New(slog.DiscardHandler))
