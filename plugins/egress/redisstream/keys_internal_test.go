package redisstream

import (
	"context"
	"errors"
	"testing"

	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
	redisstate "github.com/osprey-ml/osprey/plugins/state/redis"
)

// TestConnectionKeys keeps the keys the egress passes on in step with what
// redisstate.Options reads: Options accepts every one of them and still refuses others, and
// the egress accepts each in a manifest.
func TestConnectionKeys(t *testing.T) {
	cfg := plugins.Config{}
	for _, k := range connectionKeys {
		cfg[k] = ""
	}
	if _, err := redisstate.Options(cfg); err != nil {
		t.Fatalf("Options refuses a key the egress passes on: %v", err)
	}
	cfg["stream"] = ""
	if _, err := redisstate.Options(cfg); !errors.Is(err, plugins.ErrInvalidConfig) {
		t.Fatalf("Options accepts a key it does not know: %v", err)
	}
	for _, k := range connectionKeys {
		c := map[string]any{"addrs": "a:6379", "stream": "s"}
		if k != "addrs" {
			c[k] = ""
		}
		eg, err := egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "redis-stream", Config: c}, egress.Policy{})
		if err != nil {
			t.Errorf("key %s: %v", k, err)
			continue
		}
		eg.Close()
	}
}
