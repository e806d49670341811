package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// GetMany limits: a request over them fails with ResourceExhausted.
const (
	// MaxGetManySelectors is the most selectors one GetMany reads.
	MaxGetManySelectors = 1000
	// MaxGetManyEntities is the most entities one GetMany reads.
	MaxGetManyEntities = 100_000
	// MaxGetManyCells is the most selector × entity cells one GetMany reads.
	MaxGetManyCells = 100_000
)

var (
	readFields  = fieldNames{selector: "selector", keys: "keys"}
	writeFields = fieldNames{selector: "fqn", keys: "keys", value: "value", timestamp: "timestamp"}
)

// engineService implements osprey.v1.EngineService over the Engine. It is safe for
// concurrent use.
type engineService struct {
	ospreyv1connect.UnimplementedEngineServiceHandler
	s *Server
}

// Get reads one feature for one entity.
func (es *engineService) Get(ctx context.Context, req *connect.Request[ospreyv1.GetRequest]) (*connect.Response[ospreyv1.GetResponse], error) {
	m := req.Msg
	if err := checkKeySizes("keys", m.GetKeys()); err != nil {
		return nil, err
	}
	res, err := es.s.eng.Get(ctx, m.GetSelector(), engine.Keys(m.GetKeys()))
	if err != nil {
		return nil, es.s.fail(ctx, req.Spec().Procedure, err, readFields)
	}
	out := &ospreyv1.GetResponse{Fqn: res.FQN, Found: res.Found()}
	if res.Found() {
		out.Value, out.Timestamp, out.Fresh = valueToProto(res.Value), timeToProto(res.Timestamp), res.Fresh
	}
	return connect.NewResponse(out), nil
}

// GetMany reads every selector for every entity. A cell that fails carries its error; the
// call fails only when it is empty, too large, has a key value over engine.MaxKeyBytes
// (InvalidArgument naming entities[i].keys), or the caller's own context ends (Canceled, or
// DeadlineExceeded when the caller's deadline passes).
//
// The whole call has one deadline: the largest timeout among the features its selectors
// name (engine.DefaultTimeout when none is applied), or the caller's deadline when that is
// sooner. Each cell is a Get, bounded by its own feature's timeout as well, and cells run in
// parallel, so a call whose cells finish within their timeouts finishes within the largest;
// the deadline stops a call whose cells queue behind slow ones (many cells per worker) from
// taking the sum of their timeouts. When it passes, the call answers with the cells read by
// then; each cell not read carries a DeadlineExceeded error. Workers stop between cells once
// the deadline has passed or the caller has gone away.
//
// When the State reads in batches (engine.BatchReader, e.g. Redis), the cells that are a
// State read alone are read first in one batch (engine.Engine.Prefetch: one round trip per
// Redis node for the whole vector) and served as their Gets would have been; cells of
// features with preGet or postGet middlewares or computed on request are still read one by
// one, by the workers, as above. When the batch read every cell, they are served on the
// call's own goroutine, with no workers.
func (es *engineService) GetMany(ctx context.Context, req *connect.Request[ospreyv1.GetManyRequest]) (*connect.Response[ospreyv1.GetManyResponse], error) {
	m := req.Msg
	sels, ents := m.GetSelectors(), m.GetEntities()
	switch {
	case len(sels) == 0:
		return nil, invalid("selectors", "empty: name at least one feature to read")
	case len(ents) == 0:
		return nil, invalid("entities", "empty: name at least one entity to read for")
	case len(sels) > MaxGetManySelectors:
		return nil, tooLarge("selectors", "%d selectors, more than the %d allowed in one call", len(sels), MaxGetManySelectors)
	case len(ents) > MaxGetManyEntities:
		return nil, tooLarge("entities", "%d entities, more than the %d allowed in one call", len(ents), MaxGetManyEntities)
	case len(sels)*len(ents) > MaxGetManyCells:
		return nil, tooLarge("entities", "%d selectors × %d entities is %d cells, more than the %d allowed in one call (split it)",
			len(sels), len(ents), len(sels)*len(ents), MaxGetManyCells)
	}
	for i, ent := range ents {
		if err := checkKeySizes(fmt.Sprintf("entities[%d].keys", i), ent.GetKeys()); err != nil {
			return nil, err
		}
	}
	// With a State that reads in batches, the cells a State read alone can serve are read
	// at once first (one round trip per Redis node for the whole vector), bounded by the
	// largest timeout of their features; the workers then serve those and read the others
	// (features with get middlewares or computed on request) one by one. See
	// engine.Engine.Prefetch.
	start := time.Now()
	entKeys := make([]engine.Keys, len(ents))
	for i, ent := range ents {
		entKeys[i] = engine.Keys(ent.GetKeys())
	}
	pre := es.s.eng.Prefetch(ctx, sels, entKeys)

	// Resolve each selector once (the batch resolved its own): its FQN names the cells that
	// fail, its timeout bounds the call.
	fqns := make([]string, len(sels))
	var bound time.Duration
	for j, sel := range sels {
		fqn, timeout, ok := pre.Resolved(j)
		if !ok {
			var err error
			if fqn, timeout, err = es.s.eng.Resolve(sel); err != nil {
				continue
			}
		}
		fqns[j] = fqn
		bound = max(bound, timeout)
	}
	if bound == 0 { // no selector names an applied feature: every cell fails at once
		bound = engine.DefaultTimeout
	}
	gctx, cancel := context.WithDeadline(ctx, start.Add(bound))
	defer cancel()

	// cells[i*len(sels)+j] is set when entity i's selector j has been read. Workers may
	// still be finishing a cell after the deadline; the reply takes what is set by then.
	// Each cell is written once, into its slot of results (one allocation for the call, not
	// one per cell), before it is published in cells.
	cells := make([]atomic.Pointer[ospreyv1.FeatureResult], len(ents)*len(sels))
	slots := make([]ospreyv1.FeatureResult, len(cells))
	stamps := make([]timestamppb.Timestamp, len(cells))
	read := func(i int) {
		row := cellRow{keys: entKeys[i], pre: pre, i: i, values: newValueSlab(len(sels))}
		for j, sel := range sels {
			if gctx.Err() != nil {
				return
			}
			k := i*len(sels) + j
			cells[k].Store(es.cell(gctx, &slots[k], &stamps[k], &row, j, sel, fqns[j]))
		}
	}
	if pre.Len() == len(cells) {
		// Every cell was read in the batch: serving them is work in memory, done here
		// rather than handed to workers and back (each hand-off is a goroutine wake-up,
		// which is what a loaded machine delays).
		for i := range ents {
			read(i)
		}
	} else {
		es.readCells(gctx, len(ents), read)
	}
	if err := ctx.Err(); err != nil {
		return nil, es.s.fail(ctx, req.Spec().Procedure, err, readFields)
	}
	var late string // the error of a cell not read by the deadline, made once when needed
	results := make([]*ospreyv1.EntityResult, len(ents))
	rows := make([]ospreyv1.EntityResult, len(ents))
	for i := range ents {
		row := make([]*ospreyv1.FeatureResult, len(sels))
		for j, sel := range sels {
			if row[j] = cells[i*len(sels)+j].Load(); row[j] == nil {
				if late == "" {
					late = connect.NewError(connect.CodeDeadlineExceeded,
						fmt.Errorf("not read within the call's deadline (%v, the largest timeout of the features read)", bound)).Error()
				}
				row[j] = &ospreyv1.FeatureResult{Selector: sel, Fqn: fqns[j], Error: late}
			}
		}
		rows[i].Features = row
		results[i] = &rows[i]
	}
	return connect.NewResponse(&ospreyv1.GetManyResponse{Results: results}), nil
}

// readCells runs read for each of n entities on workers (at most 4 per CPU, 64 in all) and
// returns when all have run or ctx is done, whichever is first.
func (es *engineService) readCells(ctx context.Context, n int, read func(i int)) {
	workers := min(n, 4*runtime.GOMAXPROCS(0), 64)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				read(i)
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
	}
}

// cellRow is what the cells of one entity of a GetMany share: the entity's keys, the
// batch read (nil when none) and its index there, and the slab its values are made in. A
// row is read by one goroutine.
type cellRow struct {
	keys   engine.Keys
	pre    *engine.Prefetched
	i      int
	values *valueSlab
}

// get reads the row's selector j, sel: served from the batch read when it holds the cell,
// else with a Get.
func (es *engineService) get(ctx context.Context, row *cellRow, j int, sel string) (engine.Result, error) {
	if res, ok, err := row.pre.Get(ctx, row.i, j); ok {
		return res, err
	}
	return es.s.eng.Get(ctx, sel, row.keys)
}

// cell reads one selector (sel, the row's j-th) for the row's entity into slot, with its
// timestamp in ts, and returns it (a new result after a panic); fqn is the feature the
// selector names, or "" when it names none.
func (es *engineService) cell(ctx context.Context, slot *ospreyv1.FeatureResult, ts *timestamppb.Timestamp, row *cellRow, j int,
	sel, fqn string) (out *ospreyv1.FeatureResult) {
	out = slot
	out.Selector = sel
	// Cells run on worker goroutines, beyond the reach of connect's recovery.
	defer func() {
		if p := recover(); p != nil {
			es.s.log.LogAttrs(ctx, slog.LevelError, "panic reading a GetMany cell", slog.String("selector", sel),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			out = &ospreyv1.FeatureResult{Selector: sel, Fqn: fqn, Error: connect.NewError(connect.CodeInternal, errors.New("internal error")).Error()}
		}
	}()
	res, err := es.get(ctx, row, j, sel)
	if err != nil {
		out.Error = rpcError(err, readFields).Error()
		out.Fqn = fqn
		return out
	}
	out.Fqn, out.Found = res.FQN, res.Found()
	if res.Found() {
		out.Value, out.Fresh = row.values.value(res.Value), res.Fresh
		if !res.Timestamp.IsZero() {
			ts.Seconds, ts.Nanos = res.Timestamp.Unix(), int32(res.Timestamp.Nanosecond())
			out.Timestamp = ts
		}
	}
	return out
}

func tooLarge(field, format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// write runs one of Set, Append, Incr and Update and returns the engine's report of it: the
// FQN written, the value after the write, and whether it became the current value.
func (es *engineService) write(ctx context.Context, procedure string, op engine.Op, fqn string, keys map[string]string,
	v *structpb.Value, ts *timestamppb.Timestamp) (engine.WriteResult, error) {
	if err := checkKeySizes("keys", keys); err != nil {
		return engine.WriteResult{}, err
	}
	val, err := valueFromProto(v)
	if err != nil {
		return engine.WriteResult{}, invalid("value", "%v", err)
	}
	t, err := timeFromProto(ts)
	if err != nil {
		return engine.WriteResult{}, invalid("timestamp", "%v", err)
	}
	// The engine resolves a bare name in its default namespace and reports the FQN; it
	// refuses a selector suffix such as +avg.
	out, err := es.s.eng.Write(ctx, op, fqn, engine.Keys(keys), val, t)
	if err != nil {
		return engine.WriteResult{}, es.s.fail(ctx, procedure, err, writeFields)
	}
	return out, nil
}

// outcomeToProto maps an engine write outcome to the API's.
func outcomeToProto(o engine.WriteOutcome) ospreyv1.WriteOutcome {
	switch o {
	case engine.WriteApplied:
		return ospreyv1.WriteOutcome_WRITE_OUTCOME_APPLIED
	case engine.WriteSuperseded:
		return ospreyv1.WriteOutcome_WRITE_OUTCOME_SUPERSEDED
	}
	return ospreyv1.WriteOutcome_WRITE_OUTCOME_UNSPECIFIED
}

// supersededTime is the current value's timestamp of a superseded write, for
// current_timestamp; nil otherwise.
func supersededTime(r engine.WriteResult) *timestamppb.Timestamp {
	if !r.Superseded() {
		return nil
	}
	return timeToProto(r.Current)
}

// Set writes the current value of an entity, ordered by event time.
func (es *engineService) Set(ctx context.Context, req *connect.Request[ospreyv1.SetRequest]) (*connect.Response[ospreyv1.SetResponse], error) {
	m := req.Msg
	r, err := es.write(ctx, req.Spec().Procedure, engine.OpSet, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.SetResponse{Fqn: r.FQN, Value: valueToProto(r.Value), Outcome: outcomeToProto(r.Outcome),
		Timestamp: timeToProto(r.Timestamp), CurrentTimestamp: supersededTime(r), KeptAsPrevious: r.Kept}), nil
}

// Append appends to a list feature's value.
func (es *engineService) Append(ctx context.Context, req *connect.Request[ospreyv1.AppendRequest]) (*connect.Response[ospreyv1.AppendResponse], error) {
	m := req.Msg
	r, err := es.write(ctx, req.Spec().Procedure, engine.OpAppend, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.AppendResponse{Fqn: r.FQN, Value: valueToProto(r.Value)}), nil
}

// Incr adds to an int or float feature's value.
func (es *engineService) Incr(ctx context.Context, req *connect.Request[ospreyv1.IncrRequest]) (*connect.Response[ospreyv1.IncrResponse], error) {
	m := req.Msg
	r, err := es.write(ctx, req.Spec().Procedure, engine.OpIncr, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.IncrResponse{Fqn: r.FQN, Value: valueToProto(r.Value)}), nil
}

// Update writes a value the way the feature's type calls for.
func (es *engineService) Update(ctx context.Context, req *connect.Request[ospreyv1.UpdateRequest]) (*connect.Response[ospreyv1.UpdateResponse], error) {
	m := req.Msg
	r, err := es.write(ctx, req.Spec().Procedure, engine.OpUpdate, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.UpdateResponse{Fqn: r.FQN, Value: valueToProto(r.Value), Outcome: outcomeToProto(r.Outcome),
		Timestamp: timeToProto(r.Timestamp), CurrentTimestamp: supersededTime(r), KeptAsPrevious: r.Kept}), nil
}

// FeatureDescriptor describes the feature a selector names.
func (es *engineService) FeatureDescriptor(ctx context.Context, req *connect.Request[ospreyv1.FeatureDescriptorRequest]) (*connect.Response[ospreyv1.FeatureDescriptorResponse], error) {
	f, err := es.s.eng.FeatureDescriptor(ctx, req.Msg.GetSelector())
	if err != nil {
		return nil, es.s.fail(ctx, req.Spec().Procedure, err, readFields)
	}
	return connect.NewResponse(&ospreyv1.FeatureDescriptorResponse{Feature: featureToProto(f)}), nil
}

// Watch streams a feature's changes; see watch.go.
func (es *engineService) Watch(ctx context.Context, req *connect.Request[ospreyv1.WatchRequest], stream *connect.ServerStream[ospreyv1.WatchResponse]) error {
	return es.s.serveWatch(ctx, req, stream)
}
