// Package memory is the in-process Notifier, the embedded default. It keeps notifications in
// a bounded in-memory log with consumer groups, the same shape as Redis Streams: each group
// sees every notification, each notification goes to one subscriber of a group, and it stays
// in the log until every group has acknowledged it.
//
// It registers itself with the plugins registry as "memory".
package memory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterNotifier("memory", func(_ context.Context, cfg plugins.Config) (engine.Notifier, error) {
		if err := cfg.Check("capacity", "groups", "retry_delay"); err != nil {
			return nil, err
		}
		capacity, err := cfg.Int("capacity", DefaultCapacity)
		if err != nil {
			return nil, err
		}
		delay, err := cfg.Duration("retry_delay", DefaultRetryDelay)
		if err != nil {
			return nil, err
		}
		var groups []string
		if g := cfg.String("groups", ""); g != "" {
			groups = strings.Split(g, ",")
		}
		return New(WithCapacity(capacity), WithGroups(groups...), WithRetryDelay(delay))
	})
}

// DefaultCapacity is how many unacknowledged notifications the log holds before Publish
// blocks.
const DefaultCapacity = 1 << 16

// DefaultRetryDelay is how long a notification whose handler failed waits before it is
// delivered again.
const DefaultRetryDelay = 100 * time.Millisecond

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("notifier closed")

// Notifier is the in-process engine.Notifier. It is safe for concurrent use.
//
// Delivery is at least once: a notification whose handler returns an error is delivered
// again after the retry delay. Groups named with WithGroups exist from the start and see
// every notification; a group first named by Subscribe starts at the oldest notification
// still in the log. While any group exists, Publish blocks when the log is full of
// notifications some group has not acknowledged (back-pressure, never loss). While no group
// exists, the log keeps only the newest Capacity notifications.
type Notifier struct {
	capacity   int
	retryDelay time.Duration

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever the log or a group changes
	log     []engine.Notification
	base    uint64 // sequence number of log[0]
	groups  map[string]*group
	closed  bool
}

type group struct {
	deleted bool                 // by DeleteGroup: its subscribers stop
	next    uint64               // next sequence number never handed out
	pending map[uint64]bool      // handed out, not yet acknowledged
	retry   map[uint64]time.Time // failed, to be handed out again at the time
	// Batches (SubscribeBatches): [start, end) handed out and not yet done, and those
	// whose done failed, due again at a time.
	batches     map[uint64]uint64
	retryBatchs map[uint64]retryBatch
}

type retryBatch struct {
	end uint64
	at  time.Time
}

// Option configures a Notifier.
type Option func(*Notifier) error

// WithCapacity sets the log's capacity (DefaultCapacity when unset).
func WithCapacity(n int) Option {
	return func(nt *Notifier) error {
		if n < 1 {
			return fmt.Errorf("capacity %d: must be at least 1", n)
		}
		nt.capacity = n
		return nil
	}
}

// WithGroups declares consumer groups that exist from the start, so that nothing published
// before their first subscriber arrives is lost.
func WithGroups(names ...string) Option {
	return func(nt *Notifier) error {
		for _, g := range names {
			if g = strings.TrimSpace(g); g == "" {
				return fmt.Errorf("empty group name")
			}
			nt.groups[g] = newGroup(0)
		}
		return nil
	}
}

// WithRetryDelay sets how long a failed notification waits before redelivery.
func WithRetryDelay(d time.Duration) Option {
	return func(nt *Notifier) error {
		if d < 0 {
			return fmt.Errorf("retry delay %v: must not be negative", d)
		}
		nt.retryDelay = d
		return nil
	}
}

func newGroup(next uint64) *group {
	return &group{next: next, pending: map[uint64]bool{}, retry: map[uint64]time.Time{},
		batches: map[uint64]uint64{}, retryBatchs: map[uint64]retryBatch{}}
}

// New returns an in-process Notifier.
func New(opts ...Option) (*Notifier, error) {
	nt := &Notifier{capacity: DefaultCapacity, retryDelay: DefaultRetryDelay,
		changed: make(chan struct{}), groups: map[string]*group{}}
	for _, o := range opts {
		if err := o(nt); err != nil {
			return nil, fmt.Errorf("memory notifier: %w", err)
		}
	}
	return nt, nil
}

// signal wakes every waiter. Callers hold mu.
func (nt *Notifier) signal() {
	close(nt.changed)
	nt.changed = make(chan struct{})
}

// floor returns the lowest sequence number some group still needs. Callers hold mu.
func (nt *Notifier) floor() uint64 {
	end := nt.base + uint64(len(nt.log))
	f := end
	for _, g := range nt.groups {
		f = min(f, g.next)
		for seq := range g.pending {
			f = min(f, seq)
		}
		for seq := range g.retry {
			f = min(f, seq)
		}
		for seq := range g.batches {
			f = min(f, seq)
		}
		for seq := range g.retryBatchs {
			f = min(f, seq)
		}
	}
	return f
}

// trim drops the notifications every group has acknowledged. Callers hold mu.
func (nt *Notifier) trim() {
	f := nt.floor()
	if n := int(f - nt.base); n > 0 {
		clear(nt.log[:n])
		nt.log = nt.log[n:]
		nt.base = f
	}
}

// Publish appends n to the log; it blocks while the log is full (see Notifier).
func (nt *Notifier) Publish(ctx context.Context, n engine.Notification) error {
	nt.mu.Lock()
	for {
		if nt.closed {
			nt.mu.Unlock()
			return ErrClosed
		}
		if len(nt.log) < nt.capacity {
			break
		}
		if len(nt.groups) == 0 { // nobody will read: keep only the newest
			clear(nt.log[:1])
			nt.log = nt.log[1:]
			nt.base++
			break
		}
		nt.trim()
		if len(nt.log) < nt.capacity {
			break
		}
		wait := nt.changed
		nt.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return fmt.Errorf("memory notifier full (%d unacknowledged): %w", nt.capacity, ctx.Err())
		}
		nt.mu.Lock()
	}
	nt.log = append(nt.log, n)
	nt.signal()
	nt.mu.Unlock()
	return nil
}

// Subscribe delivers notifications to handle until ctx ends (see engine.Notifier).
func (nt *Notifier) Subscribe(ctx context.Context, groupName string, handle func(context.Context, engine.Notification) error) error {
	if groupName == "" {
		return fmt.Errorf("memory notifier: subscribe: empty group name")
	}
	nt.mu.Lock()
	if nt.closed {
		nt.mu.Unlock()
		return ErrClosed
	}
	g, ok := nt.groups[groupName]
	if !ok {
		g = newGroup(nt.base)
		nt.groups[groupName] = g
	}
	nt.mu.Unlock()
	for {
		seq, n, wait, err := nt.next(g)
		if err != nil {
			return err
		}
		if wait != nil {
			select {
			case <-wait.changed:
			case <-wait.timer:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		herr := handle(ctx, n)
		nt.mu.Lock()
		delete(g.pending, seq)
		if g.deleted {
			nt.mu.Unlock()
			return engine.ErrGroupDeleted
		}
		if herr != nil {
			g.retry[seq] = time.Now().Add(nt.retryDelay)
		} else {
			nt.trim()
		}
		nt.signal()
		nt.mu.Unlock()
		if herr != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// SubscribeBatches delivers notifications to handle in batches (engine.BatchSubscriber):
// each batch is a contiguous run of the log, acknowledged as a whole by done(nil), delivered
// again as a whole after the retry delay by done(err). A batch stays pending — held in the
// log, and holding back Publish once the log is full — until its done is called, even after
// SubscribeBatches has returned.
func (nt *Notifier) SubscribeBatches(ctx context.Context, groupName string, opts engine.BatchOptions,
	handle func(context.Context, []engine.Notification, func(error))) error {
	if groupName == "" {
		return fmt.Errorf("memory notifier: subscribe: empty group name")
	}
	maxBatch, maxPending := opts.Limits()
	nt.mu.Lock()
	if nt.closed {
		nt.mu.Unlock()
		return ErrClosed
	}
	g, ok := nt.groups[groupName]
	if !ok {
		g = newGroup(nt.base)
		nt.groups[groupName] = g
	}
	nt.mu.Unlock()
	outstanding := 0 // notifications handed out by this call and not yet done; under nt.mu
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		nt.mu.Lock()
		start, end, wait, err := nt.nextBatch(g, min(maxBatch, maxPending-outstanding))
		if err != nil {
			nt.mu.Unlock()
			return err
		}
		if wait != nil {
			nt.mu.Unlock()
			select {
			case <-wait.changed:
			case <-wait.timer:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		batch := make([]engine.Notification, end-start)
		copy(batch, nt.log[start-nt.base:end-nt.base])
		outstanding += len(batch)
		nt.mu.Unlock()
		var once sync.Once
		handle(ctx, batch, func(herr error) {
			once.Do(func() {
				nt.mu.Lock()
				defer nt.mu.Unlock()
				outstanding -= int(end - start)
				if _, ok := g.batches[start]; !ok {
					return // the group was deleted
				}
				delete(g.batches, start)
				if herr != nil {
					g.retryBatchs[start] = retryBatch{end: end, at: time.Now().Add(nt.retryDelay)}
				} else {
					nt.trim()
				}
				nt.signal()
			})
		})
	}
}

// nextBatch hands out the group's next batch of at most n: a due retried batch first, then
// the next run of new notifications. Callers hold mu.
func (nt *Notifier) nextBatch(g *group, n int) (start, end uint64, w *waitFor, err error) {
	if nt.closed {
		return 0, 0, nil, ErrClosed
	}
	if g.deleted {
		return 0, 0, nil, engine.ErrGroupDeleted
	}
	w = &waitFor{changed: nt.changed}
	if n <= 0 { // as many pending as allowed: wait for a done
		return 0, 0, w, nil
	}
	now := time.Now()
	var soonest time.Time
	for s, r := range g.retryBatchs {
		if !r.at.After(now) {
			delete(g.retryBatchs, s)
			// A retried batch larger than n (a smaller MaxBatch since) is split.
			e := min(r.end, s+uint64(n))
			if e < r.end {
				g.retryBatchs[e] = r
			}
			g.batches[s] = e
			return s, e, nil, nil
		}
		if soonest.IsZero() || r.at.Before(soonest) {
			soonest = r.at
		}
	}
	if g.next < nt.base {
		g.next = nt.base
	}
	if last := nt.base + uint64(len(nt.log)); g.next < last {
		start, end = g.next, min(last, g.next+uint64(n))
		g.next = end
		g.batches[start] = end
		return start, end, nil, nil
	}
	if !soonest.IsZero() {
		w.timer = time.After(soonest.Sub(now))
	}
	return 0, 0, w, nil
}

type waitFor struct {
	changed <-chan struct{}
	timer   <-chan time.Time
}

// next hands out the group's next notification: a due retry first, then the next new one.
func (nt *Notifier) next(g *group) (uint64, engine.Notification, *waitFor, error) {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if nt.closed {
		return 0, engine.Notification{}, nil, ErrClosed
	}
	if g.deleted {
		return 0, engine.Notification{}, nil, engine.ErrGroupDeleted
	}
	now := time.Now()
	var soonest time.Time
	for seq, at := range g.retry {
		if !at.After(now) {
			delete(g.retry, seq)
			g.pending[seq] = true
			return seq, nt.log[seq-nt.base], nil, nil
		}
		if soonest.IsZero() || at.Before(soonest) {
			soonest = at
		}
	}
	if g.next < nt.base { // the log dropped entries while no group existed
		g.next = nt.base
	}
	if g.next < nt.base+uint64(len(nt.log)) {
		seq := g.next
		g.next++
		g.pending[seq] = true
		return seq, nt.log[seq-nt.base], nil, nil
	}
	w := &waitFor{changed: nt.changed}
	if !soonest.IsZero() {
		w.timer = time.After(soonest.Sub(now))
	}
	return 0, engine.Notification{}, w, nil
}

// DeleteGroup removes a group (see engine.Notifier): its subscribers return
// engine.ErrGroupDeleted, and what it alone held back is trimmed from the log.
func (nt *Notifier) DeleteGroup(_ context.Context, name string) error {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if g, ok := nt.groups[name]; ok {
		g.deleted = true
		delete(nt.groups, name)
		if len(nt.groups) > 0 { // with none left, the log keeps the newest Capacity
			nt.trim()
		}
		nt.signal()
	}
	return nil
}

// Capacity returns how many unacknowledged notifications the log holds before Publish
// blocks (a subscriber that holds batches, like the historian, sizes them by it).
func (nt *Notifier) Capacity() int { return nt.capacity }

// Len returns how many notifications the log holds (published and not yet acknowledged by
// every group).
func (nt *Notifier) Len() int {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	nt.trim()
	return len(nt.log)
}

// Close stops the notifier: blocked and later calls of Publish and Subscribe return
// ErrClosed.
func (nt *Notifier) Close() error {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if !nt.closed {
		nt.closed = true
		nt.signal()
	}
	return nil
}
