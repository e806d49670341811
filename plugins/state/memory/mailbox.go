package memory

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

var _ engine.MessageState = (*State)(nil)

// Mailboxes (engine.MessageState): one per sender address, in one map under one lock (the
// mailboxes' own, taken after a shard's by CommitStorage, so a commit's value, storage and
// sends apply together). A min-heap of (time, mailbox) finds the due ones without walking
// them all: a mailbox is pushed whenever the time it next needs attention moves earlier
// (a send, a claim's lease, a release's retry), and entries made stale by a later push are
// skipped when they come up.

// recheck is how long after DueMailboxes returned a mailbox it comes up again when no Claim
// or Release re-times it (the caller gave up between the two).
const recheck = time.Second

// epoch is the due time of a message to be delivered at once.
var epoch = time.Unix(0, 0)

type mailboxKey struct{ fqn, keys string }

type mailbox struct {
	key      mailboxKey
	pending  []*engine.Envelope // by (due, ID)
	tokens   map[string]*engine.Envelope
	inflight []engine.Envelope // claimed, not released, in order
	owner    string
	lease    time.Time // the owner's lease ends
	retryAt  time.Time // the first in-flight message's next attempt
	queued   time.Time // the earliest heap entry of the mailbox; zero: none
}

type mailboxes struct {
	mu    sync.Mutex
	seq   uint64
	boxes map[mailboxKey]*mailbox
	due   dueHeap
}

type dueEntry struct {
	at  time.Time
	key mailboxKey
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func dueOf(env *engine.Envelope) time.Time {
	if env.Due.IsZero() {
		return epoch
	}
	return env.Due
}

// next returns when the mailbox next needs attention; zero when it is empty.
func (b *mailbox) next() time.Time {
	switch {
	case len(b.inflight) > 0:
		t := b.retryAt
		if b.owner != "" && b.lease.After(t) {
			t = b.lease
		}
		if t.IsZero() {
			return epoch
		}
		return t
	case len(b.pending) > 0:
		return dueOf(b.pending[0])
	}
	return time.Time{}
}

// schedule makes sure the mailbox comes up at t at the latest. Under m.mu.
func (m *mailboxes) schedule(b *mailbox, t time.Time) {
	if t.IsZero() {
		return
	}
	if b.queued.IsZero() || t.Before(b.queued) {
		m.push(b, t)
	}
}

// push makes t the mailbox's heap entry (any earlier one is stale from now) and, when stale
// entries make up most of the heap, rebuilds it from the mailboxes' entries alone: a mailbox
// emptied and filled again leaves its old entry behind, and a long timer's would otherwise
// stay until its time, one per timer armed and cancelled. Under m.mu.
func (m *mailboxes) push(b *mailbox, t time.Time) {
	b.queued = t
	heap.Push(&m.due, dueEntry{at: t, key: b.key})
	if len(m.due) <= 2*len(m.boxes)+64 {
		return
	}
	m.due = m.due[:0]
	for _, b := range m.boxes {
		if !b.queued.IsZero() {
			m.due = append(m.due, dueEntry{at: b.queued, key: b.key})
		}
	}
	heap.Init(&m.due)
}

// enqueue applies a commit's cancellations and sends to the mailbox of key. Under m.mu.
func (m *mailboxes) enqueue(key mailboxKey, sends []engine.Envelope, cancels []string) {
	b := m.boxes[key]
	if b == nil {
		if len(sends) == 0 {
			return
		}
		b = &mailbox{key: key, tokens: map[string]*engine.Envelope{}}
		m.boxes[key] = b
	}
	for _, tok := range cancels {
		b.remove(tok)
	}
	for i := range sends {
		env := sends[i]
		m.seq++
		env.ID = fmt.Sprintf("%016x", m.seq)
		if env.Token != "" {
			b.remove(env.Token)
			b.tokens[env.Token] = &env
		}
		at := dueOf(&env)
		i := position(b.pending, at, env.ID)
		b.pending = slices.Insert(b.pending, i, &env)
	}
	if len(b.pending) == 0 && len(b.inflight) == 0 {
		delete(m.boxes, key)
		return
	}
	m.schedule(b, b.next())
}

// held returns how many messages the mailbox of key would hold, pending and in flight,
// after enqueue(key, sends, cancels): a cancellation of a pending token removes one, a send
// whose token is pending replaces it.
func (m *mailboxes) held(key mailboxKey, sends []engine.Envelope, cancels []string) int {
	b := m.boxes[key]
	n := 0
	if b != nil {
		n = len(b.pending) + len(b.inflight)
	}
	known := map[string]bool{} // tokens the commit already cancelled (false) or sent (true)
	pending := func(tok string) bool {
		if p, ok := known[tok]; ok {
			return p
		}
		return b != nil && b.tokens[tok] != nil
	}
	for _, tok := range cancels {
		if pending(tok) {
			n--
		}
		known[tok] = false
	}
	for i := range sends {
		tok := sends[i].Token
		if tok == "" || !pending(tok) {
			n++
		}
		if tok != "" {
			known[tok] = true
		}
	}
	return n
}

// position returns where a message due at with id goes in pending.
func position(pending []*engine.Envelope, at time.Time, id string) int {
	i, _ := slices.BinarySearchFunc(pending, at, func(p *engine.Envelope, at time.Time) int {
		if c := dueOf(p).Compare(at); c != 0 {
			return c
		}
		return cmp.Compare(p.ID, id)
	})
	return i
}

// remove removes the pending message of token, if any.
func (b *mailbox) remove(token string) {
	env, ok := b.tokens[token]
	if !ok {
		return
	}
	delete(b.tokens, token)
	i := position(b.pending, dueOf(env), env.ID)
	if i < len(b.pending) && b.pending[i] == env {
		b.pending = slices.Delete(b.pending, i, i+1)
	}
}

// DueMailboxes returns up to limit mailboxes due as of now.
func (s *State) DueMailboxes(_ context.Context, now time.Time, limit int) ([]engine.Mailbox, time.Time, error) {
	if s.closed.Load() {
		return nil, time.Time{}, fmt.Errorf("memory: due mailboxes: %w", ErrClosed)
	}
	m := &s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []engine.Mailbox
	for len(out) < limit && len(m.due) > 0 && !m.due[0].at.After(now) {
		ent := heap.Pop(&m.due).(dueEntry)
		b := m.boxes[ent.key]
		if b == nil || !b.queued.Equal(ent.at) {
			continue // stale: the mailbox went, or a later push re-timed it
		}
		b.queued = time.Time{}
		next := b.next()
		if next.IsZero() {
			continue
		}
		if next.After(now) {
			m.schedule(b, next)
			continue
		}
		out = append(out, engine.Mailbox{FQN: ent.key.fqn, Keys: ent.key.keys})
		m.schedule(b, now.Add(recheck))
	}
	var next time.Time
	if len(m.due) > 0 {
		next = m.due[0].at
	}
	return out, next, nil
}

// Claim leases the mailbox to owner and returns its in-flight, then due, messages.
func (s *State) Claim(_ context.Context, f *engine.Feature, keys, owner string, now time.Time, lease time.Duration, max int) ([]engine.Envelope, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("memory: claim %s: %w", f.FQN, ErrClosed)
	}
	m := &s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxes[mailboxKey{f.FQN, keys}]
	if b == nil || (b.owner != "" && b.owner != owner && now.Before(b.lease)) {
		return nil, nil
	}
	if len(b.inflight) > 0 && now.Before(b.retryAt) {
		return nil, nil // the first message waits out its back-off, and the others behind it
	}
	for len(b.inflight) < max && len(b.pending) > 0 && !dueOf(b.pending[0]).After(now) {
		env := b.pending[0]
		b.pending = b.pending[1:]
		if env.Token != "" && b.tokens[env.Token] == env {
			delete(b.tokens, env.Token) // fired: a cancel no longer reaches it
		}
		b.inflight = append(b.inflight, *env)
	}
	if len(b.inflight) == 0 {
		return nil, nil
	}
	b.owner, b.lease = owner, now.Add(lease)
	m.schedule(b, b.lease)
	return slices.Clone(b.inflight[:min(len(b.inflight), max)]), nil
}

// Release removes the delivered messages, re-times a failed one, and ends owner's lease.
func (s *State) Release(_ context.Context, f *engine.Feature, keys, owner string, done []string, retry *engine.Envelope, retryAt time.Time) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: release %s: %w", f.FQN, ErrClosed)
	}
	m := &s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	key := mailboxKey{f.FQN, keys}
	b := m.boxes[key]
	if b == nil {
		return nil
	}
	b.inflight = slices.DeleteFunc(b.inflight, func(env engine.Envelope) bool { return slices.Contains(done, env.ID) })
	b.retryAt = time.Time{}
	if retry != nil {
		for i := range b.inflight {
			if b.inflight[i].ID == retry.ID {
				b.inflight[i].Attempts = retry.Attempts
				b.retryAt = retryAt
			}
		}
	}
	if b.owner == owner {
		b.owner, b.lease = "", time.Time{}
	}
	if len(b.inflight) == 0 && len(b.pending) == 0 {
		delete(m.boxes, key)
		return nil
	}
	m.schedule(b, b.next())
	return nil
}

// DeferMailbox lists the mailbox as due again at until (or at its next time, when later);
// its messages stay.
func (s *State) DeferMailbox(_ context.Context, mb engine.Mailbox, until time.Time) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: defer the mailbox of %s: %w", mb.FQN, ErrClosed)
	}
	m := &s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxes[mailboxKey{mb.FQN, mb.Keys}]
	if b == nil {
		return nil
	}
	t := b.next()
	if t.Before(until) {
		t = until
	}
	m.push(b, t)
	return nil
}

// drop removes the mailboxes of the feature fqn.
func (m *mailboxes) drop(fqn string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.boxes {
		if k.fqn == fqn {
			delete(m.boxes, k)
		}
	}
}
