package engine

import (
	"context"
	"fmt"
	"time"
)

// State stores feature values. The engine validates and converts everything before calling
// it: keys arrive encoded (EncodeKeys), values arrive with the feature's type, and windowed
// writes arrive inside the kept span. Implementations must be safe for concurrent use.
//
// Each (feature FQN, encoded keys) pair is one entity. Two features never share storage,
// whatever their key names. For an entity a State keeps the current value with its
// timestamp, up to f.KeepPrevious.Versions previous values, and for windowed features one
// Bucket per bucket ID.
//
// Expiry: a State may forget a current value once it is staleness old (age = now − its
// timestamp) — for a feature with KeepPrevious, once it is max(staleness, KeepPrevious.Over)
// old, since it may still become a previous version — a previous value once it is
// KeepPrevious.Over old, and a bucket at BucketExpiry; it must not report a value past those
// ages as found. The engine applies freshness and staleness exactly on top of what a State
// returns.
//
// "Stale relative to a write" below means a stored value whose timestamp is at or before the
// write's timestamp minus staleness; Append and Incr treat such a value as absent, so a
// counter never grows from a value that could no longer be served.
//
// Rules every State follows (the conformance suite, engine/statetest, checks them):
//   - Set is ordered by event time: the current value is the one with the latest
//     timestamp. A Set whose timestamp is older than the current value's is superseded: the
//     current value stays; with KeepPrevious the late value takes its place among the
//     previous versions in timestamp order when it falls within Versions (and is younger
//     than Over), and is dropped otherwise. A Set with the same timestamp as the current
//     value replaces it (last writer wins), and the replaced value becomes version 1; among
//     previous versions, too, of two with equal timestamps the later written is the newer.
//     The comparison and the write are one atomic step (a Redis provider does both in one
//     script), so concurrent Sets leave the latest timestamp current whatever their order.
//   - A current value past its expiry as of now (see Expiry: one the State may already have
//     forgotten) counts as absent for that comparison, so whether a write is superseded never
//     depends on when a State gets round to forgetting.
//   - Append and Incr apply in call order, whatever their timestamps: they are not
//     idempotent, a counter must count every call, and a late increment has no current value
//     it could be ordered against. Their result carries the later of the old and the new
//     timestamps, so the current value's timestamp never goes back.
//   - Get of a version beyond KeepPrevious.Versions reports not found (the engine rejects
//     such selectors before asking).
//   - WindowAdd into a bucket past its BucketExpiry fails with ErrOutOfWindow; a non-finite
//     x fails with ErrTypeMismatch. Set, Append, Incr and Get of a windowed feature fail with
//     ErrUnsupported.
//   - Arithmetic stays in range: an Incr whose result does not fit the feature's type (an
//     int sum past the int64 range, a float sum that is ±Inf or NaN) and a WindowAdd that
//     would take its bucket's sum to ±Inf fail with ErrOverflow and write nothing. The check
//     is atomic with the write (a Redis provider does both in one script): concurrent calls
//     can never together store an overflowed value.
//   - A stored value whose kind differs from the feature's (the feature was deleted and
//     applied again with another type) counts as absent.
type State interface {
	// Get returns the value of an entity: the current one for version 0, the Nth previous
	// one for version N. found is false when there is none (or it expired).
	Get(ctx context.Context, f *Feature, keys string, version int) (v Value, ts time.Time, found bool, err error)

	// Set makes v the current value unless the current value has a later timestamp. With
	// KeepPrevious the replaced value becomes version 1 and older versions shift down; at
	// most Versions are kept. A superseded Set (the current value is later) changes the
	// current value in no way; see the rules above for where it goes. Written.Value is v.
	Set(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Written, error)

	// Append appends the elements of the list v to a list feature's current value (or to an
	// empty list when it is absent or stale relative to the write) and returns the result.
	// Versions shift as for Set.
	Append(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Value, error)

	// Incr adds by (an int for int features, a float for float features) to the current
	// value (or to 0 when it is absent or stale relative to the write), atomically, and
	// returns the result. Versions shift as for Set. A result that overflows fails with
	// ErrOverflow and writes nothing.
	Incr(ctx context.Context, f *Feature, keys string, by Value, ts time.Time) (Value, error)

	// Update writes v the way the feature's type calls for: WindowAdd for windowed features
	// (Written.Value Null), Append for lists (the list after the write), Set for scalars (v,
	// and superseded as a Set is). Only the Set form can be superseded. A provider with
	// nothing of its own to add implements it with UpdateVia.
	Update(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Written, error)

	// WindowAdd adds x to the bucket holding ts (BucketID(ts, f.Granularity)).
	WindowAdd(ctx context.Context, f *Feature, keys string, x float64, ts time.Time) error

	// WindowBuckets returns the entity's buckets whose IDs are in span, in any order,
	// in one round trip. Buckets never written are left out.
	WindowBuckets(ctx context.Context, f *Feature, keys string, span WindowSpan) ([]Bucket, error)

	// DeadWindowBuckets returns the buckets of every entity of a windowed feature whose IDs
	// are in span (the engine passes buckets that left the window but are still kept).
	DeadWindowBuckets(ctx context.Context, f *Feature, span WindowSpan) ([]RawBucket, error)

	// Drop removes everything stored for f — every entity's value, previous versions and
	// window buckets — so that a feature applied later under the same FQN starts empty. The
	// engine calls it when a feature is deleted, after the feature stops taking writes. Drop
	// of a feature with nothing stored succeeds.
	Drop(ctx context.Context, f *Feature) error

	// Ping reports whether the State can serve.
	Ping(ctx context.Context) error

	// Close releases the State's resources.
	Close() error
}

// Written is a State's report of a Set or an Update: the value after the write and whether
// the write became the entity's current value.
type Written struct {
	// Value is the value the write produced: v for a Set (superseded or not), the list after
	// an Update that appended, Null after a window add.
	Value Value
	// Superseded is set when the entity's current value has a later timestamp than the
	// write's, so the write did not replace it. Appends, increments and window adds are
	// never superseded.
	Superseded bool
	// Kept reports, for a superseded write, whether it took its place among the previous
	// versions (false: it was dropped, because the feature keeps none, it is older than the
	// Versions kept, or it is already KeepPrevious.Over old).
	Kept bool
	// Current is, for a superseded write, the timestamp of the current value that
	// superseded it.
	Current time.Time
}

// WindowAggregator is implemented by a State that can aggregate a window where the buckets
// live: WindowAggregate returns the entity's buckets in span merged into one (Count 0 when
// there are none), in one round trip and without copying the buckets out. The engine uses it
// for windowed reads when the State provides it, and WindowBuckets otherwise.
type WindowAggregator interface {
	WindowAggregate(ctx context.Context, f *Feature, keys string, span WindowSpan) (Bucket, error)
}

// Blocker is implemented by a State that never blocks: each call finishes in bounded time
// without waiting on I/O or another process. The engine then skips arming a timer for a
// feature's timeout on calls that run nothing else that can block (see RATIONALE.md).
type Blocker interface {
	NonBlocking() bool
}

// Sharer is implemented by a State whose values other processes read and write too (Redis):
// many replicas over one store. A replica that learns another deleted a feature then
// forgets it without dropping its values (Engine.Forget), since the deleting replica
// dropped them and the name may already hold a re-created feature's.
type Sharer interface {
	Shared() bool
}

// BatchReader is implemented by a State that can read many cells — (feature, entity,
// version) current or previous values and windows — at once, in fewer round trips than one
// per cell (the Redis State: one pipeline, so one round trip per node). The engine uses it
// for the cells of a GetMany (Engine.Prefetch) when the State provides it, and the single
// reads otherwise.
//
// ReadBatch returns one ReadResult per Read, in the same order; it never returns fewer.
// Each cell has the semantics of the single read it stands for, exactly: a Read of a
// feature that is not windowed is State.Get(ctx, Feature, Keys, Version) — found, value and
// timestamp as Get reports them, expiry applied as of the call — and a Read of a windowed
// feature is WindowAggregate(ctx, Feature, Keys, Span) (for a State that is no
// WindowAggregator: the buckets of WindowBuckets merged with Bucket.Merge), reported in
// ReadResult.Window, Count 0 for an empty window. Errors are per cell: a cell that fails
// (a Read a single call would refuse, say Version on a windowed feature, or a stored value
// that cannot be decoded) carries the error its single read would have returned, and the
// others are unaffected; a failure of the whole batch (the server out of reach, ctx ended)
// is reported in every cell it touched. ReadBatch honours ctx as the single reads do.
type BatchReader interface {
	ReadBatch(ctx context.Context, reads []Read) []ReadResult
}

// Read is one cell of a BatchReader's batch.
type Read struct {
	// Feature read, as the engine applied it.
	Feature *Feature
	// Keys of the entity, encoded (EncodeKeys).
	Keys string
	// Version is 0 for the current value, N for the Nth previous one (not windowed only).
	Version int
	// Span is the window's buckets to aggregate (windowed only).
	Span WindowSpan
}

// ReadResult is the answer to one Read.
type ReadResult struct {
	// Value, Timestamp and Found are Get's answer (not windowed).
	Value     Value
	Timestamp time.Time
	Found     bool
	// Window is the buckets in Span merged into one (windowed); Count 0 when there are none.
	Window Bucket
	// Err is the cell's error; the other fields are then zero.
	Err error
}

// BatchWriter is implemented by a State that can apply many writes at once, in fewer round
// trips than one per write (the Redis State: one pipeline, so one round trip per node). The
// engine uses it for the plain writes of an Ingest — values whose program changed no
// storage and sent nothing — up to its pipeline depth at a time (WithPipelineDepth), and
// the single calls otherwise.
//
// WriteBatch returns one WriteReport per Write, in the same order; it never returns fewer.
// Each write has the semantics of the single call it stands for (Write.Apply), exactly,
// atomicity included; the writes of one entity apply in the batch's order, as if made one
// after the other, while writes of different entities may apply in any order. Errors are
// per write: a write that fails (a value of the wrong type, an expired bucket, an overflow)
// carries the error its single call would have returned, and the others are unaffected — a
// failed write does not stop the ones after it. A failure of the whole batch (the server
// out of reach, ctx ended) is reported in every write it touched; as for a single call that
// fails so, such a write may or may not have been applied. WriteBatch honours ctx as the
// single calls do.
type BatchWriter interface {
	WriteBatch(ctx context.Context, writes []Write) []WriteReport
}

// Write is one write of a BatchWriter's batch.
type Write struct {
	// Op is OpSet, OpAppend, OpIncr or OpUpdate. A windowed feature's write is a window
	// add, whatever its Op.
	Op Op
	// Feature written, as the engine applied it.
	Feature *Feature
	// Keys of the entity, encoded (EncodeKeys).
	Keys string
	// Value is the value set, the list appended, the number added (Incr's by, the window
	// add's x), with the feature's type.
	Value Value
	// Timestamp is the write's event time.
	Timestamp time.Time
}

// WriteReport is what became of one Write.
type WriteReport struct {
	// Written is the single call's report: Set's and Update's Written, the value after an
	// Append or an Incr in Written.Value, nothing for a window add.
	Written Written
	// Err is the write's error; Written is then zero.
	Err error
}

// Apply makes w with s's single calls — WindowAdd, Set, Append, Incr or Update — and reports
// it as a BatchWriter reports each write of a batch: what a batch's write stands for.
func (w Write) Apply(ctx context.Context, s State) WriteReport {
	f := w.Feature
	var out WriteReport
	switch {
	case f.Windowed():
		if x, ok := w.Value.Number(); ok {
			out.Err = s.WindowAdd(ctx, f, w.Keys, x, w.Timestamp)
		} else { // refused as Update refuses it
			out.Written, out.Err = s.Update(ctx, f, w.Keys, w.Value, w.Timestamp)
		}
	case w.Op == OpSet:
		out.Written, out.Err = s.Set(ctx, f, w.Keys, w.Value, w.Timestamp)
	case w.Op == OpAppend:
		out.Written.Value, out.Err = s.Append(ctx, f, w.Keys, w.Value, w.Timestamp)
	case w.Op == OpIncr:
		out.Written.Value, out.Err = s.Incr(ctx, f, w.Keys, w.Value, w.Timestamp)
	default:
		out.Written, out.Err = s.Update(ctx, f, w.Keys, w.Value, w.Timestamp)
	}
	if out.Err != nil {
		out.Written = Written{}
	}
	return out
}

// UpdateVia implements State.Update with s's own WindowAdd, Append and Set: the dispatch by
// the feature's type that every provider shares. A windowed feature's v must be a number
// (ErrTypeMismatch, prefixed with name, otherwise).
func UpdateVia(ctx context.Context, s State, name string, f *Feature, keys string, v Value, ts time.Time) (Written, error) {
	switch {
	case f.Windowed():
		x, ok := v.Number()
		if !ok {
			return Written{}, fmt.Errorf("%s: update %s: %w: got %s, want %s", name, f.FQN, ErrTypeMismatch, v.Kind(), f.Primitive)
		}
		return Written{}, s.WindowAdd(ctx, f, keys, x, ts)
	case f.Primitive.IsList():
		out, err := s.Append(ctx, f, keys, v, ts)
		return Written{Value: out}, err
	default:
		return s.Set(ctx, f, keys, v, ts)
	}
}
