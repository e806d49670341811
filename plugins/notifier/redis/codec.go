package redis

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// entryField is the one field of a stream entry; its value is the JSON encoding of wire.
const entryField = "n"

// wire is a Notification as stored in a stream entry (docs/redis.md, "Notifier"). Floats
// travel as their IEEE-754 bits so that NaN and the infinities survive; times as Unix
// nanoseconds.
type wire struct {
	Kind     engine.NotificationKind `json:"k"`
	Op       engine.Op               `json:"op,omitempty"`
	FQN      string                  `json:"f"`
	Keys     string                  `json:"e,omitempty"`
	Value    *wireValue              `json:"v,omitempty"`
	TS       int64                   `json:"t"`
	Written  int64                   `json:"wt,omitempty"`
	Outcome  engine.WriteOutcome     `json:"o,omitempty"`
	Windowed bool                    `json:"w,omitempty"`
	Bucket   int64                   `json:"b,omitempty"`
	Active   bool                    `json:"a,omitempty"`
}

type wireValue struct {
	Kind   engine.Kind `json:"k"`
	Num    uint64      `json:"n,omitempty"` // Int, Float (bits), Bool, Timestamp (ns)
	Str    string      `json:"s,omitempty"`
	Ints   []int64     `json:"i,omitempty"`
	Floats []uint64    `json:"f,omitempty"`
	Strs   []string    `json:"ss,omitempty"`
	Bools  []bool      `json:"bs,omitempty"`
	Times  []int64     `json:"ts,omitempty"`
	Window *wireWindow `json:"w,omitempty"`
}

type wireWindow struct {
	Aggrs                engine.AggrSet `json:"a"`
	Sum, Count, Min, Max uint64
}

func encode(n engine.Notification) (string, error) {
	w := wire{Kind: n.Kind, Op: n.Op, FQN: n.FQN, Keys: n.EncodedKeys, Outcome: n.Outcome,
		Windowed: n.Windowed, Bucket: n.Bucket, Active: n.ActiveBucket}
	if !n.Timestamp.IsZero() {
		w.TS = n.Timestamp.UnixNano()
	}
	if !n.Written.IsZero() {
		w.Written = n.Written.UnixNano()
	}
	if !n.Value.IsNull() {
		v, err := encodeValue(n.Value)
		if err != nil {
			return "", err
		}
		w.Value = v
	}
	b, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("encode notification: %w", err)
	}
	return string(b), nil
}

func encodeValue(v engine.Value) (*wireValue, error) {
	wv := &wireValue{Kind: v.Kind()}
	switch v.Kind() {
	case engine.KindInt, engine.KindFloat, engine.KindBool, engine.KindTimestamp:
		wv.Num = v.Bits()
	case engine.KindString:
		wv.Str = v.Str()
	case engine.KindIntList:
		wv.Ints = v.Ints()
	case engine.KindFloatList:
		for _, f := range v.Floats() {
			wv.Floats = append(wv.Floats, math.Float64bits(f))
		}
	case engine.KindStringList:
		wv.Strs = v.Strs()
	case engine.KindBoolList:
		wv.Bools = v.Bools()
	case engine.KindTimestampList:
		for _, t := range v.Times() {
			wv.Times = append(wv.Times, t.UnixNano())
		}
	case engine.KindWindow:
		r := v.Window()
		wv.Window = &wireWindow{Aggrs: r.Aggrs, Sum: math.Float64bits(r.Sum),
			Count: math.Float64bits(r.Count), Min: math.Float64bits(r.Min), Max: math.Float64bits(r.Max)}
	default:
		return nil, fmt.Errorf("encode notification: value of kind %v", v.Kind())
	}
	return wv, nil
}

func decode(s string) (engine.Notification, error) {
	var w wire
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return engine.Notification{}, fmt.Errorf("decode notification: %w", err)
	}
	n := engine.Notification{Kind: w.Kind, Op: w.Op, FQN: w.FQN, EncodedKeys: w.Keys, Outcome: w.Outcome,
		Windowed: w.Windowed, Bucket: w.Bucket, ActiveBucket: w.Active}
	if w.TS != 0 {
		n.Timestamp = time.Unix(0, w.TS).UTC()
	}
	if w.Written != 0 {
		n.Written = time.Unix(0, w.Written).UTC()
	}
	if w.Value != nil {
		v, err := decodeValue(w.Value)
		if err != nil {
			return engine.Notification{}, err
		}
		n.Value = v
	}
	return n, nil
}

func decodeValue(wv *wireValue) (engine.Value, error) {
	switch wv.Kind {
	case engine.KindInt:
		return engine.Int(int64(wv.Num)), nil
	case engine.KindFloat:
		return engine.Float(math.Float64frombits(wv.Num)), nil
	case engine.KindBool:
		return engine.Bool(wv.Num == 1), nil
	case engine.KindTimestamp:
		return engine.Timestamp(time.Unix(0, int64(wv.Num)).UTC()), nil
	case engine.KindString:
		return engine.String(wv.Str), nil
	case engine.KindIntList:
		return engine.IntList(orEmpty(wv.Ints)), nil
	case engine.KindFloatList:
		fs := make([]float64, len(wv.Floats))
		for i, b := range wv.Floats {
			fs[i] = math.Float64frombits(b)
		}
		return engine.FloatList(fs), nil
	case engine.KindStringList:
		return engine.StringList(orEmpty(wv.Strs)), nil
	case engine.KindBoolList:
		return engine.BoolList(orEmpty(wv.Bools)), nil
	case engine.KindTimestampList:
		ts := make([]time.Time, len(wv.Times))
		for i, t := range wv.Times {
			ts[i] = time.Unix(0, t).UTC()
		}
		return engine.TimestampList(ts), nil
	case engine.KindWindow:
		if wv.Window == nil {
			return engine.Null, fmt.Errorf("decode notification: window value without aggregates")
		}
		w := wv.Window
		return engine.Window(engine.WindowResult{Aggrs: w.Aggrs, Sum: math.Float64frombits(w.Sum),
			Count: math.Float64frombits(w.Count), Min: math.Float64frombits(w.Min), Max: math.Float64frombits(w.Max)}), nil
	}
	return engine.Null, fmt.Errorf("decode notification: value of kind %d", wv.Kind)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
