package memory

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// LoadStorage returns the address's storage values not expired as of now, and its version
// (the number of commits so far, "" before the first).
func (s *State) LoadStorage(_ context.Context, f *engine.Feature, keys string, now time.Time) (engine.StorageSnapshot, error) {
	if s.closed.Load() {
		return engine.StorageSnapshot{}, fmt.Errorf("memory: load storage %s: %w", f.FQN, ErrClosed)
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	snap := engine.StorageSnapshot{Values: map[string]engine.StoredValue{}}
	e := sh.get(f.FQN, keys)
	if e == nil {
		return snap, nil
	}
	if e.storageVersion > 0 {
		snap.Version = strconv.FormatUint(e.storageVersion, 10)
	}
	for name, sv := range e.storage {
		if sv.Expires.IsZero() || now.Before(sv.Expires) {
			snap.Values[name] = sv
		}
	}
	return snap, nil
}

// CommitStorage applies c under the entity's lock when the address's version is still
// c.Version and its sends fit in the mailbox (c.MaxMailbox): the value write first (as Update writes it; if it fails nothing is applied),
// then the storage's sets, clears and new expiries, and the mailbox's sends and
// cancellations (mailbox.go). A Blind commit skips the version.
func (s *State) CommitStorage(_ context.Context, f *engine.Feature, keys string, c engine.StorageCommit) (string, engine.Written, error) {
	var w engine.Written
	if s.closed.Load() {
		return "", w, fmt.Errorf("memory: commit storage %s: %w", f.FQN, ErrClosed)
	}
	if c.Write != nil {
		if err := s.checkUpdate(f, c.Write.Value); err != nil {
			return "", w, err
		}
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var version uint64
	if e := sh.get(f.FQN, keys); e != nil {
		version = e.storageVersion
	}
	if cur := versionText(version); cur != c.Version && !c.Blind {
		return "", w, fmt.Errorf("memory: commit storage %s: version %q, not %q: %w", f.FQN, cur, c.Version, engine.ErrConflict)
	}
	if c.MaxMailbox > 0 && len(c.Send) > 0 {
		// Deliveries only take messages out between this count and the enqueue below (the
		// commits of the address hold the shard's lock), so the count is an upper bound.
		s.mail.mu.Lock()
		n := s.mail.held(mailboxKey{f.FQN, keys}, c.Send, c.Cancel)
		s.mail.mu.Unlock()
		if n > c.MaxMailbox {
			return "", w, fmt.Errorf("memory: commit storage %s: %w: its %d sends would leave %d undelivered messages in the mailbox of %s (at most %d)",
				f.FQN, engine.ErrMailboxFull, len(c.Send), n, keys, c.MaxMailbox)
		}
	}
	if c.Write != nil {
		var err error
		if w, err = s.updateLocked(sh, f, keys, c.Write.Value, c.Write.Timestamp); err != nil {
			return "", w, err
		}
	}
	if len(c.Send) > 0 || len(c.Cancel) > 0 {
		s.mail.mu.Lock()
		s.mail.enqueue(mailboxKey{f.FQN, keys}, c.Send, c.Cancel)
		s.mail.mu.Unlock()
	}
	if c.Blind {
		return versionText(version), w, nil
	}
	e := sh.getOrCreate(f, keys)
	if e.storage == nil {
		e.storage = map[string]engine.StoredValue{}
	}
	for name, sv := range c.Set {
		e.storage[name] = sv
	}
	for _, name := range c.Clear {
		delete(e.storage, name)
	}
	for name, exp := range c.Touch {
		if sv, ok := e.storage[name]; ok {
			sv.Expires = exp
			e.storage[name] = sv
		}
	}
	e.storageVersion++
	return versionText(e.storageVersion), w, nil
}

func versionText(v uint64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(v, 10)
}

// checkUpdate checks what Update would refuse of v before anything is locked.
func (s *State) checkUpdate(f *engine.Feature, v engine.Value) error {
	switch {
	case f.Windowed():
		x, ok := v.Number()
		if !ok {
			return fmt.Errorf("memory: update %s: %w: got %s, want %s", f.FQN, engine.ErrTypeMismatch, v.Kind(), f.Primitive)
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("memory: window add %s: %w: %v is not a value", f.FQN, engine.ErrTypeMismatch, x)
		}
		return s.check("window add", f, true)
	case v.Kind() != engine.Kind(f.Primitive):
		return typeError("update", f, v)
	}
	return s.check("update", f, false)
}

// updateLocked writes v as Update does, under sh.mu held for writing.
func (s *State) updateLocked(sh *shard, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Written, error) {
	switch {
	case f.Windowed():
		x, _ := v.Number()
		return engine.Written{}, s.windowAddLocked(sh, f, keys, x, ts)
	case f.Primitive.IsList():
		return engine.Written{Value: s.appendLocked(sh, f, keys, v, ts)}, nil
	default:
		return s.setLocked(sh, f, keys, v, ts), nil
	}
}
