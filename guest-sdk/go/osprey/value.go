package osprey

import (
	"time"

	"github.com/osprey-ml/osprey/abi"
)

// Value is a feature value: a tagged union whose Tag says which field holds it (see
// abi.Value). Build one with the constructors below; read one by switching on Tag:
//
//	switch v.Tag {
//	case osprey.TagFloat:
//		f := v.F
//	case osprey.TagString:
//		s := v.S
//	case osprey.TagWindow:
//		sum := v.W.Sum
//	}
//
// The zero Value is Null.
type Value = abi.Value

// Null returns the null Value. A program returning Null writes nothing.
func Null() Value { return abi.Null() }

// Int returns an int Value.
func Int(v int64) Value { return abi.Int(v) }

// Float returns a float Value. The host rejects NaN and ±Inf.
func Float(v float64) Value { return abi.Float(v) }

// String returns a string Value. The string must be valid UTF-8.
func String(v string) Value { return abi.String(v) }

// Bool returns a bool Value.
func Bool(v bool) Value { return abi.Bool(v) }

// Time returns a timestamp Value (nanosecond precision, between the years 1678 and 2262).
func Time(t time.Time) Value { return abi.Timestamp(t.UnixNano()) }

// Ints returns an []int Value. It keeps v.
func Ints(v []int64) Value { return Value{Tag: abi.TagIntList, Ints: nonNil(v)} }

// Floats returns a []float Value. It keeps v.
func Floats(v []float64) Value { return Value{Tag: abi.TagFloatList, Floats: nonNil(v)} }

// Strings returns a []string Value. It keeps v.
func Strings(v []string) Value { return Value{Tag: abi.TagStringList, Strs: nonNil(v)} }

// Bools returns a []bool Value. It keeps v.
func Bools(v []bool) Value { return Value{Tag: abi.TagBoolList, Bools: nonNil(v)} }

// Times returns a []timestamp Value.
func Times(v []time.Time) Value {
	ts := make([]int64, len(v))
	for i, t := range v {
		ts[i] = t.UnixNano()
	}
	return Value{Tag: abi.TagTimestampList, Times: ts}
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

// unixTime converts Unix nanoseconds to a UTC time.Time.
func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// Tag is a Value's kind (abi.Tag).
type Tag = abi.Tag

// Value kinds, re-exported from package abi so that a guest can switch on Value.Tag without
// importing it.
const (
	TagNull          = abi.TagNull
	TagInt           = abi.TagInt
	TagFloat         = abi.TagFloat
	TagString        = abi.TagString
	TagBool          = abi.TagBool
	TagTimestamp     = abi.TagTimestamp
	TagIntList       = abi.TagIntList
	TagFloatList     = abi.TagFloatList
	TagStringList    = abi.TagStringList
	TagBoolList      = abi.TagBoolList
	TagTimestampList = abi.TagTimestampList
	TagWindow        = abi.TagWindow
)
