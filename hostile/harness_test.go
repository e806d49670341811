package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

var (
	verboseLogs = flag.Bool("hostile.logs", false, "copy the server's log lines to stderr")
)

const (
	initTimeout     = 2 * time.Second  // the host's bound on _initialize (host.WithInitTimeout)
	callBound       = 5 * time.Second  // a stopped call must fail within this (old overruns: 100 s)
	hangTimeout     = 15 * time.Second // the client gives up on a call after this: it hung
	applyTimeout    = 30 * time.Second // the client gives up on an apply after this
	healthTimeout   = time.Second      // /healthz must answer within this after every entry
	frozenAfter     = 10 * time.Second // /healthz silent this long: the server froze; exit
	watchdogSilence = 25 * time.Second // no heartbeat this long: the process froze; kill it
	readTimeout     = 3 * time.Second  // a healthy read must answer within this
	heapSlack       = 64 << 20         // memory after an entry, over the baseline
	rssSlack        = 256 << 20        // resident memory after an entry, over the baseline (without -race)
	maxLogLines     = 2000             // log lines an entry may cause
	execSlack       = 16 << 10         // compiled code mapped after an entry, over the baseline (a plugin maps 64 KiB)
	heapCallSlack   = 2 << 20          // memory after a plugin's calls, over that after its first
)

// TestMain runs the watchdog when the test binary is re-executed as one (see startWatchdog).
func TestMain(m *testing.M) {
	if os.Getenv("HOSTILE_WATCHDOG") == "1" {
		os.Exit(watchdogMain())
	}
	os.Exit(m.Run())
}

// A guest that cannot be stopped can freeze this whole process: a stop-the-world GC waits
// forever for the goroutine running it, and with it every other goroutine, so no in-process
// timer can report it. The watchdog is a child process (this test binary re-executed) that
// reads heartbeats and the name of the current entry from a pipe; when the heartbeats stop
// for watchdogSilence it prints which entry froze the test, asks for a goroutine dump
// (SIGQUIT) and then kills the test (SIGKILL), so CI fails fast instead of timing out.
type watchdog struct {
	mu   sync.Mutex
	w    io.WriteCloser
	cmd  *exec.Cmd
	stop chan struct{}
	done chan struct{}
}

func startWatchdog(t *testing.T) *watchdog {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HOSTILE_WATCHDOG=1",
		"HOSTILE_WATCHDOG_PARENT="+strconv.Itoa(os.Getpid()),
		"HOSTILE_WATCHDOG_SILENCE="+watchdogSilence.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the watchdog: %v", err)
	}
	wd := &watchdog{w: w, cmd: cmd, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(wd.done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-wd.stop:
				return
			case <-tick.C:
				wd.send("beat")
			}
		}
	}()
	t.Cleanup(wd.close)
	return wd
}

func (wd *watchdog) send(line string) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	fmt.Fprintln(wd.w, line)
}

// entry tells the watchdog what the test is doing now.
func (wd *watchdog) entry(what string) { wd.send("entry " + what) }

func (wd *watchdog) close() {
	close(wd.stop)
	<-wd.done
	wd.w.Close()
	wd.cmd.Wait()
}

func watchdogMain() int {
	parent, _ := strconv.Atoi(os.Getenv("HOSTILE_WATCHDOG_PARENT"))
	silence, err := time.ParseDuration(os.Getenv("HOSTILE_WATCHDOG_SILENCE"))
	if parent <= 1 || err != nil {
		fmt.Fprintln(os.Stderr, "hostile watchdog: bad environment")
		return 2
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	what := "setup"
	timer := time.NewTimer(silence)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return 0 // the test finished (or died)
			}
			if e, ok := strings.CutPrefix(l, "entry "); ok {
				what = e
			}
			timer.Reset(silence)
		case <-timer.C:
			fmt.Fprintf(os.Stderr, "\n--- FAIL: hostile watchdog: the test process (pid %d) froze during %q: no heartbeat for %v "+
				"(a guest the host cannot stop holds up the Go runtime?). Dumping its goroutines (SIGQUIT), then killing it.\n", parent, what, silence)
			syscall.Kill(parent, syscall.SIGQUIT)
			time.Sleep(5 * time.Second)
			syscall.Kill(parent, syscall.SIGKILL)
			fmt.Fprintf(os.Stderr, "--- FAIL: hostile watchdog: killed the test process (pid %d), frozen during %q\n", parent, what)
			return 1
		}
	}
}

// logSink collects the server's log output (JSON lines): it counts every line and keeps the
// lines written since the last mark, up to a cap.
type logSink struct {
	mu      sync.Mutex
	partial []byte
	total   int
	bytes   int64
	since   []string // complete lines since mark, at most keepLines
	nSince  int
	copyTo  io.Writer
}

const keepLines = 5000

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.copyTo != nil {
		s.copyTo.Write(p)
	}
	s.bytes += int64(len(p))
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.total++
		s.nSince++
		if len(s.since) < keepLines {
			s.since = append(s.since, string(s.partial[:i]))
		}
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) == 0 {
		s.partial = nil // do not keep a flood's buffer
	}
	return len(p), nil
}

// mark starts a new window of lines.
func (s *logSink) mark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since, s.nSince = nil, 0
}

// window returns the lines since mark (at most keepLines) and how many there were.
func (s *logSink) window() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.since...), s.nSince
}

// spoofed returns the first problem with lines: a line that is not one JSON object, a
// top-level key that repeats, or a top-level level, msg, component or time whose value a
// guest chose, or a top-level plugin (the name the server marks a plugin's lines with) that
// it chose (the corpus's spoofs all start with "spoofed" or carry its 2000-01-01 time).
func spoofed(lines []string) string {
	for _, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return fmt.Sprintf("not a JSON object: %.200s", l)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Sprintf("malformed JSON (%v): %.200s", err, l)
			}
			key, _ := tok.(string)
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return fmt.Sprintf("malformed JSON (%v): %.200s", err, l)
			}
			if seen[key] {
				return fmt.Sprintf("top-level key %q repeats: %.300s", key, l)
			}
			seen[key] = true
			switch key {
			case "level", "msg", "component", "time", "plugin":
				var v string
				json.Unmarshal(raw, &v)
				if strings.HasPrefix(v, "spoofed") || strings.HasPrefix(v, "2000-01-01") {
					return fmt.Sprintf("top-level %s is the guest's %q: %.300s", key, v, l)
				}
			}
		}
	}
	return ""
}

// memSample is what the process holds, measured after a forced GC.
type memSample struct {
	heap  uint64 // /memory/classes/heap/objects:bytes
	total uint64 // /memory/classes/total:bytes: all memory the Go runtime mapped
	rss   uint64 // VmRSS from /proc/self/status: also compiled code and other mappings
	exec  uint64 // anonymous executable mappings (execBytes): the machine code wazero compiled
}

func measure() memSample {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	return memSample{heap: s[0].Value.Uint64(), total: s[1].Value.Uint64(), rss: vmRSS(), exec: execBytes()}
}

// execBytes is the size of the process's anonymous executable mappings, from
// /proc/self/maps: the machine code wazero's compiler mapped (for the host's modules and for
// every plugin's runtime: its module and its Extism kernel), which a module or plugin that
// is not freed keeps mapped. Go's own code is mapped from the test binary's file, and the
// race detector's shadow memory is not executable, so this holds under -race too, unlike
// RSS.
func execBytes() uint64 {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	var n uint64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l) // address perms offset dev inode [path]
		if len(f) != 5 || len(f[1]) < 3 || f[1][2] != 'x' || f[4] != "0" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		z, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && z > a {
			n += z - a
		}
	}
	return n
}

func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(n uint64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

func kib(n uint64) string { return fmt.Sprintf("%d KiB", n>>10) }

func mibDelta(a, b uint64) string { return fmt.Sprintf("%+.1f", (float64(a)-float64(b))/(1<<20)) }

// env is the one server the tests run against, with its clients and its read load.
type env struct {
	t      *testing.T
	url    string
	logs   *logSink
	wd     *watchdog
	client *http.Client // hostile calls and applies
	health *http.Client // /healthz only
	eng    ospreyv1connect.EngineServiceClient
	reg    ospreyv1connect.RegistryServiceClient
	ing    ospreyv1connect.IngestServiceClient
	load   *readLoad
	host   *host.Host
	set    *extism.Set  // the plugin host
	api    *apiServer   // what plugins may reach over HTTP
	what   atomic.Value // the entry now running, for the freeze messages
}

// pluginPolicy is the operator's plugin policy of the test server: osprey serve's default
// (extism.DefaultPolicy), allowing plugins the loopback address, where the test's HTTP
// server (apiServer) listens.
func pluginPolicy() extism.Policy {
	p := extism.DefaultPolicy
	p.AllowedHosts = []string{"127.0.0.1"}
	return p
}

// expand fills in a manifest the test's HTTP server: $API is its base URL
// (http://127.0.0.1:<port>), $PORT its port.
func (e *env) expand(manifest string) string {
	return strings.NewReplacer("$API", e.api.url, "$PORT", e.api.port).Replace(manifest)
}

// pluginGone checks that the plugin host no longer has the plugin fqn (deleted).
func (e *env) pluginGone(fqn, fn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	if _, err := e.set.Call(ctx, fqn, fn, nil); !errors.Is(err, extism.ErrNotApplied) {
		return fmt.Errorf("after its delete, a call of the plugin %s: %v, want %v", fqn, err, extism.ErrNotApplied)
	}
	return nil
}

// apiServer is the loopback HTTP server the corpus's HTTP plugins ask (see
// corpus/plugin_http.wat): /slow never answers, /drip answers a byte every 50 ms for ever,
// /huge sends a body of hugeBody bytes without a Content-Length, /headers sends 2 MiB of
// headers, /redirect redirects to leakPath on localhost; leakPath counts the requests that
// reach it, which no plugin may make (an undeclared host, a redirect to one).
type apiServer struct {
	srv       *httptest.Server
	url, port string
	leaked    atomic.Int64
	mu        sync.Mutex
	last      string
	done      chan struct{}
}

const (
	leakPath = "/leak"
	hugeBody = 64 << 20
)

func startAPI(t *testing.T) *apiServer {
	a := &apiServer{done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-a.done:
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("h"), 64<<10)
		for n := 0; n < hugeBody; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/drip", func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write([]byte("d")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-a.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		v := strings.Repeat("v", 8<<10)
		for i := range 256 {
			w.Header().Set(fmt.Sprintf("X-Hostile-%d", i), v)
		}
		fmt.Fprint(w, "headers")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+a.port+leakPath, http.StatusFound)
	})
	mux.HandleFunc(leakPath, func(w http.ResponseWriter, r *http.Request) {
		a.leaked.Add(1)
		a.mu.Lock()
		a.last = r.Method + " " + r.Host + r.URL.String()
		a.mu.Unlock()
		fmt.Fprint(w, "leaked")
	})
	a.srv = httptest.NewServer(mux)
	a.url = a.srv.URL
	_, a.port, _ = net.SplitHostPort(a.srv.Listener.Addr().String())
	t.Cleanup(func() {
		close(a.done)
		a.srv.CloseClientConnections()
		a.srv.Close()
	})
	return a
}

func (a *apiServer) lastLeak() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// released waits (briefly: the host releases modules when an apply or delete is decided)
// until the host holds no more modules and module bytes than base, and returns what it
// holds then.
func (e *env) released(base host.Stats) (host.Stats, bool) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := e.host.Stats()
		if s.Modules <= base.Modules && s.Blobs <= base.Blobs {
			return s, true
		}
		if time.Now().After(deadline) {
			return s, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// codeReleased waits, briefly, until the compiled code mapped is back within execSlack of
// base's: a deleted plugin's runtime is closed once its last running call has returned,
// which a call stopped at the caller's deadline may do a few milliseconds after the caller
// got its error (Plugin.Close does not wait for it), and wazero unmaps a closed module's
// code from a finalizer, after a GC.
func (e *env) codeReleased(base memSample) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		runtime.GC()
		if execBytes() <= base.exec+execSlack || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const healthyManifest = `
apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: rows, namespace: hostile}
spec: {kind: rest, keyFields: [id]}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: value, namespace: healthy}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: wasm, namespace: healthy}
spec:
  primitive: int
  freshness: 1s
  staleness: 1h
  keys: [id]
  builder: {module: noop.wasm}
`

// startEnv starts the server in process, applies the healthy features and starts the read
// load. Everything stops when the test ends.
func startEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("the hostile corpus runs a live server for minutes; skipped with -short")
	}
	noop := wat(t, "noop") // fails or skips here when wat2wasm is missing
	e := &env{t: t, logs: &logSink{}}
	e.what.Store("setup")
	if *verboseLogs {
		e.logs.copyTo = os.Stderr
	}
	e.wd = startWatchdog(t)
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	h, err := host.New(context.Background(), log, host.WithInitTimeout(initTimeout))
	if err != nil {
		t.Fatal(err)
	}
	e.host = h
	e.api = startAPI(t)
	// The plugin host, wired as osprey serve wires it (cmd/osprey/serve.go, newStack): the
	// Set's connectors, middlewares and encodings in front of the Wasm host's and the
	// natives.
	set := extism.NewSet(pluginPolicy(), engine.DefaultNamespace, log)
	e.set = set
	encoders, err := plugins.NewEncoders(nil)
	if err != nil {
		t.Fatal(err)
	}
	st := memstate.New()
	eng := engine.New(st, engine.WithPrograms(set.Programs(h)),
		engine.WithMiddlewareResolver(set.Resolver(h.Resolver(plugins.Middlewares))),
		engine.WithEncoderResolver(set.Encoders(encoders)), engine.WithLogger(log))
	srv, err := server.New(context.Background(), server.Config{Engine: eng, Host: h, Plugins: set, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	e.url = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		// Stop in order; a server held up by a guest must not hang the test binary.
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Serve did not return within 30 s of its context ending")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			eng.Close()
			h.Close(context.Background())
			set.Close()
			st.Close()
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("closing the engine and host took more than 30 s")
		}
	})

	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	e.health = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	e.eng = ospreyv1connect.NewEngineServiceClient(e.client, e.url)
	e.reg = ospreyv1connect.NewRegistryServiceClient(e.client, e.url)
	e.ing = ospreyv1connect.NewIngestServiceClient(e.client, e.url)
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		e.health.CloseIdleConnections()
	})

	if err := e.apply(healthyManifest, map[string][]byte{"noop.wasm": noop}); err != nil {
		t.Fatalf("applying the healthy features: %v", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), readTimeout)
	defer scancel()
	if _, err := e.eng.Set(sctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "healthy.value",
		Keys: map[string]string{"id": "h"}, Value: structpb.NewNumberValue(7)})); err != nil {
		t.Fatalf("Set healthy.value: %v", err)
	}
	e.load = startLoad(e)
	t.Cleanup(e.load.stop)
	go e.monitor(ctx)
	return e
}

// apply applies a manifest with its modules; the error is the server's.
func (e *env) apply(manifest string, modules map[string][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	_, err := e.reg.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest), Modules: modules}))
	return err
}

// remove deletes a feature; NotFound (an entry refused at apply) is fine.
func (e *env) remove(fqn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	_, err := e.reg.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: fqn}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil
	}
	return err
}

// healthz reports whether GET /healthz answered 200 within d.
func (e *env) healthz(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/healthz", nil)
	res, err := e.health.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", res.Status)
	}
	return nil
}

// checkHealth fails the test when /healthz does not answer within healthTimeout, and ends
// the test binary when it does not answer within frozenAfter: the server froze.
func (e *env) checkHealth(t *testing.T) {
	t.Helper()
	start := time.Now()
	err := e.healthz(healthTimeout)
	if err == nil {
		return
	}
	t.Errorf("/healthz did not answer within %v: %v", healthTimeout, err)
	for time.Since(start) < frozenAfter {
		if e.healthz(time.Second) == nil {
			t.Logf("/healthz answered again after %v", time.Since(start).Round(time.Millisecond))
			return
		}
	}
	e.frozen(fmt.Sprintf("/healthz did not answer for %v after the entry", frozenAfter))
}

// frozen reports a frozen server and ends the test binary.
func (e *env) frozen(why string) {
	fmt.Fprintf(os.Stderr, "\n--- FAIL: TestHostileCorpus: the server froze during %q: %s. Exiting.\n", e.what.Load(), why)
	os.Exit(1)
}

// monitor polls /healthz for the whole test and ends the binary if it stays silent for
// frozenAfter (an entry stuck in a call whose client timeout has not fired yet).
func (e *env) monitor(ctx context.Context) {
	last := time.Now()
	for ctx.Err() == nil {
		if e.healthz(time.Second) == nil {
			last = time.Now()
		} else if time.Since(last) > frozenAfter {
			e.frozen(fmt.Sprintf("/healthz did not answer for %v", frozenAfter))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// readLoad keeps healthy features under a steady read load: a few goroutines doing Get of
// healthy.value (sourceless, set once) and healthy.wasm (a trivial Wasm program).
type readLoad struct {
	ok, failed atomic.Int64
	maxLatency atomic.Int64 // nanoseconds, since the last reset
	mu         sync.Mutex
	lastErr    string
	done       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

const readers = 3

func startLoad(e *env) *readLoad {
	l := &readLoad{done: make(chan struct{})}
	client := ospreyv1connect.NewEngineServiceClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: readers}}, e.url)
	for i := range readers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			sels := []string{"healthy.value", "healthy.wasm"}
			for n := 0; ; n++ {
				select {
				case <-l.done:
					return
				case <-time.After(10 * time.Millisecond):
				}
				sel := sels[(n+i)%len(sels)]
				ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
				start := time.Now()
				res, err := client.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: sel, Keys: map[string]string{"id": "h"}}))
				cancel()
				d := time.Since(start)
				for {
					m := l.maxLatency.Load()
					if int64(d) <= m || l.maxLatency.CompareAndSwap(m, int64(d)) {
						break
					}
				}
				want := int64(7)
				if sel == "healthy.wasm" {
					want = 42
				}
				if err == nil && res.Msg.GetValue().GetIntValue() != want {
					err = fmt.Errorf("got %v, want %d", res.Msg.GetValue(), want)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.lastErr = fmt.Sprintf("Get %s after %v: %v", sel, d.Round(time.Millisecond), err)
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *readLoad) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *readLoad) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// outcome is what a hostile step did.
type outcome struct {
	err     error
	took    time.Duration
	hung    bool // the client gave up after hangTimeout
	value   *ospreyv1.Value
	written int64
}

func (o outcome) String() string {
	if o.err == nil {
		return fmt.Sprintf("ok in %v (value %v)", o.took.Round(time.Millisecond), valueString(o.value))
	}
	s := fmt.Sprintf("%v in %v: %.300s", connect.CodeOf(o.err), o.took.Round(time.Millisecond), errMessage(o.err))
	if o.hung {
		s = "HUNG (client gave up): " + s
	}
	return s
}

func valueString(v *ospreyv1.Value) string {
	if v == nil {
		return "none"
	}
	if s, ok := v.GetKind().(*ospreyv1.Value_StringValue); ok {
		return fmt.Sprintf("string of %d bytes", len(s.StringValue))
	}
	return strings.TrimSpace(fmt.Sprint(v.GetKind()))
}

func errMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
