package abi

// Messages (ABI 1.2, ABI.md §4.6). A program sends a message to another feature's program
// with the imports send and send_after, revokes a delayed one with cancel, and sends a row to
// an egress with egress; the host delivers a message to its target as a message call (kind
// CallMessage) of osprey_program.
//
// send's and send_after's msg is a message value (Decoder.MessageValue), encoded as a storage
// value (§4.5): a Value of a primitive kind. Null is a valid encoding there, which the host refuses as an error returned
// to the guest (a message carries a value). egress's row is an egress row (Decoder.EgressRow):
// a Row whose values are storage values. A window in either is a protocol error.

// MessageCall is the input of osprey_program for a message (ABI.md §4.6): the address it is
// delivered to, its event time, its sender and the message.
type MessageCall struct {
	// FQN and Keys are the receiving address: the feature and its entity.
	FQN  string
	Keys []KV
	// Timestamp is the message's event time, Unix nanoseconds: the sending invocation's
	// timestamp, or a delayed message's due time.
	Timestamp int64
	// FromFQN and FromKeys are the sender's address.
	FromFQN  string
	FromKeys []KV
	// Hops is the message's place in its chain of sends: 1 for a send of an invocation that
	// no message started. Attempt counts its deliveries, from 1 (a message is delivered at
	// least once). Both are between 1 and MaxMessageSize.
	Hops, Attempt uint32
	// Message is the message: a Value of the receiver's spec.builder.messages type, of a
	// primitive kind (never Null, never a window).
	Message Value
}

// AppendMessageCall appends a message call. c.Hops and c.Attempt must be at least 1 and
// c.Message of a primitive kind; decoders reject anything else.
func AppendMessageCall(b []byte, c *MessageCall) []byte {
	b = append(b, CallMessage)
	b = AppendString(b, c.FQN)
	b = AppendKeys(b, c.Keys)
	b = AppendI64(b, c.Timestamp)
	b = AppendString(b, c.FromFQN)
	b = AppendKeys(b, c.FromKeys)
	b = AppendUvarint(b, uint64(c.Hops))
	b = AppendUvarint(b, uint64(c.Attempt))
	return AppendValue(b, c.Message)
}

// DecodeMessageCall decodes a whole message call.
func DecodeMessageCall(b []byte) (MessageCall, error) {
	d := NewDecoder(b)
	var c MessageCall
	if k := d.U8(); k != CallMessage && d.err == nil {
		d.fail(errorf("call kind %d, want %d (message)", k, CallMessage))
	}
	c.FQN = d.String()
	c.Keys = d.Keys()
	c.Timestamp = d.I64()
	d.MessageBody(&c)
	return c, d.Done()
}

// MessageBody decodes the fields of a message call that follow its timestamp — from_fqn,
// from_keys, hops, attempt and message — into c (a decoder of the call's header, such as a
// guest SDK's, reads the rest). A hops or attempt of 0, a Null message or a window is an
// error.
func (d *Decoder) MessageBody(c *MessageCall) {
	c.FromFQN = d.String()
	c.FromKeys = d.Keys()
	c.Hops = d.positive("hops")
	c.Attempt = d.positive("attempt")
	at := d.off
	c.Message = d.MessageValue()
	if d.err == nil && c.Message.Tag == TagNull {
		d.fail(errorf("the message at byte %d is null (a message is a value of a primitive kind)", at))
	}
}

// positive reads a uvarint count between 1 and MaxMessageSize.
func (d *Decoder) positive(what string) uint32 {
	at := d.off
	x := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if x == 0 || x > MaxMessageSize {
		d.fail(errorf("%s %d at byte %d, want 1 to %d", what, x, at, MaxMessageSize))
		return 0
	}
	return uint32(x)
}

// MessageValue decodes a message as send and send_after take it (ABI.md §4.6): a storage
// value (§4.5) — Null, which the host refuses as an error returned to the guest, or a
// primitive kind. A window, like anything Value rejects, is an error.
func (d *Decoder) MessageValue() Value {
	return d.primitive("cannot be sent (a message is a value of a primitive kind)")
}

// DecodeMessageValue decodes a whole message value (send's and send_after's msg).
func DecodeMessageValue(b []byte) (Value, error) {
	d := NewDecoder(b)
	v := d.MessageValue()
	return v, d.Done()
}

// EgressRow decodes an egress row (egress's row, ABI.md §4.6): a Row (§5.5) whose values
// are storage values — Null or a primitive kind. A window, like anything Row rejects, is an
// error.
func (d *Decoder) EgressRow() []Field { return d.row(true) }

// DecodeEgressRow decodes a whole egress row.
func DecodeEgressRow(b []byte) ([]Field, error) {
	d := NewDecoder(b)
	row := d.EgressRow()
	return row, d.Done()
}
