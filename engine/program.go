package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
)

// Row is one input row for feature programs: field name → value.
type Row map[string]Value

// RowFromMap converts loosely typed input (a decoded JSON object) into a Row:
// json.Number and Go numbers become int when they are whole and fit (and were not written
// with a fraction or exponent), float otherwise; strings, bools and time.Time keep their
// kind; lists take the kind of their elements (all of one kind; numbers mixing int and float
// become floats); null becomes Null. Objects and mixed lists are errors naming the field.
func RowFromMap(m map[string]any) (Row, error) {
	row := make(Row, len(m))
	names := slices.Sorted(maps.Keys(m))
	for _, name := range names {
		v, err := inferValue(m[name])
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
		row[name] = v
	}
	return row, nil
}

func inferValue(x any) (Value, error) {
	switch v := x.(type) {
	case nil:
		return Null, nil
	case Value:
		return v, nil
	case string:
		return String(v), nil
	case bool:
		return Bool(v), nil
	case time.Time:
		return Convert(PrimitiveTimestamp, v)
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return Int(n), nil
		}
		return Convert(PrimitiveFloat, v)
	case float64, float32:
		return Convert(PrimitiveFloat, v)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return Convert(PrimitiveInt, v)
	case []any:
		if len(v) == 0 {
			return Null, fmt.Errorf("%w: an empty list has no element type", ErrTypeMismatch)
		}
		var elem Kind
		for i, e := range v {
			ev, err := inferValue(e)
			if err != nil {
				return Null, fmt.Errorf("element %d: %w", i, err)
			}
			k := ev.kind
			switch {
			case k == KindNull || k >= KindIntList:
				return Null, fmt.Errorf("%w: element %d is %s (lists hold scalars)", ErrTypeMismatch, i, k)
			case i == 0 || k == elem:
				elem = k
			case (k == KindInt && elem == KindFloat) || (k == KindFloat && elem == KindInt):
				elem = KindFloat
			default:
				return Null, fmt.Errorf("%w: list mixes %s and %s", ErrTypeMismatch, elem, k)
			}
		}
		return Convert(Primitive(elem).List(), v)
	}
	if isList(x) {
		return Null, fmt.Errorf("%w: unsupported list type %T", ErrTypeMismatch, x)
	}
	return Null, fmt.Errorf("%w: unsupported value %s", ErrTypeMismatch, describe(x))
}

// FeatureReader reads features; the engine hands one to a program, restricted to the
// program's declared dependencies.
type FeatureReader interface {
	Get(ctx context.Context, selector string, keys Keys) (Result, error)
}

// ProgramCall is one run of a feature program.
type ProgramCall struct {
	// Keys is the entity, when the caller knows it (on-request computation); empty for a
	// row whose program says which entity it belongs to.
	Keys Keys
	// Timestamp is the row's time, or the request's.
	Timestamp time.Time
	// Row is the input row; nil when the feature is computed on request.
	Row Row
	// Reader reads the features the program depends on.
	Reader FeatureReader
	// Invocation is the program's address-scoped storage (spec.builder.storage); nil when
	// the feature declares none. Its changes are committed with the program's value once
	// the program returned; a program that fails leaves no trace.
	Invocation *Invocation
	// Message is the message the program runs for (a delivery from another program's Send
	// or SendAfter, or its own); nil for a row or a read. Row is then nil, Keys the
	// target's, Timestamp the message's.
	Message *Received
}

// ProgramResult is what a program computed. A Null Value means: write nothing.
type ProgramResult struct {
	Value Value
	// Keys is the entity the value belongs to; nil means the call's keys.
	Keys Keys
	// Timestamp is the value's time; zero means the call's timestamp.
	Timestamp time.Time
}

// Program computes a feature's values. Run must honour ctx's deadline and be safe for
// concurrent use.
type Program interface {
	Run(ctx context.Context, call *ProgramCall) (ProgramResult, error)
}

// ProgramLoader prepares the program of a feature whose builder runs one ("wasm"), when the
// feature is applied: it compiles and checks the module, so that a bad one is refused then.
// A loader returns an error wrapping ErrUnsupported for builder kinds it does not run.
type ProgramLoader interface {
	LoadProgram(ctx context.Context, f *Feature) (Program, error)
}

// WithPrograms sets the loader of feature programs (the Wasm host). Without one, only
// sourceless features can be applied.
func WithPrograms(l ProgramLoader) Option { return func(e *Engine) { e.programs = l } }

// depReader is the FeatureReader a program gets: the engine, limited to f's dependencies.
type depReader struct {
	e *Engine
	f *Feature
}

func (r depReader) Get(ctx context.Context, selector string, keys Keys) (Result, error) {
	sel, err := ParseSelector(selector, r.e.defaultNS)
	if err != nil {
		return Result{}, err
	}
	if !slices.Contains(r.f.Dependencies, sel.FQN) {
		return Result{}, fmt.Errorf("%w: %s reads %s, which is not in its spec.dependencies", ErrUnsupported, r.f.FQN, sel.FQN)
	}
	return r.e.Get(ctx, selector, keys)
}

// run runs p's program and checks what it returned: the value converted to the feature's
// type, the keys complete, the timestamp set.
func (e *Engine) run(ctx context.Context, p *plan, call *ProgramCall) (ProgramResult, string, error) {
	f := p.f
	call.Reader = depReader{e: e, f: f}
	if call.Invocation == nil {
		call.Invocation = e.newInvocation(f, call, nil)
	}
	res, err := e.runProgram(ctx, p, call)
	if err != nil {
		return res, "", fmt.Errorf("program: %w", err)
	}
	if res.Value.IsNull() {
		return res, "", nil
	}
	if res.Value, err = e.convertWrite(OpUpdate, f, res.Value); err != nil {
		return res, "", fmt.Errorf("program returned a bad value: %w", err)
	}
	if res.Keys == nil {
		res.Keys = call.Keys
	}
	if res.Keys == nil && call.Row != nil {
		res.Keys = keysFromRow(f, call.Row)
	}
	ekeys, err := EncodeKeys(f.Keys, res.Keys)
	if err != nil {
		return res, "", fmt.Errorf("program result: %w", err)
	}
	if in := call.Invocation; in.effects() && ekeys != in.ekeys {
		return res, "", fmt.Errorf("program result: %w: a program that uses its storage or sends writes its own entity's value (%v), not %v", ErrInvalidKeys, in.addr.Keys, res.Keys)
	}
	if res.Timestamp.IsZero() {
		res.Timestamp = call.Timestamp
	}
	return res, ekeys, nil
}

// keysFromRow takes a feature's keys from the row fields of the same names, when the
// program did not say which entity its value belongs to.
func keysFromRow(f *Feature, row Row) Keys {
	keys := make(Keys, len(f.Keys))
	for _, k := range f.Keys {
		if v, ok := row[k]; ok && !v.IsNull() {
			if v.kind == KindString {
				keys[k] = v.str
			} else {
				keys[k] = v.String()
			}
		}
	}
	return keys
}

// DryRunResult is what a program would write.
type DryRunResult struct {
	FQN string
	// Value is Null when the program writes nothing for this row.
	Value     Value
	Keys      Keys
	Timestamp time.Time
	// Storage is what the run would commit to its storage, in the order first changed.
	Storage []StorageChange
	// Sends are the messages, timers and egress messages the run would send (IDs unset),
	// and Cancels the timer tokens it would cancel.
	Sends   []Envelope
	Cancels []string
}

// StorageChange is one storage value an invocation changed.
type StorageChange struct {
	Name string
	// Value is the new value; Null when the run clears it.
	Value Value
	// Expires is when the new value would expire (zero: never).
	Expires time.Time
}

// DryRun runs a feature's program on a sample row (or, with a nil row, as on request for
// keys) and its preSet middlewares, and returns what would be written (and what its storage
// would commit). A row is timed as Ingest times it (its data source's timestampField) when
// ts is zero. Nothing is written
// and nothing is published. Keys, when given, are checked against the feature's (as
// EncodeKeys does) before the program runs. The whole run is bounded by the feature's
// timeout and by ctx: when either ends first, DryRun fails with ctx's error.
func (e *Engine) DryRun(ctx context.Context, fqn string, keys Keys, row Row, ts time.Time) (DryRunResult, error) {
	name, err := ParseFQN(fqn, e.defaultNS)
	if err != nil {
		return DryRunResult{}, err
	}
	p, err := e.lookup(name)
	if err != nil {
		return DryRunResult{}, err
	}
	if p.program == nil {
		return DryRunResult{}, fmt.Errorf("dry run %s: %w: the feature has no program (builder %s)", name, ErrUnsupported, p.f.Builder.Kind)
	}
	if len(keys) > 0 {
		if _, err := EncodeKeys(p.f.Keys, keys); err != nil {
			return DryRunResult{}, fmt.Errorf("dry run %s: %w", name, err)
		}
	}
	if ts.IsZero() {
		ts = e.now()
		// A row is timed as Ingest times it: by its data source's timestampField.
		if ds, _ := e.source(p.f.DataSource); row != nil && ds != nil {
			if ts, err = rowTime(ds, row, ts); err != nil {
				return DryRunResult{}, fmt.Errorf("dry run %s: %w", name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.f.Timeout)
	defer cancel()
	call := &ProgramCall{Keys: keys, Timestamp: ts, Row: row}
	res, ekeys, err := e.run(ctx, p, call)
	if err != nil {
		return DryRunResult{}, fmt.Errorf("dry run %s: %w", name, err)
	}
	out := DryRunResult{FQN: name, Value: res.Value, Keys: res.Keys, Timestamp: res.Timestamp}
	if in := call.Invocation; in != nil {
		out.Storage = in.changes()
		out.Sends, out.Cancels = in.sends, in.cancels
	}
	if res.Value.IsNull() {
		return out, nil
	}
	if pre := p.stages[StagePreSet]; len(pre) > 0 {
		call := &Call{Op: OpUpdate, Stage: StagePreSet, Feature: p.f, Keys: res.Keys, EncodedKeys: ekeys, Timestamp: res.Timestamp}
		if out.Value, err = e.runSteps(ctx, p, call, pre, res.Value); err != nil {
			return DryRunResult{}, fmt.Errorf("dry run %s: %w", name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return DryRunResult{}, fmt.Errorf("dry run %s: %w", name, err)
	}
	return out, nil
}

// IngestError is the failure of one row for one feature.
type IngestError struct {
	Row int
	FQN string
	Err error
}

func (e *IngestError) Error() string {
	return fmt.Sprintf("row %d: %s: %v", e.Row, e.FQN, e.Err)
}

func (e *IngestError) Unwrap() error { return e.Err }

// IngestResult summarises an Ingest.
type IngestResult struct {
	// Rows is the number of rows received, Written the number of values written.
	Rows, Written int
	// Skipped counts program runs that wrote nothing (the program returned Null).
	Skipped int
	// Superseded counts the values written that did not become current because the entity
	// already had a later one (rows arriving out of event-time order); they are included in
	// Written.
	Superseded int
}

// Ingest runs the programs of every feature fed by a data source on each row, then writes
// what they computed. It runs in two phases so that bad input never leaves a partial write:
// first every program runs on every row and every result is checked (types, keys); if any
// fails, nothing is written and the error lists the failures (each an *IngestError). Then
// the values are written through each feature's pipeline; a failure there (the State, a
// middleware) is returned with the values written before it counted in the result. Plain
// values — a program's that changed no storage and sent nothing — go to a State that is a
// BatchWriter up to the pipeline depth at a time (WithPipelineDepth), in row order: one
// the State refuses there does not stop the others of its batch, and Written counts every
// value written, before and after it.
//
// Ingest stops as soon as ctx ends — the caller went away or its deadline passed — checking
// before each program run and before each write, and returns an error wrapping ctx's. Ended
// in the first phase, it has written nothing; in the second, Written counts what it wrote.
// Each program run and each write is also bounded by its feature's timeout.
func (e *Engine) Ingest(ctx context.Context, source string, rows []Row) (IngestResult, error) {
	res := IngestResult{Rows: len(rows)}
	name, err := ParseFQN(source, e.defaultNS)
	if err != nil {
		return res, fmt.Errorf("ingest: data source: %w", err)
	}
	ds, fed := e.source(name)
	if ds == nil {
		return res, fmt.Errorf("ingest %s: %w: data source not applied", name, ErrFeatureNotFound)
	}
	var writes []ingested
	var errs []error
	chains := map[string]*Invocation{}                                             // the latest invocation of each address, for programs with storage
	budget := sendBudget{sends: MaxSendsPerRequest, bytes: MaxSendBytesPerRequest} // what the request's invocations may still send
	now := e.now()
rows:
	for i, row := range rows {
		ts, err := rowTime(ds, row, now)
		if err != nil {
			errs = append(errs, &IngestError{Row: i, FQN: name, Err: err})
			continue
		}
		for _, p := range fed {
			if err := ctx.Err(); err != nil {
				errs = append(errs, fmt.Errorf("stopped at row %d of %d: %w", i, len(rows), err))
				break rows
			}
			rctx, cancel := context.WithTimeout(ctx, p.f.Timeout)
			call := &ProgramCall{Timestamp: ts, Row: row}
			if inv := e.newInvocation(p.f, call, nil); inv != nil {
				inv.budget = &budget
				if len(p.f.Storage) > 0 {
					// Rows of one entity see each other's storage, in order.
					inv.prev = chains[inv.addressKey()]
					chains[inv.addressKey()] = inv
				}
				call.Invocation = inv
			}
			out, ekeys, err := e.run(rctx, p, call)
			cancel()
			switch {
			case err != nil:
				errs = append(errs, &IngestError{Row: i, FQN: p.f.FQN, Err: err})
			case out.Value.IsNull():
				res.Skipped++
				if call.Invocation.effects() {
					writes = append(writes, ingested{p: p, res: out, call: call}) // its storage alone
				}
			default:
				writes = append(writes, ingested{p: p, res: out, ekeys: ekeys, call: call})
			}
		}
		if len(errs) >= 100 {
			errs = append(errs, fmt.Errorf("stopped after %d errors", len(errs)))
			break
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("ingest %s: nothing written: %w", name, joinErrors(errs))
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("ingest %s: nothing written: stopped after the last row: %w", name, err)
	}
	for i := 0; i < len(writes); i++ {
		if j := e.plainRun(writes, i); j > i {
			if err := e.ingestPipeline(ctx, writes[i:j], &res); err != nil {
				return res, fmt.Errorf("ingest %s: %d of %d values written: %w", name, res.Written, len(writes), err)
			}
			i = j - 1
			continue
		}
		out, written, err := e.ingestWrite(ctx, writes[i])
		for attempt := 1; errors.Is(err, ErrConflict) && attempt < maxConflictRetries; attempt++ {
			// Another invocation of the entity committed first: run this row and the later
			// ones of the entity again, on its storage as it is now.
			if rerr := e.rerunIngested(ctx, writes, i); rerr != nil {
				err = rerr
				break
			}
			out, written, err = e.ingestWrite(ctx, writes[i])
		}
		if written {
			res.Written++
			if out.Superseded() {
				res.Superseded++
			}
		}
		if err != nil {
			return res, fmt.Errorf("ingest %s: %d of %d values written: %w", name, res.Written, len(writes), err)
		}
	}
	return res, nil
}

// ingested is one program result of an Ingest, waiting to be written.
type ingested struct {
	p     *plan
	res   ProgramResult
	ekeys string
	// call is the program's call: its invocation's storage changes are committed with the
	// value (or alone, when it wrote none), and it runs again on a conflict.
	call *ProgramCall
}

// rerunIngested runs the program of writes[i], and of the later writes of the same address,
// again, on the address's storage as it is now, and replaces their results.
func (e *Engine) rerunIngested(ctx context.Context, writes []ingested, i int) error {
	key := writes[i].call.Invocation.addressKey()
	var prev *Invocation
	for j := i; j < len(writes); j++ {
		w := &writes[j]
		if w.call.Invocation == nil || w.call.Invocation.addressKey() != key {
			continue
		}
		call := &ProgramCall{Timestamp: w.call.Timestamp, Row: w.call.Row}
		call.Invocation = e.newInvocation(w.p.f, call, prev)
		rctx, cancel := context.WithTimeout(ctx, w.p.f.Timeout)
		out, ekeys, err := e.run(rctx, w.p, call)
		cancel()
		if err != nil {
			return fmt.Errorf("running %s again after a concurrent change of its storage: %w", w.p.f.FQN, err)
		}
		w.res, w.ekeys, w.call = out, ekeys, call
		prev = call.Invocation
	}
	return nil
}

// ingestWrite writes one program result of an Ingest through its feature's pipeline, as
// Update does, within the feature's timeout, with its invocation's storage changes. It
// reports the write and whether the value was written, which it may have been even when
// there is an error (the notifier failed, the deadline passed after the state call). It
// writes nothing once ctx has ended.
func (e *Engine) ingestWrite(ctx context.Context, w ingested) (WriteResult, bool, error) {
	p, r, ekeys := w.p, w.res, w.ekeys
	if err := ctx.Err(); err != nil {
		return WriteResult{}, false, err
	}
	if p.timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.f.Timeout)
		defer cancel()
	}
	if r.Value.IsNull() { // storage changes without a value
		if err := e.commitStorage(ctx, w.call.Invocation); err != nil {
			return WriteResult{}, false, fmt.Errorf("%s: %w", p.f.FQN, err)
		}
		return WriteResult{}, false, nil
	}
	out, err := e.writeInvoked(ctx, OpUpdate, p, r.Keys, ekeys, r.Value, r.Timestamp, e.now(), w.call.Invocation)
	if err != nil {
		var we *writtenError
		return out, errors.As(err, &we), fmt.Errorf("%s %s: %w", OpUpdate, p.f.FQN, err)
	}
	return out, true, nil
}

// rowTime returns a row's timestamp: the data source's timestampField when it names one and
// the row has it, else now.
func rowTime(ds *DataSource, row Row, now time.Time) (time.Time, error) {
	if ds.TimestampField == "" {
		return now, nil
	}
	v, ok := row[ds.TimestampField]
	if !ok || v.IsNull() {
		return now, nil
	}
	t, err := Convert(PrimitiveTimestamp, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %q (the timestampField): %w", ds.TimestampField, err)
	}
	return t.Time(), nil
}

type joinedErrors []error

func (j joinedErrors) Error() string {
	s := ""
	for i, err := range j {
		if i > 0 {
			s += "; "
		}
		s += err.Error()
	}
	return s
}

func (j joinedErrors) Unwrap() []error { return j }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return joinedErrors(errs)
}

// ApplyDataSource makes a data source available to features and Ingest, replacing one of
// the same FQN.
func (e *Engine) ApplyDataSource(ctx context.Context, ds *DataSource) error {
	if err := ds.Validate(); err != nil {
		return err
	}
	ds = ds.Clone()
	e.mu.Lock()
	defer e.mu.Unlock()
	next := maps.Clone(*e.sources.Load())
	next[ds.FQN] = ds
	e.sources.Store(&next)
	return nil
}

// DeleteDataSource removes a data source that no applied feature uses.
func (e *Engine) DeleteDataSource(ctx context.Context, fqn string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := *e.sources.Load()
	if _, ok := cur[fqn]; !ok {
		return fmt.Errorf("delete data source %s: %w", fqn, ErrFeatureNotFound)
	}
	var users []string
	for _, p := range *e.features.Load() {
		if p.f.DataSource == fqn {
			users = append(users, p.f.FQN)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return fmt.Errorf("delete data source %s: %w: still feeds %v", fqn, ErrUnsupported, users)
	}
	next := maps.Clone(cur)
	delete(next, fqn)
	e.sources.Store(&next)
	return nil
}

// DataSources returns copies of the applied data sources, sorted by FQN: the caller owns
// them.
func (e *Engine) DataSources() []*DataSource {
	cur := *e.sources.Load()
	out := make([]*DataSource, 0, len(cur))
	for _, fqn := range slices.Sorted(maps.Keys(cur)) {
		out = append(out, cur[fqn].Clone())
	}
	return out
}

// source returns a data source and the plans of the features it feeds, in FQN order.
func (e *Engine) source(fqn string) (*DataSource, []*plan) {
	ds := (*e.sources.Load())[fqn]
	if ds == nil {
		return nil, nil
	}
	var fed []*plan
	for _, p := range *e.features.Load() {
		if p.f.DataSource == fqn && p.program != nil {
			fed = append(fed, p)
		}
	}
	slices.SortFunc(fed, func(a, b *plan) int {
		if a.f.FQN < b.f.FQN {
			return -1
		}
		return 1
	})
	return ds, fed
}
