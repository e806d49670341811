package extism_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/host/extism"
)

// request is the http_request JSON of a GET of u (testdata/host.wat's fetch takes it as its
// input).
func request(u string) []byte {
	b, _ := json.Marshal(map[string]any{"url": u, "method": "GET", "headers": map[string]string{"X-Test": "1"}})
	return b
}

// hostPlugin loads testdata/host.wasm allowed to reach hosts (declared and allowed by the
// policy alike).
func hostPlugin(t testing.TB, limits extism.Limits, hosts ...string) *extism.Plugin {
	t.Helper()
	p := extism.DefaultPolicy
	p.AllowedHosts = hosts
	return load(t, p, extism.Spec{Name: "host", Module: module(t, "testdata/host.wasm"), AllowedHosts: hosts, Limits: limits})
}

// TestHTTPRedirects: a redirect is followed only to a host the plugin may reach; one to
// another host is refused before anything is sent there.
func TestHTTPRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, "secret")
	}))
	defer other.Close()
	ou, _ := url.Parse(other.URL)
	// The same loopback server under another name: reachable, but not declared.
	otherURL := "http://localhost:" + ou.Port() + "/secret"

	var asked []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path+" "+r.Header.Get("X-Test"))
		mu.Unlock()
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, otherURL, http.StatusFound)
		case "/home":
			http.Redirect(w, r, "/final", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/final":
			fmt.Fprint(w, "final")
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)

	for _, declared := range []string{u.Hostname(), "127.0.0.*"} {
		t.Run(declared, func(t *testing.T) {
			if u.Hostname() != "127.0.0.1" && declared == "127.0.0.*" {
				t.Skip("the test server is not on 127.0.0.1")
			}
			pl := hostPlugin(t, extism.Limits{}, declared)
			if out, err := pl.Call(ctx, "fetch", request(srv.URL+"/home")); err != nil || string(out) != "final" {
				t.Fatalf("a redirect to the same host: %q, %v", out, err)
			}
			_, err := pl.Call(ctx, "fetch", request(srv.URL+"/away"))
			if !errors.Is(err, extism.ErrDenied) || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "localhost") {
				t.Fatalf("a redirect to a host it may not reach: %v", err)
			}
			t.Logf("refused: %v", err)
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the host it may not reach was asked %d times", n)
			}
			if _, err := pl.Call(ctx, "fetch", request(srv.URL+"/loop")); !errors.Is(err, extism.ErrTrap) || !strings.Contains(err.Error(), "redirects") {
				t.Fatalf("endless redirects: %v", err)
			}
			// Straight to the other host: refused too.
			if _, err := pl.Call(ctx, "fetch", request(otherURL)); !errors.Is(err, extism.ErrDenied) || elsewhere.Load() != 0 {
				t.Fatalf("a request to a host it may not reach: %v (asked %d times)", err, elsewhere.Load())
			}
			// Not http(s).
			if _, err := pl.Call(ctx, "fetch", request("file:///etc/passwd")); !errors.Is(err, extism.ErrDenied) {
				t.Fatalf("a file URL: %v", err)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 || asked[0] != "/home 1" {
		t.Fatalf("the server was asked %q (the plugin's headers sent?)", asked)
	}
}

// TestHTTPLimits: a response body over the plugin's limit fails the call with ErrLimit,
// with a Content-Length or without; a server slower than the plugin's timeout ends the call
// with ErrTimeout.
func TestHTTPLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 1024
		if r.URL.Path != "/fits" {
			n = 4096
		}
		switch r.URL.Path {
		case "/slow":
			<-r.Context().Done()
			return
		case "/chunked":
			for range n / 512 {
				w.Write(bytes.Repeat([]byte("c"), 512))
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.Write(bytes.Repeat([]byte("x"), n))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	pl := hostPlugin(t, extism.Limits{MaxHTTPResponseBytes: 2048, Timeout: 300 * time.Millisecond}, u.Hostname())
	if out, err := pl.Call(ctx, "fetch", request(srv.URL+"/fits")); err != nil || len(out) != 1024 {
		t.Fatalf("a response within the limit: %d bytes, %v", len(out), err)
	}
	for _, path := range []string{"/big", "/chunked"} {
		_, err := pl.Call(ctx, "fetch", request(srv.URL+path))
		if !errors.Is(err, extism.ErrLimit) || !strings.Contains(err.Error(), "2048") {
			t.Fatalf("%s: a response over the limit: %v", path, err)
		}
		t.Logf("%s: %v", path, err)
	}
	start := time.Now()
	if _, err := pl.Call(ctx, "fetch", request(srv.URL+"/slow")); !errors.Is(err, extism.ErrTimeout) {
		t.Fatalf("a server slower than the timeout: %v", err)
	} else if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a server slower than the timeout: the call took %v", took)
	}
	if out, err := pl.Call(ctx, "fetch", request(srv.URL+"/fits")); err != nil || len(out) != 1024 {
		t.Fatalf("after the failures: %d bytes, %v", len(out), err)
	}
}

// TestVars: var_set and var_get keep a value across an instance's calls; a value beyond the
// variables' limit fails the call with ErrLimit, and the plugin serves the next call.
func TestVars(t *testing.T) {
	p := extism.DefaultPolicy
	p.Instances = 1
	pl := load(t, p, extism.Spec{Name: "vars", Module: module(t, "testdata/host.wasm")})
	small := bytes.Repeat([]byte("s"), 1000)
	if _, err := pl.Call(ctx, "var_set", small); err != nil {
		t.Fatalf("var_set of 1000 bytes: %v", err)
	}
	if out, err := pl.Call(ctx, "var_get", nil); err != nil || !bytes.Equal(out, small) {
		t.Fatalf("var_get = %d bytes, %v", len(out), err)
	}
	// Replacing a value counts the new one, not both.
	fits := bytes.Repeat([]byte("f"), extism.MaxVarBytes-100)
	if _, err := pl.Call(ctx, "var_set", fits); err != nil {
		t.Fatalf("var_set of %d bytes: %v", len(fits), err)
	}
	_, err := pl.Call(ctx, "var_set", bytes.Repeat([]byte("b"), extism.MaxVarBytes+1))
	if !errors.Is(err, extism.ErrLimit) || !strings.Contains(err.Error(), "var_set") {
		t.Fatalf("var_set beyond the limit: %v", err)
	}
	t.Logf("beyond the limit: %v", err)
	// The failed call's instance is discarded (the guest trapped); a new one serves.
	if out, err := pl.Call(ctx, "var_get", nil); err != nil || len(out) != 0 {
		t.Fatalf("var_get after the failure = %d bytes, %v", len(out), err)
	}
	if _, err := pl.Call(ctx, "var_set", small); err != nil {
		t.Fatalf("var_set after the failure: %v", err)
	}
}

// TestLog: a plugin's log line reaches the host's logger, marked as the plugin's, its control
// characters escaped; get_log_level follows the logger's level.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), nil))
	pl, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "logger", Module: module(t, "testdata/host.wasm")}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close(ctx)
	if _, err := pl.Call(ctx, "log", []byte("hello\nlevel=ERROR msg=forged")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := buf.String()
	mu.Unlock()
	if !strings.Contains(got, "plugin=logger") || !strings.Contains(got, `line="hello·level=ERROR msg=forged"`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("logged %q", got)
	}
	// A logger above info: the plugin does not log (get_log_level says warn).
	buf.Reset()
	warn := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pl2, err := extism.Load(ctx, extism.DefaultPolicy, extism.Spec{Name: "logger", Module: module(t, "testdata/host.wasm")}, warn)
	if err != nil {
		t.Fatal(err)
	}
	defer pl2.Close(ctx)
	if _, err := pl2.Call(ctx, "log", []byte("hello")); err != nil || buf.Len() != 0 {
		t.Fatalf("logged %q, %v", buf.String(), err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestCloseDrains: Close does not break running calls. They finish, with their output;
// calls after Close, and calls waiting for an instance, get ErrClosed; idle instances are
// closed at once, the runtime once the last running call has returned; nothing is left
// running.
func TestCloseDrains(t *testing.T) {
	before := runtime.NumGoroutine()
	arrived := make(chan struct{}, 4)
	proceed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-proceed
		fmt.Fprint(w, "slow but done")
	}))
	u, _ := url.Parse(srv.URL)
	type result struct {
		out []byte
		err error
	}
	slowCall := func(pl *extism.Plugin) <-chan result {
		c := make(chan result, 1)
		go func() {
			out, err := pl.Call(ctx, "fetch", request(srv.URL))
			c <- result{out, err}
		}()
		return c
	}
	newPlugin := func(instances int) *extism.Plugin {
		p := extism.DefaultPolicy
		p.AllowedHosts = []string{u.Hostname()}
		p.Instances = instances
		pl, err := extism.Load(ctx, p, extism.Spec{Name: "slow", Module: module(t, "testdata/host.wasm"), AllowedHosts: []string{u.Hostname()},
			Limits: extism.Limits{Timeout: 10 * time.Second}}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	closePromptly := func(pl *extism.Plugin) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- pl.Close(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close waited for the running calls")
		}
		select {
		case <-extism.Released(pl):
			t.Fatal("the runtime was closed while a call was running")
		default:
		}
		if _, err := pl.Call(ctx, "var_get", nil); !errors.Is(err, extism.ErrClosed) {
			t.Fatalf("a call after Close: %v", err)
		}
	}

	// One call running, one instance idle.
	a := newPlugin(2)
	slowA := slowCall(a)
	<-arrived
	if _, err := a.Call(ctx, "var_get", nil); err != nil { // on a second instance, idle after
		t.Fatal(err)
	}
	if n := extism.Idle(a); n != 1 {
		t.Fatalf("%d idle instances, want 1", n)
	}
	closePromptly(a)
	if n := extism.Idle(a); n != 0 {
		t.Fatalf("%d idle instances after Close", n)
	}

	// One call running on the only instance, another waiting for it.
	b := newPlugin(1)
	slowB := slowCall(b)
	<-arrived
	waiting := make(chan error, 1)
	go func() {
		_, err := b.Call(ctx, "var_get", nil)
		waiting <- err
	}()
	time.Sleep(50 * time.Millisecond) // it waits by then
	closePromptly(b)
	select {
	case err := <-waiting:
		if !errors.Is(err, extism.ErrClosed) {
			t.Fatalf("the call waiting for an instance at Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call waiting for an instance still waits after Close")
	}

	close(proceed)
	for _, c := range []<-chan result{slowA, slowB} {
		if r := <-c; r.err != nil || string(r.out) != "slow but done" {
			t.Fatalf("a call running at Close: %q, %v", r.out, r.err)
		}
	}
	for _, pl := range []*extism.Plugin{a, b} {
		select {
		case <-extism.Released(pl):
		case <-time.After(5 * time.Second):
			t.Fatal("the runtime was not closed after the last call returned")
		}
		if err := pl.Close(ctx); err != nil {
			t.Fatalf("a second Close: %v", err)
		}
	}
	srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestStopDuringGC: a plugin without a memory of its own spinning in a loop is stopped at
// its timeout while the Go GC runs: its safe points let the GC in, through the memory
// prepare gives it for them. (Without that memory the GC waits for the guest and the
// guest for the stop, which cannot come: the test binary hangs, past -timeout.)
func TestStopDuringGC(t *testing.T) {
	pl := load(t, extism.DefaultPolicy, extism.Spec{Name: "loop", Module: module(t, "testdata/hostile/loop.wasm"), Limits: extism.Limits{Timeout: 200 * time.Millisecond}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	})
	start := time.Now()
	_, err := pl.Call(ctx, "loop", nil)
	close(stop)
	wg.Wait()
	if !errors.Is(err, extism.ErrTimeout) || time.Since(start) > 5*time.Second {
		t.Fatalf("loop under GC: %v after %v", err, time.Since(start))
	}
}
