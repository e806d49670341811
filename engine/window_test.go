package engine

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func TestParseAggrFn(t *testing.T) {
	tests := []struct {
		in   string
		want AggrFn
	}{
		{"sum", AggrSum}, {"count", AggrCount}, {"min", AggrMin}, {"max", AggrMax}, {"avg", AggrAvg}, {"mean", AggrAvg},
	}
	for _, tt := range tests {
		got, err := ParseAggrFn(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseAggrFn(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "SUM", "median", "average", "unknown"} {
		if got, err := ParseAggrFn(bad); err == nil || got != AggrUnknown {
			t.Errorf("ParseAggrFn(%q) = %v, %v; want an error", bad, got, err)
		}
	}
	for a := AggrSum; a <= AggrAvg; a++ {
		if back, err := ParseAggrFn(a.String()); err != nil || back != a {
			t.Errorf("ParseAggrFn(%v.String()) = %v, %v", a, back, err)
		}
	}
	if s := AggrUnknown.String(); s != "unknown" {
		t.Errorf("AggrUnknown.String() = %q", s)
	}
	if s := AggrFn(42).String(); s != "aggr(42)" {
		t.Errorf("AggrFn(42).String() = %q", s)
	}
}

func TestAggrSet(t *testing.T) {
	var s AggrSet
	if s.Has(AggrSum) || s.Fns() != nil || s.String() != "" {
		t.Errorf("empty set: Has(sum)=%v Fns=%v String=%q", s.Has(AggrSum), s.Fns(), s.String())
	}
	s = s.With(AggrAvg).With(AggrSum).With(AggrAvg) // order of insertion and repeats do not matter
	if !s.Has(AggrAvg) || !s.Has(AggrSum) || s.Has(AggrCount) || s.Has(AggrUnknown) {
		t.Errorf("set %v: wrong membership", s)
	}
	if got := s.Fns(); !reflect.DeepEqual(got, []AggrFn{AggrSum, AggrAvg}) {
		t.Errorf("Fns() = %v", got)
	}
	if got := s.String(); got != "sum,avg" {
		t.Errorf("String() = %q", got)
	}
	if got := AllAggrs.String(); got != "sum,count,min,max,avg" {
		t.Errorf("AllAggrs = %q", got)
	}
	for a := AggrSum; a <= AggrAvg; a++ {
		if !AllAggrs.Has(a) {
			t.Errorf("AllAggrs lacks %v", a)
		}
	}
	if AllAggrs.Has(AggrUnknown) {
		t.Error("AllAggrs has AggrUnknown")
	}
}

func TestWindowResult(t *testing.T) {
	r := WindowResult{Aggrs: AllAggrs, Sum: 6, Count: 4, Min: -1, Max: 5}
	for _, tt := range []struct {
		a    AggrFn
		want float64
	}{{AggrSum, 6}, {AggrCount, 4}, {AggrMin, -1}, {AggrMax, 5}, {AggrAvg, 1.5}} {
		if got := r.Get(tt.a); got != tt.want {
			t.Errorf("Get(%v) = %v, want %v", tt.a, got, tt.want)
		}
	}
	if !math.IsNaN(r.Get(AggrUnknown)) {
		t.Error("Get(AggrUnknown) is not NaN")
	}
	if got := (WindowResult{}).Avg(); got != 0 {
		t.Errorf("Avg of an empty window = %v, want 0", got)
	}
	if got := r.String(); got != "{sum=6 count=4 min=-1 max=5 avg=1.5}" {
		t.Errorf("String() = %q", got)
	}
	r.Aggrs = AggrSet(0).With(AggrMax).With(AggrAvg)
	if got := r.Map(); !reflect.DeepEqual(got, map[string]float64{"max": 5, "avg": 1.5}) {
		t.Errorf("Map() = %v", got)
	}
	if got := r.String(); got != "{max=5 avg=1.5}" {
		t.Errorf("String() = %q", got)
	}
}

func TestBucketID(t *testing.T) {
	epoch := time.Unix(0, 0)
	tests := []struct {
		ts   time.Time
		g    time.Duration
		want int64
	}{
		{epoch, time.Minute, 0},
		{epoch.Add(59 * time.Second), time.Minute, 0},
		{epoch.Add(time.Minute), time.Minute, 1},
		{epoch.Add(90 * time.Second), time.Minute, 1},
		// Before the epoch the ID is the floor, not the truncation toward zero.
		{epoch.Add(-time.Nanosecond), time.Minute, -1},
		{epoch.Add(-time.Second), time.Minute, -1},
		{epoch.Add(-time.Minute), time.Minute, -1},
		{epoch.Add(-time.Minute - time.Nanosecond), time.Minute, -2},
		{epoch.Add(-90 * time.Second), time.Minute, -2},
		{time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), time.Hour, time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC).Unix() / 3600},
		{time.Date(1960, 1, 1, 0, 30, 0, 0, time.UTC), time.Hour, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 3600},
	}
	for _, tt := range tests {
		got := BucketID(tt.ts, tt.g)
		if got != tt.want {
			t.Errorf("BucketID(%v, %v) = %d, want %d", tt.ts.UTC(), tt.g, got, tt.want)
		}
		// The bucket holds ts: start ≤ ts < start + g.
		start := BucketStart(got, tt.g)
		if tt.ts.Before(start) || !tt.ts.Before(start.Add(tt.g)) {
			t.Errorf("bucket %d [%v, %v) does not hold %v", got, start, start.Add(tt.g), tt.ts.UTC())
		}
	}
	if loc := BucketStart(1, time.Minute).Location(); loc != time.UTC {
		t.Errorf("BucketStart location = %v, want UTC", loc)
	}
}

func TestAliveSpan(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 30, 15, 0, time.UTC)
	tests := []struct {
		staleness, granularity time.Duration
		wantLen                int
	}{
		{time.Hour, time.Minute, 60},
		{time.Hour, 7 * time.Minute, 9}, // ⌈60/7⌉
		{time.Hour, time.Hour, 1},
		{61 * time.Minute, time.Hour, 2},
		{time.Minute, time.Second, 60},
		{90 * time.Second, time.Minute, 2},
	}
	for _, tt := range tests {
		span := AliveSpan(now, tt.staleness, tt.granularity)
		if got := span.Len(); got != tt.wantLen {
			t.Errorf("AliveSpan(%v, %v).Len() = %d, want %d", tt.staleness, tt.granularity, got, tt.wantLen)
		}
		if span.Last != BucketID(now, tt.granularity) {
			t.Errorf("AliveSpan(%v, %v) ends at %d, want the bucket of now %d", tt.staleness, tt.granularity, span.Last, BucketID(now, tt.granularity))
		}
		if !span.Contains(span.First) || !span.Contains(span.Last) || span.Contains(span.First-1) || span.Contains(span.Last+1) {
			t.Errorf("Contains is wrong at the edges of %+v", span)
		}
		// The window is bucket-aligned: it reaches back at least staleness−granularity and at
		// most staleness (plus the part of now's bucket that has passed).
		if id := BucketID(now.Add(-tt.staleness+tt.granularity), tt.granularity); !span.Contains(id) {
			t.Errorf("AliveSpan(%v, %v) = %+v misses bucket %d of now−staleness+granularity", tt.staleness, tt.granularity, span, id)
		}
		if id := BucketID(now.Add(-tt.staleness-tt.granularity), tt.granularity); span.Contains(id) {
			t.Errorf("AliveSpan(%v, %v) = %+v holds bucket %d of now−staleness−granularity", tt.staleness, tt.granularity, span, id)
		}
	}
}

// TestKeptSpan checks KeptSpan's contract at many instants: it holds exactly the buckets up
// to now's whose BucketExpiry is still ahead, and every alive bucket. A State may drop a
// bucket at its BucketExpiry, so the engine must never count a bucket past it as kept.
func TestKeptSpan(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ staleness, granularity time.Duration }{
		{time.Hour, time.Minute},
		{time.Hour, 3 * time.Minute},
		{time.Hour, 7 * time.Minute},
		{time.Hour, 45 * time.Minute}, // neither staleness nor the grace period is a multiple
		{time.Hour, time.Hour},
		{61 * time.Minute, time.Hour},
		{90 * time.Second, time.Minute},
		{time.Minute, time.Second},
		{25 * time.Hour, 24 * time.Hour},
	} {
		// Instants spread over several buckets, on and between bucket boundaries.
		step := c.granularity/7 + 13*time.Second + 1
		for now := base; now.Before(base.Add(3 * c.granularity)); now = now.Add(step) {
			alive := AliveSpan(now, c.staleness, c.granularity)
			kept := KeptSpan(now, c.staleness, c.granularity)
			if kept.Last != alive.Last || kept.First > alive.First {
				t.Fatalf("staleness %v, granularity %v, now %v: kept %+v does not hold alive %+v", c.staleness, c.granularity, now, kept, alive)
			}
			for id := kept.First - 3; id <= kept.Last+1; id++ {
				want := id <= BucketID(now, c.granularity) && BucketExpiry(id, c.staleness, c.granularity).After(now)
				if got := kept.Contains(id); got != want {
					t.Fatalf("staleness %v, granularity %v, now %v: KeptSpan %+v contains bucket %d = %v, but it expires at %v",
						c.staleness, c.granularity, now, kept, id, got, BucketExpiry(id, c.staleness, c.granularity))
				}
			}
		}
	}
}

func TestBucketExpiry(t *testing.T) {
	g := time.Minute
	id := BucketID(time.Date(2026, 3, 1, 12, 30, 15, 0, time.UTC), g)
	got := BucketExpiry(id, time.Hour, g)
	want := time.Date(2026, 3, 1, 12, 31, 0, 0, time.UTC).Add(time.Hour + DeadGracePeriod)
	if !got.Equal(want) {
		t.Errorf("BucketExpiry = %v, want %v (the bucket's end + staleness + DeadGracePeriod)", got, want)
	}
}

func TestBucketAddMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b Bucket
	b.Add(3, t0.Add(2*time.Second))
	b.Add(-2, t0.Add(time.Second)) // older timestamp: Updated stays
	b.Add(10, t0.Add(3*time.Second))
	want := Bucket{Sum: 11, Count: 3, Min: -2, Max: 10, Updated: t0.Add(3 * time.Second)}
	if b != want {
		t.Errorf("after Add: %+v, want %+v", b, want)
	}
	var first Bucket
	first.Add(-5, t0) // a first value sets min and max even when negative
	if first.Min != -5 || first.Max != -5 {
		t.Errorf("first Add: %+v", first)
	}

	var m Bucket
	m.Merge(Bucket{}) // merging an empty bucket changes nothing
	if m != (Bucket{}) {
		t.Errorf("merge of empty: %+v", m)
	}
	m.Merge(b)
	m.Merge(Bucket{Sum: -7, Count: 1, Min: -7, Max: -7, Updated: t0})
	want = Bucket{Sum: 4, Count: 4, Min: -7, Max: 10, Updated: t0.Add(3 * time.Second)}
	if m != want {
		t.Errorf("after Merge: %+v, want %+v", m, want)
	}
}

func TestAggregate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	buckets := []Bucket{
		{ID: 8, Sum: 100, Count: 1, Min: 100, Max: 100, Updated: t0.Add(8 * time.Minute)}, // outside
		{ID: 10, Sum: 5, Count: 2, Min: 1, Max: 4, Updated: t0.Add(10 * time.Minute)},
		{ID: 12, Sum: -3, Count: 1, Min: -3, Max: -3, Updated: t0.Add(12 * time.Minute)},
		{ID: 11}, // never written
		{ID: 13, Sum: 9, Count: 3, Min: 2, Max: 4, Updated: t0.Add(13 * time.Minute)},                // outside
		{ID: 10, Sum: 1, Count: 1, Min: 1, Max: 1, Updated: t0.Add(10*time.Minute + 30*time.Second)}, // same ID twice: merged
	}
	r, updated, ok := Aggregate(buckets, WindowSpan{First: 10, Last: 12}, AllAggrs)
	want := WindowResult{Aggrs: AllAggrs, Sum: 3, Count: 4, Min: -3, Max: 4}
	if !ok || r != want || !updated.Equal(t0.Add(12*time.Minute)) {
		t.Errorf("Aggregate = %+v, %v, %v; want %+v, %v", r, updated, ok, want, t0.Add(12*time.Minute))
	}
	if r.Avg() != 0.75 {
		t.Errorf("Avg = %v", r.Avg())
	}
	r, _, ok = Aggregate(buckets, WindowSpan{First: 10, Last: 10}, AggrSet(0).With(AggrSum))
	if !ok || r.Aggrs != AggrSet(0).With(AggrSum) || r.Sum != 6 || r.Count != 3 {
		t.Errorf("Aggregate one bucket = %+v", r)
	}
	for _, span := range []WindowSpan{{First: 0, Last: 7}, {First: 11, Last: 11}, {First: 14, Last: 100}} {
		if r, upd, ok := Aggregate(buckets, span, AllAggrs); ok || r != (WindowResult{}) || !upd.IsZero() {
			t.Errorf("Aggregate over empty span %+v = %+v, %v, %v", span, r, upd, ok)
		}
	}
	if _, _, ok := Aggregate(nil, WindowSpan{First: 0, Last: 10}, AllAggrs); ok {
		t.Error("Aggregate(nil) found data")
	}
}
