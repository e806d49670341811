package redis

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
)

// ReadBatch reads many cells in one round trip (engine.BatchReader): the GET of :v, LINDEX
// of :p or GET of :w that each single read sends, all at once. Off a Cluster every GET of
// the batch is one MGET (one command for Redis to parse and one reply for the client to
// decode, instead of one per cell) and the LINDEXes of previous versions ride in the same
// pipeline. On a Cluster, where an MGET cannot span hash slots, each cell is its own
// command and go-redis splits the pipeline per node and sends the parts in parallel, so a
// batch costs one round trip per node it touches. Each cell is decoded as its single read
// (Get, WindowAggregate) decodes it, with expiry as of when the reply came back; a cell a
// single read would refuse fails alone, without a command, and a failure of the round
// trip fails the cells it carried. One difference from the single reads: a key that holds
// another type than a string (never written by Osprey) reads as absent in an MGET, where a
// GET fails with WRONGTYPE. See RATIONALE.md, "One MGET for a feature vector".
func (s *State) ReadBatch(ctx context.Context, reads []engine.Read) []engine.ReadResult {
	b := batch{reads: reads, out: make([]engine.ReadResult, len(reads)), cells: make([]batchCell, len(reads))}
	b.plan(time.Now())
	if b.sent == 0 {
		return b.out
	}
	pipe := s.c.Pipeline()
	var mget *goredis.SliceCmd
	if s.cluster {
		for i := range b.cells {
			if c := &b.cells[i]; c.op != opNone {
				c.cmd = c.queue(ctx, pipe)
			}
		}
	} else {
		args := make([]any, 1, 1+b.gets)
		args[0] = "mget"
		for i := range b.cells {
			switch c := &b.cells[i]; c.op {
			case opGet, opWindow:
				c.slot = len(args) - 1
				args = append(args, c.key)
			case opIndex:
				c.cmd = c.queue(ctx, pipe)
			}
		}
		if len(args) > 1 {
			mget = goredis.NewSliceCmd(ctx, args...)
			if pipe.Len() == 0 { // the MGET alone: no pipeline needed
				_ = s.c.Process(ctx, mget)
			} else {
				_ = pipe.Process(ctx, mget)
			}
		}
	}
	if pipe.Len() > 0 {
		// Exec's error is the first command's; each command carries its own (goredis.Nil
		// for an absent key, the network error for all of them when the pipeline failed).
		_, _ = pipe.Exec(ctx)
	}
	var got []any
	var gotErr error
	if mget != nil {
		if got, gotErr = mget.Result(); gotErr == nil && len(got) != b.gets {
			gotErr = fmt.Errorf("%w: MGET of %d keys replied %d values", errCorrupt, b.gets, len(got))
		}
	}
	now := time.Now()
	for i := range b.cells {
		c := &b.cells[i]
		var raw string
		var err error
		switch {
		case c.op == opNone:
			continue
		case c.cmd != nil:
			raw, err = c.cmd.Result()
		case gotErr != nil:
			err = gotErr
		default:
			raw, err = mgetValue(got[c.slot])
		}
		f := reads[i].Feature
		if c.op == opWindow {
			b.out[i].Window, b.out[i].Err = decodeAggregate(f, raw, err, c.first, reads[i].Span.Last)
			continue
		}
		b.out[i].Value, b.out[i].Timestamp, b.out[i].Found, b.out[i].Err = decodeGet(f, raw, err, c.limit, now)
	}
	return b.out
}

// mgetValue returns one value of an MGET reply as a StringCmd would: goredis.Nil for an
// absent key.
func mgetValue(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", goredis.Nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("%w: MGET replied a %T", errCorrupt, v)
	}
}

// batchOp is what a batch sends for one cell.
type batchOp uint8

const (
	opNone   batchOp = iota // nothing: refused, or no live bucket in the span
	opGet                   // GET of :v (current value)
	opWindow                // GET of :w (window buckets)
	opIndex                 // LINDEX of :p (a previous version)
)

// batchCell is the plan for one read of a batch.
type batchCell struct {
	op    batchOp
	key   string
	index int64         // opIndex: the list index
	limit time.Duration // opGet, opIndex: how old a value may be
	first int64         // opWindow: the first bucket read
	slot  int           // off a Cluster, opGet and opWindow: the value's index in the MGET reply
	cmd   *goredis.StringCmd
}

// batch is one ReadBatch: the reads, their results and their plan.
type batch struct {
	reads []engine.Read
	out   []engine.ReadResult
	cells []batchCell
	sent  int // cells with a command
	gets  int // of which GETs
}

// plan decides each cell's command at now, fails the cells a single read would refuse, and
// builds every key in one allocation.
func (b *batch) plan(now time.Time) {
	size := 0
	for i, r := range b.reads {
		f, c := r.Feature, &b.cells[i]
		if f.Windowed() {
			if c.first = max(r.Span.First, firstKept(now, f)); c.first <= r.Span.Last {
				c.op = opWindow
			}
		} else if err := check("get", f, false); err != nil {
			b.out[i].Err = err
		}
		switch kp := f.KeepPrevious; {
		case f.Windowed() || b.out[i].Err != nil:
		case r.Version < 0:
			b.out[i].Err = fmt.Errorf("redis: get %s: %w: version %d is negative", f.FQN, engine.ErrVersionOutOfRange, r.Version)
		case r.Version == 0:
			c.op, c.limit = opGet, f.Staleness
		case kp != nil && r.Version <= kp.Versions:
			c.op, c.limit, c.index = opIndex, kp.Over, int64(r.Version-1)
		}
		if c.op != opNone {
			b.sent++
			if c.op != opIndex {
				b.gets++
			}
			size += len(keyPrefix) + len(f.FQN) + 1 + len(r.Keys) + len(sufValue)
		}
	}
	var sb strings.Builder
	sb.Grow(size)
	for i, r := range b.reads {
		c := &b.cells[i]
		if c.op == opNone {
			continue
		}
		start := sb.Len()
		sb.WriteString(keyPrefix)
		sb.WriteString(r.Feature.FQN)
		sb.WriteByte('|')
		sb.WriteString(r.Keys)
		sb.WriteString(suffix[c.op])
		c.key = sb.String()[start:]
	}
}

// suffix is the key suffix each operation reads.
var suffix = [...]string{opGet: sufValue, opWindow: sufWindow, opIndex: sufPrev}

// queue queues c's own command on pipe.
func (c *batchCell) queue(ctx context.Context, pipe goredis.Pipeliner) *goredis.StringCmd {
	if c.op == opIndex {
		return pipe.LIndex(ctx, c.key, c.index)
	}
	return pipe.Get(ctx, c.key)
}
