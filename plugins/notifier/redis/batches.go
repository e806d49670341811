package redis

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// SubscribeBatches delivers notifications to handle in batches (engine.BatchSubscriber): each
// batch is what one XREADGROUP (or XAUTOCLAIM) of one shard returned, at most opts.MaxBatch
// entries; done(nil) acknowledges them with one XACK, done(err) hands the same batch over
// again after the retry delay. Entries handed out stay pending in Redis until done(nil), so
// a subscriber that dies leaves them to XAUTOCLAIM by the group's next subscriber (after the
// claim idle time), and while handed out they are never delivered twice by this subscriber,
// even when its own claims read them again. A batch not done when SubscribeBatches returns
// is acknowledged by a later done(nil) all the same, or claimed by the next subscriber.
func (n *Notifier) SubscribeBatches(ctx context.Context, group string, opts engine.BatchOptions,
	handle func(context.Context, []engine.Notification, func(error))) error {
	if group == "" {
		return errors.New("redis notifier: subscribe: empty group name")
	}
	if n.closed.Load() {
		return ErrClosed
	}
	maxBatch, maxPending := opts.Limits()
	consumer := n.consumerBase + "-" + strconv.FormatUint(n.consumers.Add(1), 10)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.closing:
			cancel()
		case <-sctx.Done():
		}
	}()
	shared := &batchBudget{max: int64(maxPending), wake: make(chan struct{}, 1)}
	var hmu sync.Mutex // handle is called by one shard at a time
	return n.subscribe(ctx, sctx, cancel, group, consumer, func(int) sink {
		return &batches{n: n, group: group, maxBatch: int64(maxBatch), budget: shared, hmu: &hmu, handle: handle,
			inFlight: map[string]struct{}{}, acked: map[string]time.Time{}}
	})
}

// batchBudget counts the notifications a SubscribeBatches has handed out and not yet done,
// over all its shards.
type batchBudget struct {
	mu   sync.Mutex
	out  int64
	max  int64
	wake chan struct{}
}

// reserve takes up to k of what is left, for one read; the read gives back what it did not
// hand out (give). Shards reserve before they read, so together they never exceed max.
func (b *batchBudget) reserve(k int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	k = max(min(k, b.max-b.out), 0)
	b.out += k
	return k
}

func (b *batchBudget) give(k int64) {
	b.mu.Lock()
	b.out -= k
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// batches is the sink of SubscribeBatches for one shard.
type batches struct {
	n        *Notifier
	group    string
	maxBatch int64
	budget   *batchBudget
	hmu      *sync.Mutex
	handle   func(context.Context, []engine.Notification, func(error))

	mu       sync.Mutex
	inFlight map[string]struct{}  // handed out and not yet acknowledged (failed ones too)
	acked    map[string]time.Time // acknowledged since the last read was sent (see settle)
	retries  []retry              // failed batches, in the order they failed
}

type retry struct {
	at    time.Time
	ids   []string
	notes []engine.Notification
}

// room reserves a batch, or one entry when the shard's stream was empty last time: a shard
// blocked on an empty stream holds as little of the budget as it can, and reserves a full
// batch again once its stream has something.
func (s *batches) room(idle bool) int64 {
	if idle {
		return s.budget.reserve(1)
	}
	return s.budget.reserve(s.maxBatch)
}
func (s *batches) unused(k int64)         { s.budget.give(k) }
func (s *batches) ready() <-chan struct{} { return s.budget.wake }

func (s *batches) handling(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inFlight[id]; ok {
		return true
	}
	// Acknowledged while a claim that returned it was on its way: not again.
	_, ok := s.acked[id]
	return ok
}

// settle forgets the acknowledgements made before a read sent at sent: that read, and
// every later one, was answered after them, so it cannot return their entries.
func (s *batches) settle(sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range s.acked {
		if at.Before(sent) {
			delete(s.acked, id)
		}
	}
}

func (s *batches) retryAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retries) == 0 {
		return time.Time{}
	}
	return s.retries[0].at
}

func (s *batches) deliver(ctx context.Context, key string, ids []string, notes []engine.Notification) bool {
	s.mu.Lock()
	for _, id := range ids {
		s.inFlight[id] = struct{}{}
	}
	s.mu.Unlock()
	s.hand(ctx, key, ids, notes)
	return false // failures come back through done, not through the pending entries
}

// hand calls the handler with a batch and a done that acknowledges it or queues it again.
func (s *batches) hand(ctx context.Context, key string, ids []string, notes []engine.Notification) {
	var once sync.Once
	done := func(err error) {
		once.Do(func() {
			if err != nil {
				s.mu.Lock()
				s.retries = append(s.retries, retry{at: time.Now().Add(s.n.retryDelay), ids: ids, notes: notes})
				s.mu.Unlock()
				return
			}
			s.n.ack(ctx, key, s.group, ids...)
			now := time.Now()
			s.mu.Lock()
			for _, id := range ids {
				delete(s.inFlight, id)
				s.acked[id] = now
			}
			s.mu.Unlock()
			s.budget.give(int64(len(ids)))
		})
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.handle(ctx, notes, done)
}

func (s *batches) redeliver(ctx context.Context, key string) error {
	now := time.Now()
	for {
		s.mu.Lock()
		if len(s.retries) == 0 || s.retries[0].at.After(now) {
			s.mu.Unlock()
			return ctx.Err()
		}
		r := s.retries[0]
		s.retries = s.retries[1:]
		s.mu.Unlock()
		s.hand(ctx, key, r.ids, r.notes)
	}
}
