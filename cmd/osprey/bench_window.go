package main

// osprey bench --scalar SELECTOR: a windowed Get against a scalar one on the same host
// (issue 10: "Windowed Get (60 buckets, all five aggregations): p99 ≤ 1.3× a scalar
// Get's"). The window of --selector's feature is filled first, one value per bucket, so
// that each read merges a full window rather than the one bucket a benchmark's writes land
// in.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

const (
	targetWindowP99 = 1.3  // windowed Get p99 ≤ 1.3× a scalar Get's, open loop, in blocks
	benchMaxFill    = 1000 // most buckets the set-up fills
)

// benchWindow is the windowed phase's plan: the scalar Get and one Get per aggregation of
// the windowed feature.
type benchWindow struct {
	fqn     string
	aggrs   []string // as the feature declares them
	scalar  *ospreyv1.GetRequest
	reads   []*ospreyv1.GetRequest // fqn+aggr for each of aggrs
	bucket  time.Duration          // the window's granularity
	buckets int                    // the window's length in buckets
	filled  int                    // buckets the set-up wrote (0 without --setup)
}

// planWindow describes both features and checks that --selector's is windowed and
// --scalar's is not.
func planWindow(ctx context.Context, c ospreyv1connect.EngineServiceClient, o *benchOptions) (*benchWindow, error) {
	describe := func(flag, sel string) (*ospreyv1.Feature, error) {
		res, err := c.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: sel}))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, sel, serverError(err))
		}
		return res.Msg.GetFeature(), nil
	}
	wf, err := describe("--selector", o.selector)
	if err != nil {
		return nil, err
	}
	sf, err := describe("--scalar", o.scalar)
	if err != nil {
		return nil, err
	}
	g, span := wf.GetGranularity().AsDuration(), wf.GetStaleness().AsDuration()
	switch {
	case len(wf.GetAggregations()) == 0 || g <= 0:
		return nil, fmt.Errorf("--scalar: --selector %s is not a windowed feature: nothing to compare with a scalar Get", o.selector)
	case len(sf.GetAggregations()) > 0:
		return nil, fmt.Errorf("--scalar %s is a windowed feature (%s): want a scalar one", o.scalar, strings.Join(sf.GetAggregations(), ", "))
	}
	keys := map[string]string(o.keys)
	w := &benchWindow{fqn: wf.GetFqn(), aggrs: wf.GetAggregations(), bucket: g, buckets: int(span / g),
		scalar: &ospreyv1.GetRequest{Selector: o.scalar, Keys: keys}}
	for _, a := range w.aggrs {
		w.reads = append(w.reads, &ospreyv1.GetRequest{Selector: w.fqn + "+" + a, Keys: keys})
	}
	return w, nil
}

// fill writes one value into each bucket of the entity's window, newest first (bucket i
// at now − i × granularity, value i+1, so that sum, min, max and avg differ), at most
// benchMaxFill, and sets the scalar for the entity; it returns the first failure.
func (w *benchWindow) fill(ctx context.Context, c ospreyv1connect.EngineServiceClient) error {
	now := time.Now()
	n := min(w.buckets, benchMaxFill)
	for i := range n {
		_, err := c.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: w.fqn, Keys: w.scalar.Keys,
			Value: structpb.NewNumberValue(float64(i + 1)), Timestamp: timestamppb.New(now.Add(-time.Duration(i) * w.bucket))}))
		if err != nil {
			return fmt.Errorf("fill %s's window, bucket %d of %d: %w", w.fqn, i+1, n, serverError(err))
		}
	}
	w.filled = n
	_, err := c.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: w.scalar.Selector, Keys: w.scalar.Keys, Value: structpb.NewNumberValue(1)}))
	if err != nil {
		return fmt.Errorf("set --scalar %s: %w", w.scalar.Selector, serverError(err))
	}
	return nil
}

// prepareWindow plans the windowed phase and, with --setup, fills the window: before the
// first loop, so that every loop of the run reads the full window.
func prepareWindow(ctx context.Context, c ospreyv1connect.EngineServiceClient, o *benchOptions) (*benchWindow, error) {
	ctx, cancel := context.WithTimeout(ctx, benchGrace)
	defer cancel()
	w, err := planWindow(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if o.setup {
		if err := w.fill(ctx, c); err != nil {
			return nil, err
		}
	}
	for _, r := range append([]*ospreyv1.GetRequest{w.scalar}, w.reads...) {
		res, err := c.Get(ctx, connect.NewRequest(r))
		if err != nil {
			return nil, fmt.Errorf("Get %s: %w", r.Selector, serverError(err))
		}
		if !res.Msg.GetFound() {
			return nil, fmt.Errorf("Get %s %s found no value (run with --setup, or write it first)", r.Selector, o.keys.String())
		}
	}
	return w, nil
}

// windowPhase runs the scalar Get and the windowed Gets in blocks of one open loop on the
// host (blocks alternate scalar, first aggregation, scalar, second aggregation, …, so that
// half the blocks are scalar) for --duration each side, and returns the phase (scalar in
// the first column, every aggregation merged in the second), the verdict and a note of
// each aggregation's p99.
func windowPhase(ctx context.Context, t *benchTarget, o *benchOptions, w *benchWindow, rate float64) (benchPhase, benchVerdict, string) {
	// Scalar, aggregation 1, scalar, aggregation 2, …: calls[2k] is the scalar.
	var calls []benchCall
	for _, r := range w.reads {
		calls = append(calls, getCall(w.scalar), getCall(r))
	}
	per := o.duration / time.Duration(len(w.reads)) // each windowed read's share; the scalar's is o.duration in all
	if o.warmup > 0 {
		openLoopBlocks(ctx, t, calls, rate, min(o.warmup, per), benchInflightConn*o.connections)
	}
	got := openLoopBlocks(ctx, t, calls, rate, per, benchInflightConn*o.connections)
	pair := runPair{newRunResult(), newRunResult()}
	var each []string
	for k, r := range got {
		pair[k%2].merge(r)
		if k%2 == 1 {
			each = append(each, fmt.Sprintf("+%s %s", w.aggrs[k/2], fmtDur(us(r.lat.quantile(0.99)))))
		}
	}
	name := fmt.Sprintf("Get %s+{%s}, in blocks with Get %s", w.fqn, strings.Join(w.aggrs, ","), w.scalar.Selector)
	phase := pair.phase(name, "open", 0, rate)
	phase.Sides = []string{"scalar", "windowed"}
	buckets := fmt.Sprintf("%d buckets filled", w.filled)
	if w.filled == 0 {
		buckets = "window not filled (--setup=false)"
	}
	v := verdict(fmt.Sprintf("windowed Get p99 ≤ %g× a scalar Get's (%s, %d aggregations; open loop, %g/s, in blocks)", targetWindowP99, buckets, len(w.aggrs), rate),
		float64(pair[1].lat.quantile(0.99))/float64(pair[0].lat.quantile(0.99)), targetWindowP99, false)
	note := fmt.Sprintf("windowed Get p99 by aggregation (%s, a window of %d buckets): %s", w.fqn, w.buckets, strings.Join(each, ", "))
	if w.buckets > benchMaxFill && w.filled > 0 {
		note += fmt.Sprintf("; only the newest %d buckets were filled", w.filled)
	}
	return phase, v, note
}
