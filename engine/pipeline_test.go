package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// batchState is the in-process State with batch writes: each write of a batch is made with
// its single call (Write.Apply), unless refuse refuses it. It records the batches' sizes.
type batchState struct {
	*memory.State
	refuse func(w engine.Write) error

	mu      sync.Mutex
	batches []int
}

func (s *batchState) WriteBatch(ctx context.Context, writes []engine.Write) []engine.WriteReport {
	s.mu.Lock()
	s.batches = append(s.batches, len(writes))
	s.mu.Unlock()
	out := make([]engine.WriteReport, len(writes))
	for i, w := range writes {
		if s.refuse != nil {
			if err := s.refuse(w); err != nil {
				out[i].Err = err
				continue
			}
		}
		out[i] = w.Apply(ctx, s.State)
	}
	return out
}

// batchRecorder is a recorder with batch publishes, recording their sizes.
type batchRecorder struct {
	recorder
	batches []int
}

func (r *batchRecorder) PublishBatch(ctx context.Context, ns []engine.Notification) error {
	r.mu.Lock()
	r.batches = append(r.batches, len(ns))
	r.mu.Unlock()
	for _, n := range ns {
		if err := r.Publish(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// pipeNow is the pipeline tests' clock: t0, always.
func pipeNow() time.Time { return t0 }

// pipeMemory is the in-process State on pipeNow.
func pipeMemory() *memory.State { return memory.New(memory.WithClock(pipeNow)) }

// pipelineEngine is an engine over st (a *memory.State or a *batchState on one) with three
// features fed by pipe.rows: pipe.sum (windowed: the amount), pipe.last (the status, through
// a preSet middleware that refuses "deny") and pipe.count (a program with storage, which
// counts the entity's rows marked count and writes -1, without storage, for the others).
func pipelineEngine(t *testing.T, st engine.State, n engine.Notifier, opts ...engine.Option) *engine.Engine {
	t.Helper()
	progs := loader{
		"sum": func(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
			return engine.ProgramResult{Value: engine.Float(call.Row["amount"].Float())}, nil
		},
		"last": func(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
			return engine.ProgramResult{Value: call.Row["status"]}, nil
		},
		"count": func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
			if call.Row["status"].Str() != "count" {
				return engine.ProgramResult{Value: engine.Float(-1)}, nil
			}
			in := call.Invocation
			v, _, err := in.Storage(ctx, "n")
			if err != nil {
				return engine.ProgramResult{}, err
			}
			if err := in.SetStorage(ctx, "n", engine.Int(v.Int()+1)); err != nil {
				return engine.ProgramResult{}, err
			}
			return engine.ProgramResult{Value: engine.Float(float64(v.Int() + 1))}, nil
		},
	}
	deny := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			if v.Str() == "deny" {
				return engine.Null, fmt.Errorf("%w: denied", engine.ErrRejected)
			}
			return v, nil
		}, nil
	})
	e := engine.New(st, append([]engine.Option{engine.WithClock(pipeNow), engine.WithNotifier(n), engine.WithPrograms(progs),
		engine.WithMiddlewareResolver(deny), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)...)
	t.Cleanup(func() { e.Close() })
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "pipe.rows", Kind: "rows", TimestampField: "ts"}); err != nil {
		t.Fatal(err)
	}
	sum := windowed("pipe.sum")
	last := scalar("pipe.last", engine.PrimitiveString)
	last.Middlewares = []engine.MiddlewareRef{{Name: "deny", Stages: []engine.Stage{engine.StagePreSet}}}
	count := scalar("pipe.count", engine.PrimitiveFloat)
	count.Storage = []engine.StorageSpec{{Name: "n", Primitive: engine.PrimitiveInt}}
	for f, module := range map[*engine.Feature]string{sum: "sum", last: "last", count: "count"} {
		f.Keys, f.DataSource, f.Builder = []string{"card"}, "pipe.rows", engine.Builder{Kind: "wasm", Module: module}
		if err := e.Apply(ctx, f); err != nil {
			t.Fatalf("apply %s: %v", f.FQN, err)
		}
	}
	return e
}

// pipelineRows are n rows over three cards; every fifth is counted (a write with storage).
func pipelineRows(n int) []engine.Row {
	out := make([]engine.Row, n)
	for i := range out {
		status := "ok" + fmt.Sprint(i)
		if i%5 == 4 {
			status = "count"
		}
		out[i] = engine.Row{"card": engine.String(fmt.Sprint("c", i%3)), "amount": engine.Float(float64(i + 1)),
			"status": engine.String(status), "ts": engine.Timestamp(t0.Add(time.Duration(i-n) * time.Second))}
	}
	return out
}

// pipelineState reads back what an ingest left: every feature of every card, and the
// notifications in order.
func pipelineState(t *testing.T, e *engine.Engine, r *recorder) string {
	t.Helper()
	var b strings.Builder
	for _, card := range []string{"c0", "c1", "c2", "bad"} {
		for _, sel := range []string{"pipe.sum+sum", "pipe.sum+count", "pipe.last", "pipe.count"} {
			got, err := e.Get(ctx, sel, engine.Keys{"card": card})
			fmt.Fprintf(&b, "%s %s = %v found=%v err=%v\n", card, sel, got.Value, got.Found(), err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.ns {
		fmt.Fprintf(&b, "note %s %s %v %v\n", n.FQN, n.EncodedKeys, n.Value, n.Timestamp.Format(time.RFC3339))
	}
	return b.String()
}

// TestIngestPipelined: an Ingest through a BatchWriter State writes what one write at a
// time writes, in the same order, notifications included, in batches no deeper than the
// pipeline depth that a write with storage changes ends.
func TestIngestPipelined(t *testing.T) {
	rows := pipelineRows(23)
	ref := &recorder{}
	refEngine := pipelineEngine(t, pipeMemory(), ref)
	want, err := refEngine.Ingest(ctx, "pipe.rows", rows)
	if err != nil || want.Written != 3*23 {
		t.Fatalf("one at a time: %+v, %v", want, err)
	}
	wantState := pipelineState(t, refEngine, ref)
	for _, depth := range []int{1, 2, 3, 7, engine.DefaultPipelineDepth} {
		t.Run(fmt.Sprint("depth ", depth), func(t *testing.T) {
			st, rec := &batchState{State: pipeMemory()}, &batchRecorder{}
			e := pipelineEngine(t, st, rec, engine.WithPipelineDepth(depth))
			got, err := e.Ingest(ctx, "pipe.rows", rows)
			if err != nil || got != want {
				t.Fatalf("ingest = %+v, %v; want %+v", got, err, want)
			}
			if s := pipelineState(t, e, &rec.recorder); s != wantState {
				t.Errorf("state and notifications:\n%s\nwant (one at a time):\n%s", s, wantState)
			}
			if depth == 1 {
				if len(st.batches) != 0 {
					t.Errorf("depth 1: %d batches, want none", len(st.batches))
				}
				return
			}
			total := 0
			for _, n := range st.batches {
				if n < 1 || n > depth {
					t.Errorf("a batch of %d writes at depth %d", n, depth)
				}
				total += n
			}
			// Rows 4, 9, 14, 19 of pipe.count change storage: their writes go alone.
			if wantPlain := 3*23 - 4; total != wantPlain {
				t.Errorf("batches %v hold %d writes, want the %d plain ones", st.batches, total, wantPlain)
			}
			if !slices.Equal(st.batches, rec.batches) {
				t.Errorf("publish batches %v, write batches %v: want one publish per batch", rec.batches, st.batches)
			}
		})
	}
}

// count is a window's count as a number.
func count(v engine.Value) float64 { x, _ := v.Number(); return x }

// TestIngestPipelineFailures: in a pipeline, a write the State refuses fails alone — the
// others of its batch are written, notified and counted — while a preSet middleware's
// refusal stops the Ingest before its row, as one write at a time does.
func TestIngestPipelineFailures(t *testing.T) {
	boom := errors.New("boom")
	refuse := func(w engine.Write) error {
		if strings.Contains(w.Keys, "bad") && w.Feature.FQN == "pipe.sum" {
			return boom
		}
		return nil
	}
	t.Run("state refuses one", func(t *testing.T) {
		rows := pipelineRows(6)
		rows[1]["card"] = engine.String("bad")
		rows[4]["status"] = engine.String("ok4") // no write with storage: one batch
		st, rec := &batchState{State: pipeMemory(), refuse: refuse}, &batchRecorder{}
		e := pipelineEngine(t, st, rec)
		res, err := e.Ingest(ctx, "pipe.rows", rows)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "17 of 18 values written") || !strings.Contains(err.Error(), "pipe.sum") {
			t.Fatalf("err = %v", err)
		}
		if res.Written != 17 {
			t.Errorf("written = %d, want 17", res.Written)
		}
		for _, card := range []string{"c0", "c2"} { // rows after the refused one, in its batch
			if got, _ := e.Get(ctx, "pipe.sum+count", engine.Keys{"card": card}); count(got.Value) != 2 {
				t.Errorf("%s: window count %v, want 2", card, got.Value)
			}
		}
		if got, _ := e.Get(ctx, "pipe.last", engine.Keys{"card": "bad"}); got.Value.Str() != "ok1" {
			t.Errorf("bad's other features: last = %v, want ok1", got.Value)
		}
		if len(rec.ns) != 17 {
			t.Errorf("%d notifications, want one per value written (17)", len(rec.ns))
		}
	})
	t.Run("the first failure in row order", func(t *testing.T) {
		// Row 1's window add is refused by the State, row 3's status by a preSet
		// middleware (found first, before the batch is sent): the error is row 1's.
		rows := pipelineRows(6)
		rows[1]["card"] = engine.String("bad")
		rows[3]["status"] = engine.String("deny")
		st := &batchState{State: pipeMemory(), refuse: refuse}
		e := pipelineEngine(t, st, &batchRecorder{})
		res, err := e.Ingest(ctx, "pipe.rows", rows)
		if !errors.Is(err, boom) || errors.Is(err, engine.ErrRejected) {
			t.Fatalf("err = %v, want row 1's", err)
		}
		if res.Written != 9 { // rows 0 to 2 and row 3's pipe.count, less row 1's pipe.sum
			t.Errorf("written = %d, want 9", res.Written)
		}
	})
	t.Run("preSet refuses one", func(t *testing.T) {
		for _, depth := range []int{1, engine.DefaultPipelineDepth} {
			rows := pipelineRows(6)
			rows[2]["status"] = engine.String("deny")
			st, rec := &batchState{State: pipeMemory()}, &batchRecorder{}
			e := pipelineEngine(t, st, rec, engine.WithPipelineDepth(depth))
			res, err := e.Ingest(ctx, "pipe.rows", rows)
			// Row 2's pipe.sum is written (it comes first), its pipe.last is refused, and
			// nothing after it is written.
			if !errors.Is(err, engine.ErrRejected) || res.Written != 7 || !strings.Contains(err.Error(), "7 of 18 values written") {
				t.Fatalf("depth %d: ingest = %+v, %v", depth, res, err)
			}
			if got, _ := e.Get(ctx, "pipe.sum+count", engine.Keys{"card": "c0"}); count(got.Value) != 1 {
				t.Errorf("depth %d: c0's row 3 written: count %v", depth, got.Value)
			}
			if len(rec.ns) != 7 {
				t.Errorf("depth %d: %d notifications, want 7", depth, len(rec.ns))
			}
		}
	})
	t.Run("ctx ended", func(t *testing.T) {
		st := &batchState{State: pipeMemory()}
		e := pipelineEngine(t, st, &batchRecorder{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		res, err := e.Ingest(cctx, "pipe.rows", pipelineRows(4))
		if !errors.Is(err, context.Canceled) || res.Written != 0 {
			t.Fatalf("ingest = %+v, %v", res, err)
		}
	})
}

// countingObserver counts State calls by op and writes by feature.
type countingObserver struct {
	mu     sync.Mutex
	state  map[engine.StateOp]int
	writes map[string]int
}

func (o *countingObserver) Feature(f *engine.Feature) engine.FeatureObserver {
	return countingFeature{o: o, fqn: f.FQN}
}
func (o *countingObserver) Forget(string) {}
func (o *countingObserver) State(op engine.StateOp, _ time.Duration, _ error) {
	o.mu.Lock()
	o.state[op]++
	o.mu.Unlock()
}

type countingFeature struct {
	o   *countingObserver
	fqn string
}

func (c countingFeature) Read(engine.Result, error) {}
func (c countingFeature) Write(_ engine.Op, _ engine.WriteResult, err error) {
	if err == nil {
		c.o.mu.Lock()
		c.o.writes[c.fqn]++
		c.o.mu.Unlock()
	}
}
func (c countingFeature) Middleware(int, engine.Stage, time.Duration, error) {}
func (c countingFeature) Program(time.Duration, error)                       {}

// TestIngestPipelineObserved: an Observer sees each batch as one write_batch State call and
// every value of it as a write of its feature.
func TestIngestPipelineObserved(t *testing.T) {
	obs := &countingObserver{state: map[engine.StateOp]int{}, writes: map[string]int{}}
	st := &batchState{State: pipeMemory()}
	e := pipelineEngine(t, st, &batchRecorder{}, engine.WithObserver(obs), engine.WithPipelineDepth(4))
	if _, err := e.Ingest(ctx, "pipe.rows", pipelineRows(10)); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if got := obs.state[engine.StateWriteBatch]; got != len(st.batches) || got == 0 {
		t.Errorf("%d write_batch calls observed, %d batches made", got, len(st.batches))
	}
	if got := obs.state[engine.StateCommitStorage]; got != 2 {
		t.Errorf("%d commit_storage calls observed, want 2 (rows 4 and 9)", got)
	}
	for _, fqn := range []string{"pipe.sum", "pipe.last", "pipe.count"} {
		if obs.writes[fqn] != 10 {
			t.Errorf("%s: %d writes observed, want 10", fqn, obs.writes[fqn])
		}
	}
}
