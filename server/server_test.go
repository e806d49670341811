package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	memnotifier "github.com/osprey-ml/osprey/plugins/notifier/memory"
	"github.com/osprey-ml/osprey/server"
)

// TestEveryRPCOverEveryProtocol drives the engine and registry RPCs through the generated
// clients over Connect (binary and JSON, HTTP/1.1 and h2c), gRPC (h2c) and gRPC-Web.
func TestEveryRPCOverEveryProtocol(t *testing.T) {
	e := start(t, envOptions{})
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			ctx := context.Background()
			c := e.clients(p)
			card := keys("card-" + p.name)

			// Set, then Get the value back.
			set, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.country", Keys: card, Value: structpb.NewStringValue("FR")}))
			if err != nil {
				t.Fatal(err)
			}
			if set.Msg.GetFqn() != "fraud.country" || set.Msg.GetValue().GetStringValue() != "FR" {
				t.Fatalf("Set = %v", set.Msg)
			}
			get, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.country", Keys: card}))
			if err != nil {
				t.Fatal(err)
			}
			if !get.Msg.GetFound() || !get.Msg.GetFresh() || get.Msg.GetValue().GetStringValue() != "FR" || get.Msg.GetTimestamp() == nil {
				t.Fatalf("Get = %v", get.Msg)
			}

			// An int feature takes a whole JSON number; Incr adds to it.
			if _, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: card, Value: structpb.NewNumberValue(40)})); err != nil {
				t.Fatal(err)
			}
			incr, err := c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: "fraud.count", Keys: card, Value: structpb.NewNumberValue(2)}))
			if err != nil {
				t.Fatal(err)
			}
			if incr.Msg.GetValue().GetIntValue() != 42 {
				t.Fatalf("Incr = %v", incr.Msg)
			}
			// A string holding a number converts for an int feature.
			if _, err := c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: "fraud.count", Keys: card, Value: structpb.NewStringValue("1")})); err != nil {
				t.Fatal(err)
			}

			// Append one element, then a list; Update appends to a list.
			if _, err := c.engine.Append(ctx, connect.NewRequest(&ospreyv1.AppendRequest{Fqn: "fraud.tags", Keys: card, Value: structpb.NewStringValue("a")})); err != nil {
				t.Fatal(err)
			}
			list, _ := structpb.NewList([]any{"b", "c"})
			app, err := c.engine.Append(ctx, connect.NewRequest(&ospreyv1.AppendRequest{Fqn: "fraud.tags", Keys: card, Value: structpb.NewListValue(list)}))
			if err != nil {
				t.Fatal(err)
			}
			if got := app.Msg.GetValue().GetStringList().GetValues(); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("Append = %v", got)
			}
			upd, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.tags", Keys: card, Value: structpb.NewStringValue("d")}))
			if err != nil || upd.Msg.GetValue().GetStringList().GetValues()[3] != "d" {
				t.Fatalf("Update = %v, %v", upd, err)
			}

			// A windowed feature: Update adds to the window; Get returns the declared
			// aggregations only, +avg one of them.
			for _, x := range []float64{10, 20} {
				if _, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.amount", Keys: card, Value: structpb.NewNumberValue(x)})); err != nil {
					t.Fatal(err)
				}
			}
			win, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount", Keys: card}))
			if err != nil {
				t.Fatal(err)
			}
			w := win.Msg.GetValue().GetWindow()
			if w.GetSum() != 30 || w.GetCount() != 2 || w.GetAvg() != 15 || w.Min != nil || w.Max != nil {
				t.Fatalf("window = %v", w)
			}
			avg, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount+avg", Keys: card}))
			if err != nil || avg.Msg.GetValue().GetFloatValue() != 15 {
				t.Fatalf("Get +avg = %v, %v", avg, err)
			}

			// A timestamp feature and its previous version.
			t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, ts := range []time.Time{t1, t1.Add(time.Hour)} {
				if _, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.seen", Keys: card,
					Value: structpb.NewStringValue(ts.Format(time.RFC3339))})); err != nil {
					t.Fatal(err)
				}
			}
			prev, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.seen@-1", Keys: card}))
			if err != nil || !prev.Msg.GetValue().GetTimestampValue().AsTime().Equal(t1) {
				t.Fatalf("Get @-1 = %v, %v", prev, err)
			}

			// GetMany: a vector with one bad cell, which does not fail the call.
			many, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{
				Selectors: []string{"fraud.country", "fraud.count", "fraud.nope", "fraud.amount+sum"},
				Entities:  []*ospreyv1.Entity{{Keys: card}, {Keys: keys("nobody")}},
			}))
			if err != nil {
				t.Fatal(err)
			}
			rs := many.Msg.GetResults()
			if len(rs) != 2 || len(rs[0].GetFeatures()) != 4 {
				t.Fatalf("GetMany = %v", many.Msg)
			}
			cells := rs[0].GetFeatures()
			if cells[0].GetValue().GetStringValue() != "FR" || cells[1].GetValue().GetIntValue() != 43 || cells[3].GetValue().GetFloatValue() != 30 {
				t.Fatalf("GetMany cells = %v", cells)
			}
			if !strings.Contains(cells[2].GetError(), "not_found") || cells[2].GetFound() || cells[2].GetSelector() != "fraud.nope" {
				t.Fatalf("GetMany bad cell = %v", cells[2])
			}
			if nob := rs[1].GetFeatures()[0]; nob.GetFound() || nob.GetError() != "" || nob.GetFqn() != "fraud.country" {
				t.Fatalf("GetMany absent cell = %v", nob)
			}

			// FeatureDescriptor and ListFeatures.
			fd, err := c.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: "fraud.amount+avg"}))
			if err != nil {
				t.Fatal(err)
			}
			f := fd.Msg.GetFeature()
			if f.GetFqn() != "fraud.amount" || f.GetPrimitive() != "float" || !slices.Equal(f.GetAggregations(), []string{"sum", "count", "avg"}) ||
				f.GetGranularity().AsDuration() != time.Minute || f.GetStaleness().AsDuration() != time.Hour ||
				f.GetBuilder().GetKind() != "sourceless" || f.GetLabels()["team"] != "risk" {
				t.Fatalf("FeatureDescriptor = %v", f)
			}
			list2, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: "fraud"}))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range list2.Msg.GetFeatures() {
				names = append(names, f.GetFqn())
			}
			if !slices.Equal(names, []string{"fraud.amount", "fraud.count", "fraud.country", "fraud.guarded", "fraud.seen", "fraud.tags"}) ||
				len(list2.Msg.GetDataSources()) != 1 || list2.Msg.GetDataSources()[0].GetKeyFields()[0] != "card_id" {
				t.Fatalf("ListFeatures = %v", list2.Msg)
			}

			// Ingest into a data source that feeds no program: rows are counted.
			row, _ := structpb.NewStruct(map[string]any{"card_id": "c1", "amount": 12.5})
			ing, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{row, row}}))
			if err != nil || ing.Msg.GetRows() != 2 {
				t.Fatalf("Ingest = %v, %v", ing, err)
			}

			// ApplyFeature, DeleteFeature.
			name := strings.ReplaceAll(p.name, "-", "_")
			doc := `
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: ` + name + `, namespace: tmp}
spec: {primitive: bool, freshness: 1m, staleness: 1h, keys: [id]}
`
			ap, err := c.registry.ApplyFeature(ctx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(doc)}))
			if err != nil || ap.Msg.GetApplied()[0].GetAction() != "created" || ap.Msg.GetApplied()[0].GetFqn() != "tmp."+name {
				t.Fatalf("ApplyFeature = %v, %v", ap, err)
			}
			if _, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "tmp." + name, Keys: map[string]string{"id": "x"}, Value: structpb.NewBoolValue(true)})); err != nil {
				t.Fatal(err)
			}
			if _, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: "tmp." + name})); err != nil {
				t.Fatal(err)
			}
			_, err = c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "tmp." + name, Keys: map[string]string{"id": "x"}}))
			wantCode(t, err, connect.CodeNotFound)
		})
	}
}

// TestCurlJSON posts JSON by hand, as curl would.
func TestCurlJSON(t *testing.T) {
	e := start(t, envOptions{})
	ctx := context.Background()
	c := e.clients(protocols[0])
	for _, x := range []float64{1, 2} {
		if _, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.amount", Keys: keys("c1"), Value: structpb.NewNumberValue(x)})); err != nil {
			t.Fatal(err)
		}
	}
	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		res, err := http.Post(e.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(res.Body)
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %q: %v", path, b, err)
		}
		return res.StatusCode, out
	}
	code, out := post("/osprey.v1.EngineService/Get", `{"selector":"fraud.amount+avg","keys":{"card_id":"c1"}}`)
	if code != 200 || out["fqn"] != "fraud.amount" || out["found"] != true || out["value"].(map[string]any)["floatValue"] != 1.5 {
		t.Fatalf("Get: %d %v", code, out)
	}
	code, out = post("/osprey.v1.EngineService/Set", `{"fqn":"fraud.count","keys":{"card_id":"c1"},"value":7}`)
	if code != 200 || out["value"].(map[string]any)["intValue"] != "7" {
		t.Fatalf("Set: %d %v", code, out)
	}
	code, out = post("/osprey.v1.EngineService/Get", `{"selector":"fraud.amount+","keys":{"card_id":"c1"}}`)
	if code != 400 || out["code"] != "invalid_argument" ||
		out["message"] != `selector: invalid selector "fraud.amount+": aggregation: empty after '+'` {
		t.Fatalf("bad selector: %d %v", code, out)
	}
	// Connect GET for side-effect-free procedures.
	q := `{"selector":"fraud.count","keys":{"card_id":"c1"}}`
	res, err := http.Get(e.url + "/osprey.v1.EngineService/Get?encoding=json&message=" + urlQueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(b, []byte(`"intValue":"7"`)) {
		t.Fatalf("GET: %d %s", res.StatusCode, b)
	}
}

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", `"`, "%22", ":", "%3A", ",", "%2C", " ", "%20", "+", "%2B")
	return r.Replace(s)
}

// TestApplyIdempotent checks the actions ApplyFeature reports and that a request that fails
// anywhere applies nothing.
func TestApplyIdempotent(t *testing.T) {
	e := start(t, envOptions{})
	doc := func(fresh string) string {
		return `
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: x, namespace: idem}
spec: {primitive: int, freshness: ` + fresh + `, staleness: 1h, keys: [id]}
`
	}
	actions := func(r *ospreyv1.ApplyFeatureResponse) []string {
		var out []string
		for _, a := range r.GetApplied() {
			out = append(out, a.GetKind()+" "+a.GetFqn()+" "+a.GetAction())
		}
		return out
	}
	if got := actions(e.apply(doc("1m"), nil, "")); !slices.Equal(got, []string{"Feature idem.x created"}) {
		t.Fatal(got)
	}
	if got := actions(e.apply(doc("1m"), nil, "")); !slices.Equal(got, []string{"Feature idem.x unchanged"}) {
		t.Fatal(got)
	}
	if got := actions(e.apply(doc("2m"), nil, "")); !slices.Equal(got, []string{"Feature idem.x updated"}) {
		t.Fatal(got)
	}
	// The base manifest again: all unchanged, data source first in manifest order.
	got := actions(e.apply(baseManifest, nil, ""))
	if got[0] != "DataSource fraud.transactions unchanged" || got[1] != "Feature fraud.amount unchanged" {
		t.Fatal(got)
	}

	// A request whose second document is an incompatible change: the first is not applied
	// either, and the feature keeps its definition.
	c := e.clients(protocols[0])
	bad := `
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: fresh, namespace: idem}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id]}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: x, namespace: idem}
spec: {primitive: string, freshness: 1m, staleness: 1h, keys: [id]}
`
	_, err := c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(bad)}))
	ce := wantCode(t, err, connect.CodeFailedPrecondition)
	if !strings.Contains(ce.Message(), "document 2") || !strings.Contains(ce.Message(), "spec.primitive") {
		t.Fatal(ce.Message())
	}
	if _, err := e.eng.FeatureDescriptor(context.Background(), "idem.fresh"); err == nil {
		t.Fatal("idem.fresh was applied by a failed request")
	}
	if f, _ := e.eng.FeatureDescriptor(context.Background(), "idem.x"); f.Primitive.String() != "int" || f.Freshness != 2*time.Minute {
		t.Fatalf("idem.x = %+v", f)
	}

	// An updated feature that fails (an unknown middleware) is restored to what it was.
	bad = `
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: x, namespace: idem}
spec: {primitive: int, freshness: 5m, staleness: 1h, keys: [id]}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: y, namespace: idem}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
  middlewares: [{name: no_such_middleware, stages: [preSet]}]
`
	_, err = c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(bad)}))
	ce = wantCode(t, err, connect.CodeInvalidArgument)
	if !strings.Contains(ce.Message(), "no_such_middleware") {
		t.Fatal(ce.Message())
	}
	if f, _ := e.eng.FeatureDescriptor(context.Background(), "idem.x"); f.Freshness != 2*time.Minute {
		t.Fatalf("idem.x was not restored: %+v", f)
	}
}

// TestWatch streams changes over gRPC and Connect.
func TestWatch(t *testing.T) {
	e := start(t, envOptions{})
	for _, p := range []protocol{protocols[0], protocols[3], protocols[4]} {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := e.clients(p)
			// The stream of the previous protocol is gone once its client closed it.
			waitFor(t, func() bool { return e.srv.Watchers("fraud.country") == 0 })
			stream, err := c.engine.Watch(ctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.country", Entities: []*ospreyv1.Entity{{Keys: keys("w1")}}}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			waitFor(t, func() bool { return e.srv.Watchers("fraud.country") == 1 })
			for _, k := range []string{"w2", "w1"} { // w2 is not watched
				if _, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.country", Keys: keys(k), Value: structpb.NewStringValue("DE-" + k)})); err != nil {
					t.Fatal(err)
				}
			}
			if !stream.Receive() {
				t.Fatal(stream.Err())
			}
			m := stream.Msg()
			if m.GetFqn() != "fraud.country" || m.GetKeys()["card_id"] != "w1" || m.GetValue().GetStringValue() != "DE-w1" || m.GetOp() != "set" || m.GetTimestamp() == nil ||
				m.GetOutcome() != ospreyv1.WriteOutcome_WRITE_OUTCOME_APPLIED {
				t.Fatalf("Watch = %v", m)
			}
		})
	}
	t.Run("windowed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := e.clients(protocols[3])
		stream, err := c.engine.Watch(ctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.amount"}))
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		waitFor(t, func() bool { return e.srv.Watchers("fraud.amount") == 1 })
		if _, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.amount", Keys: keys("win"), Value: structpb.NewNumberValue(5)})); err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() {
			t.Fatal(stream.Err())
		}
		w := stream.Msg().GetValue().GetWindow()
		if w.GetSum() != 5 || w.GetCount() != 1 || w.GetAvg() != 5 || w.Max != nil || stream.Msg().GetOp() != "update" {
			t.Fatalf("Watch window = %v", stream.Msg())
		}
	})
	t.Run("errors", func(t *testing.T) {
		c := e.clients(protocols[3])
		for _, tc := range []struct {
			req  *ospreyv1.WatchRequest
			code connect.Code
			msg  string
		}{
			{&ospreyv1.WatchRequest{Fqn: "fraud.nope"}, connect.CodeNotFound, "fraud.nope"},
			{&ospreyv1.WatchRequest{Fqn: "fraud.amount+avg"}, connect.CodeInvalidArgument, "fqn:"},
			{&ospreyv1.WatchRequest{Fqn: "fraud.country", Entities: []*ospreyv1.Entity{{Keys: keys("a")}, {Keys: map[string]string{"user": "u"}}}}, connect.CodeInvalidArgument, "entities[1].keys:"},
		} {
			stream, err := c.engine.Watch(context.Background(), connect.NewRequest(tc.req))
			if err == nil {
				if stream.Receive() {
					t.Fatalf("%v: got a message", tc.req)
				}
				err = stream.Err()
			}
			ce := wantCode(t, err, tc.code)
			if !strings.Contains(ce.Message(), tc.msg) {
				t.Fatalf("%v: %q lacks %q", tc.req, ce.Message(), tc.msg)
			}
		}
	})
}

// TestWatchWithoutNotifier answers Unimplemented.
func TestWatchWithoutNotifier(t *testing.T) {
	e := start(t, envOptions{noNotify: true})
	stream, err := e.clients(protocols[0]).engine.Watch(context.Background(), connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.country"}))
	if err == nil {
		stream.Receive()
		err = stream.Err()
	}
	wantCode(t, err, connect.CodeUnimplemented)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGracefulShutdown: a call in flight when shutdown starts finishes; Watch streams end
// with Unavailable; Serve returns nil; new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	e := start(t, envOptions{})
	e.apply(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: gated, namespace: test}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  timeout: 20s
  keys: [id]
  middlewares:
    - {name: servertest_gate, stages: [preSet], config: {gate: shutdown}}
`, nil, "")
	g := newGate("shutdown")
	defer gates.Delete("shutdown")
	ctx := context.Background()
	c := e.clients(protocols[3]) // gRPC over h2c

	stream, err := c.engine.Watch(ctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.country"}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.srv.Watchers("fraud.country") == 1 })

	type result struct {
		res *connect.Response[ospreyv1.SetResponse]
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "test.gated", Keys: map[string]string{"id": "1"}, Value: structpb.NewNumberValue(9)}))
		inflight <- result{res, err}
	}()
	<-g.entered // the call is inside the engine

	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()

	// The Watch stream ends with Unavailable while the Set is still held.
	if stream.Receive() {
		t.Fatalf("Watch got %v", stream.Msg())
	}
	wantCode(t, stream.Err(), connect.CodeUnavailable)
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned %v before the in-flight call finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	// /healthz now reports not ready... on a listener that no longer accepts.
	close(g.release)
	r := <-inflight
	if r.err != nil || r.res.Msg.GetValue().GetIntValue() != 9 {
		t.Fatalf("in-flight Set = %v, %v", r.res, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	_, err = e.clients(protocols[0]).engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.country", Keys: keys("x")}))
	wantCode(t, err, connect.CodeUnavailable)
}

// TestShutdownTimeout: a call that outlives the drain is cut off and Serve says so.
func TestShutdownTimeout(t *testing.T) {
	e := start(t, envOptions{cfg: server.Config{ShutdownTimeout: 100 * time.Millisecond}})
	e.apply(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: stuck, namespace: test}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  timeout: 20s
  keys: [id]
  middlewares:
    - {name: servertest_gate, stages: [preGet], config: {gate: stuck}}
`, nil, "")
	g := newGate("stuck")
	defer func() { close(g.release); gates.Delete("stuck") }()
	done := make(chan error, 1)
	go func() {
		_, err := e.clients(protocols[0]).engine.Get(context.Background(), connect.NewRequest(&ospreyv1.GetRequest{Selector: "test.stuck", Keys: map[string]string{"id": "1"}}))
		done <- err
	}()
	<-g.entered
	if err := e.stop(); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("Serve = %v", err)
	}
	e.stopErr = nil // expected
	if err := <-done; err == nil {
		t.Fatal("the cut-off call succeeded")
	}
}

// TestMessageTypes checks that responses survive every codec with no loss.
func TestMessageTypes(t *testing.T) {
	e := start(t, envOptions{})
	ctx := context.Background()
	ts := timestamppb.New(time.Now().Add(-time.Minute).Truncate(time.Second).Add(8 * time.Microsecond))
	for _, p := range protocols {
		c := e.clients(p)
		res, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.seen", Keys: keys("types-" + p.name),
			Value: structpb.NewNumberValue(float64(ts.AsTime().Unix())), Timestamp: ts}))
		if err != nil {
			t.Fatal(err)
		}
		want := &ospreyv1.Value{Kind: &ospreyv1.Value_TimestampValue{TimestampValue: timestamppb.New(time.Unix(ts.AsTime().Unix(), 0))}}
		if !proto.Equal(res.Msg.GetValue(), want) {
			t.Fatalf("%s: %v, want %v", p.name, res.Msg.GetValue(), want)
		}
		get, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.seen", Keys: keys("types-" + p.name)}))
		if err != nil || !get.Msg.GetTimestamp().AsTime().Equal(ts.AsTime()) {
			t.Fatalf("%s: %v %v", p.name, get, err)
		}
	}
}

// TestStoppedServerReleasesItsWatchGroup: the server's watch group is deleted when it stops,
// so a notifier that outlives it (and an engine writing through it) is not held back by a
// group nobody reads any more.
func TestStoppedServerReleasesItsWatchGroup(t *testing.T) {
	n, err := memnotifier.New(memnotifier.WithCapacity(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	e := start(t, envOptions{cfg: server.Config{Notifier: n}, noApply: true})
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for i := range 10 {
		if err := n.Publish(ctx, engine.Notification{Kind: engine.NotifyWrite, FQN: "t.x", Value: engine.Int(int64(i))}); err != nil {
			t.Fatalf("publish %d after the server stopped: %v (its watch group still holds the log)", i, err)
		}
	}
}
