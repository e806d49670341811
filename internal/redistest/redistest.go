// Package redistest starts real Redis servers for tests: a standalone server, a Cluster of
// masters, or a master with a replica and Sentinels, each on free loopback ports in the
// test's temporary directory, stopped when the test ends. The servers are Debian's
// redis-server and redis-sentinel; .ci/run installs them. Without them a test is skipped,
// or fails when CI=true (CI must run what it claims to).
//
// Nothing here persists: servers run with no RDB snapshots and no AOF, so a stopped and
// restarted standalone server comes back empty unless a test asks for persistence.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require skips t when redis-server (and the other binaries named) are missing, or fails
// it under CI=true.
func Require(t testing.TB, binaries ...string) {
	t.Helper()
	for _, b := range append([]string{"redis-server", "redis-cli"}, binaries...) {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (apt-get install redis-server redis-sentinel; .ci/run does)", b)
			}
			t.Skipf("%s is not installed (apt-get install redis-server redis-sentinel)", b)
		}
	}
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Standalone starts a redis-server for t.
func Standalone(t testing.TB, extra ...string) *Server {
	t.Helper()
	Require(t)
	s := newServer(t, extra...)
	s.Start()
	return s
}

func newServer(t testing.TB, extra ...string) *Server {
	port := FreePort(t)
	dir := filepath.Join(t.TempDir(), "redis-"+strconv.Itoa(port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log")}
	s := &Server{t: t, Port: port, dir: dir, args: append(args, extra...)}
	t.Cleanup(s.Stop)
	return s
}

// Start starts (or restarts, on the same port) the server and waits until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", s.args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.cmd = cmd
	if err := waitPing(s.Addr(), 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		s.t.Fatalf("redis-server on %s: %v\n%s", s.Addr(), err, log)
	}
}

// Stop kills the server (SIGKILL: as a crash) and waits for it. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// CLI runs redis-cli against the server and returns its output.
func (s *Server) CLI(args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Cluster is a Redis Cluster of masters (no replicas).
type Cluster struct {
	Nodes []*Server
}

// Addrs lists the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// NewCluster starts masters redis-server processes in cluster mode and joins them with
// `redis-cli --cluster create`, waiting until every node reports cluster_state:ok.
func NewCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	Require(t)
	c := &Cluster{}
	for range masters {
		s := newServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		s.Start()
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, _ := n.CLI("cluster", "info")
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok after 20 s:\n%s", n.Addr(), info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// Sentinel is a master, a replica of it and three Sentinels watching them under the
// master name MasterName.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// MasterName is the name the Sentinels know the master by.
const MasterName = "osprey"

// SentinelAddrs lists the Sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr()
	}
	return out
}

// NewSentinel starts a master, a replica and three Sentinels (quorum 2, down after 1 s,
// failover timeout 3 s), and waits until the replica has completed its first sync with the
// master and the Sentinels know it. (A failover before that first sync would promote an
// empty replica; the master syncs at once rather than after Redis 7's default 5 s delay.)
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	Require(t, "redis-sentinel")
	st := &Sentinel{Master: newServer(t, "--repl-diskless-sync-delay", "0")}
	st.Master.Start()
	st.Replica = newServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(st.Master.Port))
	st.Replica.Start()
	synced := time.Now().Add(20 * time.Second)
	for {
		info, _ := st.Replica.CLI("info", "replication")
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(synced) {
			t.Fatalf("the replica is not in sync with the master after 20 s:\n%s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 3 {
		port := FreePort(t)
		dir := filepath.Join(t.TempDir(), "sentinel-"+strconv.Itoa(port))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 3000\nsentinel parallel-syncs %s 1\n",
			port, dir, filepath.Join(dir, "sentinel.log"), MasterName, st.Master.Port, MasterName, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s := &Server{t: t, Port: port, dir: dir}
		cmd := exec.Command("redis-sentinel", conf)
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-sentinel: %v", err)
		}
		s.cmd = cmd
		t.Cleanup(s.Stop)
		if err := waitPing(s.Addr(), 10*time.Second); err != nil {
			t.Fatalf("redis-sentinel on %s: %v", s.Addr(), err)
		}
		st.Sentinels = append(st.Sentinels, s)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := st.Sentinels[0].CLI("sentinel", "replicas", MasterName)
		if strings.Contains(out, strconv.Itoa(st.Replica.Port)) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinels do not know the replica after 20 s: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
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

// waitPing waits until addr answers PING with PONG (RESP, without a client library).
func waitPing(addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, err = conn.Write([]byte("PING\r\n"))
			if err == nil {
				var line string
				line, err = bufio.NewReader(conn).ReadString('\n')
				if err == nil && !strings.HasPrefix(line, "+PONG") {
					err = fmt.Errorf("answered %q", strings.TrimSpace(line))
				}
			}
			conn.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %v: %v", d, last)
}
