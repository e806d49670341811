package redis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
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
	st := redis.New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true}))
	e := engine.New(st, engine.WithPrograms(oneProgram{prog}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		engine.WithDelivery(engine.Delivery{Poll: 20 * time.Millisecond}))
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "timers.rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	f := &engine.Feature{FQN: "timers.fired", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
		Timeout: 5 * time.Second, DataSource: "timers.rows", Builder: engine.Builder{Kind: "wasm", Module: "x"}, Messages: engine.PrimitiveInt}
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

// TestSweepIndexesLostMailbox: a mailbox the index lost (a process died between its commit
// and its ZADD) is found by Sweep and delivered.
func TestSweepIndexesLostMailbox(t *testing.T) {
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
	if err := redis.New(c).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swept mailbox's timer", func() bool { return prog.count("lost") == 1 })
}
