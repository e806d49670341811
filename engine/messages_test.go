package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// programFunc is a Go feature program.
type programFunc func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error)

func (f programFunc) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return f(ctx, call)
}

// programsByFQN loads each feature's program from a map.
type programsByFQN map[string]engine.Program

func (m programsByFQN) LoadProgram(_ context.Context, f *engine.Feature) (engine.Program, error) {
	if p, ok := m[f.FQN]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("no program for %s", f.FQN)
}

// egressFunc is an egress; egresses resolves them by name.
type egressFunc func(ctx context.Context, m engine.EgressMessage) error

func (f egressFunc) Emit(ctx context.Context, m engine.EgressMessage) error { return f(ctx, m) }

type egresses map[string]engine.Egress

func (m egresses) Egress(name string) (engine.Egress, error) {
	if e, ok := m[name]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("egress %q is not applied", name)
}

// messageEnv is an engine on the in-process state with a controllable clock and no
// background delivery: tests deliver with DeliverMessages.
type messageEnv struct {
	t     *testing.T
	e     *engine.Engine
	clock *storageClock
	ctx   context.Context
}

func newMessageEnv(t *testing.T, progs programsByFQN, eg egresses, features []*engine.Feature, opts ...engine.Option) *messageEnv {
	t.Helper()
	c := &storageClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.now))
	t.Cleanup(func() { st.Close() })
	opts = append([]engine.Option{engine.WithPrograms(progs), engine.WithClock(c.now),
		engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		engine.WithDelivery(engine.Delivery{Poll: -1}), engine.WithEgresses(eg)}, opts...)
	e := engine.New(st, opts...)
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}, TimestampField: "ts"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range features {
		if err := e.Apply(ctx, f); err != nil {
			t.Fatalf("apply %s: %v", f.FQN, err)
		}
	}
	return &messageEnv{t: t, e: e, clock: c, ctx: ctx}
}

func msgFeature(fqn string, p engine.Primitive, fromRows bool, mods ...func(*engine.Feature)) *engine.Feature {
	f := &engine.Feature{FQN: fqn, Primitive: p, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
		Timeout: time.Second, Builder: engine.Builder{Kind: "wasm", Module: "x"}}
	if fromRows {
		f.DataSource = "msg.events"
	}
	for _, m := range mods {
		m(f)
	}
	return f
}

func receives(p engine.Primitive) func(*engine.Feature) {
	return func(f *engine.Feature) { f.Messages = p }
}
func stores(specs ...engine.StorageSpec) func(*engine.Feature) {
	return func(f *engine.Feature) { f.Storage = specs }
}

func (m *messageEnv) ingest(rows ...engine.Row) {
	m.t.Helper()
	if _, err := m.e.Ingest(m.ctx, "msg.events", rows); err != nil {
		m.t.Fatal(err)
	}
}

func (m *messageEnv) deliver() int {
	m.t.Helper()
	n, err := m.e.DeliverMessages(m.ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	return n
}

func (m *messageEnv) get(fqn, id string) engine.Value {
	m.t.Helper()
	r, err := m.e.Get(m.ctx, fqn, engine.Keys{"id": id})
	if err != nil {
		m.t.Fatal(err)
	}
	return r.Value
}

func event(id string, ts time.Time, fields ...any) engine.Row {
	r := engine.Row{"id": engine.String(id), "ts": engine.Timestamp(ts)}
	for i := 0; i+1 < len(fields); i += 2 {
		switch v := fields[i+1].(type) {
		case string:
			r[fields[i].(string)] = engine.String(v)
		case float64:
			r[fields[i].(string)] = engine.Float(v)
		}
	}
	return r
}

// sessionPrograms: msg.sessions counts an entity's events in its current session and arms
// (re-arms) a 30-minute inactivity timer to itself; when it fires, the session ends: the
// count goes to msg.session_totals (which adds it up) and the feature's value becomes 0.
func sessionPrograms() (programsByFQN, []*engine.Feature) {
	self := func(call *engine.ProgramCall) engine.Address {
		return engine.Address{FQN: "msg.sessions", Keys: engine.Keys{"id": call.Invocation.Address().Keys["id"]}}
	}
	sessions := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		n, _, err := in.Storage(ctx, "count")
		if err != nil {
			return engine.ProgramResult{}, err
		}
		if call.Message != nil { // the inactivity timer fired
			if err := in.ClearStorage(ctx, "count"); err != nil {
				return engine.ProgramResult{}, err
			}
			to := engine.Address{FQN: "msg.session_totals", Keys: self(call).Keys}
			if err := in.Send(ctx, to, n); err != nil {
				return engine.ProgramResult{}, err
			}
			return engine.ProgramResult{Value: engine.Int(0)}, nil
		}
		if err := in.SetStorage(ctx, "count", engine.Int(n.Int()+1)); err != nil {
			return engine.ProgramResult{}, err
		}
		if err := in.SendAfter(ctx, 30*time.Minute, "end", self(call), engine.String("end")); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: engine.Int(n.Int() + 1)}, nil
	})
	totals := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		t, _, err := in.Storage(ctx, "total")
		if err != nil {
			return engine.ProgramResult{}, err
		}
		sum := t.Int() + call.Message.Value.Int()
		if err := in.SetStorage(ctx, "total", engine.Int(sum)); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: engine.Int(sum)}, nil
	})
	return programsByFQN{"msg.sessions": sessions, "msg.session_totals": totals}, []*engine.Feature{
		msgFeature("msg.sessions", engine.PrimitiveInt, true, receives(engine.PrimitiveString), stores(engine.StorageSpec{Name: "count", Primitive: engine.PrimitiveInt})),
		msgFeature("msg.session_totals", engine.PrimitiveInt, false, receives(engine.PrimitiveInt), stores(engine.StorageSpec{Name: "total", Primitive: engine.PrimitiveInt})),
	}
}

// TestSessionTimer: each event re-arms the inactivity timer (a SendAfter of the same token
// replaces it), so the session ends 30 minutes after its last event, not its first; the timer
// fires once; its handler's own send is delivered in turn.
func TestSessionTimer(t *testing.T) {
	progs, features := sessionPrograms()
	m := newMessageEnv(t, progs, nil, features)
	t0 := m.clock.now()
	m.ingest(event("u1", t0))
	m.clock.add(10 * time.Minute)
	m.ingest(event("u1", m.clock.now()), event("u2", m.clock.now()))
	if v := m.get("msg.sessions", "u1"); v.Int() != 2 {
		t.Fatalf("u1's session has %v events, want 2", v)
	}
	m.clock.add(25 * time.Minute) // t0+35m: 30 minutes after u1's first event, 25 after its last
	if n := m.deliver(); n != 0 {
		t.Fatalf("at t0+35m %d messages were delivered, want none (the timer was re-armed at t0+10m)", n)
	}
	m.clock.add(6 * time.Minute) // t0+41m
	if n := m.deliver(); n != 4 {
		t.Fatalf("at t0+41m %d messages were delivered, want 4 (two timers, two totals)", n)
	}
	if v := m.get("msg.sessions", "u1"); v.Int() != 0 {
		t.Fatalf("u1's session after its timer: %v, want 0 (ended)", v)
	}
	if v := m.get("msg.session_totals", "u1"); v.Int() != 2 {
		t.Fatalf("u1's total = %v, want 2", v)
	}
	m.clock.add(time.Hour)
	if n := m.deliver(); n != 0 {
		t.Fatalf("an hour later %d more messages were delivered: a timer fired twice", n)
	}
	// A new session starts from zero.
	m.ingest(event("u1", m.clock.now()))
	if v := m.get("msg.sessions", "u1"); v.Int() != 1 {
		t.Fatalf("a new session: %v events, want 1", v)
	}
}

// TestCancelledTimerNeverFires: a timer cancelled before its time never fires.
func TestCancelledTimerNeverFires(t *testing.T) {
	var fired atomic.Int64
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		if call.Message != nil {
			fired.Add(1)
			return engine.ProgramResult{}, nil
		}
		self := engine.Address{FQN: "msg.timer", Keys: in.Address().Keys}
		switch call.Row["do"].Str() {
		case "arm":
			return engine.ProgramResult{}, in.SendAfter(ctx, time.Minute, "t", self, engine.Int(1))
		case "cancel":
			return engine.ProgramResult{}, in.Cancel(ctx, "t")
		}
		return engine.ProgramResult{}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.timer": prog}, nil, []*engine.Feature{msgFeature("msg.timer", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))})
	m.ingest(event("a", m.clock.now(), "do", "arm"), event("b", m.clock.now(), "do", "arm"))
	m.clock.add(30 * time.Second)
	m.ingest(event("a", m.clock.now(), "do", "cancel"))
	m.clock.add(time.Hour)
	if n := m.deliver(); n != 1 || fired.Load() != 1 {
		t.Fatalf("delivered %d, fired %d, want b's timer only", n, fired.Load())
	}
}

// TestMessagesCommitOrNothing: a program that sends and then fails sends nothing; a send to
// a bad target is refused with ErrMessage, naming it.
func TestMessagesCommitOrNothing(t *testing.T) {
	var sendErrs sync.Map
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		if call.Message != nil {
			return engine.ProgramResult{Value: engine.Int(call.Message.Value.Int())}, nil
		}
		ok := engine.Address{FQN: "msg.target", Keys: engine.Keys{"id": "x"}}
		if err := in.Send(ctx, ok, engine.Int(1)); err != nil {
			return engine.ProgramResult{}, err
		}
		for name, to := range map[string]engine.Address{
			"unknown":  {FQN: "msg.nosuch", Keys: engine.Keys{"id": "x"}},
			"deaf":     {FQN: "msg.deaf", Keys: engine.Keys{"id": "x"}},
			"bad keys": {FQN: "msg.target", Keys: engine.Keys{"user": "x"}},
		} {
			sendErrs.Store(name, in.Send(ctx, to, engine.Int(1)))
		}
		sendErrs.Store("wrong type", in.Send(ctx, ok, engine.String("one")))
		sendErrs.Store("no token", in.SendAfter(ctx, time.Minute, "", ok, engine.Int(1)))
		sendErrs.Store("negative delay", in.SendAfter(ctx, -time.Second, "t", ok, engine.Int(1)))
		sendErrs.Store("no egresses", in.Emit(ctx, "alerts", engine.Row{}))
		if call.Row["do"].Str() == "fail" {
			return engine.ProgramResult{}, errors.New("the program failed after sending")
		}
		return engine.ProgramResult{Value: engine.Int(1)}, nil
	})
	deaf := programFunc(func(context.Context, *engine.ProgramCall) (engine.ProgramResult, error) {
		return engine.ProgramResult{}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.sender": prog, "msg.target": prog, "msg.deaf": deaf}, nil, []*engine.Feature{
		msgFeature("msg.target", engine.PrimitiveInt, false, receives(engine.PrimitiveInt)),
		msgFeature("msg.deaf", engine.PrimitiveInt, false),
		msgFeature("msg.sender", engine.PrimitiveInt, true),
	})
	if _, err := m.e.Ingest(m.ctx, "msg.events", []engine.Row{event("a", m.clock.now(), "do", "fail")}); err == nil {
		t.Fatal("Ingest of a failing program succeeded")
	}
	if n := m.deliver(); n != 0 {
		t.Fatalf("a failed program's send was delivered (%d)", n)
	}
	sendErrs.Range(func(k, v any) bool {
		if err, _ := v.(error); !errors.Is(err, engine.ErrMessage) {
			t.Errorf("send with %s: %v, want ErrMessage", k, v)
		}
		return true
	})
	m.ingest(event("a", m.clock.now(), "do", "ok"))
	if n := m.deliver(); n != 1 {
		t.Fatalf("delivered %d, want the one good send", n)
	}
	if v := m.get("msg.target", "x"); v.Int() != 1 {
		t.Fatalf("msg.target = %v, want 1", v)
	}
}

// TestFanOut: one event updates the card's feature and, through a message, the merchant's,
// with the event's time; per-sender order holds.
func TestFanOut(t *testing.T) {
	card := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		amount := call.Row["amount"]
		to := engine.Address{FQN: "msg.merchant_amounts", Keys: engine.Keys{"id": call.Row["merchant"].Str()}}
		if err := call.Invocation.Send(ctx, to, amount); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: amount}, nil
	})
	merchant := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		l, _, err := in.Storage(ctx, "seen")
		if err != nil {
			return engine.ProgramResult{}, err
		}
		seen := append(append([]float64(nil), l.Floats()...), call.Message.Value.Float())
		if err := in.SetStorage(ctx, "seen", engine.FloatList(seen)); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: engine.FloatList(seen)}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.card_amount": card, "msg.merchant_amounts": merchant}, nil, []*engine.Feature{
		msgFeature("msg.card_amount", engine.PrimitiveFloat, true),
		msgFeature("msg.merchant_amounts", engine.PrimitiveFloatList, false, receives(engine.PrimitiveFloat),
			stores(engine.StorageSpec{Name: "seen", Primitive: engine.PrimitiveFloatList}), func(f *engine.Feature) { f.Primitive = engine.PrimitiveFloatList }),
	})
	ts := m.clock.now().Add(-time.Minute)
	var rows []engine.Row
	for i := range 20 {
		rows = append(rows, event("c1", ts, "merchant", "m1", "amount", float64(i)))
	}
	m.ingest(rows...)
	if n := m.deliver(); n != 20 {
		t.Fatalf("delivered %d, want 20", n)
	}
	r, err := m.e.Get(m.ctx, "msg.merchant_amounts", engine.Keys{"id": "m1"})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Value.Floats()
	if len(got) == 0 {
		t.Fatal("m1 has no value")
	}
	// The feature keeps lists by appending: the last write is the whole list, in send order.
	last := got[len(got)-20:]
	for i, x := range last {
		if x != float64(i) {
			t.Fatalf("m1 received %v, want 0..19 in order", last)
		}
	}
	if !r.Timestamp.Equal(ts) {
		t.Fatalf("m1's value is timed %v, want the event's %v", r.Timestamp, ts)
	}
}

// TestHopLimit: a send loop (each message sends the next) stops at the hop limit: the send
// beyond it is refused with ErrHopLimit, and the chain ends.
func TestHopLimit(t *testing.T) {
	var refused atomic.Value
	ping := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		n := int64(0)
		if call.Message != nil {
			n = call.Message.Value.Int()
		}
		if err := in.Send(ctx, in.Address(), engine.Int(n+1)); err != nil {
			refused.Store(err)
		}
		return engine.ProgramResult{Value: engine.Int(n)}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.ping": ping}, nil,
		[]*engine.Feature{msgFeature("msg.ping", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))}, engine.WithMaxHops(5))
	m.ingest(event("a", m.clock.now()))
	if n := m.deliver(); n != 5 {
		t.Fatalf("the loop delivered %d messages, want 5 (the hop limit)", n)
	}
	if v := m.get("msg.ping", "a"); v.Int() != 5 {
		t.Fatalf("msg.ping = %v, want 5", v)
	}
	err, _ := refused.Load().(error)
	if !errors.Is(err, engine.ErrHopLimit) {
		t.Fatalf("the sixth send: %v, want ErrHopLimit", err)
	}
}

// TestDeliveryRetries: a delivery that fails is retried after a back-off, and the sender's
// later messages wait behind it (order per sender); one that keeps failing is dead-lettered
// after MaxAttempts, and the messages behind it then go; an egress's permanent failure is
// not retried.
func TestDeliveryRetries(t *testing.T) {
	var failures atomic.Int64
	failures.Store(2)
	var got []int64
	var mu sync.Mutex
	target := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		v := call.Message.Value.Int()
		if v == 1 && failures.Add(-1) >= 0 {
			return engine.ProgramResult{}, errors.New("not yet")
		}
		if v == 66 {
			return engine.ProgramResult{}, errors.New("never")
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
		return engine.ProgramResult{Value: engine.Int(v)}, nil
	})
	var emitted, permanent atomic.Int64
	sender := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		to := engine.Address{FQN: "msg.flaky", Keys: engine.Keys{"id": "x"}}
		switch call.Row["do"].Str() {
		case "egress":
			return engine.ProgramResult{}, errors.Join(in.Emit(ctx, "ok", engine.Row{"n": engine.Int(1)}), in.Emit(ctx, "refuses", engine.Row{}))
		case "poison":
			return engine.ProgramResult{}, errors.Join(in.Send(ctx, to, engine.Int(66)), in.Send(ctx, to, engine.Int(7)))
		}
		return engine.ProgramResult{}, errors.Join(in.Send(ctx, to, engine.Int(1)), in.Send(ctx, to, engine.Int(2)))
	})
	eg := egresses{
		"default.ok":      egressFunc(func(context.Context, engine.EgressMessage) error { emitted.Add(1); return nil }),
		"default.refuses": egressFunc(func(context.Context, engine.EgressMessage) error { permanent.Add(1); return engine.ErrPermanent }),
	}
	m := newMessageEnv(t, programsByFQN{"msg.flaky": target, "msg.sender": sender}, eg, []*engine.Feature{
		msgFeature("msg.flaky", engine.PrimitiveInt, false, receives(engine.PrimitiveInt)),
		msgFeature("msg.sender", engine.PrimitiveInt, true),
	}, engine.WithDelivery(engine.Delivery{Poll: -1, MaxAttempts: 3, Backoff: time.Second, MaxBackoff: time.Second}))
	m.ingest(event("s", m.clock.now()))
	if n := m.deliver(); n != 0 || len(got) != 0 {
		t.Fatalf("first attempt: %d delivered (%v), want none: 1 failed and 2 waits behind it", n, got)
	}
	m.clock.add(time.Second)
	m.deliver() // the second attempt fails too
	m.clock.add(time.Second)
	if n := m.deliver(); n != 2 || fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("third attempt: %d delivered, got %v, want [1 2]", n, got)
	}

	m.ingest(event("s", m.clock.now(), "do", "poison"))
	for range 3 {
		m.deliver()
		m.clock.add(time.Second)
	}
	m.deliver()
	if fmt.Sprint(got) != "[1 2 7]" {
		t.Fatalf("after the poison message's last attempt: %v, want it dead-lettered and 7 delivered", got)
	}

	m.ingest(event("s", m.clock.now(), "do", "egress"))
	m.deliver()
	m.clock.add(time.Minute)
	m.deliver()
	if emitted.Load() != 1 || permanent.Load() != 1 {
		t.Fatalf("egress: %d emitted, %d permanent failures; want 1 and 1 (not retried)", emitted.Load(), permanent.Load())
	}
}

// TestBackgroundDelivery: without DeliverMessages, the engine delivers a send on its own,
// soon after the commit.
func TestBackgroundDelivery(t *testing.T) {
	delivered := make(chan int64, 1)
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Message != nil {
			delivered <- call.Message.Value.Int()
			return engine.ProgramResult{}, nil
		}
		return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "b"}}, engine.Int(42))
	})
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	e := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": prog}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(ctx, msgFeature("msg.bg", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ingest(ctx, "msg.events", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-delivered:
		if v != 42 {
			t.Fatalf("delivered %d, want 42", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the send was not delivered in the background")
	}
}

// TestDeliveryBeforeFeaturesApplied: a dispatcher that starts before the engine's features
// are applied (a restart: the registry restores them after engine.New) keeps the mailboxes
// it cannot deliver yet, and delivers them once the features are applied, not after a sweep.
func TestDeliveryBeforeFeaturesApplied(t *testing.T) {
	delivered := make(chan int64, 1)
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Message != nil {
			delivered <- call.Message.Value.Int()
			return engine.ProgramResult{}, nil
		}
		return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "b"}}, engine.Int(42))
	})
	log := engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	apply := func(e *engine.Engine) {
		t.Helper()
		if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
			t.Fatal(err)
		}
		if err := e.Apply(ctx, msgFeature("msg.bg", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))); err != nil {
			t.Fatal(err)
		}
	}
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	first := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": prog}), log, engine.WithDelivery(engine.Delivery{Poll: -1}))
	apply(first)
	if _, err := first.Ingest(ctx, "msg.events", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	first.Close() // before delivering: the message waits in the mailbox

	second := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": prog}), log, engine.WithDelivery(engine.Delivery{Poll: 5 * time.Millisecond}))
	t.Cleanup(func() { second.Close() })
	time.Sleep(100 * time.Millisecond) // rounds that find the mailbox of a feature not applied yet
	apply(second)
	select {
	case v := <-delivered:
		if v != 42 {
			t.Fatalf("delivered %d, want 42", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a message waiting when the engine started was not delivered once its feature was applied")
	}
}

// TestCloseWhileDelivering: Close cancels the delivery it interrupts without counting it as
// a failed attempt (with MaxAttempts 1 it would be dead-lettered): the message stays in the
// mailbox and the next engine delivers it.
func TestCloseWhileDelivering(t *testing.T) {
	started := make(chan struct{}, 1)
	blocking := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Message == nil {
			return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "b"}}, engine.Int(7))
		}
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return engine.ProgramResult{}, ctx.Err()
	})
	var got atomic.Int64
	counting := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		got.Add(call.Message.Value.Int())
		return engine.ProgramResult{}, nil
	})
	log := engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	apply := func(e *engine.Engine) {
		t.Helper()
		if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
			t.Fatal(err)
		}
		f := msgFeature("msg.bg", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))
		f.Timeout = time.Minute
		if err := e.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	first := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": blocking}), log,
		engine.WithMaxTimeout(time.Minute), engine.WithDelivery(engine.Delivery{Poll: 5 * time.Millisecond, MaxAttempts: 1}))
	apply(first)
	if _, err := first.Ingest(ctx, "msg.events", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not delivered in the background")
	}
	first.Close()

	second := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": counting}), log,
		engine.WithMaxTimeout(time.Minute), engine.WithDelivery(engine.Delivery{Poll: -1}))
	t.Cleanup(func() { second.Close() })
	apply(second)
	if n, err := second.DeliverMessages(ctx); err != nil || n != 1 || got.Load() != 7 {
		t.Fatalf("after Close interrupted its delivery: %d delivered (%v), got %d; want the message delivered once", n, err, got.Load())
	}
}

// TestDeliveryEndsWithItsLease: a delivery that would outlive its claim's lease is cut at the
// lease's end, so that the replica claiming the mailbox next never delivers its messages
// beside it (two at once would break their order).
func TestDeliveryEndsWithItsLease(t *testing.T) {
	var running, most atomic.Int64
	slow := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Message == nil {
			return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "b"}}, engine.Int(1))
		}
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-ctx.Done() // slower than the lease: runs until its timeout, or until cut
		return engine.ProgramResult{}, ctx.Err()
	})
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	replica := func() *engine.Engine {
		e := engine.New(st, engine.WithPrograms(programsByFQN{"msg.bg": slow}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			engine.WithDelivery(engine.Delivery{Poll: -1, Lease: 200 * time.Millisecond}))
		t.Cleanup(func() { e.Close() })
		if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
			t.Fatal(err)
		}
		f := msgFeature("msg.bg", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))
		f.Timeout = 5 * time.Second
		if err := e.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := replica(), replica()
	if _, err := a.Ingest(ctx, "msg.events", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.DeliverMessages(ctx)
		done <- err
	}()
	time.Sleep(400 * time.Millisecond) // past a's lease: b may claim the mailbox
	if _, err := b.DeliverMessages(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := most.Load(); n != 1 {
		t.Fatalf("%d deliveries of the message ran at once: one outlived its lease", n)
	}
}

// TestDeliveryToTargetNotAppliedYet: a message whose target this engine has not applied (yet:
// a restart, the registry restoring the target after its sender; a replica that has not
// followed the target's apply) is retried, not dead-lettered at once: it reaches the target's
// program once the target is applied. (The send checked that the target was applied.)
func TestDeliveryToTargetNotAppliedYet(t *testing.T) {
	var got atomic.Int64
	sender := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "msg.target", Keys: engine.Keys{"id": "x"}}, engine.Int(5))
	})
	target := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		got.Add(call.Message.Value.Int())
		return engine.ProgramResult{}, nil
	})
	progs := programsByFQN{"msg.sender": sender, "msg.target": target}
	c := &storageClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.now))
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	newEngine := func(features ...*engine.Feature) *engine.Engine {
		e := engine.New(st, engine.WithPrograms(progs), engine.WithClock(c.now), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			engine.WithDelivery(engine.Delivery{Poll: -1}))
		t.Cleanup(func() { e.Close() })
		if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "msg.events", Kind: "rest", KeyFields: []string{"id"}, TimestampField: "ts"}); err != nil {
			t.Fatal(err)
		}
		for _, f := range features {
			if err := e.Apply(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		return e
	}
	senderF := func() *engine.Feature { return msgFeature("msg.sender", engine.PrimitiveInt, true) }
	targetF := func() *engine.Feature {
		return msgFeature("msg.target", engine.PrimitiveInt, false, receives(engine.PrimitiveInt))
	}
	first := newEngine(senderF(), targetF())
	if _, err := first.Ingest(ctx, "msg.events", []engine.Row{event("a", c.now())}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	second := newEngine(senderF()) // the target is not applied yet
	if _, err := second.DeliverMessages(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.Apply(ctx, targetF()); err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute) // past the retry's back-off
	if _, err := second.DeliverMessages(ctx); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 5 {
		t.Fatalf("the target got %d, want the message (5): it was dead-lettered while its target was not applied yet", got.Load())
	}
}

// TestDeadLetterLogsContent: a dead-lettered message is logged with its content (what
// docs/stateful.md and docs/egress.md promise), so that an operator can replay it.
func TestDeadLetterLogsContent(t *testing.T) {
	var logs syncBuffer
	sender := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		return engine.ProgramResult{}, errors.Join(
			in.Send(ctx, engine.Address{FQN: "msg.failing", Keys: engine.Keys{"id": "x"}}, engine.String("the lost message")),
			in.Emit(ctx, "refuses", engine.Row{"amount": engine.Float(9.5), "card": engine.String("c-17")}))
	})
	failing := programFunc(func(context.Context, *engine.ProgramCall) (engine.ProgramResult, error) {
		return engine.ProgramResult{}, errors.New("always fails")
	})
	eg := egresses{"default.refuses": egressFunc(func(context.Context, engine.EgressMessage) error { return engine.ErrPermanent })}
	m := newMessageEnv(t, programsByFQN{"msg.sender": sender, "msg.failing": failing}, eg, []*engine.Feature{
		msgFeature("msg.failing", engine.PrimitiveInt, false, receives(engine.PrimitiveString)),
		msgFeature("msg.sender", engine.PrimitiveInt, true),
	}, engine.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), engine.WithDelivery(engine.Delivery{Poll: -1, MaxAttempts: 1}))
	m.ingest(event("s", m.clock.now()))
	m.deliver()
	m.deliver()
	for _, want := range []string{"the lost message", "c-17", "9.5"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the dead-letter log lines do not hold %q:\n%s", want, logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// TestNewWithMessagesDue: an engine over a State that already holds due messages (a
// restart) starts delivering only once it is set up: its first round ran before its
// (empty) set of features existed, and looking the sender up panicked.
func TestNewWithMessagesDue(t *testing.T) {
	c := &storageClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.now))
	t.Cleanup(func() { st.Close() })
	to := engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "b"}}
	sender := msgFeature("msg.bg", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))
	if _, _, err := st.CommitStorage(context.Background(), sender, "a", engine.StorageCommit{Blind: true,
		Send: []engine.Envelope{{From: engine.Address{FQN: "msg.bg", Keys: engine.Keys{"id": "a"}}, To: to, Value: engine.Int(1), Hops: 1}}}); err != nil {
		t.Fatal(err)
	}
	log := engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 300 {
		c.add(2 * time.Second) // past the deferral of the last engine's round
		e := engine.New(st, engine.WithClock(c.now), log, engine.WithDelivery(engine.Delivery{Poll: time.Millisecond}))
		time.Sleep(100 * time.Microsecond)
		e.Close()
	}
}

// TestSendsPerRequestBounded: the sends of one Ingest request are bounded in all, whatever
// each invocation's share, and the request is refused with ErrMessage naming the limit.
func TestSendsPerRequestBounded(t *testing.T) {
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		for range engine.MaxSendsPerInvocation {
			if err := in.Send(ctx, in.Address(), engine.Int(1)); err != nil {
				return engine.ProgramResult{}, err
			}
		}
		return engine.ProgramResult{}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.wide": prog}, nil,
		[]*engine.Feature{msgFeature("msg.wide", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))})
	rows := make([]engine.Row, engine.MaxSendsPerRequest/engine.MaxSendsPerInvocation)
	for i := range rows {
		rows[i] = event(fmt.Sprint("r", i), m.clock.now())
	}
	if _, err := m.e.Ingest(m.ctx, "msg.events", rows); err != nil {
		t.Fatalf("a request at the limit: %v", err)
	}
	_, err := m.e.Ingest(m.ctx, "msg.events", append(rows, event("one-more", m.clock.now())))
	if !errors.Is(err, engine.ErrMessage) || !strings.Contains(err.Error(), "sends in one request") {
		t.Fatalf("a request past the limit: %v, want ErrMessage naming the request's limit", err)
	}
}

// TestChainBudget: a chain that fans out (each message sends four more) ends within its
// budget of messages, not at 4^hops; the sends past it are refused with ErrHopLimit.
func TestChainBudget(t *testing.T) {
	var delivered, refused atomic.Int64
	tree := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		if call.Message != nil {
			delivered.Add(1)
		}
		for i := range 4 {
			to := engine.Address{FQN: "msg.tree", Keys: engine.Keys{"id": fmt.Sprint(in.Address().Keys["id"], ".", i)}}
			if err := in.Send(ctx, to, engine.Int(1)); err != nil {
				if !errors.Is(err, engine.ErrHopLimit) {
					return engine.ProgramResult{}, err
				}
				refused.Add(1)
			}
		}
		return engine.ProgramResult{}, nil
	})
	const budget = 100
	m := newMessageEnv(t, programsByFQN{"msg.tree": tree}, nil,
		[]*engine.Feature{msgFeature("msg.tree", engine.PrimitiveInt, true, receives(engine.PrimitiveInt))}, engine.WithChainBudget(budget))
	m.ingest(event("r", m.clock.now()))
	m.deliver()
	if n := delivered.Load(); n == 0 || n > budget {
		t.Fatalf("the tree delivered %d messages, want 1 to %d (its budget)", n, budget)
	}
	if refused.Load() == 0 {
		t.Fatal("no send was refused: the budget did not bound the tree")
	}
	t.Logf("%d delivered, %d refused", delivered.Load(), refused.Load())
}

// TestMessageBytesBounded: a message over MaxMessageBytes, and an invocation's messages past
// MaxSendBytesPerInvocation in all, are refused with ErrMessage; a refused SendAfter leaves
// the pending timer of its token as it was.
func TestMessageBytesBounded(t *testing.T) {
	big := engine.String(strings.Repeat("x", engine.MaxMessageBytes+1))
	chunk := engine.String(strings.Repeat("x", engine.MaxMessageBytes-64))
	var errs sync.Map
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		if call.Message != nil {
			return engine.ProgramResult{Value: engine.Int(int64(len(call.Message.Value.Str())))}, nil
		}
		self := in.Address()
		errs.Store("one too big", in.Send(ctx, self, big))
		if err := in.SendAfter(ctx, time.Minute, "t", self, engine.String("kept")); err != nil {
			return engine.ProgramResult{}, err
		}
		errs.Store("a too big replacement", in.SendAfter(ctx, time.Minute, "t", self, big))
		var err error
		for err == nil {
			err = in.Send(ctx, self, chunk)
		}
		errs.Store("too many bytes", err)
		return engine.ProgramResult{}, nil
	})
	m := newMessageEnv(t, programsByFQN{"msg.big": prog}, nil,
		[]*engine.Feature{msgFeature("msg.big", engine.PrimitiveInt, true, receives(engine.PrimitiveString))})
	dry, err := m.e.DryRun(m.ctx, "msg.big", nil, event("a", m.clock.now()), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	errs.Range(func(k, v any) bool {
		if err, _ := v.(error); !errors.Is(err, engine.ErrMessage) || !strings.Contains(err.Error(), "bytes") {
			t.Errorf("%s: %v, want ErrMessage naming the bytes", k, v)
		}
		return true
	})
	timers := 0
	for _, s := range dry.Sends {
		if s.Token == "t" {
			timers++
			if s.Value.Str() != "kept" {
				t.Errorf("the timer is %.20q…, want the one the refused replacement left", s.Value.Str())
			}
		}
	}
	if timers != 1 || len(dry.Sends) > 1+engine.MaxSendBytesPerInvocation/(engine.MaxMessageBytes-64) {
		t.Fatalf("%d timers and %d sends, want 1 timer and the sends within the invocation's bytes", timers, len(dry.Sends))
	}
}

// TestMailboxBounded: a sender whose messages are not delivered (their target fails) fills
// its mailbox up to WithMaxMailbox; its next row is then refused with ErrMailboxFull and
// writes nothing; once the messages are delivered its rows are taken again.
func TestMailboxBounded(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	sender := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		to := engine.Address{FQN: "msg.sink", Keys: call.Invocation.Address().Keys}
		if err := call.Invocation.Send(ctx, to, engine.Int(1)); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: call.Row["n"]}, nil
	})
	sink := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if failing.Load() {
			return engine.ProgramResult{}, errors.New("the sink is down")
		}
		return engine.ProgramResult{}, nil
	})
	const limit = 5
	m := newMessageEnv(t, programsByFQN{"msg.sender": sender, "msg.sink": sink}, nil, []*engine.Feature{
		msgFeature("msg.sender", engine.PrimitiveFloat, true),
		msgFeature("msg.sink", engine.PrimitiveInt, false, receives(engine.PrimitiveInt)),
	}, engine.WithMaxMailbox(limit))
	row := func(n float64) engine.Row { return event("a", m.clock.now(), "n", n) }
	for i := range limit {
		m.ingest(row(float64(i)))
	}
	m.deliver() // fails: the messages stay, in flight and then pending again
	_, err := m.e.Ingest(m.ctx, "msg.events", []engine.Row{row(99)})
	if !errors.Is(err, engine.ErrMailboxFull) {
		t.Fatalf("a row past the mailbox's limit: %v, want ErrMailboxFull", err)
	}
	if v := m.get("msg.sender", "a"); !v.Equal(engine.Float(limit - 1)) {
		t.Fatalf("after the refused row, msg.sender = %v, want %v (the refused row wrote nothing)", v, limit-1)
	}
	failing.Store(false)
	m.clock.add(time.Hour) // past the failed delivery's back-off
	if n := m.deliver(); n != limit {
		t.Fatalf("delivered %d messages, want %d", n, limit)
	}
	m.ingest(row(99))
	if v := m.get("msg.sender", "a"); !v.Equal(engine.Float(99)) {
		t.Fatalf("after delivery, msg.sender = %v, want 99", v)
	}
}
