package redis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins/state/redis"
)

// timerProgram arms a timer per row (token "t", after the row's "after" seconds) to its own
// address, and counts the timers that fire, by entity.
type timerProgram struct {
	mu    sync.Mutex
	fired map[string]int
	by    map[string]map[string]int // entity → replica → fires
}

func (p *timerProgram) program(replica string) engine.Program {
	return programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		in := call.Invocation
		id := in.Address().Keys["id"]
		if call.Message != nil {
			p.mu.Lock()
			p.fired[id]++
			if p.by[id] == nil {
				p.by[id] = map[string]int{}
			}
			p.by[id][replica]++
			p.mu.Unlock()
			return engine.ProgramResult{Value: engine.Int(call.Message.Value.Int())}, nil
		}
		after := time.Duration(call.Row["after"].Int()) * time.Second
		return engine.ProgramResult{}, in.SendAfter(ctx, after, "t", in.Address(), engine.Int(1))
	})
}

func (p *timerProgram) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired[id]
}

type programFunc func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error)

func (f programFunc) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return f(ctx, call)
}

type oneProgram struct{ p engine.Program }

func (o oneProgram) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return o.p, nil
}

// replica is an engine over its own client of the Redis at addr, delivering in the
// background, with the timers feature applied.
func replica(t *testing.T, addr string, prog engine.Program) (*engine.Engine, func()) {
	t.Helper()
	return replicaApplying(t, addr, prog, 0)
}

// replicaApplying is replica, applying its data source and feature wait after the engine
// started (as a server's registry restores them after engine.New).
func replicaApplying(t *testing.T, addr string, prog engine.Program, wait time.Duration) (*engine.Engine, func()) {
	t.Helper()
	st := redis.New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true}))
	e := engine.New(st, engine.WithPrograms(oneProgram{prog}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		engine.WithDelivery(engine.Delivery{Poll: 20 * time.Millisecond}))
	time.Sleep(wait)
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "timers.rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	f := timersFired()
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			e.Close()
			st.Close()
		})
	}
	t.Cleanup(stop)
	return e, stop
}

// waitFor polls cond until it holds, failing the test after a generous bound (no timing
// assertion: the bound only keeps a broken build from hanging).
// sourcelessInt is a sourceless int feature keyed by id.
func sourcelessInt(fqn string) *engine.Feature {
	return &engine.Feature{FQN: fqn, Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
		Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

// timersFired is the feature the timer programs run for: fed by timers.rows, receiving
// int messages.
func timersFired() *engine.Feature {
	return &engine.Feature{FQN: "timers.fired", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
		Timeout: 5 * time.Second, DataSource: "timers.rows", Builder: engine.Builder{Kind: "wasm", Module: "x"}, Messages: engine.PrimitiveInt}
}

// standaloneState is a State on a redis-server of its own, and its client.
func standaloneState(t *testing.T) (*redis.State, goredis.UniversalClient) {
	t.Helper()
	srv := redistest.Standalone(t)
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}})
	st := redis.New(c)
	t.Cleanup(func() { st.Close() })
	return st, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTimersFireOnceAcrossReplicas: two replicas deliver from one Redis; each of many
// timers fires once, whichever replica arms it and whichever fires it.
func TestTimersFireOnceAcrossReplicas(t *testing.T) {
	srv := redistest.Standalone(t)
	prog := &timerProgram{fired: map[string]int{}, by: map[string]map[string]int{}}
	a, _ := replica(t, srv.Addr(), prog.program("a"))
	b, _ := replica(t, srv.Addr(), prog.program("b"))
	const n = 200
	ctx := context.Background()
	for i := range n {
		rep := a
		if i%2 == 1 {
			rep = b
		}
		row := engine.Row{"id": engine.String(fmt.Sprint("e", i)), "after": engine.Int(int64(i % 3))}
		if _, err := rep.Ingest(ctx, "timers.rows", []engine.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int {
		s := 0
		for i := range n {
			s += prog.count(fmt.Sprint("e", i))
		}
		return s
	}
	waitFor(t, "every timer to fire", func() bool { return total() >= n })
	time.Sleep(300 * time.Millisecond) // long enough for a second firing to show, if one were coming
	replicas := map[string]int{}
	for i := range n {
		id := fmt.Sprint("e", i)
		if c := prog.count(id); c != 1 {
			t.Fatalf("timer %s fired %d times, want once", id, c)
		}
		for r := range prog.by[id] {
			replicas[r]++
		}
	}
	t.Logf("fired by replica: %v", replicas)
}

// TestTimerSurvivesRestart: a timer armed by a process that stops fires in the next one; a
// cancelled one never does.
func TestTimerSurvivesRestart(t *testing.T) {
	srv := redistest.Standalone(t)
	prog := &timerProgram{fired: map[string]int{}, by: map[string]map[string]int{}}
	cancelled := false
	cancelProg := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Row != nil && call.Row["cancel"].Bool() {
			cancelled = true
			return engine.ProgramResult{}, call.Invocation.Cancel(ctx, "t")
		}
		return prog.program("first").Run(ctx, call)
	})
	first, stop := replica(t, srv.Addr(), cancelProg)
	ctx := context.Background()
	rows := []engine.Row{
		{"id": engine.String("kept"), "after": engine.Int(2)},
		{"id": engine.String("gone"), "after": engine.Int(2)},
	}
	if _, err := first.Ingest(ctx, "timers.rows", rows); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Ingest(ctx, "timers.rows", []engine.Row{{"id": engine.String("gone"), "cancel": engine.Bool(true)}}); err != nil || !cancelled {
		t.Fatalf("cancel: %v", err)
	}
	stop() // before either timer is due
	if prog.count("kept") != 0 {
		t.Fatal("the timer fired before its time")
	}
	replica(t, srv.Addr(), prog.program("second"))
	waitFor(t, "the timer to fire after the restart", func() bool { return prog.count("kept") == 1 })
	time.Sleep(300 * time.Millisecond)
	if c := prog.count("gone"); c != 0 {
		t.Fatalf("the cancelled timer fired %d times", c)
	}
	if r := prog.by["kept"]; r["second"] != 1 {
		t.Fatalf("fired by %v, want the second process", r)
	}
}

// TestTimerDueAtRestart: a timer that came due while no process ran fires in the next one
// soon after it applied its features: the rounds before (the registry restoring) leave the
// mailbox of a feature they do not know in the index.
func TestTimerDueAtRestart(t *testing.T) {
	srv := redistest.Standalone(t)
	prog := &timerProgram{fired: map[string]int{}, by: map[string]map[string]int{}}
	first, stop := replica(t, srv.Addr(), prog.program("first"))
	if _, err := first.Ingest(context.Background(), "timers.rows", []engine.Row{{"id": engine.String("due"), "after": engine.Int(1)}}); err != nil {
		t.Fatal(err)
	}
	stop()
	time.Sleep(1200 * time.Millisecond) // the timer comes due with no process running
	replicaApplying(t, srv.Addr(), prog.program("second"), 200*time.Millisecond)
	waitFor(t, "the timer to fire after the restart (not after the next sweep, in 5 minutes)", func() bool { return prog.count("due") == 1 })
}

// TestReindexLostMailbox: a mailbox the index lost (the index key deleted, or on a Cluster a
// process that died between its commit and its ZADD) is found by Reindex and delivered.
func TestReindexLostMailbox(t *testing.T) {
	srv := redistest.Standalone(t)
	prog := &timerProgram{fired: map[string]int{}, by: map[string]map[string]int{}}
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}})
	defer c.Close()
	e, _ := replica(t, srv.Addr(), prog.program("a"))
	ctx := context.Background()
	if _, err := e.Ingest(ctx, "timers.rows", []engine.Row{{"id": engine.String("lost"), "after": engine.Int(1)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, "osp:mbox").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if prog.count("lost") != 0 {
		t.Fatal("delivered without an index entry: the test does not test Sweep")
	}
	if err := redis.New(c).Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swept mailbox's timer", func() bool { return prog.count("lost") == 1 })
}

// TestConcurrentDeliveriesOfOneEngine: two deliveries of one engine at once (DeliverMessages
// while another runs, or beside the background loop) do not both take a mailbox: on a Cluster
// the index still lists a claimed mailbox as due, so the second Claim must be refused as
// another owner's.
func TestConcurrentDeliveriesOfOneEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Cluster")
	}
	c := redistest.NewCluster(t, 3)
	st := redis.New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true}))
	t.Cleanup(func() { st.Close() })
	var calls atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if call.Message == nil {
			return engine.ProgramResult{}, call.Invocation.Send(ctx, engine.Address{FQN: "timers.fired", Keys: engine.Keys{"id": "b"}}, engine.Int(1))
		}
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return engine.ProgramResult{}, nil
	})
	e := engine.New(st, engine.WithPrograms(oneProgram{prog}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		engine.WithDelivery(engine.Delivery{Poll: -1}))
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "timers.rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	f := timersFired()
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ingest(ctx, "timers.rows", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := e.DeliverMessages(ctx)
		first <- err
	}()
	<-started
	if _, err := e.DeliverMessages(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the message was delivered %d times by one engine's two deliveries at once, want once", n)
	}
}

// TestEmptiedMailboxLeavesNoKeys: a mailbox emptied by a cancel, or by a claim finding
// nothing, leaves no key behind (its :M hash kept the last ID's number for ever).
func TestEmptiedMailboxLeavesNoKeys(t *testing.T) {
	st, c := standaloneState(t)
	ctx := context.Background()
	f := sourcelessInt("leak.f")
	now := time.Now()
	timer := engine.Envelope{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(1), Token: "t", Due: now.Add(time.Second), Timestamp: now, Hops: 1}
	for _, c := range []engine.StorageCommit{{Blind: true, Send: []engine.Envelope{timer}}, {Blind: true, Cancel: []string{"t"}}} {
		if _, _, err := st.CommitStorage(ctx, f, "a", c); err != nil {
			t.Fatal(err)
		}
	}
	keys := func() []string {
		t.Helper()
		ks, err := c.Keys(ctx, "osp:{leak.f|*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("after the only timer was cancelled, the mailbox left %q", ks)
	}
	// A mailbox left so by an earlier version: the claim that finds nothing removes it.
	if err := c.HSet(ctx, "osp:{leak.f|a}:M", "#n", "7").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Claim(ctx, f, "a", "o", now.Add(2*time.Second), time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("Claim of an empty mailbox: %v, %v", got, err)
	}
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("after a claim found the mailbox empty, it left %q", ks)
	}
}

// TestClusterCommitStandsWithoutIndex: on a Cluster a commit that sent is applied before its
// index entry is added (in another slot); when that fails, the commit still reports what it
// applied rather than an error a caller would retry (applying it twice): the sweep indexes the
// mailbox.
func TestClusterCommitStandsWithoutIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Cluster")
	}
	c := redistest.NewCluster(t, 3)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	st := redis.New(client)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := client.Set(ctx, "osp:mbox", "not a sorted set", 0).Err(); err != nil { // every ZADD to the index fails
		t.Fatal(err)
	}
	f := sourcelessInt("index.f")
	msg := engine.Envelope{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(1), Timestamp: time.Now(), Hops: 1}
	version, _, err := st.CommitStorage(ctx, f, "a", engine.StorageCommit{
		Set: map[string]engine.StoredValue{"n": {Value: engine.Int(1)}}, Send: []engine.Envelope{msg}})
	snap, lerr := st.LoadStorage(ctx, f, "a", time.Now())
	if lerr != nil {
		t.Fatal(lerr)
	}
	if err != nil || version == "" || version != snap.Version {
		t.Fatalf("commit whose indexing failed: version %q, %v; the storage is at version %q: the commit applied", version, err, snap.Version)
	}
	if err := client.Del(ctx, "osp:mbox").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	due, _, err := st.DueMailboxes(ctx, time.Now().Add(time.Second), 100)
	if err != nil || !slices.Contains(due, engine.Mailbox{FQN: f.FQN, Keys: "a"}) {
		t.Fatalf("after the sweep, due mailboxes %v (%v), want the commit's", due, err)
	}
}

// TestCorruptMessageDropped: a stored message that does not decode is dropped by the claim
// that meets it, with an error naming it, and the mailbox's other messages are claimed next:
// it does not block its mailbox.
func TestCorruptMessageDropped(t *testing.T) {
	st, c := standaloneState(t)
	ctx := context.Background()
	f := sourcelessInt("corrupt.f")
	now := time.Now()
	to := engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}
	sends := []engine.Envelope{{To: to, Value: engine.Int(1), Timestamp: now, Hops: 1}, {To: to, Value: engine.Int(2), Timestamp: now, Hops: 1}}
	if _, _, err := st.CommitStorage(ctx, f, "a", engine.StorageCommit{Blind: true, Send: sends}); err != nil {
		t.Fatal(err)
	}
	ids, err := c.ZRange(ctx, "osp:{corrupt.f|a}:m", 0, -1).Result()
	if err != nil || len(ids) != 2 {
		t.Fatalf("pending %v, %v", ids, err)
	}
	if err := c.HSet(ctx, "osp:{corrupt.f|a}:M", ids[0], "\x01garbage").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Claim(ctx, f, "a", "o1", now, time.Minute, 10)
	if err == nil || !strings.Contains(err.Error(), "dropped 1 undecodable messages") || !strings.Contains(err.Error(), ids[0]) {
		t.Fatalf("claim of a corrupt message: %v, want an error naming it as dropped", err)
	}
	got, err := st.Claim(ctx, f, "a", "o2", now, time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].Value.Int() != 2 {
		t.Fatalf("the next claim: %v, %v; want the good message alone, at once", got, err)
	}
}
