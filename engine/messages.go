package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"
)

// Messages between programs (the Stateful Functions model): an invocation may send a message
// to another feature's program at an address (Send), to any address later (SendAfter, with a
// token that Cancel revokes), and to an egress by name (Egress). What it sends is kept in the
// Invocation and committed with its storage and value in one step of the State, into the
// sender's mailbox; the engine's dispatcher (dispatch.go) delivers it from there, at least
// once and in order per sender.

// ErrMessage: a send that cannot be delivered as asked: a target feature that is not applied
// or receives no messages, a message that does not convert to the target's message type,
// incomplete keys, an unknown egress, a bad token or delay, too many sends in one invocation.
var ErrMessage = errors.New("invalid message")

// ErrHopLimit: a send beyond the maximum number of hops of a chain of sends from one
// originating event (WithMaxHops). The send is refused; the invocation goes on.
var ErrHopLimit = errors.New("hop limit reached")

// ErrMailboxFull: a commit whose sends would leave its sender's mailbox holding more than
// the most it may (WithMaxMailbox) — messages not yet delivered, because their targets fail
// or deliveries cannot keep up. The invocation commits nothing (its value and storage
// included): a row is refused, a delivery is tried again later and dead-lettered in the end,
// so that a mailbox that does not drain stops growing instead of filling the store.
var ErrMailboxFull = errors.New("mailbox full")

// DefaultMaxMailbox is the most messages one sender address's mailbox may hold, pending and
// in flight (WithMaxMailbox). At MaxMessageBytes each, a full mailbox holds at most 640 MiB;
// typical messages are a few dozen bytes.
const DefaultMaxMailbox = 10_000

// WithMaxMailbox sets the most messages one mailbox may hold (DefaultMaxMailbox unless set;
// n ≤ 0 keeps it).
func WithMaxMailbox(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.maxMailbox = n
		}
	}
}

// DefaultMaxHops is the longest chain of sends that one originating event (an ingested row,
// a read computing a value) may start: its invocation's sends are hop 1, the sends of the
// invocation receiving one of them hop 2, and so on; a delayed message counts as one hop,
// like any other. Egress messages end a chain and are not limited.
const DefaultMaxHops = 16

// DefaultChainBudget bounds how many messages one originating event's chain of sends may
// make in all, however wide it fans out (the hop limit bounds only how deep): an invocation
// that no message started may send this many; one started by a message may send what the
// message's Budget says; an invocation that sends k messages with a budget of b gives each
// of them (b-k)/k, so that a chain's messages never number more than its root's budget.
// Egress messages end a chain and do not count.
const DefaultChainBudget = 10_000

// WithChainBudget sets the budget of a chain of sends (DefaultChainBudget unless set; n ≤ 0
// keeps it).
func WithChainBudget(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.chainBudget = n
		}
	}
}

// Limits of one invocation's sends, against a program that loops.
const (
	// MaxSendsPerInvocation bounds the messages, timers, cancellations and egress messages
	// one invocation may leave.
	MaxSendsPerInvocation = 1024
	// MaxSendsPerRequest bounds the sends of all the invocations of one Ingest request,
	// which the engine holds until the request's rows have all run (a request of many rows
	// whose every row sends the most would otherwise hold millions).
	MaxSendsPerRequest = 1 << 16
	// MaxMessageBytes bounds one message (its value, or an egress row's names and values),
	// as the engine sizes it: a string or a name its bytes, a number or a time 8 bytes.
	MaxMessageBytes = 64 << 10
	// MaxSendBytesPerInvocation and MaxSendBytesPerRequest bound the bytes of the messages
	// one invocation, and one Ingest request, may leave.
	MaxSendBytesPerInvocation = 4 << 20
	MaxSendBytesPerRequest    = 64 << 20
	// MaxTokenLen bounds a timer's token, in bytes.
	MaxTokenLen = 256
	// MaxDelay bounds SendAfter's delay.
	MaxDelay = 366 * 24 * time.Hour
)

// WithMaxHops sets the maximum hops of a chain of sends (DefaultMaxHops unless set; n ≤ 0
// keeps it).
func WithMaxHops(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.maxHops = n
		}
	}
}

// Envelope is one message as the sender's mailbox keeps it: a message to a program, or to an
// egress, due now or later.
type Envelope struct {
	// ID identifies the message in its sender's mailbox; the State assigns it at commit, in
	// the order of the sends (a later send of one sender has a greater ID).
	ID string
	// From is the sender's address.
	From Address
	// To is the target program's address; empty (To.FQN "") for an egress message.
	To Address
	// Egress names the egress of an egress message.
	Egress string
	// Value is the message to a program, of the target's message type.
	Value Value
	// Row is the message to an egress.
	Row Row
	// Timestamp is the message's event time: the sending invocation's, or a delayed
	// message's due time.
	Timestamp time.Time
	// Due is when the message is to be delivered; zero: at once.
	Due time.Time
	// Token is a delayed message's token (SendAfter), unique in the sender's mailbox; "" for
	// others.
	Token string
	// Hops is the message's place in its chain of sends: 1 for a send of an invocation that
	// no message started.
	Hops int
	// Budget is how many messages the invocation receiving it may send, it and its chain
	// below (DefaultChainBudget); set at the commit.
	Budget int
	// Attempts counts the deliveries that failed so far.
	Attempts int
}

// Received is the message an invocation runs for, in ProgramCall.Message.
type Received struct {
	From  Address
	Value Value
	// Hops is the message's hop count; the receiving invocation's sends are Hops+1.
	Hops int
	// Budget is how many messages the receiving invocation may send (its chain's share).
	Budget int
	// Attempt counts this delivery: 1 the first time (at-least-once: a later one may follow
	// a delivery whose acknowledgement was lost).
	Attempt int
}

// Egress delivers messages to a destination outside Osprey (a webhook, a stream). The
// engine resolves egresses by name through an EgressResolver.
type Egress interface {
	// Emit delivers one message, honouring ctx's deadline. An error wrapping ErrPermanent
	// is not retried; any other is, with back-off, up to the dispatcher's attempts.
	Emit(ctx context.Context, m EgressMessage) error
}

// ErrPermanent marks an Egress error that another attempt cannot fix (the destination
// refused the message as malformed).
var ErrPermanent = errors.New("permanent failure")

// EgressMessage is one message to an egress.
type EgressMessage struct {
	// ID identifies the message, stable across redeliveries (from, then the mailbox's ID),
	// for a destination that deduplicates.
	ID string
	// Egress is the egress's name.
	Egress string
	// From is the sending program's address.
	From Address
	// Row is the message.
	Row Row
	// Timestamp is its event time.
	Timestamp time.Time
	// Attempt counts this delivery, from 1.
	Attempt int
}

// EgressResolver resolves egresses by name (the registry's Egress objects).
type EgressResolver interface {
	// Egress returns the egress name, or an error saying why there is none.
	Egress(name string) (Egress, error)
}

// WithEgresses sets the resolver of egresses programs emit to. Without one, Egress calls
// fail with ErrMessage.
func WithEgresses(r EgressResolver) Option { return func(e *Engine) { e.egresses = r } }

// Send sends v to the program of the feature at to: to.FQN names it (a namespace-qualified
// name, or one in the engine's default namespace), to.Keys its entity. The target must
// declare spec.builder.messages; v is converted to its type.
func (in *Invocation) Send(ctx context.Context, to Address, v Value) error {
	return in.send(Envelope{To: to, Value: v})
}

// SendAfter sends v to the program at to once delay has passed, under token: a later
// SendAfter of the same token (from the same address) replaces it, and Cancel(token) revokes
// it. A delay of zero delivers as soon as the commit is done, like Send.
func (in *Invocation) SendAfter(ctx context.Context, delay time.Duration, token string, to Address, v Value) error {
	if err := checkToken(token); err != nil {
		return err
	}
	if delay < 0 || delay > MaxDelay {
		return fmt.Errorf("%w: delay %v is out of range (0 to %v)", ErrMessage, delay, MaxDelay)
	}
	return in.send(Envelope{To: to, Value: v, Token: token, Due: in.now.Add(delay)})
}

// Cancel revokes the delayed message of token this address sent (in this invocation or an
// earlier one), if it has not fired: once the cancellation is committed it never fires. A
// token with nothing pending is no error.
func (in *Invocation) Cancel(ctx context.Context, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	if err := in.sendable(); err != nil {
		return err
	}
	if err := in.spend(len(token)); err != nil {
		return err // before anything changes: a refused cancel leaves the sends as they were
	}
	kept := in.sends[:0]
	for _, s := range in.sends {
		if s.Token != token {
			kept = append(kept, s)
		}
	}
	in.sends = kept
	in.cancels = append(in.cancels, token)
	return nil
}

// Emit sends row to the egress name (a namespace-qualified name, or one in the engine's
// default namespace).
func (in *Invocation) Emit(ctx context.Context, name string, row Row) error {
	if in.e.egresses == nil {
		return fmt.Errorf("%w: egress %q: no egresses are configured", ErrMessage, name)
	}
	fqn, err := ParseFQN(name, in.e.defaultNS)
	if err != nil {
		return fmt.Errorf("%w: egress: %w", ErrMessage, err)
	}
	if _, err := in.e.egresses.Egress(fqn); err != nil {
		return fmt.Errorf("%w: egress %q: %w", ErrMessage, fqn, err)
	}
	name = fqn
	for field, v := range row {
		if v.kind == KindWindow {
			return fmt.Errorf("%w: egress %q: field %q is a window (a message holds primitive values)", ErrMessage, name, field)
		}
	}
	return in.send(Envelope{Egress: name, Row: row})
}

func checkToken(token string) error {
	switch {
	case token == "":
		return fmt.Errorf("%w: a delayed message needs a token", ErrMessage)
	case len(token) > MaxTokenLen:
		return fmt.Errorf("%w: token of %d bytes (at most %d)", ErrMessage, len(token), MaxTokenLen)
	case !utf8.ValidString(token):
		return fmt.Errorf("%w: token is not valid UTF-8", ErrMessage)
	}
	return nil
}

// sendable reports whether the invocation may send one more message.
func (in *Invocation) sendable() error {
	if in.e.messages == nil {
		return fmt.Errorf("%w: the state provider keeps no mailboxes: programs cannot send", ErrUnsupported)
	}
	in.resolve()
	if in.errKey != nil {
		return fmt.Errorf("%w: the sender's address is not known: %w", ErrMessage, in.errKey)
	}
	if len(in.sends)+len(in.cancels) >= MaxSendsPerInvocation {
		return fmt.Errorf("%w: more than %d sends in one invocation", ErrMessage, MaxSendsPerInvocation)
	}
	if in.budget != nil && in.budget.sends <= 0 {
		return fmt.Errorf("%w: more than %d sends in one request (split the rows over more requests)", ErrMessage, MaxSendsPerRequest)
	}
	return nil
}

// sendBudget is what an Ingest request's invocations may still send, in all.
type sendBudget struct{ sends, bytes int }

// spend counts one send of n bytes against the invocation's and the request's budgets,
// refusing it when it would exceed either.
func (in *Invocation) spend(n int) error {
	switch {
	case n > MaxMessageBytes:
		return fmt.Errorf("%w: a message of %d bytes (at most %d)", ErrMessage, n, MaxMessageBytes)
	case in.sentBytes+n > MaxSendBytesPerInvocation:
		return fmt.Errorf("%w: more than %d bytes of messages in one invocation", ErrMessage, MaxSendBytesPerInvocation)
	case in.budget != nil && in.budget.bytes < n:
		return fmt.Errorf("%w: more than %d bytes of messages in one request (split the rows over more requests)", ErrMessage, MaxSendBytesPerRequest)
	}
	in.sentBytes += n
	if in.budget != nil {
		in.budget.sends--
		in.budget.bytes -= n
	}
	return nil
}

// valueBytes sizes a value as MaxMessageBytes counts it.
func valueBytes(v Value) int {
	switch v.kind {
	case KindString:
		return len(v.str)
	case KindStringList:
		n := 0
		for _, s := range v.Strs() {
			n += len(s) + 8
		}
		return n
	case KindIntList, KindFloatList, KindBoolList, KindTimestampList:
		return 8 * v.Len()
	}
	return 8
}

// envelopeBytes sizes a message: its value, or its row's names and values.
func envelopeBytes(env *Envelope) int {
	if env.Egress == "" {
		return valueBytes(env.Value) + len(env.Token)
	}
	n := 0
	for name, v := range env.Row {
		n += len(name) + valueBytes(v)
	}
	return n
}

// send checks env and keeps it for the commit.
func (in *Invocation) send(env Envelope) error {
	if err := in.sendable(); err != nil {
		return err
	}
	// An egress message ends its chain (it cannot send on), so only sends to programs count
	// against the limit.
	if env.Hops = in.hops + 1; env.Hops > in.e.maxHops && env.Egress == "" {
		if o, ok := in.e.observer.(MessageObserver); ok {
			o.HopLimit(in.f.FQN)
		}
		return fmt.Errorf("%w: this send would be hop %d of its chain (at most %d): %s, started by %s", ErrHopLimit, env.Hops, in.e.maxHops, in.addr, in.origin())
	}
	if env.Egress == "" && in.programSends() >= in.chainLeft() {
		if o, ok := in.e.observer.(MessageObserver); ok {
			o.HopLimit(in.f.FQN)
		}
		return fmt.Errorf("%w: this invocation's chain of sends has used its budget: %d messages from %s, started by %s (a chain's messages number at most %d in all, shared among its sends)", ErrHopLimit, in.chainLeft(), in.addr, in.origin(), in.e.chainBudget)
	}
	if env.Egress == "" {
		fqn, err := ParseFQN(env.To.FQN, in.e.defaultNS)
		if err != nil {
			return fmt.Errorf("%w: target: %w", ErrMessage, err)
		}
		p, err := in.e.lookup(fqn)
		if err != nil {
			return fmt.Errorf("%w: target: %w", ErrMessage, err)
		}
		if p.f.Messages == PrimitiveUnknown {
			return fmt.Errorf("%w: target %s receives no messages (it declares no spec.builder.messages)", ErrMessage, fqn)
		}
		if _, err := EncodeKeys(p.f.Keys, env.To.Keys); err != nil {
			return fmt.Errorf("%w: target %s: %w", ErrMessage, fqn, err)
		}
		v, err := Convert(p.f.Messages, env.Value)
		if err != nil {
			return fmt.Errorf("%w: a message to %s is %s: %w", ErrMessage, fqn, p.f.Messages, err)
		}
		env.To = Address{FQN: fqn, Keys: maps.Clone(env.To.Keys)}
		env.Value = v
	}
	env.From = in.addr
	if env.Timestamp.IsZero() {
		env.Timestamp = in.ts
		if !env.Due.IsZero() {
			env.Timestamp = env.Due
		}
	}
	if err := in.spend(envelopeBytes(&env)); err != nil {
		return err // before anything changes: a refused send leaves the others as they were
	}
	if env.Token != "" {
		// A later SendAfter of the token replaces an earlier one of the same invocation.
		kept := in.sends[:0]
		for _, s := range in.sends {
			if s.Token != env.Token {
				kept = append(kept, s)
			}
		}
		in.sends = kept
	}
	in.sends = append(in.sends, env)
	return nil
}

// chainLeft returns how many messages to programs the invocation may send.
func (in *Invocation) chainLeft() int {
	if in.msg != nil {
		return in.msg.Budget
	}
	return in.e.chainBudget
}

// programSends counts the invocation's sends to programs (not egresses).
func (in *Invocation) programSends() int {
	n := 0
	for i := range in.sends {
		if in.sends[i].Egress == "" {
			n++
		}
	}
	return n
}

// shareBudget gives each of the invocation's sends to programs its share of the budget
// left: (b-k)/k of b for k sends, so that the chain below never outnumbers b.
func (in *Invocation) shareBudget() {
	k := in.programSends()
	if k == 0 {
		return
	}
	share := max(in.chainLeft()-k, 0) / k
	for i := range in.sends {
		if in.sends[i].Egress == "" {
			in.sends[i].Budget = share
		}
	}
}

// origin describes what started the invocation's chain of sends, for the hop limit's error.
func (in *Invocation) origin() string {
	if in.msg != nil {
		return fmt.Sprintf("a message from %s", in.msg.From)
	}
	return "a row or a read"
}

// Mailbox names one sender's mailbox in a MessageState: the sender's feature and encoded
// keys.
type Mailbox struct {
	FQN  string
	Keys string
}

// MessageState is implemented by a State that keeps programs' mailboxes: CommitStorage then
// also enqueues StorageCommit.Send and applies StorageCommit.Cancel, in the same atomic step,
// and the engine's dispatcher takes due messages out with Claim and Release.
//
// A mailbox holds its sender's messages in order of (due time, ID); immediate messages are
// due at once. A Claim leases the mailbox to one owner (one engine, here or on another
// replica) and moves its due messages in flight: from then on a Cancel no longer reaches
// them (they fired), and no other owner gets them until the lease expires — so each message
// is delivered by one owner at a time, and again only when that owner did not Release it
// (at least once).
type MessageState interface {
	StorageState
	// DueMailboxes returns up to limit mailboxes with messages due as of now (or in flight
	// with an expired lease), in any order, and, when it knows it, the earliest due time of
	// a mailbox it did not return (zero: none known); with limit 0, only that time.
	DueMailboxes(ctx context.Context, now time.Time, limit int) (due []Mailbox, next time.Time, err error)
	// Claim leases the mailbox of f's entity keys to owner until now+lease, unless another
	// owner holds an unexpired lease (then it returns nil), and returns up to max messages:
	// those in flight first (claimed before and not released), then those due as of now,
	// which go in flight.
	Claim(ctx context.Context, f *Feature, keys, owner string, now time.Time, lease time.Duration, max int) ([]Envelope, error)
	// Release ends owner's lease: it removes the delivered messages (done, by ID), puts
	// retry (when not nil: a message whose delivery failed, with its Attempts counted) back
	// in flight to be claimed again at retryAt, and reindexes the mailbox at its next due
	// time. A lease that expired meanwhile still releases what it names.
	Release(ctx context.Context, f *Feature, keys, owner string, done []string, retry *Envelope, retryAt time.Time) error
	// DeferMailbox is told of a mailbox whose sender's feature the engine does not know: not
	// applied yet (a restart, before the registry applied it; a replica that has not
	// followed the change yet) or no longer (Drop removed its messages). It keeps the
	// mailbox's messages and lists it as due again no earlier than until (earlier only when a
	// commit, Claim or Release changes it meanwhile); an empty mailbox leaves the index.
	DeferMailbox(ctx context.Context, m Mailbox, until time.Time) error
}

// MailboxSweeper is implemented by a MessageState whose index of due mailboxes can lose an
// entry (a process that died between a commit and its indexing): Sweep finds such mailboxes
// and indexes them again. The dispatcher runs it when it starts and every SweepEvery.
type MailboxSweeper interface {
	Sweep(ctx context.Context) error
}

// MessageObserver is implemented by an Observer that also counts messages.
type MessageObserver interface {
	// Delivered reports one delivery of a message from the feature fqn: to a program
	// (egress "") or to an egress, its latency since it was due, and its error.
	Delivered(fqn, egress string, late time.Duration, err error)
	// DeadLettered reports a message dropped after its last attempt, or undeliverable.
	DeadLettered(fqn, egress string)
	// HopLimit reports a send refused at the hop limit.
	HopLimit(fqn string)
}
