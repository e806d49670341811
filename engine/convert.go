package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Convert turns loosely typed input (what a JSON decoder, a CSV row or a Go caller hands
// over) into a Value of primitive p. The rules, chosen so that no conversion loses
// information silently:
//
//   - An engine.Value of p's kind is returned as is; of another kind it is converted by the
//     rules below applied to v.Interface().
//   - int ← any Go integer type that fits in int64; a float or json.Number with no
//     fractional part within ±2^53 (exactly representable); a string holding a base-10
//     integer.
//   - float ← any Go integer or float; json.Number; a string strconv.ParseFloat accepts.
//     NaN and ±Inf are rejected everywhere.
//   - string ← a string; a json.Number as written; integers, floats (shortest 'g' form)
//     and bools in their canonical text form.
//   - bool ← a bool; the strings strconv.ParseBool accepts ("true", "0", …); the numbers 0
//     and 1.
//   - timestamp ← time.Time; a string in RFC 3339 (fractional seconds optional) or a bare
//     date 2006-01-02 (UTC midnight); a number (int, float or json.Number) of Unix seconds,
//     fraction allowed. Timestamps must lie between the years 1678 and 2262.
//   - a list ← a slice or array of any type whose elements convert by the rules above;
//     never a scalar. nil elements are rejected.
//   - nil converts to nothing: it is an error.
//
// Errors wrap ErrTypeMismatch and say what was expected and what was found.
func Convert(p Primitive, x any) (Value, error) {
	if !p.Valid() {
		return Null, fmt.Errorf("%w: unknown primitive %s", ErrTypeMismatch, p)
	}
	if v, ok := x.(Value); ok {
		if v.kind == Kind(p) {
			return v, nil
		}
		if v.kind == KindNull {
			return Null, mismatch(p, x)
		}
		x = v.Interface()
	}
	if p.IsList() {
		return convertList(p, x)
	}
	return convertScalar(p, x)
}

func mismatch(p Primitive, x any) error {
	return fmt.Errorf("%w: want %s, got %s", ErrTypeMismatch, p, describe(x))
}

func describe(x any) string {
	switch v := x.(type) {
	case nil:
		return "null"
	case Value:
		if v.kind == KindNull {
			return "null"
		}
		return v.kind.String() + " " + truncate(v.String())
	case string:
		return "string " + truncate(strconv.Quote(v))
	case json.Number:
		return "number " + truncate(v.String())
	case bool:
		return "bool " + strconv.FormatBool(v)
	case time.Time:
		return "timestamp " + v.Format(time.RFC3339Nano)
	}
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		return fmt.Sprintf("list of %d", rv.Len())
	case reflect.Map, reflect.Struct:
		return rv.Kind().String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integer " + truncate(fmt.Sprint(x))
	case reflect.Float32, reflect.Float64:
		return "number " + truncate(fmt.Sprint(x))
	}
	return fmt.Sprintf("%T", x)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

func convertScalar(p Primitive, x any) (Value, error) {
	switch p {
	case PrimitiveInt:
		n, err := toInt(x)
		if err != nil {
			return Null, err
		}
		return Int(n), nil
	case PrimitiveFloat:
		f, err := toFloat(x)
		if err != nil {
			return Null, err
		}
		return Float(f), nil
	case PrimitiveString:
		s, err := toString(x)
		if err != nil {
			return Null, err
		}
		return String(s), nil
	case PrimitiveBool:
		b, err := toBool(x)
		if err != nil {
			return Null, err
		}
		return Bool(b), nil
	case PrimitiveTimestamp:
		t, err := toTime(x)
		if err != nil {
			return Null, err
		}
		return Timestamp(t), nil
	}
	return Null, mismatch(p, x)
}

const maxExactFloat = 1 << 53

func toInt(x any) (int64, error) {
	switch v := x.(type) {
	case int:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case int64:
		return v, nil
	case uint8:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint, uint64, uintptr:
		u := reflect.ValueOf(v).Uint()
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("%w: want int, got %d (overflows int64)", ErrTypeMismatch, u)
		}
		return int64(u), nil
	case float32:
		return floatToInt(float64(v), x)
	case float64:
		return floatToInt(v, x)
	case json.Number:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return 0, mismatch(PrimitiveInt, x)
		}
		return floatToInt(f, x)
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, mismatch(PrimitiveInt, x)
		}
		return n, nil
	}
	return 0, mismatch(PrimitiveInt, x)
}

func floatToInt(f float64, x any) (int64, error) {
	if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) || f > maxExactFloat || f < -maxExactFloat {
		return 0, fmt.Errorf("%w: want int, got %s (not a whole number within ±2^53)", ErrTypeMismatch, describe(x))
	}
	return int64(f), nil
}

func toFloat(x any) (float64, error) {
	var f float64
	switch v := x.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(v), 64); err != nil {
			return 0, mismatch(PrimitiveFloat, x)
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return 0, mismatch(PrimitiveFloat, x)
		}
	case bool, nil:
		return 0, mismatch(PrimitiveFloat, x)
	default:
		n, err := toInt(x)
		if err != nil {
			return 0, mismatch(PrimitiveFloat, x)
		}
		f = float64(n)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: want float, got %s (NaN and infinities are not values)", ErrTypeMismatch, describe(x))
	}
	return f, nil
}

func toString(x any) (string, error) {
	switch v := x.(type) {
	case string:
		return v, nil
	case json.Number:
		return string(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", mismatch(PrimitiveString, x)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32), nil
	}
	if n, err := toInt(x); err == nil {
		if _, isFloat := x.(float64); !isFloat {
			return strconv.FormatInt(n, 10), nil
		}
	}
	return "", mismatch(PrimitiveString, x)
}

func toBool(x any) (bool, error) {
	switch v := x.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, mismatch(PrimitiveBool, x)
		}
		return b, nil
	case nil:
		return false, mismatch(PrimitiveBool, x)
	}
	if n, err := toInt(x); err == nil && (n == 0 || n == 1) {
		return n == 1, nil
	}
	return false, mismatch(PrimitiveBool, x)
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func toTime(x any) (time.Time, error) {
	var t time.Time
	switch v := x.(type) {
	case time.Time:
		t = v
	case string:
		s := strings.TrimSpace(v)
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			if t, err = time.Parse(time.DateOnly, s); err != nil {
				return t, fmt.Errorf("%w: want timestamp (RFC 3339, e.g. 2026-01-02T15:04:05Z, or Unix seconds), got %s", ErrTypeMismatch, describe(x))
			}
		}
	case bool, nil:
		return t, mismatch(PrimitiveTimestamp, x)
	default:
		f, err := toFloat(x)
		if err != nil {
			return t, mismatch(PrimitiveTimestamp, x)
		}
		if f > float64(math.MaxInt64)/1e9 || f < float64(math.MinInt64)/1e9 {
			return t, fmt.Errorf("%w: want timestamp between 1678 and 2262, got %s", ErrTypeMismatch, describe(x))
		}
		if n, ok := x.(int64); ok {
			t = time.Unix(n, 0)
		} else {
			sec, frac := math.Modf(f)
			t = time.Unix(int64(sec), int64(math.Round(frac*1e9)))
		}
	}
	if t.Before(minTime) || t.After(maxTime) {
		return t, fmt.Errorf("%w: want timestamp between 1678 and 2262, got %s", ErrTypeMismatch, describe(x))
	}
	return t.UTC(), nil
}

func convertList(p Primitive, x any) (Value, error) {
	if x == nil {
		return Null, mismatch(p, x)
	}
	rv := reflect.ValueOf(x)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return Null, mismatch(p, x)
	}
	n := rv.Len()
	elem := p.Elem()
	at := func(i int) (Value, error) {
		v, err := convertScalar(elem, rv.Index(i).Interface())
		if err != nil {
			return Null, fmt.Errorf("element %d: %w", i, err)
		}
		return v, nil
	}
	switch elem {
	case PrimitiveInt:
		out := make([]int64, n)
		for i := range out {
			v, err := at(i)
			if err != nil {
				return Null, err
			}
			out[i] = v.Int()
		}
		return IntList(out), nil
	case PrimitiveFloat:
		out := make([]float64, n)
		for i := range out {
			v, err := at(i)
			if err != nil {
				return Null, err
			}
			out[i] = v.Float()
		}
		return FloatList(out), nil
	case PrimitiveString:
		out := make([]string, n)
		for i := range out {
			v, err := at(i)
			if err != nil {
				return Null, err
			}
			out[i] = v.Str()
		}
		return StringList(out), nil
	case PrimitiveBool:
		out := make([]bool, n)
		for i := range out {
			v, err := at(i)
			if err != nil {
				return Null, err
			}
			out[i] = v.Bool()
		}
		return BoolList(out), nil
	case PrimitiveTimestamp:
		out := make([]time.Time, n)
		for i := range out {
			v, err := at(i)
			if err != nil {
				return Null, err
			}
			out[i] = v.Time()
		}
		return TimestampList(out), nil
	}
	return Null, mismatch(p, x)
}

func reflectIsList(x any) bool {
	k := reflect.ValueOf(x).Kind()
	return k == reflect.Slice || k == reflect.Array
}
