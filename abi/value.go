package abi

import (
	"math"
	"strconv"
)

// Tag is a Value's type on the wire (ABI.md §5.2).
type Tag uint8

// Value tags.
const (
	TagNull          Tag = 0
	TagInt           Tag = 1
	TagFloat         Tag = 2
	TagString        Tag = 3
	TagBool          Tag = 4
	TagTimestamp     Tag = 5
	TagIntList       Tag = 6
	TagFloatList     Tag = 7
	TagStringList    Tag = 8
	TagBoolList      Tag = 9
	TagTimestampList Tag = 10
	TagWindow        Tag = 32
)

// String names the tag as the manifest spells the primitive.
func (t Tag) String() string {
	switch t {
	case TagNull:
		return "null"
	case TagInt:
		return "int"
	case TagFloat:
		return "float"
	case TagString:
		return "string"
	case TagBool:
		return "bool"
	case TagTimestamp:
		return "timestamp"
	case TagIntList:
		return "[]int"
	case TagFloatList:
		return "[]float"
	case TagStringList:
		return "[]string"
	case TagBoolList:
		return "[]bool"
	case TagTimestampList:
		return "[]timestamp"
	case TagWindow:
		return "window"
	}
	return "tag(" + strconv.Itoa(int(t)) + ")"
}

// Window aggregation mask bits (ABI.md §5.2).
const (
	AggrSum   uint8 = 1 << 1
	AggrCount uint8 = 1 << 2
	AggrMin   uint8 = 1 << 3
	AggrMax   uint8 = 1 << 4
	AggrAvg   uint8 = 1 << 5
)

// Window is a window result on the wire. Avg is Sum/Count.
type Window struct {
	Mask                 uint8
	Sum, Count, Min, Max float64
}

// Value is a feature value on the wire. Tag says which field holds it: I for int, bool
// (0 or 1) and timestamp (Unix nanoseconds); F for float; S for string; the list fields for
// lists (Times in Unix nanoseconds); W for a window.
type Value struct {
	Tag    Tag
	I      int64
	F      float64
	S      string
	Ints   []int64
	Floats []float64
	Strs   []string
	Bools  []bool
	Times  []int64
	W      Window
}

// Null returns the null Value.
func Null() Value { return Value{} }

// Int returns an int Value.
func Int(v int64) Value { return Value{Tag: TagInt, I: v} }

// Float returns a float Value.
func Float(v float64) Value { return Value{Tag: TagFloat, F: v} }

// String returns a string Value.
func String(v string) Value { return Value{Tag: TagString, S: v} }

// Timestamp returns a timestamp Value from Unix nanoseconds.
func Timestamp(ns int64) Value { return Value{Tag: TagTimestamp, I: ns} }

// Bool returns a bool Value.
func Bool(v bool) Value {
	if v {
		return Value{Tag: TagBool, I: 1}
	}
	return Value{Tag: TagBool}
}

// AppendValue appends v's encoding to b.
func AppendValue(b []byte, v Value) []byte {
	b = append(b, byte(v.Tag))
	switch v.Tag {
	case TagInt, TagTimestamp:
		b = AppendI64(b, v.I)
	case TagFloat:
		b = AppendF64(b, v.F)
	case TagString:
		b = AppendString(b, v.S)
	case TagBool:
		if v.I != 0 {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	case TagIntList:
		b = AppendUvarint(b, uint64(len(v.Ints)))
		for _, x := range v.Ints {
			b = AppendI64(b, x)
		}
	case TagFloatList:
		b = AppendUvarint(b, uint64(len(v.Floats)))
		for _, x := range v.Floats {
			b = AppendF64(b, x)
		}
	case TagStringList:
		b = AppendUvarint(b, uint64(len(v.Strs)))
		for _, x := range v.Strs {
			b = AppendString(b, x)
		}
	case TagBoolList:
		b = AppendUvarint(b, uint64(len(v.Bools)))
		for _, x := range v.Bools {
			if x {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case TagTimestampList:
		b = AppendUvarint(b, uint64(len(v.Times)))
		for _, x := range v.Times {
			b = AppendI64(b, x)
		}
	case TagWindow:
		b = append(b, v.W.Mask)
		b = AppendF64(b, v.W.Sum)
		b = AppendF64(b, v.W.Count)
		b = AppendF64(b, v.W.Min)
		b = AppendF64(b, v.W.Max)
	}
	return b
}

// Value decodes a Value.
func (d *Decoder) Value() Value {
	var v Value
	v.Tag = Tag(d.U8())
	switch v.Tag {
	case TagNull:
	case TagInt, TagTimestamp:
		v.I = d.I64()
	case TagFloat:
		v.F = d.F64()
	case TagString:
		v.S = d.String()
	case TagBool:
		v.I = int64(d.bool())
	case TagIntList:
		n := d.count(8)
		v.Ints = make([]int64, n)
		for i := range v.Ints {
			v.Ints[i] = d.I64()
		}
	case TagFloatList:
		n := d.count(8)
		v.Floats = make([]float64, n)
		for i := range v.Floats {
			v.Floats[i] = d.F64()
		}
	case TagStringList:
		// A string costs 1 byte on the wire and 16 in memory: grow with what is actually
		// decoded rather than trusting the count.
		n := d.count(1)
		v.Strs = make([]string, 0, min(n, prealloc))
		for ; n > 0 && d.err == nil; n-- {
			v.Strs = append(v.Strs, d.String())
		}
	case TagBoolList:
		n := d.count(1)
		v.Bools = make([]bool, n)
		for i := range v.Bools {
			v.Bools[i] = d.bool() == 1
		}
	case TagTimestampList:
		n := d.count(8)
		v.Times = make([]int64, n)
		for i := range v.Times {
			v.Times[i] = d.I64()
		}
	case TagWindow:
		v.W.Mask = d.U8()
		v.W.Sum, v.W.Count, v.W.Min, v.W.Max = d.F64(), d.F64(), d.F64(), d.F64()
	default:
		d.fail(errorf("unknown value tag %d", v.Tag))
	}
	if d.err != nil {
		return Value{}
	}
	return v
}

// SkipValue advances past a Value without decoding it and without allocating. It accepts
// exactly the encodings Value accepts (strings are checked for valid UTF-8), so a message
// scanned with SkipValue is as well-formed as one decoded with Value.
func (d *Decoder) SkipValue() {
	tag := Tag(d.U8())
	switch tag {
	case TagNull:
	case TagInt, TagTimestamp, TagFloat:
		d.skip(8)
	case TagString:
		d.StringBytes()
	case TagBool:
		d.bool()
	case TagIntList, TagFloatList, TagTimestampList:
		d.skip(d.count(8) * 8)
	case TagStringList:
		for n := d.count(1); n > 0 && d.err == nil; n-- {
			d.StringBytes()
		}
	case TagBoolList:
		for n := d.count(1); n > 0 && d.err == nil; n-- {
			d.bool()
		}
	case TagWindow:
		d.skip(1 + 4*8)
	default:
		d.fail(errorf("unknown value tag %d", tag))
	}
}

// Finite reports whether every float in v (including list elements and window fields) is
// neither NaN nor infinite.
func (v Value) Finite() bool {
	ok := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch v.Tag {
	case TagFloat:
		return ok(v.F)
	case TagFloatList:
		for _, f := range v.Floats {
			if !ok(f) {
				return false
			}
		}
	case TagWindow:
		return ok(v.W.Sum) && ok(v.W.Count) && ok(v.W.Min) && ok(v.W.Max)
	}
	return true
}
