//go:build unix

// Package e2e_test runs the real osprey binary: it builds cmd/osprey once, starts
// `osprey serve` on a free port with a data directory of its own, and drives it with the
// generated Go clients over Connect, gRPC and gRPC-Web, with plain HTTP, and with the CLI.
// It is skipped under -short.
package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

const (
	readyTimeout    = 30 * time.Second // for GET /readyz to answer 200
	stopTimeout     = 30 * time.Second // for the process to exit after SIGTERM
	cliTimeout      = time.Minute      // for a CLI command
	applyTimeout    = 5 * time.Minute  // for `osprey apply`, which builds the Go guests
	receiveTimeout  = 30 * time.Second // for a Watch stream to deliver a change
	logTailLines    = 60               // server log lines shown when a test fails
	portConflictTry = 5                // attempts at starting a server on a free port
)

var (
	ospreyBin string // the osprey binary built by TestMain
	repoRoot  string // the repository root, where the CLI runs (examples/… paths)
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (builds and runs the osprey binary)")
		os.Exit(0)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	tmp, err := os.MkdirTemp("", "osprey-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bin := filepath.Join(tmp, "osprey")
	build := exec.Command("go", "build", "-o", bin, "./cmd/osprey")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/osprey: %v\n%s", err, out)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	ospreyBin, repoRoot = bin, root
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// ospreyServer is a running `osprey serve` process.
type ospreyServer struct {
	addr    string // host:port
	url     string // http://host:port
	dataDir string

	cmd     *exec.Cmd
	log     *syncBuffer   // stdout and stderr
	exited  chan struct{} // closed when the process has exited
	waitErr error         // the process's exit status, once exited is closed

	mu      sync.Mutex
	stopped bool
	clients map[string]*http.Client
}

var errAddrInUse = errors.New("address already in use")

// startServer starts `osprey -log-format json serve --listen 127.0.0.1:<free port>
// --data-dir dataDir flags…` and waits until GET /readyz answers 200. At cleanup it stops
// the server (SIGTERM; it must exit 0) and, when the test failed, logs the tail of its log.
func startServer(t *testing.T, dataDir string, flags ...string) *ospreyServer {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, err := tryStart(dataDir, flags)
		if err == nil {
			t.Cleanup(func() {
				s.stop(t)
				if t.Failed() {
					t.Logf("osprey serve on %s (data dir %s), log tail:\n%s", s.addr, s.dataDir, tail(s.log.String(), logTailLines))
				}
			})
			return s
		}
		if errors.Is(err, errAddrInUse) && attempt < portConflictTry {
			t.Logf("port taken before the server bound it; retrying (%v)", err)
			continue
		}
		t.Fatalf("starting osprey serve: %v", err)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func tryStart(dataDir string, flags []string) (*ospreyServer, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-log-format", "json", "serve", "--listen", addr, "--data-dir", dataDir}, flags...)
	s := &ospreyServer{addr: addr, url: "http://" + addr, dataDir: dataDir,
		log: &syncBuffer{}, exited: make(chan struct{}), clients: map[string]*http.Client{}}
	s.cmd = exec.Command(ospreyBin, args...)
	s.cmd.Dir = repoRoot
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.exited:
			out := s.log.String()
			if strings.Contains(out, "address already in use") {
				return nil, fmt.Errorf("%s: %w", addr, errAddrInUse)
			}
			return nil, fmt.Errorf("osprey %s exited before it was ready (%v); log:\n%s",
				strings.Join(args, " "), s.waitErr, tail(out, logTailLines))
		default:
		}
		if resp, err := hc.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("osprey %s: GET /readyz did not answer 200 within %v; log:\n%s",
				strings.Join(args, " "), readyTimeout, tail(s.log.String(), logTailLines))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process without ceremony (after a failed start).
func (s *ospreyServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// stop sends SIGTERM and fails the test unless the process exits 0 within stopTimeout. It
// is idempotent.
func (s *ospreyServer) stop(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	clients := s.clients
	s.mu.Unlock()
	for _, hc := range clients {
		hc.CloseIdleConnections()
	}
	select {
	case <-s.exited:
		t.Errorf("osprey serve on %s had exited before it was stopped: %v", s.addr, s.waitErr)
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM to osprey serve: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Errorf("osprey serve on %s exited with %v after SIGTERM; want exit status 0", s.addr, s.waitErr)
		}
	case <-time.After(stopTimeout):
		t.Errorf("osprey serve on %s did not exit within %v of SIGTERM; killing it", s.addr, stopTimeout)
		s.kill()
	}
}

// cliResult is what a CLI command did.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs `osprey -log-format json CMD --addr URL ARGS…` against the server, from the
// repository root.
func (s *ospreyServer) cli(t *testing.T, cmd string, args ...string) cliResult {
	t.Helper()
	timeout := cliTimeout
	if cmd == "apply" {
		timeout = applyTimeout
	}
	return runCLI(t, timeout, append([]string{cmd, "--addr", s.url}, args...)...)
}

func runCLI(t *testing.T, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ospreyBin, append([]string{"-log-format", "json"}, args...)...)
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("osprey %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("osprey %s: did not finish within %v\n%v", strings.Join(args, " "), timeout, res)
	}
	return res
}

// mustCLI runs a CLI command that must succeed and returns its standard output.
func (s *ospreyServer) mustCLI(t *testing.T, cmd string, args ...string) string {
	t.Helper()
	res := s.cli(t, cmd, args...)
	if res.code != 0 {
		t.Fatalf("osprey %s %s: %v", cmd, strings.Join(args, " "), res)
	}
	return res.stdout
}

// protocol is one way of calling the API.
type protocol struct {
	name string
	h2c  bool // HTTP/2 with prior knowledge (h2c); otherwise HTTP/1.1
	opts []connect.ClientOption
}

// protocols are the ways every read is made: Connect (binary over HTTP/1.1, JSON over h2c,
// and GET for side-effect-free calls), gRPC over h2c, and gRPC-Web over HTTP/1.1.
var protocols = []protocol{
	{name: "connect", opts: nil},
	{name: "connect-json-h2c", h2c: true, opts: []connect.ClientOption{connect.WithProtoJSON()}},
	{name: "connect-get", opts: []connect.ClientOption{connect.WithHTTPGet(), connect.WithProtoJSON()}},
	{name: "grpc", h2c: true, opts: []connect.ClientOption{connect.WithGRPC()}},
	{name: "grpcweb", opts: []connect.ClientOption{connect.WithGRPCWeb()}},
}

func protocolNamed(name string) protocol {
	for _, p := range protocols {
		if p.name == name {
			return p
		}
	}
	panic("no protocol " + name)
}

// api is the generated clients for one server, protocol and token.
type api struct {
	engine   ospreyv1connect.EngineServiceClient
	registry ospreyv1connect.RegistryServiceClient
	ingest   ospreyv1connect.IngestServiceClient
}

// api returns clients speaking p, sending token (if any) as a bearer token.
func (s *ospreyServer) api(p protocol, token string) api {
	hc := s.httpClient(p.h2c, token)
	return api{
		engine:   ospreyv1connect.NewEngineServiceClient(hc, s.url, p.opts...),
		registry: ospreyv1connect.NewRegistryServiceClient(hc, s.url, p.opts...),
		ingest:   ospreyv1connect.NewIngestServiceClient(hc, s.url, p.opts...),
	}
}

// forEachProtocol runs f as a subtest per protocol.
func (s *ospreyServer) forEachProtocol(t *testing.T, token string, f func(t *testing.T, c api)) {
	t.Helper()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) { f(t, s.api(p, token)) })
	}
}

// httpClient returns a client that speaks HTTP/2 with prior knowledge (h2c) or HTTP/1.1
// only, checks that each response came over that protocol, and adds the bearer token.
func (s *ospreyServer) httpClient(h2c bool, token string) *http.Client {
	key := fmt.Sprintf("%v/%s", h2c, token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if hc := s.clients[key]; hc != nil {
		return hc
	}
	var protos http.Protocols
	if h2c {
		protos.SetUnencryptedHTTP2(true) // alone: prior knowledge for http:// URLs
	} else {
		protos.SetHTTP1(true)
	}
	want := 1
	if h2c {
		want = 2
	}
	hc := &http.Client{Transport: &checkedTransport{
		next:  &http.Transport{Protocols: &protos, MaxIdleConnsPerHost: 16},
		major: want,
		token: token,
	}}
	s.clients[key] = hc
	return hc
}

// checkedTransport adds a bearer token and fails any response not over HTTP/major.
type checkedTransport struct {
	next  http.RoundTripper
	major int
	token string
}

func (c *checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ProtoMajor != c.major {
		resp.Body.Close()
		return nil, fmt.Errorf("e2e: response over %s, want HTTP/%d", resp.Proto, c.major)
	}
	return resp, nil
}

func (c *checkedTransport) CloseIdleConnections() {
	if ci, ok := c.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
