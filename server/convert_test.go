package server_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/server"
)

func TestValueToProto(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tc := range []struct {
		v    engine.Value
		json string
	}{
		{engine.Null, `null`},
		{engine.Int(-7), `{"intValue":"-7"}`},
		{engine.Float(0.5), `{"floatValue":0.5}`},
		{engine.String("é"), `{"stringValue":"é"}`},
		{engine.Bool(true), `{"boolValue":true}`},
		{engine.Timestamp(ts), `{"timestampValue":"2026-01-02T03:04:05.000000006Z"}`},
		{engine.IntList([]int64{1, 2}), `{"intList":{"values":["1","2"]}}`},
		{engine.FloatList([]float64{1.5}), `{"floatList":{"values":[1.5]}}`},
		{engine.StringList([]string{"a"}), `{"stringList":{"values":["a"]}}`},
		{engine.BoolList([]bool{false}), `{"boolList":{"values":[false]}}`},
		{engine.TimestampList([]time.Time{ts}), `{"timestampList":{"values":["2026-01-02T03:04:05.000000006Z"]}}`},
		{engine.Window(engine.WindowResult{Aggrs: engine.AggrSet(0).With(engine.AggrCount).With(engine.AggrAvg), Sum: 3, Count: 2, Min: 1, Max: 2}),
			`{"window":{"count":2,"avg":1.5}}`},
		{engine.Window(engine.WindowResult{Aggrs: engine.AllAggrs}), `{"window":{"sum":0,"count":0,"min":0,"max":0,"avg":0}}`},
	} {
		p := server.ValueToProto(tc.v)
		got := "null"
		if p != nil {
			b, err := protojson.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			got = compactJSON(t, b)
		}
		if got != compactJSON(t, []byte(tc.json)) {
			t.Errorf("%v: %s, want %s", tc.v, got, tc.json)
		}
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func TestValueFromProto(t *testing.T) {
	list, _ := structpb.NewList([]any{1.0, "x", true})
	nested, _ := structpb.NewList([]any{[]any{1.0}})
	obj, _ := structpb.NewStruct(map[string]any{"a": 1.0})
	for _, tc := range []struct {
		in   *structpb.Value
		want any
		err  string
	}{
		{structpb.NewNumberValue(42), 42.0, ""},
		{structpb.NewStringValue("42"), "42", ""}, // a string stays a string
		{structpb.NewBoolValue(true), true, ""},
		{structpb.NewListValue(list), []any{1.0, "x", true}, ""},
		{nil, nil, "missing"},
		{structpb.NewNullValue(), nil, "missing"},
		{structpb.NewListValue(nested), nil, "element 0"},
		{structpb.NewStructValue(obj), nil, "object"},
	} {
		got, err := server.ValueFromProto(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestRowFromProto(t *testing.T) {
	s, _ := structpb.NewStruct(map[string]any{
		"whole": 3.0, "fraction": 2.5, "big": 1e300, "name": "x", "ok": true, "none": nil,
		"ints": []any{1.0, 2.0}, "mixed": []any{1.0, 2.5},
	})
	row, err := server.RowFromProto("rows[0]", s)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]engine.Value{
		"whole": engine.Int(3), "fraction": engine.Float(2.5), "big": engine.Float(1e300), "name": engine.String("x"),
		"ok": engine.Bool(true), "none": engine.Null, "ints": engine.IntList([]int64{1, 2}), "mixed": engine.FloatList([]float64{1, 2.5}),
	} {
		if got := row[field]; !got.Equal(want) {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	bad, _ := structpb.NewStruct(map[string]any{"a": 1.0, "z": []any{"x", 1.0}})
	if _, err := server.RowFromProto("rows[4]", bad); err == nil || !strings.HasPrefix(err.Error(), "rows[4].z: ") {
		t.Fatalf("mixed list: %v", err)
	}
}
