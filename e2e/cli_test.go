//go:build unix

package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startDev starts `osprey dev` in dir, a directory outside the checkout (the examples
// must come from the binary), and waits until it prints its banner. It returns the server
// and its standard output. The banner must come only once GET /readyz answers 200.
func startDev(t *testing.T, dir string) (*ospreyServer, *syncBuffer) {
	t.Helper()
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &ospreyServer{addr: addr, url: "http://" + addr, dataDir: filepath.Join(dir, ".osprey"),
		log: &syncBuffer{}, exited: make(chan struct{}), clients: map[string]*http.Client{}}
	stdout := &syncBuffer{}
	s.cmd = exec.Command(ospreyBin, "-log-format", "json", "dev", "--listen", addr)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = stdout, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("osprey dev on %s, log tail:\n%s", s.addr, tail(s.log.String(), logTailLines))
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	readyz := func() int {
		res, err := hc.Get(s.url + "/readyz")
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	deadline := time.Now().Add(applyTimeout)
	for {
		banner := stdout.String() // read before /readyz: the banner follows readiness
		if strings.Contains(banner, "Osprey is serving") {
			if code := readyz(); code != http.StatusOK {
				t.Fatalf("osprey dev printed its banner, but GET /readyz = %d:\n%s", code, banner)
			}
			return s, stdout
		}
		select {
		case <-s.exited:
			t.Fatalf("osprey dev exited before it was ready (%v); log:\n%s", s.waitErr, tail(s.log.String(), logTailLines))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("osprey dev printed no banner within %v; log:\n%s", applyTimeout, tail(s.log.String(), logTailLines))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFirstContact runs what a new user does: osprey dev from a directory that is not a
// checkout, the commands its banner suggests, the CLI's newer commands (get-many, watch,
// delete) and its error messages.
func TestFirstContact(t *testing.T) {
	dir := t.TempDir()
	s, stdout := startDev(t, dir)

	t.Run("banner", func(t *testing.T) {
		out := stdout.String()
		for _, want := range []string{"with the examples applied", "osprey ingest fraud.transactions -", "fresh: younger than"} {
			if !strings.Contains(out, want) {
				t.Errorf("the banner lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "examples/fraud/transactions.jsonl") {
			t.Errorf("outside a checkout, the banner names a file that is not there:\n%s", out)
		}
		if res, err := http.Get(s.url + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %v %v", res, err)
		}
		// The web console at / and the Prometheus metrics at /metrics.
		for path, want := range map[string]string{"/": "<html", "/metrics": "osprey_rpc_duration_seconds"} {
			res, err := http.Get(s.url + path)
			if err != nil {
				t.Errorf("GET %s: %v", path, err)
				continue
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), strings.ToLower(want)) {
				t.Errorf("GET %s: %d, want %q in:\n%.300s", path, res.StatusCode, want, body)
			}
		}
	})

	rows := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(rows, []byte(`{"card_id":"c1","amount_cents":1250,"status":"approved"}

{"card_id":"c1","amount_cents":4000,"status":"approved"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("ingest-get", func(t *testing.T) {
		if out := s.mustCLI(t, "ingest", "fraud.transactions", rows); !strings.Contains(out, "ingested 2 rows") {
			t.Errorf("ingest printed %q", out)
		}
		if out := s.mustCLI(t, "get", "fraud.amount+avg", "card_id=c1"); !strings.HasPrefix(out, "fraud.amount+avg = 26.25  (fresh, at ") {
			t.Errorf("get printed %q", out)
		}
	})

	t.Run("plugins", func(t *testing.T) {
		// osprey dev applies examples/plugins/plugins.yaml: an encoder and a middleware plugin.
		s.mustCLI(t, "set", "crm.email", "user_id=u1", "alice@example.com")
		if out := s.mustCLI(t, "get", "crm.email[pii.mask]", "user_id=u1"); !strings.Contains(out, "a****@example.com") {
			t.Errorf("get crm.email[pii.mask] printed %q", out)
		}
		if res := s.cli(t, "set", "payments.transfer", "account_id=a1", "25000"); res.code == 0 || !strings.Contains(res.stderr, "exceeds max 10000") {
			t.Errorf("set payments.transfer 25000 through the validate plugin: %v", res)
		}
	})

	t.Run("get-many", func(t *testing.T) {
		s.mustCLI(t, "set", "fraud.limit", "card_id=c1", "500")
		out := s.mustCLI(t, "get-many", "fraud.amount+sum,fraud.limit", "card_id=c1", "card_id=c2")
		ls := lines(out)
		if len(ls) != 3 {
			t.Fatalf("get-many printed %d lines, want a header and 2 rows:\n%s", len(ls), out)
		}
		want := [][]string{
			{"ENTITY", "fraud.amount+sum", "fraud.limit"},
			{"card_id=c1", "52.5", "(fresh)", "500", "(fresh)"},
			{"card_id=c2", "absent", "absent"},
		}
		for i, w := range want {
			if got := strings.Fields(ls[i]); strings.Join(got, " ") != strings.Join(w, " ") {
				t.Errorf("get-many line %d = %q, want the fields %q", i+1, ls[i], w)
			}
		}
		js := s.mustCLI(t, "get-many", "fraud.limit", "card_id=c1", "card_id=c2", "--output", "json")
		var m struct {
			Results []struct{ Features []map[string]any }
		}
		if err := json.Unmarshal([]byte(js), &m); err != nil || len(m.Results) != 2 {
			t.Errorf("get-many --output json: %v\n%s", err, js)
		}
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		out := &syncBuffer{}
		cmd := exec.CommandContext(ctx, ospreyBin, "watch", "fraud.limit", "card_id=c3", "--addr", s.url)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Write until the stream shows a write: the subscription starts some time after the
		// process does.
		deadline := time.Now().Add(receiveTimeout)
		for i := 1; !strings.Contains(out.String(), "set fraud.limit card_id=c3 = "); i++ {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("osprey watch printed no change within %v:\n%s", receiveTimeout, out.String())
			}
			s.mustCLI(t, "set", "fraud.limit", "card_id=c3", strconv.Itoa(i))
			s.mustCLI(t, "set", "fraud.limit", "card_id=c4", "1") // another entity: not shown
			time.Sleep(100 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("osprey watch after Ctrl-C: %v; want exit 0\n%s", err, out.String())
		}
		if strings.Contains(out.String(), "card_id=c4") {
			t.Errorf("osprey watch card_id=c3 printed another entity's change:\n%s", out.String())
		}
	})

	t.Run("delete", func(t *testing.T) {
		if out := s.mustCLI(t, "delete", "fraud.utilisation"); out != "deleted fraud.utilisation\n" {
			t.Errorf("delete printed %q", out)
		}
		for _, args := range [][]string{{"delete", "fraud.utilisation"}, {"get", "fraud.utilisation", "card_id=c1"}} {
			if res := s.cli(t, args[0], args[1:]...); res.code != 1 || !strings.Contains(res.stderr, "not_found") {
				t.Errorf("osprey %s after delete: %v", strings.Join(args, " "), res)
			}
		}
	})

	t.Run("apply-dry-run", func(t *testing.T) {
		// --dry-run reports what would happen and changes nothing.
		m := filepath.Join(dir, "dry.yaml")
		if err := os.WriteFile(m, []byte(`apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: dry, namespace: e2e}
spec: {primitive: int, freshness: 1h, staleness: 24h, keys: [id]}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := s.mustCLI(t, "apply", "--dry-run", "-f", m); out != "feature e2e.dry would be created (dry run)\n" {
			t.Errorf("apply --dry-run printed %q", out)
		}
		if res := s.cli(t, "get", "e2e.dry", "id=1"); res.code == 0 || !strings.Contains(res.stderr, "not found") {
			t.Errorf("after a dry run, get: %v", res)
		}
	})

	t.Run("at-is-a-flag", func(t *testing.T) {
		// A feature with a key named at: at=… is a key, --at the timestamp.
		m := filepath.Join(dir, "visits.yaml")
		if err := os.WriteFile(m, []byte(`apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: visits, namespace: e2e}
spec: {primitive: int, freshness: 1h, staleness: 24h, keys: [at]}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		s.mustCLI(t, "apply", "-f", m)
		at := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		s.mustCLI(t, "set", "e2e.visits", "at=home", "3", "--at", at)
		if out := s.mustCLI(t, "get", "e2e.visits", "at=home"); out != "e2e.visits = 3  (fresh, at "+at+")\n" {
			t.Errorf("get printed %q", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"set", "fraud.limit", "card_id=c1"}, "missing the value after the keys"},
			{[]string{"set", "fraud.limit", "cardid=c1", "5"}, `unknown key "cardid" (want card_id)`},
			{[]string{"set", "fraud.limt", "card_id=c1", "5"}, "feature not found: fraud.limt (did you mean fraud.limit?)"},
			{[]string{"get", "fraud.amont+avg", "card_id=c1"}, "(did you mean fraud.amount?)"},
			{[]string{"dry-run", "fraud.amount", `{"card_id":"c9"}`}, `invalid_argument: row: `},
			{[]string{"dry-run", "fraud.amount", "card_id:c9"}, `"card_id:c9" is neither a row`},
			{[]string{"dry-run", "fraud.amount", `{"card_id":`}, "row: not JSON"},
		} {
			res := s.cli(t, tc.args[0], tc.args[1:]...)
			if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("osprey %s: %v\nwant exit 1 and %q", strings.Join(tc.args, " "), res, tc.want)
			}
		}
		bad := filepath.Join(dir, "bad.jsonl")
		if err := os.WriteFile(bad, []byte("{\"card_id\":\"c1\",\"amount_cents\":1,\"status\":\"approved\"}\n\n{\"card_id\":\"c1\",\"amount_cents\":\"x\",\"status\":\"approved\"}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if res := s.cli(t, "ingest", "fraud.transactions", bad); res.code != 1 || !strings.Contains(res.stderr, bad+":3: ") {
			t.Errorf("ingest of a bad third line: %v\nwant the row named %s:3", res, bad)
		}
		if strings.Contains(s.log.String(), `"level":"ERROR"`) {
			t.Errorf("the server logged an ERROR for a client's mistake:\n%s", tail(s.log.String(), logTailLines))
		}
	})
}

// TestCLIWithoutServer runs the commands that need no server.
func TestCLIWithoutServer(t *testing.T) {
	res := runCLI(t, cliTimeout, "validate", "examples") // recursive: the manifests are in subdirectories
	if res.code != 0 || !strings.Contains(res.stdout, "fraud.amount") || !strings.Contains(res.stdout, "shop.spend") {
		t.Errorf("osprey validate examples: %v", res)
	}
	res = runCLI(t, cliTimeout, "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "osprey ") || !strings.Contains(res.stdout, "go1.") {
		t.Errorf("osprey version: %v", res)
	}
}
