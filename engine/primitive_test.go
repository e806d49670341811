package engine

import (
	"strings"
	"testing"
)

func TestParsePrimitive(t *testing.T) {
	tests := []struct {
		in   string
		want Primitive
	}{
		{"int", PrimitiveInt}, {"integer", PrimitiveInt}, {"int64", PrimitiveInt},
		{"float", PrimitiveFloat}, {"double", PrimitiveFloat}, {"float64", PrimitiveFloat},
		{"string", PrimitiveString}, {"text", PrimitiveString},
		{"bool", PrimitiveBool}, {"boolean", PrimitiveBool},
		{"timestamp", PrimitiveTimestamp}, {"time", PrimitiveTimestamp}, {"datetime", PrimitiveTimestamp},
		{"[]int", PrimitiveIntList}, {"[]integer", PrimitiveIntList},
		{"[]float", PrimitiveFloatList}, {"[]double", PrimitiveFloatList},
		{"[]string", PrimitiveStringList}, {"[]text", PrimitiveStringList},
		{"[]bool", PrimitiveBoolList}, {"[]boolean", PrimitiveBoolList},
		{"[]timestamp", PrimitiveTimestampList}, {"[]datetime", PrimitiveTimestampList},
	}
	for _, tt := range tests {
		got, err := ParsePrimitive(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePrimitive(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "[]", "[][]int", "Int", "list<int>", "[]unknown", "decimal", "ints", " int", "[] int", "unknown"} {
		got, err := ParsePrimitive(bad)
		if err == nil || got != PrimitiveUnknown {
			t.Errorf("ParsePrimitive(%q) = %v, %v; want an error", bad, got, err)
			continue
		}
		if !strings.Contains(err.Error(), "want int, float, string, bool, timestamp or a list of one") {
			t.Errorf("ParsePrimitive(%q) error %q does not list the primitives", bad, err)
		}
	}
}

func TestPrimitiveStringRoundTrip(t *testing.T) {
	for p := PrimitiveInt; p <= PrimitiveTimestampList; p++ {
		back, err := ParsePrimitive(p.String())
		if err != nil || back != p {
			t.Errorf("ParsePrimitive(%v.String()) = %v, %v", p, back, err)
		}
	}
	if s := PrimitiveUnknown.String(); s != "unknown" {
		t.Errorf("PrimitiveUnknown.String() = %q", s)
	}
	if s := Primitive(200).String(); s != "primitive(200)" {
		t.Errorf("Primitive(200).String() = %q", s)
	}
}

func TestPrimitiveProperties(t *testing.T) {
	tests := []struct {
		p                    Primitive
		valid, list, numeric bool
		elem, listOf         Primitive
	}{
		{PrimitiveUnknown, false, false, false, PrimitiveUnknown, PrimitiveUnknown},
		{PrimitiveInt, true, false, true, PrimitiveInt, PrimitiveIntList},
		{PrimitiveFloat, true, false, true, PrimitiveFloat, PrimitiveFloatList},
		{PrimitiveString, true, false, false, PrimitiveString, PrimitiveStringList},
		{PrimitiveBool, true, false, false, PrimitiveBool, PrimitiveBoolList},
		{PrimitiveTimestamp, true, false, false, PrimitiveTimestamp, PrimitiveTimestampList},
		{PrimitiveIntList, true, true, false, PrimitiveInt, PrimitiveIntList},
		{PrimitiveFloatList, true, true, false, PrimitiveFloat, PrimitiveFloatList},
		{PrimitiveStringList, true, true, false, PrimitiveString, PrimitiveStringList},
		{PrimitiveBoolList, true, true, false, PrimitiveBool, PrimitiveBoolList},
		{PrimitiveTimestampList, true, true, false, PrimitiveTimestamp, PrimitiveTimestampList},
		{Primitive(11), false, false, false, Primitive(11), Primitive(11)},
	}
	for _, tt := range tests {
		if got := tt.p.Valid(); got != tt.valid {
			t.Errorf("%v.Valid() = %v", tt.p, got)
		}
		if got := tt.p.IsList(); got != tt.list {
			t.Errorf("%v.IsList() = %v", tt.p, got)
		}
		if got := tt.p.IsNumeric(); got != tt.numeric {
			t.Errorf("%v.IsNumeric() = %v", tt.p, got)
		}
		if got := tt.p.Elem(); got != tt.elem {
			t.Errorf("%v.Elem() = %v, want %v", tt.p, got, tt.elem)
		}
		if got := tt.p.List(); got != tt.listOf {
			t.Errorf("%v.List() = %v, want %v", tt.p, got, tt.listOf)
		}
		if tt.valid && (tt.p.List().Elem() != tt.p.Elem() || tt.p.Elem().List() != tt.p.List()) {
			t.Errorf("%v: List and Elem are not inverse", tt.p)
		}
	}
}
