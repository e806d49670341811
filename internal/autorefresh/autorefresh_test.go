package autorefresh_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/internal/autorefresh"
)

// source is the external truth the cache follows: a version per ID, or absent.
type source struct {
	mu       sync.Mutex
	versions map[string]int
	calls    [][]string // the IDs of every batch synced
	fail     bool
}

func (s *source) set(id string, v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v < 0 {
		delete(s.versions, id)
	} else {
		s.versions[id] = v
	}
}

func (s *source) sync(_ context.Context, b autorefresh.Batch[string, int]) ([]autorefresh.SyncResponse[string, int], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, e := range b {
		ids = append(ids, e.ID)
	}
	s.calls = append(s.calls, ids)
	if s.fail {
		return nil, errors.New("source down")
	}
	var out []autorefresh.SyncResponse[string, int]
	for _, e := range b {
		v, ok := s.versions[e.ID]
		switch {
		case !ok:
			out = append(out, autorefresh.SyncResponse[string, int]{ID: e.ID, Action: autorefresh.Delete})
		case v != e.Item:
			out = append(out, autorefresh.SyncResponse[string, int]{ID: e.ID, Item: v, Action: autorefresh.Update})
		}
	}
	return out, nil
}

// eventually polls cond until it holds or the (generous) bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newCache(t *testing.T, s *source, cfg autorefresh.Config[string, int]) *autorefresh.Cache[string, int] {
	t.Helper()
	cfg.Sync = s.sync
	c, err := autorefresh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); c.Wait() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); !errors.Is(err, autorefresh.ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	return c
}

func get(c *autorefresh.Cache[string, int], id string) (int, bool) {
	v, err := c.Get(id)
	return v, err == nil
}

func TestCache(t *testing.T) {
	tests := []struct {
		name string
		cfg  autorefresh.Config[string, int]
		// kick makes the cache sync "a" soon: a short resync period, or Refresh.
		refresh bool
	}{
		{name: "resync", cfg: autorefresh.Config[string, int]{ResyncPeriod: 5 * time.Millisecond}},
		{name: "refresh", cfg: autorefresh.Config[string, int]{ResyncPeriod: time.Hour}, refresh: true},
		{name: "batched parallel", cfg: autorefresh.Config[string, int]{ResyncPeriod: 5 * time.Millisecond,
			CreateBatches: autorefresh.BatchesOf[string, int](2), Parallelism: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &source{versions: map[string]int{"a": 1, "b": 1, "c": 1}}
			c := newCache(t, s, tc.cfg)
			for _, id := range []string{"a", "b", "c"} {
				if v, err := c.GetOrCreate(id, 0); err != nil || v != 0 {
					t.Fatalf("GetOrCreate(%s) = %v, %v", id, v, err)
				}
			}
			if v, _ := c.GetOrCreate("a", 7); v != 0 {
				t.Fatalf("GetOrCreate of a held item returned %d, want the held 0", v)
			}
			kick := func(ids ...string) {
				if tc.refresh {
					c.Refresh(ids...)
				}
			}
			kick("a", "b", "c")
			eventually(t, "a, b, c synced to 1", func() bool {
				a, _ := get(c, "a")
				b, _ := get(c, "b")
				cc, _ := get(c, "c")
				return a == 1 && b == 1 && cc == 1
			})
			s.set("b", 2)
			s.set("c", -1)
			kick("b", "c")
			eventually(t, "b updated, c deleted", func() bool {
				b, _ := get(c, "b")
				_, hasC := get(c, "c")
				return b == 2 && !hasC
			})
			st := c.Stats()
			if st.Refreshes == 0 || st.Updates < 4 || st.Deletes != 1 || st.Hits == 0 || st.Misses == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestDeleteDelayed(t *testing.T) {
	s := &source{versions: map[string]int{"a": 1}}
	c := newCache(t, s, autorefresh.Config[string, int]{ResyncPeriod: 5 * time.Millisecond})
	if _, err := c.GetOrCreate("a", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDelayed("a"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDelayed("unknown"); err != nil {
		t.Fatal(err)
	}
	// The source still has a, so only the delayed delete can remove it.
	eventually(t, "a deleted at a sync cycle", func() bool { _, ok := get(c, "a"); return !ok })
	if _, err := c.Get("a"); !errors.Is(err, autorefresh.ErrNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
}

func TestDeleteDelayedKeepsItemUntilCycle(t *testing.T) {
	s := &source{versions: map[string]int{"a": 1}}
	c := newCache(t, s, autorefresh.Config[string, int]{ResyncPeriod: time.Hour})
	if _, err := c.GetOrCreate("a", 1); err != nil {
		t.Fatal(err)
	}
	c.DeleteDelayed("a")
	c.Refresh("a") // a refresh is not a resync cycle: the item stays
	eventually(t, "a refreshed", func() bool { return c.Stats().Refreshes >= 1 })
	if v, ok := get(c, "a"); !ok || v != 1 {
		t.Errorf("Get before the next cycle = %d, %v", v, ok)
	}
}

func TestSizeAndFailures(t *testing.T) {
	s := &source{versions: map[string]int{"a": 1}, fail: true}
	c := newCache(t, s, autorefresh.Config[string, int]{ResyncPeriod: time.Hour, Size: 1})
	if _, err := c.GetOrCreate("a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetOrCreate("b", 0); !errors.Is(err, autorefresh.ErrFull) {
		t.Errorf("GetOrCreate beyond Size: %v", err)
	}
	c.Refresh("a", "unknown")
	eventually(t, "a failed sync counted", func() bool { return c.Stats().RefreshFailures == 1 })
	if v, _ := get(c, "a"); v != 0 {
		t.Errorf("a failed sync changed the item to %d", v)
	}
	s.mu.Lock()
	calls := slices.Clone(s.calls)
	s.mu.Unlock()
	if len(calls) != 1 || !slices.Equal(calls[0], []string{"a"}) {
		t.Errorf("synced batches %v, want [[a]]", calls)
	}
	if c.Len() != 1 {
		t.Errorf("Len %d", c.Len())
	}
}

func TestNewRejects(t *testing.T) {
	tests := map[string]autorefresh.Config[string, int]{
		"no sync":         {},
		"negative period": {Sync: (&source{}).sync, ResyncPeriod: -1},
		"negative size":   {Sync: (&source{}).sync, Size: -1},
	}
	for name, cfg := range tests {
		if _, err := autorefresh.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
