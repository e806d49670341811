package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const egressManifests = `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: alerts, namespace: fraud}
spec:
  type: webhook
  config: {url: "https://hooks.example.com/fraud", headers: {Authorization: "Bearer x"}, timeout: 5s}
---
apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: events, namespace: fraud}
spec:
  type: redis-stream
  config: {addrs: [127.0.0.1:1], stream: "fraud:events", maxLen: 1000}
`

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestValidateEgress: osprey validate checks an Egress's configuration with its type, as a
// server applying it would, and names the key at fault.
func TestValidateEgress(t *testing.T) {
	good := writeTemp(t, "egress.yaml", egressManifests)
	code, out, errOut := runCLI(t, "", "validate", good)
	if code != 0 || !strings.Contains(out, "fraud.alerts") || !strings.Contains(out, "type=webhook") || !strings.Contains(out, "type=redis-stream") {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
	bad := writeTemp(t, "bad.yaml", strings.Replace(egressManifests, "maxLen: 1000", "maxlen: 1000", 1))
	code, out, errOut = runCLI(t, "", "validate", bad)
	if code != 1 || !strings.Contains(out, "fraud.alerts") ||
		!strings.Contains(errOut, "bad.yaml: document 2 (line 8): egress fraud.events (redis-stream): invalid plugin config: spec.config.maxlen: unknown key (did you mean maxLen?)") {
		t.Fatalf("validate a bad egress: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// TestServeEgresses: osprey serve's stack applies Egress manifests to its egress set (the
// set the engine resolves through), deletes them, and refuses hosts --egress-allowed-hosts
// does not allow.
func TestServeEgresses(t *testing.T) {
	serve := func(t *testing.T, c *serveConfig) (*stack, string) {
		ctx, cancel := context.WithCancel(context.Background())
		e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
		s, err := newStack(ctx, e, c)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.server.Serve(ctx, ln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			s.close()
		})
		return s, "http://" + ln.Addr().String()
	}
	file := writeTemp(t, "egress.yaml", egressManifests)

	s, addr := serve(t, &serveConfig{State: "memory", Notifier: "memory", MemoryCeiling: "64Mi"})
	if code, out, errOut := runCLI(t, "", "apply", "--addr", addr, "-f", file); code != 0 || !strings.Contains(out, "egress fraud.alerts created") {
		t.Fatalf("apply: exit %d: %s%s", code, out, errOut)
	}
	if got := s.egresses.Names(); !slices.Equal(got, []string{"fraud.alerts", "fraud.events"}) {
		t.Fatalf("the stack's egresses: %v", got)
	}
	if _, err := s.egresses.Egress("fraud.alerts"); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "", "delete", "--addr", addr, "fraud.alerts"); code != 0 {
		t.Fatalf("delete: exit %d: %s", code, errOut)
	}
	if got := s.egresses.Names(); !slices.Equal(got, []string{"fraud.events"}) {
		t.Fatalf("after delete: %v", got)
	}

	_, addr = serve(t, &serveConfig{State: "memory", Notifier: "memory", MemoryCeiling: "64Mi", Egress: egressPolicyFlags{AllowedHosts: "*.example.com"}})
	code, _, errOut := runCLI(t, "", "apply", "--addr", addr, "-f", file)
	if code != 1 || !strings.Contains(errOut, `spec.config.addrs: host "127.0.0.1" is not allowed by this server's egress policy (it allows *.example.com`) {
		t.Fatalf("apply past the policy: exit %d: %s", code, errOut)
	}
}

func TestEgressPolicyFlags(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c serveConfig
	c.register(fs, "")
	t.Setenv("OSPREY_EGRESS_ALLOWED_HOSTS", "hooks.example.com, *.internal.example.net")
	if err := c.resolve(fs, ""); err != nil {
		t.Fatal(err)
	}
	p, err := c.Egress.policy()
	if err != nil || !slices.Equal(p.AllowedHosts, []string{"hooks.example.com", "*.internal.example.net"}) {
		t.Fatalf("policy = %+v, %v", p, err)
	}
	if p, err := (&egressPolicyFlags{}).policy(); err != nil || len(p.AllowedHosts) != 0 {
		t.Fatalf("no flag: %+v, %v", p, err)
	}
	for _, bad := range []string{"https://hooks.example.com", "hooks.example.com:443", "[a"} {
		if _, err := (&egressPolicyFlags{AllowedHosts: bad}).policy(); err == nil || !strings.HasPrefix(err.Error(), "egress-allowed-hosts: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
