package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/registrystore/dir"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

// pluginEnv is a test server with a plugin host wired as osprey serve wires it: the Set's
// middlewares, encodings and connectors in front of the Wasm host's and the natives.
type pluginEnv struct {
	*env
	set *extism.Set
	c   clients
}

func startPlugins(t *testing.T, policy extism.Policy, store *dir.Store) *pluginEnv {
	t.Helper()
	h, err := host.New(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	set := extism.NewSet(policy, engine.DefaultNamespace, slog.New(slog.DiscardHandler))
	t.Cleanup(set.Close)
	encoders, err := plugins.NewEncoders(nil)
	if err != nil {
		t.Fatal(err)
	}
	st := memstate.New()
	t.Cleanup(func() { st.Close() })
	eng := engine.New(st, engine.WithPrograms(set.Programs(h)), engine.WithMiddlewareResolver(set.Resolver(h.Resolver(plugins.Middlewares))),
		engine.WithEncoderResolver(set.Encoders(encoders)), engine.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { eng.Close() })
	cfg := server.Config{Engine: eng, Host: h, Plugins: set}
	if store != nil {
		cfg.Registry = store
	}
	e := start(t, envOptions{cfg: cfg, noApply: true})
	return &pluginEnv{env: e, set: set, c: e.clients(protocols[0])}
}

func pluginModule(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyErr applies a manifest and returns the error.
func (e *pluginEnv) applyErr(manifest string, modules map[string][]byte) error {
	_, err := e.c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest), Modules: modules}))
	return err
}

func (e *pluginEnv) get(selector string, keys map[string]string) (*ospreyv1.GetResponse, error) {
	res, err := e.c.engine.Get(context.Background(), connect.NewRequest(&ospreyv1.GetRequest{Selector: selector, Keys: keys}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

const maskPlugin = `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: mask, namespace: pii}
spec:
  module: mask.wasm
  functions: [{name: encode, role: encoder}]
  config: {mask_char: "#"}
`

const validatePlugin = `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: validate, namespace: pii}
spec:
  module: validate.wasm
  functions: [{name: handle, role: middleware}]
  limits: {timeout: 500ms}
`

const pluginFeatures = `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: email, namespace: user}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [user_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: amount, namespace: payments}
spec:
  primitive: float
  freshness: 1h
  staleness: 24h
  keys: [account_id]
  middlewares:
    - {plugin: pii.validate, function: handle, stages: [preSet], config: {max: "10000"}}
`

// TestPluginRolesOverTheAPI applies plugins through ApplyFeature with the features naming
// them, and exercises every role over Connect: the encoder as a selector's [pii.mask], the
// middleware validating writes, the connector computing an on-request feature from a
// loopback HTTP server standing in for the third-party API (cached by freshness); then
// listing, calling, replacing and deleting them, and restoring them from the registry store.
func TestPluginRolesOverTheAPI(t *testing.T) {
	var asked atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		fmt.Fprintf(w, `{"country":%q}`, map[string]string{"1.2.3.4": "FR", "5.6.7.8": "JP"}[r.URL.Query().Get("ip")])
	}))
	defer api.Close()
	u, _ := url.Parse(api.URL)
	policy := extism.DefaultPolicy
	policy.AllowedHosts = []string{u.Hostname()}
	storeDir := t.TempDir()
	store, err := dir.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	e := startPlugins(t, policy, store)
	modules := map[string][]byte{
		"mask.wasm":     pluginModule(t, "../examples/plugins/mask/mask.wasm"),
		"validate.wasm": pluginModule(t, "../examples/plugins/validate/validate.wasm"),
		"geoip.wasm":    pluginModule(t, "../examples/plugins/geoip/geoip.wasm"),
	}
	geo := fmt.Sprintf(`apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: geoip, namespace: geo}
spec:
  module: geoip.wasm
  functions: [{name: compute, role: connector}]
  config: {endpoint: "%s/lookup"}
  allowedHosts: [%s]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: country, namespace: geo}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [ip]
  builder: {plugin: geoip, function: compute}
`, api.URL, u.Hostname())
	// Features and the plugins they name in one request: plugins are applied first.
	res := e.apply(pluginFeatures+"---\n"+validatePlugin+"---\n"+maskPlugin+"---\n"+geo, modules, "")
	if len(res.Applied) != 6 {
		t.Fatalf("applied %v", res.Applied)
	}

	// The encoder.
	if _, err := e.c.engine.Set(context.Background(), connect.NewRequest(&ospreyv1.SetRequest{Fqn: "user.email", Keys: map[string]string{"user_id": "u1"},
		Value: structpb.NewStringValue("alice@example.com")})); err != nil {
		t.Fatal(err)
	}
	got, err := e.get("user.email[pii.mask]", map[string]string{"user_id": "u1"})
	if err != nil || got.GetValue().GetStringValue() != "a####@example.com" {
		t.Fatalf("user.email[pii.mask] = %v, %v", got, err)
	}
	if _, err := e.get("user.email[nosuch]", map[string]string{"user_id": "u1"}); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(err.Error(), "nor is default.nosuch an applied plugin") {
		t.Fatalf("an unknown encoding: %v", err)
	}

	// The middleware: a value over the limit is refused with the plugin's message, a
	// negative one replaced by 0.
	set := func(v float64) error {
		_, err := e.c.engine.Set(context.Background(), connect.NewRequest(&ospreyv1.SetRequest{Fqn: "payments.amount", Keys: map[string]string{"account_id": "a1"},
			Value: structpb.NewNumberValue(v)}))
		return err
	}
	if err := set(25000); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "value 25000 exceeds max 10000") {
		t.Fatalf("set 25000 through validate: %v", err)
	}
	if err := set(-5); err != nil {
		t.Fatal(err)
	}
	if got, err := e.get("payments.amount", map[string]string{"account_id": "a1"}); err != nil || got.GetValue().GetFloatValue() != 0 {
		t.Fatalf("payments.amount after -5 = %v, %v", got, err)
	}

	// The connector: computed on request, then served from the state while fresh.
	for range 3 {
		got, err := e.get("geo.country", map[string]string{"ip": "1.2.3.4"})
		if err != nil || got.GetValue().GetStringValue() != "FR" {
			t.Fatalf("geo.country = %v, %v", got, err)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("the API was asked %d times for one fresh value, want 1", n)
	}

	// Listed, and callable by name.
	l, err := e.c.registry.ListFeatures(context.Background(), connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range l.Msg.Plugins {
		names = append(names, p.Fqn+"="+p.Functions[0].Role)
		if !strings.HasPrefix(p.Module, "sha256:") {
			t.Errorf("plugin %s: module %q, want its digest", p.Fqn, p.Module)
		}
	}
	if strings.Join(names, " ") != "geo.geoip=connector pii.mask=encoder pii.validate=middleware" {
		t.Fatalf("listed plugins %v", names)
	}
	call, err := e.c.registry.CallPlugin(context.Background(), connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "pii.mask", Function: "encode",
		Input: []byte(`{"version":1,"primitive":"string","value":"bob@example.com"}`)}))
	if err != nil || string(call.Msg.Output) != `{"value":"b##@example.com"}` {
		t.Fatalf("CallPlugin = %v, %v", call, err)
	}
	if _, err := e.c.registry.CallPlugin(context.Background(), connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "pii.nosuch", Function: "encode"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("CallPlugin of an unknown plugin: %v", err)
	}

	// In use: neither deleted nor replaced by a plugin without the function.
	if _, err := e.c.registry.DeleteFeature(context.Background(), connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "pii.validate"})); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(err.Error(), "payments.amount (spec.middlewares[0])") {
		t.Fatalf("delete a plugin in use: %v", err)
	}
	renamed := strings.Replace(validatePlugin, "{name: handle, role: middleware}", "{name: handle, role: encoder}", 1)
	if err := e.applyErr(renamed, modules); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "spec.functions[0].role") {
		t.Fatalf("replace a plugin in use by one without its middleware: %v", err)
	}
	// A feature naming what is not there.
	bad := strings.Replace(pluginFeatures, "function: handle", "function: check", 1)
	if err := e.applyErr(bad, nil); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), `has no function "check"`) {
		t.Fatalf("a feature naming a function the plugin lacks: %v", err)
	}

	// Restored from the registry store by a new server.
	e.stop()
	e2 := startPlugins(t, policy, store)
	if got, err := e2.get("user.email[pii.mask]", map[string]string{"user_id": "u1"}); err != nil || got.GetValue() != nil {
		// a new in-memory state: no value, but the encoding resolves
		if err != nil {
			t.Fatalf("after restore: %v", err)
		}
	}
	if err := func() error {
		_, err := e2.c.engine.Set(context.Background(), connect.NewRequest(&ospreyv1.SetRequest{Fqn: "payments.amount", Keys: map[string]string{"account_id": "a1"},
			Value: structpb.NewNumberValue(20000)}))
		return err
	}(); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("after restore, validate does not run: %v", err)
	}
	if got, err := e2.get("geo.country", map[string]string{"ip": "5.6.7.8"}); err != nil || got.GetValue().GetStringValue() != "JP" {
		t.Fatalf("after restore, geo.country = %v, %v", got, err)
	}

	// Deleted once nothing names it.
	for _, name := range []string{"payments.amount", "pii.validate"} {
		if _, err := e2.c.registry.DeleteFeature(context.Background(), connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: name})); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if _, err := e2.c.registry.CallPlugin(context.Background(), connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "pii.validate", Function: "handle"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("CallPlugin of a deleted plugin: %v", err)
	}
}

// TestPluginPolicyAndHostileOverTheAPI applies what the operator's policy refuses, and
// hostile plugins, to a live server: each is refused or stopped with a clear error, and the
// server goes on serving.
func TestPluginPolicyAndHostileOverTheAPI(t *testing.T) {
	policy := extism.DefaultPolicy
	policy.Max.Timeout = 2 * time.Second
	e := startPlugins(t, policy, nil)
	hostile := func(name string) []byte { return pluginModule(t, "../host/extism/testdata/hostile/"+name+".wasm") }

	plugin := func(name, fn, role, extra string) string {
		return fmt.Sprintf(`apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: %s, namespace: bad}
spec:
  module: m.wasm
  functions: [{name: %s, role: %s}]
%s`, name, fn, role, extra)
	}
	refused := []struct {
		name, manifest, want string
		module               []byte
	}{
		{"a host the policy does not allow", plugin("fetcher", "fetch", "connector", "  allowedHosts: [api.example.com]\n"),
			"spec.allowedHosts[0]", hostile("http_denied")},
		{"a timeout over the ceiling", plugin("slow", "loop", "middleware", "  limits: {timeout: 1m}\n"), "spec.limits.timeout", hostile("loop")},
		{"a function it does not export", plugin("liar", "nosuch", "middleware", ""), `"nosuch"`, hostile("loop")},
		{"a start function that never ends", plugin("starter", "noop", "middleware", "  limits: {timeout: 200ms}\n"), "timeout", hostile("start_loop")},
		{"memory beyond its limit", plugin("big", "noop", "middleware", "  limits: {memoryPages: 16}\n"), "", hostile("bigmem")},
		{"not Wasm", plugin("junk", "f", "middleware", ""), "spec.module", []byte("\x00asm junk")},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			err := e.applyErr(tt.manifest, map[string][]byte{"m.wasm": tt.module})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("apply: %v, want an error naming %q", err, tt.want)
			}
			if c := connect.CodeOf(err); c != connect.CodeFailedPrecondition && c != connect.CodeInvalidArgument && c != connect.CodeDeadlineExceeded {
				t.Fatalf("apply: code %v (%v)", c, err)
			}
		})
	}

	// A middleware that never returns: the read fails at the plugin's timeout, and the
	// server serves the next reads (of another feature, and of this one, again bounded).
	loop := plugin("loop", "loop", "middleware", "  limits: {timeout: 300ms}\n") + `---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: stuck, namespace: bad}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  timeout: 5s
  keys: [id]
  middlewares: [{plugin: loop, function: loop, stages: [preGet]}]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: fine, namespace: bad}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [id]
`
	e.apply(loop, map[string][]byte{"m.wasm": hostile("loop")}, "")
	for range 2 {
		start := time.Now()
		_, err := e.get("bad.stuck", map[string]string{"id": "1"})
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded || !strings.Contains(err.Error(), "bad.loop") {
			t.Fatalf("a looping middleware: %v", err)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Fatalf("the looping middleware held the read %v", took)
		}
		if _, err := e.get("bad.fine", map[string]string{"id": "1"}); err != nil {
			t.Fatalf("the server after a looping plugin: %v", err)
		}
	}

	// A huge output and memory growth are capped: the call fails, or returns within the
	// caps; the process is unharmed.
	e.apply(plugin("huge", "huge", "middleware", "  limits: {outputBytes: 1024}\n"), map[string][]byte{"m.wasm": hostile("huge_output")}, "")
	out, err := e.c.registry.CallPlugin(context.Background(), connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "bad.huge", Function: "huge"}))
	if err == nil && len(out.Msg.Output) > 1024 {
		t.Fatalf("a huge output: %d bytes through a 1 KiB cap", len(out.Msg.Output))
	}
	t.Logf("a huge output: %v", err)
	e.apply(plugin("grow", "grow_until_fail", "middleware", "  limits: {memoryPages: 32}\n"), map[string][]byte{"m.wasm": hostile("memory")}, "")
	out, err = e.c.registry.CallPlugin(context.Background(), connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "bad.grow", Function: "grow_until_fail"}))
	t.Logf("memory growth: %v, %v", out, err)
	if _, err := e.get("bad.fine", map[string]string{"id": "1"}); err != nil {
		t.Fatalf("the server after hostile plugins: %v", err)
	}
}
