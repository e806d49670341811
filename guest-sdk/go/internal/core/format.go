package core

import (
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/osprey-ml/osprey/abi"
)

// This file converts Go values for logs, panics and results without fmt, which would add
// about 0.7 MB to every guest.

// BadKey is the attribute name given to a log value without a string key, as log/slog does.
const BadKey = "!BADKEY"

// Unsupported is logged in place of a value of a type Log cannot convert.
const Unsupported = "!UNSUPPORTED (log a string, number, bool, time, duration, error, fmt.Stringer, list of those or osprey.Value)"

type stringer interface{ String() string }

// AnyValue converts a Go value to a Value for a log attribute: nil, abi.Value, strings, bools,
// integers, floats (NaN and ±Inf as strings), time.Time, time.Duration (as a string such as
// "1.5s"), []byte (as a string), lists of int64, int, float64, string, bool and time.Time,
// errors and fmt.Stringers (as strings). ok is false for any other type.
func AnyValue(x any) (v abi.Value, ok bool) {
	switch x := x.(type) {
	case nil:
		return abi.Null(), true
	case abi.Value:
		return x, true
	case string:
		return abi.String(x), true
	case bool:
		return abi.Bool(x), true
	case int:
		return abi.Int(int64(x)), true
	case int8:
		return abi.Int(int64(x)), true
	case int16:
		return abi.Int(int64(x)), true
	case int32:
		return abi.Int(int64(x)), true
	case int64:
		return abi.Int(x), true
	case uint:
		return uintValue(uint64(x)), true
	case uint8:
		return abi.Int(int64(x)), true
	case uint16:
		return abi.Int(int64(x)), true
	case uint32:
		return abi.Int(int64(x)), true
	case uint64:
		return uintValue(x), true
	case uintptr:
		return uintValue(uint64(x)), true
	case float32:
		return floatValue(float64(x)), true
	case float64:
		return floatValue(x), true
	case time.Time:
		return abi.Timestamp(x.UnixNano()), true
	case time.Duration:
		return abi.String(x.String()), true
	case []byte:
		return abi.String(string(x)), true
	case []int64:
		return abi.Value{Tag: abi.TagIntList, Ints: x}, true
	case []int:
		ints := make([]int64, len(x))
		for i, n := range x {
			ints[i] = int64(n)
		}
		return abi.Value{Tag: abi.TagIntList, Ints: ints}, true
	case []float64:
		for _, f := range x {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				strs := make([]string, len(x))
				for i, f := range x {
					strs[i] = strconv.FormatFloat(f, 'g', -1, 64)
				}
				return abi.Value{Tag: abi.TagStringList, Strs: strs}, true
			}
		}
		return abi.Value{Tag: abi.TagFloatList, Floats: x}, true
	case []string:
		return abi.Value{Tag: abi.TagStringList, Strs: x}, true
	case []bool:
		return abi.Value{Tag: abi.TagBoolList, Bools: x}, true
	case []time.Time:
		ts := make([]int64, len(x))
		for i, t := range x {
			ts[i] = t.UnixNano()
		}
		return abi.Value{Tag: abi.TagTimestampList, Times: ts}, true
	case error:
		return abi.String(x.Error()), true
	case stringer:
		return abi.String(x.String()), true
	}
	return abi.Null(), false
}

func uintValue(u uint64) abi.Value {
	if u > math.MaxInt64 {
		return abi.String(strconv.FormatUint(u, 10))
	}
	return abi.Int(int64(u))
}

func floatValue(f float64) abi.Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return abi.String(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return abi.Float(f)
}

// FormatAny formats a panic value or similar as text.
func FormatAny(x any) string {
	v, ok := AnyValue(x)
	if !ok {
		return "(a value of a type the SDK cannot format without fmt; panic with a string or an error)"
	}
	return FormatValue(v)
}

// FormatValue formats a Value as text (for messages, not for parsing).
func FormatValue(v abi.Value) string {
	switch v.Tag {
	case abi.TagNull:
		return "null"
	case abi.TagString:
		return v.S
	case abi.TagInt:
		return strconv.FormatInt(v.I, 10)
	case abi.TagFloat:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case abi.TagBool:
		return strconv.FormatBool(v.I != 0)
	case abi.TagTimestamp:
		return time.Unix(0, v.I).UTC().Format(time.RFC3339Nano)
	}
	var b strings.Builder
	b.WriteString(v.Tag.String())
	b.WriteByte('{')
	n := 0
	item := func(s string) {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		b.WriteString(s)
	}
	switch v.Tag {
	case abi.TagIntList:
		for _, x := range v.Ints {
			item(strconv.FormatInt(x, 10))
		}
	case abi.TagFloatList:
		for _, x := range v.Floats {
			item(strconv.FormatFloat(x, 'g', -1, 64))
		}
	case abi.TagStringList:
		for _, x := range v.Strs {
			item(strconv.Quote(x))
		}
	case abi.TagBoolList:
		for _, x := range v.Bools {
			item(strconv.FormatBool(x))
		}
	case abi.TagTimestampList:
		for _, x := range v.Times {
			item(time.Unix(0, x).UTC().Format(time.RFC3339Nano))
		}
	case abi.TagWindow:
		for _, p := range []struct {
			name string
			f    float64
		}{{"sum", v.W.Sum}, {"count", v.W.Count}, {"min", v.W.Min}, {"max", v.W.Max}} {
			item(p.name + ": " + strconv.FormatFloat(p.f, 'g', -1, 64))
		}
	}
	b.WriteByte('}')
	return b.String()
}

// validString replaces invalid UTF-8, which the host would reject.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// AppendAttrs appends a Row (ABI §5.5) built from log/slog-style key/value pairs: a string
// followed by a value; anything else where a key is expected gets the key !BADKEY. A repeated
// name gets a suffix (#2, #3, …) since a Row's names are unique. Strings are made valid
// UTF-8 and values of unsupported types are replaced by Unsupported.
func AppendAttrs(b []byte, kv []any) []byte {
	type attr struct {
		name string
		v    abi.Value
	}
	var small [8]attr
	attrs := small[:0]
	for i := 0; i < len(kv); {
		name, ok := kv[i].(string)
		var x any
		switch {
		case !ok:
			name, x = BadKey, kv[i]
			i++
		case i+1 == len(kv):
			name, x = BadKey, name
			i++
		default:
			x = kv[i+1]
			i += 2
		}
		v, ok := AnyValue(x)
		if !ok {
			v = abi.String(Unsupported)
		}
		name = validString(name)
		for n, base := 2, name; ; n++ {
			dup := false
			for _, a := range attrs {
				if a.name == name {
					dup = true
					break
				}
			}
			if !dup {
				break
			}
			name = base + "#" + strconv.Itoa(n)
		}
		attrs = append(attrs, attr{name, sanitize(v)})
	}
	b = abi.AppendUvarint(b, uint64(len(attrs)))
	for _, a := range attrs {
		b = abi.AppendString(b, a.name)
		b = abi.AppendValue(b, a.v)
	}
	return b
}

// sanitize makes a log value's strings valid UTF-8.
func sanitize(v abi.Value) abi.Value {
	switch v.Tag {
	case abi.TagString:
		v.S = validString(v.S)
	case abi.TagStringList:
		for _, s := range v.Strs {
			if !utf8.ValidString(s) {
				strs := make([]string, len(v.Strs))
				for j, s := range v.Strs {
					strs[j] = validString(s)
				}
				v.Strs = strs
				break
			}
		}
	}
	return v
}

// CheckValue reports what makes v unencodable or unacceptable to the host: an unknown tag,
// a NaN or infinite float, a string that is not UTF-8. It returns "" when v is fine.
func CheckValue(v abi.Value) string {
	switch v.Tag {
	case abi.TagNull, abi.TagInt, abi.TagBool, abi.TagTimestamp, abi.TagIntList, abi.TagBoolList, abi.TagTimestampList:
		return ""
	case abi.TagFloat, abi.TagFloatList, abi.TagWindow:
		if !v.Finite() {
			return "a " + v.Tag.String() + " value with a NaN or infinite float"
		}
		return ""
	case abi.TagString:
		if !utf8.ValidString(v.S) {
			return "a string value that is not valid UTF-8"
		}
		return ""
	case abi.TagStringList:
		for _, s := range v.Strs {
			if !utf8.ValidString(s) {
				return "a []string value with an element that is not valid UTF-8"
			}
		}
		return ""
	}
	return "a value with unknown tag " + strconv.Itoa(int(v.Tag))
}

// CheckKeys reports what makes keys unacceptable: a name or value that is not UTF-8, or a
// repeated name. It returns "" when keys are fine.
func CheckKeys(keys []abi.KV) string {
	for i, k := range keys {
		if !utf8.ValidString(k.Name) || !utf8.ValidString(k.Value) {
			return "key " + strconv.Quote(k.Name) + " is not valid UTF-8"
		}
		for _, j := range keys[:i] {
			if j.Name == k.Name {
				return "duplicate key " + strconv.Quote(k.Name)
			}
		}
	}
	return ""
}

// Frames formats up to max stack frames of the goroutine that panicked, from inside the
// deferred function that recovered: the panic machinery's own frames (package runtime) and
// the SDK's are skipped.
func Frames(max int) string {
	var pcs [32]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	count := 0
	for count < max {
		f, more := frames.Next()
		if f.Function != "" && !sdkFrame(f.Function) {
			b.WriteString("\n  ")
			b.WriteString(f.Function)
			b.WriteString(" (")
			b.WriteString(shortFile(f.File))
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
			b.WriteByte(')')
			count++
		}
		if !more {
			break
		}
	}
	return b.String()
}

// sdkFrame reports whether a function belongs to the runtime or the SDK (not to its tests).
func sdkFrame(fn string) bool {
	if strings.HasPrefix(fn, "runtime.") {
		return true
	}
	const sdk = "github.com/osprey-ml/osprey/guest-sdk/go/"
	rest, ok := strings.CutPrefix(fn, sdk)
	if !ok {
		return false
	}
	for _, p := range []string{"osprey.", "program.", "middleware.", "internal/core."} {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
}

// shortFile keeps the last two elements of a path: "fraud/main.go".
func shortFile(path string) string {
	slash := 0
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			slash++
			if slash == 2 {
				return path[i+1:]
			}
		}
	}
	return path
}
