package redis

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

var _ engine.StorageState = (*State)(nil)

// LoadStorage returns the address's storage values not expired as of now, and its version,
// with one HGETALL of its hash (:s).
func (s *State) LoadStorage(ctx context.Context, f *engine.Feature, keys string, now time.Time) (engine.StorageSnapshot, error) {
	fields, err := s.c.HGetAll(ctx, entityTag(f.FQN, keys)+sufStorage).Result()
	if err != nil {
		return engine.StorageSnapshot{}, wrap("load storage", f, err)
	}
	snap := engine.StorageSnapshot{Values: make(map[string]engine.StoredValue, len(fields))}
	for name, raw := range fields {
		if name == storageVersion {
			snap.Version = raw
			continue
		}
		sv, err := unpackStored(raw)
		if err != nil {
			return engine.StorageSnapshot{}, wrap("load storage", f, fmt.Errorf("storage %q: %w", name, err))
		}
		if sv.Expires.IsZero() || now.Before(sv.Expires) {
			snap.Values[name] = sv
		}
	}
	return snap, nil
}

// CommitStorage applies c in one script (commitStorageScript) when the address's version is
// still c.Version and its sends fit in the mailbox (c.MaxMailbox, else
// engine.ErrMailboxFull): the value write first, by the same Lua Set, Append or WindowAdd run (if
// the State refuses it, nothing is applied), then the storage's sets, clears and new
// expiries, a new version, and the hash's TTL, and the mailbox's cancellations and sends
// (mailbox.go; on a Cluster the index entry is added after the script, and a failure there
// does not fail the commit, which applied). A version that moved is engine.ErrConflict; a
// Blind commit neither compares nor moves it.
//
// Versions are random tokens, not counters: the hash is forgotten when its last value
// expires or is cleared (the version then reads "" again), and a counter starting over
// could hand a commit based on a snapshot from before that the version it expects.
func (s *State) CommitStorage(ctx context.Context, f *engine.Feature, keys string, c engine.StorageCommit) (string, engine.Written, error) {
	var w engine.Written
	now := time.Now()
	tag := entityTag(f.FQN, keys)
	ks := []string{tag + sufStorage, tag + sufMailbox, tag + sufMessages, tag + sufTokens}
	args := []any{c.Version, newVersion(c.Version), tsHex(now.UnixNano()), now.UnixMilli()}

	var op string
	if c.Write != nil {
		v, ts := c.Write.Value, c.Write.Timestamp
		var wargs []any
		switch {
		case f.Windowed():
			x, ok := v.Number()
			if !ok {
				return "", w, fmt.Errorf("redis: commit storage %s: %w: got %s, want %s", f.FQN, engine.ErrTypeMismatch, v.Kind(), f.Primitive)
			}
			var err error
			if wargs, err = windowAddArgs(f, x, ts, now); err != nil {
				return "", w, wrap("commit storage", f, err)
			}
			op, ks = "w", append(ks, tag+sufWindow)
		case v.Kind() != engine.Kind(f.Primitive):
			return "", w, typeError("commit storage", f, v)
		case f.Primitive.IsList():
			op, ks, wargs = "a", append(ks, tag+sufValue, tag+sufPrev), appendArgs(f, v, ts, now)
		default:
			op, ks, wargs = "s", append(ks, tag+sufValue, tag+sufPrev), setArgs(f, v, ts, now)
		}
		args = append(append(args, op, len(wargs), blindArg(c.Blind)), wargs...)
	} else {
		args = append(args, "", 0, blindArg(c.Blind))
	}
	idx := ""
	if !s.cluster && (len(c.Send) > 0 || len(c.Cancel) > 0) {
		idx = member(f.FQN, keys)
		ks = append(ks, mailIndex)
	}
	args, err := appendMailboxArgs(args, idx, c)
	if err != nil {
		return "", w, wrap("commit storage", f, err)
	}

	args = append(args, len(c.Set))
	for _, name := range slices.Sorted(maps.Keys(c.Set)) {
		packed, err := packStored(c.Set[name])
		if err != nil {
			return "", w, fmt.Errorf("redis: commit storage %s: storage %q: %w", f.FQN, name, err)
		}
		args = append(args, name, packed)
	}
	args = append(args, len(c.Clear))
	for _, name := range c.Clear {
		args = append(args, name)
	}
	args = append(args, len(c.Touch))
	for _, name := range slices.Sorted(maps.Keys(c.Touch)) {
		args = append(args, name, expiryHex(c.Touch[name]))
	}

	r, err := commitStorageScript.Run(ctx, s.c, ks, args...).StringSlice()
	if err != nil {
		return "", w, wrap("commit storage", f, err)
	}
	if s.cluster && len(c.Send) > 0 && len(r) >= 2 && r[0] == "k" {
		// The commit applied: an error now would have the caller run it again, applying it
		// twice. A mailbox whose index entry is lost so is the sweep's to find, as one of a
		// process that died right here.
		_ = s.indexSends(ctx, f, keys, c.Send, now)
	}
	switch {
	case len(r) == 2 && r[0] == "c":
		return "", w, fmt.Errorf("redis: commit storage %s: version %q, not %q: %w", f.FQN, r[1], c.Version, engine.ErrConflict)
	case len(r) == 2 && r[0] == "f":
		return "", w, fmt.Errorf("redis: commit storage %s: %w: its %d sends would leave %s undelivered messages in the mailbox of %s (at most %d)",
			f.FQN, engine.ErrMailboxFull, len(c.Send), r[1], keys, c.MaxMailbox)
	case len(r) == 2 && r[0] == "o":
		x, _ := c.Write.Value.Number()
		return "", w, wrap("commit storage", f, windowAdded(x, r))
	case len(r) < 2 || r[0] != "k":
		return "", w, wrap("commit storage", f, fmt.Errorf("%w: script replied %q", errCorrupt, r))
	}
	version, wr := r[1], r[2:]
	switch op {
	case "s":
		w, err = setWritten(c.Write.Value, wr)
	case "a":
		w.Value, err = appended(f, wr)
	}
	if err != nil {
		// The commit applied; only the write's report could not be read.
		return "", engine.Written{}, wrap("commit storage", f, err)
	}
	return version, w, nil
}

// newVersion returns a random version token, other than old.
func newVersion(old string) string {
	for {
		if v := strconv.FormatUint(rand.Uint64(), 36); v != old {
			return v
		}
	}
}
