package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/plugins"
	_ "github.com/osprey-ml/osprey/plugins/middleware" // validate, clip
	memnotifier "github.com/osprey-ml/osprey/plugins/notifier/memory"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

// Test-only native middlewares.
var gates sync.Map // gate name → *gate

// gate holds calls of the servertest_gate middleware until released.
type gate struct {
	entered chan struct{} // one value per call entering
	release chan struct{}
}

func newGate(name string) *gate {
	g := &gate{entered: make(chan struct{}, 16), release: make(chan struct{})}
	gates.Store(name, g)
	return g
}

func init() {
	// servertest_block blocks until the call's deadline: a middleware that is too slow.
	plugins.RegisterMiddleware("servertest_block", func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(ctx context.Context, _ *engine.Call, _ engine.Value) (engine.Value, error) {
			<-ctx.Done()
			return engine.Null, ctx.Err()
		}, nil
	})
	// servertest_panic panics: a bug in a middleware.
	plugins.RegisterMiddleware("servertest_panic", func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
		return func(context.Context, *engine.Call, engine.Value) (engine.Value, error) {
			panic("servertest_panic: boom")
		}, nil
	})
	// servertest_gate waits for the gate named by config "gate" to be released.
	plugins.RegisterMiddleware("servertest_gate", func(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		name := ref.Config["gate"]
		return func(ctx context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			g, ok := gates.Load(name)
			if !ok {
				return v, nil
			}
			g.(*gate).entered <- struct{}{}
			select {
			case <-g.(*gate).release:
				return v, nil
			case <-ctx.Done():
				return engine.Null, ctx.Err()
			}
		}, nil
	})
}

// baseManifest is applied to every test server.
const baseManifest = `
apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: transactions, namespace: fraud}
spec:
  kind: rest
  keyFields: [card_id]
  timestampField: ts
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: amount, namespace: fraud, labels: {team: risk}}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [card_id]
  builder:
    aggr: [sum, count, avg]
    aggrGranularity: 1m
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: country, namespace: fraud}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [card_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: count, namespace: fraud}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [card_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: tags, namespace: fraud}
spec:
  primitive: "[]string"
  freshness: 1h
  staleness: 24h
  keys: [card_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: seen, namespace: fraud}
spec:
  primitive: timestamp
  freshness: 1h
  staleness: 24h
  keys: [card_id]
  keepPrevious: {versions: 2, over: 1h}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: guarded, namespace: fraud}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [card_id]
  middlewares:
    - name: validate
      stages: [preSet]
      config: {min: "0", max: "10"}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: slow, namespace: test}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  timeout: 100ms
  keys: [id]
  middlewares:
    - {name: servertest_block, stages: [preGet]}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: boom, namespace: test}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  keys: [id]
  middlewares:
    - {name: servertest_panic, stages: [preGet]}
`

// env is a running test server with its engine.
type env struct {
	t      *testing.T
	srv    *server.Server
	eng    *engine.Engine
	host   *host.Host
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer

	stopOnce sync.Once
	stopErr  error
}

type envOptions struct {
	cfg      server.Config // Engine, Host and Notifier are filled in
	noHost   bool
	noApply  bool
	noNotify bool
}

// syncBuffer collects logs.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

func newEngine(t *testing.T, h *host.Host, n engine.Notifier, log *slog.Logger) *engine.Engine {
	t.Helper()
	st := memstate.New()
	t.Cleanup(func() { st.Close() })
	opts := []engine.Option{engine.WithLogger(log)}
	if n != nil {
		opts = append(opts, engine.WithNotifier(n))
	}
	if h != nil {
		opts = append(opts, engine.WithPrograms(h), engine.WithMiddlewareResolver(h.Resolver(plugins.Middlewares)))
	} else {
		opts = append(opts, engine.WithMiddlewareResolver(plugins.Middlewares))
	}
	eng := engine.New(st, opts...)
	t.Cleanup(func() { eng.Close() })
	return eng
}

// start runs a server on a loopback port with Serve, the way `osprey serve` does.
func start(t *testing.T, o envOptions) *env {
	t.Helper()
	logs := &syncBuffer{}
	var w io.Writer = logs
	if testing.Verbose() && os.Getenv("SERVER_TEST_LOGS") != "" {
		w = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := o.cfg
	cfg.Logger = log
	if !o.noHost && cfg.Host == nil {
		h, err := host.New(context.Background(), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(context.Background()) })
		cfg.Host = h
	}
	if !o.noNotify && cfg.Notifier == nil {
		n, err := memnotifier.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		cfg.Notifier = n
	}
	h, _ := cfg.Host.(*host.Host)
	if cfg.Engine == nil {
		cfg.Engine = newEngine(t, h, cfg.Notifier, log)
	}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, srv: srv, eng: cfg.Engine, host: h, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { e.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	if !o.noApply {
		e.apply(baseManifest, nil, writeToken(cfg.Tokens))
	}
	return e
}

func writeToken(tokens map[string]server.Scope) string {
	for tok, sc := range tokens {
		if sc == server.ScopeWrite {
			return tok
		}
	}
	return ""
}

// stop shuts the server down and returns what Serve returned.
func (e *env) stop() error {
	e.stopOnce.Do(func() {
		e.cancel()
		select {
		case e.stopErr = <-e.done:
		case <-time.After(30 * time.Second):
			e.stopErr = errors.New("Serve did not return")
		}
	})
	return e.stopErr
}

// apply applies a manifest through ApplyFeature over Connect.
func (e *env) apply(manifest string, modules map[string][]byte, token string) *ospreyv1.ApplyFeatureResponse {
	e.t.Helper()
	req := connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(manifest), Modules: modules})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	res, err := ospreyv1connect.NewRegistryServiceClient(http.DefaultClient, e.url).ApplyFeature(context.Background(), req)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return res.Msg
}

// protocol is a way to call the server.
type protocol struct {
	name string
	http *http.Client
	opts []connect.ClientOption
}

var (
	h1Client  = &http.Client{Transport: &http.Transport{}}
	h2cClient = func() *http.Client {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		return &http.Client{Transport: &http.Transport{Protocols: p}}
	}()
)

// protocols are every protocol the server speaks, over the HTTP versions clients use.
var protocols = []protocol{
	{name: "connect-proto", http: h1Client},
	{name: "connect-json", http: h1Client, opts: []connect.ClientOption{connect.WithProtoJSON()}},
	{name: "connect-h2c", http: h2cClient},
	{name: "grpc", http: h2cClient, opts: []connect.ClientOption{connect.WithGRPC()}},
	{name: "grpc-web", http: h1Client, opts: []connect.ClientOption{connect.WithGRPCWeb()}},
	{name: "grpc-web-json", http: h1Client, opts: []connect.ClientOption{connect.WithGRPCWeb(), connect.WithProtoJSON()}},
}

// clients are the generated clients for one protocol.
type clients struct {
	engine   ospreyv1connect.EngineServiceClient
	registry ospreyv1connect.RegistryServiceClient
	ingest   ospreyv1connect.IngestServiceClient
}

func (e *env) clients(p protocol, extra ...connect.ClientOption) clients {
	opts := append(append([]connect.ClientOption{}, p.opts...), extra...)
	return clients{
		engine:   ospreyv1connect.NewEngineServiceClient(p.http, e.url, opts...),
		registry: ospreyv1connect.NewRegistryServiceClient(p.http, e.url, opts...),
		ingest:   ospreyv1connect.NewIngestServiceClient(p.http, e.url, opts...),
	}
}

// bearer adds a bearer token to every call.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}), streamBearer(token))
}

type streamBearer string

func (s streamBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (s streamBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(s))
		return conn
	}
}
func (s streamBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// wantCode fails unless err is a connect error with code want.
func wantCode(t *testing.T, err error, want connect.Code) *connect.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %T %v, want a connect error", err, err)
	}
	if ce.Code() != want {
		t.Fatalf("got code %v (%v), want %v", ce.Code(), ce.Message(), want)
	}
	return ce
}

func keys(id string) map[string]string { return map[string]string{"card_id": id} }
