//go:build unix

package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/internal/redistest"
)

// geoAPI is a loopback HTTP server standing in for a third-party geo-IP API: GET
// /lookup?ip=… answers {"country": …}.
func geoAPI(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var asked atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		fmt.Fprintf(w, `{"country":%q}`, map[string]string{"1.2.3.4": "FR", "5.6.7.8": "JP"}[r.URL.Query().Get("ip")])
	}))
	t.Cleanup(api.Close)
	return api, &asked
}

// geoManifest is examples/plugins/geoip/geoip.yaml with its endpoint set to api's, written
// next to the example's module.
func geoManifest(t *testing.T, api *httptest.Server) string {
	t.Helper()
	src := filepath.Join(repoRoot, "examples", "plugins", "geoip")
	data, err := os.ReadFile(filepath.Join(src, "geoip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "http://127.0.0.1:8089/lookup", api.URL+"/lookup", 1)
	if doc == string(data) {
		t.Fatal("examples/plugins/geoip/geoip.yaml no longer has the endpoint this test replaces")
	}
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join(src, "geoip.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"geoip.yaml": []byte(doc), "geoip.wasm": wasm} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "geoip.yaml")
}

// TestPluginExamples: `osprey serve` with the plugin policy flags; the example plugins
// applied with `osprey apply` from examples/plugins (built from AssemblyScript sources in
// CI), and every role used through the CLI: the mask encoder in a selector, the validate
// middleware refusing a write, the geoip connector computing a feature from a loopback HTTP
// API and caching it; `osprey plugin call` on the server's plugin; a plugin asking for a
// host the operator does not allow is refused at apply, naming the field.
func TestPluginExamples(t *testing.T) {
	api, asked := geoAPI(t)
	s := startServer(t, t.TempDir(), "--plugin-allowed-hosts", "127.0.0.1", "--plugin-max-timeout", "5s")
	out := s.mustCLI(t, "apply", "-f", "examples/plugins/plugins.yaml")
	for _, want := range []string{"plugin pii.mask created", "plugin pii.validate created", "feature crm.email created", "feature payments.transfer created"} {
		if !strings.Contains(out, want) {
			t.Fatalf("apply printed %q, want %q", out, want)
		}
	}
	s.mustCLI(t, "apply", "-f", geoManifest(t, api))

	s.mustCLI(t, "set", "crm.email", "user_id=u1", "alice@example.com")
	if out := s.mustCLI(t, "get", "crm.email[pii.mask]", "user_id=u1"); !strings.Contains(out, "a****@example.com") {
		t.Errorf("get crm.email[pii.mask] printed %q", out)
	}
	if res := s.cli(t, "set", "payments.transfer", "account_id=a1", "25000"); res.code == 0 || !strings.Contains(res.stderr, "exceeds max 10000") {
		t.Errorf("set payments.transfer 25000 through validate: %v", res)
	}
	s.mustCLI(t, "set", "payments.transfer", "account_id=a1", "-5")
	if out := s.mustCLI(t, "get", "payments.transfer", "account_id=a1"); !strings.HasPrefix(out, "payments.transfer = 0 ") {
		t.Errorf("payments.transfer after -5: %q", out)
	}
	for range 3 {
		if out := s.mustCLI(t, "get", "geo.country", "ip=1.2.3.4"); !strings.HasPrefix(out, `geo.country = "FR" `) {
			t.Fatalf("get geo.country printed %q", out)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the API was asked %d times for one fresh value, want 1", n)
	}
	if res := pluginCall(t, s, "pii.mask", "encode", `{"version":1,"primitive":"string","value":"bob@example.com"}`); strings.TrimSpace(res.stdout) != `{"value":"b**@example.com"}` {
		t.Errorf("plugin call pii.mask encode: %v", res)
	}
	if out := s.mustCLI(t, "features"); !strings.Contains(out, "pii.mask") || !strings.Contains(out, "builder=plugin(geo.geoip/compute)") {
		t.Errorf("features does not show the plugins:\n%s", out)
	}

	// A host the operator does not allow.
	dir := t.TempDir()
	doc := strings.Replace(string(must(os.ReadFile(geoManifest(t, api)))), "allowedHosts: [127.0.0.1]", "allowedHosts: [api.example.com]", 1)
	doc = strings.Replace(doc, "module: geoip.wasm", "module: "+filepath.Join(repoRoot, "examples/plugins/geoip/geoip.wasm"), 1)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := s.cli(t, "apply", "-f", bad); res.code == 0 || !strings.Contains(res.stderr, "spec.allowedHosts[0]") {
		t.Errorf("apply of a plugin asking for a host the operator does not allow: %v", res)
	}
}

// pluginCall runs `osprey plugin call --addr URL PLUGIN FUNCTION INPUT` against s.
func pluginCall(t *testing.T, s *ospreyServer, plugin, fn, input string) cliResult {
	t.Helper()
	return runCLI(t, cliTimeout, "plugin", "call", "--addr", s.url, plugin, fn, input)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestReplicasSharePlugins: two `osprey serve` over one Redis (registry and state): a
// plugin and the features naming it, applied on one, serve on the other; a replica started
// later has them; deleted on one, the plugin is gone on the other.
func TestReplicasSharePlugins(t *testing.T) {
	if !stateRedisAvailable(t) {
		t.Skip("the redis state provider is not in this binary")
	}
	srv := redistest.Standalone(t)
	flags := []string{"--registry", "redis", "--registry-config", "addrs=" + srv.Addr(), "--state", "redis", "--state-config", "addrs=" + srv.Addr()}
	a := startServer(t, t.TempDir(), flags...)
	b := startServer(t, t.TempDir(), flags...)
	a.mustCLI(t, "apply", "-f", "examples/plugins/plugins.yaml")
	a.mustCLI(t, "set", "crm.email", "user_id=u1", "alice@example.com")

	ctx := context.Background()
	cb := b.api(protocolNamed("connect"), "")
	start := time.Now()
	for {
		res, err := cb.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "crm.email[pii.mask]", Keys: map[string]string{"user_id": "u1"}}))
		if err == nil && res.Msg.GetValue().GetStringValue() == "a****@example.com" {
			break
		}
		if time.Since(start) > convergeBound {
			t.Fatalf("the other replica does not serve the plugin within %v: %v, %v", convergeBound, res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the other replica served the plugin's encoding after %v", time.Since(start).Round(time.Millisecond))
	if res := b.cli(t, "set", "payments.transfer", "account_id=a1", "25000"); res.code == 0 || !strings.Contains(res.stderr, "exceeds max 10000") {
		t.Errorf("the middleware plugin on the other replica: %v", res)
	}
	late := startServer(t, t.TempDir(), flags...)
	if res := pluginCall(t, late, "pii.mask", "encode", `{"version":1,"primitive":"string","value":"bob@example.com"}`); strings.TrimSpace(res.stdout) != `{"value":"b**@example.com"}` {
		t.Errorf("plugin call on a replica started later: %v", res)
	}

	for _, name := range []string{"crm.email", "pii.mask"} {
		a.mustCLI(t, "delete", name)
	}
	start = time.Now()
	for {
		_, err := cb.registry.CallPlugin(ctx, connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: "pii.mask", Function: "encode", Input: []byte(`{"version":1,"value":"x"}`)}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			break
		}
		if time.Since(start) > convergeBound {
			t.Fatalf("the plugin deleted on one replica is still on the other after %v: %v", convergeBound, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the delete reached the other replica after %v", time.Since(start).Round(time.Millisecond))
}
