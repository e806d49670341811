package historian_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/plugins/notifier/memory"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
)

// The features of the point-in-time tests.
func pitLimit() *engine.Feature {
	return &engine.Feature{FQN: "t.limit", Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"}, Freshness: 10 * time.Minute,
		Staleness: time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func pitLogins() *engine.Feature {
	return &engine.Feature{FQN: "t.logins", Primitive: engine.PrimitiveInt, Keys: []string{"card_id"}, Freshness: 5 * time.Minute,
		Staleness: 30 * time.Minute, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func pitTags() *engine.Feature {
	return &engine.Feature{FQN: "t.tags", Primitive: engine.PrimitiveStringList, Keys: []string{"card_id", "country"}, Freshness: 5 * time.Minute,
		Staleness: 45 * time.Minute, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func pitAmount() *engine.Feature {
	return &engine.Feature{FQN: "t.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"}, Freshness: time.Minute,
		Staleness: 10 * time.Minute, Timeout: time.Second, Aggrs: engine.AllAggrs, Granularity: time.Minute,
		Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

// pitSpend is float: the historian cannot record the adds of an int windowed feature yet (it
// records them as floats, which EncodeParquet refuses for an int feature).
func pitSpend() *engine.Feature {
	return &engine.Feature{FQN: "t.spend", Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"}, Freshness: 10 * time.Minute,
		Staleness: time.Hour, Timeout: time.Second, Granularity: 5 * time.Minute,
		Aggrs:   engine.AggrSet(0).With(engine.AggrSum).With(engine.AggrCount).With(engine.AggrMax),
		Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

// wr is a write record of f for entity keys (a single key's value), at event time t0+et,
// written at t0+wt.
func wr(f *engine.Feature, op engine.Op, keys string, v engine.Value, et, wt time.Duration) historian.Record {
	return historian.Record{Kind: historian.KindWrite, FQN: f.FQN, Primitive: f.Primitive, KeyNames: f.Keys,
		Keys: []string{keys}, EncodedKeys: keys, Op: op, Value: v, EventTime: t0.Add(et), WriteTime: t0.Add(wt)}
}

func superseded(r historian.Record) historian.Record { r.Superseded = true; return r }

func mustSelector(t testing.TB, s string) engine.Selector {
	t.Helper()
	sel, err := engine.ParseSelector(s, "")
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// query is one AsOf and what it must answer.
type query struct {
	at    time.Duration // t0 + at
	sel   string        // the feature's FQN when empty
	keys  string        // "c1" when empty
	found bool
	value engine.Value
	ts    time.Duration // the value's timestamp, t0 + ts
	fresh bool
}

func checkQueries(t *testing.T, tl *historian.Timeline, f *engine.Feature, qs []query) {
	t.Helper()
	for _, q := range qs {
		sel, keys := q.sel, q.keys
		if sel == "" {
			sel = f.FQN
		}
		if keys == "" {
			keys = "c1"
		}
		got, err := tl.AsOf(keys, t0.Add(q.at), mustSelector(t, sel))
		if err != nil {
			t.Errorf("AsOf(%s, t0%+v, %s): %v", keys, q.at, sel, err)
			continue
		}
		if got.Found() != q.found || q.found && (!sameResultValue(got.Value, q.value) || !got.Timestamp.Equal(t0.Add(q.ts)) || got.Fresh != q.fresh) {
			t.Errorf("AsOf(%s, t0%+v, %s) = %v at %v fresh %v (found %v); want %v at t0%+v fresh %v (found %v)", keys, q.at, sel,
				got.Value, got.Timestamp.Sub(t0), got.Fresh, got.Found(), q.value, q.ts, q.fresh, q.found)
		}
	}
}

// sameResultValue compares values exactly: floats (and a window's fields) bit for bit.
func sameResultValue(a, b engine.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case engine.KindFloat:
		return a.Bits() == b.Bits()
	case engine.KindWindow:
		x, y := a.Window(), b.Window()
		bits := math.Float64bits
		return x.Aggrs == y.Aggrs && bits(x.Sum) == bits(y.Sum) && bits(x.Count) == bits(y.Count) &&
			bits(x.Min) == bits(y.Min) && bits(x.Max) == bits(y.Max)
	}
	return a.Equal(b)
}

func TestAsOfValues(t *testing.T) {
	limit, logins, tags := pitLimit(), pitLogins(), pitTags()
	m := time.Minute
	f := engine.Float
	tests := []struct {
		name      string
		feature   *engine.Feature
		recs      []historian.Record
		asWritten bool
		queries   []query
	}{
		{
			name:    "freshness and staleness bounds",
			feature: limit,
			recs:    []historian.Record{wr(limit, engine.OpSet, "c1", f(5), 0, 0)},
			queries: []query{
				{at: -time.Nanosecond},
				{at: 0, found: true, value: f(5), fresh: true},
				{at: 10*m - 1, found: true, value: f(5), fresh: true},
				{at: 10 * m, found: true, value: f(5)},
				{at: 60*m - 1, found: true, value: f(5)},
				{at: 60 * m}, // age = staleness: not served
				{at: 0, keys: "c2"},
			},
		},
		{
			name:    "the latest event time wins, equal ones the last written",
			feature: limit,
			recs: []historian.Record{
				wr(limit, engine.OpSet, "c1", f(1), 0, 0),
				wr(limit, engine.OpSet, "c1", f(3), 2*m, 3*m),
				wr(limit, engine.OpSet, "c1", f(2), 2*m, 4*m), // equal timestamp, written later
			},
			queries: []query{
				{at: m, found: true, value: f(1), fresh: true},
				{at: 2 * m, found: true, value: f(2), ts: 2 * m, fresh: true},
			},
		},
		{
			name:    "equal timestamps as written: the later write wins once written",
			feature: limit,
			recs: []historian.Record{
				wr(limit, engine.OpSet, "c1", f(3), 2*m, 3*m),
				wr(limit, engine.OpSet, "c1", f(2), 2*m, 4*m),
			},
			asWritten: true,
			queries: []query{
				{at: 2 * m},
				{at: 3 * m, found: true, value: f(3), ts: 2 * m, fresh: true},
				{at: 4 * m, found: true, value: f(2), ts: 2 * m, fresh: true},
			},
		},
		{
			name:    "a superseded write counts as of its own time in the event-time view",
			feature: limit,
			recs: []historian.Record{
				wr(limit, engine.OpSet, "c1", f(10), 5*m, 5*m),
				superseded(wr(limit, engine.OpSet, "c1", f(7), 2*m, 6*m)),
			},
			queries: []query{
				{at: m},
				{at: 3 * m, found: true, value: f(7), ts: 2 * m, fresh: true},
				{at: 5 * m, found: true, value: f(10), ts: 5 * m, fresh: true},
			},
		},
		{
			name:    "a superseded write never counts as written",
			feature: limit,
			recs: []historian.Record{
				wr(limit, engine.OpSet, "c1", f(10), 5*m, 5*m),
				superseded(wr(limit, engine.OpSet, "c1", f(7), 2*m, 6*m)),
			},
			asWritten: true,
			queries: []query{
				{at: 3 * m},
				{at: 6 * m, found: true, value: f(10), ts: 5 * m, fresh: true},
			},
		},
		{
			name:    "a value dated ahead of its write counts as written, as the engine served it",
			feature: limit,
			recs:    []historian.Record{wr(limit, engine.OpSet, "c1", f(4), 2*m, m)},
			queries: []query{{at: m}, {at: 2 * m, found: true, value: f(4), ts: 2 * m, fresh: true}},
		},
		{
			name:      "a value dated ahead of its write, as written",
			feature:   limit,
			recs:      []historian.Record{wr(limit, engine.OpSet, "c1", f(4), 2*m, m)},
			asWritten: true,
			queries:   []query{{at: m - 1}, {at: m, found: true, value: f(4), ts: 2 * m, fresh: true}},
		},
		{
			name:    "a back-dated incr keeps the counter's later timestamp",
			feature: logins,
			recs: []historian.Record{
				wr(logins, engine.OpIncr, "c1", engine.Int(1), 10*m, 10*m),
				wr(logins, engine.OpIncr, "c1", engine.Int(3), 4*m, 11*m), // +2, dated earlier
			},
			queries: []query{
				{at: 5 * m},
				{at: 10 * m, found: true, value: engine.Int(3), ts: 10 * m, fresh: true},
				{at: 40*m - 1, found: true, value: engine.Int(3), ts: 10 * m},
				{at: 40 * m},
			},
		},
		{
			name:    "a back-dated incr as written",
			feature: logins,
			recs: []historian.Record{
				wr(logins, engine.OpIncr, "c1", engine.Int(1), 10*m, 10*m),
				wr(logins, engine.OpIncr, "c1", engine.Int(3), 4*m, 11*m),
				superseded(wr(logins, engine.OpSet, "c1", engine.Int(100), 9*m, 12*m)),
				wr(logins, engine.OpSet, "c1", engine.Int(50), 13*m, 13*m),
				wr(logins, engine.OpIncr, "c1", engine.Int(51), 12*m, 14*m),
			},
			asWritten: true,
			queries: []query{
				{at: 10 * m, found: true, value: engine.Int(1), ts: 10 * m, fresh: true},
				{at: 11 * m, found: true, value: engine.Int(3), ts: 10 * m, fresh: true},
				{at: 12 * m, found: true, value: engine.Int(3), ts: 10 * m, fresh: true},
				{at: 13 * m, found: true, value: engine.Int(50), ts: 13 * m, fresh: true},
				{at: 14 * m, found: true, value: engine.Int(51), ts: 13 * m, fresh: true},
			},
		},
		{
			name:    "a write recorded without a value is served as none while current",
			feature: limit,
			recs: []historian.Record{
				wr(limit, engine.OpSet, "c1", f(1), 0, 0),
				wr(limit, engine.OpSet, "c1", engine.Null, m, m),
				wr(limit, engine.OpSet, "c1", f(3), 2*m, 2*m),
			},
			queries: []query{
				{at: 30 * time.Second, found: true, value: f(1), fresh: true},
				{at: m},
				{at: 2 * m, found: true, value: f(3), ts: 2 * m, fresh: true},
			},
		},
		{
			name:    "appends carry the list after them",
			feature: tags,
			recs: []historian.Record{
				wr(tags, engine.OpAppend, "c1;FR", engine.StringList([]string{"a"}), 0, 0),
				wr(tags, engine.OpUpdate, "c1;FR", engine.StringList([]string{"a", "b"}), m, m),
				wr(tags, engine.OpSet, "c1;FR", engine.StringList([]string{"z"}), 3*m, 3*m),
			},
			queries: []query{
				{at: 0, keys: "c1;FR", found: true, value: engine.StringList([]string{"a"}), fresh: true},
				{at: 2 * m, keys: "c1;FR", found: true, value: engine.StringList([]string{"a", "b"}), ts: m, fresh: true},
				{at: 3 * m, keys: "c1;FR", found: true, value: engine.StringList([]string{"z"}), ts: 3 * m, fresh: true},
				{at: 3 * m, keys: "c1;DE"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.recs {
				if tt.feature == tags {
					tt.recs[i].Keys = strings.Split(tt.recs[i].EncodedKeys, ";")
				}
			}
			tl, err := historian.NewTimeline(tt.feature, tt.recs, historian.AsOfOptions{AsWritten: tt.asWritten})
			if err != nil {
				t.Fatal(err)
			}
			checkQueries(t, tl, tt.feature, tt.queries)
		})
	}
}

func TestAsOfWindow(t *testing.T) {
	amount := pitAmount() // 1m buckets, a 10m window
	m, s := time.Minute, time.Second
	f := engine.Float
	add := func(x float64, et, wt time.Duration) historian.Record {
		return wr(amount, engine.OpUpdate, "c1", f(x), et, wt)
	}
	win := func(sum, count, lo, hi float64) engine.Value {
		return engine.Window(engine.WindowResult{Aggrs: engine.AllAggrs, Sum: sum, Count: count, Min: lo, Max: hi})
	}
	tests := []struct {
		name      string
		recs      []historian.Record
		asWritten bool
		queries   []query
	}{
		{
			name: "the window's buckets",
			recs: []historian.Record{add(1, 10*s, 10*s), add(2, m+10*s, m+10*s), add(4, 11*m, 11*m)},
			queries: []query{
				{at: 5 * s},
				{at: 10 * s, found: true, value: win(1, 1, 1, 1), ts: 10 * s, fresh: true},
				{at: 2 * m, sel: "t.amount+sum", found: true, value: f(3), ts: m + 10*s, fresh: true},
				{at: 2*m + 10*s, sel: "t.amount+avg", found: true, value: f(1.5), ts: m + 10*s}, // a minute old
				{at: 9*m + 59*s, sel: "t.amount+count", found: true, value: f(2), ts: m + 10*s},
				{at: 10 * m, sel: "t.amount+count", found: true, value: f(1), ts: m + 10*s}, // bucket 0 left the window
				{at: 10*m + 30*s, sel: "t.amount+min", found: true, value: f(2), ts: m + 10*s},
				{at: 11 * m, sel: "t.amount+max", found: true, value: f(4), ts: 11 * m, fresh: true},
				{at: 11 * m, sel: "t.amount+min", found: true, value: f(4), ts: 11 * m, fresh: true}, // bucket 1 left
				{at: 21 * m}, // every bucket left
			},
		},
		{
			name: "the current bucket holds the adds up to the instant",
			recs: []historian.Record{add(1, 10*s, 10*s), add(2, 40*s, 40*s), add(4, 20*s, 50*s)}, // out of order
			queries: []query{
				{at: 15 * s, sel: "t.amount+sum", found: true, value: f(1), ts: 10 * s, fresh: true},
				{at: 30 * s, sel: "t.amount+sum", found: true, value: f(5), ts: 20 * s, fresh: true},
				{at: 45 * s, sel: "t.amount+sum", found: true, value: f(7), ts: 40 * s, fresh: true},
				{at: 2 * m, found: true, value: win(7, 3, 1, 4), ts: 40 * s},
			},
		},
		{
			name:      "as written: the adds written by the instant, ahead-dated ones too",
			recs:      []historian.Record{add(1, 10*s, 10*s), add(2, 40*s, 30*s), add(4, 20*s, 50*s)},
			asWritten: true,
			queries: []query{
				{at: 15 * s, sel: "t.amount+sum", found: true, value: f(1), ts: 10 * s, fresh: true},
				{at: 30 * s, sel: "t.amount+sum", found: true, value: f(3), ts: 40 * s, fresh: true},
				{at: 49 * s, sel: "t.amount+sum", found: true, value: f(3), ts: 40 * s, fresh: true},
				{at: 50 * s, sel: "t.amount+sum", found: true, value: f(7), ts: 40 * s, fresh: true},
			},
		},
		{
			name:      "as written: a late add to a bucket already left out",
			recs:      []historian.Record{add(1, 5*m, 5*m), add(2, 10*s, 12*m)},
			asWritten: true,
			queries: []query{
				{at: 12 * m, sel: "t.amount+count", found: true, value: f(1), ts: 5 * m},
				{at: 9 * m, sel: "t.amount+count", found: true, value: f(1), ts: 5 * m, fresh: false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, err := historian.NewTimeline(amount, tt.recs, historian.AsOfOptions{AsWritten: tt.asWritten})
			if err != nil {
				t.Fatal(err)
			}
			checkQueries(t, tl, amount, tt.queries)
		})
	}
}

// TestAsOfFloatOrder: a window's sum is folded per bucket in arrival order and over buckets
// in ID order, so it has the bits the engine's has, not those of another order.
func TestAsOfFloatOrder(t *testing.T) {
	amount := pitAmount()
	xs := []float64{1e16, 1, -1e16, 1, 0.1, 0.2, 0.3}
	var recs []historian.Record
	var b0, b1 engine.Bucket
	for i, x := range xs {
		et := time.Duration(i) * time.Second
		if i%2 == 1 {
			et += time.Minute
		}
		recs = append(recs, wr(amount, engine.OpUpdate, "c1", engine.Float(x), et, time.Duration(i)*time.Second+time.Minute))
		if i%2 == 1 {
			b1.Add(x, t0.Add(et))
		} else {
			b0.Add(x, t0.Add(et))
		}
	}
	b0.ID, b1.ID = engine.BucketID(t0, time.Minute), engine.BucketID(t0.Add(time.Minute), time.Minute)
	want := engine.MergeBuckets([]engine.Bucket{b0, b1}, engine.AliveSpan(t0.Add(5*time.Minute), amount.Staleness, amount.Granularity))
	for _, asWritten := range []bool{false, true} {
		tl, err := historian.NewTimeline(amount, recs, historian.AsOfOptions{AsWritten: asWritten})
		if err != nil {
			t.Fatal(err)
		}
		got, err := tl.AsOf("c1", t0.Add(5*time.Minute), mustSelector(t, "t.amount+sum"))
		if err != nil || got.Value.Bits() != math.Float64bits(want.Sum) {
			t.Errorf("as written %v: sum %v (%v), want %v bit for bit", asWritten, got.Value, err, want.Sum)
		}
	}
}

func TestAsOfErrors(t *testing.T) {
	limit, amount := pitLimit(), pitAmount()
	tl, err := historian.NewTimeline(limit, []historian.Record{wr(limit, engine.OpSet, "c1", engine.Float(1), 0, 0)}, historian.AsOfOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wl, err := historian.NewTimeline(pitSpend(), nil, historian.AsOfOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tl   *historian.Timeline
		sel  string
		want string
		is   error
	}{
		{tl, "t.limit@-1", "previous versions", historian.ErrUnsupportedRead},
		{tl, "t.limit[hash]", "encodings", historian.ErrUnsupportedRead},
		{tl, "t.other", "the feature read is t.limit", nil},
		{tl, "t.limit+avg", "not windowed", engine.ErrUnsupported},
		{wl, "t.spend+avg", "not avg", engine.ErrUnsupported},
	} {
		_, err := tt.tl.AsOf("c1", t0, mustSelector(t, tt.sel))
		if err == nil || !strings.Contains(err.Error(), tt.want) || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("AsOf %s: %v, want an error saying %q", tt.sel, err, tt.want)
		}
	}
	other := wr(amount, engine.OpUpdate, "c1", engine.Float(1), 0, 0)
	wrongType := wr(limit, engine.OpSet, "c1", engine.Int(1), 0, 0)
	for _, tt := range []struct {
		name string
		recs []historian.Record
		want string
	}{
		{"another feature", []historian.Record{wr(limit, engine.OpSet, "c1", engine.Float(1), 0, 0), other}, "record 1 (write c1): a record of t.amount, not t.limit"},
		{"a value of another type", []historian.Record{wrongType}, "record 0 (write c1): the value is int"},
		{"another primitive", []historian.Record{wr(pitLogins(), engine.OpSet, "c1", engine.Int(1), 0, 0)}, "record 0"},
	} {
		if tt.name == "another primitive" {
			tt.recs[0].FQN = "t.limit"
		}
		if _, err := historian.NewTimeline(limit, tt.recs, historian.AsOfOptions{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewTimeline = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := historian.NewTimeline(amount, []historian.Record{wr(amount, engine.OpUpdate, "c1", engine.Float(math.Inf(1)), 0, 0)}, historian.AsOfOptions{}); err == nil {
		t.Error("NewTimeline took an infinite add")
	}
	if _, err := tl.AsOf("c1", time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), mustSelector(t, "t.limit")); err == nil {
		t.Error("AsOf took an instant in 1500")
	}
}

// putRecords encodes recs as one object under fqn=<fqn>/date=<date of the first>/name.
func putRecords(t *testing.T, s *memStorage, name string, recs ...historian.Record) {
	t.Helper()
	var buf bytes.Buffer
	if err := historian.EncodeParquet(&buf, recs); err != nil {
		t.Fatal(err)
	}
	key := historian.ObjectKey(recs[0].FQN, recs[0].EventTime.UTC().Format(time.DateOnly), name)
	if err := s.Put(ctx, key, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	limit := pitLimit()
	day := 24 * time.Hour
	s := newMemStorage()
	a := wr(limit, engine.OpSet, "c1", engine.Float(1), -day, -day)
	b := wr(limit, engine.OpSet, "c1", engine.Float(2), 0, 0)
	c := wr(limit, engine.OpSet, "c2", engine.Float(3), 0, 0)
	d := wr(limit, engine.OpSet, "c1", engine.Float(4), day, day)
	negZero := wr(limit, engine.OpSet, "c3", engine.Float(math.Copysign(0, -1)), 0, 0)
	zero := wr(limit, engine.OpSet, "c3", engine.Float(0), 0, 0)
	putRecords(t, s, "1", a)
	putRecords(t, s, "2", b, c, negZero)
	putRecords(t, s, "3", c, b, zero) // delivered again, with one new record (0 is not -0)
	putRecords(t, s, "4", d)
	putRecords(t, s, "5", wr(pitAmount(), engine.OpUpdate, "c1", engine.Float(1), 0, 0)) // another feature
	_ = s.Put(ctx, "fqn=t.limit/date=2026-12-01/_SUCCESS", []byte("not parquet"))

	values := func(recs []historian.Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.EncodedKeys+"="+r.Value.String())
		}
		return strings.Join(out, " ")
	}
	for _, tt := range []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"everything", time.Time{}, time.Time{}, "c1=1 c1=2 c2=3 c3=-0 c3=0 c1=4"},
		{"from t0", t0, time.Time{}, "c1=2 c2=3 c3=-0 c3=0 c1=4"},
		{"up to t0", time.Time{}, t0, "c1=1 c1=2 c2=3 c3=-0 c3=0"},
		{"the day of t0", t0.Add(time.Hour), t0.Add(2 * time.Hour), "c1=2 c2=3 c3=-0 c3=0"},
		{"from the next midnight", t0.Truncate(day).Add(day), time.Time{}, "c1=4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := historian.Load(ctx, s, "t.limit", tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(recs); got != tt.want {
				t.Errorf("Load = %s, want %s", got, tt.want)
			}
		})
	}
	recs, err := historian.LoadFeature(ctx, s, limit, t0.Truncate(day).Add(day).Add(30*time.Minute), time.Time{})
	if err != nil || values(recs) != "c1=2 c2=3 c3=-0 c3=0 c1=4" {
		t.Errorf("LoadFeature half an hour after midnight = %s, %v; want the day before too (staleness 1h)", values(recs), err)
	}
	if _, err := historian.LoadMax(ctx, s, "t.limit", time.Time{}, time.Time{}, 5); !errors.Is(err, historian.ErrTooManyRecords) {
		t.Errorf("LoadMax 5 = %v, want ErrTooManyRecords", err)
	}
	_ = s.Put(ctx, "fqn=t.limit/date=2026-12-01/corrupt.parquet", []byte("PAR1 not really PAR1"))
	if _, err := historian.Load(ctx, s, "t.limit", time.Time{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "corrupt.parquet") {
		t.Errorf("Load of a corrupt object = %v, want an error naming it", err)
	}
	s.mu.Lock()
	delete(s.objects, "fqn=t.limit/date=2026-12-01/corrupt.parquet")
	s.objects["fqn=t.limit/date=2026-12-01/x.parquet"] = s.objects[historian.ObjectKey("t.amount", "2026-12-01", "5")]
	s.mu.Unlock()
	if _, err := historian.Load(ctx, s, "t.limit", time.Time{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "holds records of t.amount") {
		t.Errorf("Load of another feature's object = %v", err)
	}
}

func TestDedup(t *testing.T) {
	limit := pitLimit()
	r := func(v float64, et time.Duration) historian.Record {
		return wr(limit, engine.OpSet, "c1", engine.Float(v), et, 0)
	}
	sup := superseded(r(1, 0))
	bucket := r(1, 0)
	bucket.Kind, bucket.Bucket = historian.KindBucketSnapshot, &historian.BucketRecord{ID: 7}
	bucket2 := bucket
	bucket2.Bucket = &historian.BucketRecord{ID: 8}
	var many []historian.Record
	for i := range 40 { // a long run of records differing only by value, each twice
		many = append(many, r(float64(i%20), 0))
	}
	tests := []struct {
		name string
		in   []historian.Record
		want int
	}{
		{"none", nil, 0},
		{"distinct", []historian.Record{r(1, 0), r(2, 0), r(1, time.Second), sup, bucket, bucket2}, 6},
		{"duplicates", []historian.Record{r(1, 0), r(2, 0), r(1, 0), r(2, 0), r(1, 0)}, 2},
		{"a long run", many, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := historian.Dedup(tt.in)
			if len(got) != tt.want {
				t.Fatalf("%d records kept, want %d", len(got), tt.want)
			}
			if tt.name == "duplicates" && (got[0].Value.Float() != 1 || got[1].Value.Float() != 2) {
				t.Errorf("kept %v, %v; want the first of each, in order", got[0].Value, got[1].Value)
			}
		})
	}
}

// pitFixture is an engine over an in-memory State and notifier with the point-in-time
// features applied, a clock the test moves, and a historian writing to an in-memory Storage.
type pitFixture struct {
	eng     *engine.Engine
	n       *memory.Notifier
	storage *memStorage
	h       *historian.Historian
	now     atomic.Int64
}

func newPitFixture(t *testing.T, start time.Time, features ...*engine.Feature) *pitFixture {
	t.Helper()
	fx := &pitFixture{storage: newMemStorage()}
	fx.now.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, fx.now.Load()).UTC() }
	n, err := memory.New(memory.WithGroups(historian.DefaultGroup), memory.WithRetryDelay(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fx.n = n
	// No janitor: it runs on real time, and would make the test depend on it.
	st := memstate.New(memstate.WithClock(clock), memstate.WithJanitorInterval(0))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fx.eng = engine.New(st, engine.WithNotifier(n), engine.WithClock(clock), engine.WithLogger(quiet))
	for _, f := range features {
		if err := fx.eng.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	fx.h, err = historian.New(historian.Config{Engine: fx.eng, Notifier: n, Storage: fx.storage, Logger: quiet, Now: clock,
		FlushAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(fx.h)
	t.Cleanup(func() { _ = stop(); fx.eng.Close(); st.Close(); n.Close() })
	return fx
}

func (fx *pitFixture) clock() time.Time { return time.Unix(0, fx.now.Load()).UTC() }

func (fx *pitFixture) setClock(t time.Time) { fx.now.Store(t.UnixNano()) }

// flush waits for the historian to have received n notifications and writes them.
func (fx *pitFixture) flush(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, "the notifications", func() bool { return fx.h.Stats().Received >= n })
	if err := fx.h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func (fx *pitFixture) timeline(t *testing.T, f *engine.Feature, opts historian.AsOfOptions, from, to time.Time) *historian.Timeline {
	t.Helper()
	recs, err := historian.LoadFeature(ctx, fx.storage, f, from, to)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := historian.NewTimeline(f, recs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// observation is what Engine.Get answered at an instant.
type observation struct {
	at    time.Time
	sel   string
	keys  engine.Keys
	ekeys string
	res   engine.Result
	err   error
}

// TestAgreement replays a pseudo-random stream of writes through the engine, with a
// historian recording them, and checks that the history read back as written answers, at
// about 200 instants during the replay, exactly what Engine.Get answered then.
func TestAgreement(t *testing.T) {
	start := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC) // the replay crosses midnight
	features := []*engine.Feature{pitLimit(), pitLogins(), pitTags(), pitAmount(), pitSpend()}
	fx := newPitFixture(t, start, features...)
	rng := rand.New(rand.NewPCG(20261201, 7))
	cards := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	countries := []string{"FR", "DE"}
	durIn := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }

	const writes = 3000
	var published int64
	counts := map[string]int{}
	write := func(op engine.Op, fqn string, keys engine.Keys, v any, ts time.Time) {
		t.Helper()
		res, err := fx.eng.Write(ctx, op, fqn, keys, v, ts)
		switch {
		case errors.Is(err, engine.ErrOutOfWindow):
			counts["refused"]++ // not written, not recorded
			return
		case err != nil:
			t.Fatalf("%s %s %v %v at %v: %v", op, fqn, keys, v, ts, err)
		}
		published++
		counts[op.String()+" "+fqn]++
		if res.Superseded() {
			counts["superseded"]++
		}
	}
	sels := []string{"t.limit", "t.logins", "t.tags", "t.amount", "t.amount+sum", "t.amount+count", "t.amount+min",
		"t.amount+max", "t.amount+avg", "t.spend", "t.spend+sum", "t.spend+max"}
	var obs []observation
	observe := func(at time.Time) {
		saved := fx.clock()
		fx.setClock(at)
		defer fx.setClock(saved)
		for _, sel := range sels {
			for _, c := range append(cards, "c9") {
				keys := engine.Keys{"card_id": c}
				if strings.HasPrefix(sel, "t.tags") {
					keys["country"] = countries[rng.IntN(2)]
				}
				f, err := fx.eng.FeatureDescriptor(ctx, sel)
				if err != nil {
					t.Fatal(err)
				}
				ekeys, err := engine.EncodeKeys(f.Keys, keys)
				if err != nil {
					t.Fatal(err)
				}
				res, err := fx.eng.Get(ctx, sel, keys)
				obs = append(obs, observation{at: at, sel: sel, keys: keys, ekeys: ekeys, res: res, err: err})
			}
		}
	}

	for i := range writes {
		now := fx.clock()
		card := cards[rng.IntN(len(cards))]
		keys := engine.Keys{"card_id": card}
		// Event times: mostly just before now, some late (out of order), some a little ahead
		// (a client's clock ahead of the host's).
		ts := func(late time.Duration) time.Time {
			switch p := rng.IntN(100); {
			case p < 65:
				return now.Add(-durIn(0, 30*time.Second))
			case p < 92:
				return now.Add(-durIn(0, late))
			default:
				return now.Add(durIn(0, 5*time.Second))
			}
		}
		switch p := rng.IntN(100); {
		case p < 22:
			write(engine.OpSet, "t.limit", keys, math.Round(rng.Float64()*1e4)/100, ts(2*time.Hour))
		case p < 30:
			write(engine.OpIncr, "t.limit", keys, rng.Float64()*10-3, ts(20*time.Minute))
		case p < 42:
			write(engine.OpIncr, "t.logins", keys, rng.IntN(5)+1, ts(10*time.Minute))
		case p < 45:
			write(engine.OpSet, "t.logins", keys, rng.IntN(100), ts(time.Hour))
		case p < 57:
			keys["country"] = countries[rng.IntN(2)]
			write(engine.OpAppend, "t.tags", keys, fmt.Sprint("m", rng.IntN(50)), ts(10*time.Minute))
		case p < 60:
			keys["country"] = countries[rng.IntN(2)]
			write(engine.OpUpdate, "t.tags", keys, []any{fmt.Sprint("u", rng.IntN(50)), "v"}, ts(10*time.Minute))
		case p < 62:
			keys["country"] = countries[rng.IntN(2)]
			write(engine.OpSet, "t.tags", keys, []any{fmt.Sprint("s", rng.IntN(50))}, ts(time.Hour))
		case p < 88:
			write(engine.OpUpdate, "t.amount", keys, rng.Float64()*200-50, ts(15*time.Minute))
		default:
			write(engine.OpIncr, "t.spend", keys, rng.IntN(1000), ts(70*time.Minute))
		}
		// The next write is at now + advance; observe somewhere in [now, now + advance).
		advance := durIn(time.Millisecond, 30*time.Second)
		if rng.IntN(100) == 0 {
			advance = durIn(40*time.Minute, 2*time.Hour) // let values expire
		}
		if i%15 == 0 {
			observe(now.Add(time.Duration(rng.Int64N(int64(advance)))))
		}
		fx.setClock(now.Add(advance))
	}
	end := fx.clock()
	fx.flush(t, published)
	t.Logf("%d writes (%v) from %v to %v, %d observations", published, counts, start, end, len(obs))
	if counts["superseded"] == 0 || counts["refused"] == 0 || end.Format(time.DateOnly) == start.Format(time.DateOnly) {
		t.Fatalf("the stream does not exercise superseded writes, refused ones and two dates: %v, until %v", counts, end)
	}

	timelines := map[string]*historian.Timeline{}
	for _, f := range features {
		timelines[f.FQN] = fx.timeline(t, f, historian.AsOfOptions{AsWritten: true}, time.Time{}, time.Time{})
	}
	compare := func(o observation, tl *historian.Timeline) {
		t.Helper()
		sel := mustSelector(t, o.sel)
		got, err := tl.AsOf(o.ekeys, o.at, sel)
		if (err != nil) != (o.err != nil) {
			t.Errorf("%s %v as of %v: AsOf error %v, Get error %v", o.sel, o.keys, o.at, err, o.err)
			return
		}
		want := o.res
		if got.Found() != want.Found() || !sameResultValue(got.Value, want.Value) || !got.Timestamp.Equal(want.Timestamp) || got.Fresh != want.Fresh {
			t.Errorf("%s %v as of %v (clock − %v):\n  history %v at %v fresh %v (found %v)\n  online  %v at %v fresh %v (found %v)",
				o.sel, o.keys, o.at, end.Sub(o.at), got.Value, got.Timestamp, got.Fresh, got.Found(), want.Value, want.Timestamp, want.Fresh, want.Found())
		}
	}
	found := 0
	for _, o := range obs {
		compare(o, timelines[mustSelector(t, o.sel).FQN])
		if o.res.Found() {
			found++
		}
	}
	if found < len(obs)/3 {
		t.Errorf("only %d of %d observations found a value: the test checks little", found, len(obs))
	}
	// A few instants again with timelines of only the partitions LoadFeature reads for them.
	for i := 0; i < len(obs); i += len(obs) / 5 {
		at := obs[i].at
		for _, f := range features {
			tl := fx.timeline(t, f, historian.AsOfOptions{AsWritten: true}, at, time.Time{})
			for _, o := range obs {
				if o.at.Equal(at) && mustSelector(t, o.sel).FQN == f.FQN {
					compare(o, tl)
				}
			}
		}
	}
}

// TestBackfillEventTime: a write made late with an old timestamp counts as of its timestamp
// in the event-time view, and only from when it was written as written.
func TestBackfillEventTime(t *testing.T) {
	limit := pitLimit() // fresh 10m, stale 1h
	fx := newPitFixture(t, t0, limit)
	h := time.Hour
	set := func(card string, v float64, at, ts time.Duration) {
		t.Helper()
		fx.setClock(t0.Add(at))
		if _, err := fx.eng.Set(ctx, "t.limit", engine.Keys{"card_id": card}, v, t0.Add(ts)); err != nil {
			t.Fatal(err)
		}
	}
	set("c2", 20, 5*h, 5*h)                 // c2's current value
	set("c1", 10, 10*h, 0)                  // a backfill into an empty entity
	set("c2", 21, 10*h, h)                  // a backfill under a later value: superseded
	set("c2", 22, 10*h+time.Minute, 10*h-1) // and one that is current (and already stale)
	fx.flush(t, 4)
	f := engine.Float
	m := time.Minute
	eventTime := fx.timeline(t, limit, historian.AsOfOptions{}, time.Time{}, time.Time{})
	checkQueries(t, eventTime, limit, []query{
		{at: m, found: true, value: f(10), fresh: true},
		{at: 30 * m, found: true, value: f(10)},
		{at: h},
		{at: h + m, keys: "c2", found: true, value: f(21), ts: h, fresh: true},
		{at: 5 * h, keys: "c2", found: true, value: f(20), ts: 5 * h, fresh: true},
		{at: 10 * h, keys: "c2", found: true, value: f(22), ts: 10*h - 1, fresh: true},
	})
	asWritten := fx.timeline(t, limit, historian.AsOfOptions{AsWritten: true}, time.Time{}, time.Time{})
	checkQueries(t, asWritten, limit, []query{
		{at: m},
		{at: 10*h - 1},
		{at: 10 * h}, // written now, but an hour past its staleness
		{at: h + m, keys: "c2"},
		{at: 5*h + m, keys: "c2", found: true, value: f(20), ts: 5 * h, fresh: true},
		{at: 10 * h, keys: "c2"}, // the superseded backfill does not count, and 20 is stale
		{at: 10*h + m, keys: "c2", found: true, value: f(22), ts: 10*h - 1, fresh: true},
	})
	// The online answer agrees with the as-written view now.
	fx.setClock(t0.Add(10*h + m))
	if got, err := fx.eng.Get(ctx, "t.limit", engine.Keys{"card_id": "c2"}); err != nil || got.Value.Float() != 22 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}
