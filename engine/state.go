package engine

import (
	"context"
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
//   - Writes apply in call order: a Set with an older timestamp than the current value's
//     still replaces it.
//   - The result of Append and Incr carries the later of the old and the new timestamps.
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

	// Set replaces the current value. With KeepPrevious the replaced value becomes version 1
	// and older versions shift down; at most Versions are kept.
	Set(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) error

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
	// (returning Null), Append for lists, Set for scalars (returning v).
	Update(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Value, error)

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
