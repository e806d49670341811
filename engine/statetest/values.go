package statetest

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

func testRoundTrip(e *env) {
	ts := e.now.Add(-time.Second).Truncate(time.Second).Add(123456789) // with nanoseconds
	long := strings.Repeat("osprey ", 10000)
	ns := func(y int, mo time.Month, d, h, mi, s, n int, loc *time.Location) time.Time {
		return time.Date(y, mo, d, h, mi, s, n, loc)
	}
	ist := time.FixedZone("IST", 5*3600+1800)
	cases := []struct {
		name string
		p    engine.Primitive
		v    engine.Value
	}{
		{"int/zero", engine.PrimitiveInt, engine.Int(0)},
		{"int/positive", engine.PrimitiveInt, engine.Int(42)},
		{"int/negative", engine.PrimitiveInt, engine.Int(-42)},
		{"int/max", engine.PrimitiveInt, engine.Int(math.MaxInt64)},
		{"int/min", engine.PrimitiveInt, engine.Int(math.MinInt64)},
		{"float/zero", engine.PrimitiveFloat, engine.Float(0)},
		{"float/negative", engine.PrimitiveFloat, engine.Float(-1.5)},
		{"float/pi", engine.PrimitiveFloat, engine.Float(math.Pi)},
		{"float/max", engine.PrimitiveFloat, engine.Float(math.MaxFloat64)},
		{"float/tiny", engine.PrimitiveFloat, engine.Float(math.SmallestNonzeroFloat64)},
		{"float/third", engine.PrimitiveFloat, engine.Float(1.0 / 3)},
		{"string/empty", engine.PrimitiveString, engine.String("")},
		{"string/ascii", engine.PrimitiveString, engine.String("hello")},
		{"string/unicode", engine.PrimitiveString, engine.String("héllo wörld 🦅 日本語")},
		{"string/separators", engine.PrimitiveString, engine.String(`a;b\c:d"e'f{g}h[i]`)},
		{"string/control", engine.PrimitiveString, engine.String("nul\x00tab\tnl\n")},
		{"string/long", engine.PrimitiveString, engine.String(long)},
		{"bool/true", engine.PrimitiveBool, engine.Bool(true)},
		{"bool/false", engine.PrimitiveBool, engine.Bool(false)},
		{"timestamp/nanoseconds", engine.PrimitiveTimestamp, engine.Timestamp(ns(2026, 1, 2, 3, 4, 5, 123456789, time.UTC))},
		{"timestamp/zone", engine.PrimitiveTimestamp, engine.Timestamp(ns(2026, 7, 1, 23, 59, 59, 999999999, ist))},
		{"timestamp/epoch", engine.PrimitiveTimestamp, engine.Timestamp(time.Unix(0, 0))},
		{"timestamp/before_epoch", engine.PrimitiveTimestamp, engine.Timestamp(ns(1900, 2, 3, 4, 5, 6, 7, time.UTC))},
		{"timestamp/last_ns_before_epoch", engine.PrimitiveTimestamp, engine.Timestamp(time.Unix(0, -1))},
		{"int_list/empty", engine.PrimitiveIntList, engine.IntList([]int64{})},
		{"int_list", engine.PrimitiveIntList, engine.IntList([]int64{1, -2, 0, math.MaxInt64, math.MinInt64})},
		{"float_list/empty", engine.PrimitiveFloatList, engine.FloatList([]float64{})},
		{"float_list", engine.PrimitiveFloatList, engine.FloatList([]float64{0.5, -0.25, math.MaxFloat64, 1.0 / 3})},
		{"string_list/empty", engine.PrimitiveStringList, engine.StringList([]string{})},
		{"string_list", engine.PrimitiveStringList, engine.StringList([]string{"", "a;b", `\`, "🦅", "a,b", "[]"})},
		{"bool_list/empty", engine.PrimitiveBoolList, engine.BoolList([]bool{})},
		{"bool_list", engine.PrimitiveBoolList, engine.BoolList([]bool{true, false, true})},
		{"timestamp_list/empty", engine.PrimitiveTimestampList, engine.TimestampList([]time.Time{})},
		{"timestamp_list", engine.PrimitiveTimestampList, engine.TimestampList([]time.Time{
			ns(2026, 1, 2, 3, 4, 5, 1, time.UTC), time.Unix(0, -1), ns(2030, 12, 31, 23, 59, 59, 999999999, ist)})},
	}
	features := map[engine.Primitive]*engine.Feature{}
	for i, c := range cases {
		f := features[c.p]
		if f == nil {
			f = e.feature("round_trip", c.p)
			features[c.p] = f
		}
		k := e.keys(f, "case"+strconv.Itoa(i))
		e.set(f, k, c.v, ts)
		v, gotTs, found := e.get(f, k, 0)
		switch {
		case !found:
			e.Errorf("%s: not found after Set", c.name)
		case v.Kind() != c.v.Kind():
			e.Errorf("%s: kind %s, want %s", c.name, v.Kind(), c.v.Kind())
		case !v.Equal(c.v):
			e.Errorf("%s: got %.200v, want %.200v", c.name, v, c.v)
		case !gotTs.Equal(ts):
			e.Errorf("%s: timestamp %v, want %v", c.name, gotTs, ts)
		}
	}
}

func testSetReplaces(e *env) {
	f := e.feature("set_replaces", engine.PrimitiveString)
	k := e.keys(f, "a")
	t1, t2 := e.now.Add(-2*time.Minute), e.now.Add(-time.Minute)
	e.set(f, k, engine.String("first"), t1)
	e.set(f, k, engine.String("second"), t2)
	e.wantGet(f, k, 0, engine.String("second"), t2)
	// A later timestamp replaces.
	t3 := e.now.Add(-time.Second)
	e.set(f, k, engine.String("third"), t3)
	e.wantGet(f, k, 0, engine.String("third"), t3)
	// Lists are replaced, not appended to.
	l := e.feature("set_replaces_list", engine.PrimitiveIntList)
	e.set(l, k, engine.IntList([]int64{1, 2, 3}), t1)
	e.set(l, k, engine.IntList([]int64{9}), t2)
	e.wantGet(l, k, 0, engine.IntList([]int64{9}), t2)
}

// listCase is one list primitive with three disjoint lists of it.
type listCase struct {
	p       engine.Primitive
	a, b, c engine.Value
	concat  func(vs ...engine.Value) engine.Value
}

func listCases() []listCase {
	t := func(n int) time.Time { return time.Date(2026, 3, 4, 5, 6, 7, n, time.UTC) }
	return []listCase{
		{engine.PrimitiveIntList, engine.IntList([]int64{1, 2}), engine.IntList([]int64{-3}), engine.IntList([]int64{4, 5, 6}),
			func(vs ...engine.Value) engine.Value { return engine.IntList(concat(vs, engine.Value.Ints)) }},
		{engine.PrimitiveFloatList, engine.FloatList([]float64{0.5, 1.5}), engine.FloatList([]float64{-2.25}), engine.FloatList([]float64{3, 4, 5}),
			func(vs ...engine.Value) engine.Value { return engine.FloatList(concat(vs, engine.Value.Floats)) }},
		{engine.PrimitiveStringList, engine.StringList([]string{"a", "b;c"}), engine.StringList([]string{""}), engine.StringList([]string{"🦅", `\`, "d"}),
			func(vs ...engine.Value) engine.Value { return engine.StringList(concat(vs, engine.Value.Strs)) }},
		{engine.PrimitiveBoolList, engine.BoolList([]bool{true, false}), engine.BoolList([]bool{true}), engine.BoolList([]bool{false, false, true}),
			func(vs ...engine.Value) engine.Value { return engine.BoolList(concat(vs, engine.Value.Bools)) }},
		{engine.PrimitiveTimestampList, engine.TimestampList([]time.Time{t(1), t(2)}), engine.TimestampList([]time.Time{t(3)}), engine.TimestampList([]time.Time{t(4), t(5), t(999999999)}),
			func(vs ...engine.Value) engine.Value { return engine.TimestampList(concat(vs, engine.Value.Times)) }},
	}
}

func concat[T any](vs []engine.Value, elems func(engine.Value) []T) []T {
	out := []T{}
	for _, v := range vs {
		out = append(out, elems(v)...)
	}
	return out
}

// emptyList returns an empty list of the kind of v.
func emptyList(c listCase) engine.Value { return c.concat() }

func testAppend(e *env) {
	for _, c := range listCases() {
		f := e.feature("append", c.p)
		k := e.keys(f, "a")
		t1, t2, t3 := e.now.Add(-3*time.Minute), e.now.Add(-2*time.Minute), e.now.Add(-time.Minute)
		if got := e.append(f, k, c.a, t1); !got.Equal(c.a) {
			e.Errorf("%s: Append to absent = %v, want %v", c.p, got, c.a)
		}
		e.wantGet(f, k, 0, c.a, t1)
		want := c.concat(c.a, c.b)
		if got := e.append(f, k, c.b, t2); !got.Equal(want) {
			e.Errorf("%s: second Append = %v, want %v", c.p, got, want)
		}
		e.wantGet(f, k, 0, want, t2)
		// An empty append changes nothing but the timestamp.
		if got := e.append(f, k, emptyList(c), t3); !got.Equal(want) {
			e.Errorf("%s: empty Append = %v, want %v", c.p, got, want)
		}
		e.wantGet(f, k, 0, want, t3)
		// Appending an empty list to an absent value makes an empty list.
		k2 := e.keys(f, "empty")
		if got := e.append(f, k2, emptyList(c), t1); got.Kind() != engine.Kind(c.p) || got.Len() != 0 {
			e.Errorf("%s: empty Append to absent = %v (%s), want an empty %s", c.p, got, got.Kind(), c.p)
		}
		e.wantGet(f, k2, 0, emptyList(c), t1)
		// Appending to a value written by Set.
		k3 := e.keys(f, "after_set")
		e.set(f, k3, c.c, t1)
		want = c.concat(c.c, c.a)
		if got := e.append(f, k3, c.a, t2); !got.Equal(want) {
			e.Errorf("%s: Append after Set = %v, want %v", c.p, got, want)
		}
	}
}

// testAppendImmutability checks that no Value handed out changes after later writes, which
// catches appends that write into a backing array shared with an earlier result.
func testAppendImmutability(e *env) {
	f := e.feature("append_immutable", engine.PrimitiveIntList)
	k := e.keys(f, "a")
	ts := e.now.Add(-time.Minute)
	var results []engine.Value
	var want []int64
	for i := range 100 {
		out := e.append(f, k, engine.IntList([]int64{int64(i)}), ts)
		want = append(want, int64(i))
		if !slices.Equal(out.Ints(), want) {
			e.Fatalf("Append #%d = %v, want %v", i, out, want)
		}
		results = append(results, out)
	}
	got, _, _ := e.get(f, k, 0)
	for i, r := range results {
		if !slices.Equal(r.Ints(), want[:i+1]) {
			e.Fatalf("the result of Append #%d changed to %v after later appends", i, r)
		}
	}
	// A reader holding the value sees it unchanged after the entity is replaced and appended to.
	e.set(f, k, engine.IntList([]int64{-1}), ts)
	e.append(f, k, engine.IntList([]int64{-2, -3}), ts)
	if !slices.Equal(got.Ints(), want) {
		e.Errorf("a value read by Get changed after Set and Append: %v", got)
	}
	e.wantGet(f, k, 0, engine.IntList([]int64{-1, -2, -3}), ts)
}

// testAppendStale is testIncrStale for Append.
func testAppendStale(e *env) {
	f := e.feature("append_stale", engine.PrimitiveStringList) // staleness 1h
	k := e.keys(f, "a")
	w := e.now.Add(time.Minute)
	// Stale relative to the write (written more than staleness before it): start afresh.
	old := e.append(f, k, engine.StringList([]string{"old"}), w.Add(-90*time.Minute))
	if got := e.append(f, k, engine.StringList([]string{"new"}), w); !got.Equal(engine.StringList([]string{"new"})) {
		e.Errorf("Append over a value stale relative to the write = %v, want [new]", got)
	}
	if !old.Equal(engine.StringList([]string{"old"})) {
		e.Errorf("earlier result changed to %v", old)
	}
	e.wantGet(f, k, 0, engine.StringList([]string{"new"}), w)
	// Exactly staleness before the write is stale too.
	k2 := e.keys(f, "boundary")
	e.append(f, k2, engine.StringList([]string{"old"}), w.Add(-time.Hour))
	if got := e.append(f, k2, engine.StringList([]string{"new"}), w); !got.Equal(engine.StringList([]string{"new"})) {
		e.Errorf("Append over a value exactly staleness older than the write = %v, want [new]", got)
	}
	// Older than the write but not by staleness: appended to.
	k3 := e.keys(f, "recent")
	e.append(f, k3, engine.StringList([]string{"a"}), w.Add(-59*time.Minute))
	if got := e.append(f, k3, engine.StringList([]string{"b"}), w); !got.Equal(engine.StringList([]string{"a", "b"})) {
		e.Errorf("Append over a value 59m older than the write = %v, want [a b]", got)
	}
}

func testAppendErrors(e *env) {
	scalar := e.feature("append_to_scalar", engine.PrimitiveInt)
	k := e.keys(scalar, "a")
	_, err := e.st.Append(e.ctx, scalar, k, engine.IntList([]int64{1}), e.now)
	e.wantErr("Append to an int feature", err, engine.ErrUnsupported, engine.ErrTypeMismatch)
	e.wantAbsent(scalar, k, 0)
	l := e.feature("append_wrong_kind", engine.PrimitiveIntList)
	_, err = e.st.Append(e.ctx, l, k, engine.StringList([]string{"x"}), e.now)
	e.wantErr("Append of a []string to an []int feature", err, engine.ErrTypeMismatch)
	e.wantAbsent(l, k, 0)
}

func testIncr(e *env) {
	i := e.feature("incr_int", engine.PrimitiveInt)
	k := e.keys(i, "a")
	t1, t2, t3 := e.now.Add(-3*time.Minute), e.now.Add(-2*time.Minute), e.now.Add(-time.Minute)
	if got := e.incr(i, k, engine.Int(5), t1); !got.Equal(engine.Int(5)) {
		e.Errorf("Incr from absent = %v, want 5", got)
	}
	if got := e.incr(i, k, engine.Int(-7), t2); !got.Equal(engine.Int(-2)) {
		e.Errorf("Incr by -7 = %v, want -2", got)
	}
	e.wantGet(i, k, 0, engine.Int(-2), t2)
	if got := e.incr(i, k, engine.Int(math.MaxInt64), t3); !got.Equal(engine.Int(math.MaxInt64 - 2)) {
		e.Errorf("Incr by MaxInt64 = %v, want %d", got, int64(math.MaxInt64-2))
	}
	e.wantGet(i, k, 0, engine.Int(math.MaxInt64-2), t3)

	// Incr adds to a value written by Set.
	k2 := e.keys(i, "after_set")
	e.set(i, k2, engine.Int(40), t1)
	if got := e.incr(i, k2, engine.Int(2), t2); !got.Equal(engine.Int(42)) {
		e.Errorf("Incr after Set 40 = %v, want 42", got)
	}

	fl := e.feature("incr_float", engine.PrimitiveFloat)
	if got := e.incr(fl, k, engine.Float(0.25), t1); !got.Equal(engine.Float(0.25)) {
		e.Errorf("float Incr from absent = %v, want 0.25", got)
	}
	if got := e.incr(fl, k, engine.Float(0.5), t2); !got.Equal(engine.Float(0.75)) {
		e.Errorf("float Incr = %v, want 0.75", got)
	}
	if got := e.incr(fl, k, engine.Float(-1.125), t3); !got.Equal(engine.Float(-0.375)) {
		e.Errorf("float Incr = %v, want -0.375", got)
	}
	e.wantGet(fl, k, 0, engine.Float(-0.375), t3)
}

// testIncrStale checks that Incr treats a value stale relative to the write as absent, and
// only such a value. The write is a minute in the future, so that every prior value that
// must count is younger than staleness by the wall clock too (a State may forget older ones).
func testIncrStale(e *env) {
	f := e.feature("incr_stale", engine.PrimitiveInt) // staleness 1h
	w := e.now.Add(time.Minute)
	tests := []struct {
		name  string
		prior time.Duration // how long before the write the prior value was written
		want  int64
	}{
		{"stale", 90 * time.Minute, 1},
		{"exactly_staleness", time.Hour, 1},
		{"just_inside", time.Hour - time.Millisecond, 11},
		{"recent", time.Minute, 11},
	}
	for _, tt := range tests {
		k := e.keys(f, tt.name)
		e.incr(f, k, engine.Int(10), w.Add(-tt.prior))
		if got := e.incr(f, k, engine.Int(1), w); !got.Equal(engine.Int(tt.want)) {
			e.Errorf("%s: Incr over a value %v older than the write = %v, want %d", tt.name, tt.prior, got, tt.want)
		}
		e.wantGet(f, k, 0, engine.Int(tt.want), w)
	}
	// The same for floats, and for a value written by Set.
	fl := e.feature("incr_stale_float", engine.PrimitiveFloat)
	k := e.keys(fl, "a")
	e.set(fl, k, engine.Float(100), w.Add(-2*time.Hour))
	if got := e.incr(fl, k, engine.Float(0.5), w); !got.Equal(engine.Float(0.5)) {
		e.Errorf("float Incr over a stale value = %v, want 0.5", got)
	}
}

func testIncrErrors(e *env) {
	i := e.feature("incr_err_int", engine.PrimitiveInt)
	fl := e.feature("incr_err_float", engine.PrimitiveFloat)
	s := e.feature("incr_err_string", engine.PrimitiveString)
	l := e.feature("incr_err_list", engine.PrimitiveIntList)
	k := e.keys(i, "a")
	cases := []struct {
		name string
		f    *engine.Feature
		by   engine.Value
	}{
		{"float into int", i, engine.Float(1)},
		{"int into float", fl, engine.Int(1)},
		{"string into int", i, engine.String("1")},
		{"null into int", i, engine.Null},
		{"int into string", s, engine.Int(1)},
		{"int into list", l, engine.Int(1)},
	}
	for _, c := range cases {
		_, err := e.st.Incr(e.ctx, c.f, k, c.by, e.now)
		e.wantErr("Incr "+c.name, err, engine.ErrTypeMismatch, engine.ErrUnsupported)
		if c.f.Primitive.IsNumeric() && !errors.Is(err, engine.ErrTypeMismatch) {
			e.Errorf("Incr %s: err = %v, want one wrapping %v", c.name, err, engine.ErrTypeMismatch)
		}
		e.wantAbsent(c.f, k, 0)
	}
}

// testIncrOverflow checks that an Incr whose result does not fit the feature's type fails
// with engine.ErrOverflow and leaves the stored value and its versions as they were.
func testIncrOverflow(e *env) {
	i := e.feature("incr_overflow_int", engine.PrimitiveInt, keepPrevious(1, time.Hour))
	fl := e.feature("incr_overflow_float", engine.PrimitiveFloat, keepPrevious(1, time.Hour))
	t0, t1, t2 := e.now.Add(-3*time.Minute), e.now.Add(-2*time.Minute), e.now.Add(-time.Minute)
	cases := []struct {
		name      string
		f         *engine.Feature
		start, by engine.Value
	}{
		{"int past max", i, engine.Int(math.MaxInt64), engine.Int(1)},
		{"int far past max", i, engine.Int(math.MaxInt64 - 1), engine.Int(math.MaxInt64)},
		{"int past min", i, engine.Int(math.MinInt64), engine.Int(-1)},
		{"int far past min", i, engine.Int(-2), engine.Int(math.MinInt64)},
		{"float to +Inf", fl, engine.Float(math.MaxFloat64), engine.Float(math.MaxFloat64)},
		{"float to -Inf", fl, engine.Float(-math.MaxFloat64), engine.Float(-math.MaxFloat64 / 2)},
	}
	for _, c := range cases {
		k := e.keys(c.f, c.name)
		zero := engine.Int(0)
		if c.f.Primitive == engine.PrimitiveFloat {
			zero = engine.Float(0)
		}
		e.set(c.f, k, zero, t0) // becomes @-1
		e.set(c.f, k, c.start, t1)
		out, err := e.st.Incr(e.ctx, c.f, k, c.by, t2)
		if !errors.Is(err, engine.ErrOverflow) || !errors.Is(err, engine.ErrTypeMismatch) {
			e.Errorf("Incr %s: %v + %v = %v, %v; want an error wrapping %v", c.name, c.start, c.by, out, err, engine.ErrOverflow)
		}
		e.wantGet(c.f, k, 0, c.start, t1) // nothing written: not the value, not its timestamp
		e.wantGet(c.f, k, 1, zero, t0)    // and the versions did not shift
	}
	// At the edge, not past it, succeeds.
	k := e.keys(i, "edge")
	e.set(i, k, engine.Int(math.MaxInt64-1), t1)
	if got := e.incr(i, k, engine.Int(1), t2); !got.Equal(engine.Int(math.MaxInt64)) {
		e.Errorf("Incr MaxInt64-1 by 1 = %v, want %d", got, int64(math.MaxInt64))
	}
	e.set(fl, k, engine.Float(math.MaxFloat64/2), t1)
	if got := e.incr(fl, k, engine.Float(math.MaxFloat64/2), t2); !got.Equal(engine.Float(math.MaxFloat64)) {
		e.Errorf("Incr MaxFloat64/2 by MaxFloat64/2 = %v, want %v", got, math.MaxFloat64)
	}
}

func testUpdate(e *env) {
	ts := e.now.Add(-time.Minute)
	s := e.feature("update_scalar", engine.PrimitiveString)
	k := e.keys(s, "a")
	for _, v := range []string{"x", "y"} {
		got, err := e.st.Update(e.ctx, s, k, engine.String(v), ts)
		if err != nil || !got.Value.Equal(engine.String(v)) || got.Superseded {
			e.Errorf("Update scalar %q = %+v, %v; want %q applied", v, got, err, v)
		}
	}
	e.wantGet(s, k, 0, engine.String("y"), ts)

	l := e.feature("update_list", engine.PrimitiveFloatList)
	if got, err := e.st.Update(e.ctx, l, k, engine.FloatList([]float64{1}), ts); err != nil || !got.Value.Equal(engine.FloatList([]float64{1})) {
		e.Errorf("Update list = %+v, %v; want [1]", got, err)
	}
	if got, err := e.st.Update(e.ctx, l, k, engine.FloatList([]float64{2, 3}), ts); err != nil || !got.Value.Equal(engine.FloatList([]float64{1, 2, 3})) {
		e.Errorf("second Update list = %+v, %v; want [1 2 3] (Update appends)", got, err)
	}
	e.wantGet(l, k, 0, engine.FloatList([]float64{1, 2, 3}), ts)

	for _, p := range []engine.Primitive{engine.PrimitiveFloat, engine.PrimitiveInt} {
		w := e.feature("update_window", p, windowed(time.Minute, time.Hour))
		v1, v2 := engine.Float(2.5), engine.Float(-1)
		if p == engine.PrimitiveInt {
			v1, v2 = engine.Int(3), engine.Int(-1)
		}
		for _, v := range []engine.Value{v1, v2} {
			got, err := e.st.Update(e.ctx, w, k, v, ts)
			if err != nil || !got.Value.IsNull() || got.Superseded {
				e.Errorf("Update windowed %s by %v = %+v, %v; want null, applied", p, v, got, err)
			}
		}
		id := engine.BucketID(ts, w.Granularity)
		bs := e.buckets(w, k, engine.WindowSpan{First: id, Last: id})
		x1, _ := v1.Number()
		if len(bs) != 1 {
			e.Errorf("Update windowed %s: buckets = %+v, want one", p, bs)
		} else {
			e.wantBucket(bs[0], id, x1-1, 2, -1, x1, ts)
		}
	}
}
