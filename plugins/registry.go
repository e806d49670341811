package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/osprey-ml/osprey/engine"
)

// ErrNotRegistered is wrapped by the error of a lookup of a name nobody registered.
var ErrNotRegistered = errors.New("not registered")

// StateFactory creates a state provider from its configuration. ctx bounds the creation
// (dialling a server, say), not the State's lifetime. The caller owns the State and closes it.
type StateFactory func(ctx context.Context, cfg Config) (engine.State, error)

// NotifierFactory creates a notifier from its configuration. ctx bounds the creation, not the
// Notifier's lifetime. The caller owns the Notifier and closes it.
type NotifierFactory func(ctx context.Context, cfg Config) (engine.Notifier, error)

// MiddlewareFactory creates a native middleware for one feature when the feature is applied.
// It validates ref.Config and ref.Stages against f and returns an error (naming the bad key
// or stage) when they do not fit, so that a bad manifest is refused at apply time rather
// than failing calls later. The Middleware it returns must be safe for concurrent use.
type MiddlewareFactory func(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error)

var (
	states      = newRegistry[StateFactory]("state provider")
	notifiers   = newRegistry[NotifierFactory]("notifier")
	middlewares = newRegistry[MiddlewareFactory]("native middleware")
)

// RegisterState registers a state provider under name. It is meant to be called from an
// init function and panics if name is empty, contains white space, is already registered,
// or if f is nil.
func RegisterState(name string, f StateFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterState(%q) with a nil factory", name))
	}
	states.register(name, f)
}

// NewState creates the state provider registered under name with cfg. An unknown name
// yields an error wrapping ErrNotRegistered that lists the registered names.
func NewState(ctx context.Context, name string, cfg Config) (engine.State, error) {
	f, err := states.lookup(name)
	if err != nil {
		return nil, err
	}
	st, err := f(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugins: state provider %q: %w", name, err)
	}
	if st == nil {
		return nil, fmt.Errorf("plugins: state provider %q: factory returned no State", name)
	}
	return st, nil
}

// StateNames returns the names of the registered state providers, sorted.
func StateNames() []string { return states.names() }

// RegisterNotifier registers a notifier under name. It panics like RegisterState.
func RegisterNotifier(name string, f NotifierFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterNotifier(%q) with a nil factory", name))
	}
	notifiers.register(name, f)
}

// NewNotifier creates the notifier registered under name with cfg. An unknown name yields
// an error wrapping ErrNotRegistered that lists the registered names.
func NewNotifier(ctx context.Context, name string, cfg Config) (engine.Notifier, error) {
	f, err := notifiers.lookup(name)
	if err != nil {
		return nil, err
	}
	n, err := f(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugins: notifier %q: %w", name, err)
	}
	if n == nil {
		return nil, fmt.Errorf("plugins: notifier %q: factory returned no Notifier", name)
	}
	return n, nil
}

// NotifierNames returns the names of the registered notifiers, sorted.
func NotifierNames() []string { return notifiers.names() }

// RegisterMiddleware registers a native middleware under name. It panics like RegisterState.
func RegisterMiddleware(name string, f MiddlewareFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterMiddleware(%q) with a nil factory", name))
	}
	middlewares.register(name, f)
}

// MiddlewareNames returns the names of the registered native middlewares, sorted.
func MiddlewareNames() []string { return middlewares.names() }

// ResolveMiddleware resolves a feature's reference to a native middleware: ref.Name among
// the registered ones, built by its factory for f. A reference to a Wasm middleware
// (ref.Module set) or to an unknown name yields an error wrapping ErrNotRegistered, so that a
// resolver combining several sources can fall through to the next one.
func ResolveMiddleware(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
	if ref.Module != "" {
		return nil, fmt.Errorf("plugins: middleware %q of %s is the Wasm module %q: %w as a native middleware", ref.Name, f.FQN, ref.Module, ErrNotRegistered)
	}
	factory, err := middlewares.lookup(ref.Name)
	if err != nil {
		return nil, fmt.Errorf("%w (used by %s)", err, f.FQN)
	}
	mw, err := factory(ctx, f, ref)
	if err != nil {
		return nil, fmt.Errorf("plugins: middleware %q of %s: %w", ref.Name, f.FQN, err)
	}
	if mw == nil {
		return nil, fmt.Errorf("plugins: middleware %q of %s: factory returned no Middleware", ref.Name, f.FQN)
	}
	return mw, nil
}

// Middlewares resolves native middlewares with ResolveMiddleware; hand it to the engine
// (engine.WithMiddlewareResolver) or to a resolver that also knows Wasm middlewares.
var Middlewares engine.MiddlewareResolver = engine.MiddlewareResolverFunc(ResolveMiddleware)

// registry maps names to values of one kind of plugin. It is safe for concurrent use.
type registry[T any] struct {
	kind string // what is registered, for messages: "state provider", …

	mu sync.RWMutex
	m  map[string]T
}

func newRegistry[T any](kind string) *registry[T] {
	return &registry[T]{kind: kind, m: make(map[string]T)}
}

// register adds v under name, panicking on a bad or duplicate name.
func (r *registry[T]) register(name string, v T) {
	if err := checkName(name); err != nil {
		panic(fmt.Sprintf("plugins: cannot register %s: %v", r.kind, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("plugins: %s %q registered twice", r.kind, name))
	}
	r.m[name] = v
}

// lookup returns the value registered under name, or an error wrapping ErrNotRegistered
// that lists the registered names.
func (r *registry[T]) lookup(name string) (T, error) {
	r.mu.RLock()
	v, ok := r.m[name]
	r.mu.RUnlock()
	if !ok {
		known := "none"
		if names := r.names(); len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		return v, fmt.Errorf("plugins: %s %q: %w (registered: %s)", r.kind, name, ErrNotRegistered, known)
	}
	return v, nil
}

// names returns the registered names, sorted.
func (r *registry[T]) names() []string {
	r.mu.RLock()
	names := make([]string, 0, len(r.m))
	for name := range r.m {
		names = append(names, name)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	return names
}

// checkName accepts any non-empty name without white space or control characters.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("name %q has white space or a control character at offset %d", name, i)
	}
	return nil
}
