package extism_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/host/extism"
)

// TestExamplePlugins runs the AssemblyScript plugins of examples/plugins (built from source
// by examples/plugins/build.sh with @extism/as-pdk) through the host: the encoder, the
// middleware (its value replaced, its error), and the connector against a loopback HTTP
// server standing in for the third-party API, reachable only as a declared host.
func TestExamplePlugins(t *testing.T) {
	mask := load(t, extism.DefaultPolicy, extism.Spec{Name: "mask", Module: module(t, "../../examples/plugins/mask/mask.wasm"),
		Functions: []string{"encode"}, Config: map[string]string{"mask_char": "#"}})
	out, err := mask.Call(ctx, "encode", []byte(`{"version":1,"feature":"user.email","primitive":"string","value":"alice@example.com","config":{}}`))
	if err != nil || string(out) != `{"value":"a####@example.com"}` {
		t.Fatalf("mask = %s, %v", out, err)
	}

	validate := load(t, extism.DefaultPolicy, extism.Spec{Name: "validate", Module: module(t, "../../examples/plugins/validate/validate.wasm"),
		Functions: []string{"handle"}})
	in := func(v string) []byte {
		return []byte(`{"version":1,"feature":"payments.amount","keys":{"account_id":"a1"},"op":"set","stage":"preSet","value":` + v +
			`,"timestamp":"2026-12-01T10:00:00Z","config":{"max":"10000"}}`)
	}
	if out, err := validate.Call(ctx, "handle", in("-5")); err != nil || string(out) != `{"value":0}` {
		t.Fatalf("validate(-5) = %s, %v", out, err)
	}
	if _, err := validate.Call(ctx, "handle", in("25000")); !errors.Is(err, extism.ErrFailed) || !strings.Contains(err.Error(), "exceeds max 10000") {
		t.Fatalf("validate(25000) = %v", err)
	}
	if out, err := validate.Call(ctx, "handle", in("2500")); err != nil || string(out) != `{"value":2500}` {
		t.Fatalf("validate(2500) = %s, %v", out, err)
	}

	var asked []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.RequestURI())
		if r.URL.Query().Get("ip") == "10.0.0.1" {
			http.Error(w, "private", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, `{"country":"FR"}`)
	}))
	defer api.Close()
	u, _ := url.Parse(api.URL)
	p := extism.DefaultPolicy
	p.AllowedHosts = []string{u.Hostname()}
	geo := load(t, p, extism.Spec{Name: "geoip", Module: module(t, "../../examples/plugins/geoip/geoip.wasm"), Functions: []string{"compute"},
		Config: map[string]string{"endpoint": api.URL + "/lookup"}, AllowedHosts: []string{u.Hostname()}})
	if out, err := geo.Call(ctx, "compute", []byte(`{"version":1,"feature":"geo.country","keys":{"ip":"1.2.3.4"},"config":{}}`)); err != nil ||
		string(out) != `{"value":"FR"}` {
		t.Fatalf("geoip = %s, %v", out, err)
	}
	if _, err := geo.Call(ctx, "compute", []byte(`{"version":1,"feature":"geo.country","keys":{"ip":"10.0.0.1"},"config":{}}`)); !errors.Is(err, extism.ErrFailed) ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("geoip on a 404 = %v", err)
	}
	if len(asked) != 2 || asked[0] != "/lookup?ip=1.2.3.4" {
		t.Fatalf("the API was asked %v", asked)
	}
	// Without the host declared, the same plugin cannot reach it.
	blind := load(t, p, extism.Spec{Name: "geoip", Module: module(t, "../../examples/plugins/geoip/geoip.wasm"),
		Config: map[string]string{"endpoint": api.URL + "/lookup"}})
	if _, err := blind.Call(ctx, "compute", []byte(`{"version":1,"feature":"geo.country","keys":{"ip":"1.2.3.4"},"config":{}}`)); !errors.Is(err, extism.ErrDenied) {
		t.Fatalf("geoip without its host declared = %v", err)
	}
}
