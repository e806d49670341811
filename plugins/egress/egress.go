// Package egress holds Osprey's egresses: destinations outside Osprey — a webhook, a Redis
// stream — that feature programs emit messages to (engine.Invocation.Emit), each applied as
// an Egress manifest (manifest.Egress) of a type registered here by name.
//
// Types register themselves from an init function, Caddy-style, and a binary makes them
// available by importing their packages, usually blank:
//
//	func init() { egress.Register("webhook", New) }
//
//	import _ "github.com/osprey-ml/osprey/plugins/egress/webhook"      // "webhook"
//	import _ "github.com/osprey-ml/osprey/plugins/egress/redisstream"  // "redis-stream"
//
// A type's Factory checks the manifest's spec.config when the egress is applied, so that a
// bad configuration (an unknown key, a URL that does not parse) is refused then, with an
// error naming the key (spec.config.url: …), rather than failing deliveries later.
//
// A Set holds the applied egresses: the registry loads an Egress manifest into it (Load,
// outside its lock), applies it (Swap) and deletes it (Delete), as it does plugins with
// host/extism.Set; the engine resolves the names programs emit to through it (Set.Egress,
// an engine.EgressResolver).
//
// # Delivery
//
// The engine's dispatcher delivers each message at least once: it calls Emit, which makes
// one attempt bounded by its context's deadline, and retries a failure with back-off (up to
// engine.Delivery.MaxAttempts) unless the error wraps engine.ErrPermanent. An egress
// therefore classifies its failures — permanent (the destination refused the message as
// such: another attempt would fail the same way) or not — and passes the message's ID
// (engine.EgressMessage.ID, stable across attempts) to destinations that deduplicate.
//
// All functions of the package are safe for concurrent use.
package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
)

// Egress is an egress of a registered type: it delivers messages (engine.Egress) and holds
// resources (clients, connections) that Close releases. Emit makes one attempt, bounded by
// its context's deadline, and returns an error wrapping engine.ErrPermanent when another
// attempt cannot succeed. It must be safe for concurrent use. A Set calls Close once, after
// the last Emit it let through has returned, and no Emit after it.
type Egress interface {
	engine.Egress
	io.Closer
}

// Factory creates an egress of one type from its configuration, checking it: an unknown
// key or a bad value is an error naming it (Config's getters' errors do), wrapping
// plugins.ErrInvalidConfig. ctx bounds the creation, not the Egress's life; a factory
// should not need the destination to be reachable (an egress restored when its destination
// is down must still apply).
type Factory func(ctx context.Context, cfg Config) (Egress, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register registers an egress type under name. It is meant to be called from an init
// function and panics if name is empty, contains white space or control characters, is
// already registered, or if f is nil.
func Register(name string, f Factory) {
	if f == nil {
		panic(fmt.Sprintf("egress: Register(%q) with a nil factory", name))
	}
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		panic(fmt.Sprintf("egress: cannot register the type %q: want a name without white space or control characters", name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic(fmt.Sprintf("egress: type %q registered twice", name))
	}
	factories[name] = f
}

// Types returns the names of the registered egress types, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New creates the egress e describes, with its type's factory, under policy. An unknown
// type is an error naming spec.type and wrapping plugins.ErrNotRegistered; the factory's
// errors (naming spec.config's keys) are returned wrapped with the egress's name and type.
func New(ctx context.Context, e *manifest.Egress, policy Policy) (Egress, error) {
	mu.RLock()
	f, ok := factories[e.Type]
	mu.RUnlock()
	if !ok {
		known := Types()
		msg := fmt.Sprintf("spec.type: unknown egress type %q", e.Type) + engine.DidYouMean(e.Type, known)
		list := "none"
		if len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		return nil, fmt.Errorf("egress %s: %s: %w (registered: %s)", e.FQN, msg, plugins.ErrNotRegistered, list)
	}
	eg, err := f(ctx, Config{FQN: e.FQN, Values: e.Config, Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("egress %s (%s): %w", e.FQN, e.Type, err)
	}
	if eg == nil {
		return nil, fmt.Errorf("egress %s (%s): the factory returned no Egress", e.FQN, e.Type)
	}
	return eg, nil
}

// Check reports whether e would apply under policy: its type is registered and its
// configuration passes the type's checks. It creates the egress and closes it at once,
// which contacts no destination (factories do not; see Factory).
func Check(ctx context.Context, e *manifest.Egress, policy Policy) error {
	eg, err := New(ctx, e, policy)
	if err != nil {
		return err
	}
	return eg.Close()
}

// Errors of the Set.
var (
	// ErrNotApplied: a program emits to an egress that is not applied (or no longer is).
	ErrNotApplied = errors.New("egress not applied")
	// ErrClosed: Emit on an egress that was replaced or deleted after it was resolved; the
	// engine retries the message, resolving the egress anew.
	ErrClosed = errors.New("egress closed")
)
