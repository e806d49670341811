package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
)

// Plugins is what the registry needs of a plugin host (*extism.Set satisfies it): a Plugin
// manifest is loaded — checked against the host's policy and compiled — outside the
// registry's lock (Load), and applied under it (Swap). The handle Load returns is opaque to
// the registry; it closes the handles it no longer needs (a replaced plugin once the
// change is final, a loaded one that was not applied).
type Plugins interface {
	// Load loads p with its module's bytes, without applying it.
	Load(ctx context.Context, p *manifest.Plugin, module []byte) (io.Closer, error)
	// Swap makes loaded the plugin its FQN names, or removes fqn when loaded is nil, and
	// returns the handle it replaced (nil if none), not closed.
	Swap(fqn string, loaded io.Closer) (previous io.Closer)
}

// appliedPlugin is a plugin the registry applied.
type appliedPlugin struct {
	m         *manifest.Plugin
	canonical []byte
	module    []byte
	loaded    io.Closer
}

// pluginUse is one reference of a feature to a plugin's function.
type pluginUse struct {
	feature, plugin, function, path string
	role                            manifest.PluginRole
}

// pluginUses lists what f names of plugins.
func pluginUses(f *engine.Feature) []pluginUse {
	var out []pluginUse
	if f.Builder.Plugin != "" {
		out = append(out, pluginUse{f.FQN, f.Builder.Plugin, f.Builder.Function, "spec.builder", manifest.PluginRoleConnector})
	}
	for i, m := range f.Middlewares {
		if m.Plugin != "" {
			out = append(out, pluginUse{f.FQN, m.Plugin, m.Function, "spec.middlewares[" + strconv.Itoa(i) + "]", manifest.PluginRoleMiddleware})
		}
	}
	return out
}

// pluginUsers lists the uses of the plugin fqn by applied features, except by those the
// request steps re-apply (checked against the plugin when they are applied). Callers hold
// mu.
func (r *Registry) pluginUsers(fqn string, steps []*applyStep) []pluginUse {
	var out []pluginUse
	for _, f := range r.eng.Features() {
		if slices.ContainsFunc(steps, func(st *applyStep) bool { return st.m.Feature != nil && st.key.FQN == f.FQN }) {
			continue
		}
		for _, u := range pluginUses(f) {
			if u.plugin == fqn {
				out = append(out, u)
			}
		}
	}
	return out
}

// checkPluginUsers refuses a plugin that no longer provides, in its role, a function that
// an applied feature names. Callers hold mu.
func (r *Registry) checkPluginUsers(p *manifest.Plugin, steps []*applyStep) error {
	for _, u := range r.pluginUsers(p.FQN, steps) {
		i := slices.IndexFunc(p.Functions, func(fn manifest.PluginFunction) bool { return fn.Name == u.function })
		switch {
		case i < 0:
			return &kindError{kind: ErrInUse, msg: fmt.Sprintf(
				"spec.functions: feature %s uses the function %q as %s (%s), and this manifest does not declare it: change or delete the feature first",
				u.feature, u.function, aRole(u.role), u.path)}
		case p.Functions[i].Role != u.role:
			return &kindError{kind: ErrInUse, msg: fmt.Sprintf(
				"spec.functions[%d].role: feature %s uses %q as %s (%s), and this manifest declares it %s",
				i, u.feature, u.function, aRole(u.role), u.path, aRole(p.Functions[i].Role))}
		}
	}
	return nil
}

// aRole is a role with its article: "a middleware", "an encoder".
func aRole(r manifest.PluginRole) string {
	if r == manifest.PluginRoleEncoder {
		return "an " + string(r)
	}
	return "a " + string(r)
}

// resolvePluginModule replaces the module name a plugin gives by its reference, from the
// bytes the request carries under that name, or, for a reference alone, from what the
// registry holds. Callers hold mu.
func (r *Registry) resolvePluginModule(st *applyStep, provided map[string][]byte) error {
	p := st.m.Plugin
	at := fmt.Sprintf("%s: spec.module", st.m.Pos)
	if r.plugs == nil {
		return &kindError{kind: ErrUnsupportedKind, msg: fmt.Sprintf(
			"%s: Plugin %s: this server has no plugin host: it applies features and data sources only", st.m.Pos, p.FQN)}
	}
	name := p.Module
	b, ok, err := providedModule(at, name, provided)
	if err != nil {
		return err
	}
	if !ok {
		if b, ok = r.modules[name]; !ok {
			b, ok = r.pluginModule(name)
		}
		if !ok {
			return unknownModule(at, name)
		}
	}
	if len(b) == 0 {
		return &FieldError{Field: moduleField(name), Err: fmt.Errorf("empty: %s names it; send the plugin's Wasm module", at)}
	}
	ref := moduleref.Of(b)
	p.Module = ref
	st.pluginModule = b
	if r.store != nil {
		st.modules = map[string][]byte{ref: b}
	}
	return nil
}

// pluginModule returns the bytes of an applied plugin's module by reference. Callers hold
// mu.
func (r *Registry) pluginModule(ref string) ([]byte, bool) {
	for _, ap := range r.plugins {
		if ap.m.Module == ref {
			return ap.module, true
		}
	}
	return nil, false
}

// loadPlugin loads a request's plugin (Plugins.Load) unless it is identical to the applied
// one.
func (r *Registry) loadPlugin(ctx context.Context, st *applyStep) error {
	if st.m.Plugin == nil || st.same {
		return nil
	}
	loaded, err := r.plugs.Load(ctx, st.m.Plugin, st.pluginModule)
	if err != nil {
		return err
	}
	st.loaded = loaded
	return nil
}

// applyPlugin applies a request's plugin and returns how to undo it. Callers hold mu.
func (r *Registry) applyPlugin(ctx context.Context, st *applyStep, steps []*applyStep) (func(context.Context), error) {
	p := st.m.Plugin
	if err := r.checkPluginUsers(p, steps); err != nil {
		return nil, err
	}
	if st.loaded == nil { // changed since the request was checked: load it now
		if err := r.loadPlugin(ctx, st); err != nil {
			return nil, err
		}
	}
	fqn := p.FQN
	prev := r.plugins[fqn]
	r.plugs.Swap(fqn, st.loaded)
	r.plugins[fqn] = &appliedPlugin{m: p, canonical: st.canonical, module: st.pluginModule, loaded: st.loaded}
	if prev != nil {
		st.replaced = prev.loaded
	}
	return func(context.Context) {
		st.replaced = nil
		if prev != nil {
			r.plugs.Swap(fqn, prev.loaded)
			r.plugins[fqn] = prev
		} else {
			r.plugs.Swap(fqn, nil)
			delete(r.plugins, fqn)
		}
	}, nil
}

// finishLoaded closes, after an Apply, the plugins and egresses it replaced (when it
// applied them) and those it loaded and did not apply.
func (r *Registry) finishLoaded(ctx context.Context, steps []*applyStep, applied bool) {
	for _, st := range steps {
		if st == nil {
			continue
		}
		if applied && st.replaced != nil {
			r.closeHandle(ctx, st.key.Kind, st.key.FQN, st.replaced)
		}
		if !applied && st.loaded != nil {
			r.closeHandle(ctx, st.key.Kind, st.key.FQN, st.loaded)
		}
	}
}

// deletePlugin deletes the applied plugin name names, if there is one and no feature uses
// it. Callers hold mu.
func (r *Registry) deletePlugin(ctx context.Context, name string) (Key, bool, error) {
	fqn, err := r.eng.ResolveFQN(name)
	if err != nil {
		return Key{}, false, nil
	}
	key := Key{string(manifest.KindPlugin), fqn}
	ap := r.plugins[fqn]
	if ap == nil {
		return key, false, nil
	}
	if users := r.pluginUsers(fqn, nil); len(users) > 0 {
		var names []string
		for _, u := range users {
			names = append(names, u.feature+" ("+u.path+")")
		}
		return key, true, &kindError{kind: ErrInUse, msg: fmt.Sprintf(
			"delete plugin %s: features use it: %s: delete or change those features first", fqn, strings.Join(names, ", "))}
	}
	if err := r.unstore(ctx, key); err != nil {
		return key, true, fmt.Errorf("registry store: nothing was deleted: %w", err)
	}
	r.dropPlugin(fqn)
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", key.Kind), slog.String("fqn", fqn))
	return key, true, nil
}

// dropPlugin removes an applied plugin and closes it. Callers hold mu.
func (r *Registry) dropPlugin(fqn string) {
	if ap := r.plugins[fqn]; ap != nil {
		r.plugs.Swap(fqn, nil)
		delete(r.plugins, fqn)
		ap.loaded.Close()
	}
}

// restorePlugin loads and applies a stored plugin (at Restore, or a change of the shared
// store), replacing the one applied. ctx bounds the load. Callers hold mu.
func (r *Registry) restorePlugin(ctx context.Context, m manifest.Manifest, modules map[string][]byte) error {
	p := m.Plugin
	if r.plugs == nil {
		return fmt.Errorf("%w: this server has no plugin host", ErrUnsupportedKind)
	}
	b, ok := modules[p.Module]
	if !ok {
		return fmt.Errorf("it names the module %s, which is not in the registry store", p.Module)
	}
	canonical, err := manifest.Marshal(m)
	if err != nil {
		return err
	}
	loaded, err := r.plugs.Load(ctx, p, b)
	if err != nil {
		return err
	}
	prev := r.plugins[p.FQN]
	r.plugs.Swap(p.FQN, loaded)
	r.plugins[p.FQN] = &appliedPlugin{m: p, canonical: canonical, module: b, loaded: loaded}
	if prev != nil {
		prev.loaded.Close()
	}
	return nil
}

// Plugins returns the manifests of the applied plugins of one namespace, or of all when
// namespace is "", sorted by FQN. They are the registry's: do not modify them.
func (r *Registry) Plugins(namespace string) []*manifest.Plugin {
	r.mu.Lock()
	defer r.mu.Unlock()
	return inNamespace(r.plugins, namespace, func(ap *appliedPlugin) *manifest.Plugin { return ap.m })
}

// inNamespace returns what m gives of the objects of applied (by FQN) in namespace, or of
// all when namespace is "", sorted by FQN.
func inNamespace[A, M any](applied map[string]A, namespace string, m func(A) M) []M {
	ns := strings.ToLower(strings.TrimSpace(namespace))
	fqns := make([]string, 0, len(applied))
	for fqn := range applied {
		if ns == "" || strings.HasPrefix(fqn, ns+".") {
			fqns = append(fqns, fqn)
		}
	}
	slices.Sort(fqns)
	out := make([]M, len(fqns))
	for i, fqn := range fqns {
		out[i] = m(applied[fqn])
	}
	return out
}
