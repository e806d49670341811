package redistest_test

import (
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/internal/redistest"
)

func TestStandaloneRestart(t *testing.T) {
	s := redistest.Standalone(t)
	if out, err := s.CLI("set", "k", "v"); err != nil || out != "OK" {
		t.Fatalf("SET: %q, %v", out, err)
	}
	s.Stop()
	if _, err := s.CLI("ping"); err == nil {
		if out, _ := s.CLI("ping"); strings.Contains(out, "PONG") {
			t.Fatal("a stopped server answers")
		}
	}
	s.Start()
	if out, err := s.CLI("ping"); err != nil || out != "PONG" {
		t.Fatalf("after a restart: %q, %v", out, err)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster; skipped with -short")
	}
	c := redistest.NewCluster(t, 3)
	out, err := c.Nodes[0].CLI("cluster", "info")
	if err != nil || !strings.Contains(out, "cluster_known_nodes:3") {
		t.Fatalf("cluster info: %q, %v", out, err)
	}
}

func TestSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Sentinels; skipped with -short")
	}
	s := redistest.NewSentinel(t)
	out, err := s.Sentinels[0].CLI("sentinel", "get-master-addr-by-name", redistest.MasterName)
	if err != nil || !strings.Contains(out, s.Master.Addr()[len("127.0.0.1:"):]) {
		t.Fatalf("master addr: %q, %v", out, err)
	}
}
