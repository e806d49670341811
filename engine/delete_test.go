package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// TestDeleteDropsValues: a feature deleted and applied again — with another granularity —
// starts empty, rather than misreading the old buckets.
func TestDeleteDropsValues(t *testing.T) {
	fx := newFixture(t)
	keys := engine.Keys{"id": "c1"}
	w := windowed("t.w")
	fx.apply(t, w)
	s := scalar("t.s", engine.PrimitiveInt)
	fx.apply(t, s)
	for i := range 3 {
		if _, err := fx.e.Update(ctx, "t.w", keys, 10.0, t0.Add(-time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.e.Set(ctx, "t.s", keys, 7, t0); err != nil {
		t.Fatal(err)
	}
	for _, fqn := range []string{"t.w", "t.s"} {
		if err := fx.e.Delete(ctx, fqn); err != nil {
			t.Fatal(err)
		}
	}

	w2 := windowed("t.w")
	w2.Granularity = 5 * time.Minute
	fx.apply(t, w2)
	fx.apply(t, scalar("t.s", engine.PrimitiveInt))
	if r, err := fx.e.Get(ctx, "t.w+count", keys); err != nil || r.Found() && r.Value.Window().Count != 0 {
		t.Errorf("the re-applied window reads %v (%v): want nothing", r.Value, err)
	}
	if r, err := fx.e.Get(ctx, "t.s", keys); err != nil || r.Found() {
		t.Errorf("the re-applied scalar reads %v (%v): want nothing", r.Value, err)
	}
}

// failingDrop is a State whose Drop fails.
type failingDrop struct{ engine.State }

func (failingDrop) Drop(context.Context, *engine.Feature) error {
	return errors.New("store unreachable")
}

// TestDeleteDropFails: the feature is deleted all the same, and the error says what was not
// done.
func TestDeleteDropFails(t *testing.T) {
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	e := engine.New(failingDrop{st}, engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := e.Apply(ctx, scalar("t.s", engine.PrimitiveInt)); err != nil {
		t.Fatal(err)
	}
	err := e.Delete(ctx, "t.s")
	if err == nil || !strings.Contains(err.Error(), "the feature is deleted, but its stored values were not dropped") ||
		!strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := e.FeatureDescriptor(ctx, "t.s"); !errors.Is(err, engine.ErrFeatureNotFound) {
		t.Errorf("the feature is still there: %v", err)
	}
}

// sharedState is a memory State that says it is shared by replicas (engine.Sharer).
type sharedState struct{ *memory.State }

func (sharedState) Shared() bool { return true }

// TestForget: a replica that learns of another's delete drops the values only when the
// State is its own; over a shared State the deleting replica dropped them, and the values a
// re-created feature has written since are kept.
func TestForget(t *testing.T) {
	keys := engine.Keys{"id": "c1"}
	for _, tc := range []struct {
		name     string
		shared   bool
		wantKept bool
	}{
		{"own state: dropped as by Delete", false, false},
		{"shared state: left to the deleting replica", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st engine.State = memory.New()
			if tc.shared {
				st = sharedState{st.(*memory.State)}
			}
			e := engine.New(st, engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			f := scalar("t.s", engine.PrimitiveInt)
			if err := e.Apply(ctx, f); err != nil {
				t.Fatal(err)
			}
			// What another replica's re-created feature wrote to the shared store.
			if _, err := e.Set(ctx, "t.s", keys, 7, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := e.Forget(ctx, "t.s"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Get(ctx, "t.s", keys); !errors.Is(err, engine.ErrFeatureNotFound) {
				t.Fatalf("read after Forget: %v, want ErrFeatureNotFound", err)
			}
			if err := e.Apply(ctx, f); err != nil {
				t.Fatal(err)
			}
			r, err := e.Get(ctx, "t.s", keys)
			if err != nil || r.Found() != tc.wantKept {
				t.Fatalf("after Forget and apply: found=%v (%v), want found=%v", r.Found(), err, tc.wantKept)
			}
			if err := e.Forget(ctx, "t.nope"); !errors.Is(err, engine.ErrFeatureNotFound) {
				t.Fatalf("Forget of an unknown feature: %v", err)
			}
		})
	}
}
