// Package core holds the Go guest SDK's machinery shared by the osprey, program and
// middleware packages: the lazy decoding of calls, the host bridge (ABI §3) and the
// formatting of values without fmt. Its types appear in the public packages as defined
// types (osprey.Context is a core.Call, osprey.Row a core.RowView), which lets program and
// middleware build them without exporting constructors.
package core

import (
	"strconv"

	"github.com/osprey-ml/osprey/abi"
)

// Call is the state of one entry-point call, reused from call to call: the decoded header,
// the Keys and Row indexes over the input, and scratch buffers for host calls.
//
// Its fields are unexported because osprey.Context, a defined type over Call, must not
// expose them.
type Call struct {
	stage, op uint8 // middleware calls
	ts        int64

	dec      abi.Decoder
	fqn      string // reused while the FQN stays the same
	keys     Index
	keysRaw  []byte   // the Keys encoding, passed as is to get_feature for "the call's keys"
	prevKeys []abi.KV // the strings of the last decoded keys, reused when equal
	row      Index
	active   bool

	scratch Scratch
}

// Scratch holds buffers reused by the calls to the host.
type Scratch struct {
	Keys []byte // encoded keys for get_feature
	Out  []byte // the result slot of get_feature, storage_get and result
	Log  []byte // encoded log attributes
	Val  []byte // the encoded value of storage_set, and the message of send and send_after
	Row  []byte // the encoded row of egress
}

// Scratch returns the call's reusable buffers.
func (c *Call) Scratch() *Scratch { return &c.scratch }

// Stage returns a middleware call's stage.
func (c *Call) Stage() uint8 { return c.stage }

// Op returns a middleware call's operation.
func (c *Call) Op() uint8 { return c.op }

// Timestamp returns the call's timestamp, Unix nanoseconds.
func (c *Call) Timestamp() int64 { return c.ts }

// DecodeProgram decodes a program call (ABI §4.1) from in, which must stay unchanged until
// End. The row is indexed, not decoded.
func (c *Call) DecodeProgram(in []byte) error {
	if c.fastProgram(in) {
		c.active = true
		return nil
	}
	return c.slowProgram(in)
}

// slowProgram decodes a program call with abi.Decoder, which explains what is wrong.
func (c *Call) slowProgram(in []byte) error {
	c.begin(in)
	d := &c.dec
	if k := d.U8(); d.Err() == nil && k != abi.CallProgram {
		return malformed("call kind " + strconv.Itoa(int(k)) + ", want 1 (program)")
	}
	if err := c.header(in); err != nil {
		return err
	}
	if err := c.row.parse(d, in, false); err != nil {
		return err
	}
	return d.Done()
}

// DecodeMessage decodes a message call (ABI §4.6, ABI 1.2) from in, which must stay
// unchanged until End: its receiving address and timestamp into the call (whose row is
// empty), and its sender, hops, attempt and message into m.
func (c *Call) DecodeMessage(in []byte, m *abi.MessageCall) error {
	c.begin(in)
	d := &c.dec
	if k := d.U8(); d.Err() == nil && k != abi.CallMessage {
		return malformed("call kind " + strconv.Itoa(int(k)) + ", want 4 (message)")
	}
	if err := c.header(in); err != nil {
		return err
	}
	d.MessageBody(m)
	return d.Done()
}

// DecodeMiddleware decodes a middleware call (ABI §4.2) from in and returns its value. (The
// value is returned rather than kept: storing a Value, a large struct with pointers, in
// the heap costs hundreds of nanoseconds in a WebAssembly guest.)
func (c *Call) DecodeMiddleware(in []byte) (abi.Value, error) {
	c.begin(in)
	if v, ok := c.fastMiddleware(in); ok {
		return v, nil
	}
	return c.slowMiddleware(in)
}

// slowMiddleware decodes a middleware call with abi.Decoder, which explains what is wrong.
func (c *Call) slowMiddleware(in []byte) (abi.Value, error) {
	c.begin(in)
	d := &c.dec
	if k := d.U8(); d.Err() == nil && k != abi.CallMiddleware {
		return abi.Value{}, malformed("call kind " + strconv.Itoa(int(k)) + ", want 2 (middleware)")
	}
	c.stage, c.op = d.U8(), d.U8()
	if d.Err() == nil && (c.stage < abi.StagePreGet || c.stage > abi.StagePostSet) {
		return abi.Value{}, malformed("unknown stage " + strconv.Itoa(int(c.stage)))
	}
	if d.Err() == nil && (c.op < abi.OpGet || c.op > abi.OpUpdate) {
		return abi.Value{}, malformed("unknown op " + strconv.Itoa(int(c.op)))
	}
	if err := c.header(in); err != nil {
		return abi.Value{}, err
	}
	v := d.Value()
	return v, d.Done()
}

func (c *Call) begin(in []byte) {
	c.dec.Reset(in)
	c.stage, c.op, c.ts = 0, 0, 0
	c.keysRaw = nil
	c.row.parse0(in)
	c.keys.parse0(in)
	c.active = true
}

// header decodes fqn, keys and timestamp.
func (c *Call) header(in []byte) error {
	d := &c.dec
	if fqn := d.StringBytes(); d.Err() == nil && view(fqn) != c.fqn {
		c.fqn = string(fqn)
	}
	if d.Err() != nil {
		return d.Err()
	}
	k0 := d.Offset()
	if err := c.keys.parse(d, in, true); err != nil {
		return err
	}
	c.keysRaw = in[k0:d.Offset():d.Offset()]
	c.ts = d.I64()
	return d.Err()
}

// End marks the call finished: Row views and the Context stop working.
func (c *Call) End() {
	c.active = false
	c.row.gen++
	c.keys.gen++
}

// Active reports whether the call is in progress.
func (c *Call) Active() bool { return c.active }

// FQN returns the feature's fully qualified name.
func (c *Call) FQN() string { return c.fqn }

// KeysRaw returns the call's Keys encoding (valid during the call).
func (c *Call) KeysRaw() []byte { return c.keysRaw }

// Keys decodes the call's keys into a new slice, reusing the strings of the previous call's
// keys where they are equal.
func (c *Call) Keys() []abi.KV {
	n := c.keys.Len()
	if n == 0 {
		return nil
	}
	keys := make([]abi.KV, n)
	for i := range keys {
		name, val := c.keys.NameView(i), view(c.keys.Val(i))
		if i < len(c.prevKeys) && c.prevKeys[i].Name == name {
			keys[i].Name = c.prevKeys[i].Name
		} else {
			keys[i].Name = string(name)
		}
		if i < len(c.prevKeys) && c.prevKeys[i].Value == val {
			keys[i].Value = c.prevKeys[i].Value
		} else {
			keys[i].Value = string(val)
		}
	}
	c.prevKeys = keys
	return keys
}

// Row returns a view of the call's row, valid until End.
func (c *Call) Row() RowView { return RowView{idx: &c.row, gen: c.row.gen} }
