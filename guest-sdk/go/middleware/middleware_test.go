//go:build !wasip1

package middleware_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
	"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

func callBytes(stage, op uint8, v abi.Value) []byte {
	return abi.AppendMiddlewareCall(nil, &abi.MiddlewareCall{Stage: stage, Op: op, FQN: "payments.amount",
		Keys: []abi.KV{{Name: "card_id", Value: "c1"}}, Timestamp: 1700000000000000000, Value: v})
}

func response(t *testing.T, b []byte) (abi.Response, abi.Value) {
	t.Helper()
	r, d := abi.DecodeResponse(b)
	var v abi.Value
	if r.Status == abi.StatusOK {
		v = d.Value()
	}
	if err := d.Done(); err != nil {
		t.Fatalf("response %x: %v", b, err)
	}
	return r, v
}

// clip is the middleware example: reject negatives, clip above 10000.
func clip(_ *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) {
	switch v.Tag {
	case osprey.TagFloat:
		if v.F < 0 {
			return v, osprey.Reject("amount %v is negative", v.F)
		}
		return osprey.Float(math.Min(v.F, 10000)), nil
	case osprey.TagNull:
		return v, nil
	}
	return v, fmt.Errorf("want a float, got %v", v.Tag)
}

func TestRun(t *testing.T) {
	middleware.Handle(clip)
	tests := []struct {
		name   string
		in     abi.Value
		status uint8
		want   abi.Value
		msg    string
	}{
		{"pass", abi.Float(12.5), abi.StatusOK, abi.Float(12.5), ""},
		{"clip", abi.Float(25000), abi.StatusOK, abi.Float(10000), ""},
		{"null", abi.Null(), abi.StatusOK, abi.Null(), ""},
		{"reject", abi.Float(-5), abi.StatusRejected, abi.Value{}, "amount -5 is negative"},
		{"error", abi.String("x"), abi.StatusError, abi.Value{}, "want a float, got string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, v := response(t, middleware.Run(callBytes(abi.StagePreSet, abi.OpSet, tt.in)))
			if r.Status != tt.status || r.Message != tt.msg || string(abi.AppendValue(nil, v)) != string(abi.AppendValue(nil, tt.want)) {
				t.Errorf("got %d %q %+v; want %d %q %+v", r.Status, r.Message, v, tt.status, tt.msg, tt.want)
			}
		})
	}
}

func TestCallAndContext(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{})
	var got middleware.Call
	var fqn string
	var keys osprey.Keys
	middleware.Handle(func(ctx *osprey.Context, call middleware.Call, v osprey.Value) (osprey.Value, error) {
		got, fqn, keys = call, ctx.FQN(), ctx.Keys()
		ctx.Warn("seen", "stage", call.Stage.String(), "op", call.Op)
		return v, nil
	})
	stages := []uint8{abi.StagePreGet, abi.StagePostGet, abi.StagePreSet, abi.StagePostSet}
	ops := []uint8{abi.OpGet, abi.OpSet, abi.OpAppend, abi.OpIncr, abi.OpUpdate}
	for _, s := range stages {
		for _, o := range ops {
			if r, _ := response(t, middleware.Run(callBytes(s, o, abi.Int(1)))); r.Status != abi.StatusOK {
				t.Fatalf("stage %d op %d: %+v", s, o, r)
			}
			if got.Stage != middleware.Stage(s) || got.Op != middleware.Op(o) {
				t.Errorf("call %+v, want stage %d op %d", got, s, o)
			}
		}
	}
	if fqn != "payments.amount" || len(keys) != 1 || keys[0].Value != "c1" {
		t.Errorf("ctx: %q %v", fqn, keys)
	}
	last := h.Logs[len(h.Logs)-1]
	if last.Level != int32(osprey.LevelWarn) || last.Attrs[0].Value.S != "postSet" || last.Attrs[1].Value.S != "update" {
		t.Errorf("last log %+v", last)
	}
}

func TestStrings(t *testing.T) {
	tests := map[fmt.Stringer]string{
		middleware.PreGet: "preGet", middleware.PostGet: "postGet", middleware.PreSet: "preSet", middleware.PostSet: "postSet",
		middleware.Stage(9): "stage(9)",
		middleware.Get:      "get", middleware.Set: "set", middleware.Append: "append", middleware.Incr: "incr", middleware.Update: "update",
		middleware.Op(0): "op(0)",
	}
	for s, want := range tests {
		if s.String() != want {
			t.Errorf("%#v.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler middleware.Handler
		input   []byte
		status  uint8
		want    string // a prefix when it ends with "…"
	}{
		{"wrapped rejection", func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) {
			return osprey.Value{}, fmt.Errorf("clip: %w", osprey.Reject("too big"))
		}, nil, abi.StatusRejected, "clip: too big"},
		{"error", func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) {
			return osprey.Value{}, errors.New("boom")
		}, nil, abi.StatusError, "boom"},
		{"panic", func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) {
			panic(fmt.Sprintf("bad %d", 7))
		}, nil, abi.StatusError, "panic: bad 7\n  github.com/osprey-ml/osprey/guest-sdk/go/middleware_test.TestErrors.func3 (middleware/middleware_test.go:…"},
		{"NaN", func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) {
			return osprey.Floats([]float64{1, math.Inf(1)}), nil
		}, nil, abi.StatusError, "middleware returned a []float value with a NaN or infinite float"},
		{"malformed", func(_ *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) { return v, nil },
			[]byte{2, 3, 9}, abi.StatusError, "malformed middleware call: abi: malformed message: unknown op 9"},
		{"program call", func(_ *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) { return v, nil },
			[]byte{1}, abi.StatusError, "malformed middleware call: abi: malformed message: call kind 1, want 2 (middleware)"},
		{"no handler", nil, nil, abi.StatusError, middleware.NoHandler},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			middleware.Handle(tt.handler)
			in := tt.input
			if in == nil {
				in = callBytes(abi.StagePreSet, abi.OpSet, abi.Float(1))
			}
			r, _ := response(t, middleware.Run(in))
			prefix, isPrefix := strings.CutSuffix(tt.want, "…")
			if r.Status != tt.status || (isPrefix && !strings.HasPrefix(r.Message, prefix)) || (!isPrefix && r.Message != tt.want) {
				t.Errorf("status %d, message %q; want %d, %q", r.Status, r.Message, tt.status, tt.want)
			}
		})
	}
}

func TestRunAllocs(t *testing.T) {
	middleware.Handle(clip)
	in := callBytes(abi.StagePreSet, abi.OpSet, abi.Float(25000))
	middleware.Run(in)
	if n := testing.AllocsPerRun(1000, func() { middleware.Run(in) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

func BenchmarkRunClip(b *testing.B) {
	middleware.Handle(clip)
	in := callBytes(abi.StagePreSet, abi.OpSet, abi.Float(25000))
	b.ReportAllocs()
	for b.Loop() {
		middleware.Run(in)
	}
}
