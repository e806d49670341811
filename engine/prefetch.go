package engine

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Prefetched holds the cells of a feature vector (selectors × entities) read from the State
// in one batch (BatchReader) by Prefetch, for Get to serve. A nil *Prefetched holds no cell.
// It is safe for concurrent use: each cell is served independently.
type Prefetched struct {
	e        *Engine
	sels     []prefetchedSelector // per selector j
	entities []Keys               // per entity i
	start    time.Time            // when the batch was sent: cells' timeouts run from it
	now      time.Time            // the instant the cells are read as of
	// read[i*len(sels)+j] is 1 + the index in ekeys and out of cell (i, j), 0 for a cell
	// the batch left out.
	read  []int32
	ekeys []string
	out   []ReadResult
}

// prefetchedSelector is one selector of a Prefetch; p is nil for a selector the batch
// left out.
type prefetchedSelector struct {
	p   *plan
	sel Selector
}

// Prefetch reads, in one BatchReader.ReadBatch, every cell of selectors × entities that a
// State read alone can serve, and returns them for Prefetched.Get; cell (i, j) is entity i's
// selector j. It returns nil when the State is no BatchReader or no cell can be batched.
//
// Cells left out — to be read one by one with Get, which gives the same answer they would
// have had — are those whose selector does not parse or name an applied feature (Get
// reports the error), whose keys do not encode, whose feature has preGet or postGet
// middlewares (a preGet may answer without reading the State, and both run per cell with
// the call's context), and whose feature is computed on request (a program that runs when
// the value is absent or stale). Everything else is served as Get serves it: freshness and
// staleness as of one instant taken when the batch is sent, the [encoding] of the selector,
// and the feature's timeout, counted from when the batch was sent, for a State that can
// block (a cell whose timeout passed before the batch came back fails with
// context.DeadlineExceeded, as its Get would have).
//
// The batch is bounded by ctx and, when the State can block, by the largest timeout among
// the batched features.
func (e *Engine) Prefetch(ctx context.Context, selectors []string, entities []Keys) *Prefetched {
	br, ok := e.batch, e.batch != nil
	if !ok || len(selectors) == 0 || len(entities) == 0 {
		return nil
	}
	sels := make([]prefetchedSelector, len(selectors))
	var bound time.Duration
	timed := false
	for j, s := range selectors {
		sel, err := ParseSelector(s, e.defaultNS)
		if err != nil {
			continue
		}
		p, err := e.lookup(sel.FQN)
		if err != nil || e.checkSelector(p.f, sel) != nil || !batchable(p) {
			continue
		}
		sels[j] = prefetchedSelector{p: p, sel: sel}
		bound = max(bound, p.f.Timeout)
		timed = timed || p.timed
	}
	n := len(selectors) * len(entities)
	pf := &Prefetched{e: e, sels: sels, entities: entities, read: make([]int32, n)}
	pf.start = time.Now()
	pf.now = e.now()
	reads := make([]Read, 0, n)
	pf.ekeys = make([]string, 0, n)
	for i, keys := range entities {
		// The features of a vector mostly share their key names: the entity's keys are
		// encoded once per run of selectors with the same ones.
		var lastKeys []string
		var ekeys string
		var kerr error
		for j, s := range sels {
			if s.p == nil {
				continue
			}
			f := s.p.f
			if lastKeys == nil || !slices.Equal(f.Keys, lastKeys) {
				lastKeys = f.Keys
				ekeys, kerr = EncodeKeys(f.Keys, keys)
			}
			if kerr != nil {
				continue
			}
			r := Read{Feature: f, Keys: ekeys, Version: s.sel.Version}
			if f.Windowed() {
				r.Span = AliveSpan(pf.now, f.Staleness, f.Granularity)
			}
			reads = append(reads, r)
			pf.ekeys = append(pf.ekeys, ekeys)
			pf.read[i*len(selectors)+j] = int32(len(reads))
		}
	}
	if len(reads) == 0 {
		return nil
	}
	if timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	pf.out = br.ReadBatch(ctx, reads)
	if len(pf.out) != len(reads) {
		err := fmt.Errorf("%w: the State answered %d of %d reads of a batch", ErrUnsupported, len(pf.out), len(reads))
		out := make([]ReadResult, len(reads))
		for n := range out {
			if n < len(pf.out) {
				out[n] = pf.out[n]
			} else {
				out[n].Err = err
			}
		}
		pf.out = out
	}
	return pf
}

// batchable reports whether a feature's reads are a State read alone: no get-stage
// middlewares and no program run on request.
func batchable(p *plan) bool {
	return len(p.stages[StagePreGet]) == 0 && len(p.stages[StagePostGet]) == 0 && !p.onRequest
}

// Resolved returns what Engine.Resolve returns for selector j of the Prefetch — the FQN of
// the feature it names and that feature's timeout — when the batch read it (ok), without
// parsing it again. ok is false for a selector the batch left out (or when pf is nil):
// resolve it with Engine.Resolve.
func (pf *Prefetched) Resolved(j int) (fqn string, timeout time.Duration, ok bool) {
	if pf == nil || j < 0 || j >= len(pf.sels) || pf.sels[j].p == nil {
		return "", 0, false
	}
	f := pf.sels[j].p.f
	return f.FQN, f.Timeout, true
}

// Len returns the number of cells read in the batch (0 for nil).
func (pf *Prefetched) Len() int {
	if pf == nil {
		return 0
	}
	return len(pf.out)
}

// Get serves cell (i, j) — entity i's selector j of the Prefetch — as Engine.Get would have
// for the same selector and keys: the same Result, or the same error. ok is false when the
// batch left the cell out (or pf is nil); read it with Engine.Get.
func (pf *Prefetched) Get(ctx context.Context, i, j int) (res Result, ok bool, err error) {
	if pf == nil || j < 0 || j >= len(pf.sels) || i < 0 || i >= len(pf.entities) {
		return Result{}, false, nil
	}
	n := pf.read[i*len(pf.sels)+j] - 1
	if n < 0 {
		return Result{}, false, nil
	}
	s := &pf.sels[j]
	st := pf.out[n]
	if st.Err == nil {
		// The cell's timeout runs from when the batch was sent; serving it from memory
		// cannot block, so a comparison stands in for a context with that deadline.
		cerr := ctx.Err()
		if cerr == nil && s.p.timed && time.Since(pf.start) >= s.p.f.Timeout {
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			st = ReadResult{Err: fmt.Errorf("the batch read came back after the feature's timeout (%v): %w", s.p.f.Timeout, cerr)}
		}
	}
	res, err = pf.e.serve(ctx, s.p, nil, s.sel, pf.entities[i], pf.ekeys[n], pf.now, st)
	if s.p.obs != nil {
		s.p.obs.Read(res, err)
	}
	if err != nil {
		return Result{}, true, fmt.Errorf("get %s: %w", s.sel, err)
	}
	return res, true, nil
}
