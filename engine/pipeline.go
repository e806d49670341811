package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// An Ingest's plain writes — values whose program changed no storage and sent nothing — go
// to a BatchWriter State a pipeline at a time: their preSet middlewares, then one
// WriteBatch, then their postSet middlewares and one PublishBatch of their notifications,
// in row order. A write with storage changes or sends (CommitStorage) ends the pipeline
// before it and goes alone, so every write of an entity keeps its row's order.

// plainRun returns the end of the run of plain writes that starts at writes[i], at most the
// pipeline depth long; i itself when writes[i] is not plain or there are no batches.
func (e *Engine) plainRun(writes []ingested, i int) int {
	if e.batchWrites == nil || e.depth <= 1 {
		return i
	}
	j := i
	for j < len(writes) && j-i < e.depth {
		w := &writes[j]
		if w.res.Value.IsNull() || w.call.Invocation.effects() {
			break
		}
		j++
	}
	return j
}

// ingestPipeline writes a run of plain writes with one WriteBatch, counting in res what it
// wrote. It stops before the first write whose preSet middlewares fail (the writes before
// it are written); a write the State refuses does not stop the ones after it, already on
// their way, and every write the State took is finished (postSet, notification) and
// counted, whatever failed. It returns the error of the first write that failed, in row
// order.
//
// The batch is one State call (and one PublishBatch), bounded by the longest timeout of
// the features it writes: a feature with a short timeout must not fail the writes of the
// others beside it.
func (e *Engine) ingestPipeline(ctx context.Context, run []ingested, res *IngestResult) error {
	firstAt, first := len(run), error(nil)
	fail := func(i int, fqn string, err error) {
		if i < firstAt {
			firstAt, first = i, fmt.Errorf("%s %s: %w", OpUpdate, fqn, err)
		}
	}
	ready := make([]staged, 0, len(run))
	for i := range run {
		w := &run[i]
		if err := ctx.Err(); err != nil {
			if i < firstAt {
				firstAt, first = i, err
			}
			break
		}
		s, err := e.stagePlain(ctx, w)
		if err != nil {
			fail(i, w.p.f.FQN, err)
			if w.p.obs != nil {
				w.p.obs.Write(OpUpdate, s.res, err)
			}
			break
		}
		ready = append(ready, s)
	}
	if len(ready) == 0 {
		return first
	}

	writes := make([]Write, len(ready))
	timeout := time.Duration(0) // the longest timeout of the features written, if any is timed
	for i := range ready {
		writes[i] = ready[i].write()
		if p := ready[i].p; p.timed {
			timeout = max(timeout, p.f.Timeout)
		}
	}
	bctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		bctx, cancel = context.WithTimeout(ctx, timeout)
	}
	reports := e.batchWrites.WriteBatch(bctx, writes)
	cancel()
	if len(reports) != len(writes) {
		// A BatchWriter that breaks its contract: take nothing it said for granted.
		return errors.Join(first, fmt.Errorf("state: WriteBatch of %d writes reported %d", len(writes), len(reports)))
	}

	notes := make([]Notification, 0, len(ready))
	done := make([]int, 0, len(ready))   // the writes written, in row order
	errs := make([]error, 0, len(ready)) // done[k]'s postSet error, or nil
	for i := range ready {
		s := &ready[i]
		if err := reports[i].Err; err != nil {
			err = fmt.Errorf("state: %w", err)
			fail(i, s.p.f.FQN, err)
			if s.p.obs != nil {
				s.p.obs.Write(OpUpdate, s.res, err)
			}
			continue
		}
		pctx, cancel := e.stageContext(ctx, s.p, StagePostSet)
		n, err := e.postSet(pctx, s, reports[i].Written)
		cancel()
		res.Written++
		if s.res.Superseded() {
			res.Superseded++
		}
		if err != nil {
			fail(i, s.p.f.FQN, err)
		} else {
			notes = append(notes, n)
		}
		done, errs = append(done, i), append(errs, err)
	}
	var after error // what failed for all of them after the State: the notifier, the deadline
	if err := e.publishAll(ctx, notes, timeout); err != nil {
		after = &writtenError{fmt.Errorf("written, but not published for the historian: %w", err)}
	} else if err := ctx.Err(); err != nil {
		after = &writtenError{fmt.Errorf("written, but past the deadline: %w", err)}
	}
	for k, i := range done {
		s, err := &ready[i], errs[k]
		if err == nil && after != nil {
			err = after
			fail(i, s.p.f.FQN, err)
		}
		if s.p.obs != nil {
			s.p.obs.Write(OpUpdate, s.res, err)
		}
	}
	return first
}

// stagePlain runs a plain write's preSet middlewares, under its feature's timeout.
func (e *Engine) stagePlain(ctx context.Context, w *ingested) (staged, error) {
	ctx, cancel := e.stageContext(ctx, w.p, StagePreSet)
	defer cancel()
	return e.preSet(ctx, OpUpdate, w.p, w.res.Keys, w.ekeys, w.res.Value, w.res.Timestamp, e.now())
}

// stageContext bounds a write's middlewares of stage by its feature's timeout; ctx itself
// when the feature has none there.
func (e *Engine) stageContext(ctx context.Context, p *plan, stage Stage) (context.Context, context.CancelFunc) {
	if len(p.stages[stage]) == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.f.Timeout)
}

// publishAll publishes notes in order: with one PublishBatch when the notifier has it, else
// one Publish each. timeout (0: none) bounds the whole.
func (e *Engine) publishAll(ctx context.Context, notes []Notification, timeout time.Duration) error {
	if e.notifier == nil || len(notes) == 0 {
		return nil
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if e.publishes != nil {
		return e.publishes.PublishBatch(ctx, notes)
	}
	for _, n := range notes {
		if err := e.notifier.Publish(ctx, n); err != nil {
			return err
		}
	}
	return nil
}
