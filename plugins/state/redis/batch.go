package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
)

// ReadBatch reads many cells in one pipeline (engine.BatchReader): the GET of :v, LINDEX of
// :p or GET of :w that each single read sends, all at once. On a Cluster, go-redis splits
// the pipeline per node and sends the parts in parallel, so a batch costs one round trip
// per node it touches. Each cell is decoded as its single read (Get, WindowAggregate) decodes
// it, with expiry as of when the pipeline came back; a cell a single read would refuse
// fails alone, without a command, and a failure of the pipeline fails the cells it carried.
func (s *State) ReadBatch(ctx context.Context, reads []engine.Read) []engine.ReadResult {
	out := make([]engine.ReadResult, len(reads))
	cmds := make([]*goredis.StringCmd, len(reads))
	limits := make([]time.Duration, len(reads))
	firsts := make([]int64, len(reads))
	now := time.Now()
	pipe := s.c.Pipeline()
	for i, r := range reads {
		f := r.Feature
		tag := entityTag(f.FQN, r.Keys)
		if f.Windowed() {
			if firsts[i] = max(r.Span.First, firstKept(now, f)); firsts[i] <= r.Span.Last {
				cmds[i] = pipe.Get(ctx, tag+sufWindow)
			}
			continue
		}
		if err := check("get", f, false); err != nil {
			out[i].Err = err
			continue
		}
		switch kp := f.KeepPrevious; {
		case r.Version < 0:
			out[i].Err = fmt.Errorf("redis: get %s: %w: version %d is negative", f.FQN, engine.ErrVersionOutOfRange, r.Version)
		case r.Version == 0:
			limits[i] = f.Staleness
			cmds[i] = pipe.Get(ctx, tag+sufValue)
		case kp != nil && r.Version <= kp.Versions:
			limits[i] = kp.Over
			cmds[i] = pipe.LIndex(ctx, tag+sufPrev, int64(r.Version-1))
		}
	}
	if pipe.Len() > 0 {
		// Exec's error is the first command's; each command carries its own (goredis.Nil
		// for an absent key, the network error for all of them when the pipeline failed).
		_, _ = pipe.Exec(ctx)
	}
	now = time.Now()
	for i, r := range reads {
		if cmds[i] == nil {
			continue
		}
		raw, err := cmds[i].Result()
		if r.Feature.Windowed() {
			out[i].Window, out[i].Err = decodeAggregate(r.Feature, raw, err, firsts[i], r.Span.Last)
			continue
		}
		out[i].Value, out[i].Timestamp, out[i].Found, out[i].Err = decodeGet(r.Feature, raw, err, limits[i], now)
	}
	return out
}
