package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// BenchmarkGetManyStack is a feature vector of 50 features (40 float scalars and 10 windows
// of 60 one-minute buckets, all five aggregations) for one entity, read with one GetMany over
// Connect and HTTP/1.1 on loopback from one caller, on a Redis state (a redis-server the
// harness starts), next to a single Get of one of its scalars in the same run: the client's
// and the server's work together, as osprey bench measures them, without the machine's
// other load. p50-µs and p99-µs are the calls' latencies.
//
//	go test -run '^$' -bench GetManyStack -benchmem -count 5 ./server/
func BenchmarkGetManyStack(b *testing.B) {
	ctx := context.Background()
	eng := redisBenchEngine(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	keys := engine.Keys{"card_id": "c1"}
	var sels []string
	for i := range 50 {
		f := &engine.Feature{FQN: fmt.Sprintf("bench.f%02d", i), Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"},
			Freshness: time.Hour, Staleness: time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
		windowed := i%5 == 4
		if windowed {
			f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
		}
		if err := eng.Apply(ctx, f); err != nil {
			b.Fatal(err)
		}
		if !windowed {
			if _, err := eng.Set(ctx, f.FQN, keys, float64(i), now); err != nil {
				b.Fatal(err)
			}
			sels = append(sels, f.FQN)
			continue
		}
		for m := range 60 {
			if _, err := eng.Update(ctx, f.FQN, keys, float64(m), now.Add(-time.Duration(m)*time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		sels = append(sels, f.FQN+"+"+(engine.AggrSum+engine.AggrFn(i/5%5)).String())
	}
	s, err := New(ctx, Config{Engine: eng, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	c := ospreyv1connect.NewEngineServiceClient(srv.Client(), srv.URL)
	get := &ospreyv1.GetRequest{Selector: sels[0], Keys: keys}
	many := &ospreyv1.GetManyRequest{Selectors: sels, Entities: []*ospreyv1.Entity{{Keys: keys}}}
	calls := map[string]func(b *testing.B){
		"get": func(b *testing.B) {
			res, err := c.Get(ctx, connect.NewRequest(get))
			if err != nil || !res.Msg.GetFound() {
				b.Fatalf("Get: %v", err)
			}
		},
		"getmany-50x1": func(b *testing.B) {
			res, err := c.GetMany(ctx, connect.NewRequest(many))
			if err != nil {
				b.Fatalf("GetMany: %v", err)
			}
			for _, r := range res.Msg.GetResults()[0].GetFeatures() {
				if !r.GetFound() {
					b.Fatalf("GetMany: %s not found (%s)", r.GetSelector(), r.GetError())
				}
			}
		},
	}
	for _, name := range []string{"get", "getmany-50x1"} {
		b.Run(name, func(b *testing.B) {
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				calls[name](b)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
