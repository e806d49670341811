package historian

import (
	"context"
	"errors"
	"time"
)

// ErrLostLead is the cause of a Lease's context when the lease could not be renewed in time
// (another replica may lead now).
var ErrLostLead = errors.New("historian: lost the lead")

// Leader elects one writer among the replicas that share a notifier and a storage
// (plugins/historylock/redis: a lease in Redis). Implementations are safe for concurrent use.
type Leader interface {
	// Lead waits until this process holds the lease, or ctx ends.
	Lead(ctx context.Context) (Lease, error)
}

// Lease is held leadership.
type Lease struct {
	// Fence is the lease's fencing token: larger than every earlier lease's, across
	// replicas. It is written into every record and object name written under the lease.
	Fence int64
	// Context ends when the lease ends: with ErrLostLead as its cause when it could not be
	// renewed, before another replica can take it (so a write bounded by it cannot land
	// under a newer lease), or when it is released. It outlives Lead's context, so that a
	// holder that stops cleanly can finish its writes under the lease.
	Context context.Context
	// Until returns the instant up to which the lease is certainly still held (its last
	// renewal plus its lifetime, less a margin): a write that must finish under the lease
	// after Context ended (the final flush on shutdown) is bounded by it.
	Until func() time.Time
	// Release gives the lease up (at once, for the next leader) and ends Context.
	Release func()
}
