package redis

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
)

// writeKind is which script a write runs.
type writeKind uint8

const (
	writeSet writeKind = iota
	writeAppend
	writeIncr
	writeWindow
)

// scriptWrite is the script call one write makes, and what its reply is read with.
type scriptWrite struct {
	kind   writeKind
	op     string // for errors: "set", "append", "incr", "window add"
	f      *engine.Feature
	entity string       // the entity's tag (entityTag)
	v      engine.Value // the value written (Set's Written.Value, Incr's by)
	script *goredis.Script
	keys   []string
	args   []any
}

// planWrite checks w as its single call (engine.Write.Apply) does and returns the script
// call that makes it at now, or the error that call returns without sending anything.
func planWrite(w engine.Write, now time.Time) (scriptWrite, error) {
	tag := entityTag(w.Feature.FQN, w.Keys)
	c, err := planScript(w, tag, now)
	c.entity = tag
	return c, err
}

// planScript is planWrite but for the entity's tag, which it is given.
func planScript(w engine.Write, tag string, now time.Time) (scriptWrite, error) {
	f, v, ts := w.Feature, w.Value, w.Timestamp
	switch {
	case f.Windowed():
		x, ok := v.Number()
		if !ok { // as Update reports it (engine.UpdateVia)
			return scriptWrite{}, typeError("update", f, v)
		}
		args, err := windowAddArgs(f, x, ts, now)
		if err != nil {
			return scriptWrite{}, wrap("window add", f, err)
		}
		return scriptWrite{kind: writeWindow, op: "window add", f: f, v: v, script: windowAddScript,
			keys: []string{tag + sufWindow}, args: args}, nil
	case w.Op == engine.OpIncr:
		return planIncr(f, tag, v, ts, now)
	case w.Op == engine.OpAppend || w.Op == engine.OpUpdate && f.Primitive.IsList():
		if !f.Primitive.IsList() {
			return scriptWrite{}, fmt.Errorf("redis: append %s: %w: the feature is %s, not a list", f.FQN, engine.ErrUnsupported, f.Primitive)
		}
		if v.Kind() != engine.Kind(f.Primitive) {
			return scriptWrite{}, typeError("append", f, v)
		}
		return scriptWrite{kind: writeAppend, op: "append", f: f, v: v, script: appendScript,
			keys: []string{tag + sufValue, tag + sufPrev}, args: appendArgs(f, v, ts, now)}, nil
	default: // OpSet, and OpUpdate of a scalar
		if v.Kind() != engine.Kind(f.Primitive) {
			return scriptWrite{}, typeError("set", f, v)
		}
		return scriptWrite{kind: writeSet, op: "set", f: f, v: v, script: setScript,
			keys: []string{tag + sufValue, tag + sufPrev}, args: setArgs(f, v, ts, now)}, nil
	}
}

// planIncr is planWrite of an Incr of by.
func planIncr(f *engine.Feature, tag string, by engine.Value, ts, now time.Time) (scriptWrite, error) {
	if !f.Primitive.IsNumeric() {
		return scriptWrite{}, fmt.Errorf("redis: incr %s: %w: %w: the feature is %s, not int or float", f.FQN, engine.ErrUnsupported, engine.ErrTypeMismatch, f.Primitive)
	}
	if by.Kind() != engine.Kind(f.Primitive) {
		return scriptWrite{}, typeError("incr", f, by)
	}
	if x := by.Float(); math.IsInf(x, 0) || math.IsNaN(x) {
		return scriptWrite{}, fmt.Errorf("redis: incr %s: %w: %v is not a finite float", f.FQN, engine.ErrOverflow, x)
	}
	isInt := "0"
	if f.Primitive == engine.PrimitiveInt {
		isInt = "1"
	}
	keep, versions, over := retention(f)
	return scriptWrite{kind: writeIncr, op: "incr", f: f, v: by, script: incrScript,
		keys: []string{tag + sufValue, tag + sufPrev, tag + sufScratch},
		args: []any{kindByte(f.Primitive), tsHex(ts.UnixNano()), encodeValue(by),
			tsHex(ts.UnixNano() - int64(f.Staleness)), versions, ms(keep), ms(over), now.UnixMilli(), isInt}}, nil
}

// read turns the script's reply r (or its error) into the write's report, as the single
// call reports it.
func (c *scriptWrite) read(r []string, err error) (engine.Written, error) {
	if err != nil {
		return engine.Written{}, wrap(c.op, c.f, err)
	}
	var w engine.Written
	switch c.kind {
	case writeSet:
		w, err = setWritten(c.v, r)
	case writeAppend:
		w.Value, err = appended(c.f, r)
	case writeIncr:
		w.Value, err = incremented(c.f, c.v, r)
	case writeWindow:
		x, _ := c.v.Number()
		err = windowAdded(x, r)
	}
	if err != nil {
		return engine.Written{}, wrap(c.op, c.f, err)
	}
	return w, nil
}

// incremented decodes incrScript's reply r to an Incr of by: the sum, or the overflow it
// refused.
func incremented(f *engine.Feature, by engine.Value, r []string) (engine.Value, error) {
	switch {
	case len(r) == 2 && r[0] == "o":
		return engine.Null, fmt.Errorf("%w: %s + %s does not fit the feature's type", engine.ErrOverflow, r[1], encodeValue(by))
	case len(r) != 3:
		return engine.Null, fmt.Errorf("%w: script replied %d values", errCorrupt, len(r))
	}
	return decodeValue(f.Primitive, r[2])
}

// setArgs returns setScript's ARGV for a Set of v at ts, at now.
func setArgs(f *engine.Feature, v engine.Value, ts, now time.Time) []any {
	keep, versions, over := retention(f)
	return []any{kindByte(f.Primitive), tsHex(ts.UnixNano()), encodeValue(v),
		tsHex(now.UnixNano() - int64(keep)), tsHex(now.UnixNano() - int64(over)), versions,
		ms(keep), ms(over), now.UnixMilli()}
}

// setWritten turns setScript's reply r to a Set of v into its Written.
func setWritten(v engine.Value, r []string) (engine.Written, error) {
	w := engine.Written{Value: v}
	if len(r) == 3 && r[0] == "s" {
		cur, err := parseTsHex(r[1])
		if err != nil {
			return engine.Written{}, err
		}
		w.Superseded, w.Current, w.Kept = true, time.Unix(0, cur).UTC(), r[2] == "1"
	}
	return w, nil
}

// appendArgs returns appendScript's ARGV for an Append of v at ts, at now.
func appendArgs(f *engine.Feature, v engine.Value, ts, now time.Time) []any {
	keep, versions, over := retention(f)
	return []any{kindByte(f.Primitive), tsHex(ts.UnixNano()), encodeValue(v),
		tsHex(ts.UnixNano() - int64(f.Staleness)), versions, ms(keep), ms(over), now.UnixMilli()}
}

// appended decodes the list appendScript replied (r).
func appended(f *engine.Feature, r []string) (engine.Value, error) {
	if len(r) != 2 {
		return engine.Null, fmt.Errorf("%w: script replied %d values", errCorrupt, len(r))
	}
	return decodeValue(f.Primitive, r[1])
}

// windowAddArgs returns windowAddScript's ARGV for a WindowAdd of x at ts, at now, or the
// error refusing it: x not finite (engine.ErrTypeMismatch), or its bucket expired
// (engine.ErrOutOfWindow).
func windowAddArgs(f *engine.Feature, x float64, ts, now time.Time) ([]any, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil, fmt.Errorf("%w: %v is not a value", engine.ErrTypeMismatch, x)
	}
	id := engine.BucketID(ts, f.Granularity)
	keep := firstKept(now, f)
	if id < keep {
		return nil, fmt.Errorf("%w: bucket of %s expired", engine.ErrOutOfWindow, ts.UTC().Format(time.RFC3339Nano))
	}
	exp := engine.BucketExpiry(id, f.Staleness, f.Granularity)
	return []any{idBytes(id), strconv.FormatFloat(x, 'g', -1, 64), idBytes(ts.UnixNano()), idBytes(keep),
		exp.Add(time.Millisecond - 1).UnixMilli()}, nil
}

// windowAdded reports the overflow windowAddScript's reply r refuses, or nil.
func windowAdded(x float64, r []string) error {
	if len(r) == 2 && r[0] == "o" {
		return fmt.Errorf("%w: the bucket's sum %s + %v is not a finite float", engine.ErrOverflow, r[1], x)
	}
	return nil
}

// wrapped is wrap for an error that may be nil.
func wrapped(op string, f *engine.Feature, err error) error {
	if err == nil {
		return nil
	}
	return wrap(op, f, err)
}

// WriteBatch makes many writes in one round trip (engine.BatchWriter): the EVALSHA of the
// script each single call runs, all in one pipeline, in the batch's order. Redis runs a
// connection's commands in the order sent, and on a Cluster go-redis sends each node its
// part of the pipeline in order too; every key of an entity is in one hash slot, so the
// writes of one entity apply in the batch's order. A write its single call would refuse
// fails alone, without a command. A server that lost its scripts (restarted, SCRIPT FLUSH)
// answers NOSCRIPT without running them; those writes are sent again, in order, with EVAL,
// which loads the script — unless a later write of the same entity did run (the script
// was loaded again in between), in which case the write fails instead of landing out of
// order. See RATIONALE.md, "Ingest pipelined".
func (s *State) WriteBatch(ctx context.Context, writes []engine.Write) []engine.WriteReport {
	out := make([]engine.WriteReport, len(writes))
	calls := make([]scriptWrite, len(writes))
	cmds := make([]*goredis.Cmd, len(writes))
	now := time.Now()
	pipe := s.c.Pipeline()
	for i, w := range writes {
		c, err := planWrite(w, now)
		if err != nil {
			out[i].Err = err
			continue
		}
		calls[i] = c
		cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if pipe.Len() == 0 {
		return out
	}
	// Exec's error is the first failed command's; each command carries its own.
	_, _ = pipe.Exec(ctx)
	lost := make([]error, len(cmds)) // writes not sent again (see again)
	if again := s.again(ctx, calls, cmds, lost); again != nil {
		_, _ = again.Exec(ctx)
	}
	for i, cmd := range cmds {
		switch {
		case cmd == nil:
		case lost[i] != nil:
			out[i].Err = wrap(calls[i].op, calls[i].f, lost[i])
		default:
			r, err := cmd.StringSlice()
			out[i].Written, out[i].Err = calls[i].read(r, err)
		}
	}
	return out
}

// again queues, on a new pipeline it returns (nil: none needed), an EVAL of each write the
// server answered NOSCRIPT — it lost its scripts (restarted, SCRIPT FLUSH) and ran none of
// them — replacing its command in cmds. Only when no later write of the same entity ran in
// the first pipeline (another client may have loaded the script in between): sending it
// again then would apply it after that later one. Such a write is not sent again and its
// error goes in lost.
func (s *State) again(ctx context.Context, calls []scriptWrite, cmds []*goredis.Cmd, lost []error) goredis.Pipeliner {
	if !slices.ContainsFunc(cmds, func(c *goredis.Cmd) bool { return c != nil && goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") }) {
		return nil
	}
	ran := map[string]bool{} // entities with a later write that ran, or may have
	resend := make([]bool, len(cmds))
	for i := len(cmds) - 1; i >= 0; i-- {
		cmd := cmds[i]
		if cmd == nil {
			continue
		}
		entity := calls[i].entity
		switch {
		case !goredis.HasErrorPrefix(cmd.Err(), "NOSCRIPT"):
			ran[entity] = true
		case ran[entity]:
			lost[i] = fmt.Errorf("the server lost its scripts during the batch and ran a later write of the entity: not sent again, so that the entity's writes stay in order: %w", cmd.Err())
		default:
			resend[i] = true
		}
	}
	pipe := s.c.Pipeline()
	for i, ok := range resend {
		if ok {
			cmds[i] = calls[i].script.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
		}
	}
	if pipe.Len() == 0 {
		return nil
	}
	return pipe
}
