package extism

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
)

// ErrNotApplied: a feature names a plugin, or a function of one, that is not applied (or
// no longer provides the function in that role).
var ErrNotApplied = errors.New("plugin not applied")

// Set is the plugins a server has applied, by FQN, and what features name of them: their
// middlewares (spec.middlewares[].plugin), encodings (a selector's [name]) and connectors
// (spec.builder.plugin). The registry loads a plugin (Load) outside its lock and applies it
// (Swap); what features resolve looks the plugin up at every call, so that a replaced plugin
// serves every feature naming it from its next call on. It is safe for concurrent use.
type Set struct {
	policy    Policy
	defaultNS string
	log       *slog.Logger

	mu      sync.RWMutex
	applied map[string]*Loaded
}

// Loaded is a plugin Set.Load loaded from its manifest: applied to its Set by Swap, or not
// yet. Close releases it (Plugin.Close: calls running finish first).
type Loaded struct {
	fqn    string
	roles  map[string]manifest.PluginRole
	plugin *Plugin
}

// Close closes the loaded plugin.
func (l *Loaded) Close() error { return l.plugin.Close(context.Background()) }

// Plugin returns the loaded plugin.
func (l *Loaded) Plugin() *Plugin { return l.plugin }

// NewSet returns an empty Set that loads plugins under policy. defaultNamespace is the
// namespace of a bare encoding name ([mask] is the plugin <defaultNamespace>.mask), the
// engine's. log receives the plugins' log lines (nil: slog.Default()).
func NewSet(policy Policy, defaultNamespace string, log *slog.Logger) *Set {
	if log == nil {
		log = slog.Default()
	}
	return &Set{policy: policy, defaultNS: defaultNamespace, log: log, applied: map[string]*Loaded{}}
}

// Policy returns the policy the set loads plugins under.
func (s *Set) Policy() Policy { return s.policy }

// Load loads p with its module's bytes, checked against the set's policy and compiled,
// without applying it. The result is a *Loaded (an io.Closer so that the registry, which
// knows no plugin host, can hold it): apply it with Swap, or Close it.
func (s *Set) Load(ctx context.Context, p *manifest.Plugin, module []byte) (io.Closer, error) {
	l, err := s.load(ctx, p, module)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Set) load(ctx context.Context, p *manifest.Plugin, module []byte) (*Loaded, error) {
	spec := SpecOf(p, module)
	pl, err := Load(ctx, s.policy, spec, s.log)
	if err != nil {
		return nil, err
	}
	roles := make(map[string]manifest.PluginRole, len(p.Functions))
	for _, fn := range p.Functions {
		roles[fn.Name] = fn.Role
	}
	return &Loaded{fqn: p.FQN, roles: roles, plugin: pl}, nil
}

// SpecOf is the Spec of a Plugin manifest with its module's bytes.
func SpecOf(p *manifest.Plugin, module []byte) Spec {
	spec := Spec{Name: p.FQN, Module: module, Config: maps.Clone(p.Config), AllowedHosts: slices.Clone(p.AllowedHosts),
		Limits: Limits{Timeout: p.Limits.Timeout, MemoryPages: p.Limits.MemoryPages,
			MaxHTTPResponseBytes: p.Limits.HTTPResponseBytes, MaxOutputBytes: p.Limits.OutputBytes}}
	for _, fn := range p.Functions {
		spec.Functions = append(spec.Functions, fn.Name)
	}
	return spec
}

// Swap makes loaded (from this set's Load) the plugin its FQN names, or, with loaded nil,
// removes fqn; it returns the plugin it replaced or removed (nil if none), which it does not
// close: the caller closes it once the change is final, or swaps it back.
func (s *Set) Swap(fqn string, loaded io.Closer) (previous io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.applied[fqn]
	if loaded == nil {
		delete(s.applied, fqn)
	} else {
		l := loaded.(*Loaded)
		if l.fqn != fqn {
			panic(fmt.Sprintf("extism: Swap(%q) of the plugin loaded as %q", fqn, l.fqn))
		}
		s.applied[fqn] = l
	}
	if !had {
		return nil
	}
	return old
}

// Close closes every applied plugin and empties the set.
func (s *Set) Close() {
	s.mu.Lock()
	applied := s.applied
	s.applied = map[string]*Loaded{}
	s.mu.Unlock()
	for _, l := range applied {
		l.Close()
	}
}

// lookup returns the applied plugin fqn names, with fn of role when fn is not "".
func (s *Set) lookup(fqn, fn string, role manifest.PluginRole) (*Loaded, error) {
	s.mu.RLock()
	l := s.applied[fqn]
	s.mu.RUnlock()
	if l == nil {
		return nil, fmt.Errorf("%w: plugin %s is not applied (apply its Plugin manifest first)", ErrNotApplied, fqn)
	}
	if fn == "" {
		return l, nil
	}
	switch got, ok := l.roles[fn]; {
	case !ok:
		return nil, fmt.Errorf("%w: plugin %s has no function %q (it declares %s)", ErrNotApplied, fqn, fn, l.functions())
	case role != "" && got != role:
		return nil, fmt.Errorf("%w: plugin %s: function %q is declared with role %s, not %s", ErrNotApplied, fqn, fn, got, role)
	}
	return l, nil
}

// functions lists l's functions with their roles, for errors.
func (l *Loaded) functions() string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(l.roles)) {
		out = append(out, name+" ("+string(l.roles[name])+")")
	}
	return strings.Join(out, ", ")
}

// Call runs function fn of the applied plugin fqn on input (osprey plugin call): any
// declared function, whatever its role.
func (s *Set) Call(ctx context.Context, fqn, fn string, input []byte) ([]byte, error) {
	l, err := s.lookup(fqn, fn, "")
	if err != nil {
		return nil, err
	}
	return l.plugin.Call(ctx, fn, input)
}

// Resolver returns a middleware resolver that resolves the references naming a plugin
// (MiddlewareRef.Plugin) to the plugin's function, checked to be a middleware when the
// feature is applied and looked up at every call, and passes the others to next.
func (s *Set) Resolver(next engine.MiddlewareResolver) engine.MiddlewareResolver {
	return engine.MiddlewareResolverFunc(func(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		if ref.Plugin == "" {
			if next == nil {
				return nil, fmt.Errorf("%w: middleware %q: no resolver configured", engine.ErrUnsupported, ref.Name)
			}
			return next.ResolveMiddleware(ctx, f, ref)
		}
		if _, err := s.lookup(ref.Plugin, ref.Function, manifest.PluginRoleMiddleware); err != nil {
			return nil, err
		}
		fqn, fn, config := ref.Plugin, ref.Function, maps.Clone(ref.Config)
		return func(ctx context.Context, call *engine.Call, v engine.Value) (engine.Value, error) {
			l, err := s.lookup(fqn, fn, manifest.PluginRoleMiddleware)
			if err != nil {
				return engine.Value{}, err
			}
			return l.plugin.middleware(ctx, fn, f, config, call, v)
		}, nil
	})
}

// Encoders returns an encoding resolver that resolves what next does not know to a plugin:
// [name] is the plugin name in the set's default namespace, [namespace.name] names it in
// full; the plugin must declare exactly one encoder function.
func (s *Set) Encoders(next engine.EncoderResolver) engine.EncoderResolver {
	return encoders{s: s, next: next}
}

type encoders struct {
	s    *Set
	next engine.EncoderResolver
}

func (r encoders) Encoder(name string) (engine.Encoder, error) {
	var nextErr error
	if r.next != nil && !strings.Contains(name, ".") {
		enc, err := r.next.Encoder(name)
		if err == nil {
			return enc, nil
		}
		nextErr = err
	}
	fqn := name
	if !strings.Contains(name, ".") {
		fqn = r.s.defaultNS + "." + name
	}
	l, err := r.s.lookup(fqn, "", "")
	if err != nil {
		if nextErr != nil {
			return nil, fmt.Errorf("%w; nor is %s an applied plugin", nextErr, fqn)
		}
		return nil, err
	}
	fn, err := l.encoder()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, v engine.Value) (engine.Value, error) {
		l, err := r.s.lookup(fqn, "", "")
		if err != nil {
			return engine.Value{}, err
		}
		if l.roles[fn] != manifest.PluginRoleEncoder {
			if fn, err = l.encoder(); err != nil {
				return engine.Value{}, err
			}
		}
		return l.plugin.encode(ctx, fn, "", nil, v)
	}, nil
}

// encoder returns l's one encoder function.
func (l *Loaded) encoder() (string, error) {
	var fns []string
	for name, role := range l.roles {
		if role == manifest.PluginRoleEncoder {
			fns = append(fns, name)
		}
	}
	switch len(fns) {
	case 1:
		return fns[0], nil
	case 0:
		return "", fmt.Errorf("%w: plugin %s declares no encoder function (it declares %s)", ErrNotApplied, l.fqn, l.functions())
	}
	slices.Sort(fns)
	return "", fmt.Errorf("%w: plugin %s declares several encoder functions (%s): an encoding names a plugin with one", ErrNotApplied, l.fqn, strings.Join(fns, ", "))
}

// Programs returns a program loader that loads the features of builder kind plugin
// (engine.BuilderPlugin: a plugin's connector, checked when the feature is applied and
// looked up at every run) and passes the others to next.
func (s *Set) Programs(next engine.ProgramLoader) engine.ProgramLoader {
	return programs{s: s, next: next}
}

type programs struct {
	s    *Set
	next engine.ProgramLoader
}

func (p programs) LoadProgram(ctx context.Context, f *engine.Feature) (engine.Program, error) {
	if f.Builder.Kind != engine.BuilderPlugin {
		if p.next == nil {
			return nil, fmt.Errorf("%w: no program runtime for builder %q", engine.ErrUnsupported, f.Builder.Kind)
		}
		return p.next.LoadProgram(ctx, f)
	}
	fqn, fn := f.Builder.Plugin, f.Builder.Function
	if _, err := p.s.lookup(fqn, fn, manifest.PluginRoleConnector); err != nil {
		return nil, err
	}
	return connector{fn: fn, f: f, config: maps.Clone(f.Builder.Config), pl: func() (*Plugin, error) {
		l, err := p.s.lookup(fqn, fn, manifest.PluginRoleConnector)
		if err != nil {
			return nil, err
		}
		return l.plugin, nil
	}}, nil
}
