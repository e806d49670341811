package engine

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is the dynamic type of a Value: null, one of the ten primitives, or a window result.
// Its numeric values for the primitives equal those of Primitive.
type Kind uint8

// Value kinds.
const (
	KindNull          = Kind(PrimitiveUnknown)
	KindInt           = Kind(PrimitiveInt)
	KindFloat         = Kind(PrimitiveFloat)
	KindString        = Kind(PrimitiveString)
	KindBool          = Kind(PrimitiveBool)
	KindTimestamp     = Kind(PrimitiveTimestamp)
	KindIntList       = Kind(PrimitiveIntList)
	KindFloatList     = Kind(PrimitiveFloatList)
	KindStringList    = Kind(PrimitiveStringList)
	KindBoolList      = Kind(PrimitiveBoolList)
	KindTimestampList = Kind(PrimitiveTimestampList)
	// KindWindow is the result of reading a windowed feature: aggregation → float.
	KindWindow Kind = 32
)

// String returns "null", "window", or the primitive's manifest spelling.
func (k Kind) String() string {
	switch k {
	case KindNull:
		return "null"
	case KindWindow:
		return "window"
	}
	return Primitive(k).String()
}

// Value is an immutable typed feature value. The zero Value is null.
//
// Values are small and passed by value. A list Value shares its backing slice: the
// constructors take ownership of the slice passed in, and the list accessors return it, so
// neither the caller of a constructor nor the caller of an accessor may modify it.
type Value struct {
	kind Kind
	num  uint64 // int64 bits, float64 bits, bool (0/1), timestamp in Unix nanoseconds
	str  string
	ref  any // []int64, []float64, []string, []bool, []time.Time or *WindowResult
}

// Null is the null Value.
var Null Value

// Int returns an int Value.
func Int(v int64) Value { return Value{kind: KindInt, num: uint64(v)} }

// Float returns a float Value.
func Float(v float64) Value { return Value{kind: KindFloat, num: math.Float64bits(v)} }

// String returns a string Value.
func String(v string) Value { return Value{kind: KindString, str: v} }

// Bool returns a bool Value.
func Bool(v bool) Value {
	if v {
		return Value{kind: KindBool, num: 1}
	}
	return Value{kind: KindBool}
}

// Timestamp returns a timestamp Value. Timestamps are kept as UTC nanoseconds since the Unix
// epoch, so the representable range is the years 1678 to 2262.
func Timestamp(t time.Time) Value { return Value{kind: KindTimestamp, num: uint64(t.UnixNano())} }

// IntList returns an []int Value; it takes ownership of v.
func IntList(v []int64) Value { return Value{kind: KindIntList, ref: v} }

// FloatList returns a []float Value; it takes ownership of v.
func FloatList(v []float64) Value { return Value{kind: KindFloatList, ref: v} }

// StringList returns a []string Value; it takes ownership of v.
func StringList(v []string) Value { return Value{kind: KindStringList, ref: v} }

// BoolList returns a []bool Value; it takes ownership of v.
func BoolList(v []bool) Value { return Value{kind: KindBoolList, ref: v} }

// TimestampList returns a []timestamp Value; it takes ownership of v.
func TimestampList(v []time.Time) Value { return Value{kind: KindTimestampList, ref: v} }

// Window returns a window Value holding r.
func Window(r WindowResult) Value { return Value{kind: KindWindow, ref: &r} }

// Kind returns the dynamic type of v.
func (v Value) Kind() Kind { return v.kind }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.kind == KindNull }

// Int returns v's int, or 0 if v is not an int.
func (v Value) Int() int64 {
	if v.kind != KindInt {
		return 0
	}
	return int64(v.num)
}

// Float returns v's float, or 0 if v is not a float.
func (v Value) Float() float64 {
	if v.kind != KindFloat {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Str returns v's string, or "" if v is not a string.
func (v Value) Str() string { return v.str }

// Bits returns a scalar's 64 bits: an int's two's complement, a float's IEEE 754 bits, a
// timestamp's Unix nanoseconds, a bool's 0 or 1; 0 for the other kinds. Encoders use it to
// write every fixed-size scalar with the same code.
func (v Value) Bits() uint64 {
	switch v.kind {
	case KindInt, KindFloat, KindBool, KindTimestamp:
		return v.num
	}
	return 0
}

// Bool returns v's bool, or false if v is not a bool.
func (v Value) Bool() bool { return v.kind == KindBool && v.num == 1 }

// Time returns v's timestamp in UTC, or the zero time if v is not a timestamp.
func (v Value) Time() time.Time {
	if v.kind != KindTimestamp {
		return time.Time{}
	}
	return time.Unix(0, int64(v.num)).UTC()
}

// Ints returns v's []int (shared, do not modify), or nil.
func (v Value) Ints() []int64 { l, _ := v.ref.([]int64); return l }

// Floats returns v's []float (shared, do not modify), or nil.
func (v Value) Floats() []float64 { l, _ := v.ref.([]float64); return l }

// Strs returns v's []string (shared, do not modify), or nil.
func (v Value) Strs() []string { l, _ := v.ref.([]string); return l }

// Bools returns v's []bool (shared, do not modify), or nil.
func (v Value) Bools() []bool { l, _ := v.ref.([]bool); return l }

// Times returns v's []timestamp (shared, do not modify), or nil.
func (v Value) Times() []time.Time { l, _ := v.ref.([]time.Time); return l }

// Window returns v's window result, or the zero WindowResult.
func (v Value) Window() WindowResult {
	if r, ok := v.ref.(*WindowResult); ok {
		return *r
	}
	return WindowResult{}
}

// Number returns v as a float64 if v is an int or a float.
func (v Value) Number() (float64, bool) {
	switch v.kind {
	case KindInt:
		return float64(int64(v.num)), true
	case KindFloat:
		return math.Float64frombits(v.num), true
	}
	return 0, false
}

// Len returns the length of a list Value, or 0.
func (v Value) Len() int {
	switch l := v.ref.(type) {
	case []int64:
		return len(l)
	case []float64:
		return len(l)
	case []string:
		return len(l)
	case []bool:
		return len(l)
	case []time.Time:
		return len(l)
	}
	return 0
}

// Interface returns v as a plain Go value: nil, int64, float64, string, bool, time.Time, a
// slice of one of them, or map[string]float64 for a window (aggregation name → value).
func (v Value) Interface() any {
	switch v.kind {
	case KindNull:
		return nil
	case KindInt:
		return v.Int()
	case KindFloat:
		return v.Float()
	case KindString:
		return v.str
	case KindBool:
		return v.Bool()
	case KindTimestamp:
		return v.Time()
	case KindWindow:
		return v.Window().Map()
	}
	return v.ref
}

// Equal reports whether v and w have the same kind and the same contents. Floats compare by
// value (so 0 == -0); lists compare element-wise.
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case KindNull:
		return true
	case KindFloat:
		return v.Float() == w.Float()
	case KindInt, KindBool, KindTimestamp:
		return v.num == w.num
	case KindString:
		return v.str == w.str
	case KindIntList:
		return slices.Equal(v.Ints(), w.Ints())
	case KindFloatList:
		return slices.Equal(v.Floats(), w.Floats())
	case KindStringList:
		return slices.Equal(v.Strs(), w.Strs())
	case KindBoolList:
		return slices.Equal(v.Bools(), w.Bools())
	case KindTimestampList:
		return slices.EqualFunc(v.Times(), w.Times(), time.Time.Equal)
	case KindWindow:
		return v.Window() == w.Window()
	}
	return false
}

// String formats v for people: 42, 0.5, "text", true, 2026-01-02T15:04:05Z, [1 2 3],
// {avg=1.5 count=2 …}.
func (v Value) String() string {
	switch v.kind {
	case KindNull:
		return "null"
	case KindInt:
		return strconv.FormatInt(v.Int(), 10)
	case KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case KindString:
		return strconv.Quote(v.str)
	case KindBool:
		return strconv.FormatBool(v.Bool())
	case KindTimestamp:
		return v.Time().Format(time.RFC3339Nano)
	case KindWindow:
		return v.Window().String()
	case KindTimestampList:
		ts := v.Times()
		parts := make([]string, len(ts))
		for i, t := range ts {
			parts[i] = t.UTC().Format(time.RFC3339Nano)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case KindStringList:
		ss := v.Strs()
		parts := make([]string, len(ss))
		for i, s := range ss {
			parts[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v.ref)
}
