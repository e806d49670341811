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
