package engine

import (
	"context"
	"errors"
	"time"
)

// NotificationKind says what a Notification reports.
type NotificationKind uint8

// Notification kinds.
const (
	// NotifyWrite reports a change to a feature value.
	NotifyWrite NotificationKind = iota + 1
	// NotifyCollect asks the historian to collect a bucket that left its window.
	NotifyCollect
)

// String returns "write" or "collect".
func (k NotificationKind) String() string {
	switch k {
	case NotifyWrite:
		return "write"
	case NotifyCollect:
		return "collect"
	}
	return "unknown"
}

// Notification reports a write to a feature or a window bucket to collect.
type Notification struct {
	Kind NotificationKind
	// Op is the operation that wrote (for NotifyWrite).
	Op Op
	// FQN and EncodedKeys name the entity (DecodeKeys with the feature's keys).
	FQN         string
	EncodedKeys string
	// Value is the value after the write; for a window add, the number added (a Float).
	// For a superseded write it is the late value itself, not the current one.
	Value Value
	// Timestamp is the write's timestamp (event time).
	Timestamp time.Time
	// Written is when the engine wrote (its clock; for NotifyWrite). With FQN, EncodedKeys,
	// Op and Timestamp it tells a notification delivered twice from two writes.
	Written time.Time
	// Outcome (for NotifyWrite) says whether the write became the entity's current value
	// (WriteApplied) or arrived after a later one (WriteSuperseded): the historian records
	// both, Watch streams say which.
	Outcome WriteOutcome
	// Windowed is set when the write went to a bucket; Bucket is its ID.
	Windowed bool
	Bucket   int64
	// ActiveBucket reports whether the bucket is still inside its window.
	ActiveBucket bool
}

// Notifier carries notifications from the engine to their consumers (the historian, Watch
// streams). Implementations must be safe for concurrent use.
type Notifier interface {
	// Publish enqueues n. It returns once n is durably accepted by the notifier (for the
	// in-process notifier: queued in memory), or with an error; it blocks while the
	// notifier applies back-pressure, until ctx ends.
	Publish(ctx context.Context, n Notification) error

	// Subscribe delivers notifications to handle until ctx ends, then returns ctx's error.
	// Within one group each notification goes to one subscriber; different groups each see
	// every notification published after the group first subscribed. A notification is
	// acknowledged when handle returns nil; when handle returns an error it is delivered
	// again (to this or another subscriber of the group). Nothing published is dropped for
	// want of a subscriber.
	Subscribe(ctx context.Context, group string, handle func(context.Context, Notification) error) error

	// DeleteGroup removes a consumer group: its position and unacknowledged deliveries are
	// forgotten, and notifications only it still needed may be discarded. A Subscribe of the
	// group still running returns ErrGroupDeleted; a later Subscribe to the name starts a new
	// group. Deleting a group that does not exist succeeds. A subscriber whose group is its
	// own (a server's watch group, say) deletes it when it stops, or the group would hold
	// notifications back for ever.
	DeleteGroup(ctx context.Context, group string) error

	// Close releases the notifier's resources.
	Close() error
}

// BatchSubscriber is implemented by a Notifier that can hand a subscriber notifications in
// batches and take their acknowledgement later: what a consumer that makes them durable in
// batches (the historian: one Parquet object per batch) needs, since it can acknowledge a
// notification only once the object holding it is written, and writing one object per
// notification would be far too slow.
type BatchSubscriber interface {
	// SubscribeBatches delivers notifications of group to handle until ctx ends, then
	// returns ctx's error, with the group semantics of Subscribe. Each call of handle gets
	// a batch of at most opts.MaxBatch notifications, in order per feature, and done: the
	// handler owns the batch, may return before it has handled it, and calls done exactly
	// once — done(nil) acknowledges the whole batch, done(err) has it delivered again
	// after the notifier's retry delay. At most opts.MaxPending notifications are handed
	// out and not yet done; beyond that SubscribeBatches waits (back-pressure on the
	// subscriber, never on Publish beyond the notifier's own bounds). A batch not done when
	// SubscribeBatches returns is delivered again later (to this group), as is one whose
	// subscriber died.
	SubscribeBatches(ctx context.Context, group string, opts BatchOptions,
		handle func(ctx context.Context, batch []Notification, done func(error))) error
}

// BatchPublisher is implemented by a Notifier that can enqueue many notifications in fewer
// round trips than one each (Redis: one pipeline of XADDs). The engine uses it for the
// notifications of an Ingest's plain writes, a pipeline's worth at a time.
type BatchPublisher interface {
	// PublishBatch enqueues ns, in order, each as Publish would. It returns nil once every
	// one is durably accepted; on an error some may have been accepted (and are delivered)
	// and others not, as when a Publish fails.
	PublishBatch(ctx context.Context, ns []Notification) error
}

// BatchOptions bound a SubscribeBatches.
type BatchOptions struct {
	// MaxBatch bounds a batch (0: 1,024).
	MaxBatch int
	// MaxPending bounds the notifications handed out and not yet done (0: 65,536). It is
	// at least MaxBatch.
	MaxPending int
}

// Limits returns o with its defaults applied.
func (o BatchOptions) Limits() (maxBatch, maxPending int) {
	maxBatch, maxPending = o.MaxBatch, o.MaxPending
	if maxBatch <= 0 {
		maxBatch = 1024
	}
	if maxPending <= 0 {
		maxPending = 65536
	}
	return maxBatch, max(maxPending, maxBatch)
}

// ErrGroupDeleted is returned by Subscribe when its group is deleted.
var ErrGroupDeleted = errors.New("consumer group deleted")
