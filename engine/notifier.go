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
	// Value is the value after the write; Null for a window add. For a superseded write it
	// is the late value itself, not the current one.
	Value Value
	// Timestamp is the write's timestamp.
	Timestamp time.Time
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

// ErrGroupDeleted is returned by Subscribe when its group is deleted.
var ErrGroupDeleted = errors.New("consumer group deleted")
