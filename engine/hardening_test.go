package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// TestArithmeticOverflow checks that no write stores, and no read serves, a number past its
// type's range: an int Incr never wraps, a float Incr or a bucket's sum never reaches ±Inf,
// and a window whose sum over its buckets does is refused. A refused write writes nothing
// and publishes nothing.
func TestArithmeticOverflow(t *testing.T) {
	tests := []struct {
		name    string
		feature func() *engine.Feature
		setup   []any // values written with Update before the call (at distinct minutes)
		op      string
		by      any
		want    engine.Value // read back after the refused call; Null skips the check
	}{
		{"int past max", func() *engine.Feature { return scalar("t.c", engine.PrimitiveInt) },
			[]any{int64(math.MaxInt64)}, "incr", 1, engine.Int(math.MaxInt64)},
		{"int far past max", func() *engine.Feature { return scalar("t.c", engine.PrimitiveInt) },
			[]any{int64(math.MaxInt64 - 5)}, "incr", "9223372036854775807", engine.Int(math.MaxInt64 - 5)},
		{"int past min", func() *engine.Feature { return scalar("t.c", engine.PrimitiveInt) },
			[]any{int64(math.MinInt64)}, "incr", -1, engine.Int(math.MinInt64)},
		{"float past max", func() *engine.Feature { return scalar("t.c", engine.PrimitiveFloat) },
			[]any{math.MaxFloat64}, "incr", math.MaxFloat64, engine.Float(math.MaxFloat64)},
		{"float past -max", func() *engine.Feature { return scalar("t.c", engine.PrimitiveFloat) },
			[]any{-math.MaxFloat64}, "incr", -1e300, engine.Float(-math.MaxFloat64)},
		{"bucket sum by update", func() *engine.Feature { return windowed("t.w") },
			[]any{1.5e308}, "update", 1.5e308, engine.Float(1.5e308)},
		{"bucket sum by incr", func() *engine.Feature { return windowed("t.w") },
			[]any{-1.5e308}, "incr", -1.5e308, engine.Float(-1.5e308)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			f := tt.feature()
			fx.apply(t, f)
			k := engine.Keys{"id": "a"}
			for _, v := range tt.setup {
				if _, err := fx.e.Update(ctx, f.FQN, k, v, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			published := len(fx.notes.ns)
			var out engine.Value
			var err error
			if tt.op == "incr" {
				out, err = fx.e.Incr(ctx, f.FQN, k, tt.by, time.Time{})
			} else {
				out, err = fx.e.Update(ctx, f.FQN, k, tt.by, time.Time{})
			}
			if !errors.Is(err, engine.ErrOverflow) || !errors.Is(err, engine.ErrTypeMismatch) {
				t.Fatalf("%s by %v = %v, %v; want an error wrapping %v", tt.op, tt.by, out, err, engine.ErrOverflow)
			}
			if !strings.Contains(err.Error(), f.FQN) {
				t.Errorf("error does not name the feature: %v", err)
			}
			if n := len(fx.notes.ns); n != published {
				t.Errorf("a refused write published %d notifications", n-published)
			}
			sel := f.FQN
			if f.Windowed() {
				sel += "+sum"
			}
			res, err := fx.e.Get(ctx, sel, k)
			if err != nil || !res.Value.Equal(tt.want) {
				t.Fatalf("after the refused %s: %s = %v, %v; want %v", tt.op, sel, res.Value, err, tt.want)
			}
		})
	}
}

// TestWindowSumOverflowOnRead checks that a window whose buckets are each finite but whose
// sum is not is refused for the aggregations that overflow, and served for the others.
func TestWindowSumOverflowOnRead(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, windowed("t.w"))
	k := engine.Keys{"id": "a"}
	for _, ago := range []time.Duration{2 * time.Minute, time.Minute} {
		if _, err := fx.e.Update(ctx, "t.w", k, 1.5e308, t0.Add(-ago)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		selector string
		want     engine.Value // Null: refused with ErrOverflow
	}{
		{"t.w+sum", engine.Null},
		{"t.w+avg", engine.Null},
		{"t.w", engine.Null}, // every aggregation, sum and avg among them
		{"t.w+count", engine.Float(2)},
		{"t.w+max", engine.Float(1.5e308)},
		{"t.w+min", engine.Float(1.5e308)},
	}
	for _, tt := range tests {
		res, err := fx.e.Get(ctx, tt.selector, k)
		if tt.want.IsNull() {
			if !errors.Is(err, engine.ErrOverflow) {
				t.Errorf("Get %s = %v, %v; want an error wrapping %v", tt.selector, res.Value, err, engine.ErrOverflow)
			}
			continue
		}
		if err != nil || !res.Value.Equal(tt.want) {
			t.Errorf("Get %s = %v, %v; want %v", tt.selector, res.Value, err, tt.want)
		}
	}
}

// TestMaxTimeout checks the host's ceiling on spec.timeout.
func TestMaxTimeout(t *testing.T) {
	tests := []struct {
		name    string
		opts    []engine.Option
		timeout time.Duration
		ok      bool
		ceiling string // in the error
	}{
		{"default ceiling, at it", nil, engine.DefaultMaxTimeout, true, ""},
		{"default ceiling, past it", nil, engine.DefaultMaxTimeout + time.Nanosecond, false, "30s"},
		{"default ceiling, an hour", nil, time.Hour, false, "30s"},
		{"raised ceiling", []engine.Option{engine.WithMaxTimeout(2 * time.Minute)}, time.Minute, true, ""},
		{"raised ceiling, past it", []engine.Option{engine.WithMaxTimeout(2 * time.Minute)}, 3 * time.Minute, false, "2m0s"},
		{"lowered ceiling", []engine.Option{engine.WithMaxTimeout(100 * time.Millisecond)}, time.Second, false, "100ms"},
		{"zero keeps the default", []engine.Option{engine.WithMaxTimeout(0)}, time.Minute, false, "30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.opts...)
			f := scalar("t.slow", engine.PrimitiveInt)
			f.Timeout = tt.timeout
			err := fx.e.Apply(ctx, f)
			if tt.ok {
				if err != nil {
					t.Fatalf("Apply with timeout %v: %v", tt.timeout, err)
				}
				return
			}
			var fe *engine.FieldError
			if !errors.Is(err, engine.ErrInvalidFeature) || !errors.As(err, &fe) || fe.Path != "spec.timeout" {
				t.Fatalf("Apply with timeout %v: err = %v, want ErrInvalidFeature naming spec.timeout", tt.timeout, err)
			}
			for _, want := range []string{"spec.timeout", tt.timeout.String(), tt.ceiling} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if _, err := fx.e.FeatureDescriptor(ctx, "t.slow"); !errors.Is(err, engine.ErrFeatureNotFound) {
				t.Errorf("refused feature is applied: %v", err)
			}
		})
	}
}

// TestIngestStopsWhenContextEnds checks that an Ingest whose caller goes away (or whose
// deadline passes) stops between rows, writes nothing, and says why.
func TestIngestStopsWhenContextEnds(t *testing.T) {
	const nRows = 500
	tests := []struct {
		name     string
		stopAt   int64 // the program run that ends ctx (0: ctx ended before the call)
		deadline bool  // end it by a deadline, not a cancel
		want     error
	}{
		{"cancelled before", 0, false, context.Canceled},
		{"deadline passed before", 0, true, context.DeadlineExceeded},
		{"cancelled at the first row", 1, false, context.Canceled},
		{"cancelled mid-way", 7, false, context.Canceled},
		{"cancelled at the last row", nRows, false, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tt.deadline {
				var c2 context.CancelFunc
				cctx, c2 = context.WithDeadline(cctx, time.Now().Add(-time.Second))
				defer c2()
			} else if tt.stopAt == 0 {
				cancel()
			}
			var runs atomic.Int64
			prog := func(c context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
				if runs.Add(1) == tt.stopAt {
					cancel() // the client goes away while this row runs
				}
				return amountProgram(c, call)
			}
			fx := programFixture(t, loader{"amount": prog})
			var js strings.Builder
			js.WriteString("[")
			for i := range nRows {
				if i > 0 {
					js.WriteString(",")
				}
				fmt.Fprintf(&js, `{"card_id": "c%d", "amount_cents": 100, "status": "approved"}`, i)
			}
			js.WriteString("]")
			res, err := fx.e.Ingest(cctx, "fraud.transactions", rows(t, js.String()))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Ingest = %+v, %v; want an error wrapping %v", res, err, tt.want)
			}
			if !strings.Contains(err.Error(), "nothing written") {
				t.Errorf("error does not say nothing was written: %v", err)
			}
			if n := runs.Load(); n != tt.stopAt {
				t.Errorf("%d programs ran, want %d (none after the context ended)", n, tt.stopAt)
			}
			if res.Written != 0 || len(fx.notes.ns) != 0 {
				t.Errorf("written %d, published %d; want nothing", res.Written, len(fx.notes.ns))
			}
			for _, id := range []string{"c0", fmt.Sprintf("c%d", nRows-1)} {
				if got, _ := fx.e.Get(ctx, "fraud.amount", engine.Keys{"card_id": id}); got.Found() {
					t.Errorf("%s written: %v", id, got.Value)
				}
			}
		})
	}
}

// TestIngestStopsBetweenWrites checks the second phase: a context that ends while values are
// being written stops the writes, and the result counts those made.
func TestIngestStopsBetweenWrites(t *testing.T) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var writes atomic.Int64
	resolver := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			if writes.Add(1) == 2 {
				cancel() // the client goes away after the second write
			}
			return v, nil
		}, nil
	})
	fx := newFixture(t, engine.WithPrograms(loader{"amount": amountProgram}), engine.WithMiddlewareResolver(resolver))
	if err := fx.e.ApplyDataSource(ctx, &engine.DataSource{FQN: "fraud.transactions", Kind: "rows"}); err != nil {
		t.Fatal(err)
	}
	f := windowed("fraud.amount")
	f.Keys = []string{"card_id"}
	f.DataSource = "fraud.transactions"
	f.Builder = engine.Builder{Kind: "wasm", Module: "amount"}
	f.Middlewares = []engine.MiddlewareRef{{Name: "count", Stages: []engine.Stage{engine.StagePostSet}}}
	fx.apply(t, f)
	res, err := fx.e.Ingest(cctx, "fraud.transactions", rows(t, `[
		{"card_id": "a", "amount_cents": 1}, {"card_id": "b", "amount_cents": 2},
		{"card_id": "c", "amount_cents": 3}, {"card_id": "d", "amount_cents": 4}]`))
	if !errors.Is(err, context.Canceled) || res.Written != 2 || writes.Load() != 2 {
		t.Fatalf("Ingest = %+v, %v after %d writes; want 2 written, then context.Canceled", res, err, writes.Load())
	}
	if !strings.Contains(err.Error(), "2 of 4 values written") {
		t.Errorf("error does not count the writes: %v", err)
	}
}

// TestDryRunHonoursContext checks that a dry run for a caller that has gone away fails.
func TestDryRunHonoursContext(t *testing.T) {
	fx := programFixture(t, loader{"amount": amountProgram})
	row := rows(t, `[{"card_id": "c9", "amount_cents": 705}]`)[0]
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			c, cancel := context.WithCancel(ctx)
			cancel()
			return c, cancel
		}, context.Canceled},
		{"deadline passed", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(ctx, time.Now().Add(-time.Second))
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		c, cancel := tt.ctx()
		_, err := fx.e.DryRun(c, "fraud.amount", nil, row, time.Time{})
		cancel()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: DryRun err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestKeyValueLimit checks that a key value over engine.MaxKeyBytes is refused with
// ErrInvalidKeys before anything runs — no middleware, no program, no state call — and
// that the error names the key without copying its value.
func TestKeyValueLimit(t *testing.T) {
	var runs atomic.Int64
	prog := func(context.Context, *engine.ProgramCall) (engine.ProgramResult, error) {
		runs.Add(1)
		return engine.ProgramResult{Value: engine.Float(1)}, nil
	}
	fx := newFixture(t, engine.WithPrograms(loader{"p": prog}))
	fx.apply(t, scalar("t.s", engine.PrimitiveInt))
	onReq := scalar("t.computed", engine.PrimitiveFloat)
	onReq.Builder = engine.Builder{Kind: "wasm", Module: "p"}
	fx.apply(t, onReq)

	huge := strings.Repeat("k", 20<<20)
	tests := []struct {
		name string
		keys engine.Keys
		ok   bool
		in   string // in the error
	}{
		{"at the limit", engine.Keys{"id": strings.Repeat("k", engine.MaxKeyBytes)}, true, ""},
		{"one byte over", engine.Keys{"id": strings.Repeat("k", engine.MaxKeyBytes+1)}, false, `key "id": value is 65537 bytes, more than the 65536 allowed`},
		{"20 MB", engine.Keys{"id": huge}, false, `key "id": value is 20971520 bytes`},
		{"20 MB unknown key name", engine.Keys{"id": "a", huge: "b"}, false, "unknown key"},
	}
	calls := []struct {
		name string
		call func(engine.Keys) error
	}{
		{"Get", func(k engine.Keys) error { _, err := fx.e.Get(ctx, "t.s", k); return err }},
		{"Set", func(k engine.Keys) error { _, err := fx.e.Set(ctx, "t.s", k, 1, time.Time{}); return err }},
		{"Incr", func(k engine.Keys) error { _, err := fx.e.Incr(ctx, "t.s", k, 1, time.Time{}); return err }},
		{"Get on request", func(k engine.Keys) error { _, err := fx.e.Get(ctx, "t.computed", k); return err }},
		{"DryRun", func(k engine.Keys) error { _, err := fx.e.DryRun(ctx, "t.computed", k, nil, time.Time{}); return err }},
	}
	for _, tt := range tests {
		for _, c := range calls {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				before := runs.Load()
				err := c.call(tt.keys)
				if tt.ok {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if !errors.Is(err, engine.ErrInvalidKeys) || !strings.Contains(err.Error(), tt.in) {
					t.Fatalf("err = %.300v, want ErrInvalidKeys saying %q", err, tt.in)
				}
				if len(err.Error()) > 1000 {
					t.Errorf("the error message is %d bytes: it copies the input", len(err.Error()))
				}
				if runs.Load() != before {
					t.Errorf("the program ran for keys that are refused")
				}
			})
		}
	}
}
