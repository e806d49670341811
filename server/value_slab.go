package server

import (
	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// valueSlab converts the values of up to n cells (one row of a GetMany) as valueToProto
// does, taking the messages of the common kinds — scalars and windows — from slices
// allocated once per kind for the row instead of two to eight allocations per cell. The
// messages it returns share those slices: they live as long as any of them is referenced,
// which for the cells of one response is the response's life. A valueSlab is not safe for
// concurrent use: each row (one goroutine's cells) has its own. See RATIONALE.md, "A
// feature vector's messages in slabs".
type valueSlab struct {
	n       int
	values  []ospreyv1.Value
	floats  []ospreyv1.Value_FloatValue
	ints    []ospreyv1.Value_IntValue
	strs    []ospreyv1.Value_StringValue
	bools   []ospreyv1.Value_BoolValue
	windows []ospreyv1.Value_Window
	results []ospreyv1.WindowResult
	aggrs   []float64 // five per window result at most
}

// newValueSlab returns a slab for n cells.
func newValueSlab(n int) *valueSlab { return &valueSlab{n: n} }

// take returns the next element of *s, allocating n of them on first use (or when a row
// has more cells than announced, which a caller should not do, another n).
func take[T any](s *[]T, n int) *T {
	if len(*s) == cap(*s) {
		*s = make([]T, 0, max(n, 1))
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}

// value converts v as valueToProto does.
func (vs *valueSlab) value(v engine.Value) *ospreyv1.Value {
	var out *ospreyv1.Value
	switch v.Kind() {
	case engine.KindInt:
		k := take(&vs.ints, vs.n)
		k.IntValue = v.Int()
		out = take(&vs.values, vs.n)
		out.Kind = k
	case engine.KindFloat:
		k := take(&vs.floats, vs.n)
		k.FloatValue = v.Float()
		out = take(&vs.values, vs.n)
		out.Kind = k
	case engine.KindString:
		k := take(&vs.strs, vs.n)
		k.StringValue = v.Str()
		out = take(&vs.values, vs.n)
		out.Kind = k
	case engine.KindBool:
		k := take(&vs.bools, vs.n)
		k.BoolValue = v.Bool()
		out = take(&vs.values, vs.n)
		out.Kind = k
	case engine.KindWindow:
		k := take(&vs.windows, vs.n)
		k.Window = vs.window(v.Window())
		out = take(&vs.values, vs.n)
		out.Kind = k
	default: // null, timestamps and lists: rarer, and sized by the value
		out = valueToProto(v)
	}
	return out
}

// window converts r as windowToProto does.
func (vs *valueSlab) window(r engine.WindowResult) *ospreyv1.WindowResult {
	out := take(&vs.results, vs.n)
	for _, a := range r.Aggrs.Fns() {
		x := take(&vs.aggrs, 5*vs.n)
		*x = r.Get(a)
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
	return out
}
