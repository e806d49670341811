package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// noBatch hides a State's BatchReader (and every other optional interface).
type noBatch struct{ engine.State }

// TestPrefetchAgreesWithGet checks that every cell of a prefetched GetMany is served exactly
// as its Get would be (values, freshness, staleness, versions, windows, encodings, errors),
// that cells with get middlewares or bad selectors are left to Get, and that a State
// without batches prefetches nothing.
func TestPrefetchAgreesWithGet(t *testing.T) {
	plus1 := engine.Middleware(func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
		if v.IsNull() {
			return v, nil
		}
		return engine.Int(v.Int() + 1), nil
	})
	resolver := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return plus1, nil
	})
	fx := newFixture(t, engine.WithMiddlewareResolver(resolver))
	cur := scalar("b.cur", engine.PrimitiveInt)
	cur.KeepPrevious = &engine.KeepPrevious{Versions: 2, Over: time.Hour}
	str := scalar("b.str", engine.PrimitiveString)
	win := windowed("b.win")
	mw := scalar("b.mw", engine.PrimitiveInt)
	mw.Middlewares = []engine.MiddlewareRef{{Name: "plus1", Stages: []engine.Stage{engine.StagePostGet}}}
	for _, f := range []*engine.Feature{cur, str, win, mw} {
		fx.apply(t, f)
	}
	write := func(fqn, id string, v any, age time.Duration) {
		t.Helper()
		if _, err := fx.e.Set(ctx, fqn, engine.Keys{"id": id}, v, t0.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	write("b.cur", "a", 1, 50*time.Minute)
	write("b.cur", "a", 2, 10*time.Minute)
	write("b.cur", "a", 3, 10*time.Second)
	write("b.cur", "b", 7, 2*time.Hour) // stale
	write("b.str", "a", "hello", 2*time.Minute)
	write("b.mw", "a", 40, time.Second)
	for i, x := range []float64{1, 5, -2} {
		write("b.win", "a", x, time.Duration(i)*7*time.Minute)
	}
	write("b.win", "b", 4, 70*time.Minute) // outside the window

	sels := []string{"b.cur", "b.cur@-1", "b.cur@-2", "b.str", "b.win", "b.win+avg", "b.win+max", "b.mw",
		"b.missing", "b.str+sum", "b.cur@-9", "not a selector!"}
	ents := []engine.Keys{{"id": "a"}, {"id": "b"}, {"id": "nobody"}, {"other": "x"}}
	left := map[string]bool{"b.mw": true, "b.missing": true, "b.str+sum": true, "b.cur@-9": true, "not a selector!": true}

	tests := []struct {
		name    string
		e       *engine.Engine
		batched int // cells prefetched
	}{
		{"batch reader", fx.e, (len(sels) - len(left)) * (len(ents) - 1)},
		{"no batch reader", engine.New(noBatch{fx.e.State()}, engine.WithClock(fx.clock.Now), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []*engine.Feature{cur, str, win} {
				if _, err := tt.e.FeatureDescriptor(ctx, f.FQN); err != nil {
					if err := tt.e.Apply(ctx, f); err != nil {
						t.Fatal(err)
					}
				}
			}
			pf := tt.e.Prefetch(ctx, sels, ents)
			if pf.Len() != tt.batched {
				t.Errorf("Prefetch batched %d cells, want %d", pf.Len(), tt.batched)
			}
			for i, keys := range ents {
				for j, sel := range sels {
					got, ok, gotErr := pf.Get(ctx, i, j)
					want, wantErr := tt.e.Get(ctx, sel, keys)
					if !ok {
						if tt.batched > 0 && !left[sel] && len(keys) == 1 && keys["id"] != "" {
							t.Errorf("%s %v: left out of the batch", sel, keys)
						}
						continue
					}
					if left[sel] {
						t.Errorf("%s %v: batched, want it left to Get", sel, keys)
					}
					if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || got.FQN != want.FQN || !got.Value.Equal(want.Value) ||
						!got.Timestamp.Equal(want.Timestamp) || got.Fresh != want.Fresh {
						t.Errorf("%s %v: prefetched %+v, %v; Get %+v, %v", sel, keys, got, gotErr, want, wantErr)
					}
				}
			}
		})
	}
}
