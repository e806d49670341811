package extism_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/host/extism"
)

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func module(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t testing.TB, p extism.Policy, s extism.Spec) *extism.Plugin {
	t.Helper()
	pl, err := extism.Load(ctx, p, s, quiet)
	if err != nil {
		t.Fatalf("Load %s: %v", s.Name, err)
	}
	t.Cleanup(func() { pl.Close(ctx) })
	return pl
}

// TestEcho: a plugin written against the kernel ABI by hand runs, from a pool, concurrently.
func TestEcho(t *testing.T) {
	pl := load(t, extism.DefaultPolicy, extism.Spec{Name: "echo", Module: module(t, "testdata/echo.wasm"), Functions: []string{"echo"}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				in := []byte(fmt.Sprintf(`{"w":%d,"i":%d,"pad":%q}`, w, i, strings.Repeat("x", i*13)))
				out, err := pl.Call(ctx, "echo", in)
				if err != nil || !bytes.Equal(out, in) {
					t.Errorf("echo(%q) = %q, %v", in, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := pl.Call(ctx, "nope", nil); !errors.Is(err, extism.ErrNoFunction) || !strings.Contains(err.Error(), "echo") {
		t.Fatalf("unknown function: %v", err)
	}
	if _, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "echo", Module: module(t, "testdata/echo.wasm"), Functions: []string{"echo", "mask"}}, quiet); !errors.Is(err, extism.ErrNoFunction) ||
		!strings.Contains(err.Error(), `spec.functions: "mask"`) {
		t.Fatalf("a declared function it lacks: %v", err)
	}
}

// TestPluginErrors: a plugin's own error, and what the sandbox stops — each a clear, coded
// error naming the plugin and the function, the host unharmed, the next call served.
func TestPluginErrors(t *testing.T) {
	tests := []struct {
		name, file, fn string
		limits         extism.Limits
		want           error
		msg            string
	}{
		{"its own error", "testdata/fail.wasm", "fail", extism.Limits{}, extism.ErrFailed, "fail"},
		{"an endless loop", "testdata/hostile/loop.wasm", "loop", extism.Limits{Timeout: 100 * time.Millisecond}, extism.ErrTimeout, "timeout"},
		// A generous timeout: under the race detector on a busy machine the stack takes seconds to run out.
		{"unbounded recursion", "testdata/hostile/recursion.wasm", "recurse", extism.Limits{Timeout: 10 * time.Second}, extism.ErrTrap, "recurse"},
		{"memory growth", "testdata/hostile/memory.wasm", "grow_until_fail", extism.Limits{MemoryPages: 32, Timeout: 2 * time.Second}, nil, ""},
		{"a huge output", "testdata/hostile/huge_output.wasm", "huge", extism.Limits{MemoryPages: 256}, nil, ""},
		{"an HTTP request it did not declare", "testdata/hostile/http_denied.wasm", "fetch", extism.Limits{}, extism.ErrDenied, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := load(t, extism.DefaultPolicy, extism.Spec{Name: "h", Module: module(t, tc.file), Limits: tc.limits})
			start := time.Now()
			out, err := pl.Call(ctx, tc.fn, []byte("{}"))
			t.Logf("%s: %d bytes, %v (after %v)", tc.fn, len(out), err, time.Since(start).Round(time.Millisecond))
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Call = %v, want %v", err, tc.want)
			}
			if tc.want == nil && err == nil && len(out) > 1<<20 {
				t.Fatalf("%d bytes of output got through the 1 MiB default", len(out))
			}
			if err != nil && !strings.Contains(err.Error(), "plugin h: "+tc.fn) {
				t.Fatalf("the error does not name the plugin and function: %v", err)
			}
			if tc.msg != "" && !strings.Contains(strings.ToLower(err.Error()), tc.msg) {
				t.Fatalf("Call = %v, want it to say %q", err, tc.msg)
			}
		})
	}
	// A module declaring more memory than its limit does not load.
	if _, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "big", Module: module(t, "testdata/hostile/bigmem.wasm"),
		Limits: extism.Limits{MemoryPages: 64}}, quiet); err == nil {
		t.Fatal("a module declaring 60,000 pages loaded under a 64-page limit")
	} else {
		t.Logf("bigmem: %v", err)
	}
}

// TestLoopDoesNotPinThePool: a plugin stuck in a loop is stopped at its timeout, its
// instance discarded, and the plugin's next calls are served.
func TestLoopDoesNotPinThePool(t *testing.T) {
	p := extism.DefaultPolicy
	p.Instances = 2
	pl := load(t, p, extism.Spec{Name: "loop", Module: module(t, "testdata/hostile/loop.wasm"), Limits: extism.Limits{Timeout: 50 * time.Millisecond}})
	for range 5 {
		if _, err := pl.Call(ctx, "loop", nil); !errors.Is(err, extism.ErrTimeout) {
			t.Fatalf("loop: %v", err)
		}
	}
	// The caller's deadline bounds a call too.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := pl.Call(cctx, "loop", nil); !errors.Is(err, extism.ErrTimeout) {
		t.Fatalf("loop under the caller's deadline: %v", err)
	}
	pl.Close(ctx)
	if _, err := pl.Call(ctx, "loop", nil); !errors.Is(err, extism.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestHTTPAllowedHost: a plugin may reach the host it declared (and the policy allows), not
// another; a response larger than its limit is refused.
func TestHTTPAllowedHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"country":"FR"}`)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	p := extism.DefaultPolicy
	p.AllowedHosts = []string{u.Hostname()}
	// http_denied.wasm fetches http://example.invalid/: refused even with hosts declared.
	pl := load(t, p, extism.Spec{Name: "fetcher", Module: module(t, "testdata/hostile/http_denied.wasm"), AllowedHosts: []string{u.Hostname()}})
	if _, err := pl.Call(ctx, "fetch", nil); !errors.Is(err, extism.ErrDenied) || !strings.Contains(err.Error(), "example.invalid") {
		t.Fatalf("a host it did not declare: %v", err)
	}
	if _, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "fetcher", Module: module(t, "testdata/hostile/http_denied.wasm"),
		AllowedHosts: []string{"example.invalid"}}, quiet); !errors.Is(err, extism.ErrDenied) || !strings.Contains(err.Error(), "spec.allowedHosts[0]") {
		t.Fatalf("a host the policy does not allow: %v", err)
	}
}

// TestStartLoop: a start function that never ends is stopped at the plugin's timeout, at
// load: instantiation is bounded like a call.
func TestStartLoop(t *testing.T) {
	start := time.Now()
	_, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "start", Module: module(t, "testdata/hostile/start_loop.wasm"),
		Limits: extism.Limits{Timeout: 100 * time.Millisecond}}, quiet)
	if !errors.Is(err, extism.ErrTimeout) {
		t.Fatalf("Load = %v, want ErrTimeout", err)
	}
	t.Logf("stopped after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
