//go:build !wasip1

package osprey

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
)

// What Send, SendAfter, Cancel and Egress pass to the host: the target, its keys and the
// message encoded as the ABI says, the delay and token, the egress row.
func TestSendToHost(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{})
	ctx, _, end := decode(t, []abi.KV{{Name: "card_id", Value: "c1"}}, nil)
	defer end()
	to := Address{FQN: "fraud.alerts", Keys: K("card_id", "c1", "region", "é")}
	if err := ctx.Send(to, Float(125.5)); err != nil {
		t.Fatal(err)
	}
	if err := ctx.SendAfter(90*time.Second, "remind", to, Strings([]string{"a", ""})); err != nil {
		t.Fatal(err)
	}
	if err := ctx.SendAfter(0, "now", Address{FQN: "t.nokeys"}, Bool(true)); err != nil {
		t.Fatal(err)
	}
	if err := ctx.Cancel("remind"); err != nil {
		t.Fatal(err)
	}
	if err := ctx.Egress("alerts", F("card_id", String("c1")), F("score", Float(0.5)), F("note", Null())); err != nil {
		t.Fatal(err)
	}
	if err := ctx.Egress("empty"); err != nil {
		t.Fatal(err)
	}
	if len(h.Sends) != 6 {
		t.Fatalf("%d calls reached the host, want 6: %+v", len(h.Sends), h.Sends)
	}
	s := h.Sends[0]
	if s.Op != "send" || s.FQN != "fraud.alerts" || string(s.RawKeys) != string(abi.AppendKeys(nil, to.Keys)) ||
		string(s.RawValue) != string(abi.AppendValue(nil, abi.Float(125.5))) {
		t.Errorf("send: %+v", s)
	}
	s = h.Sends[1]
	if s.Op != "send_after" || s.Delay != int64(90*time.Second) || s.Token != "remind" || s.FQN != "fraud.alerts" ||
		!sameValue(s.Value, Strings([]string{"a", ""})) || string(s.RawKeys) != string(abi.AppendKeys(nil, to.Keys)) {
		t.Errorf("send_after: %+v", s)
	}
	if s = h.Sends[2]; s.Delay != 0 || string(s.RawKeys) != "\x00" {
		t.Errorf("send_after without keys: %+v (want the empty Keys encoding)", s)
	}
	if s = h.Sends[3]; s.Op != "cancel" || s.Token != "remind" {
		t.Errorf("cancel: %+v", s)
	}
	wantRow := abi.AppendRow(nil, []abi.Field{{Name: "card_id", Value: abi.String("c1")}, {Name: "score", Value: abi.Float(0.5)}, {Name: "note", Value: abi.Null()}})
	if s = h.Sends[4]; s.Op != "egress" || s.Egress != "alerts" || string(s.RawRow) != string(wantRow) {
		t.Errorf("egress: %+v", s)
	}
	if s = h.Sends[5]; s.Egress != "empty" || string(s.RawRow) != "\x00" {
		t.Errorf("empty egress: %+v", s)
	}
	if got := to.String(); got != "fraud.alerts{card_id=c1,region=é}" {
		t.Errorf("Address.String = %q", got)
	}
}

// The host's refusals reach the caller with their message, prefixed by what was sent; the
// call goes on (a later send works).
func TestSendErrors(t *testing.T) {
	long := strings.Repeat("x", 300) // longer than the first result buffer: fetched with result
	h := hosttest.Install(t, &hosttest.Host{SendError: func(c hosttest.SendCall) error {
		switch {
		case c.FQN == "t.nomsg":
			return errors.New("invalid message: target t.nomsg receives no messages (it declares no spec.builder.messages)")
		case c.FQN == "t.loop":
			return errors.New("hop limit reached: this send would be hop 17 of its chain (at most 16)")
		case c.Op == "send" && c.Value.Tag == abi.TagNull:
			return errors.New("invalid message: a message is never null")
		case c.Egress == "nowhere":
			return errors.New("invalid message: egress \"nowhere\": " + long)
		case c.Token == "" && (c.Op == "send_after" || c.Op == "cancel"):
			return errors.New("invalid message: a delayed message needs a token")
		}
		return nil
	}})
	ctx, _, end := decode(t, nil, nil)
	to := Address{FQN: "t.f", Keys: K("id", "a")}
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"no messages", func() error { return ctx.Send(Address{FQN: "t.nomsg"}, Int(1)) },
			"send to t.nomsg: invalid message: target t.nomsg receives no messages (it declares no spec.builder.messages)"},
		{"hop limit", func() error { return ctx.Send(Address{FQN: "t.loop"}, Int(1)) },
			"send to t.loop: hop limit reached: this send would be hop 17 of its chain (at most 16)"},
		{"null", func() error { return ctx.Send(to, Null()) }, "send to t.f: invalid message: a message is never null"},
		{"no token", func() error { return ctx.SendAfter(time.Second, "", to, Int(1)) },
			`send_after "" to t.f: invalid message: a delayed message needs a token`},
		{"cancel no token", func() error { return ctx.Cancel("") }, `cancel "": invalid message: a delayed message needs a token`},
		{"unknown egress", func() error { return ctx.Egress("nowhere", F("a", Int(1))) }, `egress "nowhere": invalid message: egress "nowhere": ` + long},
		// Refused by the SDK before the host (which would fail the call as a protocol error).
		{"window", func() error { return ctx.Send(to, Value{Tag: abi.TagWindow}) },
			"send to t.f: a window cannot be sent (a message is a value of a primitive kind)"},
		{"NaN", func() error { return ctx.Send(to, Float(math.NaN())) }, "send to t.f: a float value with a NaN or infinite float"},
		{"bad keys", func() error { return ctx.Send(Address{FQN: "t.f", Keys: K("id", "a", "id", "b")}, Int(1)) },
			`send to t.f: keys: duplicate key "id"`},
		{"negative delay", func() error { return ctx.SendAfter(-time.Second, "t", to, Int(1)) }, `send_after "t" to t.f: negative delay -1s`},
		{"egress window", func() error { return ctx.Egress("e", F("w", Value{Tag: abi.TagWindow})) },
			`egress "e": field "w": a window cannot be sent (a row holds null or primitive kinds)`},
		{"egress duplicate", func() error { return ctx.Egress("e", F("a", Int(1)), F("a", Int(2))) }, `egress "e": duplicate field "a"`},
		{"egress bad name", func() error { return ctx.Egress("e", F("\xff", Int(1))) }, `egress "e": field "\xff": the name is not valid UTF-8`},
		{"egress bad value", func() error { return ctx.Egress("e", F("s", String("\xff"))) },
			`egress "e": field "s": a string value that is not valid UTF-8`},
	}
	for _, tt := range tests {
		if err := tt.do(); err == nil || err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, c := range h.Sends {
		if c.FQN == "t.f" && c.Op == "send" && c.Value.Tag != abi.TagNull {
			t.Errorf("a message the SDK refuses reached the host: %+v", c)
		}
		if c.Egress == "e" {
			t.Errorf("a row the SDK refuses reached the host: %+v", c)
		}
	}
	// After refusals, sending works.
	if err := ctx.Send(to, Int(2)); err != nil {
		t.Errorf("send after refusals: %v", err)
	}
	end()
	if err := ctx.Send(to, Int(1)); !errors.Is(err, ErrCallEnded) && (err == nil || !strings.Contains(err.Error(), ErrCallEnded.Error())) {
		t.Errorf("Send after the call: %v", err)
	}
	if err := ctx.Cancel("x"); err == nil || !strings.Contains(err.Error(), ErrCallEnded.Error()) {
		t.Errorf("Cancel after the call: %v", err)
	}
}

func TestSendInMiddleware(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{})
	c := new(core.Call)
	in := abi.AppendMiddlewareCall(nil, &abi.MiddlewareCall{Stage: abi.StagePostSet, Op: abi.OpSet, FQN: "t.f", Value: abi.Int(1)})
	if _, err := c.DecodeMiddleware(in); err != nil {
		t.Fatal(err)
	}
	defer c.End()
	ctx := (*Context)(c)
	for name, err := range map[string]error{
		"send":       ctx.Send(Address{FQN: "t.g"}, Int(1)),
		"send_after": ctx.SendAfter(time.Second, "t", Address{FQN: "t.g"}, Int(1)),
		"cancel":     ctx.Cancel("t"),
		"egress":     ctx.Egress("e"),
	} {
		if err == nil || !strings.Contains(err.Error(), "messages are a program's") {
			t.Errorf("%s in a middleware: %v", name, err)
		}
	}
	if len(h.Sends) != 0 {
		t.Errorf("a middleware reached the host's messages: %+v", h.Sends)
	}
}

func TestSendNoHost(t *testing.T) {
	ctx, _, end := decode(t, nil, nil)
	defer end()
	if err := ctx.Send(Address{FQN: "t.g"}, Int(1)); err == nil || !strings.Contains(err.Error(), "no Osprey host") {
		t.Errorf("Send without a host: %v", err)
	}
	if err := ctx.Egress("e", F("a", Int(1))); err == nil || !strings.Contains(err.Error(), "no Osprey host") {
		t.Errorf("Egress without a host: %v", err)
	}
}
