package engine

import (
	"context"
	"fmt"
	"time"
)

// Prefetched holds the cells of a feature vector (selectors × entities) read from the State
// in one batch (BatchReader) by Prefetch, for Get to serve. A nil *Prefetched holds no cell.
// It is safe for concurrent use: each cell is served independently.
type Prefetched struct {
	e       *Engine
	nsel    int
	start   time.Time // when the batch was sent: cells' timeouts run from it
	now     time.Time // the instant the cells are read as of
	cells   []prefetchedCell
	batched int
}

// prefetchedCell is one selector × entity cell; p is nil for a cell the batch left out.
type prefetchedCell struct {
	p     *plan
	sel   Selector
	keys  Keys
	ekeys string
	st    ReadResult
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
	br, ok := e.state.(BatchReader)
	if !ok || len(selectors) == 0 || len(entities) == 0 {
		return nil
	}
	type parsed struct {
		p   *plan
		sel Selector
	}
	sels := make([]parsed, len(selectors))
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
		sels[j] = parsed{p: p, sel: sel}
		bound = max(bound, p.f.Timeout)
		timed = timed || p.timed
	}
	pf := &Prefetched{e: e, nsel: len(selectors), cells: make([]prefetchedCell, len(selectors)*len(entities))}
	pf.start = time.Now()
	pf.now = e.now()
	reads := make([]Read, 0, len(pf.cells))
	idx := make([]int, 0, len(pf.cells))
	for i, keys := range entities {
		for j, s := range sels {
			if s.p == nil {
				continue
			}
			f := s.p.f
			ekeys, err := EncodeKeys(f.Keys, keys)
			if err != nil {
				continue
			}
			r := Read{Feature: f, Keys: ekeys, Version: s.sel.Version}
			if f.Windowed() {
				r.Span = AliveSpan(pf.now, f.Staleness, f.Granularity)
			}
			k := i*len(selectors) + j
			pf.cells[k] = prefetchedCell{p: s.p, sel: s.sel, keys: keys, ekeys: ekeys}
			reads = append(reads, r)
			idx = append(idx, k)
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
	out := br.ReadBatch(ctx, reads)
	for n, k := range idx {
		if n < len(out) {
			pf.cells[k].st = out[n]
		} else {
			pf.cells[k].st.Err = fmt.Errorf("%w: the State answered %d of %d reads of a batch", ErrUnsupported, len(out), len(reads))
		}
	}
	pf.batched = len(reads)
	return pf
}

// batchable reports whether a feature's reads are a State read alone: no get-stage
// middlewares and no program run on request.
func batchable(p *plan) bool {
	return len(p.stages[StagePreGet]) == 0 && len(p.stages[StagePostGet]) == 0 && !p.onRequest
}

// Len returns the number of cells read in the batch (0 for nil).
func (pf *Prefetched) Len() int {
	if pf == nil {
		return 0
	}
	return pf.batched
}

// Get serves cell (i, j) — entity i's selector j of the Prefetch — as Engine.Get would have
// for the same selector and keys: the same Result, or the same error. ok is false when the
// batch left the cell out (or pf is nil); read it with Engine.Get.
func (pf *Prefetched) Get(ctx context.Context, i, j int) (res Result, ok bool, err error) {
	if pf == nil || j < 0 || j >= pf.nsel || i < 0 || i*pf.nsel+j >= len(pf.cells) {
		return Result{}, false, nil
	}
	c := &pf.cells[i*pf.nsel+j]
	if c.p == nil {
		return Result{}, false, nil
	}
	if c.p.timed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, pf.start.Add(c.p.f.Timeout))
		defer cancel()
	}
	st := c.st
	if st.Err == nil {
		if cerr := ctx.Err(); cerr != nil {
			st = ReadResult{Err: fmt.Errorf("the batch read came back after the feature's timeout (%v): %w", c.p.f.Timeout, cerr)}
		}
	}
	res, err = pf.e.serve(ctx, c.p, nil, c.sel, c.keys, c.ekeys, pf.now, st)
	if err != nil {
		return Result{}, true, fmt.Errorf("get %s: %w", c.sel, err)
	}
	return res, true, nil
}
