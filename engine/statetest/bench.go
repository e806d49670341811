package statetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// BenchMessages measures messages between programs through an engine over the States
// newState returns (one per sub-benchmark), with Go programs, so that the numbers are the
// engine's and the State's: sends/s from many senders to one target feature, sends/s in
// order from one sender, and timers fired/s, against a baseline of rows written directly
// (the sender's program writing its own value instead of sending it: what the message's
// delivery costs on top). Each reports msgs/s (rows/s for the baseline); delivery is by
// DeliverMessages in the benchmark's goroutine (Workers mailboxes at a time).
func BenchMessages(b *testing.B, newState func(b *testing.B) engine.State) {
	b.Run("baseline/rows-written", func(b *testing.B) { benchRows(b, newState(b)) })
	b.Run("sends/many-senders", func(b *testing.B) { benchSends(b, newState(b), false) })
	b.Run("sends/one-sender", func(b *testing.B) { benchSends(b, newState(b), true) })
	b.Run("timers", func(b *testing.B) { benchTimers(b, newState(b)) })
}

type benchProgram func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error)

func (f benchProgram) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return f(ctx, call)
}

type benchLoader map[string]engine.Program

func (m benchLoader) LoadProgram(_ context.Context, f *engine.Feature) (engine.Program, error) {
	return m[f.FQN], nil
}

// benchEngine applies bench.rows → bench.sender (running send per row; with send nil,
// writing the row's n instead) and bench.target (receiving ints, writing each), under a
// unique namespace.
func benchEngine(b *testing.B, st engine.State, clock func() time.Time, send func(ctx context.Context, in *engine.Invocation, to string, row engine.Row) error) (*engine.Engine, string, *atomic.Int64) {
	b.Helper()
	ns := "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	received := &atomic.Int64{}
	target := ns + ".target"
	progs := benchLoader{
		ns + ".sender": benchProgram(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
			if send == nil { // the baseline: the row's value written, nothing sent
				return engine.ProgramResult{Value: call.Row["n"]}, nil
			}
			return engine.ProgramResult{}, send(ctx, call.Invocation, target, call.Row)
		}),
		target: benchProgram(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
			received.Add(1)
			return engine.ProgramResult{Value: call.Message.Value}, nil
		}),
	}
	// All of a run's messages are sent before any is delivered: one sender's mailbox holds
	// b.N of them, past the default limit.
	opts := []engine.Option{engine.WithPrograms(progs), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		engine.WithDelivery(engine.Delivery{Poll: -1}), engine.WithMaxMailbox(max(b.N, engine.DefaultMaxMailbox))}
	if clock != nil {
		opts = append(opts, engine.WithClock(clock))
	}
	e := engine.New(st, opts...)
	b.Cleanup(func() {
		ctx := context.Background()
		for _, fqn := range []string{ns + ".sender", target} {
			_ = e.Delete(ctx, fqn)
		}
		e.Close()
		st.Close()
	})
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: ns + ".rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		b.Fatal(err)
	}
	for _, f := range []*engine.Feature{
		{FQN: ns + ".sender", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, DataSource: ns + ".rows"},
		{FQN: target, Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Messages: engine.PrimitiveInt},
	} {
		f.Freshness, f.Staleness, f.Timeout, f.Builder = time.Hour, 24*time.Hour, 10*time.Second, engine.Builder{Kind: "wasm", Module: "x"}
		if err := e.Apply(ctx, f); err != nil {
			b.Fatal(err)
		}
	}
	return e, ns + ".rows", received
}

func ingestRows(b *testing.B, e *engine.Engine, source string, n int, sender func(i int) string) {
	b.Helper()
	ctx := context.Background()
	const batch = 256
	rows := make([]engine.Row, 0, batch)
	for i := range n {
		rows = append(rows, engine.Row{"id": engine.String(sender(i)), "n": engine.Int(int64(i))})
		if len(rows) == batch || i == n-1 {
			if _, err := e.Ingest(ctx, source, rows); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
}

func deliverAll(b *testing.B, e *engine.Engine, received *atomic.Int64, want int64) {
	b.Helper()
	for received.Load() < want {
		n, err := e.DeliverMessages(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 && received.Load() < want {
			b.Fatalf("delivered %d of %d, and nothing is due", received.Load(), want)
		}
	}
}

// benchSends: b.N rows each send one message (to one of 64 target entities); the time
// covers the senders' commits and the deliveries.
func benchSends(b *testing.B, st engine.State, oneSender bool) {
	e, source, received := benchEngine(b, st, nil, func(ctx context.Context, in *engine.Invocation, target string, row engine.Row) error {
		to := engine.Address{FQN: target, Keys: engine.Keys{"id": strconv.FormatInt(row["n"].Int()%64, 10)}}
		return in.Send(ctx, to, row["n"])
	})
	sender := func(i int) string { return "s" + strconv.Itoa(i) }
	if oneSender {
		sender = func(int) string { return "s" }
	}
	b.ResetTimer()
	start := time.Now()
	ingestRows(b, e, source, b.N, sender)
	deliverAll(b, e, received, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchRows: b.N rows of distinct entities, each written by the sender's program as its
// own value; no message.
func benchRows(b *testing.B, st engine.State) {
	e, source, _ := benchEngine(b, st, nil, nil)
	b.ResetTimer()
	start := time.Now()
	ingestRows(b, e, source, b.N, func(i int) string { return "s" + strconv.Itoa(i) })
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchTimers: b.N timers (one per entity, to itself) are armed a minute ahead, untimed;
// then the clock moves past them and the time to fire them all is measured.
func benchTimers(b *testing.B, st engine.State) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e, source, received := benchEngine(b, st, clock, func(ctx context.Context, in *engine.Invocation, target string, row engine.Row) error {
		to := engine.Address{FQN: target, Keys: in.Address().Keys}
		return in.SendAfter(ctx, time.Minute, "t", to, row["n"])
	})
	ingestRows(b, e, source, b.N, func(i int) string { return fmt.Sprint("t", i) })
	if received.Load() != 0 {
		b.Fatal("a timer fired early")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	b.ResetTimer()
	start := time.Now()
	deliverAll(b, e, received, int64(b.N))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
