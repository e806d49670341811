package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// The binary form of an Envelope, for a State that keeps mailboxes out of process: a format
// byte, then the fields in order, integers as varints, strings and lists length-prefixed,
// maps in sorted key order (so one envelope always encodes to the same bytes). The ID is not
// part of it: the State keeps it beside the encoding.

const envelopeFormat = 1

// errEnvelope reports a malformed envelope encoding.
var errEnvelope = errors.New("malformed envelope")

// MarshalBinary encodes the envelope (all but its ID).
func (env *Envelope) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64)
	b = append(b, envelopeFormat)
	b = appendAddress(b, env.From)
	b = appendAddress(b, env.To)
	b = appendString(b, env.Egress)
	var err error
	if b, err = appendValue(b, env.Value); err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(env.Row)))
	for _, name := range slices.Sorted(maps.Keys(env.Row)) {
		b = appendString(b, name)
		if b, err = appendValue(b, env.Row[name]); err != nil {
			return nil, fmt.Errorf("row field %q: %w", name, err)
		}
	}
	b = binary.AppendVarint(b, unixNano(env.Timestamp))
	b = binary.AppendVarint(b, unixNano(env.Due))
	b = appendString(b, env.Token)
	b = binary.AppendUvarint(b, uint64(env.Hops))
	b = binary.AppendUvarint(b, uint64(env.Attempts))
	b = binary.AppendUvarint(b, uint64(env.Budget))
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded; the ID is left as it was.
func (env *Envelope) UnmarshalBinary(data []byte) error {
	d := envDecoder{b: data}
	if f := d.byte(); d.err == nil && f != envelopeFormat {
		return fmt.Errorf("%w: format %d", errEnvelope, f)
	}
	id := env.ID
	*env = Envelope{ID: id}
	env.From = d.address()
	env.To = d.address()
	env.Egress = d.string()
	env.Value = d.value()
	if n := d.count(); n > 0 {
		env.Row = make(Row, n)
		for range n {
			name := d.string()
			env.Row[name] = d.value()
		}
	}
	env.Timestamp = fromNano(d.varint())
	env.Due = fromNano(d.varint())
	env.Token = d.string()
	env.Hops = int(d.uvarint())
	env.Attempts = int(d.uvarint())
	env.Budget = int(d.uvarint())
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errEnvelope, len(d.b))
	}
	return d.err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddress(b []byte, a Address) []byte {
	b = appendString(b, a.FQN)
	b = binary.AppendUvarint(b, uint64(len(a.Keys)))
	for _, k := range slices.Sorted(maps.Keys(a.Keys)) {
		b = appendString(appendString(b, k), a.Keys[k])
	}
	return b
}

func appendValue(b []byte, v Value) ([]byte, error) {
	b = append(b, byte(v.kind))
	switch v.kind {
	case KindNull:
	case KindInt, KindTimestamp, KindBool:
		b = binary.AppendVarint(b, int64(v.num))
	case KindFloat:
		b = binary.LittleEndian.AppendUint64(b, v.num)
	case KindString:
		b = appendString(b, v.str)
	case KindIntList:
		b = binary.AppendUvarint(b, uint64(len(v.Ints())))
		for _, x := range v.Ints() {
			b = binary.AppendVarint(b, x)
		}
	case KindFloatList:
		b = binary.AppendUvarint(b, uint64(len(v.Floats())))
		for _, x := range v.Floats() {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	case KindStringList:
		b = binary.AppendUvarint(b, uint64(len(v.Strs())))
		for _, x := range v.Strs() {
			b = appendString(b, x)
		}
	case KindBoolList:
		b = binary.AppendUvarint(b, uint64(len(v.Bools())))
		for _, x := range v.Bools() {
			b = append(b, boolByte(x))
		}
	case KindTimestampList:
		b = binary.AppendUvarint(b, uint64(len(v.Times())))
		for _, x := range v.Times() {
			b = binary.AppendVarint(b, x.UnixNano())
		}
	default:
		return nil, fmt.Errorf("%w: a %s value is not a message", ErrMessage, v.kind)
	}
	return b, nil
}

func boolByte(x bool) byte {
	if x {
		return 1
	}
	return 0
}

// envDecoder reads an envelope encoding; the first error sticks.
type envDecoder struct {
	b   []byte
	err error
}

func (d *envDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", errEnvelope, what)
	}
	d.b = nil
}

func (d *envDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *envDecoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// uvarint reads a small number (a hop or attempt count).
func (d *envDecoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 || x > 1<<31 {
		d.fail("count")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// count reads a length, bounded by what is left (each element takes at least a byte).
func (d *envDecoder) count() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 || x > uint64(len(d.b)) {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *envDecoder) string() string {
	n := d.count()
	if uint64(len(d.b)) < n {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *envDecoder) address() Address {
	a := Address{FQN: d.string()}
	if n := d.count(); n > 0 {
		a.Keys = make(Keys, n)
		for range n {
			k := d.string()
			a.Keys[k] = d.string()
		}
	}
	return a
}

func (d *envDecoder) float() float64 {
	if len(d.b) < 8 {
		d.fail("float")
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return x
}

func (d *envDecoder) value() Value {
	k := Kind(d.byte())
	if d.err != nil {
		return Null
	}
	switch k {
	case KindNull:
		return Null
	case KindInt:
		return Int(d.varint())
	case KindTimestamp:
		return Value{kind: KindTimestamp, num: uint64(d.varint())}
	case KindBool:
		return Bool(d.varint() == 1)
	case KindFloat:
		return Float(d.float())
	case KindString:
		return String(d.string())
	case KindIntList:
		l := make([]int64, d.count())
		for i := range l {
			l[i] = d.varint()
		}
		return IntList(l)
	case KindFloatList:
		l := make([]float64, d.count())
		for i := range l {
			l[i] = d.float()
		}
		return FloatList(l)
	case KindStringList:
		l := make([]string, d.count())
		for i := range l {
			l[i] = d.string()
		}
		return StringList(l)
	case KindBoolList:
		l := make([]bool, d.count())
		for i := range l {
			l[i] = d.byte() == 1
		}
		return BoolList(l)
	case KindTimestampList:
		l := make([]time.Time, d.count())
		for i := range l {
			l[i] = time.Unix(0, d.varint()).UTC()
		}
		return TimestampList(l)
	}
	d.fail(fmt.Sprintf("value kind %d", k))
	return Null
}
