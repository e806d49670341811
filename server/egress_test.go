package server_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/plugins/egress"
	_ "github.com/osprey-ml/osprey/plugins/egress/webhook" // "webhook"
	"github.com/osprey-ml/osprey/plugins/registrystore/dir"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

const alertsEgress = `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: alerts, namespace: fraud}
spec:
  type: webhook
  config: {url: "https://hooks.example.com/fraud", timeout: 2s}
`

// startEgresses runs a server with an egress set wired as osprey serve wires it: the
// engine resolves through the set the registry applies to.
func startEgresses(t *testing.T, store *dir.Store) (*env, *egress.Set) {
	t.Helper()
	set := egress.NewSet(egress.Policy{}, engine.DefaultNamespace, slog.New(slog.DiscardHandler))
	t.Cleanup(set.Close)
	st := memstate.New()
	t.Cleanup(func() { st.Close() })
	eng := engine.New(st, engine.WithEgresses(set), engine.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { eng.Close() })
	cfg := server.Config{Engine: eng, Egresses: set}
	if store != nil {
		cfg.Registry = store
	}
	return start(t, envOptions{cfg: cfg, noApply: true, noHost: true}), set
}

// TestEgressOverTheAPI applies, refuses, deletes and restores an Egress through the
// registry service.
func TestEgressOverTheAPI(t *testing.T) {
	ctx := context.Background()
	storeDir := t.TempDir()
	store, err := dir.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	e, set := startEgresses(t, store)
	c := e.clients(protocols[0])
	res := e.apply(alertsEgress, nil, "")
	if len(res.Applied) != 1 || res.Applied[0].Kind != "Egress" || res.Applied[0].Fqn != "fraud.alerts" || res.Applied[0].Action != "created" {
		t.Fatalf("applied %v", res.Applied)
	}
	if _, err := set.Egress("fraud.alerts"); err != nil {
		t.Fatalf("the set does not hold it: %v", err)
	}
	// Listed, with its configuration's keys and none of its values (they may be secrets).
	l, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if egs := l.Msg.GetEgresses(); len(egs) != 1 || egs[0].GetFqn() != "fraud.alerts" || egs[0].GetType() != "webhook" ||
		strings.Join(egs[0].GetConfigKeys(), ",") != "timeout,url" || strings.Contains(egs[0].String(), "hooks.example.com") {
		t.Fatalf("listed egresses %v", egs)
	}

	// A configuration the type refuses: InvalidArgument, on the manifest, naming the key.
	bad := strings.Replace(alertsEgress, "timeout: 2s", "timeot: 2s", 1)
	_, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(bad)}))
	ce := wantCode(t, err, connect.CodeInvalidArgument)
	if !strings.Contains(ce.Message(), "manifest: document 1 (line 1): egress fraud.alerts (webhook): invalid plugin config: spec.config.timeot: unknown key (did you mean timeout?)") {
		t.Errorf("message %q", ce.Message())
	}
	var field string
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if br, ok := v.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				field = br.FieldViolations[0].Field
			}
		}
	}
	if field != "manifest" {
		t.Errorf("field violation on %q, want manifest", field)
	}
	// An unknown type, likewise.
	_, err = c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(strings.Replace(alertsEgress, "type: webhook", "type: webhok", 1))}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), `spec.type: unknown egress type "webhok" (did you mean webhook?)`) {
		t.Errorf("message %q", ce.Message())
	}

	// Restored by a server over the same store.
	store2, err := dir.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	_, set2 := startEgresses(t, store2)
	if _, err := set2.Egress("fraud.alerts"); err != nil {
		t.Fatalf("not restored: %v", err)
	}

	// Deleted by name.
	if _, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "fraud.alerts"})); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Egress("fraud.alerts"); !errors.Is(err, egress.ErrNotApplied) {
		t.Fatalf("after delete: %v", err)
	}
	_, err = c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "fraud.alerts"}))
	wantCode(t, err, connect.CodeNotFound)
}

// TestEgressWithoutEgresses: a server without an egress set refuses Egress manifests with
// Unimplemented, applying nothing of the request.
func TestEgressWithoutEgresses(t *testing.T) {
	e := start(t, envOptions{noApply: true})
	c := e.clients(protocols[0])
	doc := alertsEgress + "---\n" + `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: spend, namespace: fraud}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [card_id]}
`
	_, err := c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(doc)}))
	ce := wantCode(t, err, connect.CodeUnimplemented)
	if !strings.Contains(ce.Message(), "manifest: document 1 (line 1): Egress fraud.alerts: this server has no egresses configured") {
		t.Errorf("message %q", ce.Message())
	}
	if fs := e.eng.Features(); len(fs) != 0 {
		t.Errorf("applied %v", fs)
	}
}
