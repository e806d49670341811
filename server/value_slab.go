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
	switch v.Kind() {
	case engine.KindInt, engine.KindFloat, engine.KindString, engine.KindBool, engine.KindWindow:
	default: // null, timestamps and lists: rarer, and sized by the value
		return valueToProto(v)
	}
	out := take(&vs.values, vs.n)
	switch v.Kind() {
	case engine.KindInt:
		k := take(&vs.ints, vs.n)
		k.IntValue, out.Kind = v.Int(), k
	case engine.KindFloat:
		k := take(&vs.floats, vs.n)
		k.FloatValue, out.Kind = v.Float(), k
	case engine.KindString:
		k := take(&vs.strs, vs.n)
		k.StringValue, out.Kind = v.Str(), k
	case engine.KindBool:
		k := take(&vs.bools, vs.n)
		k.BoolValue, out.Kind = v.Bool(), k
	case engine.KindWindow:
		k := take(&vs.windows, vs.n)
		k.Window = take(&vs.results, vs.n)
		fillWindow(k.Window, v.Window(), func(x float64) *float64 {
			p := take(&vs.aggrs, 5*vs.n)
			*p = x
			return p
		})
		out.Kind = k
	}
	return out
}
