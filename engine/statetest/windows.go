package statetest

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// testWindow writes into three buckets (with a gap) and reads spans that include and
// exclude them.
func testWindow(e *env) {
	const g = time.Minute
	f := e.feature("window", engine.PrimitiveFloat, windowed(g, 10*time.Minute))
	k, other := e.keys(f, "card;1"), e.keys(f, "card;2")
	base := engine.BucketID(e.now, g) - 6
	at := func(id int64, d time.Duration) time.Time { return engine.BucketStart(id, g).Add(d) }
	writes := []struct {
		id int64
		d  time.Duration
		x  float64
	}{
		{base, 20 * time.Second, 5},
		{base, time.Second, 1}, // out of order: Updated stays at the 20s write
		{base + 1, 59*time.Second + 999999999*time.Nanosecond, -2},
		{base + 3, 0, 10},
		{base + 3, 30 * time.Second, 3},
		{base + 3, 45 * time.Second, 7},
	}
	for _, w := range writes {
		e.windowAdd(f, k, w.x, at(w.id, w.d))
	}
	e.windowAdd(f, other, 1000, at(base+1, 0)) // another entity: never counted for k

	all := e.buckets(f, k, engine.WindowSpan{First: base, Last: base + 3})
	if len(all) != 3 {
		e.Fatalf("WindowBuckets over 3 written buckets = %+v", all)
	}
	e.wantBucket(all[0], base, 6, 2, 1, 5, at(base, 20*time.Second))
	e.wantBucket(all[1], base+1, -2, 1, -2, -2, at(base+1, 59*time.Second+999999999))
	e.wantBucket(all[2], base+3, 20, 3, 3, 10, at(base+3, 45*time.Second))
	span := engine.WindowSpan{First: base - 10, Last: base + 10}
	r, updated, ok := engine.Aggregate(e.buckets(f, k, span), span, engine.AllAggrs)
	want := engine.WindowResult{Aggrs: engine.AllAggrs, Sum: 24, Count: 6, Min: -2, Max: 10}
	if !ok || r != want || !updated.Equal(at(base+3, 45*time.Second)) {
		e.Errorf("Aggregate = %v, %v, %v; want %v at %v", r, updated, ok, want, at(base+3, 45*time.Second))
	}

	spans := []struct {
		name string
		span engine.WindowSpan
		ids  []int64
	}{
		{"last two", engine.WindowSpan{First: base + 1, Last: base + 3}, []int64{base + 1, base + 3}},
		{"first only", engine.WindowSpan{First: base, Last: base}, []int64{base}},
		{"gap", engine.WindowSpan{First: base + 2, Last: base + 2}, nil},
		{"before", engine.WindowSpan{First: base - 5, Last: base - 1}, nil},
		{"after", engine.WindowSpan{First: base + 4, Last: base + 9}, nil},
		{"inner edges", engine.WindowSpan{First: base + 1, Last: base + 2}, []int64{base + 1}},
		{"alive window", engine.AliveSpan(e.now, f.Staleness, f.Granularity), []int64{base, base + 1, base + 3}},
	}
	for _, s := range spans {
		var ids []int64
		for _, b := range e.buckets(f, k, s.span) {
			ids = append(ids, b.ID)
		}
		if !slices.Equal(ids, s.ids) {
			e.Errorf("WindowBuckets %s %+v = IDs %v, want %v", s.name, s.span, ids, s.ids)
		}
	}
	if bs := e.buckets(f, other, engine.WindowSpan{First: base, Last: base + 3}); len(bs) != 1 || bs[0].Sum != 1000 {
		e.Errorf("other entity's buckets = %+v, want the one with 1000", bs)
	}

	// An int windowed feature through WindowAdd.
	n := e.feature("window_int", engine.PrimitiveInt, windowed(g, 10*time.Minute))
	for _, x := range []float64{1, 2, 3} {
		e.windowAdd(n, k, x, at(base, 0))
	}
	if bs := e.buckets(n, k, engine.WindowSpan{First: base, Last: base}); len(bs) != 1 {
		e.Errorf("int window buckets = %+v", bs)
	} else {
		e.wantBucket(bs[0], base, 6, 3, 1, 3, at(base, 0))
	}
}

// testWindowBoundaries checks that a write lands in the bucket engine.BucketID names: the
// first nanosecond of a bucket belongs to it, the nanosecond before to the previous one.
func testWindowBoundaries(e *env) {
	const g = 10 * time.Second
	f := e.feature("window_bounds", engine.PrimitiveFloat, windowed(g, time.Hour))
	k := e.keys(f, "a")
	id := engine.BucketID(e.now, g) - 3
	start := engine.BucketStart(id, g)
	e.windowAdd(f, k, 1, start)
	e.windowAdd(f, k, 2, start.Add(-time.Nanosecond))
	e.windowAdd(f, k, 4, start.Add(g-time.Nanosecond))
	e.windowAdd(f, k, 8, start.Add(g))
	bs := e.buckets(f, k, engine.WindowSpan{First: id - 1, Last: id + 1})
	if len(bs) != 3 {
		e.Fatalf("buckets = %+v, want 3", bs)
	}
	e.wantBucket(bs[0], id-1, 2, 1, 2, 2, start.Add(-time.Nanosecond))
	e.wantBucket(bs[1], id, 5, 2, 1, 4, start.Add(g-time.Nanosecond))
	e.wantBucket(bs[2], id+1, 8, 1, 8, 8, start.Add(g))
}

func testBucketExpiry(e *env) {
	// A bucket past engine.BucketExpiry: the write may be refused, and it is never returned.
	f := e.feature("bucket_expired", engine.PrimitiveFloat, windowed(time.Minute, 10*time.Minute))
	k := e.keys(f, "a")
	old := e.now.Add(-f.Staleness - engine.DeadGracePeriod - 2*f.Granularity)
	oldID := engine.BucketID(old, f.Granularity)
	if exp := engine.BucketExpiry(oldID, f.Staleness, f.Granularity); !exp.Before(e.now) {
		e.Fatalf("test bug: bucket expires at %v, after now %v", exp, e.now)
	}
	if err := e.st.WindowAdd(e.ctx, f, k, 1, old); err != nil && !errors.Is(err, engine.ErrOutOfWindow) {
		e.Errorf("WindowAdd into an expired bucket: err = %v, want nil or one wrapping %v", err, engine.ErrOutOfWindow)
	}
	e.windowAdd(f, k, 2, e.now) // an alive bucket, so the entity exists
	span := engine.WindowSpan{First: oldID - 5, Last: oldID + 5}
	if bs := e.buckets(f, k, span); len(bs) != 0 {
		e.Errorf("WindowBuckets returned expired buckets %+v", bs)
	}
	if bs := e.deadBuckets(f, span); len(bs) != 0 {
		e.Errorf("DeadWindowBuckets returned expired buckets %+v", bs)
	}

	// A bucket that expires a few milliseconds after it is written: returned, then not.
	const g = time.Millisecond
	s := e.feature("bucket_expiring", engine.PrimitiveFloat, windowed(g, time.Second))
	target := time.Now().Add(30 * time.Millisecond)
	id := engine.BucketID(target.Add(-s.Staleness-engine.DeadGracePeriod), g)
	expiry := engine.BucketExpiry(id, s.Staleness, g) // in (target, target+1ms]
	err := e.st.WindowAdd(e.ctx, s, k, 1, engine.BucketStart(id, g))
	switch {
	case err == nil:
	case errors.Is(err, engine.ErrOutOfWindow) && !time.Now().Before(expiry):
		e.Logf("the machine is too slow to write a bucket 30ms before it expires: %v", err)
	default:
		e.Fatalf("WindowAdd into a bucket expiring at %v: %v", expiry, err)
	}
	one := engine.WindowSpan{First: id, Last: id}
	bs := e.buckets(s, k, one)
	// Only tell when the read surely happened before the expiry (the machine may be slow).
	if time.Now().Before(expiry.Add(-2*time.Millisecond)) && len(bs) != 1 {
		e.Errorf("bucket expiring at %v not returned before it expired: %+v", expiry, bs)
	}
	time.Sleep(time.Until(expiry) + 2*time.Millisecond)
	if bs := e.buckets(s, k, one); len(bs) != 0 {
		e.Errorf("WindowBuckets returned a bucket after its expiry %v: %+v", expiry, bs)
	}
	if bs := e.deadBuckets(s, one); len(bs) != 0 {
		e.Errorf("DeadWindowBuckets returned a bucket after its expiry %v: %+v", expiry, bs)
	}
}

func testDeadWindowBuckets(e *env) {
	f := e.feature("dead", engine.PrimitiveFloat, windowed(time.Minute, 10*time.Minute), keyNames("card", "shop"))
	g := e.feature("dead_other", engine.PrimitiveFloat, windowed(time.Minute, 10*time.Minute), keyNames("card", "shop"))
	alive := engine.AliveSpan(e.now, f.Staleness, f.Granularity)
	kept := engine.KeptSpan(e.now, f.Staleness, f.Granularity)
	dead := engine.WindowSpan{First: kept.First, Last: alive.First - 1}
	at := func(id int64) time.Time { return engine.BucketStart(id, f.Granularity).Add(time.Second) }
	k1, k2, k3 := e.keys(f, "c1", "s;1"), e.keys(f, "c2", `s\2`), e.keys(f, "c3", "")
	e.windowAdd(f, k1, 1, at(alive.First-2))
	e.windowAdd(f, k1, 100, at(alive.Last)) // alive: not listed
	e.windowAdd(f, k2, 2, at(alive.First-1))
	e.windowAdd(f, k3, 3, at(dead.First))
	e.windowAdd(f, k3, 4, at(dead.First))
	e.windowAdd(f, k3, 5, at(alive.First-2))
	e.windowAdd(g, k1, 7, at(alive.First-2)) // another feature with the same keys: not listed

	type row struct {
		keys     string
		id       int64
		sum, cnt float64
	}
	rows := func(bs []engine.RawBucket) []row {
		var out []row
		for _, b := range bs {
			out = append(out, row{b.EncodedKeys, b.ID, b.Sum, b.Count})
		}
		return out
	}
	want := []row{{k1, alive.First - 2, 1, 1}, {k2, alive.First - 1, 2, 1}, {k3, dead.First, 7, 2}, {k3, alive.First - 2, 5, 1}}
	slices.SortFunc(want, func(a, b row) int { return cmp.Or(strings.Compare(a.keys, b.keys), cmp.Compare(a.id, b.id)) })
	if got := rows(e.deadBuckets(f, dead)); !slices.Equal(got, want) {
		e.Errorf("DeadWindowBuckets(dead span) =\n  %+v\nwant\n  %+v", got, want)
	}
	if got := rows(e.deadBuckets(f, engine.WindowSpan{First: alive.First - 1, Last: alive.First - 1})); !slices.Equal(got, []row{{k2, alive.First - 1, 2, 1}}) {
		e.Errorf("DeadWindowBuckets(one bucket) = %+v, want only %q's", got, k2)
	}
	if got := rows(e.deadBuckets(g, dead)); !slices.Equal(got, []row{{k1, alive.First - 2, 7, 1}}) {
		e.Errorf("DeadWindowBuckets of the other feature = %+v", got)
	}
	for _, b := range e.deadBuckets(f, dead) {
		if _, err := engine.DecodeKeys(f.Keys, b.EncodedKeys); err != nil {
			e.Errorf("DeadWindowBuckets returned undecodable keys %q: %v", b.EncodedKeys, err)
		}
		if want := at(b.ID); !b.Updated.Equal(want) {
			e.Errorf("bucket %d Updated = %v, want %v", b.ID, b.Updated, want)
		}
	}
}

// testWindowAddOverflow checks that a WindowAdd that would take a bucket's sum to ±Inf fails
// with engine.ErrOverflow and leaves the bucket as it was, while other buckets still take
// the same value.
func testWindowAddOverflow(e *env) {
	const g = time.Minute
	f := e.feature("window_overflow", engine.PrimitiveFloat, windowed(g, time.Hour))
	id := engine.BucketID(e.now, g) - 2
	at := engine.BucketStart(id, g).Add(time.Second)
	cases := []struct {
		name   string
		first  float64
		second float64
	}{
		{"to +Inf", math.MaxFloat64, math.MaxFloat64},
		{"to -Inf", -math.MaxFloat64, -math.MaxFloat64 / 2},
	}
	for _, c := range cases {
		k := e.keys(f, c.name)
		e.windowAdd(f, k, c.first, at)
		err := e.st.WindowAdd(e.ctx, f, k, c.second, at.Add(time.Second))
		if !errors.Is(err, engine.ErrOverflow) || !errors.Is(err, engine.ErrTypeMismatch) {
			e.Errorf("WindowAdd %s: %v then %v: err = %v, want one wrapping %v", c.name, c.first, c.second, err, engine.ErrOverflow)
		}
		span := engine.WindowSpan{First: id - 1, Last: id + 1}
		bs := e.buckets(f, k, span)
		if len(bs) != 1 {
			e.Fatalf("WindowAdd %s: buckets = %+v, want the first one only", c.name, bs)
		}
		e.wantBucket(bs[0], id, c.first, 1, c.first, c.first, at)
		// The next bucket is another sum: the same value goes in.
		e.windowAdd(f, k, c.second, at.Add(g))
		if bs := e.buckets(f, k, span); len(bs) != 2 || bs[1].Sum != c.second {
			e.Errorf("WindowAdd %s into the next bucket: buckets = %+v", c.name, bs)
		}
	}
}
