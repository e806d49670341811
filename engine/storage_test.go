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

// storageProgram is a Go program using its invocation's storage, by the row's "do" field:
//
//	since: writes the seconds since the entity's previous row (storage last_seen), nothing
//	       for its first row
//	count: adds one to storage count and writes it
//	fail:  sets count to 999, then fails
//	bogus: reads a storage the feature does not declare
//	wrongtype: sets count to a string
type storageProgram struct{ runs atomic.Int64 }

func (p *storageProgram) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	p.runs.Add(1)
	in := call.Invocation
	do := "count"
	if call.Row != nil {
		do = call.Row["do"].Str()
	}
	switch do {
	case "since":
		last, ok, err := in.Storage(ctx, "last_seen")
		if err != nil {
			return engine.ProgramResult{}, err
		}
		if err := in.SetStorage(ctx, "last_seen", engine.Timestamp(call.Timestamp)); err != nil {
			return engine.ProgramResult{}, err
		}
		if !ok {
			return engine.ProgramResult{}, nil
		}
		return engine.ProgramResult{Value: engine.Float(call.Timestamp.Sub(last.Time()).Seconds())}, nil
	case "count", "fail":
		n, _, err := in.Storage(ctx, "count")
		if err != nil {
			return engine.ProgramResult{}, err
		}
		if do == "fail" {
			in.SetStorage(ctx, "count", engine.Int(999))
			return engine.ProgramResult{}, errors.New("the program failed")
		}
		next := n.Int() + 1
		if err := in.SetStorage(ctx, "count", engine.Int(next)); err != nil {
			return engine.ProgramResult{}, err
		}
		return engine.ProgramResult{Value: engine.Float(float64(next))}, nil
	case "bogus":
		_, _, err := in.Storage(ctx, "nosuch")
		return engine.ProgramResult{}, err
	case "wrongtype":
		return engine.ProgramResult{}, in.SetStorage(ctx, "count", engine.String("many"))
	}
	return engine.ProgramResult{}, fmt.Errorf("do %q?", do)
}

type storageLoader struct{ p *storageProgram }

func (l storageLoader) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return l.p, nil
}

type storageClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *storageClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *storageClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newStorageEngine returns an engine on the in-process state with two features computed by
// storageProgram: stateful.velocity fed by stateful.rows, and stateful.counted on request.
func newStorageEngine(t *testing.T, mw engine.MiddlewareResolver) (*engine.Engine, *storageProgram, *storageClock) {
	t.Helper()
	c := &storageClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	st := memory.New(memory.WithClock(c.now))
	t.Cleanup(func() { st.Close() })
	prog := &storageProgram{}
	opts := []engine.Option{engine.WithPrograms(storageLoader{prog}), engine.WithClock(c.now), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
	if mw != nil {
		opts = append(opts, engine.WithMiddlewareResolver(mw))
	}
	e := engine.New(st, opts...)
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "stateful.rows", Kind: "rest", KeyFields: []string{"card"}, TimestampField: "ts"}); err != nil {
		t.Fatal(err)
	}
	storage := []engine.StorageSpec{
		{Name: "last_seen", Primitive: engine.PrimitiveTimestamp, ExpireAfterWrite: time.Hour},
		{Name: "count", Primitive: engine.PrimitiveInt, ExpireAfterCall: 30 * time.Minute},
	}
	f := &engine.Feature{FQN: "stateful.velocity", Primitive: engine.PrimitiveFloat, Keys: []string{"card"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, DataSource: "stateful.rows", Builder: engine.Builder{Kind: "wasm", Module: "x"}, Storage: storage}
	if mw != nil {
		f.Middlewares = []engine.MiddlewareRef{{Name: "cap", Stages: []engine.Stage{engine.StagePreSet}}}
	}
	counted := &engine.Feature{FQN: "stateful.counted", Primitive: engine.PrimitiveFloat, Keys: []string{"card"}, Freshness: time.Nanosecond,
		Staleness: time.Nanosecond * 2, Timeout: time.Second, Builder: engine.Builder{Kind: "wasm", Module: "x"}, Storage: storage}
	for _, f := range []*engine.Feature{f, counted} {
		if err := e.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	return e, prog, c
}

func row(card, do string, ts time.Time) engine.Row {
	return engine.Row{"card": engine.String(card), "do": engine.String(do), "ts": engine.Timestamp(ts)}
}

func velocity(t *testing.T, e *engine.Engine, card string) engine.Value {
	t.Helper()
	r, err := e.Get(context.Background(), "stateful.velocity", engine.Keys{"card": card})
	if err != nil {
		t.Fatal(err)
	}
	return r.Value
}

// TestStorage: an entity's rows see each other's storage, in order, within one Ingest and
// across Ingests; other entities have their own; values expire after their write or call.
func TestStorage(t *testing.T) {
	ctx := context.Background()
	e, _, c := newStorageEngine(t, nil)
	t0 := c.now()
	res, err := e.Ingest(ctx, "stateful.rows", []engine.Row{
		row("c1", "since", t0), row("c2", "since", t0.Add(time.Second)), row("c1", "since", t0.Add(90*time.Second)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 1 || res.Skipped != 2 {
		t.Fatalf("Ingest = %+v, want 1 written (c1's second row) and 2 skipped (first rows)", res)
	}
	if v := velocity(t, e, "c1"); v.Float() != 90 {
		t.Fatalf("c1 = %v, want 90 s since its previous row", v)
	}
	if v := velocity(t, e, "c2"); !v.IsNull() {
		t.Fatalf("c2 = %v, want none after its first row", v)
	}
	c.add(10 * time.Minute)
	if _, err := e.Ingest(ctx, "stateful.rows", []engine.Row{row("c2", "since", c.now())}); err != nil {
		t.Fatal(err)
	}
	if v := velocity(t, e, "c2"); v.Float() != 599 {
		t.Fatalf("c2 = %v, want 599 s", v)
	}
	// last_seen expires an hour after its write: the next row is a first one again.
	c.add(61 * time.Minute)
	if _, err := e.Ingest(ctx, "stateful.rows", []engine.Row{row("c2", "since", c.now())}); err != nil {
		t.Fatal(err)
	}
	if v := velocity(t, e, "c2"); v.Float() != 599 {
		t.Fatalf("c2 after last_seen expired = %v, want the old value left alone", v)
	}
	// count expires 30 minutes after the address's last call, whatever the call did.
	k := engine.Keys{"card": "c9"}
	get := func() float64 {
		c.add(time.Second) // past the value's staleness: computed again
		r, err := e.Get(ctx, "stateful.counted", k)
		if err != nil {
			t.Fatal(err)
		}
		return r.Value.Float()
	}
	if get() != 1 || get() != 2 {
		t.Fatal("stateful.counted does not count its invocations")
	}
	c.add(20 * time.Minute)
	if n := get(); n != 3 {
		t.Fatalf("after 20 minutes: %v, want 3", n)
	}
	c.add(31 * time.Minute)
	if n := get(); n != 1 {
		t.Fatalf("after 31 minutes without a call: %v, want the count expired (1)", n)
	}
}

// TestStorageCommitOrNothing: a program that fails, a value a middleware rejects, a row of
// the same Ingest that fails: none leaves a storage change; misuse is a clear error.
func TestStorageCommitOrNothing(t *testing.T) {
	ctx := context.Background()
	cap100 := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			if v.Float() >= 3 {
				return engine.Null, fmt.Errorf("%w: 3 or more", engine.ErrRejected)
			}
			return v, nil
		}, nil
	})
	e, _, c := newStorageEngine(t, cap100)
	ingest := func(rows ...engine.Row) error {
		_, err := e.Ingest(ctx, "stateful.rows", rows)
		return err
	}
	now := c.now()
	if err := ingest(row("c1", "count", now), row("c1", "count", now.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rows []engine.Row
		want string
	}{
		{"the program fails", []engine.Row{row("c1", "fail", now.Add(2*time.Second))}, "the program failed"},
		{"a later row fails", []engine.Row{row("c1", "count", now.Add(2*time.Second)), row("c1", "fail", now.Add(3*time.Second))}, "the program failed"},
		{"the value is rejected", []engine.Row{row("c1", "count", now.Add(2*time.Second))}, "3 or more"},
		{"an undeclared storage", []engine.Row{row("c1", "bogus", now.Add(2*time.Second))}, `declares no storage "nosuch"`},
		{"a value of the wrong type", []engine.Row{row("c1", "wrongtype", now.Add(2*time.Second))}, `storage "count" of stateful.velocity is int`},
		{"no entity", []engine.Row{{"do": engine.String("count"), "ts": engine.Timestamp(now)}}, "address is not known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ingest(tc.rows...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ingest = %v, want %q", err, tc.want)
			}
			if v := velocity(t, e, "c1"); v.Float() != 2 {
				t.Fatalf("after %s: the value is %v, want 2 (nothing committed)", tc.name, v)
			}
		})
	}
	// The count is still 2: the next row makes it... 3, which the middleware rejects; so
	// check through a row the middleware lets through after clearing: dry run shows 3.
	out, err := e.DryRun(ctx, "stateful.velocity", nil, row("c1", "count", now.Add(4*time.Second)), time.Time{})
	if err == nil || !strings.Contains(err.Error(), "3 or more") {
		t.Fatalf("dry run = %+v, %v: want the 3rd count, rejected", out, err)
	}
}

// TestStorageConcurrentInvocations: invocations of one entity from many goroutines at once
// each see the others' committed storage: no increment is lost (conflicts run again).
func TestStorageConcurrentInvocations(t *testing.T) {
	ctx := context.Background()
	e, prog, c := newStorageEngine(t, nil)
	const goroutines, rows = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rows {
				ts := c.now().Add(time.Duration(g*rows+i) * time.Millisecond)
				if _, err := e.Ingest(ctx, "stateful.rows", []engine.Row{row("hot", "count", ts)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The value is the count of the invocation with the latest timestamp; the storage's count
	// is every increment: read it through one more row.
	if _, err := e.Ingest(ctx, "stateful.rows", []engine.Row{row("hot", "count", c.now().Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if v := velocity(t, e, "hot"); v.Float() != goroutines*rows+1 {
		t.Fatalf("count = %v, want %d: increments were lost", v, goroutines*rows+1)
	}
	t.Logf("%d program runs for %d rows (the rest ran again after a conflict)", prog.runs.Load(), goroutines*rows+1)
}

// TestStorageDryRun: a dry run reports the storage changes it would commit, and commits
// none.
func TestStorageDryRun(t *testing.T) {
	ctx := context.Background()
	e, _, c := newStorageEngine(t, nil)
	for range 2 {
		out, err := e.DryRun(ctx, "stateful.velocity", nil, row("c1", "since", c.now()), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Storage) != 1 || out.Storage[0].Name != "last_seen" || !out.Storage[0].Value.Time().Equal(c.now()) ||
			!out.Storage[0].Expires.Equal(c.now().Add(time.Hour)) || !out.Value.IsNull() {
			t.Fatalf("dry run = %+v, want last_seen set (and no value: nothing was committed before)", out)
		}
	}
}

// TestDryRunRowTime: a dry-run row is timed by its data source's timestampField, as Ingest
// times it.
func TestDryRunRowTime(t *testing.T) {
	e, _, c := newStorageEngine(t, nil)
	at := c.now().Add(-time.Hour)
	out, err := e.DryRun(context.Background(), "stateful.velocity", nil, row("c1", "since", at), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Storage) != 1 || !out.Storage[0].Value.Time().Equal(at) {
		t.Fatalf("dry run = %+v, want last_seen set to the row's ts %v", out, at)
	}
}
