// Package autorefresh is a cache whose items a background loop keeps current, in the shape
// of Flyte's auto-refresh cache (flytestdlib/cache): items are added by GetOrCreate and read
// by Get without blocking on a refresh; every resync period (and whenever Refresh asks for
// an item) the items are snapshotted, cut into batches (CreateBatchesFunc) and handed to a
// bounded number of workers that call the caller's SyncFunc, each batch after a rate
// limiter lets it through; the SyncFunc says per item whether it changed (Update), stayed
// (Unchanged) or is gone (Delete). DeleteDelayed queues an item's removal for the next sync
// cycle: until then Get still returns it. The cache holds at most Size items. Counters of
// refreshes, hits, misses and failures are kept (Stats).
//
// Osprey uses it where state must be kept current without blocking readers: the feature
// registry on every replica (registry.Registry follows a shared Store with it).
package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Errors.
var (
	// ErrNotFound: Get found no item of the ID.
	ErrNotFound = errors.New("autorefresh: item not found")
	// ErrFull: GetOrCreate would exceed Config.Size.
	ErrFull = errors.New("autorefresh: cache full")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("autorefresh: already started")
)

// SyncAction is what the cache does with an item after a sync.
type SyncAction int

// Sync actions.
const (
	// Unchanged leaves the item as it is.
	Unchanged SyncAction = iota
	// Update replaces the item by the response's.
	Update
	// Delete removes the item.
	Delete
)

// Entry is one item of the cache with its ID.
type Entry[K comparable, V any] struct {
	ID   K
	Item V
}

// Batch is a set of items synced by one SyncFunc call.
type Batch[K comparable, V any] = []Entry[K, V]

// SyncResponse is the SyncFunc's verdict on one item of its batch. Items of the batch it
// does not mention are left unchanged.
type SyncResponse[K comparable, V any] struct {
	ID     K
	Item   V
	Action SyncAction
}

// SyncFunc refreshes a batch of items. It runs on a worker goroutine, at most
// Config.Parallelism at a time. An error counts the whole batch as failed and leaves its
// items unchanged (they are synced again at the next resync); responses returned with an
// error are still applied.
type SyncFunc[K comparable, V any] func(ctx context.Context, batch Batch[K, V]) ([]SyncResponse[K, V], error)

// CreateBatchesFunc cuts a snapshot of the items due for a sync into batches.
type CreateBatchesFunc[K comparable, V any] func(ctx context.Context, snapshot []Entry[K, V]) ([]Batch[K, V], error)

// SingleItemBatches makes one batch per item.
func SingleItemBatches[K comparable, V any](_ context.Context, snapshot []Entry[K, V]) ([]Batch[K, V], error) {
	out := make([]Batch[K, V], len(snapshot))
	for i, e := range snapshot {
		out[i] = Batch[K, V]{e}
	}
	return out, nil
}

// BatchesOf returns a CreateBatchesFunc that cuts snapshots into batches of at most n items.
func BatchesOf[K comparable, V any](n int) CreateBatchesFunc[K, V] {
	return func(_ context.Context, snapshot []Entry[K, V]) ([]Batch[K, V], error) {
		if n <= 0 {
			return nil, fmt.Errorf("autorefresh: batch size %d", n)
		}
		var out []Batch[K, V]
		for len(snapshot) > 0 {
			m := min(n, len(snapshot))
			out = append(out, snapshot[:m:m])
			snapshot = snapshot[m:]
		}
		return out, nil
	}
}

// Limiter paces the syncs: Wait returns when the next batch may be synced (or with ctx's
// error). *rate.Limiter satisfies it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Config configures a Cache. Sync is required; zero values take the defaults noted.
type Config[K comparable, V any] struct {
	// Name names the cache in errors.
	Name string
	// Sync refreshes a batch. Required.
	Sync SyncFunc[K, V]
	// CreateBatches cuts the items due into batches; nil is SingleItemBatches.
	CreateBatches CreateBatchesFunc[K, V]
	// Limiter paces the batches; nil is 100 batches a second, bursts of 10.
	Limiter Limiter
	// ResyncPeriod is how often every item is synced; 0 is 30 s.
	ResyncPeriod time.Duration
	// Parallelism bounds the batches synced at once; 0 is 1.
	Parallelism int
	// Size bounds the items held; 0 is 10,000.
	Size int
}

// Stats are the cache's counters since it was made.
type Stats struct {
	Refreshes       int64 // items synced by a SyncFunc call that succeeded
	RefreshFailures int64 // items of batches whose SyncFunc call failed
	Updates         int64 // items replaced by a sync (Update)
	Deletes         int64 // items removed by a sync (Delete) or a delayed delete
	Hits            int64 // Get and GetOrCreate calls that found the item
	Misses          int64 // Get calls that did not, and GetOrCreate calls that created it
}

// Cache is an auto-refreshing cache of items V by ID K. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	name     string
	sync     SyncFunc[K, V]
	batches  CreateBatchesFunc[K, V]
	limiter  Limiter
	period   time.Duration
	parallel int
	size     int

	mu       sync.Mutex
	items    map[K]V
	dirty    map[K]struct{} // due for a sync
	toDelete map[K]struct{} // removed at the next sync cycle
	wake     chan struct{}
	started  bool
	wg       sync.WaitGroup

	refreshes, failures, updates, deletes, hits, misses atomic.Int64
}

// New returns a Cache; call Start to run its background refresh.
func New[K comparable, V any](cfg Config[K, V]) (*Cache[K, V], error) {
	if cfg.Sync == nil {
		return nil, fmt.Errorf("autorefresh %q: Config.Sync is required", cfg.Name)
	}
	if cfg.ResyncPeriod < 0 || cfg.Parallelism < 0 || cfg.Size < 0 {
		return nil, fmt.Errorf("autorefresh %q: negative ResyncPeriod, Parallelism or Size", cfg.Name)
	}
	c := &Cache[K, V]{name: cfg.Name, sync: cfg.Sync, batches: cfg.CreateBatches, limiter: cfg.Limiter,
		period: cfg.ResyncPeriod, parallel: cfg.Parallelism, size: cfg.Size,
		items: map[K]V{}, dirty: map[K]struct{}{}, toDelete: map[K]struct{}{}, wake: make(chan struct{}, 1)}
	if c.batches == nil {
		c.batches = SingleItemBatches[K, V]
	}
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(100, 10)
	}
	if c.period == 0 {
		c.period = 30 * time.Second
	}
	if c.parallel == 0 {
		c.parallel = 1
	}
	if c.size == 0 {
		c.size = 10_000
	}
	return c, nil
}

// Start starts the background refresh, which runs until ctx is done (Wait waits for it to
// end). It returns ErrStarted when called again.
func (c *Cache[K, V]) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrStarted
	}
	c.started = true
	work := make(chan Batch[K, V])
	c.wg.Add(1 + c.parallel)
	go c.dispatch(ctx, work)
	for range c.parallel {
		go c.worker(ctx, work)
	}
	return nil
}

// Wait waits for the background refresh to end after Start's context is done.
func (c *Cache[K, V]) Wait() { c.wg.Wait() }

// Get returns the item of id, or ErrNotFound. It never waits for a sync.
func (c *Cache[K, V]) Get(id K) (V, error) {
	c.mu.Lock()
	v, ok := c.items[id]
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		var zero V
		return zero, fmt.Errorf("%w: %v", ErrNotFound, id)
	}
	c.hits.Add(1)
	return v, nil
}

// GetOrCreate returns the item of id, adding item under id when there is none (it is then
// synced at the next resync, or sooner with Refresh). A new item beyond Config.Size is
// ErrFull. An item queued for a delayed delete is returned, and stays queued.
func (c *Cache[K, V]) GetOrCreate(id K, item V) (V, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.items[id]; ok {
		c.hits.Add(1)
		return v, nil
	}
	if len(c.items) >= c.size {
		var zero V
		return zero, fmt.Errorf("%w (%s holds %d items)", ErrFull, c.name, c.size)
	}
	c.misses.Add(1)
	c.items[id] = item
	return item, nil
}

// DeleteDelayed queues the item of id for removal at the next sync cycle; until then Get
// and GetOrCreate return it as it was. An unknown id is not an error.
func (c *Cache[K, V]) DeleteDelayed(id K) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[id]; ok {
		c.toDelete[id] = struct{}{}
	}
	return nil
}

// Refresh asks for the items of ids to be synced now, ahead of the next resync (an
// extension of Flyte's shape, for change notifications). Unknown ids are ignored. It does
// not wait for the sync.
func (c *Cache[K, V]) Refresh(ids ...K) {
	c.mu.Lock()
	for _, id := range ids {
		if _, ok := c.items[id]; ok {
			c.dirty[id] = struct{}{}
		}
	}
	c.mu.Unlock()
	c.poke()
}

func (c *Cache[K, V]) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of items held.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Stats returns the counters.
func (c *Cache[K, V]) Stats() Stats {
	return Stats{Refreshes: c.refreshes.Load(), RefreshFailures: c.failures.Load(), Updates: c.updates.Load(),
		Deletes: c.deletes.Load(), Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// dispatch cuts the items due into batches and hands them to the workers: every item at
// each resync (after removing the delayed deletes), the items Refresh named when woken.
func (c *Cache[K, V]) dispatch(ctx context.Context, work chan<- Batch[K, V]) {
	defer c.wg.Done()
	defer close(work)
	tick := time.NewTicker(c.period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.mu.Lock()
			for id := range c.toDelete {
				delete(c.items, id)
				delete(c.dirty, id)
				c.deletes.Add(1)
			}
			clear(c.toDelete)
			for id := range c.items {
				c.dirty[id] = struct{}{}
			}
			c.mu.Unlock()
		case <-c.wake:
		}
		c.mu.Lock()
		snapshot := make([]Entry[K, V], 0, len(c.dirty))
		for id := range c.dirty {
			if v, ok := c.items[id]; ok {
				snapshot = append(snapshot, Entry[K, V]{id, v})
			}
		}
		clear(c.dirty)
		c.mu.Unlock()
		if len(snapshot) == 0 {
			continue
		}
		batches, err := c.batches(ctx, snapshot)
		if err != nil {
			c.failures.Add(int64(len(snapshot)))
			continue
		}
		for _, b := range batches {
			select {
			case work <- b:
			case <-ctx.Done():
				return
			}
		}
	}
}

// worker syncs batches, each after the limiter lets it through.
func (c *Cache[K, V]) worker(ctx context.Context, work <-chan Batch[K, V]) {
	defer c.wg.Done()
	for b := range work {
		if err := c.limiter.Wait(ctx); err != nil {
			return
		}
		resp, err := c.sync(ctx, b)
		if err != nil {
			c.failures.Add(int64(len(b)))
		} else {
			c.refreshes.Add(int64(len(b)))
		}
		c.apply(resp)
	}
}

// apply applies a SyncFunc's responses. An item removed while it was synced stays removed.
func (c *Cache[K, V]) apply(resp []SyncResponse[K, V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range resp {
		if _, ok := c.items[r.ID]; !ok {
			continue
		}
		switch r.Action {
		case Update:
			c.items[r.ID] = r.Item
			c.updates.Add(1)
		case Delete:
			delete(c.items, r.ID)
			delete(c.toDelete, r.ID)
			c.deletes.Add(1)
		}
	}
}
