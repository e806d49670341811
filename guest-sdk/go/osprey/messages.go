package osprey

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Messages (ABI 1.2, abi/ABI.md §4.6), in the manner of Flink Stateful Functions: a program
// sends a message to another feature's program at an address with Context.Send, later with
// Context.SendAfter (which Context.Cancel revokes), and a row to an egress — a destination
// outside Osprey, such as a webhook — with Context.Egress. A feature whose program receives
// messages declares their type in its manifest, and its program registers a handler for
// them with program.HandleMessage:
//
//	builder:
//	  module: alerts.wasm
//	  messages: float   # spec.builder.messages: the type of the messages it receives
//
// What a call sends is the invocation's until the program returns: the host commits it
// together with the program's value and storage, or not at all when the program fails.
// Messages are delivered at least once (a receiver may see one again, with a higher
// Message.Attempt), in the order each sender sent them.

// Address names a program invocation: a feature (its FQN, "namespace.name", or a name in
// the engine's default namespace) and an entity's keys, which must name every key of the
// feature.
type Address struct {
	FQN  string
	Keys Keys
}

// String returns the address as fqn{name=value,…}, the keys in their order.
func (a Address) String() string {
	b := append([]byte(a.FQN), '{')
	for i, k := range a.Keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(b, k.Name...), '='), k.Value...)
	}
	return string(append(b, '}'))
}

// Message is a message a program receives (program.HandleMessage).
type Message struct {
	// From is the sender's address: the feature whose program sent it, and the entity that
	// program ran for.
	From Address
	// Value is the message, of the type the receiving feature declares in
	// spec.builder.messages (the host converts what was sent to it).
	Value Value
	// Hops is the message's place in its chain of sends: 1 when its sender ran for a row or
	// a read, n+1 when the sender ran for a message of n hops. Sends beyond the host's hop
	// limit are refused, so a loop of messages ends.
	Hops int
	// Attempt counts this delivery, from 1: a message is delivered at least once, and again
	// (with a higher Attempt) when an earlier delivery failed or was not acknowledged.
	Attempt int
}

// Field is one field of a row a program builds for Context.Egress: a name and a Value.
type Field = abi.Field

// F returns a Field: F("card_id", osprey.String(card)).
func F(name string, v Value) Field { return Field{Name: name, Value: v} }

// sender returns the call, or an error when the Context cannot send.
func (c *Context) sender() (*core.Call, error) {
	if c == nil {
		return nil, errors.New("no Context")
	}
	cc := c.call()
	if !cc.Active() {
		return nil, ErrCallEnded
	}
	if cc.Stage() != 0 {
		return nil, errors.New("messages are a program's: a middleware sends none")
	}
	return cc, nil
}

// encodeSend encodes a send's keys and message into the call's scratch buffers, or says
// why they cannot be sent.
func encodeSend(cc *core.Call, to Address, msg *Value) (keys, val []byte, problem string) {
	if p := core.CheckKeys(to.Keys); p != "" {
		return nil, nil, "keys: " + p
	}
	if msg.Tag == abi.TagWindow {
		return nil, nil, "a window cannot be sent (a message is a value of a primitive kind)"
	}
	enc, p := core.AppendValue(cc.Scratch().Val[:0], msg)
	if p != "" {
		return nil, nil, p
	}
	cc.Scratch().Val = enc
	cc.Scratch().Keys = abi.AppendKeys(cc.Scratch().Keys[:0], to.Keys)
	if n := len(enc) + len(cc.Scratch().Keys); n > abi.MaxMessageSize {
		return nil, nil, "the message and keys are " + strconv.Itoa(n) + " bytes encoded, more than the ABI's limit of " + strconv.Itoa(abi.MaxMessageSize)
	}
	return cc.Scratch().Keys, enc, ""
}

// Send sends msg to the program of the feature at to (to.Keys its entity). The target must
// declare spec.builder.messages; the host converts msg to that type, as it converts a
// feature's value. The message is sent when the call's value and storage are committed,
// and delivered to the target's program handler for messages (program.HandleMessage) at
// least once, after the messages this address sent before it.
//
// The error says why the host refused it — a target that is not applied or receives no
// messages, keys that do not name its entity, a message that does not convert, a Null
// message, the hop limit of a chain of sends — and the call goes on: returning the error
// fails it.
func (c *Context) Send(to Address, msg Value) error {
	fail := func(m string) error { return errors.New("send to " + to.FQN + ": " + m) }
	cc, err := c.sender()
	if err != nil {
		return fail(err.Error())
	}
	keys, val, problem := encodeSend(cc, to, &msg)
	if problem != "" {
		return fail(problem)
	}
	if m := status(cc, core.Send(to.FQN, keys, val)); m != "" {
		return fail(m)
	}
	return nil
}

// SendAfter sends msg to the program at to once delay has passed (a delay of 0 sends it
// as Send does), under token: a later SendAfter of the same token from the same address —
// in this call or a later one — replaces it, and Cancel(token) revokes it. The message
// arrives at or after its time, with that time as its Context.Timestamp; once cancelled it
// never arrives. The token names the timer within the sending address: at most 256 bytes
// of UTF-8, not empty. The host bounds the delay (a year); a negative delay is an error.
func (c *Context) SendAfter(delay time.Duration, token string, to Address, msg Value) error {
	fail := func(m string) error {
		return errors.New("send_after " + strconv.Quote(token) + " to " + to.FQN + ": " + m)
	}
	cc, err := c.sender()
	if err != nil {
		return fail(err.Error())
	}
	if delay < 0 {
		return fail("negative delay " + delay.String())
	}
	keys, val, problem := encodeSend(cc, to, &msg)
	if problem != "" {
		return fail(problem)
	}
	if m := status(cc, core.SendAfter(int64(delay), token, to.FQN, keys, val)); m != "" {
		return fail(m)
	}
	return nil
}

// Cancel revokes the delayed message this address sent under token (SendAfter), in this
// call or an earlier one: once the call is committed it never arrives. A token with nothing
// pending is no error; a message that already arrived is not undone.
func (c *Context) Cancel(token string) error {
	fail := func(m string) error { return errors.New("cancel " + strconv.Quote(token) + ": " + m) }
	cc, err := c.sender()
	if err != nil {
		return fail(err.Error())
	}
	if m := status(cc, core.Cancel(token)); m != "" {
		return fail(m)
	}
	return nil
}

// Egress sends a row built of fields to the egress name (an Egress object applied to the
// registry: a webhook, a stream), with the same guarantees as Send: committed with the
// call, delivered at least once, in order:
//
//	err := ctx.Egress("alerts",
//		osprey.F("card_id", osprey.String(card)),
//		osprey.F("score", osprey.Float(score)))
//
// Field names are unique; a value is Null or of a primitive kind (not a window).
func (c *Context) Egress(name string, fields ...Field) error {
	fail := func(m string) error { return errors.New("egress " + strconv.Quote(name) + ": " + m) }
	cc, err := c.sender()
	if err != nil {
		return fail(err.Error())
	}
	b := abi.AppendUvarint(cc.Scratch().Row[:0], uint64(len(fields)))
	for i := range fields {
		f := &fields[i]
		if !utf8.ValidString(f.Name) {
			return fail("field " + strconv.Quote(f.Name) + ": the name is not valid UTF-8")
		}
		for _, g := range fields[:i] {
			if g.Name == f.Name {
				return fail("duplicate field " + strconv.Quote(f.Name))
			}
		}
		if f.Value.Tag == abi.TagWindow {
			return fail("field " + strconv.Quote(f.Name) + ": a window cannot be sent (a row holds null or primitive kinds)")
		}
		b = abi.AppendString(b, f.Name)
		var problem string
		if b, problem = core.AppendValue(b, &f.Value); problem != "" {
			return fail("field " + strconv.Quote(f.Name) + ": " + problem)
		}
	}
	cc.Scratch().Row = b
	if len(b) > abi.MaxMessageSize {
		return fail("the row is " + strconv.Itoa(len(b)) + " bytes encoded, more than the ABI's limit of " + strconv.Itoa(abi.MaxMessageSize))
	}
	if m := status(cc, core.Egress(name, b)); m != "" {
		return fail(m)
	}
	return nil
}

// status reads the result of a host call that returns 0 or minus the length of a held
// error message (storage_set, storage_clear, send, …): "" on success, or the message, or
// how the host broke the convention.
func status(cc *core.Call, n int32) string {
	if n == 0 {
		return ""
	}
	if n > 0 {
		return "the host returned " + strconv.Itoa(int(n)) + ", want 0 or an error"
	}
	out := resultSlot(cc)
	b, _, problem := fetch(cc, n, out)
	if problem != "" {
		return problem
	}
	return string(b)
}
