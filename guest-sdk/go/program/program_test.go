//go:build !wasip1

package program_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func tenFields() []abi.Field {
	return []abi.Field{
		{Name: "card_id", Value: abi.String("c_4242")},
		{Name: "amount_cents", Value: abi.Int(12550)},
		{Name: "currency", Value: abi.String("EUR")},
		{Name: "status", Value: abi.String("approved")},
		{Name: "ts", Value: abi.Timestamp(1700000000123456789)},
		{Name: "merchant_id", Value: abi.String("m_17")},
		{Name: "mcc", Value: abi.Int(5411)},
		{Name: "country", Value: abi.String("FR")},
		{Name: "card_present", Value: abi.Bool(true)},
		{Name: "risk_score", Value: abi.Float(0.125)},
	}
}

func callBytes(keys []abi.KV, row []abi.Field) []byte {
	return abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "fraud.amount", Keys: keys, Timestamp: 1700000000123456789, Row: row})
}

// response decodes a program response.
func response(t *testing.T, b []byte) (abi.Response, abi.ProgramResult) {
	t.Helper()
	r, d := abi.DecodeResponse(b)
	var pr abi.ProgramResult
	if r.Status == abi.StatusOK {
		pr = d.ProgramResult()
	}
	if err := d.Done(); err != nil {
		t.Fatalf("response %x: %v", b, err)
	}
	return r, pr
}

// fraudAmount is the fraud example's program.
func fraudAmount(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	status, err := row.String("status")
	if err != nil {
		return program.Result{}, err
	}
	if status != "approved" {
		return program.Result{}, nil
	}
	cents, err := row.Int("amount_cents")
	if err != nil {
		return program.Result{}, err
	}
	card, err := row.String("card_id")
	if err != nil {
		return program.Result{}, err
	}
	ts, err := row.Time("ts")
	if err != nil {
		return program.Result{}, err
	}
	return program.Result{Value: osprey.Float(float64(cents) / 100), Keys: osprey.K("card_id", card), Timestamp: ts}, nil
}

func TestRunEndToEnd(t *testing.T) {
	program.Handle(fraudAmount)
	r, pr := response(t, program.Run(callBytes(nil, tenFields())))
	if r.Status != abi.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Message)
	}
	want := abi.ProgramResult{Value: abi.Float(125.5), HasKeys: true, Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}},
		HasTimestamp: true, Timestamp: 1700000000123456789}
	if string(abi.AppendProgramResult(nil, &pr)) != string(abi.AppendProgramResult(nil, &want)) {
		t.Errorf("result %+v, want %+v", pr, want)
	}

	declined := tenFields()
	declined[3].Value = abi.String("declined")
	r, pr = response(t, program.Run(callBytes(nil, declined)))
	if r.Status != abi.StatusOK || pr.Value.Tag != abi.TagNull || pr.HasKeys || pr.HasTimestamp {
		t.Errorf("declined: %+v %+v, want a Null value without keys or timestamp", r, pr)
	}

	missing := tenFields()[:3]
	r, _ = response(t, program.Run(callBytes(nil, missing)))
	if r.Status != abi.StatusError || r.Message != `field "status": missing` {
		t.Errorf("missing field: %+v", r)
	}
}

func TestRunWithHost(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{
		Get: func(sel string, keys []abi.KV) (abi.GetResult, error) {
			if sel == "fraud.limit" {
				return abi.GetResult{Found: true, Value: abi.Float(1000), Fresh: true}, nil
			}
			return abi.GetResult{Found: true, Value: abi.Float(250)}, nil
		},
	})
	program.Handle(func(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
		sum, err := ctx.Get("fraud.amount+sum", nil)
		if err != nil {
			return program.Result{}, err
		}
		limit, err := ctx.Get("fraud.limit", nil)
		if err != nil {
			return program.Result{}, err
		}
		ctx.Info("utilisation", "sum", sum.Value.F, "limit", limit.Value.F, "fqn", ctx.FQN())
		return program.Result{Value: osprey.Float(sum.Value.F / limit.Value.F)}, nil
	})
	keys := []abi.KV{{Name: "card_id", Value: "c1"}}
	r, pr := response(t, program.Run(callBytes(keys, nil)))
	if r.Status != abi.StatusOK || pr.Value.F != 0.25 {
		t.Fatalf("got %+v %+v", r, pr)
	}
	if len(h.Gets) != 2 || h.Gets[0].Selector != "fraud.amount+sum" || h.Gets[1].Keys[0] != keys[0] {
		t.Errorf("gets %+v", h.Gets)
	}
	if len(h.Logs) != 1 || h.Logs[0].Msg != "utilisation" || len(h.Logs[0].Attrs) != 3 || h.Logs[0].Attrs[2].Value.S != "fraud.amount" {
		t.Errorf("logs %+v", h.Logs)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler program.Handler
		input   []byte
		want    string // the error message, or its prefix when it ends with "…"
	}{
		{"error", func(*osprey.Context, osprey.Row) (program.Result, error) { return program.Result{}, errors.New("boom") }, nil, "boom"},
		{"panic string", func(*osprey.Context, osprey.Row) (program.Result, error) { panic("kaboom") }, nil,
			"panic: kaboom\n  github.com/osprey-ml/osprey/guest-sdk/go/program_test.TestRunErrors.func2 (program/program_test.go:…"},
		{"panic runtime error", func(_ *osprey.Context, row osprey.Row) (program.Result, error) {
			fields := make([]int, row.Len())
			return program.Result{Value: osprey.Int(int64(fields[row.Len()]))}, nil
		}, nil, "panic: runtime error: index out of range [10] with length 10\n  github.com/osprey-ml/osprey/guest-sdk/go/program_test.TestRunErrors.func3…"},
		{"panic error", func(*osprey.Context, osprey.Row) (program.Result, error) { panic(errors.New("an error")) }, nil, "panic: an error\n…"},
		{"NaN", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.Float(math.NaN())}, nil
		}, nil, "program returned a float value with a NaN or infinite float"},
		{"bad UTF-8", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.String("\xff")}, nil
		}, nil, "program returned a string value that is not valid UTF-8"},
		{"unknown tag", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.Value{Tag: 99}}, nil
		}, nil, "program returned a value with unknown tag 99"},
		{"duplicate keys", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.Int(1), Keys: osprey.K("a", "1", "a", "2")}, nil
		}, nil, `program returned keys with a duplicate key "a"`},
		{"timestamp out of range", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.Int(1), Timestamp: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
		}, nil, "program returned timestamp 3000-01-01T00:00:00Z, outside the years 1678 to 2262"},
		{"timestamp before 1678", func(*osprey.Context, osprey.Row) (program.Result, error) {
			return program.Result{Value: osprey.Int(1), Timestamp: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}, nil
		}, nil, "program returned timestamp 1600-01-01T00:00:00Z, outside the years 1678 to 2262"},
		{"malformed call", fraudAmount, []byte{1, 0, 0}, "malformed program call: abi: malformed message: truncated at byte 3 (need 8 more, have 0)"},
		{"middleware call", fraudAmount, []byte{2}, "malformed program call: abi: malformed message: call kind 2, want 1 (program)"},
		{"no handler", nil, nil, program.NoHandler},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			program.Handle(tt.handler)
			in := tt.input
			if in == nil {
				in = callBytes(nil, tenFields())
			}
			r, _ := response(t, program.Run(in))
			prefix, isPrefix := strings.CutSuffix(tt.want, "…")
			if r.Status != abi.StatusError || (isPrefix && !strings.HasPrefix(r.Message, prefix)) || (!isPrefix && r.Message != tt.want) {
				t.Errorf("status %d, message %q; want 1, %q", r.Status, r.Message, tt.want)
			}
		})
	}
	// After errors and panics, the next call works.
	program.Handle(fraudAmount)
	if r, _ := response(t, program.Run(callBytes(nil, tenFields()))); r.Status != abi.StatusOK {
		t.Errorf("after the errors: %+v", r)
	}
}

// TestRejectInProgram checks that a rejection from a program is an error, not a rejection.
func TestRejectInProgram(t *testing.T) {
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
		return program.Result{}, osprey.Reject("no")
	})
	if r, _ := response(t, program.Run(callBytes(nil, nil))); r.Status != abi.StatusError || r.Message != "no" {
		t.Errorf("got %+v", r)
	}
}

// TestStaleRowAcrossCalls checks that a Row kept from one call does not read the next
// call's row.
func TestStaleRowAcrossCalls(t *testing.T) {
	var kept osprey.Row
	program.Handle(func(_ *osprey.Context, row osprey.Row) (program.Result, error) {
		kept = row
		return program.Result{}, nil
	})
	program.Run(callBytes(nil, tenFields()))
	program.Run(callBytes(nil, tenFields()))
	if _, err := kept.Float("risk_score"); err == nil || !strings.Contains(err.Error(), "row used after its call returned") {
		t.Errorf("stale row: %v", err)
	}
}

func floatHandler(_ *osprey.Context, row osprey.Row) (program.Result, error) {
	f, err := row.Float("risk_score")
	if err != nil {
		return program.Result{}, err
	}
	return program.Result{Value: osprey.Float(f)}, nil
}

// TestRunAllocs checks the steady-state per-call path allocates nothing: decode a call with
// a 10-field row, read one float, return it.
func TestRunAllocs(t *testing.T) {
	program.Handle(floatHandler)
	in := callBytes([]abi.KV{{Name: "card_id", Value: "c_4242"}}, tenFields())
	program.Run(in)
	if n := testing.AllocsPerRun(1000, func() { program.Run(in) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
	if r, pr := response(t, program.Run(in)); r.Status != abi.StatusOK || pr.Value.F != 0.125 {
		t.Errorf("got %+v %+v", r, pr)
	}
}

func BenchmarkRun10Fields(b *testing.B) {
	program.Handle(floatHandler)
	in := callBytes([]abi.KV{{Name: "card_id", Value: "c_4242"}}, tenFields())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		program.Run(in)
	}
}

// BenchmarkRunFraudAmount runs the fraud example's program, which allocates the strings it
// reads and its result keys.
func BenchmarkRunFraudAmount(b *testing.B) {
	program.Handle(fraudAmount)
	in := callBytes(nil, tenFields())
	b.ReportAllocs()
	for b.Loop() {
		program.Run(in)
	}
}
