package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/manifest"
)

// This file converts between the engine's types and the osprey.v1 messages. Every function
// is pure and safe for concurrent use.

// valueToProto converts an engine value; Null becomes nil (an unset Value field). A window
// carries only the aggregations the feature declares (engine.WindowResult.Aggrs).
func valueToProto(v engine.Value) *ospreyv1.Value {
	switch v.Kind() {
	case engine.KindNull:
		return nil
	case engine.KindInt:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_IntValue{IntValue: v.Int()}}
	case engine.KindFloat:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_FloatValue{FloatValue: v.Float()}}
	case engine.KindString:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_StringValue{StringValue: v.Str()}}
	case engine.KindBool:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_BoolValue{BoolValue: v.Bool()}}
	case engine.KindTimestamp:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_TimestampValue{TimestampValue: timestamppb.New(v.Time())}}
	case engine.KindIntList:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_IntList{IntList: &ospreyv1.IntList{Values: slices.Clone(v.Ints())}}}
	case engine.KindFloatList:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_FloatList{FloatList: &ospreyv1.FloatList{Values: slices.Clone(v.Floats())}}}
	case engine.KindStringList:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_StringList{StringList: &ospreyv1.StringList{Values: slices.Clone(v.Strs())}}}
	case engine.KindBoolList:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_BoolList{BoolList: &ospreyv1.BoolList{Values: slices.Clone(v.Bools())}}}
	case engine.KindTimestampList:
		ts := v.Times()
		out := make([]*timestamppb.Timestamp, len(ts))
		for i, t := range ts {
			out[i] = timestamppb.New(t)
		}
		return &ospreyv1.Value{Kind: &ospreyv1.Value_TimestampList{TimestampList: &ospreyv1.TimestampList{Values: out}}}
	case engine.KindWindow:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_Window{Window: windowToProto(v.Window())}}
	}
	return nil
}

// windowToProto sets the aggregations r.Aggrs names, and only those.
func windowToProto(r engine.WindowResult) *ospreyv1.WindowResult {
	out := &ospreyv1.WindowResult{}
	fillWindow(out, r, func(x float64) *float64 { return &x })
	return out
}

// fillWindow sets in out the aggregations r.Aggrs names, and only those, each in a float64
// that num returns holding it.
func fillWindow(out *ospreyv1.WindowResult, r engine.WindowResult, num func(float64) *float64) {
	for _, a := range r.Aggrs.Fns() {
		x := num(r.Get(a))
		switch a {
		case engine.AggrSum:
			out.Sum = x
		case engine.AggrCount:
			out.Count = x
		case engine.AggrMin:
			out.Min = x
		case engine.AggrMax:
			out.Max = x
		case engine.AggrAvg:
			out.Avg = x
		}
	}
}

// timeToProto converts a timestamp; the zero time becomes nil (unset).
func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// timeFromProto converts an optional request timestamp; unset gives the zero time (the
// engine's "now").
func timeFromProto(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, err
	}
	return ts.AsTime(), nil
}

func durationToProto(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// errNoValue is returned by valueFromProto for an unset or null value.
var errNoValue = fmt.Errorf("missing (a number, string, bool or list)")

// valueFromProto turns a loosely typed JSON value into what engine.Convert takes: numbers
// stay float64 (engine.Convert accepts a whole float64 within ±2^53 for an int feature),
// strings stay strings (a string holding a number is converted, or not, by the feature's
// type), lists become []any. Objects and nulls are not values.
func valueFromProto(v *structpb.Value) (any, error) {
	if v == nil {
		return nil, errNoValue
	}
	switch k := v.GetKind().(type) {
	case nil, *structpb.Value_NullValue:
		return nil, errNoValue
	case *structpb.Value_NumberValue:
		return k.NumberValue, nil
	case *structpb.Value_StringValue:
		return k.StringValue, nil
	case *structpb.Value_BoolValue:
		return k.BoolValue, nil
	case *structpb.Value_ListValue:
		elems := k.ListValue.GetValues()
		out := make([]any, len(elems))
		for i, e := range elems {
			switch e.GetKind().(type) {
			case *structpb.Value_ListValue, *structpb.Value_StructValue:
				return nil, fmt.Errorf("element %d: lists hold numbers, strings, bools or timestamps, not lists or objects", i)
			}
			x, err := valueFromProto(e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out[i] = x
		}
		return out, nil
	case *structpb.Value_StructValue:
		return nil, fmt.Errorf("an object is not a feature value (want a number, string, bool or list)")
	}
	return nil, fmt.Errorf("unsupported JSON value %T", v.GetKind())
}

// maxExactInt is the largest magnitude below which every whole float64 is an exact integer.
const maxExactInt = 1 << 53

// rowValue turns a row field into what engine.RowFromMap takes. A whole number within ±2^53
// becomes an int (as json.Number "42"), any other number a float: JSON, and so
// google.protobuf.Struct, keeps no difference between 42 and 42.0. Objects are refused by
// RowFromMap.
func rowValue(v *structpb.Value) any {
	switch k := v.GetKind().(type) {
	case nil, *structpb.Value_NullValue:
		return nil
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if f == math.Trunc(f) && math.Abs(f) <= maxExactInt {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
		return f
	case *structpb.Value_ListValue:
		elems := k.ListValue.GetValues()
		out := make([]any, len(elems))
		for i, e := range elems {
			out[i] = rowValue(e)
		}
		return out
	}
	return v.AsInterface()
}

// checkKeySizes refuses entity keys with a value (or a name) over engine.MaxKeyBytes before
// anything else looks at them: InvalidArgument naming field (keys, entities[3].keys) and the
// key. The engine refuses such values too (engine.ErrInvalidKeys); checking here names the
// field of a GetMany entity and refuses the whole call at once. Key names are quoted
// clipped, so an oversized one is not copied into the message.
func checkKeySizes(field string, keys map[string]string) *connect.Error {
	ok := true
	for name, v := range keys {
		ok = ok && len(v) <= engine.MaxKeyBytes && len(name) <= engine.MaxKeyBytes
	}
	if ok {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(keys)) { // the first by name, for a stable message
		if n := len(name); n > engine.MaxKeyBytes {
			return invalid(field, "%v: a key name is %d bytes, more than the %d allowed: %s", engine.ErrInvalidKeys, n, engine.MaxKeyBytes, clipQuote(name))
		}
		if n := len(keys[name]); n > engine.MaxKeyBytes {
			return invalid(field, "%v: key %s: value is %d bytes, more than the %d allowed", engine.ErrInvalidKeys, clipQuote(name), n, engine.MaxKeyBytes)
		}
	}
	return nil
}

// clipQuote quotes s for a message, cut to 64 bytes on a rune boundary.
func clipQuote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// fieldError is a problem with one field of a request, e.g. rows[3].amount.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// rowFromProto converts an input row. The error is a *fieldError naming the field as
// path.name (path is "rows[3]" or "row").
func rowFromProto(path string, s *structpb.Struct) (engine.Row, error) {
	fields := s.GetFields()
	m := make(map[string]any, len(fields))
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		v := fields[name]
		if _, ok := v.GetKind().(*structpb.Value_StructValue); ok {
			return nil, &fieldError{field: path + "." + name, err: fmt.Errorf("%w: an object is not a row value (want a number, string, bool, null or a list of one kind)", engine.ErrTypeMismatch)}
		}
		m[name] = rowValue(v)
	}
	row, err := engine.RowFromMap(m)
	if err == nil {
		return row, nil
	}
	// RowFromMap names the field in its message; find it again to name it our way.
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if _, ferr := engine.RowFromMap(map[string]any{name: m[name]}); ferr != nil {
			if inner := unwrapOnce(ferr); inner != nil {
				ferr = inner
			}
			return nil, &fieldError{field: path + "." + name, err: ferr}
		}
	}
	return nil, &fieldError{field: path, err: err}
}

// rowFromTyped converts an input row with typed values. The error is a *fieldError naming
// the field as path.name.
func rowFromTyped(path string, r *ospreyv1.Row) (engine.Row, error) {
	fields := r.GetFields()
	row := make(engine.Row, len(fields))
	for name, tv := range fields {
		v, err := valueFromTyped(tv)
		if err != nil {
			// Name the first bad field in name order, whatever the map's order.
			for _, name := range slices.Sorted(maps.Keys(fields)) {
				if _, err := valueFromTyped(fields[name]); err != nil {
					return nil, &fieldError{field: path + "." + name, err: err}
				}
			}
		}
		row[name] = v
	}
	return row, nil
}

// valueFromTyped converts a typed value of an input: every kind but a window (which is
// what reads return, never an input). Floats must be finite; an unset value is null.
func valueFromTyped(v *ospreyv1.Value) (engine.Value, error) {
	finite := func(f float64) error {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: %v is not a value (floats are finite)", engine.ErrTypeMismatch, f)
		}
		return nil
	}
	times := func(ts []*timestamppb.Timestamp) ([]time.Time, error) {
		out := make([]time.Time, len(ts))
		for i, t := range ts {
			tt, err := timeFromProto(t)
			if err != nil || t == nil {
				return nil, fmt.Errorf("%w: element %d: not a timestamp", engine.ErrTypeMismatch, i)
			}
			out[i] = tt
		}
		return out, nil
	}
	switch k := v.GetKind().(type) {
	case nil:
		return engine.Null, nil
	case *ospreyv1.Value_IntValue:
		return engine.Int(k.IntValue), nil
	case *ospreyv1.Value_FloatValue:
		if err := finite(k.FloatValue); err != nil {
			return engine.Null, err
		}
		return engine.Float(k.FloatValue), nil
	case *ospreyv1.Value_StringValue:
		return engine.String(k.StringValue), nil
	case *ospreyv1.Value_BoolValue:
		return engine.Bool(k.BoolValue), nil
	case *ospreyv1.Value_TimestampValue:
		t, err := timeFromProto(k.TimestampValue)
		if err != nil {
			return engine.Null, fmt.Errorf("%w: %v", engine.ErrTypeMismatch, err)
		}
		return engine.Timestamp(t), nil
	case *ospreyv1.Value_IntList:
		return engine.IntList(slices.Clone(k.IntList.GetValues())), nil
	case *ospreyv1.Value_FloatList:
		for i, f := range k.FloatList.GetValues() {
			if err := finite(f); err != nil {
				return engine.Null, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return engine.FloatList(slices.Clone(k.FloatList.GetValues())), nil
	case *ospreyv1.Value_StringList:
		return engine.StringList(slices.Clone(k.StringList.GetValues())), nil
	case *ospreyv1.Value_BoolList:
		return engine.BoolList(slices.Clone(k.BoolList.GetValues())), nil
	case *ospreyv1.Value_TimestampList:
		ts, err := times(k.TimestampList.GetValues())
		if err != nil {
			return engine.Null, err
		}
		return engine.TimestampList(ts), nil
	case *ospreyv1.Value_Window:
		return engine.Null, fmt.Errorf("%w: a window is what a read returns, not an input value", engine.ErrTypeMismatch)
	}
	return engine.Null, fmt.Errorf("%w: unsupported value %T", engine.ErrTypeMismatch, v.GetKind())
}

// unwrapOnce returns the error err wraps with a single %w, or nil.
func unwrapOnce(err error) error {
	u, ok := err.(interface{ Unwrap() error })
	if !ok {
		return nil
	}
	return u.Unwrap()
}

// featureToProto describes an applied feature.
func featureToProto(f *engine.Feature) *ospreyv1.Feature {
	out := &ospreyv1.Feature{
		Fqn:          f.FQN,
		Primitive:    f.Primitive.String(),
		Granularity:  durationToProto(f.Granularity),
		Freshness:    durationToProto(f.Freshness),
		Staleness:    durationToProto(f.Staleness),
		Timeout:      durationToProto(f.Timeout),
		Keys:         slices.Clone(f.Keys),
		DataSource:   f.DataSource,
		Builder:      &ospreyv1.Builder{Kind: f.Builder.Kind, Module: f.Builder.Module, Plugin: f.Builder.Plugin, Function: f.Builder.Function},
		Dependencies: slices.Clone(f.Dependencies),
		Labels:       maps.Clone(f.Labels),
	}
	for _, a := range f.Aggrs.Fns() {
		out.Aggregations = append(out.Aggregations, a.String())
	}
	if kp := f.KeepPrevious; kp != nil {
		out.KeepPrevious = &ospreyv1.KeepPrevious{Versions: int32(kp.Versions), Over: durationToProto(kp.Over)}
	}
	for _, m := range f.Middlewares {
		mw := &ospreyv1.Middleware{Name: m.Name, Module: m.Module, Priority: int32(m.Priority), Plugin: m.Plugin, Function: m.Function}
		for _, st := range m.Stages {
			mw.Stages = append(mw.Stages, st.String())
		}
		out.Middlewares = append(out.Middlewares, mw)
	}
	return out
}

// dataSourceToProto describes an applied data source.
// pluginToProto converts an applied plugin's manifest.
func pluginToProto(p *manifest.Plugin) *ospreyv1.Plugin {
	out := &ospreyv1.Plugin{Fqn: p.FQN, Module: p.Module, AllowedHosts: slices.Clone(p.AllowedHosts), Labels: maps.Clone(p.Labels),
		Limits: &ospreyv1.PluginLimits{Timeout: durationToProto(p.Limits.Timeout), MemoryPages: p.Limits.MemoryPages,
			HttpResponseBytes: p.Limits.HTTPResponseBytes, OutputBytes: p.Limits.OutputBytes}}
	for _, fn := range p.Functions {
		out.Functions = append(out.Functions, &ospreyv1.PluginFunction{Name: fn.Name, Role: string(fn.Role)})
	}
	return out
}

// egressToProto lists an egress without its configuration's values (they may be secrets).
func egressToProto(eg *manifest.Egress) *ospreyv1.Egress {
	return &ospreyv1.Egress{Fqn: eg.FQN, Type: eg.Type, ConfigKeys: slices.Sorted(maps.Keys(eg.Config)), Labels: maps.Clone(eg.Labels)}
}

func dataSourceToProto(ds *engine.DataSource) *ospreyv1.DataSource {
	return &ospreyv1.DataSource{
		Fqn:            ds.FQN,
		Kind:           ds.Kind,
		KeyFields:      slices.Clone(ds.KeyFields),
		TimestampField: ds.TimestampField,
		Schema:         ds.Schema,
		Labels:         maps.Clone(ds.Labels),
	}
}

// sentToProto converts a message a dry run would send.
func sentToProto(env *engine.Envelope) *ospreyv1.SentMessage {
	m := &ospreyv1.SentMessage{ToFqn: env.To.FQN, ToKeys: env.To.Keys, Egress: env.Egress,
		Due: timeToProto(env.Due), Token: env.Token, Hops: int32(min(env.Hops, math.MaxInt32))}
	if env.Egress == "" {
		m.Value = valueToProto(env.Value)
	} else {
		m.Row = make(map[string]*ospreyv1.Value, len(env.Row))
		for name, v := range env.Row {
			m.Row[name] = valueToProto(v)
		}
	}
	return m
}
