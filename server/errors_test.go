package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/server"
)

// TestErrorCodes checks every error path's code, message and field detail over every
// protocol.
func TestErrorCodes(t *testing.T) {
	e := start(t, envOptions{cfg: server.Config{MaxMessageBytes: 64 << 10}})
	str := structpb.NewStringValue
	num := structpb.NewNumberValue
	nested, _ := structpb.NewStruct(map[string]any{"card_id": "c1", "amount": map[string]any{"v": 1.0}})
	okRow, _ := structpb.NewStruct(map[string]any{"card_id": "c1", "amount": 1.0})
	manySelectors := make([]string, server.MaxGetManySelectors+1)
	for i := range manySelectors {
		manySelectors[i] = "fraud.count"
	}
	cases := []struct {
		name  string
		call  func(ctx context.Context, c clients) error
		code  connect.Code
		msg   string // the message contains it
		field string // the BadRequest detail names it ("" for no check)
	}{
		{"bad selector", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount+", Keys: keys("c1")}))
			return err
		}, connect.CodeInvalidArgument, `selector: invalid selector "fraud.amount+": aggregation: empty after '+'`, "selector"},
		{"empty selector", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Keys: keys("c1")}))
			return err
		}, connect.CodeInvalidArgument, "selector:", "selector"},
		{"unknown feature", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.nope", Keys: keys("c1")}))
			return err
		}, connect.CodeNotFound, "feature not found: fraud.nope", ""},
		{"missing key", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.count", Keys: map[string]string{"user": "u"}}))
			return err
		}, connect.CodeInvalidArgument, `keys: `, "keys"},
		{"unknown feature in a write", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.nope", Keys: keys("c1"), Value: num(1)}))
			return err
		}, connect.CodeNotFound, "fraud.nope", ""},
		{"selector suffix as a write fqn", func(ctx context.Context, c clients) error {
			_, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.amount+avg", Keys: keys("c1"), Value: num(1)}))
			return err
		}, connect.CodeInvalidArgument, "fqn: ", "fqn"},
		{"type mismatch", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: str("many")}))
			return err
		}, connect.CodeFailedPrecondition, `value: set fraud.count: type mismatch: want int, got string "many"`, "value"},
		{"fraction for an int", func(ctx context.Context, c clients) error {
			_, err := c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: num(1.5)}))
			return err
		}, connect.CodeFailedPrecondition, "not a whole number", "value"},
		{"missing value", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys("c1")}))
			return err
		}, connect.CodeInvalidArgument, "value: missing", "value"},
		{"object value", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: structpb.NewStructValue(okRow)}))
			return err
		}, connect.CodeInvalidArgument, "value: an object", "value"},
		{"bad timestamp", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: num(1), Timestamp: &timestamppb.Timestamp{Nanos: -1}}))
			return err
		}, connect.CodeInvalidArgument, "timestamp: ", "timestamp"},
		{"append to a scalar", func(ctx context.Context, c clients) error {
			_, err := c.engine.Append(ctx, connect.NewRequest(&ospreyv1.AppendRequest{Fqn: "fraud.count", Keys: keys("c1"), Value: num(1)}))
			return err
		}, connect.CodeFailedPrecondition, "unsupported operation", ""},
		{"aggregation not declared", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount+max", Keys: keys("c1")}))
			return err
		}, connect.CodeFailedPrecondition, "not max", ""},
		{"version out of range", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.seen@-3", Keys: keys("c1")}))
			return err
		}, connect.CodeOutOfRange, "keeps 2 previous versions", ""},
		{"write outside the window", func(ctx context.Context, c clients) error {
			_, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.amount", Keys: keys("c1"), Value: num(1),
				Timestamp: timestamppb.New(time.Now().Add(-48 * time.Hour))}))
			return err
		}, connect.CodeOutOfRange, "timestamp: ", "timestamp"},
		{"middleware rejection", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.guarded", Keys: keys("c1"), Value: num(11)}))
			return err
		}, connect.CodeFailedPrecondition, "rejected by middleware", "value"},
		{"middleware timeout", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "test.slow", Keys: map[string]string{"id": "1"}}))
			return err
		}, connect.CodeDeadlineExceeded, "context deadline exceeded", ""},
		{"panic in a handler", func(ctx context.Context, c clients) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "test.boom", Keys: map[string]string{"id": "1"}}))
			return err
		}, connect.CodeInternal, "internal error", ""},
		{"empty GetMany", func(ctx context.Context, c clients) error {
			_, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: []string{"fraud.count"}}))
			return err
		}, connect.CodeInvalidArgument, "entities: empty", "entities"},
		{"oversized GetMany", func(ctx context.Context, c clients) error {
			_, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: manySelectors, Entities: []*ospreyv1.Entity{{Keys: keys("c1")}}}))
			return err
		}, connect.CodeResourceExhausted, "selectors: 1001 selectors", ""},
		{"oversized message", func(ctx context.Context, c clients) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.country", Keys: keys("c1"), Value: str(strings.Repeat("x", 100<<10))}))
			return err
		}, connect.CodeResourceExhausted, "", ""},
		{"bad manifest", func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: bad, namespace: tmp}
spec: {primitive: int, freshness: 1h, staleness: 1m, keys: [id]}
`)}))
			return err
		}, connect.CodeInvalidArgument, "manifest: document 1 (line 5): spec.staleness: must be ≥ spec.freshness", "manifest"},
		{"empty manifest", func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{}))
			return err
		}, connect.CodeInvalidArgument, "manifest: empty", "manifest"},
		{"module not provided", func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: prog, namespace: tmp}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], builder: {module: prog.wasm}}
`)}))
			return err
		}, connect.CodeInvalidArgument, `modules["prog.wasm"]: missing: manifest: document 1`, `modules["prog.wasm"]`},
		{"module by unknown digest", func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: prog, namespace: tmp}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], builder: {module: "sha256:` + strings.Repeat("ab", 32) + `"}}
`)}))
			return err
		}, connect.CodeFailedPrecondition, "module not found", ""},
		{"feature without its data source", func(ctx context.Context, c clients) error {
			_, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: fed, namespace: tmp}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], dataSource: tmp.nowhere}
`)}))
			return err
		}, connect.CodeFailedPrecondition, "tmp.nowhere", ""},
		{"delete unknown", func(ctx context.Context, c clients) error {
			_, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "fraud.nope"}))
			return err
		}, connect.CodeNotFound, "fraud.nope", ""},
		{"bad namespace filter", func(ctx context.Context, c clients) error {
			_, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: "no-such"}))
			return err
		}, connect.CodeInvalidArgument, "namespace: ", "namespace"},
		{"dry run of a sourceless feature", func(ctx context.Context, c clients) error {
			_, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.count", Keys: keys("c1")}))
			return err
		}, connect.CodeFailedPrecondition, "has no program", ""},
		{"dry run with a nested row", func(ctx context.Context, c clients) error {
			_, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.count", Row: nested}))
			return err
		}, connect.CodeInvalidArgument, "row.amount: ", "row.amount"},
		{"nested row", func(ctx context.Context, c clients) error {
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{okRow, nested}}))
			return err
		}, connect.CodeInvalidArgument, "rows[1].amount: ", "rows[1].amount"},
		{"row with a mixed list", func(ctx context.Context, c clients) error {
			l, _ := structpb.NewStruct(map[string]any{"card_id": "c1", "tags": []any{"a", 1.0}})
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{okRow, okRow, l}}))
			return err
		}, connect.CodeInvalidArgument, "rows[2].tags: ", "rows[2].tags"},
		{"bad timestamp field", func(ctx context.Context, c clients) error {
			l, _ := structpb.NewStruct(map[string]any{"card_id": "c1", "ts": "yesterday"})
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{l}}))
			return err
		}, connect.CodeInvalidArgument, "row 0", "rows[0]"},
		{"unknown source", func(ctx context.Context, c clients) error {
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.nope"}))
			return err
		}, connect.CodeNotFound, "fraud.nope", ""},
		{"bad source name", func(ctx context.Context, c clients) error {
			_, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "a.b.c"}))
			return err
		}, connect.CodeInvalidArgument, "source: ", "source"},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := e.clients(p)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.name == "bad timestamp" && strings.HasSuffix(p.name, "json") {
						t.Skip("a JSON client cannot send an invalid timestamp")
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					ce := wantCode(t, tc.call(ctx, c), tc.code)
					if !strings.Contains(ce.Message(), tc.msg) {
						t.Errorf("message %q lacks %q", ce.Message(), tc.msg)
					}
					if strings.Contains(ce.Message(), "goroutine ") || strings.Contains(ce.Message(), ".go:") {
						t.Errorf("message %q has a stack trace", ce.Message())
					}
					if tc.field != "" && !hasField(ce, tc.field) {
						t.Errorf("no BadRequest detail names %q (message %q)", tc.field, ce.Message())
					}
				})
			}
			// The server still serves after the panic.
			if _, err := c.engine.Get(context.Background(), connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.count", Keys: keys("c1")})); err != nil {
				t.Fatal(err)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "servertest_panic: boom") {
		t.Error("the panic was not logged")
	}
}

func hasField(ce *connect.Error, field string) bool {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				if fv.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

// TestGetManyPanicInCell: a panic reading one cell fails that cell only.
func TestGetManyPanicInCell(t *testing.T) {
	e := start(t, envOptions{})
	ents := make([]*ospreyv1.Entity, 8)
	for i := range ents {
		ents[i] = &ospreyv1.Entity{Keys: map[string]string{"id": "x"}}
	}
	res, err := e.clients(protocols[0]).engine.GetMany(context.Background(), connect.NewRequest(&ospreyv1.GetManyRequest{
		Selectors: []string{"test.boom"}, Entities: ents}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Msg.GetResults() {
		if got := r.GetFeatures()[0].GetError(); got != "internal: internal error" {
			t.Fatalf("cell error %q", got)
		}
	}
}
