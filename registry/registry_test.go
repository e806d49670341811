package registry_test

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
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/registry"
)

// fakeModules is a registry.Modules that records what the registry asks of it. AddModule
// blocks while block is set (a guest the host cannot stop, during a restore).
type fakeModules struct {
	mu       sync.Mutex
	added    map[string]bool
	holds    map[string]int
	retained [][]string // the FQNs of each Retain's features
	prepared []string
	block    chan struct{}
	addErr   error
	prepErr  error
}

func newFakeModules() *fakeModules {
	return &fakeModules{added: map[string]bool{}, holds: map[string]int{}}
}

func (m *fakeModules) AddModule(b []byte) (string, error) {
	m.mu.Lock()
	block := m.block
	m.mu.Unlock()
	if block != nil {
		<-block
	}
	if m.addErr != nil {
		return "", m.addErr
	}
	ref := moduleref.Of(b)
	m.mu.Lock()
	m.added[ref] = true
	m.mu.Unlock()
	return ref, nil
}

func (m *fakeModules) Hold(refs ...string) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range refs {
		m.holds[r]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, r := range refs {
				m.holds[r]--
			}
		})
	}
}

func (m *fakeModules) Prepare(_ context.Context, f *engine.Feature) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prepared = append(m.prepared, f.FQN)
	return m.prepErr
}

func (m *fakeModules) Retain(_ context.Context, fs []*engine.Feature) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for _, f := range fs {
		names = append(names, f.FQN)
	}
	m.retained = append(m.retained, names)
}

func (m *fakeModules) held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.holds {
		n += c
	}
	return n
}

// fakeStore is an in-memory registry.Store; failSave makes Save of that FQN fail.
type fakeStore struct {
	mu       sync.Mutex
	objs     map[registry.Key]registry.StoredObject
	failSave string
	saves    int
	loadErr  error
}

func newFakeStore() *fakeStore { return &fakeStore{objs: map[registry.Key]registry.StoredObject{}} }

func (s *fakeStore) Save(_ context.Context, kind, fqn string, m []byte, mods map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fqn == s.failSave {
		return fmt.Errorf("disk full saving %s", fqn)
	}
	s.saves++
	s.objs[registry.Key{Kind: kind, FQN: fqn}] = registry.StoredObject{Kind: kind, FQN: fqn, Manifest: m, Modules: maps.Clone(mods)}
	return nil
}

func (s *fakeStore) Delete(_ context.Context, kind, fqn string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objs, registry.Key{Kind: kind, FQN: fqn})
	return nil
}

func (s *fakeStore) Load(context.Context) ([]registry.StoredObject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		return nil, s.loadErr
	}
	keys := slices.SortedFunc(maps.Keys(s.objs), func(a, b registry.Key) int {
		if a.Kind != b.Kind {
			return slices.Index(registry.Kinds(), a.Kind) - slices.Index(registry.Kinds(), b.Kind)
		}
		return strings.Compare(a.FQN, b.FQN)
	})
	var out []registry.StoredObject
	for _, k := range keys {
		out = append(out, s.objs[k])
	}
	return out, nil
}

func (s *fakeStore) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objs {
		out = append(out, k.Kind+" "+k.FQN)
	}
	slices.Sort(out)
	return out
}

const source = `
apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: clicks, namespace: t}
spec: {kind: rest, keyFields: [id], timestampField: ts}
`

func feature(name, extra string) string {
	return fmt.Sprintf(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: %s, namespace: t}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
%s`, name, extra)
}

func docs(ds ...string) string { return strings.Join(ds, "---\n") }

func parse(t *testing.T, yaml string) []manifest.Manifest {
	t.Helper()
	ms, err := manifest.Parse([]byte(yaml), "manifest")
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

type fixture struct {
	eng   *engine.Engine
	reg   *registry.Registry
	mods  *fakeModules
	store *fakeStore
}

func newFixture(t *testing.T, withModules, withStore bool, cfg registry.Config) *fixture {
	t.Helper()
	f := &fixture{eng: engine.New(memory.New(), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))}
	t.Cleanup(func() { f.eng.Close() })
	cfg.Engine = f.eng
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if withModules {
		f.mods = newFakeModules()
		cfg.Modules = f.mods
	}
	if withStore {
		if f.store == nil {
			f.store = newFakeStore()
		}
		cfg.Store = f.store
	}
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	return f
}

func (f *fixture) applied() []string {
	var out []string
	for _, ds := range f.eng.DataSources() {
		out = append(out, "DataSource "+ds.FQN)
	}
	for _, ft := range f.eng.Features() {
		out = append(out, "Feature "+ft.FQN)
	}
	return out
}

func actions(as []registry.Applied) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Kind+" "+a.FQN+" "+string(a.Action))
	}
	return out
}

// TestApply: all or nothing, data sources first, identical objects unchanged, the store
// following the engine, and what each failure is.
func TestApply(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		first     string // applied first, successfully
		yaml      string
		modules   map[string][]byte
		noModules bool
		failSave  string
		want      []string // actions
		wantErr   error    // errors.Is
		wantAs    any      // errors.As target type
		applied   []string // the engine's objects afterwards
		stored    []string // the store's afterwards
	}{{
		name: "a Plugin manifest is refused, and nothing of the request applied",
		yaml: docs(feature("a", ""), "apiVersion: osprey.dev/v1alpha1\nkind: Plugin\nmetadata: {name: mask, namespace: t}\nspec:\n  module: sha256:"+
			strings.Repeat("ab", 32)+"\n  functions: [{name: encode, role: encoder}]\n"),
		wantErr: registry.ErrUnsupportedKind,
	}, {
		name:    "data source after its feature in the request is applied first",
		yaml:    docs(feature("a", "  dataSource: clicks\n"), source),
		want:    []string{"Feature t.a created", "DataSource t.clicks created"},
		applied: []string{"DataSource t.clicks", "Feature t.a"},
		stored:  []string{"DataSource t.clicks", "Feature t.a"},
	}, {
		name:    "identical is unchanged, changed is updated",
		first:   docs(source, feature("a", "")),
		yaml:    docs(source, strings.Replace(feature("a", ""), "freshness: 1m", "freshness: 2m", 1)),
		want:    []string{"DataSource t.clicks unchanged", "Feature t.a updated"},
		applied: []string{"DataSource t.clicks", "Feature t.a"},
		stored:  []string{"DataSource t.clicks", "Feature t.a"},
	}, {
		name:    "a failing object undoes the request",
		first:   feature("a", ""),
		yaml:    docs(source, strings.Replace(feature("a", ""), "freshness: 1m", "freshness: 2m", 1), feature("b", "  dataSource: nowhere\n")),
		wantAs:  &registry.ObjectError{},
		wantErr: engine.ErrFeatureNotFound,
		applied: []string{"Feature t.a"},
		stored:  []string{"Feature t.a"},
	}, {
		name:     "a failing store undoes the request in the engine and the store",
		first:    feature("a", ""),
		yaml:     docs(source, feature("b", "")),
		failSave: "t.b",
		applied:  []string{"Feature t.a"},
		stored:   []string{"Feature t.a"},
	}, {
		name:    "module bytes missing",
		yaml:    feature("w", "  builder: {module: w.wasm}\n"),
		wantAs:  &registry.FieldError{},
		applied: nil,
	}, {
		name:    "module bytes under a wrong digest",
		yaml:    feature("w", "  builder: {module: "+moduleref.Of([]byte("x"))+"}\n"),
		modules: map[string][]byte{moduleref.Of([]byte("x")): []byte("y")},
		wantAs:  &registry.FieldError{},
	}, {
		name:    "a module reference the registry lacks",
		yaml:    feature("w", "  builder: {module: "+moduleref.Of([]byte("x"))+"}\n"),
		wantErr: registry.ErrModuleUnknown,
	}, {
		name:      "a module without a Wasm host",
		yaml:      feature("w", "  builder: {module: w.wasm}\n"),
		modules:   map[string][]byte{"w.wasm": []byte("x")},
		noModules: true,
		wantErr:   registry.ErrNoModules,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, !tc.noModules, true, registry.Config{})
			if tc.first != "" {
				if _, err := f.reg.Apply(ctx, parse(t, tc.first), nil, registry.ApplyOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			f.store.failSave = tc.failSave
			got, err := f.reg.Apply(ctx, parse(t, tc.yaml), tc.modules, registry.ApplyOptions{})
			wantFail := tc.wantErr != nil || tc.wantAs != nil || tc.failSave != ""
			switch {
			case wantFail && err == nil:
				t.Fatalf("applied: %v", actions(got))
			case !wantFail && err != nil:
				t.Fatal(err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want one wrapping %v", err, tc.wantErr)
			}
			switch tc.wantAs.(type) {
			case *registry.ObjectError:
				var oe *registry.ObjectError
				if !errors.As(err, &oe) || !strings.HasPrefix(err.Error(), "manifest: document 3") {
					t.Errorf("error %v, want an ObjectError about document 3", err)
				}
			case *registry.FieldError:
				var fe *registry.FieldError
				if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "modules[") {
					t.Errorf("error %v, want a FieldError on modules[…]", err)
				}
			}
			if !wantFail && !slices.Equal(actions(got), tc.want) {
				t.Errorf("actions %v, want %v", actions(got), tc.want)
			}
			if a := f.applied(); !slices.Equal(a, tc.applied) {
				t.Errorf("applied %v, want %v", a, tc.applied)
			}
			if s := f.store.keys(); !slices.Equal(s, tc.stored) {
				t.Errorf("stored %v, want %v", s, tc.stored)
			}
			if f.mods != nil {
				if n := f.mods.held(); n != 0 {
					t.Errorf("%d module holds left", n)
				}
			}
		})
	}
}

// TestApplyDryRun: everything is checked, nothing changes, and the actions are those an
// apply would report.
func TestApplyDryRun(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, true, registry.Config{})
	if _, err := f.reg.Apply(ctx, parse(t, feature("a", "")), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	saves := f.store.saves
	yaml := docs(source, feature("b", "  dataSource: clicks\n"), strings.Replace(feature("a", ""), "freshness: 1m", "freshness: 2m", 1), feature("c", ""))
	got, err := f.reg.Apply(ctx, parse(t, yaml), nil, registry.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"DataSource t.clicks created", "Feature t.b created", "Feature t.a updated", "Feature t.c created"}
	if !slices.Equal(actions(got), want) {
		t.Errorf("actions %v, want %v", actions(got), want)
	}
	if a := f.applied(); !slices.Equal(a, []string{"Feature t.a"}) {
		t.Errorf("applied %v after a dry run", a)
	}
	if d, err := f.eng.FeatureDescriptor(ctx, "t.a"); err != nil || d.Freshness != time.Minute {
		t.Errorf("t.a after a dry run: %v, %v", d, err)
	}
	if f.store.saves != saves {
		t.Errorf("a dry run wrote to the store")
	}
	// A dry run of something that cannot apply fails like the apply would.
	_, err = f.reg.Apply(ctx, parse(t, docs(source, feature("b", "  dataSource: nowhere\n"))), nil, registry.ApplyOptions{DryRun: true})
	if !errors.Is(err, engine.ErrFeatureNotFound) {
		t.Errorf("dry run of a feature with a missing data source: %v", err)
	}
	if a := f.applied(); !slices.Equal(a, []string{"Feature t.a"}) {
		t.Errorf("applied %v after a failed dry run", a)
	}
	// Modules of a dry run are prepared, then not kept: the last Retain names only t.a.
	mods := map[string][]byte{"w.wasm": []byte("module")}
	f.mods.prepErr = errors.New("does not compile")
	_, err = f.reg.Apply(ctx, parse(t, feature("w", "  builder: {module: w.wasm}\n")), mods, registry.ApplyOptions{DryRun: true})
	var oe *registry.ObjectError
	if !errors.As(err, &oe) || !slices.Contains(f.mods.prepared, "t.w") {
		t.Errorf("dry run of a module that does not compile: %v (prepared %v)", err, f.mods.prepared)
	}
	if last := f.mods.retained[len(f.mods.retained)-1]; !slices.Equal(last, []string{"t.a"}) || f.mods.held() != 0 {
		t.Errorf("after a dry run: retained %v, %d holds", last, f.mods.held())
	}
}

// TestDelete covers each kind of object Delete removes and its errors.
func TestDelete(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, true, registry.Config{})
	if _, err := f.reg.Apply(ctx, parse(t, docs(source, feature("a", "  dataSource: clicks\n"), feature("b", ""))), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		want    registry.Key
		wantErr error
	}{
		{"t.nope", registry.Key{}, registry.ErrNotFound},
		{"t.clicks", registry.Key{}, registry.ErrInUse},
		{"t.a", registry.Key{Kind: "Feature", FQN: "t.a"}, nil},
		{"t.clicks", registry.Key{Kind: "DataSource", FQN: "t.clicks"}, nil},
		{"bad name!", registry.Key{}, engine.ErrInvalidSelector},
	} {
		key, err := f.reg.Delete(ctx, tc.name)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Delete(%q): %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || key != tc.want {
			t.Errorf("Delete(%q) = %v, %v; want %v", tc.name, key, err, tc.want)
		}
	}
	if s := f.store.keys(); !slices.Equal(s, []string{"Feature t.b"}) {
		t.Errorf("stored %v", s)
	}
	if a := f.applied(); !slices.Equal(a, []string{"Feature t.b"}) {
		t.Errorf("applied %v", a)
	}
}

// TestRestore: what restores is applied, what does not is quarantined (kept in the store,
// not applied, listed) until applied again or deleted.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	put := func(kind, fqn, yaml string, err error) {
		store.objs[registry.Key{Kind: kind, FQN: fqn}] = registry.StoredObject{Kind: kind, FQN: fqn, Manifest: []byte(yaml), Err: err}
	}
	put("DataSource", "t.clicks", source, nil)
	put("Feature", "t.ok", feature("ok", "  dataSource: clicks\n"), nil)
	put("Feature", "t.unreadable", "", errors.New("disk error"))
	put("Feature", "t.garbled", "kind: [", nil)
	put("Feature", "t.orphan", feature("orphan", "  dataSource: nowhere\n"), nil)
	put("Feature", "t.wrongname", feature("other", ""), nil)

	f := &fixture{eng: engine.New(memory.New(), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))), store: store}
	t.Cleanup(func() { f.eng.Close() })
	reg, err := registry.New(registry.Config{Engine: f.eng, Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if a := f.applied(); !slices.Equal(a, []string{"DataSource t.clicks", "Feature t.ok"}) {
		t.Errorf("applied %v", a)
	}
	l, err := reg.List("")
	if err != nil {
		t.Fatal(err)
	}
	var q []string
	for _, o := range l.Quarantined {
		q = append(q, o.FQN)
		if !strings.HasPrefix(o.Err, "restore Feature "+o.FQN+": ") || o.Since.IsZero() {
			t.Errorf("quarantined %+v", o)
		}
	}
	if want := []string{"t.garbled", "t.orphan", "t.unreadable", "t.wrongname"}; !slices.Equal(q, want) {
		t.Errorf("quarantined %v, want %v", q, want)
	}
	if len(store.keys()) != 6 {
		t.Errorf("the store lost quarantined objects: %v", store.keys())
	}
	// Applied again: out of quarantine. Deleted: out of quarantine and of the store.
	if _, err := reg.Apply(ctx, parse(t, feature("orphan", "")), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Delete(ctx, "t.garbled"); err != nil {
		t.Fatal(err)
	}
	l, _ = reg.List("t")
	if len(l.Quarantined) != 2 || l.Quarantined[0].FQN != "t.unreadable" {
		t.Errorf("quarantined after an apply and a delete: %+v", l.Quarantined)
	}
	if slices.Contains(store.keys(), "Feature t.garbled") {
		t.Error("a deleted quarantined object stayed in the store")
	}
	if _, err := reg.List("Bad Namespace"); err == nil {
		t.Error("List of an invalid namespace succeeded")
	}

	// A store that cannot be read fails Restore.
	store.loadErr = errors.New("unreachable")
	if err := reg.Restore(ctx); err == nil {
		t.Error("Restore with a failing store succeeded")
	}
}

// TestRestoreAbandoned: an apply that does not return is abandoned after its timeout and
// the grace; the object is quarantined and refused with ErrPending until the apply returns.
func TestRestoreAbandoned(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, true, registry.Config{RestoreTimeout: 10 * time.Millisecond, RestoreGrace: 10 * time.Millisecond})
	wasm := []byte("hangs")
	ref := moduleref.Of(wasm)
	yaml := feature("w", "  builder: {module: "+ref+"}\n")
	f.store.objs[registry.Key{Kind: "Feature", FQN: "t.w"}] = registry.StoredObject{Kind: "Feature", FQN: "t.w", Manifest: []byte(yaml), Modules: map[string][]byte{ref: wasm}}
	f.store.objs[registry.Key{Kind: "Feature", FQN: "t.x"}] = registry.StoredObject{Kind: "Feature", FQN: "t.x", Manifest: []byte(feature("x", ""))}
	block := make(chan struct{})
	f.mods.block = block
	if err := f.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if a := f.applied(); !slices.Equal(a, []string{"Feature t.x"}) {
		t.Errorf("applied %v: the abandoned object blocked the next", a)
	}
	q := f.reg.Quarantined()
	if len(q) != 1 || q[0].FQN != "t.w" || !strings.Contains(q[0].Err, "abandoned") {
		t.Fatalf("quarantined %+v", q)
	}
	_, err := f.reg.Apply(ctx, parse(t, yaml), map[string][]byte{ref: wasm}, registry.ApplyOptions{})
	if !errors.Is(err, registry.ErrPending) {
		t.Fatalf("apply of a pending object: %v", err)
	}
	f.mods.mu.Lock()
	f.mods.block = nil
	f.mods.mu.Unlock()
	close(block)
	// The late apply fails (this engine runs no programs), so the object stays quarantined,
	// and Apply no longer refuses it as pending.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = f.reg.Apply(ctx, parse(t, yaml), map[string][]byte{ref: wasm}, registry.ApplyOptions{})
		if !errors.Is(err, registry.ErrPending) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(err, engine.ErrUnsupported) {
		t.Errorf("apply after the abandoned restore returned: %v", err)
	}
	if n := f.mods.held(); n != 0 {
		t.Errorf("%d module holds left", n)
	}
}

// TestRestoreInterrupted: a done ctx stops the restore with an error wrapping its cause.
func TestRestoreInterrupted(t *testing.T) {
	f := newFixture(t, false, true, registry.Config{})
	f.store.objs[registry.Key{Kind: "Feature", FQN: "t.x"}] = registry.StoredObject{Kind: "Feature", FQN: "t.x", Manifest: []byte(feature("x", ""))}
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("SIGTERM")
	cancel(stop)
	if err := f.reg.Restore(ctx); !errors.Is(err, stop) {
		t.Errorf("Restore: %v, want an error wrapping %v", err, stop)
	}
	if len(f.applied()) != 0 || len(f.reg.Quarantined()) != 0 {
		t.Errorf("applied %v, quarantined %v", f.applied(), f.reg.Quarantined())
	}
}

// TestNew refuses a configuration without an engine or with negative durations, and takes
// a nil *T for no Modules.
func TestNew(t *testing.T) {
	eng := engine.New(memory.New(), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer eng.Close()
	for _, cfg := range []registry.Config{{}, {Engine: eng, RestoreTimeout: -1}, {Engine: eng, RestoreGrace: -1}} {
		if _, err := registry.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	var none *fakeModules
	reg, err := registry.New(registry.Config{Engine: eng, Modules: none})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Apply(context.Background(), parse(t, feature("w", "  builder: {module: w.wasm}\n")), map[string][]byte{"w.wasm": []byte("x")}, registry.ApplyOptions{})
	if !errors.Is(err, registry.ErrNoModules) {
		t.Errorf("a nil *fakeModules: %v, want ErrNoModules", err)
	}
}
