package egress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
)

// Set is the egresses a server has applied, by FQN. The registry loads an Egress manifest
// (Load) outside its lock, applies it (Swap) and removes it (Delete); the engine resolves
// the names programs emit to (Egress, an engine.EgressResolver) at every delivery, so that a
// replaced egress serves every message from its next attempt on. It is safe for concurrent
// use.
//
// A program names an egress by its FQN, "namespace.name" ("fraud.alerts"), or by a bare
// name in the set's default namespace (the engine's: "alerts" is "default.alerts"), as
// engine.ParseFQN reads it — the sending feature's own namespace plays no part.
type Set struct {
	policy    Policy
	defaultNS string
	log       *slog.Logger

	mu      sync.RWMutex
	applied map[string]*Loaded
}

// NewSet returns an empty Set that loads egresses under policy. defaultNamespace is the
// namespace of a bare egress name, the engine's (engine.DefaultNamespace unless
// engine.WithDefaultNamespace says otherwise). log receives what cannot be returned (an
// egress that fails to close); nil is slog.Default().
func NewSet(policy Policy, defaultNamespace string, log *slog.Logger) *Set {
	if log == nil {
		log = slog.Default()
	}
	return &Set{policy: policy, defaultNS: defaultNamespace, log: log, applied: map[string]*Loaded{}}
}

// Policy returns the policy the set loads egresses under.
func (s *Set) Policy() Policy { return s.policy }

var _ engine.EgressResolver = (*Set)(nil)

// Loaded is an egress Set.Load created from its manifest: applied to its Set by Swap, or
// not yet. It is the engine.Egress the Set resolves names to. Close releases it once the
// Emits running on it have returned; an Emit after Close fails with ErrClosed (which the
// engine retries, resolving the name anew).
type Loaded struct {
	fqn   string
	typ   string
	eg    Egress
	log   *slog.Logger
	mu    sync.Mutex
	busy  int  // Emits running
	shut  bool // Close was called
	freed bool // eg was closed
}

// FQN returns the egress's name.
func (l *Loaded) FQN() string { return l.fqn }

// Type returns the egress's type.
func (l *Loaded) Type() string { return l.typ }

// Emit delivers m with the egress, unless it was closed.
func (l *Loaded) Emit(ctx context.Context, m engine.EgressMessage) error {
	l.mu.Lock()
	if l.shut {
		l.mu.Unlock()
		return fmt.Errorf("egress %s: %w: it was replaced or deleted while the message was on its way", l.fqn, ErrClosed)
	}
	l.busy++
	l.mu.Unlock()
	defer l.done()
	return l.eg.Emit(ctx, m)
}

// done ends an Emit, closing the egress when it was the last one after Close.
func (l *Loaded) done() {
	l.mu.Lock()
	l.busy--
	free := l.shut && l.busy == 0 && !l.freed
	if free {
		l.freed = true
	}
	l.mu.Unlock()
	if free {
		if err := l.eg.Close(); err != nil {
			l.log.Warn("egress: closing a replaced or deleted egress failed", "fqn", l.fqn, "type", l.typ, "error", err)
		}
	}
}

// Close closes the egress: at once when no Emit is running on it (returning its Close's
// error), else when the last one returns (logging the error, if any). Closing twice does
// nothing.
func (l *Loaded) Close() error {
	l.mu.Lock()
	if l.shut {
		l.mu.Unlock()
		return nil
	}
	l.shut = true
	free := l.busy == 0
	l.freed = free
	l.mu.Unlock()
	if free {
		return l.eg.Close()
	}
	return nil
}

// Load creates the egress e describes under the set's policy (New), without applying it.
// The result is a *Loaded (an io.Closer so that the registry, which knows no egress, can
// hold it): apply it with Swap, or Close it. Errors name the field at fault (spec.type,
// spec.config.url, …).
func (s *Set) Load(ctx context.Context, e *manifest.Egress) (io.Closer, error) {
	eg, err := New(ctx, e, s.policy)
	if err != nil {
		return nil, err
	}
	return &Loaded{fqn: e.FQN, typ: e.Type, eg: eg, log: s.log}, nil
}

// Swap makes loaded (a *Loaded from this set's Load) the egress fqn names, and returns the
// one it replaced (nil if none), which it does not close: the caller closes it once the
// change is final, or swaps it back. It panics when loaded is nil, not a *Loaded, or
// loaded for another name.
func (s *Set) Swap(fqn string, loaded io.Closer) (previous io.Closer) {
	l, ok := loaded.(*Loaded)
	if !ok || l == nil {
		panic(fmt.Sprintf("egress: Swap(%q) of %T, not a *Loaded of this package", fqn, loaded))
	}
	if l.fqn != fqn {
		panic(fmt.Sprintf("egress: Swap(%q) of the egress loaded as %q", fqn, l.fqn))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.applied[fqn]
	s.applied[fqn] = l
	if old == nil {
		return nil
	}
	return old
}

// Delete removes the egress fqn names and returns it (nil if none), not closed: the caller
// closes it, or swaps it back.
func (s *Set) Delete(fqn string) (previous io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.applied[fqn]
	delete(s.applied, fqn)
	if old == nil {
		return nil
	}
	return old
}

// Egress resolves a name a program emits to (engine.EgressResolver): "namespace.name", or a
// bare name in the set's default namespace. A name that does not parse, or names no applied
// egress, is an error (wrapping ErrNotApplied for the latter).
func (s *Set) Egress(name string) (engine.Egress, error) {
	fqn, err := engine.ParseFQN(name, s.defaultNS)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	l := s.applied[fqn]
	s.mu.RUnlock()
	if l == nil {
		return nil, fmt.Errorf("%w: egress %s is not applied (apply its Egress manifest first)", ErrNotApplied, fqn)
	}
	return l, nil
}

// Names returns the FQNs of the applied egresses, sorted.
func (s *Set) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.applied))
}

// Close closes every applied egress and empties the set. Close it after the engine, whose
// dispatcher may still be emitting.
func (s *Set) Close() {
	s.mu.Lock()
	applied := s.applied
	s.applied = map[string]*Loaded{}
	s.mu.Unlock()
	for _, l := range applied {
		if err := l.Close(); err != nil {
			s.log.Warn("egress: closing failed", "fqn", l.fqn, "type", l.typ, "error", err)
		}
	}
}
