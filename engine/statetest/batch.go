package statetest

import (
	"fmt"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// testBatchRead checks that a BatchReader's batch agrees exactly, cell by cell, with the
// single reads it stands for: current and previous values (beyond Versions included),
// stale and absent values, windows (full, partly expired, empty) and cells that fail.
func testBatchRead(e *env) {
	br, ok := e.st.(engine.BatchReader)
	if !ok {
		e.Skipf("%T does not implement engine.BatchReader: the engine reads its GetMany cells one by one", e.st)
	}
	const g = time.Minute
	scalar := e.feature("batch_scalar", engine.PrimitiveString, staleness(2*time.Hour), keepPrevious(2, time.Hour))
	short := e.feature("batch_short", engine.PrimitiveFloat, staleness(10*time.Minute))
	list := e.feature("batch_list", engine.PrimitiveIntList, keyNames("a", "b"))
	win := e.feature("batch_window", engine.PrimitiveFloat, windowed(g, 10*time.Minute))
	k, absent := e.keys(scalar, "k"), e.keys(scalar, "nobody")
	lk := e.keys(list, "x;y", "z")
	t := func(m int) time.Time { return e.now.Add(time.Duration(-m) * time.Minute) }

	e.set(scalar, k, engine.String("A"), t(90)) // @-2: older than Over
	e.set(scalar, k, engine.String("B"), t(30))
	e.set(scalar, k, engine.String("C"), t(1))
	e.set(short, k, engine.Float(1.5), t(20)) // stale
	e.set(short, absent, engine.Float(2.5), t(2))
	e.append(list, lk, engine.IntList([]int64{1, 2}), t(1))
	id := engine.BucketID(e.now, g)
	for n, x := range []float64{3, -1, 7, 2} {
		e.windowAdd(win, k, x, engine.BucketStart(id-int64(n*3), g).Add(time.Second))
	}
	alive := engine.AliveSpan(e.now, win.Staleness, win.Granularity)

	cells := []struct {
		name string
		read engine.Read
	}{
		{"current", engine.Read{Feature: scalar, Keys: k}},
		{"version 1", engine.Read{Feature: scalar, Keys: k, Version: 1}},
		{"version past Over", engine.Read{Feature: scalar, Keys: k, Version: 2}},
		{"version beyond Versions", engine.Read{Feature: scalar, Keys: k, Version: 3}},
		{"absent entity", engine.Read{Feature: scalar, Keys: absent}},
		{"absent version", engine.Read{Feature: scalar, Keys: absent, Version: 1}},
		{"stale", engine.Read{Feature: short, Keys: k}},
		{"other entity", engine.Read{Feature: short, Keys: absent}},
		{"no versions kept", engine.Read{Feature: short, Keys: absent, Version: 1}},
		{"list", engine.Read{Feature: list, Keys: lk}},
		{"window alive", engine.Read{Feature: win, Keys: k, Span: alive}},
		{"window part", engine.Read{Feature: win, Keys: k, Span: engine.WindowSpan{First: id - 3, Last: id}}},
		{"window expired span", engine.Read{Feature: win, Keys: k, Span: engine.WindowSpan{First: id - 1000, Last: id - 900}}},
		{"window absent", engine.Read{Feature: win, Keys: absent, Span: alive}},
		{"negative version", engine.Read{Feature: scalar, Keys: k, Version: -1}},
		{"current again", engine.Read{Feature: scalar, Keys: k}},
	}
	reads := make([]engine.Read, len(cells))
	for i, c := range cells {
		reads[i] = c.read
	}
	got := br.ReadBatch(e.ctx, reads)
	if len(got) != len(reads) {
		e.Fatalf("ReadBatch of %d reads returned %d results", len(reads), len(got))
	}
	for i, c := range cells {
		want := e.single(c.read)
		if g := got[i]; !sameRead(g, want) {
			e.Errorf("%s: ReadBatch cell %d = %s,\n  single read = %s", c.name, i, fmtRead(g), fmtRead(want))
		}
	}
	if out := br.ReadBatch(e.ctx, nil); len(out) != 0 {
		e.Errorf("ReadBatch(nil) = %d results, want none", len(out))
	}
}

// single reads one cell the way a State without batches is read.
func (e *env) single(r engine.Read) engine.ReadResult {
	var out engine.ReadResult
	switch {
	case !r.Feature.Windowed():
		out.Value, out.Timestamp, out.Found, out.Err = e.st.Get(e.ctx, r.Feature, r.Keys, r.Version)
	case isAggregator(e.st):
		out.Window, out.Err = e.st.(engine.WindowAggregator).WindowAggregate(e.ctx, r.Feature, r.Keys, r.Span)
	default:
		var bs []engine.Bucket
		bs, out.Err = e.st.WindowBuckets(e.ctx, r.Feature, r.Keys, r.Span)
		out.Window = engine.MergeBuckets(bs, r.Span)
	}
	return out
}

func isAggregator(st engine.State) bool { _, ok := st.(engine.WindowAggregator); return ok }

// sameRead compares two results exactly; errors by their text, since the batch must report
// what the single read would have.
func sameRead(a, b engine.ReadResult) bool {
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
		return false
	}
	w, v := a.Window, b.Window
	return a.Found == b.Found && a.Value.Equal(b.Value) && a.Value.Kind() == b.Value.Kind() && a.Timestamp.Equal(b.Timestamp) &&
		w.Sum == v.Sum && w.Count == v.Count && w.Min == v.Min && w.Max == v.Max && w.Updated.Equal(v.Updated)
}

func fmtRead(r engine.ReadResult) string {
	return fmt.Sprintf("{found %v, %v (%s) at %v, window %+v, err %v}", r.Found, r.Value, r.Value.Kind(), r.Timestamp, r.Window, r.Err)
}
