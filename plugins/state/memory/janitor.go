package memory

import (
	"context"
	"log/slog"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// janitor sweeps every interval until Close.
func (s *State) janitor(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var scratch []entityRef
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			start := time.Now()
			removed := s.sweep(&scratch)
			if removed > 0 {
				s.log.LogAttrs(context.Background(), slog.LevelDebug, "memory state: removed expired entities",
					slog.Int("removed", removed), slog.Duration("took", time.Since(start)))
			}
		}
	}
}

// entityRef names an entity within a shard.
type entityRef struct{ fqn, keys string }

// sweep deletes the entities with nothing left to serve and drops expired buckets, as of
// the State's clock, and returns the number of entities deleted. scratch is reused
// between sweeps.
//
// Each shard is scanned under its read lock, so reads and writes to it carry on; the write
// lock is held only to delete what the scan found, after checking it again (a write may
// have revived it in between).
func (s *State) sweep(scratch *[]entityRef) int {
	now := s.now().UnixNano()
	removed := 0
	for i := range s.shards {
		removed += s.shards[i].sweep(now, scratch)
	}
	return removed
}

func (sh *shard) sweep(now int64, scratch *[]entityRef) int {
	found := (*scratch)[:0]
	sh.mu.RLock()
	for fqn, fe := range sh.features {
		for keys, e := range fe.entries {
			if e.dead(fe.f, now) || e.hasExpiredBuckets(fe.f, now) {
				found = append(found, entityRef{fqn, keys})
			}
		}
	}
	sh.mu.RUnlock()
	if len(found) == 0 {
		return 0
	}
	removed := 0
	sh.mu.Lock()
	for _, r := range found {
		fe := sh.features[r.fqn]
		if fe == nil {
			continue
		}
		e := fe.entries[r.keys]
		if e == nil {
			continue
		}
		if e.dead(fe.f, now) {
			delete(fe.entries, r.keys)
			removed++
			if len(fe.entries) == 0 {
				delete(sh.features, r.fqn)
			}
		} else if fe.f.Windowed() {
			e.dropBuckets(firstKept(now, fe.f))
		}
	}
	sh.mu.Unlock()
	clear(found) // do not keep deleted keys alive until the next sweep
	*scratch = found[:0]
	return removed
}

// dead reports whether nothing of the entity can be served any more, nor become a
// servable previous value: the current value is older than staleness (and than
// KeepPrevious.Over, as it may still be pushed into the history), every previous value is
// older than Over, and every bucket has expired.
func (e *entry) dead(f *engine.Feature, now int64) bool {
	kp := f.KeepPrevious
	keep := int64(f.Staleness)
	if kp != nil {
		keep = max(keep, int64(kp.Over))
	}
	if !e.cur.IsNull() && e.ts > now-keep {
		return false
	}
	if kp != nil {
		for _, p := range e.hist {
			if p.ts > now-int64(kp.Over) {
				return false
			}
		}
	}
	if n := len(e.buckets); n > 0 && f.Windowed() && e.buckets[n-1].ID >= firstKept(now, f) {
		return false
	}
	for _, sv := range e.storage { // its program's storage, until every value expired
		if sv.Expires.IsZero() || sv.Expires.UnixNano() > now {
			return false
		}
	}
	return true
}

// hasExpiredBuckets reports whether the entity holds a bucket that has expired.
func (e *entry) hasExpiredBuckets(f *engine.Feature, now int64) bool {
	return f.Windowed() && len(e.buckets) > 0 && e.buckets[0].ID < firstKept(now, f)
}
