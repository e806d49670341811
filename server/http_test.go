package server_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/server"
)

func TestAuth(t *testing.T) {
	e := start(t, envOptions{cfg: server.Config{Tokens: map[string]server.Scope{"reader": server.ScopeRead, "writer": server.ScopeWrite}}})
	row, _ := structpb.NewStruct(map[string]any{"card_id": "c1"})
	calls := map[string]func(context.Context, clients) error{
		"Get": func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.count", Keys: keys("c1")}))
			return err
		},
		"ListFeatures": func(ctx context.Context, c clients) error {
			_, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
			return err
		},
		"Watch": func(ctx context.Context, c clients) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.engine.Watch(ctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.count"}))
			if err != nil {
				return err
			}
			defer stream.Close()
			// A rejected stream fails on its first Receive; an accepted one waits for a
			// change.
			go func() {
				time.Sleep(200 * time.Millisecond)
				cancel()
			}()
			if stream.Receive() {
				return nil
			}
			if c := connect.CodeOf(stream.Err()); c == connect.CodeCanceled || c == connect.CodeDeadlineExceeded {
				return nil
			}
			return stream.Err()
		},
		"Set": func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: structpb.NewNumberValue(1)}))
			return err
		},
		"Ingest": func(ctx context.Context, c clients) error {
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{row}}))
			return err
		},
		"ApplyFeature": func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(baseManifest)}))
			return err
		},
		"DryRun": func(ctx context.Context, c clients) error {
			_, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.count"}))
			if connect.CodeOf(err) == connect.CodeFailedPrecondition { // authorised: no program
				return nil
			}
			return err
		},
	}
	reads := []string{"Get", "ListFeatures", "Watch"}
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		for name, call := range calls {
			read := slices.Contains(reads, name)
			for _, tc := range []struct {
				token string
				want  connect.Code // 0: succeeds
			}{
				{"", connect.CodeUnauthenticated},
				{"nope", connect.CodeUnauthenticated},
				{"reader", map[bool]connect.Code{true: 0, false: connect.CodePermissionDenied}[read]},
				{"writer", 0},
			} {
				t.Run(p.name+"/"+name+"/"+tc.token, func(t *testing.T) {
					var opts []connect.ClientOption
					if tc.token != "" {
						opts = append(opts, bearer(tc.token))
					}
					err := call(context.Background(), e.clients(p, opts...))
					if tc.want == 0 {
						if err != nil {
							t.Fatal(err)
						}
						return
					}
					ce := wantCode(t, err, tc.want)
					if tc.want == connect.CodeUnauthenticated && p.name != "grpc" && ce.Meta().Get("WWW-Authenticate") == "" {
						t.Error("no WWW-Authenticate header")
					}
				})
			}
		}
	}
	// Health, reflection, /healthz and /readyz need no token.
	if _, err := grpchealth.NewClient(h2cClient, e.url, connect.WithGRPC()).Check(context.Background(), &grpchealth.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := grpcreflect.NewClient(h2cClient, e.url).NewStream(context.Background()).ListServices(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, err := http.Get(e.url + path); err != nil || res.StatusCode != 200 {
			t.Fatal(path, res, err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	eng := newEngine(t, nil, nil, nil)
	for name, cfg := range map[string]server.Config{
		"no engine":       {},
		"bad scope":       {Engine: eng, Tokens: map[string]server.Scope{"t": 7}},
		"empty token":     {Engine: eng, Tokens: map[string]server.Scope{"": server.ScopeRead}},
		"bad origin":      {Engine: eng, CORSOrigins: []string{"example.com/path"}},
		"negative limits": {Engine: eng, MaxMessageBytes: -1},
	} {
		if _, err := server.New(context.Background(), cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestScopes(t *testing.T) {
	for _, s := range []string{"read", "WRITE"} {
		sc, err := server.ParseScope(s)
		if err != nil || !strings.EqualFold(sc.String(), s) {
			t.Errorf("ParseScope(%q) = %v, %v", s, sc, err)
		}
	}
	if _, err := server.ParseScope("admin"); err == nil {
		t.Error("ParseScope(admin) succeeded")
	}
}

func TestCORS(t *testing.T) {
	e := start(t, envOptions{cfg: server.Config{CORSOrigins: []string{"https://app.example.com"}}})
	preflight := func(origin, headers string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, e.url+"/osprey.v1.EngineService/Get", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", headers)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	// Browsers send the header names lower case and sorted.
	res := preflight("https://app.example.com", "authorization,connect-protocol-version,content-type,x-grpc-web,x-user-agent")
	if res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("allowed origin: %d %v", res.StatusCode, res.Header)
	}
	allowed := strings.ToLower(res.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"content-type", "connect-protocol-version", "authorization", "x-grpc-web"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight does not allow %s: %q", h, allowed)
		}
	}
	if res.Header.Get("Access-Control-Max-Age") == "" {
		t.Error("no Access-Control-Max-Age")
	}
	res = preflight("https://evil.example.com", "content-type")
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin allowed: %v", res.Header)
	}

	// An actual gRPC-Web call from the browser origin exposes the gRPC headers.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/osprey.v1.EngineService/Get",
		strings.NewReader(`{"selector":"fraud.count","keys":{"card_id":"c1"}}`))
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
		t.Fatalf("actual request: %d %v", res.StatusCode, res.Header)
	}
}

func TestReflection(t *testing.T) {
	e := start(t, envOptions{noApply: true})
	for _, p := range []protocol{protocols[3], protocols[2]} { // bidi streams need HTTP/2
		stream := grpcreflect.NewClient(p.http, e.url, p.opts...).NewStream(context.Background())
		names, err := stream.ListServices()
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		var got []string
		for _, n := range names {
			got = append(got, string(n))
		}
		for _, want := range []string{"osprey.v1.EngineService", "osprey.v1.RegistryService", "osprey.v1.IngestService", "grpc.health.v1.Health"} {
			if !slices.Contains(got, want) {
				t.Errorf("%s: ListServices = %v, missing %s", p.name, got, want)
			}
		}
		files, err := stream.FileContainingSymbol("osprey.v1.EngineService")
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: FileContainingSymbol = %v, %v", p.name, files, err)
		}
		if _, err := stream.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHealth checks /healthz (liveness: 200 whatever the readiness), /readyz and gRPC
// health (readiness: SetReady).
func TestHealth(t *testing.T) {
	e := start(t, envOptions{noApply: true})
	status := func(path string) int {
		t.Helper()
		res, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	check := func(service string) grpchealth.Status {
		t.Helper()
		res, err := grpchealth.NewClient(h2cClient, e.url, connect.WithGRPC()).Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	if status("/healthz") != 200 || status("/readyz") != 200 || check("") != grpchealth.StatusServing || check("osprey.v1.EngineService") != grpchealth.StatusServing {
		t.Fatal("not ready after New")
	}
	e.srv.SetReady(false)
	if status("/readyz") != 503 || check("") != grpchealth.StatusNotServing || check("osprey.v1.IngestService") != grpchealth.StatusNotServing {
		t.Fatal("ready after SetReady(false)")
	}
	if status("/healthz") != 200 {
		t.Fatal("/healthz (liveness) is not 200 while not ready")
	}
	e.srv.SetReady(true)
	if status("/readyz") != 200 {
		t.Fatal("not ready after SetReady(true)")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, err := http.Post(e.url+path, "text/plain", nil); err != nil || res.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST %s: %v %v", path, res, err)
		}
	}
}

// TestHandler serves through Handler with an http.Server of the caller's.
func TestHandler(t *testing.T) {
	eng := newEngine(t, nil, nil, nil)
	srv, err := server.New(context.Background(), server.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/healthz", nil)
	srv.Handler().ServeHTTP(rec, req)
	if rec.code != 200 || rec.body.String() != "ok\n" {
		t.Fatalf("/healthz: %d %q", rec.code, rec.body.String())
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }
