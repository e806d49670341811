package server_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins"
	_ "github.com/osprey-ml/osprey/plugins/state/redis"
	"github.com/osprey-ml/osprey/server"
)

// TestReadyzFollowsRedis: /readyz answers 503 while the Redis state store is down and 200
// again once it is back, without a restart.
func TestReadyzFollowsRedis(t *testing.T) {
	rs := redistest.Standalone(t)
	st, err := plugins.NewState(context.Background(), "redis", plugins.Config{"addrs": rs.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng := engine.New(st)
	defer eng.Close()
	e := start(t, envOptions{cfg: server.Config{Engine: eng}, noHost: true, noApply: true})
	status := func() int {
		t.Helper()
		res, err := http.Get(e.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz did not answer %d within 20 s", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK)
	rs.Stop()
	waitFor(http.StatusServiceUnavailable)
	rs.Start()
	waitFor(http.StatusOK)
}
