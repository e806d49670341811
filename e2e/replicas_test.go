//go:build unix

package e2e_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/internal/redistest"
)

// convergeBound is how long a replica may take to show another's change before the test
// fails: generous, since CI machines stall. The design's target is one second; the time
// actually taken is logged, not asserted.
const convergeBound = 10 * time.Second

func sharedFeature(freshness string) string {
	return `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: score, namespace: replicas}
spec:
  primitive: int
  freshness: ` + freshness + `
  staleness: 1h
  keys: [id]
`
}

// stateRedisAvailable reports whether the binary has the "redis" state provider, so that
// values written on one replica can be read on the other.
func stateRedisAvailable(t *testing.T) bool {
	out, _ := exec.Command(ospreyBin, "serve", "-h").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "state provider by name:") {
			return strings.Contains(line, "redis")
		}
	}
	return false
}

// TestReplicasShareRegistry: two `osprey serve --registry redis` processes on one
// redis-server: an apply, a replace and a delete on one appear on the other; a replica
// started later has what was applied. With the redis state provider, a value written
// through one is read through the other.
func TestReplicasShareRegistry(t *testing.T) {
	srv := redistest.Standalone(t)
	flags := []string{"--registry", "redis", "--registry-config", "addrs=" + srv.Addr()}
	shared := stateRedisAvailable(t)
	if shared {
		flags = append(flags, "--state", "redis", "--state-config", "addrs="+srv.Addr())
	} else {
		t.Log("the redis state provider is not in this binary: each replica keeps its values in memory; only the registry is shared")
	}
	a := startServer(t, t.TempDir(), flags...)
	b := startServer(t, t.TempDir(), flags...)
	ca, cb := a.api(protocolNamed("connect"), ""), b.api(protocolNamed("connect"), "")
	ctx := context.Background()

	// listed returns the features b lists in the namespace, with their freshness.
	listed := func(c api) []string {
		res, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: "replicas"}))
		if err != nil {
			t.Fatalf("ListFeatures: %v", err)
		}
		var out []string
		for _, f := range res.Msg.GetFeatures() {
			out = append(out, f.GetFqn()+" "+f.GetFreshness().AsDuration().String())
		}
		return out
	}
	converge := func(what string, c api, want []string) {
		t.Helper()
		start := time.Now()
		for !slices.Equal(listed(c), want) {
			if time.Since(start) > convergeBound {
				t.Fatalf("%s: not within %v: the replica lists %v, want %v", what, convergeBound, listed(c), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: the other replica converged in %v", what, time.Since(start).Round(time.Millisecond))
	}
	apply := func(c api, doc string) {
		t.Helper()
		if _, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(doc)})); err != nil {
			t.Fatalf("ApplyFeature: %v", err)
		}
	}

	apply(ca, sharedFeature("1m"))
	converge("apply", cb, []string{"replicas.score 1m0s"})
	if shared {
		v, _ := structpb.NewValue(42)
		if _, err := ca.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "replicas.score", Keys: map[string]string{"id": "1"}, Value: v})); err != nil {
			t.Fatalf("Set on a: %v", err)
		}
		res, err := cb.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "replicas.score", Keys: map[string]string{"id": "1"}}))
		if err != nil || !strings.Contains(res.Msg.GetValue().String(), "42") {
			t.Errorf("Get on b of the value set on a: %v, %v", res, err)
		}
	}
	apply(ca, sharedFeature("2m"))
	converge("replace", cb, []string{"replicas.score 2m0s"})

	// b, having caught up, replaces it in turn; a follows.
	apply(cb, sharedFeature("3m"))
	converge("replace on the other replica", ca, []string{"replicas.score 3m0s"})

	late := startServer(t, t.TempDir(), flags...)
	if got := listed(late.api(protocolNamed("connect"), "")); !slices.Equal(got, []string{"replicas.score 3m0s"}) {
		t.Errorf("a replica started later lists %v", got)
	}

	if _, err := ca.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "replicas.score"})); err != nil {
		t.Fatalf("DeleteFeature: %v", err)
	}
	converge("delete", cb, nil)
	converge("delete, on the late replica", late.api(protocolNamed("connect"), ""), nil)
}
