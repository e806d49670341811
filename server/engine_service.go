package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
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
// call fails only when it is empty, too large, or out of time.
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
	results := make([]*ospreyv1.EntityResult, len(ents))
	read := func(i int) {
		keys := engine.Keys(ents[i].GetKeys())
		cells := make([]*ospreyv1.FeatureResult, len(sels))
		for j, sel := range sels {
			cells[j] = es.cell(ctx, sel, keys)
		}
		results[i] = &ospreyv1.EntityResult{Features: cells}
	}
	workers := min(len(ents), 4*runtime.GOMAXPROCS(0), 64)
	if workers <= 1 {
		for i := range ents {
			read(i)
		}
	} else {
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					read(i)
				}
			})
		}
		for i := range ents {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	if err := ctx.Err(); err != nil {
		return nil, es.s.fail(ctx, req.Spec().Procedure, err, readFields)
	}
	return connect.NewResponse(&ospreyv1.GetManyResponse{Results: results}), nil
}

// cell reads one selector for one entity of a GetMany.
func (es *engineService) cell(ctx context.Context, sel string, keys engine.Keys) (out *ospreyv1.FeatureResult) {
	out = &ospreyv1.FeatureResult{Selector: sel}
	// Cells may run on worker goroutines, beyond the reach of connect's recovery.
	defer func() {
		if p := recover(); p != nil {
			es.s.log.LogAttrs(ctx, slog.LevelError, "panic reading a GetMany cell", slog.String("selector", sel),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			out = &ospreyv1.FeatureResult{Selector: sel, Error: connect.NewError(connect.CodeInternal, errors.New("internal error")).Error()}
		}
	}()
	res, err := es.s.eng.Get(ctx, sel, keys)
	if err != nil {
		out.Error = rpcError(err, readFields).Error()
		if f, ferr := es.s.eng.FeatureDescriptor(ctx, sel); ferr == nil {
			out.Fqn = f.FQN
		}
		return out
	}
	out.Fqn, out.Found = res.FQN, res.Found()
	if res.Found() {
		out.Value, out.Timestamp, out.Fresh = valueToProto(res.Value), timeToProto(res.Timestamp), res.Fresh
	}
	return out
}

func tooLarge(field, format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

type writeOp func(ctx context.Context, fqn string, keys engine.Keys, val any, ts time.Time) (engine.Value, error)

// write runs one of Set, Append, Incr and Update, returning the FQN written and the value
// after the write.
func (es *engineService) write(ctx context.Context, procedure string, op writeOp, fqn string, keys map[string]string,
	v *structpb.Value, ts *timestamppb.Timestamp) (string, *ospreyv1.Value, error) {
	// FeatureDescriptor resolves a bare name in the engine's default namespace, which the
	// engine's writes do not report.
	f, err := es.s.eng.FeatureDescriptor(ctx, fqn)
	if err != nil {
		return "", nil, es.s.fail(ctx, procedure, err, writeFields)
	}
	val, err := valueFromProto(v)
	if err != nil {
		return "", nil, invalid("value", "%v", err)
	}
	t, err := timeFromProto(ts)
	if err != nil {
		return "", nil, invalid("timestamp", "%v", err)
	}
	// The request's fqn (not f.FQN) goes to the engine, so that a selector suffix such as
	// +avg is refused as it should be.
	out, err := op(ctx, fqn, engine.Keys(keys), val, t)
	if err != nil {
		return "", nil, es.s.fail(ctx, procedure, err, writeFields)
	}
	return f.FQN, valueToProto(out), nil
}

// Set writes the current value of an entity.
func (es *engineService) Set(ctx context.Context, req *connect.Request[ospreyv1.SetRequest]) (*connect.Response[ospreyv1.SetResponse], error) {
	m := req.Msg
	fqn, v, err := es.write(ctx, req.Spec().Procedure, es.s.eng.Set, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.SetResponse{Fqn: fqn, Value: v}), nil
}

// Append appends to a list feature's value.
func (es *engineService) Append(ctx context.Context, req *connect.Request[ospreyv1.AppendRequest]) (*connect.Response[ospreyv1.AppendResponse], error) {
	m := req.Msg
	fqn, v, err := es.write(ctx, req.Spec().Procedure, es.s.eng.Append, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.AppendResponse{Fqn: fqn, Value: v}), nil
}

// Incr adds to an int or float feature's value.
func (es *engineService) Incr(ctx context.Context, req *connect.Request[ospreyv1.IncrRequest]) (*connect.Response[ospreyv1.IncrResponse], error) {
	m := req.Msg
	fqn, v, err := es.write(ctx, req.Spec().Procedure, es.s.eng.Incr, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.IncrResponse{Fqn: fqn, Value: v}), nil
}

// Update writes a value the way the feature's type calls for.
func (es *engineService) Update(ctx context.Context, req *connect.Request[ospreyv1.UpdateRequest]) (*connect.Response[ospreyv1.UpdateResponse], error) {
	m := req.Msg
	fqn, v, err := es.write(ctx, req.Spec().Procedure, es.s.eng.Update, m.GetFqn(), m.GetKeys(), m.GetValue(), m.GetTimestamp())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ospreyv1.UpdateResponse{Fqn: fqn, Value: v}), nil
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
