package server

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// TestValueSlab converts a row of every kind, more cells than the slab was sized for, and
// checks each message against valueToProto's after the whole row is made: no cell shares
// or overwrites another's message.
func TestValueSlab(t *testing.T) {
	some := engine.AggrSet(0).With(engine.AggrCount).With(engine.AggrAvg)
	kinds := []engine.Value{
		engine.Null,
		engine.Int(-7),
		engine.Float(0.5),
		engine.String("é"),
		engine.Bool(true),
		engine.Bool(false),
		engine.Timestamp(time.Unix(1700000000, 5)),
		engine.IntList([]int64{1, 2}),
		engine.FloatList([]float64{1, 2.5}),
		engine.StringList([]string{"a"}),
		engine.BoolList([]bool{true}),
		engine.TimestampList([]time.Time{time.Unix(1, 0)}),
		engine.Window(engine.WindowResult{Aggrs: some, Sum: 3, Count: 2, Min: 1, Max: 2}),
		engine.Window(engine.WindowResult{Aggrs: engine.AllAggrs, Sum: 10, Count: 4, Min: -1, Max: 7}),
		engine.Window(engine.WindowResult{}),
	}
	for _, n := range []int{1, 3, len(kinds), 2 * len(kinds)} {
		vs := newValueSlab(n)
		var vals []engine.Value
		var got []*ospreyv1.Value
		for i := range 3 * len(kinds) { // each kind three times, with distinct numbers
			v := kinds[i%len(kinds)]
			switch v.Kind() {
			case engine.KindInt:
				v = engine.Int(int64(i))
			case engine.KindFloat:
				v = engine.Float(float64(i) / 4)
			case engine.KindWindow:
				w := v.Window()
				w.Sum += float64(i)
				v = engine.Window(w)
			}
			vals, got = append(vals, v), append(got, vs.value(v))
		}
		for i, v := range vals {
			if want := valueToProto(v); !proto.Equal(got[i], want) {
				t.Errorf("n=%d, cell %d (%v): got %v, want %v", n, i, v.Kind(), got[i], want)
			}
		}
	}
}
