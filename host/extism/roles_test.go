package extism_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

type encoders map[string]engine.Encoder

func (e encoders) Encoder(name string) (engine.Encoder, error) {
	if enc, ok := e[name]; ok {
		return enc, nil
	}
	return nil, fmt.Errorf("%w: no encoding %q", engine.ErrUnsupported, name)
}

type programs map[string]engine.Program

func (p programs) LoadProgram(_ context.Context, f *engine.Feature) (engine.Program, error) {
	if prog, ok := p[f.Builder.Module]; ok {
		return prog, nil
	}
	return nil, fmt.Errorf("%w: no program %q", engine.ErrUnsupported, f.Builder.Module)
}

// TestRolesThroughTheEngine: each role of the example plugins working in a feature's
// pipeline: a middleware replacing and rejecting values, an encoder in a selector, and a
// connector computing an on-request feature from a loopback "third-party API".
func TestRolesThroughTheEngine(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"country":%q}`, map[string]string{"1.2.3.4": "FR", "5.6.7.8": "JP"}[r.URL.Query().Get("ip")])
	}))
	defer api.Close()
	u, _ := url.Parse(api.URL)
	policy := extism.DefaultPolicy
	policy.AllowedHosts = []string{u.Hostname()}

	validate := load(t, policy, extism.Spec{Name: "validate", Module: module(t, "../../examples/plugins/validate/validate.wasm"), Functions: []string{"handle"}})
	mask := load(t, policy, extism.Spec{Name: "mask", Module: module(t, "../../examples/plugins/mask/mask.wasm"), Functions: []string{"encode"}})
	geoip := load(t, policy, extism.Spec{Name: "geoip", Module: module(t, "../../examples/plugins/geoip/geoip.wasm"), Functions: []string{"compute"},
		Config: map[string]string{"endpoint": api.URL + "/lookup"}, AllowedHosts: []string{u.Hostname()}})

	amount := &engine.Feature{FQN: "payments.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"account_id"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		Middlewares: []engine.MiddlewareRef{{Name: "validate", Stages: []engine.Stage{engine.StagePreSet}, Config: map[string]string{"max": "10000"}}}}
	email := &engine.Feature{FQN: "user.email", Primitive: engine.PrimitiveString, Keys: []string{"user"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	country := &engine.Feature{FQN: "geo.country", Primitive: engine.PrimitiveString, Keys: []string{"ip"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: 2 * time.Second, Builder: engine.Builder{Kind: "wasm", Module: "geoip"}}

	st := memory.New()
	defer st.Close()
	e := engine.New(st, engine.WithLogger(quiet),
		engine.WithMiddlewareResolver(engine.MiddlewareResolverFunc(func(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
			if ref.Name != "validate" {
				return nil, fmt.Errorf("no middleware %q", ref.Name)
			}
			return validate.Middleware("handle", f, ref.Config), nil
		})),
		engine.WithEncoderResolver(encoders{"mask": mask.Encoder("encode", nil)}),
		engine.WithPrograms(programs{"geoip": geoip.Connector("compute", country, nil)}))
	defer e.Close()
	for _, f := range []*engine.Feature{amount, email, country} {
		if err := e.Apply(ctx, f); err != nil {
			t.Fatalf("apply %s: %v", f.FQN, err)
		}
	}

	a1 := engine.Keys{"account_id": "a1"}
	if w, err := e.Set(ctx, "payments.amount", a1, -5.0, time.Time{}); err != nil || w.Float() != 0 {
		t.Fatalf("set -5 through the middleware = %v, %v; want 0", w, err)
	}
	if _, err := e.Set(ctx, "payments.amount", a1, 25000.0, time.Time{}); !errors.Is(err, extism.ErrFailed) || !strings.Contains(err.Error(), "exceeds max 10000") {
		t.Fatalf("set 25000 = %v, want the plugin's rejection", err)
	}
	if got, _ := e.Get(ctx, "payments.amount", a1); got.Value.Float() != 0 {
		t.Fatalf("after the rejection: %v, want the 0 kept", got.Value)
	}

	if _, err := e.Set(ctx, "user.email", engine.Keys{"user": "u1"}, "alice@example.com", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.Get(ctx, "user.email[mask]", engine.Keys{"user": "u1"}); err != nil || got.Value.Str() != "a****@example.com" {
		t.Fatalf("user.email[mask] = %v, %v", got.Value, err)
	}

	if got, err := e.Get(ctx, "geo.country", engine.Keys{"ip": "1.2.3.4"}); err != nil || got.Value.Str() != "FR" || !got.Fresh {
		t.Fatalf("geo.country(1.2.3.4) = %v fresh=%v, %v", got.Value, got.Fresh, err)
	}
	if got, err := e.Get(ctx, "geo.country", engine.Keys{"ip": "5.6.7.8"}); err != nil || got.Value.Str() != "JP" {
		t.Fatalf("geo.country(5.6.7.8) = %v, %v", got.Value, err)
	}
}
