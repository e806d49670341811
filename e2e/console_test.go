//go:build unix

package e2e_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/examples"
)

// consoleTestTimeout bounds the browser tests (console/web/test) as a whole.
const consoleTestTimeout = 5 * time.Minute

// TestConsoleBrowser runs the web console's browser tests (console/web/test/console.test.mjs:
// Debian's Chromium driven by playwright-core) against the console that `osprey serve`
// serves at /: reading, watching, applying (the dry-run diff, then the apply) and server
// errors, over the same origin and from a second origin (a static server of console/dist,
// calling the API with CORS), and with bearer tokens. Without node, chromium or
// console/web/node_modules (npm ci) it skips, or fails under CI=true.
func TestConsoleBrowser(t *testing.T) {
	web := filepath.Join(repoRoot, "console", "web")
	node, chromium := consolePrereqs(t, web)

	// The second origin: the same built files, from a plain static server.
	static := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(repoRoot, "console", "dist"))))
	t.Cleanup(static.Close)

	const writeToken, readToken = "console-write-token", "console-read-token"
	plain := startServer(t, t.TempDir(), "--cors-origins", static.URL)
	tokens := startServer(t, t.TempDir(), "--tokens", writeToken+":write,"+readToken+":read", "--cors-origins", static.URL)

	wasm, err := examples.Module("fraud/features.yaml", "amount.wasm")
	if err != nil {
		t.Fatal(err)
	}
	wasmPath := filepath.Join(t.TempDir(), "amount.wasm")
	if err := os.WriteFile(wasmPath, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	// Screenshots of failing tests outlive the test's temporary directories.
	shots, err := os.MkdirTemp("", "osprey-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(shots)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), consoleTestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "test/console.test.mjs")
	cmd.Dir = web
	cmd.Env = append(os.Environ(),
		"OSPREY_URL="+plain.url,
		"OSPREY_STATIC_URL="+static.URL,
		"OSPREY_TOKEN_URL="+tokens.url,
		"OSPREY_WRITE_TOKEN="+writeToken,
		"OSPREY_READ_TOKEN="+readToken,
		"OSPREY_WASM="+wasmPath,
		"CHROMIUM="+chromium,
		"SCREENSHOT_DIR="+shots,
		"NO_COLOR=1",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the browser tests did not finish within %v; output:\n%s", consoleTestTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("the browser tests failed (%v); screenshots of failing tests in %s; output:\n%s", err, shots, out.String())
	}
	t.Logf("browser tests passed in %v:\n%s", time.Since(start).Round(time.Millisecond), tail(out.String(), 12))
}

// consolePrereqs finds node and Chromium and checks that console/web's packages are
// installed; without them it skips the test, or fails it under CI=true (.ci/run installs
// them).
func consolePrereqs(t *testing.T, web string) (node, chromium string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (Node.js 20 or later)")
	}
	chromium = os.Getenv("OSPREY_CHROMIUM")
	if chromium == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				chromium = p
				break
			}
		}
	}
	if chromium == "" {
		missing = append(missing, "chromium (apt-get install chromium, or set OSPREY_CHROMIUM)")
	}
	if _, err := os.Stat(filepath.Join(web, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "console/web/node_modules (run: cd console/web && npm ci)")
	}
	if len(missing) == 0 {
		return node, chromium
	}
	msg := "the console's browser tests need " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (.ci/run installs chromium and runs npm ci in console/web)")
	}
	t.Skip(msg)
	return "", ""
}
