// Package miniotest starts real MinIO servers for tests: one server per Start, on free
// loopback ports, its data in the test's temporary directory, stopped when the test ends.
// The server is the minio binary, found as $OSPREY_MINIO, on PATH or in $(go env GOPATH)/bin
// (go install github.com/minio/minio@<Version>; .ci/run installs it). Without it a test is
// skipped, or fails when CI=true (CI must run what it claims to).
//
// A Server keeps its data across Stop and Start, for tests of outages.
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the MinIO version .ci/run installs: go install github.com/minio/minio@Version.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Root credentials of every Server (Server.AccessKey and Server.SecretKey).
const (
	AccessKey = "osprey-test"
	SecretKey = "osprey-test-secret-key"
)

const installHint = "go install github.com/minio/minio@" + Version + ", which takes ~10 minutes the first time"

// Binary returns the path of the minio binary: $OSPREY_MINIO when set, else minio on PATH,
// else minio in $(go env GOBIN) or $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p := os.Getenv("OSPREY_MINIO"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("OSPREY_MINIO=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, "minio")
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("minio is neither on PATH nor in $(go env GOPATH)/bin")
}

// goBinDirs lists where go install puts binaries: GOBIN, else each GOPATH entry's bin.
var goBinDirs = sync.OnceValue(func() []string {
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n"); len(lines) == 2 {
			gobin, gopath = lines[0], lines[1]
		}
	}
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	return dirs
})

// Require returns the path of the minio binary, skipping t when there is none, or failing
// it under CI=true or when OSPREY_MINIO names a binary that is not there.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv("OSPREY_MINIO") != "" || os.Getenv("CI") == "true" {
		t.Fatalf("%v (%s; .ci/run does)", err, installHint)
	}
	t.Skipf("%v (%s)", err, installHint)
	return ""
}

// Server is one minio server process.
type Server struct {
	// AccessKey and SecretKey are the server's root credentials.
	AccessKey, SecretKey string

	t                   testing.TB
	bin                 string
	addr, consoleAddr   string
	dataDir, logPath    string
	mu                  sync.Mutex
	proc                *process
	stopTimeout, upWait time.Duration
}

// process is a running minio; done is closed once it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a minio server for t, with its data in a fresh temporary directory, and
// waits until it serves S3 requests; t's cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	s := &Server{
		AccessKey: AccessKey, SecretKey: SecretKey,
		t: t, bin: bin,
		dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "minio.log"),
		stopTimeout: 10 * time.Second, upWait: 30 * time.Second,
	}
	t.Cleanup(s.Stop)
	s.mu.Lock()
	defer s.mu.Unlock()
	// A port found free may be taken before minio listens on it: try other ports then.
	var err error
	for range 3 {
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		s.consoleAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("minio: %v\n%s", err, s.logTail())
	return nil
}

// Endpoint is the server's S3 endpoint, host:port (plain HTTP).
func (s *Server) Endpoint() string { return s.addr }

// URL is the server's S3 endpoint as a URL, http://host:port.
func (s *Server) URL() string { return "http://" + s.addr }

// DataDir is the directory the server keeps its data in.
func (s *Server) DataDir() string { return s.dataDir }

// Start restarts a stopped server on the same port and data directory and waits until it
// serves S3 requests. Starting a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("minio: %v\n%s", err, s.logTail())
	}
}

// start runs minio and waits until it serves S3 requests. Callers hold s.mu.
func (s *Server) start() error {
	log, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command(s.bin, "server", s.dataDir, "--address", s.addr, "--console-address", s.consoleAddr, "--quiet")
	cmd.Env = append(environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey, "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := waitLive(s.URL(), s.upWait, p.done); err != nil {
		stop(p, 0)
		return fmt.Errorf("minio server on %s: %w", s.addr, err)
	}
	s.proc = p
	return nil
}

// environ is the test's environment without MINIO_ variables (a developer's
// MINIO_VOLUMES, say), which would change the server.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

// Stop stops the server (SIGTERM, then SIGKILL if it has not exited within 10 s) and waits
// for it. Its data stays for Start. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	stop(s.proc, s.stopTimeout)
	s.proc = nil
}

// stop terminates p, killing it after grace (at once when grace is 0), and waits for it.
func stop(p *process, grace time.Duration) {
	if grace > 0 {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// logTail returns the end of the server's log, for failure messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(bytes.TrimSpace(b))
}

// Client returns a minio-go client of the server with its root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatalf("minio client of %s: %v", s.addr, err)
	}
	return c
}

// Bucket creates the bucket name on the server and returns name.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %q on %s: %v", name, s.addr, err)
	}
	return name
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitLive waits until base answers GET /minio/health/live with 200, then GET
// /minio/health/cluster (live comes some tens of milliseconds before the object layer, and S3
// requests until then fail with "Server not initialized yet"), for at most d or until exited
// is closed (the server died).
func waitLive(base string, d time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for _, check := range []string{"/minio/health/live", "/minio/health/cluster"} {
		var last error
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+check, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("GET %s answered %s", check, resp.Status)
			}
			last = err
			select {
			case <-exited:
				return errors.New("the server exited")
			case <-ctx.Done():
				return fmt.Errorf("GET %s not 200 within %v: %v", check, d, last)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
