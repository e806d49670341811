package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
)

// Observer returns the engine.Observer that records per-feature and State series
// (engine.WithObserver).
func (m *Metrics) Observer() engine.Observer { return observer{m} }

type observer struct{ m *Metrics }

// Read outcomes, as the outcome label spells them.
const (
	outcomeFresh = iota
	outcomeStale
	outcomeAbsent
	outcomeError
	nReadOutcomes
)

var readOutcomes = [nReadOutcomes]string{"fresh", "stale", "absent", "error"}

// Write outcomes.
const (
	writeApplied = iota
	writeSuperseded
	writeRejected
	writeError
	nWriteOutcomes
)

var writeOutcomes = [nWriteOutcomes]string{"applied", "superseded", "rejected", "error"}

// Failure kinds of middlewares and programs.
const (
	kindRejected = iota
	kindTimeout
	kindTrap
	kindError
	nKinds
)

var kinds = [nKinds]string{"rejected", "timeout", "trap", "error"}

// kindOf classifies a failed middleware or program run.
func kindOf(err error) int {
	switch {
	case errors.Is(err, engine.ErrRejected):
		return kindRejected
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, extism.ErrTimeout):
		return kindTimeout
	case errors.Is(err, host.ErrTrap), errors.Is(err, extism.ErrTrap):
		return kindTrap
	}
	return kindError
}

// featureObserver holds one feature's series, resolved when it was applied.
type featureObserver struct {
	reads  [nReadOutcomes]prometheus.Counter
	writes [engine.OpUpdate + 1][nWriteOutcomes]prometheus.Counter
	// middlewares[i] are the series of f.Middlewares[i]: durations by stage, failures by kind.
	middlewares []middlewareSeries
	program     prometheus.Observer
	programErrs [nKinds]prometheus.Counter
}

type middlewareSeries struct {
	stages [engine.StagePostSet + 1]prometheus.Observer
	errs   [nKinds]prometheus.Counter
}

// Feature resolves the series of f. The series of a replaced feature's middlewares that the
// new version no longer has stay until the feature is deleted (Forget).
func (o observer) Feature(f *engine.Feature) engine.FeatureObserver {
	m := o.m
	fo := &featureObserver{middlewares: make([]middlewareSeries, len(f.Middlewares))}
	for i, name := range readOutcomes {
		fo.reads[i] = m.reads.WithLabelValues(f.FQN, name)
	}
	for op := engine.OpSet; op <= engine.OpUpdate; op++ {
		for i, name := range writeOutcomes {
			fo.writes[op][i] = m.writes.WithLabelValues(f.FQN, op.String(), name)
		}
	}
	for i, ref := range f.Middlewares {
		ms := &fo.middlewares[i]
		for _, st := range ref.Stages {
			ms.stages[st] = m.middleware.WithLabelValues(f.FQN, ref.Label(), st.String())
		}
		for k, name := range kinds {
			ms.errs[k] = m.middlewareErrors.WithLabelValues(f.FQN, ref.Label(), name)
		}
	}
	if f.Builder.Kind != engine.BuilderSourceless {
		fo.program = m.program.WithLabelValues(f.FQN)
		for k, name := range kinds {
			if k != kindRejected {
				fo.programErrs[k] = m.programErrors.WithLabelValues(f.FQN, name)
			}
		}
	}
	return fo
}

// Forget deletes the series of a deleted feature.
func (o observer) Forget(fqn string) {
	m := o.m
	for _, v := range []*prometheus.MetricVec{m.reads.MetricVec, m.writes.MetricVec, m.middleware.MetricVec,
		m.middlewareErrors.MetricVec, m.program.MetricVec, m.programErrors.MetricVec,
		m.messages.delivered.MetricVec, m.messages.late.MetricVec, m.messages.deadLettered.MetricVec, m.messages.hopLimit.MetricVec} {
		v.DeletePartialMatch(prometheus.Labels{"feature": fqn})
	}
}

func (fo *featureObserver) Read(res engine.Result, err error) {
	switch {
	case err != nil:
		fo.reads[outcomeError].Inc()
	case res.Value.IsNull():
		fo.reads[outcomeAbsent].Inc()
	case res.Fresh:
		fo.reads[outcomeFresh].Inc()
	default:
		fo.reads[outcomeStale].Inc()
	}
}

func (fo *featureObserver) Write(op engine.Op, res engine.WriteResult, err error) {
	if op < engine.OpSet || op > engine.OpUpdate {
		return
	}
	switch {
	case err != nil && errors.Is(err, engine.ErrRejected):
		fo.writes[op][writeRejected].Inc()
	case err != nil:
		fo.writes[op][writeError].Inc()
	case res.Outcome == engine.WriteSuperseded:
		fo.writes[op][writeSuperseded].Inc()
	default:
		fo.writes[op][writeApplied].Inc()
	}
}

func (fo *featureObserver) Middleware(i int, stage engine.Stage, d time.Duration, err error) {
	if i < 0 || i >= len(fo.middlewares) {
		return
	}
	ms := &fo.middlewares[i]
	if stage >= engine.StagePreGet && stage <= engine.StagePostSet && ms.stages[stage] != nil {
		ms.stages[stage].Observe(d.Seconds())
	}
	if err != nil {
		ms.errs[kindOf(err)].Inc()
	}
}

func (fo *featureObserver) Program(d time.Duration, err error) {
	if fo.program == nil {
		return
	}
	fo.program.Observe(d.Seconds())
	if err != nil {
		if k := kindOf(err); fo.programErrs[k] != nil {
			fo.programErrs[k].Inc()
		} else {
			fo.programErrs[kindError].Inc()
		}
	}
}

// stateSeries are one State call's series.
type stateSeries struct {
	d    prometheus.Observer
	errs prometheus.Counter
}

func newStateSeries(m *Metrics) []stateSeries {
	ops := engine.StateOps()
	out := make([]stateSeries, int(ops[len(ops)-1])+1)
	for _, op := range ops {
		out[op] = stateSeries{d: m.state.WithLabelValues(op.String()), errs: m.stateErrors.WithLabelValues(op.String())}
	}
	return out
}

func (o observer) State(op engine.StateOp, d time.Duration, err error) {
	if int(op) >= len(o.m.stateSeries) || o.m.stateSeries[op].d == nil {
		return
	}
	s := &o.m.stateSeries[op]
	s.d.Observe(d.Seconds())
	if err != nil {
		s.errs.Inc()
	}
}
