package statetest

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// messageState returns the State as an engine.MessageState, skipping the subtest when it
// keeps no mailboxes.
func (e *env) messageState() engine.MessageState {
	s, ok := e.st.(engine.MessageState)
	if !ok {
		e.Skip("the State keeps no mailboxes (engine.MessageState)")
	}
	return s
}

// ms is the resolution mailbox due times are compared at: a State may keep them in
// milliseconds.
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

// due reports whether DueMailboxes as of now lists the mailbox of f's keys (other subtests'
// mailboxes, in a shared State, are ignored).
func (e *env) due(s engine.MessageState, f *engine.Feature, keys string, now time.Time) bool {
	e.Helper()
	got, _, err := s.DueMailboxes(e.ctx, now, 1<<14)
	if err != nil {
		e.Fatalf("DueMailboxes: %v", err)
	}
	return slices.Contains(got, engine.Mailbox{FQN: f.FQN, Keys: keys})
}

func (e *env) claim(s engine.MessageState, f *engine.Feature, keys, owner string, now time.Time, max int) []engine.Envelope {
	e.Helper()
	envs, err := s.Claim(e.ctx, f, keys, owner, now, time.Minute, max)
	if err != nil {
		e.Fatalf("Claim(%s, %q, %s): %v", f.FQN, keys, owner, err)
	}
	return envs
}

func (e *env) release(s engine.MessageState, f *engine.Feature, keys, owner string, done []string, retry *engine.Envelope, at time.Time) {
	e.Helper()
	if err := s.Release(e.ctx, f, keys, owner, done, retry, at); err != nil {
		e.Fatalf("Release(%s, %q, %s): %v", f.FQN, keys, owner, err)
	}
}

func ids(envs []engine.Envelope) []string {
	out := make([]string, len(envs))
	for i, env := range envs {
		out[i] = env.ID
	}
	return out
}

func values(envs []engine.Envelope) []engine.Value {
	out := make([]engine.Value, len(envs))
	for i, env := range envs {
		out[i] = env.Value
	}
	return out
}

func (e *env) wantValues(what string, envs []engine.Envelope, want ...engine.Value) {
	e.Helper()
	got := values(envs)
	if !slices.EqualFunc(got, want, engine.Value.Equal) {
		e.Fatalf("%s: messages %v, want %v", what, got, want)
	}
}

// testMailboxOrder: a commit's sends are enqueued in the sender's mailbox in order, with
// increasing IDs, every field kept; a delayed message is not due before its time; Claim takes
// only what is due; Release removes what was delivered.
func testMailboxOrder(e *env) {
	s := e.messageState()
	f := e.feature("mailbox", engine.PrimitiveInt)
	g := e.feature("mailbox_target", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	to := engine.Address{FQN: g.FQN, Keys: engine.Keys{"id": "t\x00é"}}
	from := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "a"}}
	first := engine.Envelope{From: from, To: to, Value: engine.StringList([]string{"x", ""}), Timestamp: e.now.Add(-time.Hour), Hops: 3}
	egress := engine.Envelope{From: from, Egress: "ns.alerts", Row: engine.Row{"amount": engine.Float(9.5), "n": engine.Int(-7), "at": engine.Timestamp(e.now.Round(0)), "ok": engine.Bool(true), "none": engine.Null}, Timestamp: e.now}
	later := engine.Envelope{From: from, To: to, Value: engine.Int(3), Token: "t1", Due: now.Add(time.Hour), Timestamp: now.Add(time.Hour), Hops: 1}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{first, egress, later}})
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{{From: from, To: to, Value: engine.Int(2), Timestamp: e.now, Hops: 1}}})

	if !e.due(s, f, k, now) {
		e.Fatal("a mailbox with messages due at once is not listed as due")
	}
	got := e.claim(s, f, k, "one", now, 10)
	if len(got) != 3 {
		e.Fatalf("Claim took %d messages (%v), want the 3 due at once", len(got), values(got))
	}
	if !slices.IsSorted(ids(got)) || got[0].ID == got[1].ID || got[1].ID == got[2].ID {
		e.Fatalf("IDs %q are not increasing in send order", ids(got))
	}
	if g0 := got[0]; !g0.Value.Equal(first.Value) || g0.To.FQN != to.FQN || g0.To.Keys["id"] != to.Keys["id"] || g0.From.Keys["id"] != "a" ||
		g0.Hops != 3 || !g0.Timestamp.Equal(first.Timestamp) || g0.Egress != "" || !g0.Due.IsZero() || g0.Attempts != 0 {
		e.Fatalf("first message round trip: %+v, want %+v", g0, first)
	}
	if g1 := got[1]; g1.Egress != "ns.alerts" || len(g1.Row) != len(egress.Row) || !g1.Row["amount"].Equal(engine.Float(9.5)) ||
		!g1.Row["at"].Equal(egress.Row["at"]) || !g1.Row["none"].IsNull() || !g1.Row["ok"].Equal(engine.Bool(true)) {
		e.Fatalf("egress message round trip: %+v, want %+v", g1, egress)
	}
	e.wantValues("the third", got[2:], engine.Int(2))
	e.release(s, f, k, "one", ids(got), nil, time.Time{})
	if e.due(s, f, k, now) {
		e.Fatal("released mailbox still due before its delayed message")
	}
	if got := e.claim(s, f, k, "one", now, 10); len(got) != 0 {
		e.Fatalf("Claim before the delayed message's time took %v", values(got))
	}
	at := now.Add(time.Hour)
	if !e.due(s, f, k, at) {
		e.Fatal("the delayed message's mailbox is not due at its time")
	}
	got = e.claim(s, f, k, "one", at, 10)
	e.wantValues("the delayed message", got, engine.Int(3))
	if got[0].Token != "t1" || !got[0].Due.Equal(later.Due) {
		e.Fatalf("the delayed message: token %q due %v, want t1 due %v", got[0].Token, got[0].Due, later.Due)
	}
	e.release(s, f, k, "one", ids(got), nil, time.Time{})
	if e.due(s, f, k, at.Add(time.Hour)) || len(e.claim(s, f, k, "one", at.Add(time.Hour), 10)) != 0 {
		e.Fatal("an emptied mailbox is still due or holds messages")
	}
}

// testMailboxTokens: a SendAfter of a pending token replaces its message; a cancel removes it
// for good; a cancel and a send of one token in one commit leave the send; a cancel after
// the message was claimed (it fired) does not take it back.
func testMailboxTokens(e *env) {
	s := e.messageState()
	f := e.feature("tokens", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	timer := func(tok string, v int64, after time.Duration) engine.Envelope {
		return engine.Envelope{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "a"}}, Value: engine.Int(v), Token: tok, Due: now.Add(after), Timestamp: now.Add(after), Hops: 1}
	}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{timer("x", 1, time.Minute), timer("y", 2, time.Minute)}})
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{timer("x", 10, 2*time.Minute)}})
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Cancel: []string{"y", "never-sent"}})
	if got := e.claim(s, f, k, "o", now.Add(90*time.Second), 10); len(got) != 0 {
		e.Fatalf("after replacing x and cancelling y, messages due at +90s: %v, want none", values(got))
	}
	got := e.claim(s, f, k, "o", now.Add(3*time.Minute), 10)
	e.wantValues("x replaced", got, engine.Int(10))
	e.release(s, f, k, "o", ids(got), nil, time.Time{})

	e.commit(s, f, k, engine.StorageCommit{Blind: true, Cancel: []string{"z"}, Send: []engine.Envelope{timer("z", 5, time.Minute)}})
	got = e.claim(s, f, k, "o", now.Add(2*time.Minute), 10)
	e.wantValues("cancelled and sent again in one commit", got, engine.Int(5))
	// Claimed: it fired. A cancel now is too late, and a redelivery still carries it.
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Cancel: []string{"z"}})
	again := e.claim(s, f, k, "o", now.Add(2*time.Minute), 10)
	e.wantValues("in flight after a late cancel", again, engine.Int(5))
	e.release(s, f, k, "o", ids(again), nil, time.Time{})
}

// testMailboxLease: one owner at a time; another gets the mailbox, with the messages in
// flight first, once the lease expired; a release of the old owner still removes what it
// delivered; concurrent claims give the messages to one owner.
func testMailboxLease(e *env) {
	s := e.messageState()
	f := e.feature("lease", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	to := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}
	send := func(v ...int64) {
		var envs []engine.Envelope
		for _, x := range v {
			envs = append(envs, engine.Envelope{To: to, Value: engine.Int(x), Timestamp: now, Hops: 1})
		}
		e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: envs})
	}
	send(1, 2, 3)
	a := e.claim(s, f, k, "A", now, 2)
	e.wantValues("A's claim of 2", a, engine.Int(1), engine.Int(2))
	if got := e.claim(s, f, k, "B", now.Add(30*time.Second), 10); len(got) != 0 {
		e.Fatalf("B claimed %v during A's lease", values(got))
	}
	send(4)
	b := e.claim(s, f, k, "B", now.Add(61*time.Second), 10)
	e.wantValues("B after A's lease expired", b, engine.Int(1), engine.Int(2), engine.Int(3), engine.Int(4))
	e.release(s, f, k, "A", ids(a[:1]), nil, time.Time{}) // A delivered 1 before it lost the lease
	e.release(s, f, k, "B", ids(b[1:3]), nil, time.Time{})
	left := e.claim(s, f, k, "C", now.Add(2*time.Minute), 10)
	e.wantValues("what neither delivered", left, engine.Int(4))
	e.release(s, f, k, "C", ids(left), nil, time.Time{})

	send(5)
	var mu sync.Mutex
	winners := 0
	parallel(func(w int) {
		got, err := s.Claim(e.ctx, f, k, "w"+string(rune('a'+w)), now.Add(3*time.Minute), time.Minute, 10)
		if err != nil {
			e.Errorf("Claim: %v", err)
			return
		}
		if len(got) > 0 {
			mu.Lock()
			winners++
			mu.Unlock()
		}
	})
	if winners != 1 {
		e.Fatalf("%d concurrent claims got the message, want 1", winners)
	}
}

// testMailboxRetry: a released retry waits until its time, comes back first with its
// attempts counted, and holds back the messages behind it.
func testMailboxRetry(e *env) {
	s := e.messageState()
	f := e.feature("retry", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	to := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{{To: to, Value: engine.Int(1), Timestamp: now, Hops: 1}, {To: to, Value: engine.Int(2), Timestamp: now, Hops: 1}}})
	got := e.claim(s, f, k, "A", now, 10)
	failed := got[0]
	failed.Attempts = 1
	e.release(s, f, k, "A", nil, &failed, now.Add(time.Minute))
	if e.due(s, f, k, now.Add(30*time.Second)) || len(e.claim(s, f, k, "A", now.Add(30*time.Second), 10)) != 0 {
		e.Fatal("a retry is due before its time")
	}
	if !e.due(s, f, k, now.Add(time.Minute)) {
		e.Fatal("a retry is not due at its time")
	}
	got = e.claim(s, f, k, "B", now.Add(time.Minute), 10)
	e.wantValues("after the back-off", got, engine.Int(1), engine.Int(2))
	if got[0].Attempts != 1 || got[1].Attempts != 0 {
		e.Fatalf("attempts %d and %d, want 1 and 0", got[0].Attempts, got[1].Attempts)
	}
	e.release(s, f, k, "B", ids(got), nil, time.Time{})
}

// testMailboxAtomic: sends commit with the storage and the value or not at all — a version
// conflict or a refused write enqueues nothing — and a Blind commit neither compares nor
// moves the version.
func testMailboxAtomic(e *env) {
	s := e.messageState()
	f := e.feature("atomic", engine.PrimitiveInt)
	w := e.feature("atomic_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour))
	k := e.keys(f, "a")
	now := ms(e.now)
	msg := []engine.Envelope{{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(1), Timestamp: now, Hops: 1}}
	v1, _ := e.commit(s, f, k, engine.StorageCommit{Set: map[string]engine.StoredValue{"n": {Value: engine.Int(1)}}})
	if _, _, err := s.CommitStorage(e.ctx, f, k, engine.StorageCommit{Version: "", Send: msg}); !errors.Is(err, engine.ErrConflict) {
		e.Fatalf("commit on an old version: %v, want ErrConflict", err)
	}
	kw := e.keys(w, "a")
	e.commit(s, w, kw, engine.StorageCommit{Write: &engine.StorageWrite{Value: engine.Float(1e308), Timestamp: e.now}})
	if _, _, err := s.CommitStorage(e.ctx, w, kw, engine.StorageCommit{Write: &engine.StorageWrite{Value: engine.Float(1e308), Timestamp: e.now}, Send: msg, Blind: true}); !errors.Is(err, engine.ErrOverflow) {
		e.Fatalf("commit whose window add overflows: %v, want ErrOverflow", err)
	}
	if e.due(s, f, k, now) || e.due(s, w, kw, now) {
		e.Fatal("a commit that failed enqueued its sends")
	}
	v2, _ := e.commit(s, f, k, engine.StorageCommit{Version: "stale, but blind", Blind: true, Send: msg})
	if snap := e.load(s, f, k, now); snap.Version != v1 || v2 != v1 {
		e.Fatalf("a blind commit moved the version: %q then %q, want %q", v2, snap.Version, v1)
	}
	got := e.claim(s, f, k, "A", now, 10)
	e.wantValues("the blind commit's send", got, engine.Int(1))
	e.release(s, f, k, "A", ids(got), nil, time.Time{})
}

// testMailboxFull: a commit whose sends would leave more messages in the mailbox than
// MaxMailbox, pending and in flight, applies nothing (its value and storage included) and
// fails with ErrMailboxFull; a send that replaces a pending token adds none, a cancellation
// in the same commit makes room, a commit that sends nothing is never refused, and delivered
// messages free their places.
func testMailboxFull(e *env) {
	s := e.messageState()
	f := e.feature("mailbox_full", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	msg := func(v int64, tok string) engine.Envelope {
		env := engine.Envelope{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(v), Timestamp: now, Hops: 1}
		if tok != "" {
			env.Token, env.Due = tok, now.Add(time.Hour)
		}
		return env
	}
	full := func(what string, c engine.StorageCommit) {
		e.Helper()
		if _, _, err := s.CommitStorage(e.ctx, f, k, c); !errors.Is(err, engine.ErrMailboxFull) {
			e.Fatalf("%s: %v, want ErrMailboxFull", what, err)
		}
	}
	const limit = 3
	v, _ := e.commit(s, f, k, engine.StorageCommit{MaxMailbox: limit, Set: map[string]engine.StoredValue{"n": {Value: engine.Int(1)}},
		Send: []engine.Envelope{msg(1, ""), msg(2, "t")}})
	// Two held: one more fits, two do not, even when one replaces a token sent in the same commit.
	full("two more", engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(3, ""), msg(4, "")}})
	full("a new token twice and one more", engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(3, "u"), msg(4, "u"), msg(5, "")}})
	full("with a write", engine.StorageCommit{Version: v, MaxMailbox: limit, Write: &engine.StorageWrite{Value: engine.Int(7), Timestamp: e.now},
		Set: map[string]engine.StoredValue{"n": {Value: engine.Int(2)}}, Send: []engine.Envelope{msg(3, ""), msg(4, "")}})
	if snap := e.load(s, f, k, now); snap.Version != v || !snap.Values["n"].Value.Equal(engine.Int(1)) {
		e.Fatalf("a refused commit changed the storage: version %q (want %q), n = %v", snap.Version, v, snap.Values["n"].Value)
	}
	if _, _, found, err := e.st.Get(e.ctx, f, k, 0); err != nil || found {
		e.Fatalf("a refused commit wrote its value: found %v, %v", found, err)
	}
	// A replacement of the pending token adds nothing; a cancellation makes room for one.
	v, _ = e.commit(s, f, k, engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(20, "t"), msg(3, "")}})
	full("a fourth", engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(4, "")}})
	v, _ = e.commit(s, f, k, engine.StorageCommit{Version: v, MaxMailbox: limit, Cancel: []string{"t"}, Send: []engine.Envelope{msg(4, "")}})
	v, _ = e.commit(s, f, k, engine.StorageCommit{Version: v, MaxMailbox: limit, Cancel: []string{"absent"}})
	full("a cancelled token sent again", engine.StorageCommit{Version: v, MaxMailbox: limit, Cancel: []string{"t"}, Send: []engine.Envelope{msg(5, "t")}})
	// In flight still counts; delivered does not.
	got := e.claim(s, f, k, "A", now, 10)
	e.wantValues("the full mailbox", got, engine.Int(1), engine.Int(3), engine.Int(4))
	full("while in flight", engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(5, "")}})
	e.release(s, f, k, "A", ids(got[:2]), nil, time.Time{})
	v, _ = e.commit(s, f, k, engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(5, ""), msg(6, "")}})
	full("full again", engine.StorageCommit{Version: v, MaxMailbox: limit, Send: []engine.Envelope{msg(7, "")}})
	e.commit(s, f, k, engine.StorageCommit{Version: v, Send: []engine.Envelope{msg(7, "")}}) // no limit asked
	got = e.claim(s, f, k, "A", now, 10)
	e.wantValues("in order", got, engine.Int(4), engine.Int(5), engine.Int(6), engine.Int(7))
	e.release(s, f, k, "A", ids(got), nil, time.Time{})
}

// testMailboxDrop: Drop removes the feature's mailboxes, pending and in flight.
func testMailboxDrop(e *env) {
	s := e.messageState()
	f := e.feature("mailbox_drop", engine.PrimitiveInt)
	k, k2 := e.keys(f, "a"), e.keys(f, "b")
	now := ms(e.now)
	msg := []engine.Envelope{{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(1), Timestamp: now, Hops: 1}}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: msg})
	e.commit(s, f, k2, engine.StorageCommit{Blind: true, Send: msg})
	e.claim(s, f, k2, "A", now, 10)
	if err := e.st.Drop(e.ctx, f); err != nil {
		e.Fatalf("Drop: %v", err)
	}
	for _, key := range []string{k, k2} {
		if got := e.claim(s, f, key, "B", now.Add(time.Hour), 10); len(got) != 0 {
			e.Fatalf("after Drop, the mailbox %q holds %v", key, values(got))
		}
	}
}

// testMailboxFlightOrder: the messages in flight keep the order they were claimed in: a
// delayed message that fires while an earlier one waits out its back-off comes after it,
// whatever their IDs (the timer was armed first).
func testMailboxFlightOrder(e *env) {
	s := e.messageState()
	f := e.feature("flight_order", engine.PrimitiveInt)
	k := e.keys(f, "a")
	now := ms(e.now)
	to := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{{To: to, Value: engine.Int(2), Token: "t", Due: now.Add(time.Minute), Timestamp: now.Add(time.Minute), Hops: 1}}})
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{{To: to, Value: engine.Int(1), Timestamp: now, Hops: 1}}})
	got := e.claim(s, f, k, "A", now, 10)
	e.wantValues("due at once", got, engine.Int(1))
	failed := got[0]
	failed.Attempts = 1
	e.release(s, f, k, "A", nil, &failed, now.Add(2*time.Minute))
	got = e.claim(s, f, k, "B", now.Add(3*time.Minute), 10)
	e.wantValues("the retry, then the timer that fired during its back-off", got, engine.Int(1), engine.Int(2))
	e.release(s, f, k, "B", ids(got), nil, time.Time{})
}

// testMailboxDefer: DeferMailbox (the dispatcher does not know the sender's feature, as in a
// restart before the registry applied it) keeps the mailbox's messages and lists it as due
// again at the time given, not before; an empty mailbox is no error.
func testMailboxDefer(e *env) {
	s := e.messageState()
	f := e.feature("defer", engine.PrimitiveInt)
	k := e.keys(f, "a")
	m := engine.Mailbox{FQN: f.FQN, Keys: k}
	to := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}
	e.commit(s, f, k, engine.StorageCommit{Blind: true, Send: []engine.Envelope{{To: to, Value: engine.Int(1), Timestamp: e.now, Hops: 1}}})
	now := ms(time.Now())
	if !e.due(s, f, k, now) {
		e.Fatal("a mailbox with a message due at once is not listed as due")
	}
	if err := s.DeferMailbox(e.ctx, m, now.Add(time.Minute)); err != nil {
		e.Fatalf("DeferMailbox: %v", err)
	}
	if e.due(s, f, k, now.Add(30*time.Second)) {
		e.Fatal("a deferred mailbox is listed as due before the time it was deferred to")
	}
	if !e.due(s, f, k, now.Add(time.Minute)) {
		e.Fatal("a deferred mailbox is not listed as due at the time it was deferred to: its messages would wait for a sweep")
	}
	got := e.claim(s, f, k, "A", now.Add(time.Minute), 10)
	e.wantValues("the deferred mailbox's message", got, engine.Int(1))
	e.release(s, f, k, "A", ids(got), nil, time.Time{})
	if err := s.DeferMailbox(e.ctx, m, now.Add(time.Minute)); err != nil {
		e.Fatalf("DeferMailbox of an empty mailbox: %v", err)
	}
	if e.due(s, f, k, now.Add(time.Hour)) {
		e.Fatal("an emptied mailbox is listed as due after DeferMailbox")
	}
}
