package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins/egress"
	_ "github.com/osprey-ml/osprey/plugins/egress/webhook" // "webhook"
	redisstore "github.com/osprey-ml/osprey/plugins/registrystore/redis"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/registry"
)

// fakeEgresses is a registry.Egresses that records what the registry asks of it.
type fakeEgresses struct {
	mu      sync.Mutex
	applied map[string]*fakeEgress
	loads   []string
	closed  []string
	loadErr error
}

type fakeEgress struct {
	m  *manifest.Egress
	id int
	f  *fakeEgresses
}

func newFakeEgresses() *fakeEgresses { return &fakeEgresses{applied: map[string]*fakeEgress{}} }

func (e *fakeEgress) Close() error {
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	e.f.closed = append(e.f.closed, fmt.Sprintf("%s#%d", e.m.FQN, e.id))
	return nil
}

func (f *fakeEgresses) Load(_ context.Context, e *manifest.Egress) (io.Closer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return nil, f.loadErr
	}
	f.loads = append(f.loads, e.FQN)
	return &fakeEgress{m: e, id: len(f.loads), f: f}, nil
}

func (f *fakeEgresses) Swap(fqn string, loaded io.Closer) io.Closer {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.applied[fqn]
	f.applied[fqn] = loaded.(*fakeEgress)
	if old == nil {
		return nil
	}
	return old
}

func (f *fakeEgresses) Delete(fqn string) io.Closer {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.applied[fqn]
	delete(f.applied, fqn)
	if old == nil {
		return nil
	}
	return old
}

// current lists the applied egresses as fqn#load.
func (f *fakeEgresses) current() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for fqn, e := range f.applied {
		out = append(out, fmt.Sprintf("%s#%d", fqn, e.id))
	}
	slices.Sort(out)
	return out
}

func (f *fakeEgresses) closedList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closed)
}

func egressDoc(name, config string) string {
	return fmt.Sprintf(`
apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: %s, namespace: t}
spec:
  type: webhook
  config: %s
`, name, config)
}

func newEgressFixture(t *testing.T, store registry.Store) (*fixture, *fakeEgresses) {
	t.Helper()
	fe := newFakeEgresses()
	log := slog.New(slog.DiscardHandler)
	f := &fixture{eng: engine.New(memory.New(), engine.WithLogger(log))}
	t.Cleanup(func() { f.eng.Close() })
	cfg := registry.Config{Engine: f.eng, Egresses: fe, Logger: log}
	if store != nil {
		cfg.Store = store
		f.store, _ = store.(*fakeStore)
	}
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	return f, fe
}

// TestApplyEgresses: egresses are applied with the request (before its features), left
// alone when identical, replaced (the old one closed once the change is final), undone with
// a request that fails, not kept by a dry run, listed, and deleted (closed, unstored).
func TestApplyEgresses(t *testing.T) {
	ctx := context.Background()
	f, fe := newEgressFixture(t, newFakeStore())
	alerts := egressDoc("alerts", "{url: 'https://hooks.example.com/a'}")

	got, err := f.reg.Apply(ctx, parse(t, docs(feature("amount", ""), alerts)), nil, registry.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(actions(got), ", "); a != "Feature t.amount created, Egress t.alerts created" {
		t.Fatalf("actions %s", a)
	}
	if c := fe.current(); !slices.Equal(c, []string{"t.alerts#1"}) {
		t.Fatalf("applied egresses %v", c)
	}
	if keys := f.store.keys(); !slices.Equal(keys, []string{"Egress t.alerts", "Feature t.amount"}) {
		t.Fatalf("stored %v", keys)
	}

	// Identical: not loaded again.
	if got, err := f.reg.Apply(ctx, parse(t, alerts), nil, registry.ApplyOptions{}); err != nil || got[0].Action != registry.Unchanged {
		t.Fatalf("the same egress: %v, %v", got, err)
	}
	if len(fe.loads) != 1 {
		t.Fatalf("loads %v", fe.loads)
	}

	// A dry run of a change loads it, applies nothing, closes what it loaded.
	changed := egressDoc("alerts", "{url: 'https://hooks.example.com/b'}")
	if got, err := f.reg.Apply(ctx, parse(t, changed), nil, registry.ApplyOptions{DryRun: true}); err != nil || got[0].Action != registry.Updated {
		t.Fatalf("dry run: %v, %v", got, err)
	}
	if c, cl := fe.current(), fe.closedList(); !slices.Equal(c, []string{"t.alerts#1"}) || !slices.Equal(cl, []string{"t.alerts#2"}) {
		t.Fatalf("after a dry run: applied %v, closed %v", c, cl)
	}

	// A request whose other object fails: the replacement is undone, the old one kept open.
	if _, err := f.reg.Apply(ctx, parse(t, docs(changed, feature("broken", "  dataSource: t.nosuch\n"))), nil, registry.ApplyOptions{}); err == nil {
		t.Fatal("a request with a feature of a missing data source applied")
	}
	if c, cl := fe.current(), fe.closedList(); !slices.Equal(c, []string{"t.alerts#1"}) || !slices.Equal(cl, []string{"t.alerts#2", "t.alerts#3"}) {
		t.Fatalf("after a failed request: applied %v, closed %v", c, cl)
	}
	if m := f.store.objs[registry.Key{Kind: "Egress", FQN: "t.alerts"}].Manifest; !strings.Contains(string(m), "hooks.example.com/a") {
		t.Fatalf("after a failed request, stored\n%s", m)
	}

	// Replaced: the old one closed, the new one stored.
	if got, err := f.reg.Apply(ctx, parse(t, changed), nil, registry.ApplyOptions{}); err != nil || got[0].Action != registry.Updated {
		t.Fatalf("replace: %v, %v", got, err)
	}
	if c, cl := fe.current(), fe.closedList(); !slices.Equal(c, []string{"t.alerts#4"}) || cl[len(cl)-1] != "t.alerts#1" {
		t.Fatalf("after a replace: applied %v, closed %v", c, cl)
	}
	if m := f.store.objs[registry.Key{Kind: "Egress", FQN: "t.alerts"}].Manifest; !strings.Contains(string(m), "hooks.example.com/b") {
		t.Fatalf("after a replace, stored\n%s", m)
	}
	l, err := f.reg.List("t")
	if err != nil || len(l.Egresses) != 1 || l.Egresses[0].FQN != "t.alerts" || l.Egresses[0].Config["url"] != "https://hooks.example.com/b" {
		t.Fatalf("List = %+v, %v", l.Egresses, err)
	}
	if l, _ := f.reg.List("other"); len(l.Egresses) != 0 {
		t.Fatalf("List(other) = %+v", l.Egresses)
	}

	// Deleting: closed, unstored; a second delete finds nothing.
	if key, err := f.reg.Delete(ctx, "t.alerts"); err != nil || key != (registry.Key{Kind: "Egress", FQN: "t.alerts"}) {
		t.Fatalf("delete: %v, %v", key, err)
	}
	if c, cl := fe.current(), fe.closedList(); len(c) != 0 || cl[len(cl)-1] != "t.alerts#4" {
		t.Fatalf("after delete: applied %v, closed %v", c, cl)
	}
	if keys := f.store.keys(); !slices.Equal(keys, []string{"Feature t.amount"}) {
		t.Fatalf("after delete: stored %v", keys)
	}
	if _, err := f.reg.Delete(ctx, "t.alerts"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if l, _ := f.reg.List(""); len(l.Egresses) != 0 {
		t.Fatalf("after delete: listed %v", l.Egresses)
	}
}

// TestApplyEgressErrors: a registry without egresses refuses the kind; an egress its set
// refuses fails the request, with nothing applied.
func TestApplyEgressErrors(t *testing.T) {
	ctx := context.Background()
	alerts := egressDoc("alerts", "{url: 'https://hooks.example.com/a'}")
	t.Run("no egresses", func(t *testing.T) {
		f := newFixture(t, true, true, registry.Config{})
		_, err := f.reg.Apply(ctx, parse(t, docs(feature("x", ""), alerts)), nil, registry.ApplyOptions{})
		if !errors.Is(err, registry.ErrUnsupportedKind) || !strings.Contains(err.Error(), "manifest: document 2 (line 12): Egress t.alerts: this server has no egresses configured") {
			t.Fatalf("Apply = %v", err)
		}
		if len(f.eng.Features()) != 0 || len(f.store.keys()) != 0 {
			t.Fatalf("something was applied: %v, %v", f.eng.Features(), f.store.keys())
		}
	})
	t.Run("the set refuses it", func(t *testing.T) {
		f, fe := newEgressFixture(t, newFakeStore())
		fe.loadErr = errors.New("egress t.alerts (webhook): spec.config.urll: unknown key")
		_, err := f.reg.Apply(ctx, parse(t, docs(feature("x", ""), alerts)), nil, registry.ApplyOptions{})
		var oe *registry.ObjectError
		if !errors.As(err, &oe) || oe.Key != (registry.Key{Kind: "Egress", FQN: "t.alerts"}) ||
			err.Error() != "manifest: document 2 (line 12): egress t.alerts (webhook): spec.config.urll: unknown key" {
			t.Fatalf("Apply = %v", err)
		}
		if len(fe.current()) != 0 || len(f.eng.Features()) != 0 || len(f.store.keys()) != 0 {
			t.Fatalf("something was applied: %v %v %v", fe.current(), f.eng.Features(), f.store.keys())
		}
	})
}

// TestRestoreEgresses: a restarted registry restores its egresses; one its set refuses, or
// stored for a registry without egresses, is quarantined, and the rest restores.
func TestRestoreEgresses(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	f, _ := newEgressFixture(t, store)
	if _, err := f.reg.Apply(ctx, parse(t, docs(egressDoc("alerts", "{url: 'https://a.example.com'}"), egressDoc("events", "{url: 'https://b.example.com'}"),
		feature("amount", ""))), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, _ := store.Load(ctx)
	var order []string
	for _, o := range objs {
		order = append(order, o.Kind+" "+o.FQN)
	}
	if !slices.Equal(order, []string{"Egress t.alerts", "Egress t.events", "Feature t.amount"}) {
		t.Fatalf("stored in the order %v", order)
	}

	f2, fe2 := newEgressFixture(t, store)
	if err := f2.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if c := fe2.current(); !slices.Equal(c, []string{"t.alerts#1", "t.events#2"}) {
		t.Fatalf("restored egresses %v", c)
	}
	if l, _ := f2.reg.List(""); len(l.Egresses) != 2 || len(l.Quarantined) != 0 {
		t.Fatalf("listed %+v", l)
	}
	// Restored, it is the applied one: applying it again changes nothing.
	if got, err := f2.reg.Apply(ctx, parse(t, egressDoc("alerts", "{url: 'https://a.example.com'}")), nil, registry.ApplyOptions{}); err != nil || got[0].Action != registry.Unchanged {
		t.Fatalf("apply the restored egress: %v, %v", got, err)
	}

	quarantined := func(r *registry.Registry) []string {
		var q []string
		for _, o := range r.Quarantined() {
			q = append(q, o.Kind+" "+o.FQN+": "+o.Err)
		}
		return q
	}
	f3, fe3 := newEgressFixture(t, store)
	fe3.loadErr = errors.New("spec.config.url: host not allowed")
	if err := f3.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if q := quarantined(f3.reg); len(q) != 2 || q[0] != "Egress t.alerts: restore Egress t.alerts: spec.config.url: host not allowed" {
		t.Fatalf("quarantined %q", q)
	}
	if got := f3.applied(); !slices.Equal(got, []string{"Feature t.amount"}) {
		t.Fatalf("restored features %v", got)
	}
	// A quarantined egress is deleted from the store.
	if _, err := f3.reg.Delete(ctx, "t.events"); err != nil {
		t.Fatal(err)
	}
	if keys := store.keys(); !slices.Equal(keys, []string{"Egress t.alerts", "Feature t.amount"}) {
		t.Fatalf("after deleting a quarantined egress: stored %v", keys)
	}

	f4 := newFixture(t, false, false, registry.Config{Store: store})
	if err := f4.reg.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if q := quarantined(f4.reg); len(q) != 1 || q[0] != "Egress t.alerts: restore Egress t.alerts: it is an egress, and this server has no egresses configured" {
		t.Fatalf("quarantined without egresses %q", q)
	}
}

// TestEgressWithSet: the registry applies an Egress to the real egress.Set, which the
// engine's resolver reads: a program's name resolves to the egress, and its Emit reaches
// the webhook; deleting it makes the name unknown.
func TestEgressWithSet(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			t.Error(err)
		}
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer srv.Close()
	set := egress.NewSet(egress.Policy{}, engine.DefaultNamespace, nil)
	defer set.Close()
	log := slog.New(slog.DiscardHandler)
	eng := engine.New(memory.New(), engine.WithLogger(log), engine.WithEgresses(set))
	defer eng.Close()
	reg, err := registry.New(registry.Config{Engine: eng, Egresses: set, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(egressDoc("alerts", "{url: '"+srv.URL+"', timeout: 2s}"), "namespace: t", "namespace: default", 1)
	if _, err := reg.Apply(ctx, parse(t, doc), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	eg, err := set.Egress("alerts")
	if err != nil {
		t.Fatal(err)
	}
	if err := eg.Emit(ctx, engine.EgressMessage{ID: "x/1", From: engine.Address{FQN: "t.f"}, Timestamp: time.Unix(0, 0), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(bodies) != 1 || bodies[0]["egress"] != "default.alerts" || bodies[0]["id"] != "x/1" {
		t.Errorf("the webhook got %v", bodies)
	}
	mu.Unlock()

	bad := strings.Replace(doc, "timeout: 2s", "timout: 2s", 1)
	if _, err := reg.Apply(ctx, parse(t, bad), nil, registry.ApplyOptions{}); err == nil ||
		!strings.Contains(err.Error(), "egress default.alerts (webhook): invalid plugin config: spec.config.timout: unknown key (did you mean timeout?)") {
		t.Fatalf("a typo in the config: %v", err)
	}
	if _, err := reg.Delete(ctx, "alerts"); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Egress("alerts"); !errors.Is(err, egress.ErrNotApplied) {
		t.Fatalf("after delete: %v", err)
	}
	if err := eg.Emit(ctx, engine.EgressMessage{ID: "x/2"}); !errors.Is(err, egress.ErrClosed) {
		t.Fatalf("Emit on the deleted egress: %v", err)
	}
}

// TestSharedEgresses: a replica converges on another's apply and delete of an egress over a
// shared Redis store (its own set loads, replaces and closes it).
func TestSharedEgresses(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	replica := func() (*registry.Registry, *fakeEgresses) {
		s, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{srv.Addr()}, Prefix: "t:" + t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		eng := engine.New(memory.New(), engine.WithLogger(log))
		fe := newFakeEgresses()
		r, err := registry.New(registry.Config{Engine: eng, Store: s, Egresses: fe, Logger: log, SyncPeriod: 20 * time.Millisecond, ResyncPeriod: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			r.Close()
			s.Close()
			eng.Close()
		})
		return r, fe
	}
	a, _ := replica()
	b, feB := replica()
	wait := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(feB.current(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10 s: the replica holds %q, want %q", feB.current(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := a.Apply(ctx, parse(t, egressDoc("alerts", "{url: 'https://a.example.com'}")), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	wait([]string{"t.alerts#1"})
	if _, err := a.Apply(ctx, parse(t, egressDoc("alerts", "{url: 'https://b.example.com'}")), nil, registry.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	wait([]string{"t.alerts#2"})
	if _, err := a.Delete(ctx, "t.alerts"); err != nil {
		t.Fatal(err)
	}
	wait(nil)
	if cl := feB.closedList(); !slices.Equal(cl, []string{"t.alerts#1", "t.alerts#2"}) {
		t.Errorf("the replica closed %v", cl)
	}
	if l, _ := b.List(""); len(l.Egresses) != 0 {
		t.Errorf("the replica lists %v", l.Egresses)
	}
}
