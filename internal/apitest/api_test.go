// Package apitest checks that the generated osprey.v1 API (gen/osprey/v1) compiles and keeps
// the JSON shape clients rely on.
package apitest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// The Connect-JSON body of a Get, as documented; the field names are part of the API.
const getJSON = `{"selector":"fraud.amount+avg","keys":{"card_id":"c1"}}`

func TestGetRequestJSONFieldNames(t *testing.T) {
	req := &ospreyv1.GetRequest{Selector: "fraud.amount+avg", Keys: map[string]string{"card_id": "c1"}}
	b, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatalf("protojson output %s: %v", b, err)
	}
	if len(fields) != 2 || fields["selector"] == nil || fields["keys"] == nil {
		t.Fatalf("GetRequest JSON = %s, want exactly the fields selector and keys", b)
	}

	var back ospreyv1.GetRequest
	if err := protojson.Unmarshal([]byte(getJSON), &back); err != nil {
		t.Fatalf("unmarshal %s: %v", getJSON, err)
	}
	if !proto.Equal(&back, req) {
		t.Fatalf("unmarshal %s = %v, want %v", getJSON, &back, req)
	}
}

func TestWriteAndValueRoundTrip(t *testing.T) {
	val, err := structpb.NewValue([]any{1.0, 2.5})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []proto.Message{
		&ospreyv1.SetRequest{Fqn: "fraud.amount", Keys: map[string]string{"card_id": "c1"}, Value: val},
		&ospreyv1.GetResponse{Fqn: "fraud.amount", Found: true, Fresh: true, Value: &ospreyv1.Value{
			Kind: &ospreyv1.Value_Window{Window: &ospreyv1.WindowResult{Sum: proto.Float64(3.5), Avg: proto.Float64(1.75)}},
		}},
		&ospreyv1.FeatureResult{Selector: "geo.city", Value: &ospreyv1.Value{
			Kind: &ospreyv1.Value_StringList{StringList: &ospreyv1.StringList{Values: []string{"a", "b"}}},
		}},
	}
	for _, m := range msgs {
		for name, codec := range map[string]struct {
			marshal   func(proto.Message) ([]byte, error)
			unmarshal func([]byte, proto.Message) error
		}{
			"binary": {proto.Marshal, proto.Unmarshal},
			"json":   {protojson.Marshal, protojson.Unmarshal},
		} {
			b, err := codec.marshal(m)
			if err != nil {
				t.Fatalf("%s marshal %T: %v", name, m, err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := codec.unmarshal(b, back); err != nil {
				t.Fatalf("%s unmarshal %T: %v", name, m, err)
			}
			if !proto.Equal(back, m) {
				t.Errorf("%s round trip of %T = %v, want %v", name, m, back, m)
			}
		}
	}
}

func TestServiceNames(t *testing.T) {
	for got, want := range map[string]string{
		ospreyv1connect.EngineServiceName:   "osprey.v1.EngineService",
		ospreyv1connect.RegistryServiceName: "osprey.v1.RegistryService",
		ospreyv1connect.IngestServiceName:   "osprey.v1.IngestService",
	} {
		if got != want {
			t.Errorf("service name %q, want %q", got, want)
		}
	}
	if ospreyv1connect.EngineServiceGetProcedure != "/osprey.v1.EngineService/Get" {
		t.Errorf("Get procedure = %q", ospreyv1connect.EngineServiceGetProcedure)
	}
}

// getStub answers Get with the selector and keys it was asked for, so that a test can see
// what the server decoded.
type getStub struct {
	ospreyv1connect.UnimplementedEngineServiceHandler
}

func (getStub) Get(_ context.Context, req *connect.Request[ospreyv1.GetRequest]) (*connect.Response[ospreyv1.GetResponse], error) {
	return connect.NewResponse(&ospreyv1.GetResponse{
		Fqn:   req.Msg.GetSelector(),
		Value: &ospreyv1.Value{Kind: &ospreyv1.Value_StringValue{StringValue: req.Msg.GetKeys()["card_id"]}},
		Found: true,
	}), nil
}

// TestConnectJSON calls Get the way a curl user would: a Connect-JSON POST, and a Connect GET
// (Get has no side effects, so Connect serves it over GET too).
func TestConnectJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(ospreyv1connect.NewEngineServiceHandler(getStub{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	const want = `{"fqn":"fraud.amount+avg","value":{"stringValue":"c1"},"found":true}`

	check := func(name string, resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s: %s", name, resp.Status, body)
		}
		var got, exp any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%s: response %s: %v", name, body, err)
		}
		_ = json.Unmarshal([]byte(want), &exp)
		if g, e := mustJSON(t, got), mustJSON(t, exp); g != e {
			t.Errorf("%s: response %s, want %s", name, g, e)
		}
	}

	post, err := http.Post(srv.URL+ospreyv1connect.EngineServiceGetProcedure, "application/json", strings.NewReader(getJSON))
	check("POST", post, err)

	q := url.Values{"encoding": {"json"}, "message": {getJSON}, "connect": {"v1"}}
	get, err := http.Get(srv.URL + ospreyv1connect.EngineServiceGetProcedure + "?" + q.Encode())
	check("GET", get, err)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
