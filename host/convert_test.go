package host

import (
	"math"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
)

// TestKindsAreTags: appendValue writes a scalar's engine kind as its ABI tag.
func TestKindsAreTags(t *testing.T) {
	for k, tag := range map[engine.Kind]abi.Tag{
		engine.KindNull: abi.TagNull, engine.KindInt: abi.TagInt, engine.KindFloat: abi.TagFloat,
		engine.KindString: abi.TagString, engine.KindBool: abi.TagBool, engine.KindTimestamp: abi.TagTimestamp,
	} {
		if byte(k) != byte(tag) {
			t.Errorf("kind %v is %d, its tag %d", k, k, tag)
		}
	}
}

// TestAppendValue: appendValue's encoding is abi.AppendValue's, and decodes back, for every
// kind.
func TestAppendValue(t *testing.T) {
	for _, v := range []engine.Value{
		engine.Null, engine.Int(0), engine.Int(-1), engine.Int(math.MaxInt64), engine.Float(-0.5),
		engine.Float(math.SmallestNonzeroFloat64), engine.String(""), engine.String("é\x00x"),
		engine.Bool(true), engine.Bool(false), engine.Timestamp(time.Unix(-5, 7)),
		engine.IntList([]int64{1, -2}), engine.FloatList([]float64{0.25}), engine.StringList([]string{"a", ""}),
		engine.BoolList([]bool{true}), engine.TimestampList([]time.Time{time.Unix(1, 2)}),
	} {
		got := appendValue([]byte{0xAA}, v)
		want := abi.AppendValue([]byte{0xAA}, valueToABI(v))
		if string(got) != string(want) {
			t.Errorf("%v: appendValue % x, abi.AppendValue % x", v, got, want)
			continue
		}
		d := abi.NewDecoder(got[1:])
		back, err := valueToEngine(d.Value())
		if err != nil || d.Done() != nil || !back.Equal(v) {
			t.Errorf("%v: decoded back as %v (%v, %v)", v, back, err, d.Done())
		}
	}
}

// TestScalarResponse: the fast path agrees with the general decoder on every response it
// takes, and leaves the others to it.
func TestScalarResponse(t *testing.T) {
	ok := func(v abi.Value, flags ...byte) []byte {
		return append(abi.AppendValue([]byte{abi.StatusOK}, v), flags...)
	}
	for _, tc := range []struct {
		name string
		out  []byte
		fast bool
	}{
		{"int", ok(abi.Int(-7), 0), true},
		{"float", ok(abi.Float(2.5), 0), true},
		{"timestamp", ok(abi.Timestamp(1_700_000_000_123), 0), true},
		{"bool true", ok(abi.Bool(true), 0), true},
		{"bool false", ok(abi.Bool(false), 0), true},
		{"bool 2", []byte{abi.StatusOK, byte(abi.TagBool), 2, 0}, false},
		{"NaN", ok(abi.Float(math.NaN()), 0), false},
		{"infinity", ok(abi.Float(math.Inf(-1)), 0), false},
		{"string", ok(abi.String("x"), 0), false},
		{"null", ok(abi.Null(), 0), false},
		{"with keys", ok(abi.Int(1), abi.FlagKeys, 0), false},
		{"with a timestamp", abi.AppendI64(ok(abi.Int(1), abi.FlagTimestamp), 5), false},
		{"unknown flags", ok(abi.Int(1), 0x80), false},
		{"trailing byte", ok(abi.Int(1), 0, 0), false},
		{"truncated", ok(abi.Int(1))[:9], false},
		{"error", abi.AppendErrorResponse(nil, abi.StatusError, "no"), false},
	} {
		v, fast := scalarResponse(tc.out)
		if fast != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.name, fast, tc.fast)
			continue
		}
		if !fast {
			continue
		}
		var d abi.Decoder
		d.Reset(tc.out)
		d.Response()
		want, err := valueToEngine(d.ProgramResult().Value)
		if err != nil || d.Done() != nil || !v.Equal(want) {
			t.Errorf("%s: fast path %v, decoder %v (%v, %v)", tc.name, v, want, err, d.Done())
		}
	}
}
