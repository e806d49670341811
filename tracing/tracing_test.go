package tracing_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
	"github.com/osprey-ml/osprey/tracing"
)

// collectorServer is an in-process OTLP/HTTP trace receiver: it keeps every span exported
// to it.
type collectorServer struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	srv   *httptest.Server
}

func newCollector(t *testing.T) *collectorServer {
	c := &collectorServer{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req collector.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		b, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// tree renders the spans as an indented tree of names, children sorted, with the feature
// attribute and an error status marked.
func (c *collectorServer) tree() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	children := map[string][]*tracepb.Span{}
	ids := map[string]bool{}
	for _, s := range c.spans {
		ids[string(s.SpanId)] = true
	}
	var roots []*tracepb.Span
	for _, s := range c.spans {
		if p := string(s.ParentSpanId); p != "" && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s *tracepb.Span, depth int)
	walk = func(s *tracepb.Span, depth int) {
		line := strings.Repeat("  ", depth) + s.Name
		for _, a := range s.Attributes {
			if a.Key == "osprey.feature" || a.Key == "osprey.outcome" {
				line += " " + a.Key + "=" + a.Value.GetStringValue()
			}
		}
		if s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			line += " ERROR"
		}
		b.WriteString(line + "\n")
		kids := children[string(s.SpanId)]
		slices.SortFunc(kids, func(a, b *tracepb.Span) int { return strings.Compare(a.Name, b.Name) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	slices.SortFunc(roots, func(a, b *tracepb.Span) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

// double is a program that writes twice the row's amount.
type double struct{}

func (double) Run(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return engine.ProgramResult{Value: engine.Float(call.Row["amount"].Float() * 2)}, nil
}

type loader struct{}

func (loader) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return double{}, nil
}

// TestSpanTree exports to an in-process OTLP collector, configured by the OTEL_*
// environment as an operator would, and checks the span tree of a Get through a middleware
// and of an Ingest: the RPC's span with the middleware's, the program's and the State
// calls' under it, each naming the feature and its outcome.
func TestSpanTree(t *testing.T) {
	col := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "osprey-test")
	ctx := context.Background()
	tr, err := tracing.FromEnv(ctx, "osprey", "test")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv = %v, %v", tr, err)
	}
	gate := engine.MiddlewareResolverFunc(func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			if v.Float() > 100 {
				return engine.Null, fmt.Errorf("%w: over 100", engine.ErrRejected)
			}
			return v, nil
		}, nil
	})
	st := memory.New()
	defer st.Close()
	e := engine.New(st, engine.WithTracer(tr.Tracer()), engine.WithMiddlewareResolver(gate), engine.WithPrograms(loader{}),
		engine.WithLogger(slog.New(slog.DiscardHandler)))
	defer e.Close()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "t.rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*engine.Feature{
		{FQN: "t.checked", Primitive: engine.PrimitiveFloat, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 2 * time.Hour, Timeout: time.Second,
			Builder:     engine.Builder{Kind: engine.BuilderSourceless},
			Middlewares: []engine.MiddlewareRef{{Name: "gate", Stages: []engine.Stage{engine.StagePostGet}}}},
		{FQN: "t.doubled", Primitive: engine.PrimitiveFloat, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 2 * time.Hour, Timeout: time.Second,
			DataSource: "t.rows", Builder: engine.Builder{Kind: "wasm", Module: "double"}},
	} {
		if err := e.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	interceptor, err := tr.Interceptor()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{Engine: e, Logger: slog.New(slog.DiscardHandler), Interceptors: []connect.Interceptor{interceptor}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ec := ospreyv1connect.NewEngineServiceClient(hs.Client(), hs.URL)
	ic := ospreyv1connect.NewIngestServiceClient(hs.Client(), hs.URL)
	keys := map[string]string{"id": "1"}
	if _, err := ec.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "t.checked", Keys: keys, Value: structpb.NewNumberValue(500)})); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "t.checked", Keys: keys})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Get through the rejecting middleware: %v", err)
	}
	row, _ := structpb.NewStruct(map[string]any{"id": "1", "amount": 21})
	if _, err := ic.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "t.rows", Rows: []*structpb.Struct{row}})); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(ctx); err != nil { // flushes
		t.Fatal(err)
	}
	// otelconnect marks a server span failed only for server-side codes (not FailedPrecondition).
	want := `osprey.v1.EngineService/Get
  middleware gate osprey.feature=t.checked osprey.outcome=rejected ERROR
  state get osprey.feature=t.checked osprey.outcome=ok
osprey.v1.EngineService/Set
  state set osprey.feature=t.checked osprey.outcome=ok
osprey.v1.IngestService/Ingest
  program t.doubled osprey.feature=t.doubled osprey.outcome=ok
  state update osprey.feature=t.doubled osprey.outcome=ok
`
	if got := col.tree(); got != want {
		t.Errorf("span tree:\n%s\nwant:\n%s", got, want)
	}
}
