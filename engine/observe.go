package engine

import (
	"context"
	"time"
)

// Observer sees what an engine does, for metrics (package metrics implements it for
// Prometheus). The engine asks it for a FeatureObserver when a feature is applied, keeps
// that in the applied feature, and calls it on the hot path; so an implementation resolves
// its per-feature series once, in Feature, and records without locks or allocations.
//
// Every method must be safe for concurrent use and must not block.
type Observer interface {
	// Feature returns the observer of an applied feature (called at every Apply of it,
	// before it is served; the previous one of the same FQN is no longer called).
	Feature(f *Feature) FeatureObserver
	// Forget says that the feature fqn was deleted: its series may go.
	Forget(fqn string)
	// State reports one call of the State (or of its batch reader or window aggregator):
	// what it was, how long it took, and its error.
	State(op StateOp, d time.Duration, err error)
}

// FeatureObserver observes one applied feature.
type FeatureObserver interface {
	// Read reports the outcome of one read: a Get, or one cell of a GetMany. With err nil,
	// res.Value is Null when nothing was served, and res.Fresh says whether it was fresh.
	Read(res Result, err error)
	// Write reports one write: a Set, Append, Incr or Update, an ingested row's, or an
	// on-request computation's.
	Write(op Op, res WriteResult, err error)
	// Middleware reports one run of the feature's middleware f.Middlewares[i] at a stage.
	Middleware(i int, stage Stage, d time.Duration, err error)
	// Program reports one run of the feature's program.
	Program(d time.Duration, err error)
}

// StateOp names a State call, for an Observer.
type StateOp uint8

// State calls.
const (
	StateGet StateOp = iota + 1
	StateSet
	StateAppend
	StateIncr
	StateUpdate
	StateWindowAdd
	StateWindowBuckets
	StateWindowAggregate
	StateDeadWindowBuckets
	StateReadBatch
	StateDrop
	StatePing
	StateLoadStorage
	StateCommitStorage
	StateWriteBatch
)

var stateOpNames = [...]string{StateGet: "get", StateSet: "set", StateAppend: "append", StateIncr: "incr", StateUpdate: "update",
	StateWindowAdd: "window_add", StateWindowBuckets: "window_buckets", StateWindowAggregate: "window_aggregate",
	StateDeadWindowBuckets: "dead_window_buckets", StateReadBatch: "read_batch", StateDrop: "drop", StatePing: "ping",
	StateLoadStorage: "load_storage", StateCommitStorage: "commit_storage", StateWriteBatch: "write_batch"}

// StateOps lists every StateOp, in order.
func StateOps() []StateOp {
	out := make([]StateOp, 0, len(stateOpNames)-1)
	for op := StateGet; op <= StateWriteBatch; op++ {
		out = append(out, op)
	}
	return out
}

// String returns the call's name in snake case ("window_add").
func (o StateOp) String() string {
	if o >= StateGet && o <= StateCommitStorage {
		return stateOpNames[o]
	}
	return "state_op(?)"
}

// SpanKind is what a traced step is.
type SpanKind uint8

// Traced steps.
const (
	// SpanMiddleware: one middleware's run at a stage.
	SpanMiddleware SpanKind = iota + 1
	// SpanProgram: one run of a feature's program.
	SpanProgram
	// SpanState: one State call.
	SpanState
)

// Tracer starts a span for each step the engine runs for a call (package tracing implements
// it with OpenTelemetry): the spans nest under the caller's, found in ctx.
type Tracer interface {
	// Start starts the span of one step: a middleware (name: its label), the program of
	// feature fqn, or a State call (name: the StateOp; fqn "" for a batch of features). It
	// returns the context the step runs under and the function that ends the span with the
	// step's error. It must be safe for concurrent use.
	Start(ctx context.Context, kind SpanKind, fqn, name string) (context.Context, func(err error))
}

// WithObserver makes the engine report what it does to o (metrics).
func WithObserver(o Observer) Option { return func(e *Engine) { e.observer = o } }

// WithTracer makes the engine trace the steps of each call with t.
func WithTracer(t Tracer) Option { return func(e *Engine) { e.tracer = t } }

// observed wraps a State so that every call is timed for the Observer and traced for the
// Tracer, when the engine has them.
type observed struct {
	State
	o Observer
	t Tracer
}

// begin starts a State call's span (when tracing) and returns when the call began.
func (s *observed) begin(ctx context.Context, op StateOp, fqn string) (context.Context, func(error), time.Time) {
	var end func(error)
	if s.t != nil {
		ctx, end = s.t.Start(ctx, SpanState, fqn, op.String())
	}
	return ctx, end, time.Now()
}

// done ends a State call.
func (s *observed) done(op StateOp, end func(error), start time.Time, err error) {
	if s.o != nil {
		s.o.State(op, time.Since(start), err)
	}
	if end != nil {
		end(err)
	}
}

func (s *observed) Get(ctx context.Context, f *Feature, keys string, version int) (Value, time.Time, bool, error) {
	ctx, end, start := s.begin(ctx, StateGet, f.FQN)
	v, ts, found, err := s.State.Get(ctx, f, keys, version)
	s.done(StateGet, end, start, err)
	return v, ts, found, err
}

func (s *observed) Set(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Written, error) {
	ctx, end, start := s.begin(ctx, StateSet, f.FQN)
	w, err := s.State.Set(ctx, f, keys, v, ts)
	s.done(StateSet, end, start, err)
	return w, err
}

func (s *observed) Append(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Value, error) {
	ctx, end, start := s.begin(ctx, StateAppend, f.FQN)
	out, err := s.State.Append(ctx, f, keys, v, ts)
	s.done(StateAppend, end, start, err)
	return out, err
}

func (s *observed) Incr(ctx context.Context, f *Feature, keys string, by Value, ts time.Time) (Value, error) {
	ctx, end, start := s.begin(ctx, StateIncr, f.FQN)
	out, err := s.State.Incr(ctx, f, keys, by, ts)
	s.done(StateIncr, end, start, err)
	return out, err
}

func (s *observed) Update(ctx context.Context, f *Feature, keys string, v Value, ts time.Time) (Written, error) {
	ctx, end, start := s.begin(ctx, StateUpdate, f.FQN)
	w, err := s.State.Update(ctx, f, keys, v, ts)
	s.done(StateUpdate, end, start, err)
	return w, err
}

func (s *observed) WindowAdd(ctx context.Context, f *Feature, keys string, x float64, ts time.Time) error {
	ctx, end, start := s.begin(ctx, StateWindowAdd, f.FQN)
	err := s.State.WindowAdd(ctx, f, keys, x, ts)
	s.done(StateWindowAdd, end, start, err)
	return err
}

func (s *observed) WindowBuckets(ctx context.Context, f *Feature, keys string, span WindowSpan) ([]Bucket, error) {
	ctx, end, start := s.begin(ctx, StateWindowBuckets, f.FQN)
	out, err := s.State.WindowBuckets(ctx, f, keys, span)
	s.done(StateWindowBuckets, end, start, err)
	return out, err
}

func (s *observed) DeadWindowBuckets(ctx context.Context, f *Feature, span WindowSpan) ([]RawBucket, error) {
	ctx, end, start := s.begin(ctx, StateDeadWindowBuckets, f.FQN)
	out, err := s.State.DeadWindowBuckets(ctx, f, span)
	s.done(StateDeadWindowBuckets, end, start, err)
	return out, err
}

func (s *observed) Drop(ctx context.Context, f *Feature) error {
	ctx, end, start := s.begin(ctx, StateDrop, f.FQN)
	err := s.State.Drop(ctx, f)
	s.done(StateDrop, end, start, err)
	return err
}

func (s *observed) Ping(ctx context.Context) error {
	ctx, end, start := s.begin(ctx, StatePing, "")
	err := s.State.Ping(ctx)
	s.done(StatePing, end, start, err)
	return err
}

// observedAggregator is the State's WindowAggregator, observed.
type observedAggregator struct {
	s *observed
	a WindowAggregator
}

func (o observedAggregator) WindowAggregate(ctx context.Context, f *Feature, keys string, span WindowSpan) (Bucket, error) {
	ctx, end, start := o.s.begin(ctx, StateWindowAggregate, f.FQN)
	b, err := o.a.WindowAggregate(ctx, f, keys, span)
	o.s.done(StateWindowAggregate, end, start, err)
	return b, err
}

// observedBatch is the State's BatchReader, observed: the batch's error is its first
// failing cell's.
type observedBatch struct {
	s *observed
	b BatchReader
}

func (o observedBatch) ReadBatch(ctx context.Context, reads []Read) []ReadResult {
	ctx, end, start := o.s.begin(ctx, StateReadBatch, "")
	out := o.b.ReadBatch(ctx, reads)
	o.s.done(StateReadBatch, end, start, firstErr(out, func(r ReadResult) error { return r.Err }))
	return out
}

// firstErr returns the first error of a batch's results, or nil.
func firstErr[T any](out []T, errOf func(T) error) error {
	for _, r := range out {
		if err := errOf(r); err != nil {
			return err
		}
	}
	return nil
}

// observedBatchWriter is the State's BatchWriter, observed: one write_batch call (its error
// the first write's that failed), whatever the batch holds.
type observedBatchWriter struct {
	s *observed
	b BatchWriter
}

func (o observedBatchWriter) WriteBatch(ctx context.Context, writes []Write) []WriteReport {
	ctx, end, start := o.s.begin(ctx, StateWriteBatch, "")
	out := o.b.WriteBatch(ctx, writes)
	o.s.done(StateWriteBatch, end, start, firstErr(out, func(r WriteReport) error { return r.Err }))
	return out
}

// instrument wraps the engine's State, window aggregator, batch reader and writer for its Observer
// and Tracer, when it has either.
func (e *Engine) instrument() {
	if e.observer == nil && e.tracer == nil {
		return
	}
	s := &observed{State: e.state, o: e.observer, t: e.tracer}
	e.state = s
	if e.aggregator != nil {
		e.aggregator = observedAggregator{s: s, a: e.aggregator}
	}
	if e.batch != nil {
		e.batch = observedBatch{s: s, b: e.batch}
	}
	if e.batchWrites != nil {
		e.batchWrites = observedBatchWriter{s: s, b: e.batchWrites}
	}
	if e.storage != nil {
		e.storage = observedStorage{s: s, st: e.storage}
	}
}

// observedStorage is the State's StorageState, observed.
type observedStorage struct {
	s  *observed
	st StorageState
}

func (o observedStorage) LoadStorage(ctx context.Context, f *Feature, keys string, now time.Time) (StorageSnapshot, error) {
	ctx, end, start := o.s.begin(ctx, StateLoadStorage, f.FQN)
	snap, err := o.st.LoadStorage(ctx, f, keys, now)
	o.s.done(StateLoadStorage, end, start, err)
	return snap, err
}

func (o observedStorage) CommitStorage(ctx context.Context, f *Feature, keys string, c StorageCommit) (string, Written, error) {
	ctx, end, start := o.s.begin(ctx, StateCommitStorage, f.FQN)
	v, w, err := o.st.CommitStorage(ctx, f, keys, c)
	o.s.done(StateCommitStorage, end, start, err)
	return v, w, err
}

// runStep runs one middleware step, observed and traced when the engine is.
func (e *Engine) runStep(ctx context.Context, p *plan, s *step, call *Call, v Value) (Value, error) {
	if p.obs == nil && e.tracer == nil {
		return s.fn(ctx, call, v)
	}
	var end func(error)
	if e.tracer != nil {
		ctx, end = e.tracer.Start(ctx, SpanMiddleware, p.f.FQN, s.name)
	}
	start := time.Now()
	out, err := s.fn(ctx, call, v)
	if p.obs != nil {
		p.obs.Middleware(s.ref, call.Stage, time.Since(start), err)
	}
	if end != nil {
		end(err)
	}
	return out, err
}

// runProgram runs a feature's program, observed and traced when the engine is.
func (e *Engine) runProgram(ctx context.Context, p *plan, call *ProgramCall) (ProgramResult, error) {
	if p.obs == nil && e.tracer == nil {
		return p.program.Run(ctx, call)
	}
	var end func(error)
	if e.tracer != nil {
		ctx, end = e.tracer.Start(ctx, SpanProgram, p.f.FQN, "program")
	}
	start := time.Now()
	res, err := p.program.Run(ctx, call)
	if p.obs != nil {
		p.obs.Program(time.Since(start), err)
	}
	if end != nil {
		end(err)
	}
	return res, err
}
