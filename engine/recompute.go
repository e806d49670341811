package engine

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/osprey-ml/osprey/internal/autorefresh"
)

// Background recompute of stale on-request values (stale-while-revalidate). A read that
// finds a value older than the feature's freshness but younger than its staleness serves it
// and asks for a recompute of its address (FQN and entity); the recomputes are items of an
// auto-refresh cache (internal/autorefresh, Flyte's shape): one pending item per address,
// however many reads ask, at most MaxPendingRecomputes pending, RecomputeParallelism
// workers computing them, each item removed once its recompute has run, whether it succeeded
// or not (a failure is logged; the next stale read asks again).

const (
	// MaxPendingRecomputes bounds the addresses waiting for a background recompute; a stale
	// read that finds the queue full serves the stale value without queueing one (the next
	// read tries again).
	MaxPendingRecomputes = 10_000
	// RecomputeParallelism is how many background recomputes run at once.
	RecomputeParallelism = 16

	// Items leave the queue when their recompute has run, so a resync finds only those
	// queued since the last wake-up: it is a safety net, not a schedule.
	recomputeResync = time.Minute
)

// RecomputeStats are the counters of the background recomputes of stale on-request values
// since the engine was made.
type RecomputeStats struct {
	Queued  int64 // addresses queued for a recompute
	Merged  int64 // stale reads whose address was already queued
	Dropped int64 // stale reads that found the queue full
	Done    int64 // recomputes that ran (Failed of them failed)
	Failed  int64
	Pending int // addresses queued now
}

// recompute is one pending background recompute.
type recompute struct {
	fqn   string
	keys  Keys
	ekeys string
	ran   atomic.Bool // a resync may hand an item out twice; it runs once
}

// recomputes is the engine's queue of background recomputes. Its cache's goroutines start
// with the first recompute, so an engine that never serves a stale on-request value runs
// none.
type recomputes struct {
	once   sync.Once
	cache  *autorefresh.Cache[string, *recompute]
	cancel context.CancelFunc

	mu      sync.Mutex // orders queueing against close
	closed  atomic.Bool
	pending sync.WaitGroup // one per queued item, done when it has run

	dropped, done, failed atomic.Int64
}

// startRecomputes makes and starts the cache. Its configuration is constant, so New cannot
// fail; if it did, recomputes stay off (stale values are served until they expire).
func (e *Engine) startRecomputes() {
	r := &e.recomputes
	cache, err := autorefresh.New(autorefresh.Config[string, *recompute]{
		Name:         "recompute",
		Sync:         e.syncRecomputes,
		Limiter:      rate.NewLimiter(rate.Inf, 0),
		Parallelism:  RecomputeParallelism,
		Size:         MaxPendingRecomputes,
		ResyncPeriod: recomputeResync,
	})
	if err != nil {
		e.log.Error("background recomputes are off", slog.Any("error", err))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := cache.Start(ctx); err != nil {
		cancel()
		e.log.Error("background recomputes are off", slog.Any("error", err))
		return
	}
	r.cache, r.cancel = cache, cancel
}

// refresh queues a background recompute of a stale on-request value.
func (e *Engine) refresh(p *plan, keys Keys, ekeys string) {
	r := &e.recomputes
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return
	}
	r.once.Do(e.startRecomputes)
	if r.cache == nil {
		r.dropped.Add(1)
		return
	}
	item := &recompute{fqn: p.f.FQN, keys: maps.Clone(keys), ekeys: ekeys}
	got, err := r.cache.GetOrCreate(p.f.FQN+"\x00"+ekeys, item)
	switch {
	case err != nil:
		r.dropped.Add(1)
		return
	case got != item: // already queued
		return
	}
	r.pending.Add(1)
	r.cache.Refresh(p.f.FQN + "\x00" + ekeys)
}

// syncRecomputes runs a batch of recomputes with the features' current plans (a feature
// replaced since the read is recomputed by its new program; a deleted one is not) and
// removes them from the queue.
func (e *Engine) syncRecomputes(_ context.Context, batch autorefresh.Batch[string, *recompute]) ([]autorefresh.SyncResponse[string, *recompute], error) {
	r := &e.recomputes
	out := make([]autorefresh.SyncResponse[string, *recompute], 0, len(batch))
	for _, it := range batch {
		if it.Item.ran.Swap(true) {
			continue
		}
		// A closing engine runs no more recomputes; those already running finish.
		if p, ok := (*e.features.Load())[it.Item.fqn]; ok && p.onRequest && !r.closed.Load() {
			// Each recompute is bounded by its feature's timeout and runs to its end even
			// while the engine closes (Close waits for it).
			ctx, cancel := context.WithTimeout(context.Background(), p.f.Timeout)
			if _, err := e.compute(ctx, p, it.Item.keys, it.Item.ekeys, e.now()); err != nil {
				r.failed.Add(1)
				e.log.LogAttrs(ctx, slog.LevelWarn, "background recompute failed", slog.String("fqn", p.f.FQN), slog.Any("error", err))
			}
			cancel()
		}
		r.done.Add(1)
		out = append(out, autorefresh.SyncResponse[string, *recompute]{ID: it.ID, Action: autorefresh.Delete})
		r.pending.Done()
	}
	return out, nil
}

// closeRecomputes stops queueing recomputes, drops those queued but not started, waits for
// those running, and stops the cache's goroutines.
func (e *Engine) closeRecomputes() {
	r := &e.recomputes
	r.mu.Lock()
	r.closed.Store(true)
	r.mu.Unlock()
	r.pending.Wait()
	if r.cancel != nil {
		r.cancel()
		r.cache.Wait()
	}
}

// RecomputeStats returns the counters of the background recomputes.
func (e *Engine) RecomputeStats() RecomputeStats {
	r := &e.recomputes
	r.mu.Lock()
	cache := r.cache
	r.mu.Unlock()
	s := RecomputeStats{Dropped: r.dropped.Load(), Done: r.done.Load(), Failed: r.failed.Load()}
	if cache != nil {
		cs := cache.Stats()
		s.Queued, s.Merged, s.Pending = cs.Misses, cs.Hits, cache.Len()
	}
	return s
}
