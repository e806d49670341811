package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// deferUnknown is how long a mailbox whose sender's feature is not applied here waits before
// it is listed as due again (DeferMailbox): soon after a restart, once the registry applied
// the engine's features.
const deferUnknown = time.Second

// Delivery configures the dispatcher that delivers programs' messages from the mailboxes of a
// MessageState (WithDelivery). The zero value of a field keeps its default.
type Delivery struct {
	// Poll is how often the dispatcher looks for due messages when nothing woke it (a
	// commit on this engine that sent, or the earliest due time it knows of): it bounds how
	// late a delayed message of another replica, or one after a restart, fires. Default
	// 250ms; negative: no background delivery (call DeliverMessages, as tests do).
	Poll time.Duration
	// Lease is how long a claim of a mailbox keeps other replicas off it; a replica that
	// dies holding one delays its mailbox's messages by at most this. Default 30s.
	Lease time.Duration
	// Batch is how many messages of one mailbox one claim takes. Default 64.
	Batch int
	// Workers is how many mailboxes are delivered at once. Default 8.
	Workers int
	// MaxAttempts is how often a message is tried before it is dead-lettered (dropped and
	// logged). Default 10.
	MaxAttempts int
	// Backoff is the wait before the second attempt, doubled for each later one up to
	// MaxBackoff. Defaults 100ms and 1m.
	Backoff, MaxBackoff time.Duration
	// EgressTimeout bounds one delivery to an egress. Default 10s.
	EgressTimeout time.Duration
	// SweepEvery is how often a MailboxSweeper State is swept (and once at start). Default
	// 5m.
	SweepEvery time.Duration
}

func (d Delivery) withDefaults() Delivery {
	def := func(v *time.Duration, x time.Duration) {
		if *v == 0 {
			*v = x
		}
	}
	def(&d.Poll, 250*time.Millisecond)
	def(&d.Lease, 30*time.Second)
	def(&d.Backoff, 100*time.Millisecond)
	def(&d.MaxBackoff, time.Minute)
	def(&d.EgressTimeout, 10*time.Second)
	def(&d.SweepEvery, 5*time.Minute)
	if d.Batch <= 0 {
		d.Batch = 64
	}
	if d.Workers <= 0 {
		d.Workers = 8
	}
	if d.MaxAttempts <= 0 {
		d.MaxAttempts = 10
	}
	return d
}

// WithDelivery configures the delivery of messages (see Delivery).
func WithDelivery(d Delivery) Option { return func(e *Engine) { e.dispatch.cfg = d } }

// dispatcher delivers messages from the mailboxes in the background: it wakes on pokes (a
// commit here that sent), at the earliest due time it knows, and every Poll.
type dispatcher struct {
	cfg   Delivery
	owner string // this engine's name in mailbox leases
	// claims numbers this engine's claims: each is an owner of its own (owner, then the
	// number), so that two deliveries of one engine at once (DeliverMessages beside the
	// background loop) never both hold a mailbox.
	claims atomic.Uint64

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// start starts the background delivery, unless the configuration turns it off.
func (e *Engine) startDelivery() {
	d := &e.dispatch
	d.cfg = d.cfg.withDefaults()
	var b [12]byte
	_, _ = rand.Read(b[:])
	d.owner = hex.EncodeToString(b[:])
	d.wake = make(chan struct{}, 1)
	d.stop = make(chan struct{})
	d.done = make(chan struct{})
	if e.messages == nil || d.cfg.Poll < 0 {
		close(d.done)
		return
	}
	go e.deliverLoop()
}

// poke wakes the dispatcher.
func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close stops the background delivery and waits for the deliveries running.
func (d *dispatcher) close() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

func (e *Engine) deliverLoop() {
	d := &e.dispatch
	defer close(d.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-d.stop
		cancel()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	sweeper, _ := e.messages.(MailboxSweeper)
	var swept time.Time
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		case <-timer.C:
		}
		if sweeper != nil && time.Since(swept) >= d.cfg.SweepEvery {
			swept = time.Now()
			if err := sweeper.Sweep(ctx); err != nil && ctx.Err() == nil {
				e.log.LogAttrs(ctx, slog.LevelWarn, "sweeping the mailboxes failed", slog.String("error", err.Error()))
			}
		}
		next, err := e.deliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "message delivery failed; retrying", slog.String("error", err.Error()))
		}
		wait := d.cfg.Poll
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(e.now()), time.Millisecond))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// DeliverMessages delivers every message due as of the engine's clock, in the calling
// goroutine (with the background delivery too, both may deliver: each mailbox is claimed by
// one at a time), and returns how many it delivered or dead-lettered. It is for tests and
// tools that drive the clock; servers leave delivery to the background.
func (e *Engine) DeliverMessages(ctx context.Context) (int, error) {
	if e.messages == nil {
		return 0, fmt.Errorf("%w: the state provider keeps no mailboxes", ErrUnsupported)
	}
	total := 0
	for {
		n, err := e.deliverRound(ctx)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// deliverDue delivers due messages until none is left (or a round delivers nothing), and
// returns the earliest due time of what is left, when known.
func (e *Engine) deliverDue(ctx context.Context) (time.Time, error) {
	for range 64 {
		n, err := e.deliverRound(ctx)
		if err != nil {
			return time.Time{}, err
		}
		if n == 0 {
			break
		}
	}
	_, next, err := e.messages.DueMailboxes(ctx, e.now(), 0)
	return next, err
}

// deliverRound delivers the messages of the mailboxes due now, Workers at a time.
func (e *Engine) deliverRound(ctx context.Context) (int, error) {
	d := &e.dispatch
	due, _, err := e.messages.DueMailboxes(ctx, e.now(), 4*d.cfg.Workers)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	var (
		mu    sync.Mutex
		total int
		errs  []error
		wg    sync.WaitGroup
		slots = make(chan struct{}, d.cfg.Workers)
	)
	for _, m := range due {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			n, err := e.deliverMailbox(ctx, m)
			mu.Lock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// deliverMailbox claims one mailbox and delivers what it holds, in order, stopping at the
// first message whose delivery fails (it is retried after a back-off: later messages of the
// sender wait, so that they arrive in order).
func (e *Engine) deliverMailbox(ctx context.Context, m Mailbox) (int, error) {
	d := &e.dispatch
	p, err := e.lookup(m.FQN)
	if err != nil {
		// The sender is not applied here: not yet (a restart, before the registry applied
		// it; another replica applied it first) or no longer (its Drop removed the
		// mailbox). Look again later, leaving its messages be.
		if err := e.messages.DeferMailbox(ctx, m, e.now().Add(deferUnknown)); err != nil {
			return 0, fmt.Errorf("defer the mailbox of %s keys %s: %w", m.FQN, quoteClipped(m.Keys), err)
		}
		return 0, nil
	}
	owner := d.owner + "." + strconv.FormatUint(d.claims.Add(1), 36)
	began := time.Now()
	envs, err := e.messages.Claim(ctx, p.f, m.Keys, owner, e.now(), d.cfg.Lease, d.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("claim the mailbox of %s keys %s: %w", m.FQN, quoteClipped(m.Keys), err)
	}
	if len(envs) == 0 {
		return 0, nil
	}
	// The deliveries end with the lease: past it another replica may claim the mailbox and
	// deliver the same messages, and two deliveries at once would break their order.
	lctx, cancelLease := context.WithDeadline(ctx, began.Add(d.cfg.Lease))
	defer cancelLease()
	var done []string
	var retry *Envelope
	var retryAt time.Time
	for i := range envs {
		env := envs[i]
		if ctx.Err() != nil || time.Since(began) > d.cfg.Lease/2 {
			break // the rest stays in flight: claimed again once the lease ends
		}
		err := e.deliver(lctx, &env)
		if err != nil && ctx.Err() != nil {
			break // Close interrupted it: not an attempt that failed; it stays in flight
		}
		if err != nil && lctx.Err() != nil {
			err = fmt.Errorf("%w (cut at the end of the mailbox's lease, %v after its claim: a delivery may not outlive it)", err, d.cfg.Lease)
		}
		if o, ok := e.observer.(MessageObserver); ok {
			var late time.Duration
			if !env.Due.IsZero() {
				late = e.now().Sub(env.Due)
			}
			o.Delivered(m.FQN, env.Egress, late, err)
		}
		if err == nil {
			done = append(done, env.ID)
			continue
		}
		env.Attempts++
		if errors.Is(err, ErrPermanent) || env.Attempts >= d.cfg.MaxAttempts {
			e.deadLetter(ctx, &env, err)
			done = append(done, env.ID)
			continue
		}
		e.log.LogAttrs(ctx, slog.LevelWarn, "message delivery failed; will retry",
			slog.String("from", env.From.String()), slog.String("to", target(&env)),
			slog.Int("attempt", env.Attempts), slog.String("error", err.Error()))
		retry, retryAt = &env, e.now().Add(d.backoff(env.Attempts))
		break
	}
	// Released even when ctx ended, so that the next owner need not wait out the lease.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.messages.Release(rctx, p.f, m.Keys, owner, done, retry, retryAt); err != nil {
		return len(done), fmt.Errorf("release the mailbox of %s keys %s: %w", m.FQN, quoteClipped(m.Keys), err)
	}
	return len(done), nil
}

// backoff returns the wait before attempt n+1.
func (d *dispatcher) backoff(n int) time.Duration {
	b := d.cfg.Backoff
	for i := 1; i < n && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.cfg.MaxBackoff)
}

func target(env *Envelope) string {
	if env.Egress != "" {
		return "egress " + env.Egress
	}
	return env.To.String()
}

// deadLetter drops a message that cannot be delivered, loudly: with its content, so that an
// operator can replay it.
func (e *Engine) deadLetter(ctx context.Context, env *Envelope, err error) {
	if o, ok := e.observer.(MessageObserver); ok {
		o.DeadLettered(env.From.FQN, env.Egress)
	}
	e.log.LogAttrs(ctx, slog.LevelError, "message dead-lettered: dropped after its last attempt",
		slog.String("from", env.From.String()), slog.String("to", target(env)), slog.String("id", env.ID),
		slog.String("message", content(env)), slog.Int("attempts", env.Attempts), slog.Int("hops", env.Hops),
		slog.String("error", err.Error()))
}

// content formats a message for people: the value to a program, or the row to an egress as
// {name=value …} in name order.
func content(env *Envelope) string {
	if env.Egress == "" {
		return env.Value.String()
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, name := range slices.Sorted(maps.Keys(env.Row)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(name + "=" + env.Row[name].String())
	}
	b.WriteByte('}')
	return b.String()
}

// deliver delivers one message: to its egress, or to its target's program, as a program call
// whose value, storage and sends commit together.
func (e *Engine) deliver(ctx context.Context, env *Envelope) error {
	if env.Egress != "" {
		return e.emit(ctx, env)
	}
	p, err := e.lookup(env.To.FQN)
	if err != nil {
		// The send found it applied: here it is not yet (a restart, the registry restoring
		// it after its sender; a replica that has not followed its apply), or no longer.
		// Retried, as an egress not applied is, and dead-lettered after the last attempt.
		return fmt.Errorf("target: %w", err)
	}
	f := p.f
	if f.Messages == PrimitiveUnknown || p.program == nil {
		return fmt.Errorf("%w: %s receives no messages (no spec.builder.messages)", ErrPermanent, f.FQN)
	}
	v, err := Convert(f.Messages, env.Value)
	if err != nil {
		return fmt.Errorf("%w: a message to %s is %s: %w", ErrPermanent, f.FQN, f.Messages, err)
	}
	ekeys, err := EncodeKeys(f.Keys, env.To.Keys)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPermanent, f.FQN, err)
	}
	msg := &Received{From: env.From, Value: v, Hops: env.Hops, Budget: env.Budget, Attempt: env.Attempts + 1}
	for attempt := 1; ; attempt++ {
		err := e.receive(ctx, p, env, ekeys, msg)
		if errors.Is(err, ErrConflict) && attempt < maxConflictRetries {
			continue // another invocation of the address committed first: run again on its storage
		}
		return err
	}
}

// receive runs the target's program once for a message and commits what it did.
func (e *Engine) receive(ctx context.Context, p *plan, env *Envelope, ekeys string, msg *Received) error {
	ctx, cancel := context.WithTimeout(ctx, p.f.Timeout)
	defer cancel()
	call := &ProgramCall{Keys: env.To.Keys, Timestamp: env.Timestamp, Message: msg}
	out, okeys, err := e.run(ctx, p, call)
	if err != nil {
		return fmt.Errorf("%s: %w", p.f.FQN, err)
	}
	if out.Value.IsNull() {
		if call.Invocation == nil {
			return nil
		}
		return e.commitStorage(ctx, call.Invocation)
	}
	if okeys != ekeys {
		return fmt.Errorf("%w: %s: the program returned a value for other keys (%v) than the message's (%v)", ErrInvalidKeys, p.f.FQN, out.Keys, env.To.Keys)
	}
	_, err = e.writeInvoked(ctx, OpUpdate, p, out.Keys, ekeys, out.Value, out.Timestamp, e.now(), call.Invocation)
	return err
}

// emit delivers an egress message.
func (e *Engine) emit(ctx context.Context, env *Envelope) error {
	if e.egresses == nil {
		return fmt.Errorf("%w: egress %q: no egresses are configured", ErrPermanent, env.Egress)
	}
	eg, err := e.egresses.Egress(env.Egress)
	if err != nil {
		// Not (or no longer) applied: retried, since it may be applied again shortly.
		return fmt.Errorf("egress %q: %w", env.Egress, err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.dispatch.cfg.EgressTimeout)
	defer cancel()
	return eg.Emit(ctx, EgressMessage{
		ID: env.From.String() + "/" + env.ID, Egress: env.Egress, From: env.From,
		Row: env.Row, Timestamp: env.Timestamp, Attempt: env.Attempts + 1,
	})
}
