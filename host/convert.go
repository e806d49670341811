package host

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
)

// aggrMask maps between the engine's AggrSet and the ABI's window mask (the bit positions
// are the same: 1 sum, 2 count, 3 min, 4 max, 5 avg).
func aggrMask(s engine.AggrSet) uint8 { return uint8(s) }

func valueToABI(v engine.Value) abi.Value {
	switch v.Kind() {
	case engine.KindInt:
		return abi.Int(v.Int())
	case engine.KindFloat:
		return abi.Float(v.Float())
	case engine.KindString:
		return abi.String(v.Str())
	case engine.KindBool:
		return abi.Bool(v.Bool())
	case engine.KindTimestamp:
		return abi.Timestamp(v.Time().UnixNano())
	case engine.KindIntList:
		return abi.Value{Tag: abi.TagIntList, Ints: v.Ints()}
	case engine.KindFloatList:
		return abi.Value{Tag: abi.TagFloatList, Floats: v.Floats()}
	case engine.KindStringList:
		return abi.Value{Tag: abi.TagStringList, Strs: v.Strs()}
	case engine.KindBoolList:
		return abi.Value{Tag: abi.TagBoolList, Bools: v.Bools()}
	case engine.KindTimestampList:
		ts := v.Times()
		ns := make([]int64, len(ts))
		for i, t := range ts {
			ns[i] = t.UnixNano()
		}
		return abi.Value{Tag: abi.TagTimestampList, Times: ns}
	case engine.KindWindow:
		w := v.Window()
		return abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: aggrMask(w.Aggrs), Sum: w.Sum, Count: w.Count, Min: w.Min, Max: w.Max}}
	}
	return abi.Null()
}

// valueToEngine converts a guest's value, refusing non-finite floats.
func valueToEngine(v abi.Value) (engine.Value, error) {
	if !v.Finite() {
		return engine.Null, fmt.Errorf("%w: NaN and infinities are not values", engine.ErrTypeMismatch)
	}
	switch v.Tag {
	case abi.TagNull:
		return engine.Null, nil
	case abi.TagInt:
		return engine.Int(v.I), nil
	case abi.TagFloat:
		return engine.Float(v.F), nil
	case abi.TagString:
		return engine.String(v.S), nil
	case abi.TagBool:
		return engine.Bool(v.I != 0), nil
	case abi.TagTimestamp:
		return engine.Timestamp(time.Unix(0, v.I)), nil
	case abi.TagIntList:
		return engine.IntList(v.Ints), nil
	case abi.TagFloatList:
		return engine.FloatList(v.Floats), nil
	case abi.TagStringList:
		return engine.StringList(v.Strs), nil
	case abi.TagBoolList:
		return engine.BoolList(v.Bools), nil
	case abi.TagTimestampList:
		ts := make([]time.Time, len(v.Times))
		for i, n := range v.Times {
			ts[i] = time.Unix(0, n).UTC()
		}
		return engine.TimestampList(ts), nil
	case abi.TagWindow:
		return engine.Window(engine.WindowResult{Aggrs: engine.AggrSet(v.W.Mask) & engine.AllAggrs, Sum: v.W.Sum, Count: v.W.Count, Min: v.W.Min, Max: v.W.Max}), nil
	}
	return engine.Null, fmt.Errorf("%w: unknown value tag %d", engine.ErrTypeMismatch, v.Tag)
}

func keysToEngine(kvs []abi.KV) engine.Keys {
	keys := make(engine.Keys, len(kvs))
	for _, kv := range kvs {
		keys[kv.Name] = kv.Value
	}
	return keys
}

// appendKeys encodes engine keys (map order: the ABI promises no order).
func appendKeys(b []byte, keys engine.Keys) []byte {
	b = abi.AppendUvarint(b, uint64(len(keys)))
	for k, v := range keys {
		b = abi.AppendString(b, k)
		b = abi.AppendString(b, v)
	}
	return b
}

// appendRow encodes a row without building an intermediate slice.
func appendRow(b []byte, row engine.Row) []byte {
	b = abi.AppendUvarint(b, uint64(len(row)))
	for name, v := range row {
		b = abi.AppendString(b, name)
		b = appendValue(b, v)
	}
	return b
}

// scalarWidth is the payload size of the scalar kinds' encodings (ABI §5.2), whose tags
// are the engine's kinds: both number null to timestamp 0 to 5 (TestKindsAreTags).
var scalarWidth = [...]int{engine.KindNull: 0, engine.KindInt: 8, engine.KindFloat: 8, engine.KindBool: 1, engine.KindTimestamp: 8}

// appendValue encodes an engine value directly, without building an abi.Value (a large
// struct) for scalars: the per-field cost of encoding a row. Every fixed-size scalar takes
// the same path — tag, 8 bytes, cut to the kind's width — because a row comes from a map,
// whose random order made a switch on the kind mispredict (it was a quarter of the host's
// per-call time).
func appendValue(b []byte, v engine.Value) []byte {
	switch k := v.Kind(); {
	case k == engine.KindString:
		return abi.AppendString(append(b, byte(abi.TagString)), v.Str())
	case int(k) < len(scalarWidth) && k != engine.KindString:
		b = binary.LittleEndian.AppendUint64(append(b, byte(k)), v.Bits())
		return b[:len(b)-8+scalarWidth[k]]
	}
	return abi.AppendValue(b, valueToABI(v))
}
