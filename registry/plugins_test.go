package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/registry"
)

// fakePlugins is a registry.Plugins that records what the registry asks of it, and
// resolves plugin middlewares for the engine from what is swapped in (as extism.Set does).
type fakePlugins struct {
	mu      sync.Mutex
	applied map[string]*fakePlugin
	loads   []string
	closed  []string
	loadErr error
}

type fakePlugin struct {
	m      *manifest.Plugin
	module []byte
	id     int
	f      *fakePlugins
}

func (p *fakePlugin) Close() error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.closed = append(p.f.closed, fmt.Sprintf("%s#%d", p.m.FQN, p.id))
	return nil
}

func (f *fakePlugins) Load(_ context.Context, p *manifest.Plugin, module []byte) (io.Closer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return nil, f.loadErr
	}
	if moduleref.Of(module) != p.Module {
		return nil, fmt.Errorf("loaded %s with bytes of another digest", p.Module)
	}
	f.loads = append(f.loads, p.FQN)
	return &fakePlugin{m: p, module: module, id: len(f.loads), f: f}, nil
}

func (f *fakePlugins) Swap(fqn string, loaded io.Closer) io.Closer {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.applied[fqn]
	if loaded == nil {
		delete(f.applied, fqn)
	} else {
		f.applied[fqn] = loaded.(*fakePlugin)
	}
	if old == nil {
		return nil
	}
	return old
}

// current lists the applied plugins as fqn#load.
func (f *fakePlugins) current() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for fqn, p := range f.applied {
		out = append(out, fmt.Sprintf("%s#%d", fqn, p.id))
	}
	slices.Sort(out)
	return out
}

func (f *fakePlugins) closedList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closed)
}

func (f *fakePlugins) ResolveMiddleware(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.applied[ref.Plugin]
	if p == nil || !slices.ContainsFunc(p.m.Functions, func(fn manifest.PluginFunction) bool { return fn.Name == ref.Function }) {
		return nil, fmt.Errorf("plugin %s has no function %s", ref.Plugin, ref.Function)
	}
	return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) { return v, nil }, nil
}

func plugin(name, functions string) string {
	return fmt.Sprintf(`
apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: %s, namespace: t}
spec:
  module: %s.wasm
  functions: %s
`, name, name, functions)
}

const usesCheck = "  middlewares: [{plugin: check, function: handle, stages: [preSet]}]\n"

func newPluginFixture(t *testing.T, store *fakeStore) (*fixture, *fakePlugins) {
	t.Helper()
	fp := &fakePlugins{applied: map[string]*fakePlugin{}}
	f := &fixture{eng: engine.New(memory.New(), engine.WithLogger(slog.New(slog.DiscardHandler)), engine.WithMiddlewareResolver(fp))}
	t.Cleanup(func() { f.eng.Close() })
	cfg := registry.Config{Engine: f.eng, Plugins: fp, Logger: slog.New(slog.DiscardHandler)}
	if store != nil {
		f.store = store
		cfg.Store = store
	}
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	return f, fp
}

var pluginModules = map[string][]byte{"check.wasm": []byte("\x00asm check v1"), "other.wasm": []byte("\x00asm other")}

// TestApplyPlugins: plugins are applied before the features naming them, left alone when
// identical, replaced (the old one closed once the change is final), undone with a request
// that fails, and not kept by a dry run; a feature naming what a replacement drops keeps the
// replacement out.
func TestApplyPlugins(t *testing.T) {
	ctx := context.Background()
	f, fp := newPluginFixture(t, newFakeStore())
	check := plugin("check", "[{name: handle, role: middleware}]")

	// A feature and the plugin it names, in one request, the feature first.
	got, err := f.reg.Apply(ctx, parse(t, docs(feature("amount", usesCheck), check)), pluginModules, registry.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(actions(got), ", "); a != "Feature t.amount created, Plugin t.check created" {
		t.Fatalf("actions %s", a)
	}
	if c := fp.current(); !slices.Equal(c, []string{"t.check#1"}) {
		t.Fatalf("applied plugins %v", c)
	}
	if keys := f.store.keys(); !slices.Equal(keys, []string{"Feature t.amount", "Plugin t.check"}) {
		t.Fatalf("stored %v", keys)
	}

	// Identical, by its digest alone: not loaded again.
	byRef := strings.Replace(check, "check.wasm", moduleref.Of(pluginModules["check.wasm"]), 1)
	if got, err := f.reg.Apply(ctx, parse(t, byRef), nil, registry.ApplyOptions{}); err != nil || got[0].Action != registry.Unchanged {
		t.Fatalf("the same plugin by reference: %v, %v", got, err)
	}
	if len(fp.loads) != 1 {
		t.Fatalf("loads %v", fp.loads)
	}

	// A dry run of a change loads it, applies nothing, closes what it loaded.
	changed := check + "  config: {level: high}\n"
	if got, err := f.reg.Apply(ctx, parse(t, changed), pluginModules, registry.ApplyOptions{DryRun: true}); err != nil || got[0].Action != registry.Updated {
		t.Fatalf("dry run: %v, %v", got, err)
	}
	if c := fp.current(); !slices.Equal(c, []string{"t.check#1"}) {
		t.Fatalf("after a dry run: applied %v", c)
	}
	if cl := fp.closedList(); !slices.Equal(cl, []string{"t.check#2"}) {
		t.Fatalf("after a dry run: closed %v", cl)
	}

	// A request whose other object fails: the replacement is undone, the old one kept open.
	if _, err := f.reg.Apply(ctx, parse(t, docs(changed, feature("broken", "  middlewares: [{plugin: check, function: nosuch, stages: [preSet]}]\n"))),
		pluginModules, registry.ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "no function nosuch") {
		t.Fatalf("a request with a feature naming a missing function: %v", err)
	}
	if c := fp.current(); !slices.Equal(c, []string{"t.check#1"}) {
		t.Fatalf("after a failed request: applied %v", c)
	}
	if cl := fp.closedList(); !slices.Equal(cl, []string{"t.check#2", "t.check#3"}) {
		t.Fatalf("after a failed request: closed %v", cl)
	}

	// Replaced: the old one closed.
	if got, err := f.reg.Apply(ctx, parse(t, changed), pluginModules, registry.ApplyOptions{}); err != nil || got[0].Action != registry.Updated {
		t.Fatalf("replace: %v, %v", got, err)
	}
	if c, cl := fp.current(), fp.closedList(); !slices.Equal(c, []string{"t.check#4"}) || cl[len(cl)-1] != "t.check#1" {
		t.Fatalf("after a replace: applied %v, closed %v", c, cl)
	}

	// A replacement without the function a feature uses, or with another role, is refused.
	for _, fns := range []string{"[{name: other, role: middleware}]", "[{name: handle, role: encoder}]"} {
		_, err := f.reg.Apply(ctx, parse(t, plugin("check", fns)), pluginModules, registry.ApplyOptions{})
		if !errors.Is(err, registry.ErrInUse) || !strings.Contains(err.Error(), "t.amount") {
			t.Fatalf("replace with %s: %v", fns, err)
		}
	}
	// ... unless the same request changes the feature too.
	if _, err := f.reg.Apply(ctx, parse(t, docs(plugin("check", "[{name: other, role: middleware}]"),
		feature("amount", strings.Replace(usesCheck, "handle", "other", 1)))), pluginModules, registry.ApplyOptions{}); err != nil {
		t.Fatalf("replace a plugin and the feature using it together: %v", err)
	}

	// Deleting: refused while named, then done, closing it and unstoring it.
	if _, err := f.reg.Delete(ctx, "t.check"); !errors.Is(err, registry.ErrInUse) || !strings.Contains(err.Error(), "t.amount (spec.middlewares[0])") {
		t.Fatalf("delete a plugin in use: %v", err)
	}
	for _, name := range []string{"t.amount", "t.check"} {
		if _, err := f.reg.Delete(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if c := fp.current(); len(c) != 0 {
		t.Fatalf("after delete: applied %v", c)
	}
	if keys := f.store.keys(); len(keys) != 0 {
		t.Fatalf("after delete: stored %v", keys)
	}
	if l, _ := f.reg.List(""); len(l.Plugins) != 0 {
		t.Fatalf("after delete: listed %v", l.Plugins)
	}
}

// TestApplyPluginErrors: what is wrong with a plugin's request, each refused with nothing
// applied.
func TestApplyPluginErrors(t *testing.T) {
	ctx := context.Background()
	check := plugin("check", "[{name: handle, role: middleware}]")
	t.Run("no plugin host", func(t *testing.T) {
		f := newFixture(t, true, false, registry.Config{})
		if _, err := f.reg.Apply(ctx, parse(t, check), pluginModules, registry.ApplyOptions{}); !errors.Is(err, registry.ErrUnsupportedKind) {
			t.Fatalf("Apply = %v", err)
		}
	})
	for _, tc := range []struct {
		name    string
		doc     string
		modules map[string][]byte
		loadErr error
		want    string
	}{
		{"module missing", check, nil, nil, `modules["check.wasm"]: missing`},
		{"unknown digest", strings.Replace(check, "check.wasm", moduleref.Of([]byte("nothing")), 1), nil, nil, "is not in this server's registry"},
		{"wrong digest", strings.Replace(check, "check.wasm", moduleref.Of([]byte("nothing")), 1),
			map[string][]byte{moduleref.Of([]byte("nothing")): []byte("something")}, nil, "the bytes have digest"},
		{"empty module", check, map[string][]byte{"check.wasm": {}}, nil, "empty"},
		{"the host refuses it", check, pluginModules, errors.New("spec.allowedHosts[0]: not allowed"), "spec.allowedHosts[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fp := newPluginFixture(t, newFakeStore())
			fp.loadErr = tc.loadErr
			if _, err := f.reg.Apply(ctx, parse(t, docs(tc.doc, feature("x", ""))), tc.modules, registry.ApplyOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want %q", err, tc.want)
			}
			if len(fp.current()) != 0 || len(f.eng.Features()) != 0 || len(f.store.keys()) != 0 {
				t.Fatalf("something was applied: %v %v %v", fp.current(), f.eng.Features(), f.store.keys())
			}
		})
	}
}

// TestRestorePlugins: a restarted registry restores plugins before the features naming
// them; a plugin whose module is missing from the store is quarantined, and so is the
// feature that names it.
func TestRestorePlugins(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	f, _ := newPluginFixture(t, store)
	check := plugin("check", "[{name: handle, role: middleware}]")
	other := plugin("other", "[{name: handle, role: middleware}]")
	if _, err := f.reg.Apply(ctx, parse(t, docs(feature("amount", usesCheck), check, other, feature("count", ""))), pluginModules, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Lose the module of "other" and make a feature name it.
	store.mu.Lock()
	o := store.objs[registry.Key{Kind: "Plugin", FQN: "t.other"}]
	o.Modules = nil
	store.objs[registry.Key{Kind: "Plugin", FQN: "t.other"}] = o
	store.mu.Unlock()
	if _, err := f.reg.Apply(ctx, parse(t, feature("count", strings.Replace(usesCheck, "check", "other", 1))), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	f2, fp2 := newPluginFixture(t, store)
	if err := f2.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if c := fp2.current(); !slices.Equal(c, []string{"t.check#1"}) {
		t.Fatalf("restored plugins %v", c)
	}
	if got := f2.applied(); !slices.Equal(got, []string{"Feature t.amount"}) {
		t.Fatalf("restored features %v", got)
	}
	var q []string
	for _, o := range f2.reg.Quarantined() {
		q = append(q, o.Kind+" "+o.FQN)
	}
	if !slices.Equal(q, []string{"Plugin t.other", "Feature t.count"}) {
		t.Fatalf("quarantined %v", q)
	}
	if l, _ := f2.reg.List("t"); len(l.Plugins) != 1 || l.Plugins[0].FQN != "t.check" {
		t.Fatalf("listed plugins %v", l.Plugins)
	}
}
