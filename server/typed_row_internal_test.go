package server

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// TestRowFromTyped: a typed row's values arrive exactly — ints beyond ±2^53 included — and
// what is not an input value is refused, naming the field.
func TestRowFromTyped(t *testing.T) {
	ts := time.Date(2026, 12, 1, 10, 0, 0, 1, time.UTC)
	i := func(n int64) *ospreyv1.Value { return &ospreyv1.Value{Kind: &ospreyv1.Value_IntValue{IntValue: n}} }
	in := &ospreyv1.Row{Fields: map[string]*ospreyv1.Value{
		"above_2_53": i(1<<53 + 1), "max": i(math.MaxInt64), "min": i(math.MinInt64),
		"f":    {Kind: &ospreyv1.Value_FloatValue{FloatValue: 0.1}},
		"s":    {Kind: &ospreyv1.Value_StringValue{StringValue: "x"}},
		"ts":   {Kind: &ospreyv1.Value_TimestampValue{TimestampValue: timestamppb.New(ts)}},
		"ints": {Kind: &ospreyv1.Value_IntList{IntList: &ospreyv1.IntList{Values: []int64{math.MaxInt64, -1}}}},
	}}
	row, err := rowFromTyped("typed_row", in)
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Row{
		"above_2_53": engine.Int(1<<53 + 1), "max": engine.Int(math.MaxInt64), "min": engine.Int(math.MinInt64),
		"f": engine.Float(0.1), "s": engine.String("x"), "ts": engine.Timestamp(ts),
		"ints": engine.IntList([]int64{math.MaxInt64, -1}),
	}
	for name, v := range want {
		if !row[name].Equal(v) {
			t.Errorf("%s = %v; want %v", name, row[name], v)
		}
	}
	for _, tc := range []struct {
		v    *ospreyv1.Value
		want string
	}{
		{&ospreyv1.Value{Kind: &ospreyv1.Value_FloatValue{FloatValue: math.Inf(1)}}, "floats are finite"},
		{&ospreyv1.Value{Kind: &ospreyv1.Value_Window{Window: &ospreyv1.WindowResult{}}}, "a window is what a read returns"},
	} {
		_, err := rowFromTyped("typed_rows[2]", &ospreyv1.Row{Fields: map[string]*ospreyv1.Value{"bad": tc.v}})
		var fe *fieldError
		if !errors.As(err, &fe) || fe.field != "typed_rows[2].bad" || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, engine.ErrTypeMismatch) {
			t.Errorf("%v: err = %v; want a type mismatch of typed_rows[2].bad with %q", tc.v, err, tc.want)
		}
	}
}
