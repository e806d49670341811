package registry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/internal/redistest"
	redisstore "github.com/osprey-ml/osprey/plugins/registrystore/redis"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/registry"
)

// deaf is a SharedStore whose change notifications never arrive: its registry converges
// by listing the versions alone (a lost Pub/Sub message, a replica that was away).
type deaf struct {
	*redisstore.Store
	ch chan registry.Key
}

func (d deaf) Changes() <-chan registry.Key { return d.ch }

// replica is one registry over a shared Redis store, with an engine of its own.
type replica struct {
	eng *engine.Engine
	reg *registry.Registry
}

func newReplica(t *testing.T, addr string, hints bool, syncPeriod time.Duration) *replica {
	t.Helper()
	ctx := context.Background()
	s, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{addr}, Prefix: "t:" + t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	var store registry.SharedStore = s
	if !hints {
		d := deaf{Store: s, ch: make(chan registry.Key)}
		store = d
		t.Cleanup(func() { close(d.ch) })
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &replica{eng: engine.New(memory.New(), engine.WithLogger(log))}
	r.reg, err = registry.New(registry.Config{Engine: r.eng, Store: store, Logger: log,
		SyncPeriod: syncPeriod, ResyncPeriod: syncPeriod})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.reg.Close()
		s.Close()
		r.eng.Close()
	})
	return r
}

// has returns the manifest-relevant view of the replica's engine: "Kind fqn freshness".
func (r *replica) has() []string {
	var out []string
	for _, ds := range r.eng.DataSources() {
		out = append(out, "DataSource "+ds.FQN)
	}
	for _, f := range r.eng.Features() {
		out = append(out, "Feature "+f.FQN+" "+f.Freshness.String())
	}
	return out
}

func waitFor(t *testing.T, r *replica, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(r.has(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: the replica holds %q, want %q", r.has(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedConverges: a replica converges on another's apply, replace and delete, by
// notification or, when notifications are lost, by listing; a replica started late
// restores what is stored.
func TestSharedConverges(t *testing.T) {
	srv := redistest.Standalone(t)
	for _, tc := range []struct {
		name  string
		hints bool
		sync  time.Duration
	}{
		{"notified", true, time.Hour}, // only the notification can make it converge
		{"listed", false, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := newReplica(t, srv.Addr(), true, time.Hour)
			b := newReplica(t, srv.Addr(), tc.hints, tc.sync)
			if _, err := a.reg.Apply(ctx, parse(t, docs(source, feature("f", "  dataSource: t.clicks\n"))), nil, registry.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, b, []string{"DataSource t.clicks", "Feature t.f 1m0s"})
			replaced := strings.Replace(feature("f", "  dataSource: t.clicks\n"), "freshness: 1m", "freshness: 2m", 1)
			if _, err := a.reg.Apply(ctx, parse(t, replaced), nil, registry.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, b, []string{"DataSource t.clicks", "Feature t.f 2m0s"})
			// b can change it in turn, having caught up: its version is the current one.
			if _, err := b.reg.Apply(ctx, parse(t, feature("g", "")), nil, registry.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, a, []string{"DataSource t.clicks", "Feature t.f 2m0s", "Feature t.g 1m0s"})
			if _, err := a.reg.Delete(ctx, "t.f"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.reg.Delete(ctx, "t.clicks"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, b, []string{"Feature t.g 1m0s"})
			late := newReplica(t, srv.Addr(), tc.hints, tc.sync)
			waitFor(t, late, []string{"Feature t.g 1m0s"})
			if st := b.reg.FollowStats(); st.Refreshes == 0 {
				t.Errorf("follower stats %+v", st)
			}
			// Clean up for the next case (same prefix per subtest name, but be tidy).
			if _, err := b.reg.Delete(ctx, "t.g"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSharedConflict: two replicas applying the same object at once end with one winner:
// the other's apply fails with ErrConflict and is undone, never a mix.
func TestSharedConflict(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		concurrent bool
	}{
		{"one after the other", false},
		{"at once", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Neither replica hears of the other (no notification, no listing within the
			// test): each applies at the version it last saw.
			a := newReplica(t, srv.Addr(), false, time.Hour)
			b := newReplica(t, srv.Addr(), false, time.Hour)
			docA := feature("x", "")
			docB := strings.Replace(feature("x", ""), "freshness: 1m", "freshness: 3m", 1)
			reps := []*replica{a, b}
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i, doc := range []string{docA, docB} {
				apply := func() { _, errs[i] = reps[i].reg.Apply(ctx, parse(t, doc), nil, registry.ApplyOptions{}) }
				if tc.concurrent {
					wg.Go(apply)
				} else {
					apply()
				}
			}
			wg.Wait()
			var winner, loser *replica
			for i, err := range errs {
				switch {
				case err == nil && winner == nil:
					winner = reps[i]
				case errors.Is(err, registry.ErrConflict):
					loser = reps[i]
				default:
					t.Fatalf("replica %d: %v", i, err)
				}
			}
			if winner == nil || loser == nil {
				t.Fatalf("errors %v: want one winner and one ErrConflict", errs)
			}
			if got := loser.has(); len(got) != 0 {
				t.Errorf("the loser's apply was not undone: %v", got)
			}
			want := winner.has()
			late := newReplica(t, srv.Addr(), false, time.Hour)
			if got := late.has(); !slices.Equal(got, want) {
				t.Errorf("the store holds %v, the winner %v", got, want)
			}
			if _, err := winner.reg.Delete(ctx, "t.x"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// newWasmReplica is newReplica with a real Wasm host (host.New) loading its programs.
func newWasmReplica(t *testing.T, addr string) *replica {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := host.New(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{addr}, Prefix: "t:" + t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{eng: engine.New(memory.New(), engine.WithLogger(log), engine.WithPrograms(h))}
	r.reg, err = registry.New(registry.Config{Engine: r.eng, Modules: h, Store: s, Logger: log,
		SyncPeriod: 20 * time.Millisecond, ResyncPeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.reg.Restore(ctx); err != nil { // its Retain (of nothing) starts the host's sweeps
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.reg.Close()
		s.Close()
		r.eng.Close()
		h.Close(context.Background())
	})
	return r
}

// TestSharedFollowedModuleStaysLoaded: a Wasm feature applied on one replica runs on the
// replica that followed the change from the shared store. The follower's host must keep the
// module the change applied: the apply's Hold on it was released before the Retain naming
// it, and the sweep in between released it (the follower's calls then failed with "module not
// found: the module was released").
func TestSharedFollowedModuleStaysLoaded(t *testing.T) {
	srv := redistest.Standalone(t)
	noop, err := os.ReadFile("../server/testdata/noop.wasm") // a program that returns int 42
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	leader := newWasmReplica(t, srv.Addr())
	follower := newWasmReplica(t, srv.Addr())
	ms := parse(t, docs(source, feature("answer", "  builder: {module: noop.wasm}\n")))
	if _, err := leader.reg.Apply(ctx, ms, map[string][]byte{"noop.wasm": noop}, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, follower, []string{"DataSource t.clicks", "Feature t.answer 1m0s"})
	for name, r := range map[string]*replica{"leader": leader, "follower": follower} {
		got, err := r.eng.Get(ctx, "t.answer", engine.Keys{"id": "u1"})
		if err != nil || got.Value.Int() != 42 {
			t.Fatalf("the %s's Get of the followed Wasm feature: %v, %v; want 42", name, got.Value, err)
		}
	}
}
