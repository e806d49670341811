package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/plugins"
	dirstore "github.com/osprey-ml/osprey/plugins/registrystore/dir"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

// poison resolves two test middlewares that misbehave once armed, the way a poison pill
// applies fine and misbehaves after some date: restoretest_slow blocks until its apply's
// deadline (an apply the host stops), restoretest_hang until released, ignoring its context
// (an apply that does not return). Before arming both resolve to a pass-through.
type poison struct {
	armed   atomic.Bool
	release chan struct{}
}

func newPoison() *poison { return &poison{release: make(chan struct{})} }

func (p *poison) resolver(next engine.MiddlewareResolver) engine.MiddlewareResolver {
	pass := func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) { return v, nil }
	return engine.MiddlewareResolverFunc(func(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		switch {
		case ref.Name == "restoretest_slow" && p.armed.Load():
			<-ctx.Done()
			return nil, fmt.Errorf("restoretest_slow: %w", ctx.Err())
		case ref.Name == "restoretest_hang" && p.armed.Load():
			<-p.release
			return pass, nil
		case strings.HasPrefix(ref.Name, "restoretest_"):
			return pass, nil
		}
		return next.ResolveMiddleware(ctx, f, ref)
	})
}

// poisonedEngine is an engine with a Wasm host whose middleware resolver knows p's
// middlewares.
func poisonedEngine(t *testing.T, p *poison) (*engine.Engine, *host.Host) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	h, err := host.New(context.Background(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	st := memstate.New()
	t.Cleanup(func() { st.Close() })
	eng := engine.New(st, engine.WithLogger(log), engine.WithPrograms(h),
		engine.WithMiddlewareResolver(p.resolver(h.Resolver(plugins.Middlewares))))
	t.Cleanup(func() { eng.Close() })
	return eng, h
}

// withCustomSection returns a copy of a Wasm module with a custom section appended: the
// same code under another digest, so that objects do not share module files.
func withCustomSection(wasm []byte, name string) []byte {
	payload := append(append([]byte{byte(len(name))}, name...), 1) // one byte of content: wazero refuses none at the end
	return append(append(slices.Clone(wasm), 0, byte(len(payload))), payload...)
}

func restoreFeature(name, extra string) string {
	return fmt.Sprintf(`apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: %s, namespace: r}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
%s---
`, name, extra)
}

const restoreSource = `apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: src, namespace: r}
spec: {kind: rest, keyFields: [id]}
---
`

// restoreCase is a stored object broken between two starts, and the quarantine it must
// land in.
type restoreCase struct {
	kind, fqn string
	manifest  string             // applied by the first server
	module    string             // the path the manifest names its module by, if any
	breakIt   func(dir string)   // breaks the stored object while no server runs
	want      string             // in the quarantine error
	fix       func(e *env) error // takes it out of quarantine
}

// TestRestoreQuarantine: objects that fail or overrun at restore are quarantined with their
// error, the rest are served, ListFeatures lists them, and applying again or deleting takes
// them off the list.
func TestRestoreQuarantine(t *testing.T) {
	dir := t.TempDir()
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	objectFile := func(kind, fqn string) string { return filepath.Join(dir, "objects", kind, fqn+".yaml") }
	moduleFile := func(wasm []byte) string {
		return filepath.Join(dir, "modules", "sha256", moduleref.Digest(moduleref.Of(wasm))+".wasm")
	}
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mods := map[string][]byte{
		"ok.wasm":      withCustomSection(noopWasm, "ok"),
		"missing.wasm": withCustomSection(noopWasm, "missing"),
		"corrupt.wasm": withCustomSection(noopWasm, "corrupt"),
	}
	del := func(fqn string) func(e *env) error {
		return func(e *env) error {
			_, err := e.clients(protocols[0]).registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: fqn}))
			return err
		}
	}
	reapply := func(manifest string) func(e *env) error {
		return func(e *env) error {
			_, err := e.clients(protocols[0]).registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest)}))
			return err
		}
	}
	cases := []restoreCase{
		{
			kind: "Feature", fqn: "r.unparsable", manifest: restoreFeature("unparsable", ""),
			breakIt: func(string) { write(objectFile("Feature", "r.unparsable"), "kind: Feature\nspec: [\n") },
			want:    "does not parse",
			fix:     reapply(restoreFeature("unparsable", "")),
		},
		{
			kind: "Feature", fqn: "r.missing", manifest: restoreFeature("missing", "  builder: {module: missing.wasm}\n"), module: "missing.wasm",
			breakIt: func(string) { os.Remove(moduleFile(mods["missing.wasm"])) },
			want:    "module " + moduleref.Of(mods["missing.wasm"]),
			fix:     del("r.missing"),
		},
		{
			kind: "Feature", fqn: "r.corrupt", manifest: restoreFeature("corrupt", "  builder: {module: corrupt.wasm}\n"), module: "corrupt.wasm",
			breakIt: func(string) { write(moduleFile(mods["corrupt.wasm"]), "tampered") },
			want:    "is corrupt",
			fix:     del("r.corrupt"),
		},
		{
			kind: "Feature", fqn: "r.gone", manifest: restoreFeature("gone", "  middlewares: [{name: restoretest_gone, stages: [preSet]}]\n"),
			breakIt: func(string) {
				write(objectFile("Feature", "r.gone"), restoreFeature("gone", "  middlewares: [{name: no_such_middleware, stages: [preSet]}]\n"))
			},
			want: "no_such_middleware",
			fix:  reapply(restoreFeature("gone", "")),
		},
		{
			kind: "Feature", fqn: "r.slow", manifest: restoreFeature("slow", "  middlewares: [{name: restoretest_slow, stages: [preSet]}]\n"),
			want: "deadline exceeded",
			fix:  del("r.slow"),
		},
		{
			// Its data source is quarantined, so it is too.
			kind: "Feature", fqn: "r.fed", manifest: restoreFeature("fed", "  dataSource: src\n"),
			want: "r.src is not applied",
			fix:  del("r.fed"),
		},
		{
			kind: "DataSource", fqn: "r.src", manifest: restoreSource,
			breakIt: func(string) {
				write(objectFile("DataSource", "r.src"), "apiVersion: osprey.dev/v1alpha1\nkind: DataSource\n")
			},
			want: "does not parse",
			fix:  del("r.src"), // after r.fed: a data source goes once no feature uses it
		},
	}

	// The first start applies everything, including the poison, which applies fine.
	p := newPoison()
	eng, h := poisonedEngine(t, p)
	e := start(t, envOptions{cfg: server.Config{Registry: store, Engine: eng, Host: h}, noApply: true})
	all := restoreSource + restoreFeature("ok", "") + restoreFeature("wasm", "  builder: {module: ok.wasm}\n") +
		restoreFeature("hang", "  middlewares: [{name: restoretest_hang, stages: [preSet]}]\n")
	for _, c := range cases {
		if c.kind == "Feature" {
			all += c.manifest
		}
	}
	e.apply(all, mods, "")
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.breakIt != nil {
			c.breakIt(dir)
		}
	}

	// The second start, past the poison's date.
	p2 := newPoison()
	p2.armed.Store(true)
	eng2, h2 := poisonedEngine(t, p2)
	const timeout = 300 * time.Millisecond
	began := time.Now()
	e2 := start(t, envOptions{cfg: server.Config{Registry: store, Engine: eng2, Host: h2, RestoreTimeout: timeout}, noApply: true})
	// The restore of r.hang is abandoned 2s (restoreGrace) after its deadline.
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("the restore took %v", took)
	}
	c2 := e2.clients(protocols[0])
	if got, want := listAll(t, c2), []string{"r.ok", "r.wasm"}; !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	get, err := c2.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "r.wasm", Keys: map[string]string{"id": "1"}}))
	if err != nil || get.Msg.GetValue().GetIntValue() != 42 {
		t.Fatalf("Get r.wasm = %v, %v", get, err)
	}
	quarantine := listQuarantined(t, c2, "")
	wantQuarantined := []string{"DataSource r.src"}
	for _, fqn := range []string{"r.corrupt", "r.fed", "r.gone", "r.hang", "r.missing", "r.slow", "r.unparsable"} {
		wantQuarantined = append(wantQuarantined, "Feature "+fqn)
	}
	if got := slices.Collect(mapKeysSorted(quarantine)); !slices.Equal(got, wantQuarantined) {
		t.Fatalf("quarantined %v, want %v", got, wantQuarantined)
	}
	for _, c := range append(cases, restoreCase{kind: "Feature", fqn: "r.hang", want: "did not finish within the restore timeout"}) {
		q := quarantine[c.kind+" "+c.fqn]
		if !strings.Contains(q.GetError(), c.want) || !strings.Contains(q.GetError(), c.fqn) {
			t.Errorf("%s %s: error %q, want it to name the object and hold %q", c.kind, c.fqn, q.GetError(), c.want)
		}
		if since := q.GetSince().AsTime(); since.Before(began) || since.After(time.Now()) {
			t.Errorf("%s %s: since %v", c.kind, c.fqn, since)
		}
		if !strings.Contains(e2.logs.String(), "level=ERROR msg=\"registry: a stored object does not restore; quarantined") ||
			!strings.Contains(e2.logs.String(), "fqn="+c.fqn) {
			t.Errorf("%s %s: not logged at ERROR", c.kind, c.fqn)
		}
	}
	if !strings.Contains(e2.logs.String(), "abandoned the restore") {
		t.Error("the abandoned restore was not logged")
	}
	if got := listQuarantined(t, c2, "other"); len(got) != 0 {
		t.Errorf("namespace other: quarantined %v", got)
	}
	// Quarantined objects stay in the store.
	objs, err := store.Load(ctx)
	if err != nil || len(objs) != 3+len(cases) {
		t.Fatalf("stored %d objects (%v), want %d", len(objs), err, 3+len(cases))
	}

	// While its abandoned apply has not returned, r.hang cannot be applied again.
	_, err = c2.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(restoreFeature("hang", ""))}))
	wantCode(t, err, connect.CodeUnavailable)

	// Applying again or deleting takes each object out of quarantine.
	for _, c := range cases {
		if err := c.fix(e2); err != nil {
			t.Fatalf("%s %s: fix: %v", c.kind, c.fqn, err)
		}
		if _, ok := listQuarantined(t, c2, "")[c.kind+" "+c.fqn]; ok {
			t.Errorf("%s %s: still quarantined", c.kind, c.fqn)
		}
	}
	if got, want := listAll(t, c2), []string{"r.gone", "r.ok", "r.unparsable", "r.wasm"}; !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	objs, _ = store.Load(ctx)
	var stored []string
	for _, o := range objs {
		if o.Err != nil {
			t.Errorf("%s %s: %v", o.Kind, o.FQN, o.Err)
		}
		stored = append(stored, o.FQN)
	}
	if want := []string{"r.gone", "r.hang", "r.ok", "r.unparsable", "r.wasm"}; !slices.Equal(stored, want) {
		t.Fatalf("stored %v, want %v", stored, want)
	}

	// The abandoned apply returns, succeeding late: r.hang is served, no longer quarantined.
	close(p2.release)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(listAll(t, c2), "r.hang") {
		if time.Now().After(deadline) {
			t.Fatal("r.hang is not served after its late apply")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for time.Now().Before(deadline) && len(listQuarantined(t, c2, "")) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if got := listQuarantined(t, c2, ""); len(got) != 0 {
		t.Fatalf("still quarantined: %v", got)
	}
	if !strings.Contains(e2.logs.String(), "succeeding late") {
		t.Error("the late apply was not logged")
	}
	e2.apply(restoreFeature("hang", ""), nil, "")
}

// TestRestoreDeletedWhileAbandoned: an object deleted while its abandoned apply runs is
// deleted from the engine again when that apply succeeds late.
func TestRestoreDeletedWhileAbandoned(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hang := restoreFeature("hang", "  middlewares: [{name: restoretest_hang, stages: [preSet]}]\n")
	if err := store.Save(ctx, "Feature", "r.hang", []byte(strings.TrimSuffix(hang, "---\n")), nil); err != nil {
		t.Fatal(err)
	}
	p := newPoison()
	p.armed.Store(true)
	eng, h := poisonedEngine(t, p)
	e := start(t, envOptions{cfg: server.Config{Registry: store, Engine: eng, Host: h, RestoreTimeout: 50 * time.Millisecond}, noApply: true})
	c := e.clients(protocols[0])
	if got := listQuarantined(t, c, ""); len(got) != 1 {
		t.Fatalf("quarantined %v", got)
	}
	if _, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "r.hang"})); err != nil {
		t.Fatal(err)
	}
	if got := listQuarantined(t, c, ""); len(got) != 0 {
		t.Fatalf("quarantined after delete: %v", got)
	}
	close(p.release)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), "deleted from the engine again") {
		if time.Now().After(deadline) {
			t.Fatal("the late apply was not undone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := listAll(t, c); len(got) != 0 {
		t.Fatalf("served %v after delete", got)
	}
	// Now it can be applied again.
	e.apply(restoreFeature("hang", ""), nil, "")
}

// TestRestoreInterrupted: cancelling New's context stops the restore promptly; the objects
// left are not restored, and stay in the store.
func TestRestoreInterrupted(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"hang", "ok"} { // restored in this order
		m := restoreFeature(name, "  middlewares: [{name: restoretest_"+name+", stages: [preSet]}]\n")
		if err := store.Save(ctx, "Feature", "r."+name, []byte(strings.TrimSuffix(m, "---\n")), nil); err != nil {
			t.Fatal(err)
		}
	}
	p := newPoison()
	p.armed.Store(true)
	defer close(p.release)
	eng, h := poisonedEngine(t, p)
	var logs syncBuffer
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	began := time.Now()
	_, err = server.New(cctx, server.Config{Engine: eng, Host: h, Registry: store, RestoreTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "2 of 2 stored objects not restored") {
		t.Fatalf("New = %v, want the interrupted restore", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("New returned %v after the cancel", took)
	}
	if fs := eng.Features(); len(fs) != 0 {
		t.Errorf("restored %v after the cancel", fs)
	}
	if !strings.Contains(logs.String(), "restore interrupted") {
		t.Errorf("not logged: %s", logs.String())
	}
	if objs, _ := store.Load(ctx); len(objs) != 2 {
		t.Errorf("stored %d objects", len(objs))
	}
}

// TestRestoreTimeoutNegative: a negative Config.RestoreTimeout fails New.
func TestRestoreTimeoutNegative(t *testing.T) {
	eng := newEngine(t, nil, nil, slog.New(slog.DiscardHandler))
	if _, err := server.New(context.Background(), server.Config{Engine: eng, RestoreTimeout: -time.Second}); err == nil {
		t.Fatal("New accepted a negative RestoreTimeout")
	}
}

func listQuarantined(t *testing.T, c clients, ns string) map[string]*ospreyv1.QuarantinedObject {
	t.Helper()
	res, err := c.registry.ListFeatures(context.Background(), connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: ns}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ospreyv1.QuarantinedObject{}
	for _, q := range res.Msg.GetQuarantined() {
		out[q.GetKind()+" "+q.GetFqn()] = q
	}
	return out
}

func mapKeysSorted[V any](m map[string]V) func(func(string) bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return slices.Values(keys)
}
