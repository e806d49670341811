package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Engine runs features: it applies their descriptors, plans their pipelines, and serves
// reads and writes against a State. It is safe for concurrent use; reads and writes take no
// lock (the applied set is replaced copy-on-write by Apply and Delete).
type Engine struct {
	state      State
	notifier   Notifier
	resolver   MiddlewareResolver
	encoders   EncoderResolver
	now        func() time.Time
	log        *slog.Logger
	defaultNS  string
	maxTimeout time.Duration

	stateBlocks bool
	aggregator  WindowAggregator // state's push-down of windowed reads, or nil
	batch       BatchReader      // state's batch reads, or nil
	batchWrites BatchWriter      // state's batch writes, or nil
	publishes   BatchPublisher   // notifier's batch publishes, or nil
	depth       int              // WithPipelineDepth
	storage     StorageState     // state's program storage, or nil
	shared      bool             // the state's values are shared with other processes (Sharer)
	observer    Observer         // nil: none
	tracer      Tracer           // nil: none

	programs   ProgramLoader
	recomputes recomputes // background recomputes of stale on-request values

	messages MessageState   // state's mailboxes, or nil
	egresses EgressResolver // nil: none
	maxHops  int
	// chainBudget is a chain of sends' budget of messages (WithChainBudget).
	chainBudget int
	maxMailbox  int        // WithMaxMailbox
	dispatch    dispatcher // delivery of messages from the mailboxes

	mu       sync.Mutex // serialises Apply and Delete
	features atomic.Pointer[map[string]*plan]
	sources  atomic.Pointer[map[string]*DataSource]
}

// Option configures an Engine.
type Option func(*Engine)

// WithNotifier publishes a notification for every write (and lets the historian collect
// windows). Without one, writes are not published.
func WithNotifier(n Notifier) Option { return func(e *Engine) { e.notifier = n } }

// WithMiddlewareResolver resolves the middlewares that features name.
func WithMiddlewareResolver(r MiddlewareResolver) Option {
	return func(e *Engine) { e.resolver = r }
}

// WithEncoderResolver resolves the encodings selectors name ([hash], …).
func WithEncoderResolver(r EncoderResolver) Option { return func(e *Engine) { e.encoders = r } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithDefaultNamespace sets the namespace of selectors that name none (DefaultNamespace
// unless set; "" makes a namespace mandatory).
func WithDefaultNamespace(ns string) Option { return func(e *Engine) { e.defaultNS = ns } }

// WithMaxTimeout sets the ceiling on spec.timeout: Apply refuses a feature whose timeout is
// longer (ErrInvalidFeature, naming spec.timeout). d ≤ 0 keeps DefaultMaxTimeout; there is
// no way to apply features without a ceiling.
func WithMaxTimeout(d time.Duration) Option {
	return func(e *Engine) {
		if d > 0 {
			e.maxTimeout = d
		}
	}
}

// DefaultPipelineDepth is the most plain writes of an Ingest the engine hands a BatchWriter
// in one batch unless WithPipelineDepth says otherwise (BENCHMARKS.md, "Ingest pipelined",
// measures the depths).
const DefaultPipelineDepth = 256

// MaxPipelineDepth is the deepest pipeline WithPipelineDepth takes: a batch's commands and
// replies are all held in memory at once.
const MaxPipelineDepth = 4096

// WithPipelineDepth sets how many plain writes of an Ingest — values whose program changed
// no storage and sent nothing — the engine hands a BatchWriter State in one batch (and their
// notifications a BatchPublisher Notifier): the pipeline's depth. n ≤ 1 writes them one at a
// time, and more than MaxPipelineDepth is MaxPipelineDepth; a State or Notifier without
// batches is always called one write at a time.
func WithPipelineDepth(n int) Option {
	return func(e *Engine) { e.depth = min(max(n, 1), MaxPipelineDepth) }
}

// New returns an Engine over state.
func New(state State, opts ...Option) *Engine {
	e := &Engine{state: state, now: time.Now, log: slog.Default(), defaultNS: DefaultNamespace, maxTimeout: DefaultMaxTimeout, maxHops: DefaultMaxHops, chainBudget: DefaultChainBudget, maxMailbox: DefaultMaxMailbox, depth: DefaultPipelineDepth}
	for _, o := range opts {
		o(e)
	}
	b, ok := state.(Blocker)
	e.stateBlocks = !ok || !b.NonBlocking()
	e.aggregator, _ = state.(WindowAggregator)
	e.batch, _ = state.(BatchReader)
	e.batchWrites, _ = state.(BatchWriter)
	e.publishes, _ = e.notifier.(BatchPublisher)
	e.storage, _ = state.(StorageState)
	e.messages, _ = state.(MessageState)
	sh, ok := state.(Sharer)
	e.shared = ok && sh.Shared()
	e.instrument()
	empty := map[string]*plan{}
	e.features.Store(&empty)
	noSources := map[string]*DataSource{}
	e.sources.Store(&noSources)
	// Last: the delivery may look features up at once (a State with messages due already).
	e.startDelivery()
	return e
}

// Close stops the background delivery of messages (waiting for the deliveries running,
// each bounded by its feature's timeout) and the background recomputes of stale on-request
// values: it queues no more, drops those queued but not started, and waits for those
// running. It does not close the
// State or the Notifier, which belong to the caller. Each recompute is bounded by its
// feature's timeout, so Close waits at most the ceiling WithMaxTimeout sets.
func (e *Engine) Close() error {
	e.dispatch.close()
	e.closeRecomputes()
	return nil
}

// State returns the engine's State.
func (e *Engine) State() State { return e.state }

// plan is an applied feature with its pipeline resolved and ordered.
type plan struct {
	f      *Feature
	stages [StagePostSet + 1][]step
	// timed is set when a call may block (a middleware, a program, or a State that can),
	// so the engine arms a timer for the feature's timeout; see RATIONALE.md.
	timed bool
	// program computes the feature's values (nil for sourceless features).
	program Program
	// onRequest: the program runs when the feature is read (it has no data source).
	onRequest bool
	// obs observes the feature (nil without an Observer).
	obs FeatureObserver
}

type step struct {
	name     string
	priority int
	fn       Middleware
	ref      int // the index of its MiddlewareRef in Feature.Middlewares
}

// Result is the answer to a Get.
type Result struct {
	// FQN of the feature read.
	FQN string
	// Value read; Null when there is none (never written, expired, or stale).
	Value Value
	// Timestamp of the value (for a window, of its latest update).
	Timestamp time.Time
	// Fresh reports whether the value is younger than the feature's freshness.
	Fresh bool
}

// Found reports whether a value was served.
func (r Result) Found() bool { return !r.Value.IsNull() }

// Apply validates f, resolves its middlewares and makes it available, replacing an applied
// feature of the same FQN. A replacement may not change the primitive, the keys or the window
// granularity of a feature (stored values would be misread): delete it first. Apply rejects a
// feature whose dependencies form a cycle with applied features, and one whose timeout is
// over the engine's ceiling (WithMaxTimeout), with ErrInvalidFeature naming spec.timeout.
func (e *Engine) Apply(ctx context.Context, f *Feature) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Timeout > e.maxTimeout {
		return fmt.Errorf("%w %s: %w", ErrInvalidFeature, f.FQN, &FieldError{Path: "spec.timeout",
			Msg: fmt.Sprintf("%v is more than the %v this host allows (its maximum timeout)", f.Timeout, e.maxTimeout)})
	}
	f = f.Clone()
	p := &plan{f: f}
	for i, ref := range f.Middlewares {
		if e.resolver == nil {
			return fmt.Errorf("apply %s: spec.middlewares[%d]: no middleware resolver configured for %q", f.FQN, i, ref.Label())
		}
		fn, err := e.resolver.ResolveMiddleware(ctx, f, ref)
		if err != nil {
			return fmt.Errorf("apply %s: spec.middlewares[%d] (%s): %w", f.FQN, i, ref.Label(), err)
		}
		for _, st := range ref.Stages {
			p.stages[st] = append(p.stages[st], step{name: ref.Label(), priority: ref.Priority, fn: fn, ref: i})
		}
	}
	if f.Builder.Kind != BuilderSourceless {
		if e.programs == nil {
			return fmt.Errorf("apply %s: spec.builder.kind: %w: no program runtime is configured for builder %q", f.FQN, ErrUnsupported, f.Builder.Kind)
		}
		prog, err := e.programs.LoadProgram(ctx, f)
		if err != nil {
			return fmt.Errorf("apply %s: spec.builder: %w", f.FQN, err)
		}
		p.program = prog
		// A feature fed by messages (and no data source) is written by its deliveries only: a
		// read serves what they wrote and never runs the program.
		p.onRequest = f.DataSource == "" && f.Messages == PrimitiveUnknown
		if p.onRequest && f.Windowed() {
			return fmt.Errorf("%w %s: spec.builder.aggr: a feature computed on request (a program and no spec.dataSource) cannot be windowed", ErrInvalidFeature, f.FQN)
		}
	}
	hasSteps := false
	for st := range p.stages {
		sort.SliceStable(p.stages[st], func(i, j int) bool { return p.stages[st][i].priority < p.stages[st][j].priority })
		hasSteps = hasSteps || len(p.stages[st]) > 0
	}
	p.timed = hasSteps || e.stateBlocks || p.program != nil

	e.mu.Lock()
	defer e.mu.Unlock()
	cur := *e.features.Load()
	if old, ok := cur[f.FQN]; ok {
		if err := compatible(old.f, f); err != nil {
			return fmt.Errorf("apply %s: %w", f.FQN, err)
		}
	}
	if err := checkCycles(cur, f); err != nil {
		return fmt.Errorf("apply %s: %w", f.FQN, err)
	}
	if f.DataSource != "" {
		if _, ok := (*e.sources.Load())[f.DataSource]; !ok {
			return fmt.Errorf("apply %s: spec.dataSource: %w: data source %s is not applied (apply its DataSource manifest first)", f.FQN, ErrFeatureNotFound, f.DataSource)
		}
	}
	if e.observer != nil {
		p.obs = e.observer.Feature(f)
	}
	next := maps.Clone(cur)
	next[f.FQN] = p
	e.features.Store(&next)
	e.log.LogAttrs(ctx, slog.LevelInfo, "feature applied", slog.String("fqn", f.FQN),
		slog.String("primitive", f.Primitive.String()), slog.String("builder", f.Builder.Kind))
	return nil
}

// ErrIncompatibleChange is returned by Apply for a replacement that changes how values are
// stored.
var ErrIncompatibleChange = errors.New("incompatible change")

func compatible(old, f *Feature) error {
	switch {
	case old.Primitive != f.Primitive:
		return fmt.Errorf("%w: spec.primitive changes from %s to %s; delete the feature first", ErrIncompatibleChange, old.Primitive, f.Primitive)
	case !slices.Equal(old.Keys, f.Keys):
		return fmt.Errorf("%w: spec.keys change from %v to %v; delete the feature first", ErrIncompatibleChange, old.Keys, f.Keys)
	case old.Granularity != f.Granularity:
		return fmt.Errorf("%w: spec.builder.aggrGranularity changes from %v to %v; delete the feature first", ErrIncompatibleChange, old.Granularity, f.Granularity)
	}
	return nil
}

// checkCycles rejects f if, together with the applied features, its dependencies form a
// cycle. Dependencies on features not applied yet are allowed.
func checkCycles(applied map[string]*plan, f *Feature) error {
	deps := func(fqn string) []string {
		if fqn == f.FQN {
			return f.Dependencies
		}
		if p, ok := applied[fqn]; ok {
			return p.f.Dependencies
		}
		return nil
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var path []string
	var visit func(fqn string) error
	visit = func(fqn string) error {
		switch state[fqn] {
		case visiting:
			i := slices.Index(path, fqn)
			return fmt.Errorf("dependency cycle: %s", joinArrow(append(slices.Clone(path[i:]), fqn)))
		case done:
			return nil
		}
		state[fqn] = visiting
		path = append(path, fqn)
		for _, d := range deps(fqn) {
			if err := visit(d); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[fqn] = done
		return nil
	}
	return visit(f.FQN)
}

func joinArrow(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " → "
		}
		out += x
	}
	return out
}

// ResolveFQN returns the fully qualified name a feature or data source name stands for: a
// bare name is in the engine's default namespace (WithDefaultNamespace), names are case
// insensitive. It fails with ErrInvalidSelector for what is not a name (a selector's
// +aggr, @-N or [encoding] included). Callers that must name an object as the engine will —
// a delete, a watch — use it rather than guessing the namespace.
func (e *Engine) ResolveFQN(name string) (string, error) { return ParseFQN(name, e.defaultNS) }

// Delete removes an applied feature, then drops its stored values (State.Drop), so that a
// feature applied again under the name — perhaps with another type or granularity — starts
// empty. The drop runs under the engine's apply lock: no apply of the name can overlap it.
// A write that began before the delete may still land after the drop; its value expires
// with the old feature's staleness. When the drop fails the feature is deleted all the same
// and the error says so.
func (e *Engine) Delete(ctx context.Context, fqn string) error { return e.remove(ctx, fqn, true) }

// Forget removes an applied feature that another replica deleted. Over a shared State
// (Sharer) its stored values are left alone: the replica that deleted the feature dropped
// them, and a drop here, later, could remove the values of the feature re-created under the
// name since. Over a State of this process's own it drops them, as Delete does.
func (e *Engine) Forget(ctx context.Context, fqn string) error {
	return e.remove(ctx, fqn, !e.shared)
}

func (e *Engine) remove(ctx context.Context, fqn string, drop bool) error {
	name, err := ParseFQN(fqn, e.defaultNS)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := *e.features.Load()
	p, ok := cur[name]
	if !ok {
		return fmt.Errorf("delete %s: %w", name, ErrFeatureNotFound)
	}
	next := maps.Clone(cur)
	delete(next, name)
	e.features.Store(&next)
	if e.observer != nil {
		e.observer.Forget(name)
	}
	if !drop {
		e.log.LogAttrs(ctx, slog.LevelInfo, "feature deleted (its shared values were dropped by the replica that deleted it)", slog.String("fqn", name))
		return nil
	}
	if err := e.state.Drop(ctx, p.f); err != nil {
		e.log.LogAttrs(ctx, slog.LevelError, "feature deleted, its stored values not dropped",
			slog.String("fqn", name), slog.Any("error", err))
		return fmt.Errorf("delete %s: the feature is deleted, but its stored values were not dropped (they expire with its staleness): %w", name, err)
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "feature deleted", slog.String("fqn", name))
	return nil
}

// Features returns copies of the applied features, sorted by FQN: the caller owns them.
func (e *Engine) Features() []*Feature {
	cur := *e.features.Load()
	out := make([]*Feature, 0, len(cur))
	for _, p := range cur {
		out = append(out, p.f.Clone())
	}
	slices.SortFunc(out, func(a, b *Feature) int {
		switch {
		case a.FQN < b.FQN:
			return -1
		case a.FQN > b.FQN:
			return 1
		}
		return 0
	})
	return out
}

// Resolve returns the FQN and the timeout of the applied feature a selector names, checked
// as FeatureDescriptor checks it, without copying the feature: for a call that reads many
// selectors at once (GetMany) and bounds itself by their timeouts.
func (e *Engine) Resolve(selector string) (fqn string, timeout time.Duration, err error) {
	sel, err := ParseSelector(selector, e.defaultNS)
	if err != nil {
		return "", 0, err
	}
	p, err := e.lookup(sel.FQN)
	if err != nil {
		return "", 0, err
	}
	if err := e.checkSelector(p.f, sel); err != nil {
		return "", 0, err
	}
	return p.f.FQN, p.f.Timeout, nil
}

// FeatureDescriptor returns a copy of the applied feature a selector names (its +aggr,
// @-version and [encoding] are checked against the feature but otherwise ignored): the
// caller owns it.
func (e *Engine) FeatureDescriptor(ctx context.Context, selector string) (*Feature, error) {
	sel, err := ParseSelector(selector, e.defaultNS)
	if err != nil {
		return nil, err
	}
	p, err := e.lookup(sel.FQN)
	if err != nil {
		return nil, err
	}
	if err := e.checkSelector(p.f, sel); err != nil {
		return nil, err
	}
	return p.f.Clone(), nil
}

func (e *Engine) lookup(fqn string) (*plan, error) {
	if p, ok := (*e.features.Load())[fqn]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s%s", ErrFeatureNotFound, fqn, e.nearFeatures(fqn))
}

// nearFeatures suggests applied features named like fqn, for an error message.
func (e *Engine) nearFeatures(fqn string) string {
	cur := *e.features.Load()
	names := make([]string, 0, len(cur))
	for name := range cur {
		names = append(names, name)
	}
	slices.Sort(names)
	return didYouMean(suggest(fqn, names))
}

func (e *Engine) checkSelector(f *Feature, sel Selector) error {
	if sel.Aggr != AggrUnknown {
		if !f.Windowed() {
			return fmt.Errorf("%w: selector %s: +%s on %s, which is not windowed", ErrUnsupported, sel, sel.Aggr, f.FQN)
		}
		if !f.Aggrs.Has(sel.Aggr) {
			return fmt.Errorf("%w: selector %s: %s aggregates %s, not %s", ErrUnsupported, sel, f.FQN, f.Aggrs, sel.Aggr)
		}
	}
	if sel.Version > 0 {
		if f.KeepPrevious == nil {
			return fmt.Errorf("%w: selector %s: %s keeps no previous versions", ErrVersionOutOfRange, sel, f.FQN)
		}
		if sel.Version > f.KeepPrevious.Versions {
			return fmt.Errorf("%w: selector %s: %s keeps %d previous versions", ErrVersionOutOfRange, sel, f.FQN, f.KeepPrevious.Versions)
		}
	}
	if sel.Encoding != "" {
		if e.encoders == nil {
			return fmt.Errorf("%w: selector %s: unknown encoding %q", ErrUnsupported, sel, sel.Encoding)
		}
		if _, err := e.encoders.Encoder(sel.Encoding); err != nil {
			return fmt.Errorf("%w: selector %s: %w", ErrUnsupported, sel, err)
		}
	}
	return nil
}

// Get reads the feature a selector names for one entity. An absent, expired or stale value
// is reported as a Result with a Null Value and no error.
func (e *Engine) Get(ctx context.Context, selector string, keys Keys) (Result, error) {
	sel, err := ParseSelector(selector, e.defaultNS)
	if err != nil {
		return Result{}, err
	}
	p, err := e.lookup(sel.FQN)
	if err != nil {
		return Result{}, err
	}
	f := p.f
	if err := e.checkSelector(f, sel); err != nil {
		return Result{}, err
	}
	ekeys, err := EncodeKeys(f.Keys, keys)
	if err != nil {
		return Result{}, fmt.Errorf("get %s: %w", f.FQN, err)
	}
	if p.timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Timeout)
		defer cancel()
	}
	res, err := e.get(ctx, p, sel, keys, ekeys)
	if p.obs != nil {
		p.obs.Read(res, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("get %s: %w", sel, err)
	}
	return res, nil
}

func (e *Engine) get(ctx context.Context, p *plan, sel Selector, keys Keys, ekeys string) (Result, error) {
	f := p.f
	now := e.now()
	var call *Call
	if pre := p.stages[StagePreGet]; len(pre) > 0 {
		call = &Call{Op: OpGet, Stage: StagePreGet, Feature: f, Selector: sel, Keys: keys, EncodedKeys: ekeys, Timestamp: now}
		v, err := e.runSteps(ctx, p, call, pre, Null)
		if err != nil {
			return Result{FQN: f.FQN}, err
		}
		if !v.IsNull() {
			return e.finishGet(ctx, p, call, sel, Result{FQN: f.FQN, Value: v, Timestamp: now, Fresh: true})
		}
	}
	var st ReadResult
	if f.Windowed() {
		b, err := e.window(ctx, f, ekeys, AliveSpan(now, f.Staleness, f.Granularity))
		st = ReadResult{Window: b, Err: err}
	} else {
		st.Value, st.Timestamp, st.Found, st.Err = e.state.Get(ctx, f, ekeys, sel.Version)
	}
	return e.serve(ctx, p, call, sel, keys, ekeys, now, st)
}

// serve turns what the State returned for one cell, read as of now, into the Result of a
// Get: freshness and staleness, the on-request recompute, postGet middlewares and encoding.
// Get and a prefetched GetMany cell (Prefetch) share it, so that both serve alike.
func (e *Engine) serve(ctx context.Context, p *plan, call *Call, sel Selector, keys Keys, ekeys string, now time.Time, st ReadResult) (Result, error) {
	f := p.f
	res := Result{FQN: f.FQN}
	if st.Err != nil {
		return res, fmt.Errorf("state: %w", st.Err)
	}
	if f.Windowed() {
		if b := st.Window; b.Count != 0 {
			r := WindowResult{Aggrs: f.Aggrs, Sum: b.Sum, Count: b.Count, Min: b.Min, Max: b.Max}
			if err := r.checkFinite(sel.Aggr); err != nil {
				return res, err
			}
			res.Timestamp = b.Updated
			res.Fresh = now.Sub(b.Updated) < f.Freshness
			if sel.Aggr != AggrUnknown {
				res.Value = Float(r.Get(sel.Aggr))
			} else {
				res.Value = Window(r)
			}
		}
	} else {
		v, ts, found := st.Value, st.Timestamp, st.Found
		limit := f.Staleness
		if sel.Version > 0 {
			limit = f.KeepPrevious.Over
		}
		age := now.Sub(ts)
		if p.onRequest && sel.Version == 0 {
			switch {
			case !found || age >= limit || v.kind != Kind(f.Primitive):
				// Nothing servable: compute now, within this call's deadline.
				r, err := e.compute(ctx, p, keys, ekeys, now)
				if err != nil {
					return res, err
				}
				return e.finishGet(ctx, p, call, sel, r)
			case age >= f.Freshness:
				// Stale but servable: serve it and recompute in the background.
				e.refresh(p, keys, ekeys)
			}
		}
		switch {
		case !found, age >= limit:
		case v.kind != Kind(f.Primitive):
			e.log.LogAttrs(ctx, slog.LevelWarn, "stored value has the wrong type; not served",
				slog.String("fqn", f.FQN), slog.String("want", f.Primitive.String()), slog.String("got", v.kind.String()))
		default:
			res.Value, res.Timestamp, res.Fresh = v, ts, age < f.Freshness
		}
	}
	return e.finishGet(ctx, p, call, sel, res)
}

// compute runs an on-request feature's program for one entity and writes the result through
// the feature's pipeline, returning it as a read would.
func (e *Engine) compute(ctx context.Context, p *plan, keys Keys, ekeys string, now time.Time) (Result, error) {
	res := Result{FQN: p.f.FQN}
	var w WriteResult
	var out ProgramResult
	for attempt := 1; ; attempt++ {
		call := &ProgramCall{Keys: keys, Timestamp: now}
		var ok string
		var err error
		if out, ok, err = e.run(ctx, p, call); err != nil {
			return res, err
		}
		if out.Value.IsNull() {
			err = nil
			if call.Invocation != nil {
				err = e.commitStorage(ctx, call.Invocation)
			}
			if errors.Is(err, ErrConflict) && attempt < maxConflictRetries {
				continue
			}
			return res, err
		}
		if ok != ekeys {
			return res, fmt.Errorf("%w: the program returned a value for other keys (%v) than asked (%v)", ErrInvalidKeys, out.Keys, keys)
		}
		w, err = e.writeInvoked(ctx, OpUpdate, p, keys, ekeys, out.Value, out.Timestamp, now, call.Invocation)
		if errors.Is(err, ErrConflict) && attempt < maxConflictRetries {
			continue // another invocation of the entity committed first: run again on its storage
		}
		if err != nil {
			return res, err
		}
		break
	}
	v := w.Value
	res.Value, res.Timestamp, res.Fresh = v, out.Timestamp, now.Sub(out.Timestamp) < p.f.Freshness
	return res, nil
}

// window aggregates an entity's window, pushed down into the State when it can; the merged
// bucket has Count 0 when the window is empty.
func (e *Engine) window(ctx context.Context, f *Feature, ekeys string, span WindowSpan) (Bucket, error) {
	if e.aggregator == nil {
		buckets, err := e.state.WindowBuckets(ctx, f, ekeys, span)
		if err != nil {
			return Bucket{}, err
		}
		return MergeBuckets(buckets, span), nil
	}
	b, err := e.aggregator.WindowAggregate(ctx, f, ekeys, span)
	if err != nil {
		return Bucket{}, err
	}
	return b, nil
}

func (e *Engine) finishGet(ctx context.Context, p *plan, call *Call, sel Selector, res Result) (Result, error) {
	if post := p.stages[StagePostGet]; len(post) > 0 {
		if call == nil {
			call = &Call{Op: OpGet, Feature: p.f, Selector: sel, Timestamp: e.now()}
		}
		c := *call
		c.Stage, c.Fresh = StagePostGet, res.Fresh
		v, err := e.runSteps(ctx, p, &c, post, res.Value)
		if err != nil {
			return res, err
		}
		res.Value = v
	}
	if sel.Encoding != "" && !res.Value.IsNull() {
		enc, err := e.encoders.Encoder(sel.Encoding)
		if err != nil {
			return res, err
		}
		if res.Value, err = enc(ctx, res.Value); err != nil {
			return res, fmt.Errorf("encoding %s: %w", sel.Encoding, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// runSteps runs a stage's middlewares in order, stopping at the first error or at the end of
// ctx.
func (e *Engine) runSteps(ctx context.Context, p *plan, call *Call, steps []step, v Value) (Value, error) {
	for i := range steps {
		s := &steps[i]
		if err := ctx.Err(); err != nil {
			return Null, fmt.Errorf("%s middleware %s: %w", call.Stage, s.name, err)
		}
		out, err := e.runStep(ctx, p, s, call, v)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = fmt.Errorf("%w (%w)", ctxErr, err)
			}
			return Null, fmt.Errorf("%s middleware %s: %w", call.Stage, s.name, err)
		}
		v = out
	}
	return v, nil
}

// WriteOutcome says whether a write became the entity's current value.
type WriteOutcome uint8

// Write outcomes.
const (
	// WriteApplied: the write became the current value (or was added to its window, list
	// or counter).
	WriteApplied WriteOutcome = iota + 1
	// WriteSuperseded: the entity's current value has a later timestamp, so the write did
	// not replace it; it was kept among the previous versions or dropped (WriteResult.Kept).
	WriteSuperseded
)

// String returns "applied" or "superseded".
func (o WriteOutcome) String() string {
	switch o {
	case WriteApplied:
		return "applied"
	case WriteSuperseded:
		return "superseded"
	}
	return "unknown"
}

// WriteResult is the outcome of a write.
type WriteResult struct {
	// FQN of the feature written (a bare name resolved in the default namespace).
	FQN string
	// Value after the write: the value set (for a superseded Set, the late value), the list
	// after an append, the counter after an increment; Null for a window add.
	Value Value
	// Timestamp is the write's timestamp (now when the call gave none).
	Timestamp time.Time
	// Outcome says whether the write became the current value. Only a Set (or an Update of
	// a scalar, which is a Set) can be superseded.
	Outcome WriteOutcome
	// Current is, for a superseded write, the timestamp of the current value that
	// superseded it.
	Current time.Time
	// Kept is, for a superseded write, whether it was kept among the previous versions
	// (false: dropped; see State's rules).
	Kept bool
}

// Superseded reports whether the write arrived after a later value and did not replace it.
func (r WriteResult) Superseded() bool { return r.Outcome == WriteSuperseded }

// Set writes the current value of an entity and returns the value written; Write(OpSet)
// also reports whether it became current. Writes are ordered by event time: a Set older than
// the current value does not replace it (see State). For a windowed feature Set adds val to
// the window, like Update. A zero ts means now.
func (e *Engine) Set(ctx context.Context, fqn string, keys Keys, val any, ts time.Time) (Value, error) {
	r, err := e.Write(ctx, OpSet, fqn, keys, val, ts)
	if err != nil {
		return Null, err
	}
	return r.Value, nil
}

// Append appends val (one element or a list of them) to a list feature's value and returns
// the resulting list. Appends apply in call order, whatever their timestamps. A zero ts
// means now.
func (e *Engine) Append(ctx context.Context, fqn string, keys Keys, val any, ts time.Time) (Value, error) {
	r, err := e.Write(ctx, OpAppend, fqn, keys, val, ts)
	if err != nil {
		return Null, err
	}
	return r.Value, nil
}

// Incr adds by to an int or float feature's value (from 0 when absent or stale) and returns
// the result; for a windowed feature it adds by to the window, like Update. Increments
// apply in call order, whatever their timestamps. A zero ts means now.
func (e *Engine) Incr(ctx context.Context, fqn string, keys Keys, by any, ts time.Time) (Value, error) {
	r, err := e.Write(ctx, OpIncr, fqn, keys, by, ts)
	if err != nil {
		return Null, err
	}
	return r.Value, nil
}

// Update writes val the way the feature's type calls for: added to the window for windowed
// features, appended for lists, set for scalars (ordered by event time, as Set is). It
// returns the value after the write (Null for a window add). A zero ts means now.
func (e *Engine) Update(ctx context.Context, fqn string, keys Keys, val any, ts time.Time) (Value, error) {
	r, err := e.Write(ctx, OpUpdate, fqn, keys, val, ts)
	if err != nil {
		return Null, err
	}
	return r.Value, nil
}

// Write runs one of the write operations (OpSet, OpAppend, OpIncr, OpUpdate) through the
// feature's pipeline and reports its outcome: the FQN written, the value after the write and
// whether it became the current value. A zero ts means now.
//
// Event time orders Sets (and Updates of scalars): the entity's current value is the one
// with the latest timestamp, and a late write is WriteSuperseded — kept among the previous
// versions when the feature keeps them and it falls within Versions, dropped otherwise. The
// State decides this atomically with the write. Appends, increments and window adds are
// always WriteApplied. postSet middlewares and the notifier see superseded writes too; the
// notification carries the outcome.
//
// On an error the result is zero, except when the write reached the State and something
// after it failed (a postSet middleware, the notifier, the deadline): the result then
// describes the write.
func (e *Engine) Write(ctx context.Context, op Op, fqn string, keys Keys, val any, ts time.Time) (WriteResult, error) {
	if op < OpSet || op > OpUpdate {
		return WriteResult{}, fmt.Errorf("%w: %s is not a write", ErrUnsupported, op)
	}
	name, err := ParseFQN(fqn, e.defaultNS)
	if err != nil {
		return WriteResult{}, err
	}
	p, err := e.lookup(name)
	if err != nil {
		return WriteResult{}, err
	}
	f := p.f
	ekeys, err := EncodeKeys(f.Keys, keys)
	if err != nil {
		return WriteResult{}, fmt.Errorf("%s %s: %w", op, f.FQN, err)
	}
	now := e.now()
	if ts.IsZero() {
		ts = now
	}
	v, err := e.convertWrite(op, f, val)
	if err != nil {
		return WriteResult{}, fmt.Errorf("%s %s: %w", op, f.FQN, err)
	}
	if p.timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Timeout)
		defer cancel()
	}
	out, err := e.writePlanned(ctx, op, p, keys, ekeys, v, ts, now)
	if err != nil {
		if we := (*writtenError)(nil); !errors.As(err, &we) {
			out = WriteResult{}
		}
		return out, fmt.Errorf("%s %s: %w", op, f.FQN, err)
	}
	return out, nil
}

// convertWrite converts a write's input to what the state takes for op.
func (e *Engine) convertWrite(op Op, f *Feature, val any) (Value, error) {
	switch {
	case f.Windowed():
		if op == OpAppend {
			return Null, fmt.Errorf("%w: append to windowed feature (use update)", ErrUnsupported)
		}
		return Convert(f.Primitive, val)
	case f.Primitive.IsList() && (op == OpAppend || op == OpUpdate):
		if isList(val) {
			return Convert(f.Primitive, val)
		}
		el, err := Convert(f.Primitive.Elem(), val)
		if err != nil {
			return Null, err
		}
		return Convert(f.Primitive, []any{el.Interface()})
	case op == OpAppend:
		return Null, fmt.Errorf("%w: append to %s feature (append needs a list)", ErrUnsupported, f.Primitive)
	case op == OpIncr && !f.Primitive.IsNumeric():
		return Null, fmt.Errorf("%w: incr of %s feature (incr needs int or float)", ErrUnsupported, f.Primitive)
	}
	return Convert(f.Primitive, val)
}

func isList(x any) bool {
	switch v := x.(type) {
	case nil, string:
		return false
	case Value:
		return v.kind.valid() && Primitive(v.kind).IsList()
	case []any, []int64, []float64, []string, []bool, []int, []time.Time:
		return true
	}
	return reflectIsList(x)
}

func (k Kind) valid() bool { return k <= KindTimestampList }

// writePlanned runs a converted write through p's pipeline and the State, and publishes
// its notification. On an error after the State call (a writtenError) the result still
// describes the write.
func (e *Engine) writePlanned(ctx context.Context, op Op, p *plan, keys Keys, ekeys string, v Value, ts, now time.Time) (WriteResult, error) {
	return e.writeInvoked(ctx, op, p, keys, ekeys, v, ts, now, nil)
}

// writeInvoked is writePlanned of a program's value with its invocation's storage changes
// (inv; nil: none), committed with the value in one State call.
func (e *Engine) writeInvoked(ctx context.Context, op Op, p *plan, keys Keys, ekeys string, v Value, ts, now time.Time, inv *Invocation) (WriteResult, error) {
	out, err := e.write(ctx, op, p, keys, ekeys, v, ts, now, inv)
	if p.obs != nil {
		p.obs.Write(op, out, err)
	}
	return out, err
}

// write is writeInvoked without its observation.
func (e *Engine) write(ctx context.Context, op Op, p *plan, keys Keys, ekeys string, v Value, ts, now time.Time, inv *Invocation) (WriteResult, error) {
	s, err := e.preSet(ctx, op, p, keys, ekeys, v, ts, now)
	if err != nil {
		return s.res, err
	}
	var w Written
	commit, stateful := StorageCommit{}, false
	if inv != nil {
		commit, stateful = inv.commit(&StorageWrite{Value: s.v, Timestamp: ts})
	}
	if stateful {
		var version string
		if version, w, err = e.storage.CommitStorage(ctx, p.f, ekeys, commit); err == nil {
			inv.committed = version
			inv.sent()
		}
	} else {
		o := s.write().Apply(ctx, e.state)
		w, err = o.Written, o.Err
	}
	if err != nil {
		return s.res, fmt.Errorf("state: %w", err)
	}
	n, err := e.postSet(ctx, &s, w)
	if err != nil {
		return s.res, err
	}
	if e.notifier != nil {
		if err := e.notifier.Publish(ctx, n); err != nil {
			return s.res, &writtenError{fmt.Errorf("written, but not published for the historian: %w", err)}
		}
	}
	if err := ctx.Err(); err != nil {
		return s.res, &writtenError{fmt.Errorf("written, but past the deadline: %w", err)}
	}
	return s.res, nil
}

// staged is a write past its preSet middlewares, on its way to the State.
type staged struct {
	op      Op
	p       *plan
	keys    Keys
	ekeys   string
	v       Value // as the preSet middlewares returned it
	ts, now time.Time
	call    *Call // the middlewares' call, once one ran
	res     WriteResult
}

// preSet runs p's preSet middlewares on a write and refuses what no State may take (a
// window add older than the kept span).
func (e *Engine) preSet(ctx context.Context, op Op, p *plan, keys Keys, ekeys string, v Value, ts, now time.Time) (staged, error) {
	f := p.f
	s := staged{op: op, p: p, keys: keys, ekeys: ekeys, v: v, ts: ts, now: now,
		res: WriteResult{FQN: f.FQN, Timestamp: ts, Outcome: WriteApplied}}
	if pre := p.stages[StagePreSet]; len(pre) > 0 {
		s.call = &Call{Op: op, Stage: StagePreSet, Feature: f, Keys: keys, EncodedKeys: ekeys, Timestamp: ts}
		var err error
		if s.v, err = e.runSteps(ctx, p, s.call, pre, v); err != nil {
			return s, err
		}
		if s.v.kind != v.kind {
			return s, fmt.Errorf("%w: preSet middlewares returned %s, want %s", ErrTypeMismatch, s.v.kind, v.kind)
		}
	}
	if f.Windowed() {
		if id := BucketID(ts, f.Granularity); !KeptSpan(now, f.Staleness, f.Granularity).Contains(id) {
			return s, fmt.Errorf("%w: %s is older than the window (%v) plus the grace period (%v)", ErrOutOfWindow, ts.UTC().Format(time.RFC3339), f.Staleness, DeadGracePeriod)
		}
	}
	return s, nil
}

// write is the State write s stands for.
func (s *staged) write() Write {
	return Write{Op: s.op, Feature: s.p.f, Keys: s.ekeys, Value: s.v, Timestamp: s.ts}
}

// postSet records in s.res what the State wrote (w), runs the postSet middlewares on it and
// returns the write's notification. An error is a writtenError: the value is written.
func (e *Engine) postSet(ctx context.Context, s *staged, w Written) (Notification, error) {
	f := s.p.f
	n := Notification{Kind: NotifyWrite, Op: s.op, FQN: f.FQN, EncodedKeys: s.ekeys, Timestamp: s.ts, Written: s.now}
	out := w.Value
	if w.Superseded {
		s.res.Outcome, s.res.Current, s.res.Kept = WriteSuperseded, w.Current, w.Kept
	}
	n.Outcome = s.res.Outcome
	if post := s.p.stages[StagePostSet]; len(post) > 0 {
		c := Call{Op: s.op, Feature: f, Keys: s.keys, EncodedKeys: s.ekeys, Timestamp: s.ts}
		if s.call != nil {
			c = *s.call
		}
		c.Stage = StagePostSet
		var err error
		if out, err = e.runSteps(ctx, s.p, &c, post, out); err != nil {
			return n, &writtenError{err}
		}
	}
	s.res.Value, n.Value = out, out
	if f.Windowed() {
		// The notification carries the number added (the historian records the add).
		x, _ := s.v.Number()
		id := BucketID(s.ts, f.Granularity)
		n.Value, n.Windowed, n.Bucket = Float(x), true, id
		n.ActiveBucket = AliveSpan(s.now, f.Staleness, f.Granularity).Contains(id)
	}
	return n, nil
}

// writtenError is the error of a write that reached the State but failed afterwards (a
// postSet middleware, the notifier, the deadline), so that a caller counting writes (Ingest)
// counts it.
type writtenError struct{ err error }

func (e *writtenError) Error() string { return e.err.Error() }
func (e *writtenError) Unwrap() error { return e.err }

// DeadBuckets returns the buckets of a windowed feature that have left the window but are
// still kept (for DeadGracePeriod), across all entities: what the historian collects.
func (e *Engine) DeadBuckets(ctx context.Context, fqn string) ([]RawBucket, error) {
	p, err := e.lookup(fqn)
	if err != nil {
		return nil, err
	}
	f := p.f
	if !f.Windowed() {
		return nil, fmt.Errorf("%w: %s is not windowed", ErrUnsupported, f.FQN)
	}
	now := e.now()
	alive := AliveSpan(now, f.Staleness, f.Granularity)
	kept := KeptSpan(now, f.Staleness, f.Granularity)
	return e.state.DeadWindowBuckets(ctx, f, WindowSpan{First: kept.First, Last: alive.First - 1})
}
