package historian

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// collectLoop writes, every CollectInterval, the buckets that have left their windows as
// final records, read from the State while it still keeps them (engine.DeadGracePeriod).
func (h *Historian) collectLoop(ctx context.Context) {
	tick := time.NewTicker(h.cfg.CollectInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := h.Collect(ctx); err != nil && ctx.Err() == nil {
			h.log.LogAttrs(ctx, slog.LevelWarn, "historian: collecting closed buckets failed; trying again next time", slog.Any("error", err))
		}
	}
}

// Collect writes the final record of every bucket of every windowed feature that has left
// its window since the last Collect (all those the State still keeps, the first time: a
// restarted historian writes some again, which docs/history.md says how to drop).
func (h *Historian) Collect(ctx context.Context) error {
	h.collectMu.Lock()
	defer h.collectMu.Unlock()
	fence := h.fence.Load()
	written := h.now()
	byFeature := map[string][]Record{}
	last := map[string]int64{}
	for _, f := range h.cfg.Engine.Features() {
		if !f.Windowed() {
			continue
		}
		dead, err := h.cfg.Engine.DeadBuckets(ctx, f.FQN)
		if err != nil {
			return err
		}
		from, seen := h.collected[f.FQN]
		sort.Slice(dead, func(i, j int) bool { return dead[i].ID < dead[j].ID })
		for _, b := range dead {
			if seen && b.ID <= from || b.Count == 0 {
				continue
			}
			keys, err := keyValues(f, b.EncodedKeys)
			if err != nil {
				continue
			}
			byFeature[f.FQN] = append(byFeature[f.FQN], Record{Kind: KindBucketFinal, FQN: f.FQN, Primitive: f.Primitive,
				KeyNames: f.Keys, Keys: keys, EncodedKeys: b.EncodedKeys, Op: engine.OpUpdate, EventTime: b.Updated,
				WriteTime: written, Bucket: bucketRecord(f, b.Bucket, false), Fence: fence})
			last[f.FQN] = max(last[f.FQN], b.ID)
		}
	}
	objs, err := h.objectsOf(byFeature)
	if err != nil {
		return err
	}
	if err := h.putAll(ctx, objs, true); err != nil {
		return err
	}
	for fqn, id := range last {
		h.collected[fqn] = id
		h.finals.Add(int64(len(byFeature[fqn])))
	}
	return nil
}
