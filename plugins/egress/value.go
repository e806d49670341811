package egress

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// JSON returns what encoding/json should write for a message's value: null; an int as a
// JSON number, exactly (json.Number, not through a float64); a float as a number, or as the
// string "NaN", "+Inf" or "-Inf", which JSON cannot hold as numbers; a string; a boolean; a
// timestamp as an RFC 3339 string in UTC with nanoseconds (time.RFC3339Nano); a list as an
// array of those; a window as an object of its aggregations.
func JSON(v engine.Value) any {
	switch v.Kind() {
	case engine.KindNull:
		return nil
	case engine.KindInt:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case engine.KindFloat:
		return jsonFloat(v.Float())
	case engine.KindTimestamp:
		return formatTime(v.Time())
	case engine.KindIntList:
		out := make([]json.Number, len(v.Ints()))
		for i, x := range v.Ints() {
			out[i] = json.Number(strconv.FormatInt(x, 10))
		}
		return out
	case engine.KindFloatList:
		out := make([]any, len(v.Floats()))
		for i, x := range v.Floats() {
			out[i] = jsonFloat(x)
		}
		return out
	case engine.KindTimestampList:
		out := make([]string, len(v.Times()))
		for i, t := range v.Times() {
			out[i] = formatTime(t)
		}
		return out
	case engine.KindWindow:
		w := v.Window().Map()
		out := make(map[string]any, len(w))
		for k, x := range w {
			out[k] = jsonFloat(x)
		}
		return out
	}
	return v.Interface() // string, bool, []string, []bool
}

func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return x
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Text returns a message's value as a string, for destinations whose fields are strings (a
// Redis stream): an int in decimal; a float as strconv formats it shortest ('g': 0.5,
// 1e+21, NaN, +Inf); a string as it is; a boolean as true or false; a timestamp as
// JSON does (RFC 3339, UTC, nanoseconds); a list or a window as its JSON (JSON's text).
// ok is false for null, which has no text (the field is left out).
func Text(v engine.Value) (s string, ok bool) {
	switch v.Kind() {
	case engine.KindNull:
		return "", false
	case engine.KindInt:
		return strconv.FormatInt(v.Int(), 10), true
	case engine.KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	case engine.KindString:
		return v.Str(), true
	case engine.KindBool:
		return strconv.FormatBool(v.Bool()), true
	case engine.KindTimestamp:
		return formatTime(v.Time()), true
	}
	b, err := json.Marshal(JSON(v))
	if err != nil { // cannot happen: JSON gives only what encoding/json writes
		return v.String(), true
	}
	return string(b), true
}

// Time formats a message's timestamp as the egresses write it: RFC 3339, UTC, nanoseconds.
func Time(t time.Time) string { return formatTime(t) }
