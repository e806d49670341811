package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/metrics"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

var ctx = context.Background()

// newEngine returns an engine observed by m, with a middleware "gate" that rejects values
// above 100 and one "slow" that times out, and three features.
func newEngine(t testing.TB, m *metrics.Metrics) *engine.Engine {
	t.Helper()
	resolver := engine.MiddlewareResolverFunc(func(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		switch ref.Name {
		case "gate":
			return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
				if v.Float() > 100 {
					return engine.Null, fmt.Errorf("%w: over 100", engine.ErrRejected)
				}
				return v, nil
			}, nil
		case "slow":
			return func(ctx context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
				<-ctx.Done()
				return engine.Null, ctx.Err()
			}, nil
		}
		return nil, fmt.Errorf("no middleware %q", ref.Name)
	})
	opts := []engine.Option{engine.WithMiddlewareResolver(resolver), engine.WithLogger(slog.New(slog.DiscardHandler))}
	if m != nil {
		opts = append(opts, engine.WithObserver(m.Observer()))
	}
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	e := engine.New(st, opts...)
	t.Cleanup(func() { e.Close() })
	for _, f := range []*engine.Feature{
		{FQN: "t.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 2 * time.Hour, Timeout: time.Second,
			Builder:     engine.Builder{Kind: engine.BuilderSourceless},
			Middlewares: []engine.MiddlewareRef{{Name: "gate", Stages: []engine.Stage{engine.StagePreSet}}}},
		{FQN: "t.old", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Millisecond, Staleness: time.Hour, Timeout: time.Second,
			Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		{FQN: "t.stuck", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 2 * time.Hour, Timeout: 20 * time.Millisecond,
			Builder:     engine.Builder{Kind: engine.BuilderSourceless},
			Middlewares: []engine.MiddlewareRef{{Name: "slow", Stages: []engine.Stage{engine.StagePreGet}}}},
	} {
		if err := e.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestFeatureSeries: reads by outcome, writes by op and outcome, middleware durations and
// failures by kind, State calls — each counted once per event; a deleted feature's series
// go.
func TestFeatureSeries(t *testing.T) {
	m := metrics.New()
	e := newEngine(t, m)
	k := engine.Keys{"id": "1"}
	if _, err := e.Set(ctx, "t.amount", k, 50.0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, "t.amount", k, 500.0, time.Time{}); !errors.Is(err, engine.ErrRejected) {
		t.Fatalf("Set 500 = %v", err)
	}
	if _, err := e.Set(ctx, "t.amount", k, 40.0, time.Now().Add(-time.Minute)); err != nil { // superseded
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, "t.old", k, 1, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	e.Get(ctx, "t.amount", k)                           // fresh
	e.Get(ctx, "t.amount", engine.Keys{"id": "2"})      // absent
	e.Get(ctx, "t.old", k)                              // stale
	if _, err := e.Get(ctx, "t.stuck", k); err == nil { // error: the middleware times out
		t.Fatal("t.stuck read")
	}

	want := `
# HELP osprey_feature_reads_total Reads of a feature (a Get, or a cell of a GetMany), by outcome: fresh, stale (served, older than the freshness), absent (nothing servable), error.
# TYPE osprey_feature_reads_total counter
osprey_feature_reads_total{feature="t.amount",outcome="absent"} 1
osprey_feature_reads_total{feature="t.amount",outcome="error"} 0
osprey_feature_reads_total{feature="t.amount",outcome="fresh"} 1
osprey_feature_reads_total{feature="t.amount",outcome="stale"} 0
osprey_feature_reads_total{feature="t.old",outcome="absent"} 0
osprey_feature_reads_total{feature="t.old",outcome="error"} 0
osprey_feature_reads_total{feature="t.old",outcome="fresh"} 0
osprey_feature_reads_total{feature="t.old",outcome="stale"} 1
osprey_feature_reads_total{feature="t.stuck",outcome="absent"} 0
osprey_feature_reads_total{feature="t.stuck",outcome="error"} 1
osprey_feature_reads_total{feature="t.stuck",outcome="fresh"} 0
osprey_feature_reads_total{feature="t.stuck",outcome="stale"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "osprey_feature_reads_total"); err != nil {
		t.Error(err)
	}
	reg := m.Registry()
	for _, tc := range []struct {
		series string
		want   int
	}{
		{`osprey_feature_writes_total{feature="t.amount",op="set",outcome="applied"}`, 1},
		{`osprey_feature_writes_total{feature="t.amount",op="set",outcome="rejected"}`, 1},
		{`osprey_feature_writes_total{feature="t.amount",op="set",outcome="superseded"}`, 1},
		{`osprey_middleware_errors_total{feature="t.amount",kind="rejected",middleware="gate"}`, 1},
		{`osprey_middleware_errors_total{feature="t.stuck",kind="timeout",middleware="slow"}`, 1},
		{`osprey_middleware_duration_seconds_count{feature="t.amount",middleware="gate",stage="preSet"}`, 3},
		{`osprey_state_call_duration_seconds_count{call="set"}`, 3},
		{`osprey_state_call_duration_seconds_count{call="get"}`, 3},
	} {
		if got := value(t, reg, tc.series); got != float64(tc.want) {
			t.Errorf("%s = %v, want %d", tc.series, got, tc.want)
		}
	}

	if err := e.Delete(ctx, "t.amount"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "osprey_feature_reads_total"); n != 8 {
		t.Errorf("after deleting t.amount, %d read series, want the 8 of the other two", n)
	}
}

// value returns one series' value from the text exposition of reg (labels in the
// exposition's order: sorted by name), failing when it is not there.
func value(t *testing.T, reg prometheus.Gatherer, series string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(text.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text.String())
	return 0
}

// scrape GETs url/metrics-style exposition.
func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, res.StatusCode, err)
	}
	return string(b)
}

// TestNoAllocations: recording takes no allocation on the hot path: a Get and a Set through
// an observed engine allocate what they allocate unobserved.
func TestNoAllocations(t *testing.T) {
	plain := newEngine(t, nil)
	observed := newEngine(t, metrics.New())
	k := engine.Keys{"id": "1"}
	for _, e := range []*engine.Engine{plain, observed} {
		if _, err := e.Set(ctx, "t.amount", k, 50.0, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	measure := func(e *engine.Engine) (get, set float64) {
		get = testing.AllocsPerRun(200, func() { e.Get(ctx, "t.amount", k) })
		set = testing.AllocsPerRun(200, func() { e.Set(ctx, "t.amount", k, 60.0, time.Time{}) })
		return
	}
	pg, ps := measure(plain)
	og, os := measure(observed)
	if og != pg || os != ps {
		t.Fatalf("allocations per Get %v → %v, per Set %v → %v with metrics", pg, og, ps, os)
	}
}

// TestRPCSeriesAndLint: the interceptor's series by procedure and code through a real
// server, and every series' metadata passing Prometheus's linter, as scraped from Handler
// at GET /metrics on the server's port.
func TestRPCSeriesAndLint(t *testing.T) {
	m := metrics.New()
	e := newEngine(t, m)
	srv, err := server.New(ctx, server.Config{Engine: e, Logger: slog.New(slog.DiscardHandler),
		Interceptors: []connect.Interceptor{m.RPC()}, Handlers: map[string]http.Handler{"GET /metrics": m.Handler()}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	c := ospreyv1connect.NewEngineServiceClient(hs.Client(), hs.URL)
	for _, sel := range []string{"t.amount", "t.amount", "t.nosuch"} {
		c.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: sel, Keys: map[string]string{"id": "1"}}))
	}
	for series, want := range map[string]float64{
		`osprey_rpc_duration_seconds_count{code="ok",procedure="/osprey.v1.EngineService/Get"}`:        2,
		`osprey_rpc_duration_seconds_count{code="not_found",procedure="/osprey.v1.EngineService/Get"}`: 1,
	} {
		if got := value(t, m.Registry(), series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	problems, err := promlint.New(strings.NewReader(scrape(t, hs.URL+"/metrics"))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "osprey_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
