package historian

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// This file reads the history back: Load gathers a feature's records from a Storage and a
// Timeline answers, for any entity and instant, what the engine would have served then.
//
// The semantics a Timeline reproduces (docs/history.md, "Reading history back"):
//
//   - A scalar or list feature's current value is, among the writes that count, the one with
//     the latest timestamp, of equal timestamps the one written last. A Set (or an Update of
//     a scalar) has its own event time. An Incr or an Append (or an Update of a list) is
//     recorded with the value after the write, and that value carries the timestamp the
//     State keeps for it: the later of the write's timestamp and the timestamp of the value
//     it added to (plugins/state/memory's Incr and Append), so a back-dated increment never
//     makes a counter look older. A value is served while instant − timestamp < staleness,
//     fresh while < freshness.
//   - A windowed feature's value is the merge of the buckets in engine.AliveSpan(instant):
//     each bucket folds its adds with engine.Bucket.Add in arrival order (write time, then
//     the order of the records), the buckets are merged with engine.Bucket.Merge in bucket
//     ID order, as engine.MergeBuckets and the State's WindowAggregate do, so that sums agree
//     with the engine's bit for bit. Its timestamp is the merged bucket's Updated.
//
// Which writes count depends on AsOfOptions:
//
//   - By default (the event-time view) every write with a timestamp ≤ the instant counts,
//     whenever it was written: backfilled and late writes included, and superseded Sets too
//     (a late write is the latest value as of its own timestamp even though it arrived after
//     a later one). This is the view a training set wants.
//   - With AsWritten, exactly the writes the online store had received by the instant count
//     (write time ≤ instant), as the State applied them: a superseded Set never became
//     current, and a value dated after the instant that was already written (a client's
//     clock ahead of the host's) counts, as the engine served it. This reproduces what
//     Engine.Get answered at the instant.

// MaxLoadRecords is the most records Load holds: a feature's history beyond it is refused
// (pass a narrower window) rather than exhausting memory. Each object is checked once it is
// decoded, so at most MaxLoadRecords plus one object's records (MaxParquetRows) are held.
const MaxLoadRecords = 50_000_000

// Errors of history reads.
var (
	// ErrTooManyRecords is wrapped by Load's error when the history holds more records than
	// its bound.
	ErrTooManyRecords = errors.New("historian: too many records")
	// ErrUnsupportedRead is wrapped by AsOf's error for a selector a history read cannot
	// answer: a previous version (@-N) or an encoding ([name]).
	ErrUnsupportedRead = errors.New("not supported in history reads")
)

// AsOfOptions says which writes a Timeline counts.
type AsOfOptions struct {
	// AsWritten counts, as of an instant, only the writes written by then (write time ≤
	// the instant), applied as the State applied them: exactly what the online store held
	// and Engine.Get served at that instant. Unset (the event-time view), every write with a
	// timestamp ≤ the instant counts, however late it was written.
	AsWritten bool
}

// Timeline is one feature's history arranged for point-in-time reads: per entity, the values
// sorted by the instant they count from (a binary search per read) and, for a windowed
// feature, the buckets sorted by ID with the running aggregates of their adds. It holds
// memory proportional to the records it was built from. It is safe for concurrent use.
type Timeline struct {
	f         *engine.Feature
	asWritten bool
	// lines are the entities' histories, keys their encoded keys, index the position of
	// each in both.
	lines []entityLine
	keys  []string
	index map[string]int
}

// entityLine is one entity's history.
type entityLine struct {
	// points are a scalar or list feature's values, sorted by key.
	points []point
	// buckets are a windowed feature's buckets, sorted by ID.
	buckets []bucketLine
}

// point is one value of a scalar or list feature.
type point struct {
	// key is the instant from which the value counts, Unix nanoseconds: its write time
	// (AsWritten) or its timestamp (the event-time view).
	key int64
	// ts is the value's timestamp as the State keeps it, Unix nanoseconds.
	ts int64
	v  engine.Value
}

// bucketLine is one window bucket of an entity: its adds in arrival order and the bucket as
// it stood after each.
type bucketLine struct {
	id int64
	// wt and et are the adds' write and event times (Unix nanoseconds), x their values.
	wt, et []int64
	x      []float64
	// prefix[i] is the bucket after adds 0…i, folded with engine.Bucket.Add.
	prefix []engine.Bucket
	// inOrder: the adds' event times never decrease in arrival order, so the adds with an
	// event time ≤ an instant are a prefix of them.
	inOrder bool
}

// writeClass is how a write changes a scalar or list feature's value.
type writeClass uint8

const (
	classSet    writeClass = iota + 1 // replaces the value, ordered by event time
	classAccrue                       // incr or append: adds to the value, in call order
)

func classify(f *engine.Feature, op engine.Op) (writeClass, error) {
	switch {
	case op == engine.OpSet, op == engine.OpUpdate && !f.Primitive.IsList():
		return classSet, nil
	case op == engine.OpIncr, op == engine.OpAppend, op == engine.OpUpdate && f.Primitive.IsList():
		return classAccrue, nil
	}
	return 0, fmt.Errorf("op %s is not a write", op)
}

// NewTimeline arranges the records of one feature, f, for point-in-time reads. recs are the
// feature's records in the order they were loaded (Load's order: objects by key, rows in
// order), each record once: Load drops the duplicates that at-least-once delivery leaves,
// Dedup does it for records from elsewhere. The order matters only between writes of one
// entity with equal write times, which are taken in that order.
//
// Only KindWrite records are used (windows are recomputed from their adds; bucket snapshot
// and final records are skipped). A write of a scalar or list feature recorded without a
// value changed the value to one the history does not know: it is served as none while it is
// current. NewTimeline fails, naming the record (its index in recs), on a record of another
// feature (FQN, primitive or key names), on a write whose value does not have the feature's
// type, and on a window add without a finite number.
func NewTimeline(f *engine.Feature, recs []Record, opts AsOfOptions) (*Timeline, error) {
	if f == nil {
		return nil, errors.New("historian: timeline: no feature descriptor")
	}
	if f.Windowed() && f.Granularity <= 0 {
		return nil, fmt.Errorf("historian: timeline %s: windowed without a granularity", f.FQN)
	}
	if f.Staleness <= 0 {
		return nil, fmt.Errorf("historian: timeline %s: staleness %v is not positive", f.FQN, f.Staleness)
	}
	byEntity := map[string][]int{}
	var order []string // entities in first-seen order, so that building is deterministic
	for i := range recs {
		r := &recs[i]
		if err := checkTimelineRecord(f, r); err != nil {
			return nil, fmt.Errorf("historian: timeline %s: record %d (%s %s): %w", f.FQN, i, r.Kind, r.EncodedKeys, err)
		}
		if r.Kind != KindWrite {
			continue
		}
		if _, ok := byEntity[r.EncodedKeys]; !ok {
			order = append(order, r.EncodedKeys)
		}
		byEntity[r.EncodedKeys] = append(byEntity[r.EncodedKeys], i)
	}
	tl := &Timeline{f: f.Clone(), asWritten: opts.AsWritten, lines: make([]entityLine, 0, len(order)), keys: order,
		index: make(map[string]int, len(order))}
	for _, k := range order {
		idx := byEntity[k]
		// Arrival order: write time, then the records' order.
		slices.SortStableFunc(idx, func(a, b int) int { return recs[a].WriteTime.Compare(recs[b].WriteTime) })
		var line entityLine
		var err error
		if f.Windowed() {
			line = tl.windowLine(recs, idx)
		} else if line, err = tl.valueLine(recs, idx); err != nil {
			return nil, fmt.Errorf("historian: timeline %s: entity %q: %w", f.FQN, k, err)
		}
		tl.index[k] = len(tl.lines)
		tl.lines = append(tl.lines, line)
	}
	return tl, nil
}

func checkTimelineRecord(f *engine.Feature, r *Record) error {
	switch {
	case r.FQN != f.FQN:
		return fmt.Errorf("a record of %s, not %s", r.FQN, f.FQN)
	case r.Primitive != f.Primitive:
		return fmt.Errorf("primitive %s, but %s is %s (re-created with another type? read a window without the old records)", r.Primitive, f.FQN, f.Primitive)
	case !slices.Equal(r.KeyNames, f.Keys):
		return fmt.Errorf("keys %v, but %s has keys %v", r.KeyNames, f.FQN, f.Keys)
	case r.Kind != KindWrite:
		return nil
	case !inNanos(r.EventTime) || !inNanos(r.WriteTime):
		return fmt.Errorf("event time %s or write time %s outside the years 1678 to 2262", r.EventTime.UTC().Format(time.RFC3339Nano), r.WriteTime.UTC().Format(time.RFC3339Nano))
	}
	if f.Windowed() {
		x, ok := r.Value.Number()
		if !ok {
			return fmt.Errorf("the add's value is %s, not a number", r.Value.Kind())
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("the add's value %v is not finite", x)
		}
		return nil
	}
	if !r.Value.IsNull() && r.Value.Kind() != engine.Kind(f.Primitive) {
		return fmt.Errorf("the value is %s, but %s is %s", r.Value.Kind(), f.FQN, f.Primitive)
	}
	_, err := classify(f, r.Op)
	return err
}

func inNanos(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// valueLine builds a scalar or list entity's points from its writes in arrival order.
func (tl *Timeline) valueLine(recs []Record, idx []int) (entityLine, error) {
	line := entityLine{points: make([]point, 0, len(idx))}
	var cur int64 // the State's current value's timestamp
	hasCur := false
	for _, i := range idx {
		r := &recs[i]
		class, err := classify(tl.f, r.Op)
		if err != nil {
			return entityLine{}, err
		}
		et := r.EventTime.UnixNano()
		ts := et
		switch {
		case class == classAccrue:
			// The State keeps the later of the write's timestamp and the current value's when
			// that value is live relative to the write, the write's otherwise; a value that
			// is not live is older than the write by staleness or more, so the later of the
			// two is right either way.
			if hasCur && cur > ts {
				ts = cur
			}
			cur, hasCur = ts, true
		case !r.Superseded:
			cur, hasCur = ts, true
		case tl.asWritten:
			continue // never the current value
		}
		key := ts
		if tl.asWritten {
			key = r.WriteTime.UnixNano()
		}
		line.points = append(line.points, point{key: key, ts: ts, v: r.Value})
	}
	if !tl.asWritten {
		// By timestamp; of equal timestamps the one written last stays last.
		slices.SortStableFunc(line.points, func(a, b point) int { return cmp.Compare(a.key, b.key) })
	}
	return line, nil
}

// windowLine builds a windowed entity's buckets from its adds in arrival order.
func (tl *Timeline) windowLine(recs []Record, idx []int) entityLine {
	byID := map[int64]int{} // bucket ID → index in buckets
	var buckets []bucketLine
	for _, i := range idx {
		r := &recs[i]
		id := engine.BucketID(r.EventTime, tl.f.Granularity)
		j, ok := byID[id]
		if !ok {
			j = len(buckets)
			byID[id] = j
			buckets = append(buckets, bucketLine{id: id, inOrder: true})
		}
		b := &buckets[j]
		x, _ := r.Value.Number()
		et := r.EventTime.UnixNano()
		if n := len(b.et); n > 0 && et < b.et[n-1] {
			b.inOrder = false
		}
		var acc engine.Bucket
		if n := len(b.prefix); n > 0 {
			acc = b.prefix[n-1]
		} else {
			acc.ID = id
		}
		acc.Add(x, time.Unix(0, et).UTC())
		b.wt = append(b.wt, r.WriteTime.UnixNano())
		b.et = append(b.et, et)
		b.x = append(b.x, x)
		b.prefix = append(b.prefix, acc)
	}
	slices.SortFunc(buckets, func(a, b bucketLine) int { return cmp.Compare(a.id, b.id) })
	for i := range buckets {
		b := &buckets[i]
		b.wt, b.et, b.x, b.prefix = slices.Clip(b.wt), slices.Clip(b.et), slices.Clip(b.x), slices.Clip(b.prefix)
	}
	return entityLine{buckets: buckets}
}

// Feature returns a copy of the descriptor the timeline was built with.
func (tl *Timeline) Feature() *engine.Feature { return tl.f.Clone() }

// Entities returns the number of entities with history.
func (tl *Timeline) Entities() int { return len(tl.lines) }

// EntityKeys returns the encoded keys of the entities with history: entity i of AsOfEntity
// has EntityKeys()[i]. The slice is the timeline's: the caller must not modify it.
func (tl *Timeline) EntityKeys() []string { return tl.keys }

// Entity returns the index of the entity whose encoded keys are encodedKeys, for AsOfEntity,
// or -1 when it has no history.
func (tl *Timeline) Entity(encodedKeys string) int {
	if i, ok := tl.index[encodedKeys]; ok {
		return i
	}
	return -1
}

// CheckSelector returns an error unless a history read can answer sel on feature f: sel
// must name f, may ask for an aggregation f computes (+aggr, windowed features only;
// engine.ErrUnsupported otherwise, as the engine refuses it), and may not ask for a previous
// version (@-N) or an encoding ([name]), which history reads do not support
// (ErrUnsupportedRead).
func CheckSelector(f *engine.Feature, sel engine.Selector) error {
	switch {
	case sel.FQN != f.FQN:
		return fmt.Errorf("historian: selector %s: the feature read is %s", sel, f.FQN)
	case sel.Version > 0:
		return fmt.Errorf("historian: selector %s: previous versions (@-%d): %w", sel, sel.Version, ErrUnsupportedRead)
	case sel.Encoding != "":
		return fmt.Errorf("historian: selector %s: encodings ([%s]): %w", sel, sel.Encoding, ErrUnsupportedRead)
	case sel.Aggr != engine.AggrUnknown && !f.Windowed():
		return fmt.Errorf("%w: selector %s: +%s on %s, which is not windowed", engine.ErrUnsupported, sel, sel.Aggr, f.FQN)
	case sel.Aggr != engine.AggrUnknown && !f.Aggrs.Has(sel.Aggr):
		return fmt.Errorf("%w: selector %s: %s aggregates %s, not %s", engine.ErrUnsupported, sel, f.FQN, f.Aggrs, sel.Aggr)
	}
	return nil
}

// AsOf returns what a read of sel for the entity whose encoded keys (engine.EncodeKeys) are
// encodedKeys answered at instant at: what Engine.Get with its clock at at would have
// served, given the writes that count (see AsOfOptions): the Value (Null when nothing was
// servable: never written, expired, stale, or an empty window), its Timestamp and whether it
// was Fresh. A +aggr selector gives that aggregation as a Float, a windowed feature without
// one its engine.Window value.
//
// What the engine does around the stored value is not reproduced: middlewares, and the
// on-request computation of a feature that has a program and no data source. Writes to one
// entity are taken in the order of their write times (then of the records), which is the
// State's unless they were concurrent. AsOf fails for a selector CheckSelector refuses for the
// timeline's feature, for an instant outside the years 1678 to 2262, and, as Get does, with
// engine.ErrOverflow for a window whose aggregation leaves the float range.
func (tl *Timeline) AsOf(encodedKeys string, at time.Time, sel engine.Selector) (engine.Result, error) {
	return tl.AsOfEntity(tl.Entity(encodedKeys), at, sel)
}

// AsOfEntity is AsOf of the entity with index entity (Entity, EntityKeys), without looking
// its keys up: a caller reading many features of the same entities (an export) maps its
// entities to each timeline's once. An index out of range (-1) is an entity without history.
func (tl *Timeline) AsOfEntity(entity int, at time.Time, sel engine.Selector) (engine.Result, error) {
	res := engine.Result{FQN: tl.f.FQN}
	if err := CheckSelector(tl.f, sel); err != nil {
		return res, err
	}
	if !inNanos(at) {
		return res, fmt.Errorf("historian: as of %s: outside the years 1678 to 2262", at.UTC().Format(time.RFC3339Nano))
	}
	if entity < 0 || entity >= len(tl.lines) {
		return res, nil
	}
	line := &tl.lines[entity]
	if tl.f.Windowed() {
		return tl.windowAsOf(line, at, sel)
	}
	now := at.UnixNano()
	i := sort.Search(len(line.points), func(i int) bool { return line.points[i].key > now }) - 1
	if i < 0 {
		return res, nil
	}
	p := &line.points[i]
	age := since(now, p.ts)
	if age >= tl.f.Staleness || p.v.IsNull() {
		return res, nil
	}
	res.Value, res.Timestamp, res.Fresh = p.v, time.Unix(0, p.ts).UTC(), age < tl.f.Freshness
	return res, nil
}

func (tl *Timeline) windowAsOf(line *entityLine, at time.Time, sel engine.Selector) (engine.Result, error) {
	f := tl.f
	res := engine.Result{FQN: f.FQN}
	now := at.UnixNano()
	span := engine.AliveSpan(at, f.Staleness, f.Granularity)
	first := sort.Search(len(line.buckets), func(i int) bool { return line.buckets[i].id >= span.First })
	// acc merges the buckets in ID order, as engine.MergeBuckets does.
	var acc engine.Bucket
	for i := first; i < len(line.buckets) && line.buckets[i].id <= span.Last; i++ {
		b := &line.buckets[i]
		if tl.asWritten {
			// What the State held: the adds written by now, a prefix of the arrival order.
			n := sort.Search(len(b.wt), func(i int) bool { return b.wt[i] > now })
			if n > 0 {
				acc.Merge(b.prefix[n-1])
			}
			continue
		}
		if b.id < span.Last { // wholly before now: every add counts
			acc.Merge(b.prefix[len(b.prefix)-1])
			continue
		}
		// The bucket holding now: the adds with an event time ≤ now, in arrival order.
		if b.inOrder {
			n := sort.Search(len(b.et), func(i int) bool { return b.et[i] > now })
			if n > 0 {
				acc.Merge(b.prefix[n-1])
			}
			continue
		}
		part := engine.Bucket{ID: b.id}
		for j, et := range b.et {
			if et <= now {
				part.Add(b.x[j], time.Unix(0, et).UTC())
			}
		}
		acc.Merge(part)
	}
	if acc.Count == 0 {
		return res, nil
	}
	r := engine.WindowResult{Aggrs: f.Aggrs, Sum: acc.Sum, Count: acc.Count, Min: acc.Min, Max: acc.Max}
	if err := checkFinite(r, sel.Aggr); err != nil {
		return res, err
	}
	res.Timestamp = acc.Updated.UTC()
	res.Fresh = at.Sub(acc.Updated) < f.Freshness
	if sel.Aggr != engine.AggrUnknown {
		res.Value = engine.Float(r.Get(sel.Aggr))
	} else {
		res.Value = engine.Window(r)
	}
	return res, nil
}

// checkFinite refuses, as the engine does, a window whose aggregation a (any of r.Aggrs for
// AggrUnknown) is not finite.
func checkFinite(r engine.WindowResult, a engine.AggrFn) error {
	for fn := engine.AggrSum; fn <= engine.AggrAvg; fn++ {
		if fn != a && (a != engine.AggrUnknown || !r.Aggrs.Has(fn)) {
			continue
		}
		if x := r.Get(fn); math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("%w: the window's %s is %v, beyond the float range", engine.ErrOverflow, fn, x)
		}
	}
	return nil
}

// since returns now − ts (Unix nanoseconds) as a Duration, saturating as time.Time.Sub does.
func since(now, ts int64) time.Duration {
	d := now - ts
	switch {
	case ts < 0 && now > 0 && d < 0:
		return math.MaxInt64
	case ts > 0 && now < 0 && d > 0:
		return math.MinInt64
	}
	return time.Duration(d)
}

// Lookback is how far before an instant a feature's records can matter to a read as of it:
// its staleness (an older value is not served), plus a bucket for a windowed feature (the
// window's first bucket starts up to a granularity before instant − staleness).
func Lookback(f *engine.Feature) time.Duration { return f.Staleness + f.Granularity }

// Load reads the records of feature fqn from s: every object under fqn=<fqn>/ whose date
// partition (the UTC date of its records' event times) overlaps the event times [from, to],
// decoded, with the duplicates that at-least-once delivery leaves dropped (see Dedup). A
// zero from or to leaves that side open: pass zero times for everything. Objects whose keys
// do not end in .parquet are skipped; an object without a date partition is always read.
//
// The window bounds event times, not as-of instants: to read as of instants in [a, b] use
// LoadFeature, which widens it by the feature's Lookback. The records come in the objects'
// key order, each object's rows in order. Load refuses a history of more than
// MaxLoadRecords records (ErrTooManyRecords) and fails, naming the object, on one that does
// not decode or holds another feature's records.
func Load(ctx context.Context, s Storage, fqn string, from, to time.Time) ([]Record, error) {
	return LoadMax(ctx, s, fqn, from, to, MaxLoadRecords)
}

// LoadFeature is Load of the records that reads of f as of the instants [from, to] can use:
// event times from from − Lookback(f). A zero from or to leaves that side open. A read with
// AsOfOptions.AsWritten can also use a record dated after the instant that was written
// before it (a client's clock ahead of the host's): pass a zero to for those.
func LoadFeature(ctx context.Context, s Storage, f *engine.Feature, from, to time.Time) ([]Record, error) {
	if !from.IsZero() {
		from = from.Add(-Lookback(f))
	}
	return Load(ctx, s, f.FQN, from, to)
}

// LoadMax is Load with another bound than MaxLoadRecords on the records held (maxRecords
// ≤ 0: MaxLoadRecords).
func LoadMax(ctx context.Context, s Storage, fqn string, from, to time.Time, maxRecords int) ([]Record, error) {
	if maxRecords <= 0 {
		maxRecords = MaxLoadRecords
	}
	if fqn == "" || strings.Contains(fqn, "/") {
		return nil, fmt.Errorf("historian: load: feature name %q is not an FQN", fqn)
	}
	prefix := "fqn=" + fqn + "/"
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("historian: load %s: list %s: %w", fqn, prefix, err)
	}
	var recs []Record
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".parquet") || !partitionOverlaps(o.Key[len(prefix):], from, to) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("historian: load %s: %w", fqn, err)
		}
		rs, err := loadObject(ctx, s, o.Key)
		if err != nil {
			return nil, fmt.Errorf("historian: load %s: %w", fqn, err)
		}
		if len(rs) > 0 && rs[0].FQN != fqn {
			return nil, fmt.Errorf("historian: load %s: object %s holds records of %s", fqn, o.Key, rs[0].FQN)
		}
		if len(recs)+len(rs) > maxRecords {
			return nil, fmt.Errorf("historian: load %s: %w: more than %d records (at object %s); read a narrower window", fqn, ErrTooManyRecords, maxRecords, o.Key)
		}
		recs = append(recs, rs...)
	}
	return Dedup(recs), nil
}

func loadObject(ctx context.Context, s Storage, key string) ([]Record, error) {
	obj, err := s.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	defer obj.Close()
	rs, err := DecodeParquet(obj, obj.Size())
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", key, err)
	}
	return rs, nil
}

// partitionOverlaps reports whether the object at rest (its key after fqn=<fqn>/) may hold
// event times in [from, to]: false only for a date=YYYY-MM-DD partition whose day ends at or
// before from or starts after to.
func partitionOverlaps(rest string, from, to time.Time) bool {
	seg, _, ok := strings.Cut(rest, "/")
	if !ok {
		return true
	}
	d, ok := strings.CutPrefix(seg, "date=")
	if !ok {
		return true
	}
	day, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return true
	}
	if !from.IsZero() && !day.Add(24*time.Hour).After(from) {
		return false
	}
	return to.IsZero() || !day.After(to)
}

// Dedup drops the duplicate records that at-least-once delivery leaves (a batch written
// again after a failed acknowledgement, a bucket collected again after a restart): records
// with the same feature, entity keys, kind, op, event time, write time, superseded flag,
// value (bit for bit) and bucket ID are one record, of which the first is kept. It compacts
// recs in place, the records kept in their order, and returns the prefix that holds them; it
// allocates an index and a flag per record.
func Dedup(recs []Record) []Record {
	if len(recs) < 2 {
		return recs
	}
	idx := make([]int, len(recs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := compareDupKey(&recs[a], &recs[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	drop := make([]bool, len(recs))
	dropped := 0
	for start := 0; start < len(idx); {
		end := start + 1
		for end < len(idx) && compareDupKey(&recs[idx[start]], &recs[idx[end]]) == 0 {
			end++
		}
		dropped += dedupRun(recs, idx[start:end], drop)
		start = end
	}
	if dropped == 0 {
		return recs
	}
	n := 0
	for i := range recs {
		if !drop[i] {
			recs[n] = recs[i]
			n++
		}
	}
	clear(recs[n:])
	return recs[:n]
}

// dedupRun marks the duplicates among records that agree on everything but their values
// (in index order, so the first of equal ones is kept) and returns how many it marked.
func dedupRun(recs []Record, run []int, drop []bool) int {
	if len(run) < 2 {
		return 0
	}
	n := 0
	if len(run) <= 16 {
		for i, a := range run {
			if drop[a] {
				continue
			}
			for _, b := range run[i+1:] {
				if !drop[b] && sameValue(recs[a].Value, recs[b].Value) {
					drop[b] = true
					n++
				}
			}
		}
		return n
	}
	seen := make(map[string]bool, len(run))
	for _, a := range run {
		k := valueFingerprint(recs[a].Value)
		if seen[k] {
			drop[a] = true
			n++
			continue
		}
		seen[k] = true
	}
	return n
}

func compareDupKey(a, b *Record) int {
	if c := strings.Compare(a.EncodedKeys, b.EncodedKeys); c != 0 {
		return c
	}
	if c := a.WriteTime.Compare(b.WriteTime); c != 0 {
		return c
	}
	if c := a.EventTime.Compare(b.EventTime); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Op, b.Op); c != 0 {
		return c
	}
	if a.Superseded != b.Superseded {
		if a.Superseded {
			return 1
		}
		return -1
	}
	if c := compareBucket(a.Bucket, b.Bucket); c != 0 {
		return c
	}
	if c := strings.Compare(a.FQN, b.FQN); c != 0 {
		return c
	}
	return slices.Compare(a.Keys, b.Keys)
}

// compareBucket orders records without a bucket before those with one, and those by ID.
func compareBucket(a, b *BucketRecord) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return cmp.Compare(a.ID, b.ID)
}

// sameValue reports whether two values are identical: the same kind and the same bits (so
// 0 and -0 differ, unlike engine.Value.Equal).
func sameValue(a, b engine.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case engine.KindFloat:
		return a.Bits() == b.Bits()
	case engine.KindFloatList:
		return slices.EqualFunc(a.Floats(), b.Floats(), func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
	}
	return a.Equal(b)
}

// valueFingerprint encodes a value so that identical values (sameValue), and only they,
// have equal fingerprints.
func valueFingerprint(v engine.Value) string {
	var b bytes.Buffer
	b.WriteByte(byte(v.Kind()))
	u64 := func(x uint64) { b.Write(binary.LittleEndian.AppendUint64(nil, x)) }
	str := func(s string) { u64(uint64(len(s))); b.WriteString(s) }
	switch v.Kind() {
	case engine.KindString:
		str(v.Str())
	case engine.KindIntList:
		for _, x := range v.Ints() {
			u64(uint64(x))
		}
	case engine.KindFloatList:
		for _, x := range v.Floats() {
			u64(math.Float64bits(x))
		}
	case engine.KindStringList:
		for _, s := range v.Strs() {
			str(s)
		}
	case engine.KindBoolList:
		for _, x := range v.Bools() {
			if x {
				b.WriteByte(1)
			} else {
				b.WriteByte(0)
			}
		}
	case engine.KindTimestampList:
		for _, t := range v.Times() {
			u64(uint64(t.UnixNano()))
		}
	default:
		u64(v.Bits())
	}
	return b.String()
}
