package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/internal/redistest"
	redisstate "github.com/osprey-ml/osprey/plugins/state/redis"
)

// redisBenchEngine returns an engine, closed with b, on a Redis state over a redis-server the
// harness starts for b.
func redisBenchEngine(b *testing.B) *engine.Engine {
	srvRedis := redistest.Standalone(b)
	st := redisstate.New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srvRedis.Addr()}, ContextTimeoutEnabled: true}))
	b.Cleanup(func() { st.Close() })
	eng := engine.New(st, engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	b.Cleanup(func() { eng.Close() })
	return eng
}

// BenchmarkGetStack is a Get over Connect and HTTP/2 (h2c, loopback) from parallel callers,
// on a Redis state (a redis-server the harness starts), served with the stack grown at the top of each request
// ("grown", what the server does) and without ("bare"), in the same run:
//
//	go test -run '^$' -bench GetStack -benchmem -count 5 ./server/
func BenchmarkGetStack(b *testing.B) {
	ctx := context.Background()
	eng := redisBenchEngine(b)
	f := &engine.Feature{FQN: "bench.scalar", Primitive: engine.PrimitiveFloat, Keys: []string{"id"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	if err := eng.Apply(ctx, f); err != nil {
		b.Fatal(err)
	}
	if _, err := eng.Set(ctx, f.FQN, engine.Keys{"id": "a"}, 1.5, time.Now()); err != nil {
		b.Fatal(err)
	}
	s, err := New(ctx, Config{Engine: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for name, h := range map[string]http.Handler{"grown": s.Handler(), "bare": s.Handler().(grownStack).next} {
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(h)
			srv.EnableHTTP2 = true
			srv.Config.Protocols = new(http.Protocols)
			srv.Config.Protocols.SetUnencryptedHTTP2(true)
			srv.Start()
			defer srv.Close()
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			c := ospreyv1connect.NewEngineServiceClient(hc, srv.URL)
			req := &ospreyv1.GetRequest{Selector: f.FQN, Keys: map[string]string{"id": "a"}}
			b.SetParallelism(4) // 8 calls in flight on 2 cores, as osprey bench's closed loop
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := c.Get(ctx, connect.NewRequest(req))
					if err != nil || !res.Msg.GetFound() {
						b.Errorf("Get: %v", err)
						return
					}
				}
			})
		})
	}
}
