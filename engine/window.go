package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DeadGracePeriod is how long a bucket is kept after it leaves its window, so that the
// historian can still collect it. A bucket lives staleness + DeadGracePeriod.
const DeadGracePeriod = 10 * time.Minute

// AggrFn is a window aggregation.
type AggrFn uint8

// The window aggregations. Avg is derived from sum and count; the others are kept per bucket.
const (
	AggrUnknown AggrFn = iota
	AggrSum
	AggrCount
	AggrMin
	AggrMax
	AggrAvg
)

var aggrNames = [...]string{AggrUnknown: "unknown", AggrSum: "sum", AggrCount: "count", AggrMin: "min", AggrMax: "max", AggrAvg: "avg"}

// String returns the aggregation's name: sum, count, min, max or avg.
func (a AggrFn) String() string {
	if int(a) < len(aggrNames) {
		return aggrNames[a]
	}
	return "aggr(" + strconv.Itoa(int(a)) + ")"
}

// ParseAggrFn parses an aggregation name; "mean" is an alias of "avg".
func ParseAggrFn(s string) (AggrFn, error) {
	switch s {
	case "sum":
		return AggrSum, nil
	case "count":
		return AggrCount, nil
	case "min":
		return AggrMin, nil
	case "max":
		return AggrMax, nil
	case "avg", "mean":
		return AggrAvg, nil
	}
	return AggrUnknown, fmt.Errorf("unknown aggregation %q (want sum, count, min, max or avg)", s)
}

// AggrSet is a set of aggregations.
type AggrSet uint8

// AllAggrs holds the five aggregations.
const AllAggrs = AggrSet(1<<AggrSum | 1<<AggrCount | 1<<AggrMin | 1<<AggrMax | 1<<AggrAvg)

// Has reports whether a is in the set.
func (s AggrSet) Has(a AggrFn) bool { return a != AggrUnknown && s&(1<<a) != 0 }

// With returns the set with a added; AggrUnknown and out-of-range values are ignored.
func (s AggrSet) With(a AggrFn) AggrSet {
	if a == AggrUnknown || a > AggrAvg {
		return s
	}
	return s | 1<<a
}

// Fns returns the aggregations in the set in the order sum, count, min, max, avg.
func (s AggrSet) Fns() []AggrFn {
	var out []AggrFn
	for a := AggrSum; a <= AggrAvg; a++ {
		if s.Has(a) {
			out = append(out, a)
		}
	}
	return out
}

// String lists the set's names separated by commas.
func (s AggrSet) String() string {
	var b strings.Builder
	for _, a := range s.Fns() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// WindowResult is the value of a windowed feature: the aggregations over the buckets in its
// window. Aggrs says which of the fields a reader asked for; Sum, Count, Min and Max are
// always computed (Avg is Sum/Count).
type WindowResult struct {
	Aggrs AggrSet
	Sum   float64
	Count float64
	Min   float64
	Max   float64
}

// Avg returns Sum/Count, or 0 for an empty window.
func (r WindowResult) Avg() float64 {
	if r.Count == 0 {
		return 0
	}
	return r.Sum / r.Count
}

// Get returns the named aggregation.
func (r WindowResult) Get(a AggrFn) float64 {
	switch a {
	case AggrSum:
		return r.Sum
	case AggrCount:
		return r.Count
	case AggrMin:
		return r.Min
	case AggrMax:
		return r.Max
	case AggrAvg:
		return r.Avg()
	}
	return math.NaN()
}

// checkFinite fails with ErrOverflow when an aggregation a read returns is not finite: a
// (or, for AggrUnknown, any of Aggrs). Each bucket's sum is finite (State.WindowAdd refuses
// one that is not), but the sum over a window's buckets can still leave the float range;
// such a window is refused rather than served as ±Inf, which is no value.
func (r WindowResult) checkFinite(a AggrFn) error {
	for fn := AggrSum; fn <= AggrAvg; fn++ {
		if fn != a && (a != AggrUnknown || !r.Aggrs.Has(fn)) {
			continue
		}
		if x := r.Get(fn); math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("%w: the window's %s is %v, beyond the float range", ErrOverflow, fn, x)
		}
	}
	return nil
}

// Map returns the aggregations in Aggrs by name.
func (r WindowResult) Map() map[string]float64 {
	m := make(map[string]float64, 5)
	for _, a := range r.Aggrs.Fns() {
		m[a.String()] = r.Get(a)
	}
	return m
}

// String formats the aggregations in Aggrs: {sum=3 count=2 avg=1.5}.
func (r WindowResult) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range r.Aggrs.Fns() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.String())
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(r.Get(a), 'g', -1, 64))
	}
	b.WriteByte('}')
	return b.String()
}

// Bucket is one bucket of a windowed feature for one entity: the aggregates of the updates
// whose timestamps fall in [Start, Start+granularity).
type Bucket struct {
	// ID is the bucket's number: its start in Unix nanoseconds divided by the granularity.
	ID    int64
	Sum   float64
	Count float64
	Min   float64
	Max   float64
	// Updated is the latest timestamp added to the bucket.
	Updated time.Time
}

// Add folds one update into the bucket.
func (b *Bucket) Add(x float64, ts time.Time) {
	if b.Count == 0 {
		b.Min, b.Max = x, x
	} else {
		b.Min, b.Max = min(b.Min, x), max(b.Max, x)
	}
	b.Sum += x
	b.Count++
	if ts.After(b.Updated) {
		b.Updated = ts
	}
}

// Merge folds another bucket's aggregates into b.
func (b *Bucket) Merge(o Bucket) {
	if o.Count == 0 {
		return
	}
	if b.Count == 0 {
		b.Min, b.Max = o.Min, o.Max
	} else {
		b.Min, b.Max = min(b.Min, o.Min), max(b.Max, o.Max)
	}
	b.Sum += o.Sum
	b.Count += o.Count
	if o.Updated.After(b.Updated) {
		b.Updated = o.Updated
	}
}

// RawBucket is a bucket together with the feature and entity it belongs to, as listed for
// the historian.
type RawBucket struct {
	FQN         string
	EncodedKeys string
	Bucket
}

// BucketID returns the ID of the bucket holding ts for a granularity.
func BucketID(ts time.Time, granularity time.Duration) int64 {
	n := ts.UnixNano()
	g := int64(granularity)
	id := n / g
	if n%g < 0 { // floor for times before the epoch
		id--
	}
	return id
}

// BucketStart returns the start of a bucket.
func BucketStart(id int64, granularity time.Duration) time.Time {
	return time.Unix(0, id*int64(granularity)).UTC()
}

// WindowSpan is the range of bucket IDs [First, Last] that make up a feature's window at
// some instant.
type WindowSpan struct{ First, Last int64 }

// Len returns the number of buckets in the span.
func (s WindowSpan) Len() int { return int(s.Last - s.First + 1) }

// Contains reports whether id is in the span.
func (s WindowSpan) Contains(id int64) bool { return id >= s.First && id <= s.Last }

// AliveSpan returns the buckets inside the window (window = staleness) at now: the bucket
// holding now and the ⌈staleness/granularity⌉−1 before it.
func AliveSpan(now time.Time, staleness, granularity time.Duration) WindowSpan {
	last := BucketID(now, granularity)
	n := int64((staleness + granularity - 1) / granularity)
	return WindowSpan{First: last - n + 1, Last: last}
}

// KeptSpan returns every bucket still kept at now: the alive ones plus the dead ones whose
// BucketExpiry is still ahead. It is derived from BucketExpiry, so the two always agree, for
// any granularity. A write to a bucket outside it fails with ErrOutOfWindow.
func KeptSpan(now time.Time, staleness, granularity time.Duration) WindowSpan {
	alive := AliveSpan(now, staleness, granularity)
	// BucketExpiry(id) > now ⇔ the bucket ends after now − staleness − grace.
	first := BucketID(now.Add(-staleness-DeadGracePeriod), granularity)
	return WindowSpan{First: min(first, alive.First), Last: alive.Last}
}

// BucketExpiry returns when a bucket stops being kept: its end + staleness + DeadGracePeriod.
func BucketExpiry(id int64, staleness, granularity time.Duration) time.Time {
	return BucketStart(id+1, granularity).Add(staleness + DeadGracePeriod)
}

// Aggregate folds the buckets inside span into a WindowResult reporting aggrs. It returns
// the latest update time among them and false if no bucket in span has data.
func Aggregate(buckets []Bucket, span WindowSpan, aggrs AggrSet) (WindowResult, time.Time, bool) {
	acc := MergeBuckets(buckets, span)
	if acc.Count == 0 {
		return WindowResult{}, time.Time{}, false
	}
	return WindowResult{Aggrs: aggrs, Sum: acc.Sum, Count: acc.Count, Min: acc.Min, Max: acc.Max}, acc.Updated, true
}

// MergeBuckets merges the buckets inside span into one (Bucket.Merge, in the order given),
// as a WindowAggregator does; its ID is 0 and its Count 0 when no bucket in span has data.
func MergeBuckets(buckets []Bucket, span WindowSpan) Bucket {
	var acc Bucket
	for i := range buckets {
		if span.Contains(buckets[i].ID) {
			acc.Merge(buckets[i])
		}
	}
	return acc
}
