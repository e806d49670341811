package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

func TestRequestFeature(t *testing.T) {
	for _, tc := range []struct {
		msg  any
		want string
	}{
		{&ospreyv1.GetRequest{Selector: "fraud.amount+avg"}, "fraud.amount+avg"},
		{&ospreyv1.GetManyRequest{Selectors: []string{"a.b", "c.d"}}, "a.b,c.d"},
		{&ospreyv1.SetRequest{Fqn: "fraud.limit"}, "fraud.limit"},
		{&ospreyv1.DeleteFeatureRequest{Fqn: "fraud.limit"}, "fraud.limit"},
		{&ospreyv1.IngestRequest{Source: "fraud.transactions"}, "fraud.transactions"},
		{&ospreyv1.ListFeaturesRequest{Namespace: "fraud"}, ""},
	} {
		if got := requestFeature(tc.msg); got != tc.want {
			t.Errorf("requestFeature(%T) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// TestLogInterceptorDebug checks the debug line of a call: procedure, feature, code and a
// duration written as one ("1.5ms", not nanoseconds).
func TestLogInterceptorDebug(t *testing.T) {
	var buf bytes.Buffer
	l := logInterceptor{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.done(context.Background(), "/osprey.v1.EngineService/Get", "connect", "fraud.amount", time.Now(),
		connect.NewError(connect.CodeNotFound, nil))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["level"] != "DEBUG" || rec["procedure"] != "/osprey.v1.EngineService/Get" || rec["feature"] != "fraud.amount" || rec["code"] != "not_found" {
		t.Errorf("log line %s", buf.String())
	}
	d, ok := rec["duration"].(string)
	if !ok {
		t.Fatalf("duration %v is not a string", rec["duration"])
	}
	if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("duration %q: %v", d, err)
	}
}
