package server_test

import (
	"context"
	_ "embed"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	dirstore "github.com/osprey-ml/osprey/plugins/registrystore/dir"
	"github.com/osprey-ml/osprey/server"
)

// noopWasm is host/internal/wasmbuild's NoopProgram: a program that returns int 42.
//
//go:embed testdata/noop.wasm
var noopWasm []byte

const wasmManifest = `
apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: clicks, namespace: web}
spec: {kind: rest, keyFields: [user_id]}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: answer, namespace: web}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user_id]
  builder: {module: programs/noop.wasm}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: fed, namespace: web}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user_id]
  dataSource: clicks
  builder: {module: programs/noop.wasm}
`

// TestWasmModules applies features whose programs are Wasm modules sent in the request, and
// runs them through Get, DryRun and Ingest.
func TestWasmModules(t *testing.T) {
	e := start(t, envOptions{})
	ctx := context.Background()
	c := e.clients(protocols[3])
	res, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{
		Manifest: []byte(wasmManifest), Modules: map[string][]byte{"programs/noop.wasm": noopWasm}}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Msg.GetApplied()); n != 3 {
		t.Fatalf("applied %d objects", n)
	}
	fd, err := c.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: "web.answer"}))
	if err != nil {
		t.Fatal(err)
	}
	if b := fd.Msg.GetFeature().GetBuilder(); b.GetKind() != "wasm" || !strings.HasPrefix(b.GetModule(), "sha256:") {
		t.Fatalf("builder = %v", b)
	}
	user := map[string]string{"user_id": "u1"}
	get, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "web.answer", Keys: user}))
	if err != nil || get.Msg.GetValue().GetIntValue() != 42 {
		t.Fatalf("Get = %v, %v", get, err)
	}
	row, _ := structpb.NewStruct(map[string]any{"user_id": "u2", "n": 3})
	dry, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "web.fed", Row: row}))
	if err != nil || !dry.Msg.GetWrites() || dry.Msg.GetValue().GetIntValue() != 42 || dry.Msg.GetKeys()["user_id"] != "u2" {
		t.Fatalf("DryRun = %v, %v", dry, err)
	}
	ing, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "web.clicks", Rows: []*structpb.Struct{row, row}}))
	if err != nil || ing.Msg.GetRows() != 2 || ing.Msg.GetWritten() != 2 {
		t.Fatalf("Ingest = %v, %v", ing, err)
	}
	got, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "web.fed", Keys: map[string]string{"user_id": "u2"}}))
	if err != nil || got.Msg.GetValue().GetIntValue() != 42 {
		t.Fatalf("Get fed = %v, %v", got, err)
	}
	// A row without the key the feature needs: nothing is written, and the row is named.
	bad, _ := structpb.NewStruct(map[string]any{"n": 1})
	_, err = c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "web.clicks", Rows: []*structpb.Struct{row, bad}}))
	ce := wantCode(t, err, connect.CodeInvalidArgument)
	if !hasField(ce, "rows[1]") || !strings.Contains(ce.Message(), "nothing written") {
		t.Fatalf("bad row: %v", ce)
	}

	// Applying again by path is unchanged; the data source cannot go while it feeds web.fed.
	res, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{
		Manifest: []byte(wasmManifest), Modules: map[string][]byte{"programs/noop.wasm": noopWasm}}))
	if err != nil || res.Msg.GetApplied()[1].GetAction() != "unchanged" {
		t.Fatalf("re-apply = %v, %v", res, err)
	}
	_, err = c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "web.clicks"}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	// A module that is not Wasm is refused, naming it.
	_, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{
		Manifest: []byte(strings.ReplaceAll(wasmManifest, "programs/noop.wasm", "junk.wasm")), Modules: map[string][]byte{"junk.wasm": []byte("not wasm")}}))
	ce = wantCode(t, err, connect.CodeInvalidArgument)
	if !strings.Contains(ce.Message(), "invalid module") {
		t.Fatal(ce.Message())
	}
	// A module sent under a digest that is not its own.
	_, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{
		Manifest: []byte(strings.ReplaceAll(wasmManifest, "programs/noop.wasm", "sha256:"+strings.Repeat("0", 64))),
		Modules:  map[string][]byte{"sha256:" + strings.Repeat("0", 64): noopWasm}}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

// TestWasmWithoutHost: a server without a Host refuses modules with FailedPrecondition.
func TestWasmWithoutHost(t *testing.T) {
	e := start(t, envOptions{noHost: true})
	_, err := e.clients(protocols[0]).registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{
		Manifest: []byte(wasmManifest), Modules: map[string][]byte{"programs/noop.wasm": noopWasm}}))
	ce := wantCode(t, err, connect.CodeFailedPrecondition)
	if !strings.Contains(ce.Message(), "no Wasm host") || !strings.Contains(ce.Message(), "spec.builder.module") {
		t.Fatal(ce.Message())
	}
	// Nothing was applied, not even the data source before it.
	if len(e.eng.DataSources()) != 1 {
		t.Fatalf("data sources: %v", e.eng.DataSources())
	}
}

// TestRegistryPersistence: what one server applied, the next one (a restart over the same
// directory) applies again; deletions stick.
func TestRegistryPersistence(t *testing.T) {
	dir := t.TempDir()
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, envOptions{cfg: server.Config{Registry: store}})
	e.apply(wasmManifest, map[string][]byte{"programs/noop.wasm": noopWasm}, "")
	c := e.clients(protocols[0])
	ctx := context.Background()
	if _, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "test.boom"})); err != nil {
		t.Fatal(err)
	}
	// An update of a Wasm feature by digest alone: the server knows the module's bytes.
	fd, _ := c.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: "web.answer"}))
	digest := fd.Msg.GetFeature().GetBuilder().GetModule()
	e.apply(strings.Replace(strings.ReplaceAll(wasmManifest, "programs/noop.wasm", digest), "freshness: 1m", "freshness: 2m", 1), nil, "")
	before := listAll(t, c)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "modules", "sha256")); len(ents) != 1 {
		t.Fatalf("stored modules: %v", ents)
	}

	// Restart: a new engine and host over the same store.
	e2 := start(t, envOptions{cfg: server.Config{Registry: store}, noApply: true})
	c2 := e2.clients(protocols[0])
	after := listAll(t, c2)
	if !slices.Equal(before, after) {
		t.Fatalf("after restart:\n%v\nbefore:\n%v", after, before)
	}
	if slices.Contains(after, "test.boom") {
		t.Fatal("a deleted feature came back")
	}
	get, err := c2.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "web.answer", Keys: map[string]string{"user_id": "u"}}))
	if err != nil || get.Msg.GetValue().GetIntValue() != 42 {
		t.Fatalf("Get after restart = %v, %v", get, err)
	}
	fd2, _ := c2.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: "web.answer"}))
	if fd2.Msg.GetFeature().GetFreshness().AsDuration().Minutes() != 2 {
		t.Fatalf("restored web.answer = %v", fd2.Msg.GetFeature())
	}
	// The restored objects are what is applied: applying them again changes nothing.
	res := e2.apply(wasmManifest, map[string][]byte{"programs/noop.wasm": noopWasm}, "")
	if a := res.GetApplied()[1]; a.GetFqn() != "web.answer" || a.GetAction() != "updated" {
		t.Fatalf("re-apply with freshness 1m: %v", a) // it was 2m
	}
	res = e2.apply(baseManifest, nil, "")
	for _, a := range res.GetApplied() {
		want := "unchanged"
		if a.GetFqn() == "test.boom" {
			want = "created"
		}
		if a.GetAction() != want {
			t.Errorf("%s %s: %s, want %s", a.GetKind(), a.GetFqn(), a.GetAction(), want)
		}
	}
}

// TestRestoreSkipsBrokenObjects: an object that no longer applies is logged and skipped.
func TestRestoreSkipsBrokenObjects(t *testing.T) {
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := []byte("apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: ok, namespace: r}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id]}\n")
	broken := []byte("apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: bad, namespace: r}\nspec:\n  primitive: int\n  freshness: 1m\n  staleness: 1h\n  keys: [id]\n  middlewares: [{name: gone_middleware, stages: [preSet]}]\n")
	if err := store.Save(ctx, "Feature", "r.ok", good, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, "Feature", "r.bad", broken, nil); err != nil {
		t.Fatal(err)
	}
	e := start(t, envOptions{cfg: server.Config{Registry: store}, noApply: true})
	if got := listAll(t, e.clients(protocols[0])); !slices.Equal(got, []string{"r.ok"}) {
		t.Fatalf("restored %v", got)
	}
	if !strings.Contains(e.logs.String(), "gone_middleware") {
		t.Fatal("the broken object was not logged")
	}
	if objs, _ := store.Load(ctx); len(objs) != 2 {
		t.Fatalf("the broken object left the store: %d objects", len(objs))
	}
}

func listAll(t *testing.T, c clients) []string {
	t.Helper()
	res, err := c.registry.ListFeatures(context.Background(), connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ds := range res.Msg.GetDataSources() {
		out = append(out, "ds:"+ds.GetFqn())
	}
	for _, f := range res.Msg.GetFeatures() {
		out = append(out, f.GetFqn())
	}
	return out
}

// TestModulesReleased: the Host keeps a module while an applied feature names it, and lets
// it go when the feature is deleted or replaced, or when the apply that sent it fails.
func TestModulesReleased(t *testing.T) {
	e := start(t, envOptions{})
	ctx := context.Background()
	c := e.clients(protocols[0])
	apply := func(manifest string, modules map[string][]byte) error {
		_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest), Modules: modules}))
		return err
	}
	if err := apply(wasmManifest, map[string][]byte{"programs/noop.wasm": noopWasm}); err != nil {
		t.Fatal(err)
	}
	if s := e.host.Stats(); s.Modules != 1 || s.Blobs != 1 {
		t.Fatalf("after the apply: %+v; want one module", s)
	}
	// A rejected upload keeps nothing: neither its bytes nor a compiled module.
	err := apply(strings.ReplaceAll(wasmManifest, "programs/noop.wasm", "junk.wasm"), map[string][]byte{"junk.wasm": make([]byte, 1<<20)})
	wantCode(t, err, connect.CodeInvalidArgument)
	if s := e.host.Stats(); s.Modules != 1 || s.Blobs != 1 || s.BlobBytes != int64(len(noopWasm)) {
		t.Fatalf("after a rejected upload: %+v; want only the applied module", s)
	}
	// Replacing the module of both features releases the old one.
	other := append(append([]byte(nil), noopWasm...), 0, 6, 4, 'p', 'a', 'd', '1', 0) // a custom section: other bytes, same program
	if err := apply(strings.ReplaceAll(wasmManifest, "programs/noop.wasm", "other.wasm"), map[string][]byte{"other.wasm": other}); err != nil {
		t.Fatal(err)
	}
	if s := e.host.Stats(); s.Modules != 1 || s.BlobBytes != int64(len(other)) {
		t.Fatalf("after the replacement: %+v; want only the new module", s)
	}
	for _, fqn := range []string{"web.answer", "web.fed"} {
		if _, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: fqn})); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.host.Stats(); s.Modules != 0 || s.Blobs != 0 || s.Instances != 0 || s.MemoryInUse != 0 || s.MemoryReserved != 0 {
		t.Fatalf("after deleting both features: %+v; want nothing held", s)
	}
}

// TestApplyDryRun: dry_run over the API reports per object what would happen and changes
// nothing — not the engine, not the store; what would fail fails with the apply's code.
func TestApplyDryRun(t *testing.T) {
	dir := t.TempDir()
	store, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, envOptions{cfg: server.Config{Registry: store}})
	c := e.clients(protocols[0])
	ctx := context.Background()
	before := listAll(t, c)
	stored, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifest := baseManifest + `---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: dry, namespace: fraud}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [card_id]}
`
	res, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest), DryRun: true}))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg.GetApplied()
	if last := got[len(got)-1]; last.GetFqn() != "fraud.dry" || last.GetAction() != "created" {
		t.Errorf("last object: %v", last)
	}
	for _, a := range got[:len(got)-1] {
		if a.GetAction() != "unchanged" {
			t.Errorf("%s %s: %s, want unchanged", a.GetKind(), a.GetFqn(), a.GetAction())
		}
	}
	if after := listAll(t, c); !slices.Equal(after, before) {
		t.Errorf("a dry run changed the applied set: %v, was %v", after, before)
	}
	if now, _ := store.Load(ctx); len(now) != len(stored) {
		t.Errorf("a dry run changed the store: %d objects, was %d", len(now), len(stored))
	}
	bad := "apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: orphan, namespace: fraud}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], dataSource: fraud.nowhere}\n"
	_, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(bad), DryRun: true}))
	wantCode(t, err, connect.CodeFailedPrecondition)
}
