//go:build !wasip1

package program_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func messageCall(m abi.Value) []byte {
	return abi.AppendMessageCall(nil, &abi.MessageCall{FQN: "fraud.alerts", Keys: []abi.KV{{Name: "card_id", Value: "c1"}},
		Timestamp: 1700000000123456789, FromFQN: "fraud.amount", FromKeys: []abi.KV{{Name: "card_id", Value: "c1"}, {Name: "m", Value: "é"}},
		Hops: 2, Attempt: 3, Message: m})
}

// A message call reaches the message handler — the receiving address and the event time in
// the Context, the sender, hops, attempt and value in the Message — and its Result is
// encoded like a program's; a row call still reaches the row handler.
func TestHandleMessage(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{})
	var got osprey.Message
	var keys osprey.Keys
	var fqn string
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
		return program.Result{Value: osprey.String("row")}, nil
	})
	program.HandleMessage(func(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
		got, keys, fqn = msg, ctx.Keys(), ctx.FQN()
		if want := time.Unix(0, 1700000000123456789).UTC(); ctx.Timestamp() != want {
			t.Errorf("Timestamp = %v, want %v", ctx.Timestamp(), want)
		}
		// The Context works as in any program call: reads with the call's keys, and sends.
		if _, err := ctx.Get("fraud.limit", nil); err != nil {
			return program.Result{}, err
		}
		if err := ctx.Send(msg.From, osprey.Int(msg.Value.I+1)); err != nil {
			return program.Result{}, err
		}
		return program.Result{Value: osprey.Float(float64(msg.Value.I) / 100)}, nil
	})
	defer program.HandleMessage(nil)
	r, pr := response(t, program.Run(messageCall(abi.Int(12550))))
	if r.Status != abi.StatusOK || pr.Value.Tag != abi.TagFloat || pr.Value.F != 125.5 || pr.HasKeys || pr.HasTimestamp {
		t.Fatalf("response %+v %+v", r, pr)
	}
	want := osprey.Message{From: osprey.Address{FQN: "fraud.amount", Keys: osprey.K("card_id", "c1", "m", "é")}, Value: osprey.Int(12550), Hops: 2, Attempt: 3}
	if got.From.String() != want.From.String() || !sameValue(got.Value, want.Value) || got.Hops != 2 || got.Attempt != 3 {
		t.Errorf("message %+v, want %+v", got, want)
	}
	if fqn != "fraud.alerts" || len(keys) != 1 || keys[0] != (abi.KV{Name: "card_id", Value: "c1"}) {
		t.Errorf("FQN %q, Keys %v; want the receiving address", fqn, keys)
	}
	if len(h.Gets) != 1 || string(h.Gets[0].RawKeys) != string(abi.AppendKeys(nil, keys)) {
		t.Errorf("get_feature with the call's keys: %+v", h.Gets)
	}
	if len(h.Sends) != 1 || h.Sends[0].FQN != "fraud.amount" || !sameValue(h.Sends[0].Value, abi.Int(12551)) {
		t.Errorf("reply: %+v", h.Sends)
	}
	// A row call after a message call: the row handler, and an empty row for the message.
	r, pr = response(t, program.Run(callBytes(nil, tenFields())))
	if r.Status != abi.StatusOK || pr.Value.S != "row" {
		t.Fatalf("row call after a message: %+v %+v", r, pr)
	}
	program.HandleMessage(func(_ *osprey.Context, msg osprey.Message) (program.Result, error) {
		return program.Result{Value: msg.Value}, nil
	})
	for _, v := range []abi.Value{abi.String("x"), {Tag: abi.TagStringList, Strs: []string{"a", "b"}}, abi.Timestamp(-1)} {
		if r, pr := response(t, program.Run(messageCall(v))); r.Status != abi.StatusOK || !sameValue(pr.Value, v) {
			t.Errorf("echo %+v: %+v %+v", v, r, pr)
		}
	}
}

func sameValue(a, b abi.Value) bool {
	return string(abi.AppendValue(nil, a)) == string(abi.AppendValue(nil, b))
}

func TestHandleMessageErrors(t *testing.T) {
	program.Handle(fraudAmount)
	// No message handler: the call fails saying so, and rows are still served.
	program.HandleMessage(nil)
	if r, _ := response(t, program.Run(messageCall(abi.Int(1)))); r.Status != abi.StatusError || r.Message != program.NoMessageHandler {
		t.Errorf("no message handler: %+v", r)
	}
	if r, _ := response(t, program.Run(callBytes(nil, tenFields()))); r.Status != abi.StatusOK {
		t.Errorf("a row without a message handler: %+v", r)
	}
	program.HandleMessage(func(_ *osprey.Context, msg osprey.Message) (program.Result, error) {
		switch msg.Value.I {
		case 1:
			return program.Result{}, errors.New("refused")
		case 2:
			panic("message boom")
		case 3:
			return program.Result{Value: osprey.Value{Tag: abi.TagString, S: "\xff"}}, nil
		}
		return program.Result{}, nil
	})
	defer program.HandleMessage(nil)
	nullCall := messageCall(abi.Int(0))
	nullCall = append(nullCall[:len(nullCall)-9], byte(abi.TagNull))
	for _, tt := range []struct {
		name string
		in   []byte
		want string
	}{
		{"error", messageCall(abi.Int(1)), "refused"},
		{"panic", messageCall(abi.Int(2)), "panic: message boom"},
		{"bad value", messageCall(abi.Int(3)), "program returned a string value that is not valid UTF-8"},
		{"null message", nullCall, "malformed message call: abi: malformed message: the message at byte"},
		{"truncated", messageCall(abi.Int(1))[:20], "malformed message call: abi: malformed message: length 7 at byte 15 exceeds the 4 bytes left"},
	} {
		r, _ := response(t, program.Run(tt.in))
		if r.Status != abi.StatusError || !strings.HasPrefix(r.Message, tt.want) {
			t.Errorf("%s: %+v, want an error starting %q", tt.name, r, tt.want)
		}
	}
	// A null Result writes nothing, as for a row.
	if r, pr := response(t, program.Run(messageCall(abi.Int(4)))); r.Status != abi.StatusOK || pr.Value.Tag != abi.TagNull {
		t.Errorf("null result: %+v %+v", r, pr)
	}
}
