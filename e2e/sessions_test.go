//go:build unix

package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/examples"
	"github.com/osprey-ml/osprey/internal/redistest"
)

// exampleDir writes an example — its manifest (with old replaced by new, when old is not
// "") and its prebuilt modules — into a temporary directory, and returns the manifest's
// path.
func exampleDir(t *testing.T, manifest, old, new string, modules ...string) string {
	t.Helper()
	dir := t.TempDir()
	m, err := examples.Manifests.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	text := string(m)
	if old != "" {
		if text = strings.Replace(text, old, new, 1); text == string(m) {
			t.Fatalf("%s no longer has %q", manifest, old)
		}
	}
	for _, mod := range modules {
		b, err := examples.Module(manifest, mod)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, mod), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// getValue returns `osprey get`'s value of selector for user, or "absent".
func getValue(t *testing.T, s *ospreyServer, selector, user string) string {
	t.Helper()
	out := s.mustCLI(t, "get", selector, "user_id="+user)
	if strings.Contains(out, "absent") {
		return "absent"
	}
	v, _, ok := strings.Cut(strings.TrimPrefix(out, selector+" = "), "  (")
	if !ok {
		t.Fatalf("get %s printed %q", selector, out)
	}
	return v
}

func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > convergeBound+20*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// TestSessionsInDev: `osprey dev` serves examples/sessions from the binary: clicks count in
// the session (its timer is 30 minutes away).
func TestSessionsInDev(t *testing.T) {
	dir := t.TempDir()
	s, _ := startDev(t, dir)
	rows := filepath.Join(dir, "clicks.jsonl")
	if err := os.WriteFile(rows, []byte("{\"user_id\":\"u1\"}\n{\"user_id\":\"u1\"}\n{\"user_id\":\"u2\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := s.mustCLI(t, "ingest", "sessions.clicks", rows); !strings.Contains(out, "ingested 3 rows") {
		t.Fatalf("ingest printed %q", out)
	}
	if v := getValue(t, s, "sessions.clicks", "u1"); v != "2" {
		t.Fatalf("sessions.clicks of u1 = %s, want 2", v)
	}
	if v := getValue(t, s, "sessions.completed", "u1"); v != "absent" {
		t.Fatalf("sessions.completed of u1 = %s before any session ended", v)
	}
	// A dry run shows the storage the click would commit and the timer it would arm.
	out := s.mustCLI(t, "dry-run", "sessions.clicks", `{"user_id":"u1"}`)
	for _, want := range []string{"would be 3", "storage clicks would be 3", `would send "end" to sessions.clicks map[user_id:u1] at `, `(token "end")`} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run printed %q, want it to say %q", out, want)
		}
	}
	if v := getValue(t, s, "sessions.clicks", "u1"); v != "2" {
		t.Fatalf("after the dry run sessions.clicks of u1 = %s, want 2 (nothing written)", v)
	}
}

// TestSessionsOnRedisReplicas: two `osprey serve` replicas over one Redis (registry and
// state) run examples/velocity and examples/sessions, the latter with a one-second
// inactivity period; clicks go to either
// replica; every user's session ends once — each timer fires once across the replicas —
// and its length reaches both fan-out features, read alike on both replicas.
func TestSessionsOnRedisReplicas(t *testing.T) {
	if !stateRedisAvailable(t) {
		t.Skip("the redis state provider is not in this binary")
	}
	srv := redistest.Standalone(t)
	flags := []string{"--registry", "redis", "--registry-config", "addrs=" + srv.Addr(), "--state", "redis", "--state-config", "addrs=" + srv.Addr()}
	a := startServer(t, t.TempDir(), flags...)
	b := startServer(t, t.TempDir(), flags...)
	a.mustCLI(t, "apply", "-f", exampleDir(t, "sessions/features.yaml", "inactivity: 30m", "inactivity: 1s", "session.wasm", "completed.wasm"))
	a.mustCLI(t, "apply", "-f", exampleDir(t, "velocity/features.yaml", "", "", "since_last.wasm", "session_txns.wasm"))

	for _, s := range []*ospreyServer{a, b} { // the last features applied have reached both
		eventually(t, "the examples to reach "+s.addr, func() bool {
			for _, sel := range []string{"sessions.clicks", "sessions.completed", "sessions.avg_seconds"} {
				if s.cli(t, "get", sel, "user_id=x").code != 0 {
					return false
				}
			}
			return s.cli(t, "get", "velocity.session_txns", "card_id=x").code == 0 &&
				s.cli(t, "get", "velocity.since_last", "card_id=x").code == 0
		})
	}
	// examples/velocity on Redis: storage per card, across replicas (rows without ts take
	// the server's time, so the values are fresh).
	txns := filepath.Join(t.TempDir(), "txns.jsonl")
	if err := os.WriteFile(txns, []byte("{\"card_id\":\"c1\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.mustCLI(t, "ingest", "velocity.transactions", txns)
	b.mustCLI(t, "ingest", "velocity.transactions", txns)
	for _, s := range []*ospreyServer{a, b} {
		if out := s.mustCLI(t, "get", "velocity.session_txns", "card_id=c1"); !strings.HasPrefix(out, "velocity.session_txns = 2 ") {
			t.Errorf("velocity.session_txns on %s: %q, want 2 (one transaction through each replica)", s.addr, out)
		}
		if out := s.mustCLI(t, "get", "velocity.since_last", "card_id=c1"); strings.Contains(out, "absent") {
			t.Errorf("velocity.since_last on %s: %q, want the interval between the two", s.addr, out)
		}
	}
	const users = 6
	dir := t.TempDir()
	for i, s := range []*ospreyServer{a, b, a} { // three clicks per user, alternating replicas
		var rows strings.Builder
		for u := range users {
			fmt.Fprintf(&rows, "{\"user_id\":\"u%d\"}\n", u)
		}
		path := filepath.Join(dir, fmt.Sprint("clicks", i, ".jsonl"))
		if err := os.WriteFile(path, []byte(rows.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		s.mustCLI(t, "ingest", "sessions.clicks", path)
	}
	took := eventually(t, "every session to end", func() bool {
		for u := range users {
			if getValue(t, b, "sessions.completed", fmt.Sprint("u", u)) != "1" {
				return false
			}
		}
		return true
	})
	t.Logf("every session ended %v after the last click (inactivity 1s)", took)
	time.Sleep(2 * time.Second) // a second firing, if there were one, would show by now
	for u := range users {
		user := fmt.Sprint("u", u)
		for _, s := range []*ospreyServer{a, b} {
			if v := getValue(t, s, "sessions.completed", user); v != "1" {
				t.Errorf("sessions.completed of %s = %s on %s, want 1: the timer fired more than once", user, v, s.addr)
			}
			if v := getValue(t, s, "sessions.clicks", user); v != "0" {
				t.Errorf("sessions.clicks of %s = %s on %s, want 0 (ended)", user, v, s.addr)
			}
			if v := getValue(t, s, "sessions.avg_seconds", user); v == "absent" {
				t.Errorf("sessions.avg_seconds of %s is absent on %s", user, s.addr)
			}
		}
	}
}
