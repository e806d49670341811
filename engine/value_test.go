package engine

import (
	"math"
	"reflect"
	"testing"
	"time"
)

var (
	valueT0 = time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)
	valueT1 = time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)
)

// valueCases are one Value of every kind, with what their accessors must return.
var valueCases = []struct {
	name   string
	v      Value
	kind   Kind
	iface  any
	str    string
	length int
}{
	{"null", Null, KindNull, nil, "null", 0},
	{"zero Value", Value{}, KindNull, nil, "null", 0},
	{"int", Int(-42), KindInt, int64(-42), "-42", 0},
	{"float", Float(0.5), KindFloat, 0.5, "0.5", 0},
	{"string", String("a \"b\""), KindString, "a \"b\"", `"a \"b\""`, 0},
	{"empty string", String(""), KindString, "", `""`, 0},
	{"bool", Bool(true), KindBool, true, "true", 0},
	{"false", Bool(false), KindBool, false, "false", 0},
	{"timestamp", Timestamp(valueT0.In(time.FixedZone("X", 3600))), KindTimestamp, valueT0, "2026-01-02T15:04:05.123456789Z", 0},
	{"[]int", IntList([]int64{1, 2, 3}), KindIntList, []int64{1, 2, 3}, "[1 2 3]", 3},
	{"[]float", FloatList([]float64{0.5, -1}), KindFloatList, []float64{0.5, -1}, "[0.5 -1]", 2},
	{"[]string", StringList([]string{"a", "b c"}), KindStringList, []string{"a", "b c"}, `["a" "b c"]`, 2},
	{"[]bool", BoolList([]bool{true, false}), KindBoolList, []bool{true, false}, "[true false]", 2},
	{"[]timestamp", TimestampList([]time.Time{valueT0, valueT1}), KindTimestampList, []time.Time{valueT0, valueT1}, "[2026-01-02T15:04:05.123456789Z 2026-01-03T00:00:00Z]", 2},
	{"empty []int", IntList(nil), KindIntList, []int64(nil), "[]", 0},
	{"window", Window(WindowResult{Aggrs: AggrSet(0).With(AggrSum).With(AggrAvg), Sum: 3, Count: 2}), KindWindow,
		map[string]float64{"sum": 3, "avg": 1.5}, "{sum=3 avg=1.5}", 0},
}

func TestValueAccessors(t *testing.T) {
	for _, tt := range valueCases {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			if v.Kind() != tt.kind {
				t.Errorf("Kind() = %v, want %v", v.Kind(), tt.kind)
			}
			if v.IsNull() != (tt.kind == KindNull) {
				t.Errorf("IsNull() = %v", v.IsNull())
			}
			if got := v.Interface(); !reflect.DeepEqual(got, tt.iface) {
				t.Errorf("Interface() = %#v, want %#v", got, tt.iface)
			}
			if got := v.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := v.Len(); got != tt.length {
				t.Errorf("Len() = %d, want %d", got, tt.length)
			}
			// Each accessor returns the zero value for other kinds.
			checkZero := func(name string, is bool, got, zero any) {
				t.Helper()
				if !is && !reflect.DeepEqual(got, zero) {
					t.Errorf("%s() of a %v = %#v, want %#v", name, v.Kind(), got, zero)
				}
			}
			checkZero("Int", tt.kind == KindInt, v.Int(), int64(0))
			checkZero("Float", tt.kind == KindFloat, v.Float(), 0.0)
			checkZero("Str", tt.kind == KindString, v.Str(), "")
			checkZero("Bool", tt.kind == KindBool, v.Bool(), false)
			checkZero("Time", tt.kind == KindTimestamp, v.Time(), time.Time{})
			checkZero("Ints", tt.kind == KindIntList, v.Ints(), []int64(nil))
			checkZero("Floats", tt.kind == KindFloatList, v.Floats(), []float64(nil))
			checkZero("Strs", tt.kind == KindStringList, v.Strs(), []string(nil))
			checkZero("Bools", tt.kind == KindBoolList, v.Bools(), []bool(nil))
			checkZero("Times", tt.kind == KindTimestampList, v.Times(), []time.Time(nil))
			checkZero("Window", tt.kind == KindWindow, v.Window(), WindowResult{})
			n, ok := v.Number()
			if ok != (tt.kind == KindInt || tt.kind == KindFloat) {
				t.Errorf("Number() ok = %v", ok)
			}
			if !ok && n != 0 {
				t.Errorf("Number() = %v for a %v", n, v.Kind())
			}
			if !v.Equal(v) {
				t.Errorf("%v is not Equal to itself", v)
			}
		})
	}
}

func TestValueScalars(t *testing.T) {
	if got := Int(math.MinInt64).Int(); got != math.MinInt64 {
		t.Errorf("Int(MinInt64) = %d", got)
	}
	if got := Int(math.MaxInt64).Int(); got != math.MaxInt64 {
		t.Errorf("Int(MaxInt64) = %d", got)
	}
	if got, ok := Int(-7).Number(); !ok || got != -7 {
		t.Errorf("Int(-7).Number() = %v, %v", got, ok)
	}
	if got, ok := Float(2.5).Number(); !ok || got != 2.5 {
		t.Errorf("Float(2.5).Number() = %v, %v", got, ok)
	}
	if got := Float(math.Inf(-1)).Float(); !math.IsInf(got, -1) {
		t.Errorf("Float(-Inf) = %v", got)
	}
	if got := Float(math.NaN()).String(); got != "NaN" {
		t.Errorf("Float(NaN).String() = %q", got)
	}
	if got := Float(1e21).String(); got != "1e+21" {
		t.Errorf("Float(1e21).String() = %q", got)
	}
	if !Bool(true).Bool() || Bool(false).Bool() {
		t.Error("Bool round trip")
	}
	// Timestamps keep nanoseconds and come back in UTC.
	local := time.Date(2026, 6, 1, 12, 0, 0, 1, time.FixedZone("CEST", 2*3600))
	got := Timestamp(local).Time()
	if !got.Equal(local) || got.Location() != time.UTC || got.Nanosecond() != 1 {
		t.Errorf("Timestamp(%v).Time() = %v", local, got)
	}
	before := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := Timestamp(before).Time(); !got.Equal(before) {
		t.Errorf("Timestamp(1900).Time() = %v", got)
	}
	w := WindowResult{Aggrs: AllAggrs, Sum: 1, Count: 1, Min: 1, Max: 1}
	if got := Window(w).Window(); got != w {
		t.Errorf("Window().Window() = %+v", got)
	}
}

func TestValueListsShareBacking(t *testing.T) {
	s := []int64{1, 2}
	v := IntList(s)
	if &v.Ints()[0] != &s[0] {
		t.Error("IntList copied its slice; the constructor takes ownership")
	}
}

func TestValueKindString(t *testing.T) {
	for _, tt := range []struct {
		k    Kind
		want string
	}{{KindNull, "null"}, {KindWindow, "window"}, {KindInt, "int"}, {KindTimestampList, "[]timestamp"}} {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", tt.k, got, tt.want)
		}
	}
	for p := PrimitiveInt; p <= PrimitiveTimestampList; p++ {
		if Kind(p).String() != p.String() {
			t.Errorf("Kind(%v) and Primitive spell differently", p)
		}
	}
}

func TestValueEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b Value
		want bool
	}{
		{"null", Null, Value{}, true},
		{"int", Int(1), Int(1), true},
		{"int differs", Int(1), Int(2), false},
		{"int vs float", Int(1), Float(1), false},
		{"int vs null", Int(0), Null, false},
		{"float", Float(0.1), Float(0.1), true},
		{"zero and negative zero", Float(0), Float(math.Copysign(0, -1)), true},
		{"NaN is not equal to itself", Float(math.NaN()), Float(math.NaN()), false},
		{"string", String("a"), String("a"), true},
		{"string differs", String("a"), String("b"), false},
		{"empty string vs null", String(""), Null, false},
		{"bool", Bool(true), Bool(true), true},
		{"bool differs", Bool(true), Bool(false), false},
		{"timestamp", Timestamp(valueT0), Timestamp(valueT0.In(time.FixedZone("X", -7200))), true},
		{"timestamp differs", Timestamp(valueT0), Timestamp(valueT1), false},
		{"[]int", IntList([]int64{1, 2}), IntList([]int64{1, 2}), true},
		{"[]int differs", IntList([]int64{1, 2}), IntList([]int64{2, 1}), false},
		{"[]int length", IntList([]int64{1}), IntList([]int64{1, 1}), false},
		{"nil and empty list", IntList(nil), IntList([]int64{}), true},
		{"[]int vs []float", IntList([]int64{1}), FloatList([]float64{1}), false},
		{"[]float", FloatList([]float64{0.5}), FloatList([]float64{0.5}), true},
		{"[]string", StringList([]string{"a"}), StringList([]string{"a"}), true},
		{"[]string differs", StringList([]string{"a"}), StringList([]string{"b"}), false},
		{"[]bool", BoolList([]bool{true}), BoolList([]bool{true}), true},
		{"[]timestamp in other zones", TimestampList([]time.Time{valueT0}), TimestampList([]time.Time{valueT0.In(time.FixedZone("Y", 600))}), true},
		{"[]timestamp differs", TimestampList([]time.Time{valueT0}), TimestampList([]time.Time{valueT1}), false},
		{"window", Window(WindowResult{Aggrs: AllAggrs, Sum: 1}), Window(WindowResult{Aggrs: AllAggrs, Sum: 1}), true},
		{"window differs", Window(WindowResult{Aggrs: AllAggrs, Sum: 1}), Window(WindowResult{Aggrs: AllAggrs, Sum: 2}), false},
		{"window aggrs differ", Window(WindowResult{Aggrs: AllAggrs}), Window(WindowResult{}), false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%s: %v.Equal(%v) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Equal(tt.a); got != tt.want {
			t.Errorf("%s: Equal is not symmetric", tt.name)
		}
	}
}
