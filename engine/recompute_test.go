package engine_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// TestBackgroundRecompute: stale reads of many entities, many times each, recompute each
// address once; a recompute runs the feature's current program; a closing engine drops
// the recomputes not yet started and waits for those running.
func TestBackgroundRecompute(t *testing.T) {
	var runs atomic.Int64
	release := make(chan struct{})
	gate := atomic.Bool{} // while set, the program blocks until release is closed
	perKey := sync.Map{}
	counter := func(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		runs.Add(1)
		if gate.Load() {
			<-release
		}
		n, _ := perKey.LoadOrStore(call.Keys["id"], new(atomic.Int64))
		return engine.ProgramResult{Value: engine.Int(n.(*atomic.Int64).Add(1))}, nil
	}
	fx := newFixture(t, engine.WithPrograms(loader{"counter": counter}))
	f := scalar("t.count", engine.PrimitiveInt)
	f.Builder = engine.Builder{Kind: "wasm", Module: "counter"}
	fx.apply(t, f)

	const entities = 50
	key := func(i int) engine.Keys { return engine.Keys{"id": fmt.Sprint("e", i)} }
	for i := range entities { // first reads compute synchronously
		if got, err := fx.e.Get(ctx, "t.count", key(i)); err != nil || got.Value.Int() != 1 {
			t.Fatalf("first read of %d = %v, %v", i, got.Value, err)
		}
	}
	fx.clock.Add(2 * time.Minute) // stale, still servable

	gate.Store(true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range entities {
				got, err := fx.e.Get(ctx, "t.count", key(i))
				if err != nil || got.Value.Int() != 1 || got.Fresh {
					t.Errorf("stale read of %d = %v fresh=%v, %v; want the stale 1", i, got.Value, got.Fresh, err)
				}
			}
		})
	}
	wg.Wait()
	s := fx.e.RecomputeStats()
	if s.Queued != entities || s.Merged != 8*entities-entities || s.Dropped != 0 {
		t.Errorf("while blocked: %+v, want %d queued and the other reads merged", s, entities)
	}
	gate.Store(false)
	close(release)
	waitFor(t, "the recomputes", func() bool { return fx.e.RecomputeStats().Done == entities })
	if got := runs.Load(); got != 2*entities {
		t.Errorf("program ran %d times, want %d (once per entity per staleness)", got, 2*entities)
	}
	for i := range entities {
		if got, err := fx.e.Get(ctx, "t.count", key(i)); err != nil || got.Value.Int() != 2 || !got.Fresh {
			t.Fatalf("after recompute %d = %v fresh=%v, %v; want a fresh 2", i, got.Value, got.Fresh, err)
		}
	}
	if s := fx.e.RecomputeStats(); s.Pending != 0 || s.Failed != 0 {
		t.Errorf("after: %+v", s)
	}

	// Close: the recompute running finishes, the ones queued behind it are dropped.
	fx.clock.Add(2 * time.Minute)
	release = make(chan struct{})
	gate.Store(true)
	before := runs.Load()
	for i := range entities {
		_, _ = fx.e.Get(ctx, "t.count", key(i))
	}
	waitFor(t, "the first recomputes to start", func() bool { return runs.Load() > before })
	closed := make(chan struct{})
	go func() { _ = fx.e.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a recompute was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if ran := runs.Load() - before; ran >= entities {
		t.Errorf("Close ran every queued recompute (%d); it should drop those not started", ran)
	}
	if _, err := fx.e.Get(ctx, "t.count", key(0)); err != nil {
		t.Fatalf("read after Close: %v", err)
	}
	if s := fx.e.RecomputeStats(); s.Queued != 2*entities {
		t.Errorf("a closed engine queued more recomputes: %+v", s)
	}
}
