//go:build !wasip1

package sdk_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/abi/abitest"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
	"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

// The ABI's golden vectors (ABI.md §7), run through the SDK's own decoding (lazy rows, the
// Context, get_feature results) and encoding (program and middleware responses).
const vectorsFile = "../../abi/testdata/vectors.json"

// header is a program call's bytes up to its keys: kind 1, fqn "t.f".
var header = []byte{abi.CallProgram, 3, 't', '.', 'f'}

var ts8 = abi.AppendI64(nil, 1700000000123456789)

// programCall splices encoded keys and row into a program call.
func programCall(keys, row []byte) []byte {
	b := append(append([]byte(nil), header...), keys...)
	return append(append(b, ts8...), row...)
}

// rowWith is a Row encoding with one field "v" whose Value encoding is value.
func rowWith(value []byte) []byte { return append([]byte{1, 1, 'v'}, value...) }

func TestVectors(t *testing.T) {
	vs, err := abitest.Load(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[abitest.Kind]int{}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			b, err := v.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if v.Error {
				checkInvalid(t, v, b)
				return
			}
			want, err := abitest.FromMeaning(v.Kind, v.Meaning)
			if err != nil {
				t.Fatal(err)
			}
			seen[v.Kind]++
			checkValid(t, v.Kind, b, want)
		})
	}
	for _, k := range abitest.Kinds {
		if seen[k] == 0 {
			t.Errorf("no valid vector of kind %s ran", k)
		}
	}
}

// okProgram and okMiddleware decode successful responses.
func okProgram(t *testing.T, resp []byte) abi.ProgramResult {
	t.Helper()
	r, d := abi.DecodeResponse(resp)
	if r.Status != abi.StatusOK {
		t.Fatalf("program: status %d: %s", r.Status, r.Message)
	}
	pr := d.ProgramResult()
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	return pr
}

func checkValid(t *testing.T, kind abitest.Kind, b []byte, want any) {
	switch kind {
	case abitest.KindValue:
		// The value as a row field, read back through the lazy Row and returned as the result.
		var got osprey.Value
		program.Handle(func(_ *osprey.Context, row osprey.Row) (program.Result, error) {
			got, _ = row.Value("v")
			return program.Result{Value: got}, nil
		})
		resp := program.Run(programCall([]byte{0}, rowWith(b)))
		if !abitest.Equal(got, want) {
			t.Errorf("Row.Value = %+v, want %+v", got, want)
		}
		if wantResp := append(append([]byte{abi.StatusOK}, b...), 0); !bytes.Equal(resp, wantResp) {
			t.Errorf("program response %x, want %x", resp, wantResp)
		}
		// And through a middleware, passed through unchanged.
		middleware.Handle(func(_ *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) { return v, nil })
		in := append([]byte{abi.CallMiddleware, abi.StagePostGet, abi.OpGet, 0, 0}, ts8...)
		if resp := middleware.Run(append(in, b...)); !bytes.Equal(resp, append([]byte{abi.StatusOK}, b...)) {
			t.Errorf("middleware response %x, want 00%x", resp, b)
		}

	case abitest.KindKeys:
		h := hosttest.Install(t, &hosttest.Host{})
		var got osprey.Keys
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			got = ctx.Keys()
			if _, err := ctx.Get("x.y", nil); err != nil {
				return program.Result{}, err
			}
			return program.Result{Value: osprey.Int(1), Keys: got}, nil
		})
		pr := okProgram(t, program.Run(programCall(b, []byte{0})))
		if !abitest.Equal([]abi.KV(got), want) {
			t.Errorf("Context.Keys = %v, want %v", got, want)
		}
		// get_feature with nil keys passes the call's keys as received.
		if !bytes.Equal(h.Gets[0].RawKeys, b) {
			t.Errorf("get_feature keys %x, want %x", h.Gets[0].RawKeys, b)
		}
		if len(got) > 0 && !bytes.Equal(abi.AppendKeys(nil, pr.Keys), b) {
			t.Errorf("result keys %v, want %x", pr.Keys, b)
		}
		// A send's target keys are passed as the same encoding.
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			return program.Result{}, ctx.Send(osprey.Address{FQN: "x.y", Keys: got}, osprey.Int(1))
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		if !bytes.Equal(h.Sends[0].RawKeys, b) {
			t.Errorf("send keys %x, want %x", h.Sends[0].RawKeys, b)
		}

	case abitest.KindRow:
		wantRow := want.([]abi.Field)
		var names []string
		var values []osprey.Value
		program.Handle(func(_ *osprey.Context, row osprey.Row) (program.Result, error) {
			names = row.Names()
			values = values[:0]
			for _, n := range names {
				v, ok := row.Value(n)
				if !ok {
					t.Errorf("Value(%q) missing", n)
				}
				values = append(values, v)
			}
			return program.Result{}, nil
		})
		okProgram(t, program.Run(programCall([]byte{0}, b)))
		if len(names) != len(wantRow) {
			t.Fatalf("%d fields, want %d", len(names), len(wantRow))
		}
		for i, f := range wantRow {
			if names[i] != f.Name || !abitest.Equal(values[i], f.Value) {
				t.Errorf("field %d = %q %+v, want %q %+v", i, names[i], values[i], f.Name, f.Value)
			}
		}

	case abitest.KindProgramCall:
		w := want.(abi.ProgramCall)
		var got abi.ProgramCall
		program.Handle(func(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
			got = abi.ProgramCall{FQN: ctx.FQN(), Keys: ctx.Keys(), Timestamp: ctx.Timestamp().UnixNano()}
			for _, n := range row.Names() {
				v, _ := row.Value(n)
				got.Row = append(got.Row, abi.Field{Name: n, Value: v})
			}
			return program.Result{}, nil
		})
		okProgram(t, program.Run(b))
		if !abitest.Equal(got, w) {
			t.Errorf("call %+v, want %+v", got, w)
		}

	case abitest.KindMiddlewareCall:
		w := want.(abi.MiddlewareCall)
		var got abi.MiddlewareCall
		middleware.Handle(func(ctx *osprey.Context, c middleware.Call, v osprey.Value) (osprey.Value, error) {
			got = abi.MiddlewareCall{Stage: uint8(c.Stage), Op: uint8(c.Op), FQN: ctx.FQN(), Keys: ctx.Keys(),
				Timestamp: ctx.Timestamp().UnixNano(), Value: v}
			return v, nil
		})
		if r, _ := abi.DecodeResponse(middleware.Run(b)); r.Status != abi.StatusOK {
			t.Fatalf("status %d: %s", r.Status, r.Message)
		}
		if !abitest.Equal(got, w) {
			t.Errorf("call %+v, want %+v", got, w)
		}

	case abitest.KindProgramResult:
		w := want.(abi.ProgramResult)
		res := program.Result{Value: w.Value}
		if w.HasKeys {
			res.Keys = nonNilKeys(w.Keys)
		}
		if w.HasTimestamp {
			res.Timestamp = time.Unix(0, w.Timestamp)
		}
		program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) { return res, nil })
		if resp := program.Run(programCall([]byte{0}, []byte{0})); !bytes.Equal(resp, b) {
			t.Errorf("response %x, want %x", resp, b)
		}

	case abitest.KindValueResult:
		w := want.(abitest.ValueResult)
		middleware.Handle(func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) { return w.Value, nil })
		in := append([]byte{abi.CallMiddleware, abi.StagePreSet, abi.OpSet, 0, 0}, ts8...)
		if resp := middleware.Run(append(in, 0)); !bytes.Equal(resp, b) {
			t.Errorf("response %x, want %x", resp, b)
		}

	case abitest.KindErrorResponse:
		w := want.(abi.Response)
		var resp []byte
		if w.Status == abi.StatusRejected {
			middleware.Handle(func(*osprey.Context, middleware.Call, osprey.Value) (osprey.Value, error) {
				return osprey.Value{}, osprey.Reject("%s", w.Message)
			})
			in := append([]byte{abi.CallMiddleware, abi.StagePreSet, abi.OpSet, 0, 0}, ts8...)
			resp = middleware.Run(append(in, 0))
		} else {
			program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
				return program.Result{}, errors.New(w.Message)
			})
			resp = program.Run(programCall([]byte{0}, []byte{0}))
		}
		if !bytes.Equal(resp, b) {
			t.Errorf("response %x, want %x", resp, b)
		}

	case abitest.KindGetResult:
		w := want.(abi.GetResult)
		hosttest.Install(t, &hosttest.Host{RawGet: func(string, []byte) ([]byte, bool) { return b, false }})
		var got osprey.GetResult
		var err error
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			got, err = ctx.Get("x.y", nil)
			return program.Result{}, nil
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		if err != nil {
			t.Fatal(err)
		}
		g := abi.GetResult{Found: got.Found, Value: got.Value, Fresh: got.Fresh}
		if !got.Timestamp.IsZero() {
			g.Timestamp = got.Timestamp.UnixNano()
		}
		if !abitest.Equal(g, w) {
			t.Errorf("Get = %+v, want %+v", g, w)
		}

	case abitest.KindConfigureCall:
		// Delivered through osprey_configure, read back through the Context of a call.
		w := want.(abi.ConfigureCall)
		osprey.OnConfig(nil)
		if resp := osprey.Configure(b); !bytes.Equal(resp, []byte{abi.StatusOK}) {
			t.Fatalf("configure response %x, want 00", resp)
		}
		cfg := osprey.CurrentConfig()
		if cfg.Len() != len(w.Config) {
			t.Errorf("Len = %d, want %d", cfg.Len(), len(w.Config))
		}
		got := make([]abi.KV, 0, len(w.Config))
		for _, k := range cfg.Keys() {
			v, _ := cfg.Lookup(k)
			got = append(got, abi.KV{Name: k, Value: v})
		}
		if !abitest.Equal(abi.ConfigureCall{Config: got}, w) {
			t.Errorf("config %v, want %v", got, w.Config)
		}
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			for _, kv := range w.Config {
				if v, ok := ctx.Config(kv.Name); !ok || v != kv.Value {
					t.Errorf("Context.Config(%q) = %q, %v; want %q", kv.Name, v, ok, kv.Value)
				}
			}
			if _, ok := ctx.Config("\x00absent"); ok {
				t.Error("Context.Config found an absent key")
			}
			return program.Result{}, nil
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		osprey.Configure([]byte{abi.CallConfigure, 0})

	case abitest.KindStorageValue:
		// Read back through Storage.Get as storage_get's result, and written by Storage.Set
		// as storage_set's val.
		w := want.(abitest.StorageValue)
		h := hosttest.Install(t, &hosttest.Host{RawStorageGet: func(string) ([]byte, bool) { return b, false }})
		var got osprey.Value
		var found bool
		var getErr, setErr error
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			got, found, getErr = ctx.Storage("v").Get()
			setErr = ctx.Storage("v").Set(w.Value)
			return program.Result{}, nil
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		if getErr != nil || setErr != nil {
			t.Fatalf("Get: %v; Set: %v", getErr, setErr)
		}
		if !abitest.Equal(abitest.StorageValue{Value: got}, w) || found != (w.Value.Tag != abi.TagNull) {
			t.Errorf("Storage.Get = %+v, %v; want %+v", got, found, w.Value)
		}
		if set := h.StorageCalls[len(h.StorageCalls)-1]; set.Op != "set" || !bytes.Equal(set.Raw, b) {
			t.Errorf("Storage.Set sent %x, want %x", set.Raw, b)
		}

	case abitest.KindMessageCall:
		// Delivered to the message handler: the address and time in the Context, the rest in
		// the Message.
		w := want.(abi.MessageCall)
		var got abi.MessageCall
		program.HandleMessage(func(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
			got = abi.MessageCall{FQN: ctx.FQN(), Keys: ctx.Keys(), Timestamp: ctx.Timestamp().UnixNano(),
				FromFQN: msg.From.FQN, FromKeys: msg.From.Keys, Hops: uint32(msg.Hops), Attempt: uint32(msg.Attempt), Message: msg.Value}
			return program.Result{Value: msg.Value}, nil
		})
		defer program.HandleMessage(nil)
		pr := okProgram(t, program.Run(b))
		if !abitest.Equal(got, w) {
			t.Errorf("message call %+v, want %+v", got, w)
		}
		if !abitest.Equal(pr.Value, w.Message) {
			t.Errorf("result %+v, want the message %+v", pr.Value, w.Message)
		}

	case abitest.KindMessageValue:
		// Written by Send and SendAfter as their msg.
		w := want.(abitest.MessageValue)
		h := hosttest.Install(t, &hosttest.Host{})
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			to := osprey.Address{FQN: "x.y", Keys: osprey.K("id", "1")}
			if err := ctx.Send(to, w.Value); err != nil {
				return program.Result{}, err
			}
			return program.Result{}, ctx.SendAfter(time.Minute, "t", to, w.Value)
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		for _, c := range h.Sends {
			if !bytes.Equal(c.RawValue, b) {
				t.Errorf("%s sent %x, want %x", c.Op, c.RawValue, b)
			}
		}

	case abitest.KindEgressRow:
		// Written by Egress as its row.
		w := want.(abitest.EgressRow)
		h := hosttest.Install(t, &hosttest.Host{})
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			return program.Result{}, ctx.Egress("e", w...)
		})
		okProgram(t, program.Run(programCall([]byte{0}, []byte{0})))
		if !bytes.Equal(h.Sends[0].RawRow, b) {
			t.Errorf("Egress sent %x, want %x", h.Sends[0].RawRow, b)
		}
	}
}

func nonNilKeys(k []abi.KV) osprey.Keys {
	if k == nil {
		return osprey.Keys{}
	}
	return k
}

// checkInvalid checks that the SDK rejects an invalid message it would decode: calls, and
// values, keys and rows spliced into calls, get_feature results and storage values. (The
// SDK only encodes responses and the arguments of send and egress, so invalid vectors of
// those do not apply to it.)
func checkInvalid(t *testing.T, v abitest.Vector, b []byte) {
	var resp []byte
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) { return program.Result{}, nil })
	program.HandleMessage(func(*osprey.Context, osprey.Message) (program.Result, error) { return program.Result{}, nil })
	defer program.HandleMessage(nil)
	middleware.Handle(func(_ *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) { return v, nil })
	switch v.Kind {
	case abitest.KindProgramCall, abitest.KindMessageCall:
		resp = program.Run(b)
	case abitest.KindMiddlewareCall:
		resp = middleware.Run(b)
	case abitest.KindValue:
		// At the end of the call, so that a truncation or a trailing byte stays one.
		resp = program.Run(programCall([]byte{0}, rowWith(b)))
		if r, _ := abi.DecodeResponse(resp); r.Status != abi.StatusError {
			t.Errorf("as a row value: status %d, want an error", r.Status)
		}
		in := append([]byte{abi.CallMiddleware, abi.StagePreSet, abi.OpSet, 0, 0}, ts8...)
		resp = middleware.Run(append(in, b...))
	case abitest.KindKeys:
		resp = program.Run(programCall(b, []byte{0}))
	case abitest.KindRow:
		resp = program.Run(programCall([]byte{0}, b))
	case abitest.KindConfigureCall:
		osprey.Configure([]byte{abi.CallConfigure, 1, 1, 'k', 1, 'v'})
		resp = append([]byte(nil), osprey.Configure(b)...) // the next Configure reuses its memory
		if v, ok := osprey.CurrentConfig().Lookup("k"); !ok || v != "v" {
			t.Errorf("a refused configuration replaced the current one")
		}
		osprey.Configure([]byte{abi.CallConfigure, 0})
	case abitest.KindStorageValue:
		hosttest.Install(t, &hosttest.Host{RawStorageGet: func(string) ([]byte, bool) { return b, false }})
		var err error
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			_, _, err = ctx.Storage("v").Get()
			return program.Result{}, nil
		})
		program.Run(programCall([]byte{0}, []byte{0}))
		if err == nil {
			t.Errorf("Storage.Get accepted %s (%s)", hex.EncodeToString(b), v.Reason)
		}
		return
	case abitest.KindGetResult:
		hosttest.Install(t, &hosttest.Host{RawGet: func(string, []byte) ([]byte, bool) { return b, false }})
		var err error
		program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
			_, err = ctx.Get("x.y", nil)
			return program.Result{}, nil
		})
		program.Run(programCall([]byte{0}, []byte{0}))
		if err == nil {
			t.Errorf("Get accepted %s (%s)", hex.EncodeToString(b), v.Reason)
		}
		return
	default:
		return
	}
	r, _ := abi.DecodeResponse(resp)
	if r.Status != abi.StatusError {
		t.Errorf("status %d for %s (%s), want an error", r.Status, v.Hex, v.Reason)
	} else if !bytes.Contains([]byte(r.Message), []byte("malformed")) {
		t.Errorf("message %q does not say the call is malformed", r.Message)
	}
}
