package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// funcProgram is a Program written in Go, for tests.
type funcProgram func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error)

func (f funcProgram) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return f(ctx, call)
}

// loader serves funcPrograms by the feature's Builder.Module.
type loader map[string]funcProgram

func (l loader) LoadProgram(_ context.Context, f *engine.Feature) (engine.Program, error) {
	if f.Builder.Kind != "wasm" {
		return nil, fmt.Errorf("%w: builder %q", engine.ErrUnsupported, f.Builder.Kind)
	}
	p, ok := l[f.Builder.Module]
	if !ok {
		return nil, fmt.Errorf("no module %q", f.Builder.Module)
	}
	return p, nil
}

func amountProgram(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	if call.Row["status"].Str() == "declined" {
		return engine.ProgramResult{}, nil // write nothing
	}
	cents := call.Row["amount_cents"]
	if cents.Kind() != engine.KindInt {
		return engine.ProgramResult{}, fmt.Errorf("amount_cents: want int, got %s", cents.Kind())
	}
	return engine.ProgramResult{Value: engine.Float(float64(cents.Int()) / 100)}, nil
}

func rows(t *testing.T, js string) []engine.Row {
	t.Helper()
	var raw []map[string]any
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	out := make([]engine.Row, len(raw))
	for i, m := range raw {
		r, err := engine.RowFromMap(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func programFixture(t *testing.T, progs loader) *fixture {
	fx := newFixture(t, engine.WithPrograms(progs))
	if err := fx.e.ApplyDataSource(ctx, &engine.DataSource{FQN: "fraud.transactions", Kind: "rows", TimestampField: "ts"}); err != nil {
		t.Fatal(err)
	}
	amount := windowed("fraud.amount")
	amount.Keys = []string{"card_id"}
	amount.DataSource = "fraud.transactions"
	amount.Builder = engine.Builder{Kind: "wasm", Module: "amount"}
	fx.apply(t, amount)
	return fx
}

func TestIngest(t *testing.T) {
	fx := programFixture(t, loader{"amount": amountProgram})
	res, err := fx.e.Ingest(ctx, "fraud.transactions", rows(t, `[
		{"card_id": "c1", "amount_cents": 1250, "status": "approved", "ts": "2026-11-23T11:59:00Z"},
		{"card_id": "c1", "amount_cents": 4000, "status": "approved"},
		{"card_id": "c1", "amount_cents": 99999, "status": "declined"},
		{"card_id": "c2", "amount_cents": 100, "status": "approved"}
	]`))
	if err != nil || res.Written != 3 || res.Skipped != 1 || res.Rows != 4 {
		t.Fatalf("ingest = %+v, %v", res, err)
	}
	got, _ := fx.e.Get(ctx, "fraud.amount+avg", engine.Keys{"card_id": "c1"})
	if got.Value.Float() != 26.25 {
		t.Fatalf("avg = %v", got.Value)
	}
	// A batch with one bad row writes nothing at all.
	_, err = fx.e.Ingest(ctx, "fraud.transactions", rows(t, `[
		{"card_id": "c3", "amount_cents": 100, "status": "approved"},
		{"card_id": "c3", "amount_cents": "lots", "status": "approved"},
		{"amount_cents": 5, "status": "approved"},
		{"card_id": "c3", "amount_cents": 1, "ts": "yesterday"}
	]`))
	var ie *engine.IngestError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "nothing written") {
		t.Fatalf("bad batch: err = %v", err)
	}
	for _, want := range []string{"row 1: fraud.amount", "amount_cents: want int", `row 2: fraud.amount`, `missing key "card_id"`, `row 3`, `"ts"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if got, _ := fx.e.Get(ctx, "fraud.amount", engine.Keys{"card_id": "c3"}); got.Found() {
		t.Fatalf("partial write: %v", got.Value)
	}
	if _, err := fx.e.Ingest(ctx, "fraud.nope", nil); !errors.Is(err, engine.ErrFeatureNotFound) {
		t.Fatalf("unknown source: %v", err)
	}
}

func TestDryRun(t *testing.T) {
	fx := programFixture(t, loader{"amount": amountProgram})
	row := rows(t, `[{"card_id": "c9", "amount_cents": 705, "status": "approved", "ts": "2026-11-23T11:00:00Z"}]`)[0]
	out, err := fx.e.DryRun(ctx, "fraud.amount", nil, row, time.Time{})
	if err != nil || out.Value.Float() != 7.05 || out.Keys["card_id"] != "c9" {
		t.Fatalf("dry run = %+v, %v", out, err)
	}
	if got, _ := fx.e.Get(ctx, "fraud.amount", engine.Keys{"card_id": "c9"}); got.Found() {
		t.Fatalf("dry run wrote %v", got.Value)
	}
	if len(fx.notes.ns) != 0 {
		t.Fatalf("dry run published %d notifications", len(fx.notes.ns))
	}
	fx.apply(t, scalar("t.plain", engine.PrimitiveInt))
	if _, err := fx.e.DryRun(ctx, "t.plain", nil, row, time.Time{}); !errors.Is(err, engine.ErrUnsupported) {
		t.Fatalf("dry run of sourceless: %v", err)
	}
}

func TestOnRequestFeature(t *testing.T) {
	var runs atomic.Int64
	ratio := func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		runs.Add(1)
		sum, err := call.Reader.Get(ctx, "fraud.amount+sum", call.Keys)
		if err != nil {
			return engine.ProgramResult{}, err
		}
		limit, err := call.Reader.Get(ctx, "fraud.limit", call.Keys)
		if err != nil {
			return engine.ProgramResult{}, err
		}
		if !sum.Found() || !limit.Found() || limit.Value.Float() == 0 {
			return engine.ProgramResult{}, nil
		}
		return engine.ProgramResult{Value: engine.Float(sum.Value.Float() / limit.Value.Float())}, nil
	}
	sneaky := func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		_, err := call.Reader.Get(ctx, "fraud.limit", call.Keys)
		return engine.ProgramResult{}, err
	}
	fx := programFixture(t, loader{"amount": amountProgram, "ratio": ratio, "sneaky": sneaky})
	limit := scalar("fraud.limit", engine.PrimitiveFloat)
	limit.Keys = []string{"card_id"}
	fx.apply(t, limit)
	util := scalar("fraud.utilisation", engine.PrimitiveFloat)
	util.Keys = []string{"card_id"}
	util.Freshness, util.Staleness = time.Minute, time.Hour
	util.Builder = engine.Builder{Kind: "wasm", Module: "ratio"}
	util.Dependencies = []string{"fraud.amount", "fraud.limit"}
	fx.apply(t, util)
	k := engine.Keys{"card_id": "c1"}

	if got, err := fx.e.Get(ctx, "fraud.utilisation", k); err != nil || got.Found() {
		t.Fatalf("with no inputs: %v, %v", got.Value, err)
	}
	_, _ = fx.e.Set(ctx, "fraud.limit", k, 1000, time.Time{})
	_, _ = fx.e.Update(ctx, "fraud.amount", k, 250, time.Time{})
	got, err := fx.e.Get(ctx, "fraud.utilisation", k)
	if err != nil || got.Value.Float() != 0.25 || !got.Fresh {
		t.Fatalf("computed = %v fresh=%v, %v", got.Value, got.Fresh, err)
	}
	before := runs.Load()
	if got, _ := fx.e.Get(ctx, "fraud.utilisation", k); got.Value.Float() != 0.25 || runs.Load() != before {
		t.Fatalf("fresh value recomputed (%d runs)", runs.Load()-before)
	}
	// Stale: served at once, recomputed in the background.
	_, _ = fx.e.Update(ctx, "fraud.amount", k, 250, time.Time{})
	fx.clock.Add(2 * time.Minute)
	_, _ = fx.e.Set(ctx, "fraud.limit", k, 1000, time.Time{}) // keep the limit alive
	got, _ = fx.e.Get(ctx, "fraud.utilisation", k)
	if got.Value.Float() != 0.25 || got.Fresh {
		t.Fatalf("stale read = %v fresh=%v, want the old 0.25, not fresh", got.Value, got.Fresh)
	}
	// A second stale read while the first's recompute is queued or running queues none.
	_, _ = fx.e.Get(ctx, "fraud.utilisation", k)
	waitFor(t, "the background recompute", func() bool { return fx.e.RecomputeStats().Done >= 1 })
	if s := fx.e.RecomputeStats(); s.Queued != 1 || s.Failed != 0 || s.Dropped != 0 {
		t.Fatalf("recompute stats = %+v, want one queued, none failed or dropped", s)
	}
	got, _ = fx.e.Get(ctx, "fraud.utilisation", k)
	if got.Value.Float() != 0.5 || !got.Fresh {
		t.Fatalf("after recompute = %v fresh=%v, want 0.5", got.Value, got.Fresh)
	}
	// A program may only read what it declares.
	bad := scalar("fraud.sneaky", engine.PrimitiveFloat)
	bad.Keys = []string{"card_id"}
	bad.Builder = engine.Builder{Kind: "wasm", Module: "sneaky"}
	fx.apply(t, bad)
	if _, err := fx.e.Get(ctx, "fraud.sneaky", k); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "spec.dependencies") {
		t.Fatalf("undeclared read: %v", err)
	}
}

func TestApplyProgramErrors(t *testing.T) {
	fx := newFixture(t) // no program loader
	f := scalar("t.p", engine.PrimitiveInt)
	f.Builder = engine.Builder{Kind: "wasm", Module: "x"}
	if err := fx.e.Apply(ctx, f); !errors.Is(err, engine.ErrUnsupported) {
		t.Fatalf("no loader: %v", err)
	}
	fx = newFixture(t, engine.WithPrograms(loader{"x": amountProgram}))
	f.DataSource = "t.src"
	if err := fx.e.Apply(ctx, f); !errors.Is(err, engine.ErrFeatureNotFound) || !strings.Contains(err.Error(), "spec.dataSource") {
		t.Fatalf("missing data source: %v", err)
	}
	w := windowed("t.w")
	w.Builder = engine.Builder{Kind: "wasm", Module: "x"}
	if err := fx.e.Apply(ctx, w); !errors.Is(err, engine.ErrInvalidFeature) {
		t.Fatalf("windowed on-request: %v", err)
	}
}

func TestRowFromMap(t *testing.T) {
	tests := []struct {
		in      string
		want    engine.Value
		wantErr string
	}{
		{`1`, engine.Int(1), ""},
		{`1.5`, engine.Float(1.5), ""},
		{`1e3`, engine.Float(1000), ""},
		{`"x"`, engine.String("x"), ""},
		{`true`, engine.Bool(true), ""},
		{`null`, engine.Null, ""},
		{`[1, 2]`, engine.IntList([]int64{1, 2}), ""},
		{`[1, 2.5]`, engine.FloatList([]float64{1, 2.5}), ""},
		{`["a"]`, engine.StringList([]string{"a"}), ""},
		{`[1, "a"]`, engine.Null, "mixes"},
		{`[]`, engine.Null, "empty list"},
		{`{"a": 1}`, engine.Null, "unsupported"},
		{`[[1]]`, engine.Null, "lists hold scalars"},
	}
	for _, tt := range tests {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(`{"f": ` + tt.in + `}`))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		row, err := engine.RowFromMap(m)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `field "f"`) {
				t.Errorf("%s: err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !row["f"].Equal(tt.want) {
			t.Errorf("%s: got %v (%v), want %v", tt.in, row["f"], err, tt.want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
