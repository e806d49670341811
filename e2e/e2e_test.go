//go:build unix

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// The example manifests the scenario applies, and what applying them reports.
var (
	exampleManifests = []string{"-f", "examples/fraud", "-f", "examples/derived", "-f", "examples/middleware"}
	exampleObjects   = []string{ // kind fqn, in manifest order
		"datasource fraud.transactions",
		"feature fraud.amount",
		"feature fraud.limit",
		"feature fraud.utilisation",
		"feature payments.amount",
	}
	exampleFeatures = []string{"fraud.amount", "fraud.limit", "fraud.utilisation", "payments.amount"}
)

// TestScenario walks through the examples on one server: apply them with the CLI, ingest
// the transactions, read, write, dry-run, list, describe, watch; check the error paths;
// then restart the server on the same data directory.
func TestScenario(t *testing.T) {
	dataDir := t.TempDir()
	s := startServer(t, dataDir)
	ctx := context.Background()
	must := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow() // later steps depend on this one
		}
	}

	must("apply", func(t *testing.T) {
		out := s.mustCLI(t, "apply", exampleManifests...)
		var want []string
		for _, o := range exampleObjects {
			want = append(want, o+" created")
		}
		if got := lines(out); !slices.Equal(got, want) {
			t.Fatalf("osprey apply printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
		}
	})

	must("ingest", func(t *testing.T) {
		out := s.mustCLI(t, "ingest", "fraud.transactions", "examples/fraud/transactions.jsonl")
		// Four rows: three approved (c1 12.50 and 40.00, c2 5.00) and one declined.
		if want := "ingested 4 rows into fraud.transactions: 3 values written, 1 skipped\n"; out != want {
			t.Fatalf("osprey ingest printed %q, want %q", out, want)
		}
	})

	t.Run("get", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			res := get(ctx, t, c, "fraud.amount+avg", "card_id", "c1")
			if res.Fqn != "fraud.amount" || !res.Found || !res.Fresh || res.Timestamp == nil {
				t.Errorf("Get fraud.amount+avg: fqn %q found %v fresh %v timestamp %v; want fraud.amount, found, fresh, a timestamp",
					res.Fqn, res.Found, res.Fresh, res.Timestamp)
			}
			wantFloat(t, "fraud.amount+avg", res.Value, 26.25)

			res = get(ctx, t, c, "fraud.amount", "card_id", "c1")
			w := res.GetValue().GetWindow()
			if w == nil {
				t.Fatalf("Get fraud.amount: value %v, want a window", res.Value)
			}
			if w.Sum == nil || w.GetSum() != 52.5 || w.Count == nil || w.GetCount() != 2 || w.Max == nil || w.GetMax() != 40 ||
				w.Avg == nil || w.GetAvg() != 26.25 || w.Min != nil {
				t.Errorf("Get fraud.amount: window %v; want sum 52.5, count 2, max 40, avg 26.25 and no min (not declared)", w)
			}
		})
	})

	t.Run("get-many", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			sels := []string{"fraud.amount+sum", "fraud.amount+count", "fraud.limit"}
			res := getMany(ctx, t, c, sels, "card_id", "c1", "c2")
			want := [][]any{ // per entity, per selector: a float, or nil for absent
				{52.5, 2.0, nil},
				{5.0, 1.0, nil},
			}
			checkMany(t, res, sels, []string{"c1", "c2"}, want)
		})
	})

	t.Run("derived", func(t *testing.T) {
		if out := s.mustCLI(t, "set", "fraud.limit", "card_id=c1", "105"); out != "ok fraud.limit = 105\n" {
			t.Fatalf("osprey set printed %q", out)
		}
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			res := get(ctx, t, c, "fraud.utilisation", "card_id", "c1")
			if !res.Found || !res.Fresh {
				t.Errorf("Get fraud.utilisation: found %v fresh %v, want a fresh value", res.Found, res.Fresh)
			}
			wantFloat(t, "fraud.utilisation", res.Value, 0.5) // 52.5 / 105
			sels := []string{"fraud.limit", "fraud.utilisation"}
			// c2 has no limit: its utilisation program returns no value.
			checkMany(t, getMany(ctx, t, c, sels, "card_id", "c1", "c2"), sels, []string{"c1", "c2"},
				[][]any{{105.0, 0.5}, {nil, nil}})
		})
	})

	t.Run("late-write", func(t *testing.T) {
		// Writes are ordered by event time: a Set older than the current value is superseded.
		if out := s.mustCLI(t, "set", "fraud.limit", "card_id=c7", "500"); out != "ok fraud.limit = 500\n" {
			t.Fatalf("osprey set printed %q", out)
		}
		yesterday := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		out := s.mustCLI(t, "set", "--at", yesterday, "fraud.limit", "card_id=c7", "600")
		want := regexp.MustCompile(`^superseded: fraud\.limit = 600 at ` + regexp.QuoteMeta(yesterday) +
			` is older than the current value \(at \S+\); dropped\n$`)
		if !want.MatchString(out) {
			t.Errorf("osprey set --at %s printed %q, want it superseded and dropped", yesterday, out)
		}
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			wantFloat(t, "Get fraud.limit after a late write", get(ctx, t, c, "fraud.limit", "card_id", "c7").Value, 500)
		})
	})

	t.Run("exact-ints", func(t *testing.T) {
		// Integers beyond ±2^53 travel exactly from the CLI (a JSON number would be a double).
		manifest := filepath.Join(t.TempDir(), "big.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: big, namespace: e2e}
spec: {primitive: int, freshness: 1h, staleness: 2h, keys: [id]}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		s.mustCLI(t, "apply", "-f", manifest)
		for _, n := range []string{"9007199254740993", "9223372036854775807", "-9223372036854775808"} {
			if out := s.mustCLI(t, "set", "e2e.big", "id=x", n); out != "ok e2e.big = "+n+"\n" {
				t.Fatalf("osprey set %s printed %q", n, out)
			}
			s.forEachProtocol(t, "", func(t *testing.T, c api) {
				res := get(ctx, t, c, "e2e.big", "id", "x")
				if got := strconv.FormatInt(res.Value.GetIntValue(), 10); got != n {
					t.Fatalf("Get e2e.big = %s; want %s", got, n)
				}
			})
		}
		s.mustCLI(t, "delete", "e2e.big") // the subtests after this one list the examples alone
	})

	t.Run("wasm-middleware", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			account := "a-" + t.Name()
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{
				Fqn: "payments.amount", Keys: map[string]string{"account_id": account}, Value: structpb.NewNumberValue(-5)}))
			wantError(t, "Set payments.amount -5", err, connect.CodeFailedPrecondition, "value",
				"value: ", "rejected", "clip_amount: amount -5 is negative")
			if res := get(ctx, t, c, "payments.amount", "account_id", account); res.Found {
				t.Errorf("after a rejected Set, payments.amount is %v; want absent", res.Value)
			}

			set, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{
				Fqn: "payments.amount", Keys: map[string]string{"account_id": account}, Value: structpb.NewNumberValue(25000)}))
			if err != nil {
				t.Fatalf("Set payments.amount 25000: %v", err)
			}
			wantFloat(t, "Set payments.amount 25000", set.Msg.Value, 10000) // clipped
			wantFloat(t, "Get payments.amount", get(ctx, t, c, "payments.amount", "account_id", account).Value, 10000)
		})
		res := s.cli(t, "set", "payments.amount", "account_id=cli", "-5")
		if res.code != 1 || !strings.Contains(res.stderr, "osprey set: failed_precondition: value:") ||
			!strings.Contains(res.stderr, "clip_amount: amount -5 is negative") {
			t.Errorf("osprey set payments.amount -5: want exit 1 and the rejection on stderr; got %v", res)
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		row := map[string]any{"card_id": "c9", "amount_cents": 705, "status": "approved"}
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			r, err := structpb.NewStruct(row)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.amount", Row: r}))
			if err != nil {
				t.Fatalf("DryRun: %v", err)
			}
			m := res.Msg
			if m.Fqn != "fraud.amount" || !m.Writes || m.Keys["card_id"] != "c9" || len(m.Keys) != 1 {
				t.Errorf("DryRun: fqn %q writes %v keys %v; want fraud.amount, writes, {card_id: c9}", m.Fqn, m.Writes, m.Keys)
			}
			wantFloat(t, "DryRun fraud.amount", m.Value, 7.05)
			if got := get(ctx, t, c, "fraud.amount", "card_id", "c9"); got.Found {
				t.Errorf("after DryRun, fraud.amount for c9 is %v; want absent (nothing written)", got.Value)
			}
			declined, _ := structpb.NewStruct(map[string]any{"card_id": "c9", "amount_cents": 705, "status": "declined"})
			res, err = c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.amount", Row: declined}))
			if err != nil || res.Msg.Writes || res.Msg.Value != nil {
				t.Errorf("DryRun of a declined row: %v, %v; want writes false, no value", res.Msg, err)
			}
		})
		out := s.mustCLI(t, "dry-run", "fraud.amount", `{"card_id":"c9","amount_cents":705,"status":"approved"}`)
		if !strings.HasPrefix(out, "fraud.amount map[card_id:c9] would be 7.05 at ") || !strings.HasSuffix(out, "(nothing written)\n") {
			t.Errorf("osprey dry-run printed %q", out)
		}
	})

	t.Run("list-features", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			checkListed(ctx, t, c)
			res, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: "payments"}))
			if err != nil {
				t.Fatalf("ListFeatures payments: %v", err)
			}
			if got := featureFQNs(res.Msg); !slices.Equal(got, []string{"payments.amount"}) || len(res.Msg.DataSources) != 0 {
				t.Errorf("ListFeatures payments: features %v, %d data sources; want [payments.amount] and none", got, len(res.Msg.DataSources))
			}
		})
		out := s.mustCLI(t, "features")
		var got []string
		for _, l := range lines(out) {
			got = append(got, strings.Fields(l)[0])
		}
		if want := append([]string{"fraud.transactions"}, exampleFeatures...); !slices.Equal(got, want) {
			t.Errorf("osprey features printed\n%s\nwant the FQNs %v", out, want)
		}
	})

	t.Run("feature-descriptor", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			f := describe(ctx, t, c, "fraud.amount+avg")
			aggrs := slices.Sorted(slices.Values(f.Aggregations))
			if f.Fqn != "fraud.amount" || f.Primitive != "float" || !slices.Equal(f.Keys, []string{"card_id"}) ||
				!slices.Equal(aggrs, []string{"avg", "count", "max", "sum"}) || f.DataSource != "fraud.transactions" ||
				f.GetGranularity().AsDuration() != time.Minute || f.GetFreshness().AsDuration() != 30*time.Minute ||
				f.GetStaleness().AsDuration() != time.Hour || f.GetTimeout().AsDuration() != 200*time.Millisecond ||
				f.Labels["team"] != "risk" || f.GetBuilder().GetKind() == "" {
				t.Errorf("FeatureDescriptor fraud.amount+avg: %v", f)
			}
			p := describe(ctx, t, c, "payments.amount")
			if len(p.Middlewares) != 1 || p.Middlewares[0].Name != "clip_amount" ||
				!slices.Equal(p.Middlewares[0].Stages, []string{"preSet"}) || p.Middlewares[0].Priority != 10 {
				t.Errorf("FeatureDescriptor payments.amount: middlewares %v; want clip_amount at preSet, priority 10", p.Middlewares)
			}
			u := describe(ctx, t, c, "fraud.utilisation")
			if got := slices.Sorted(slices.Values(u.Dependencies)); !slices.Equal(got, []string{"fraud.amount", "fraud.limit"}) {
				t.Errorf("FeatureDescriptor fraud.utilisation: dependencies %v; want fraud.amount and fraud.limit", u.Dependencies)
			}
		})
	})

	t.Run("raw-json", func(t *testing.T) {
		// What the dev banner's curl command sends.
		body := `{"selector":"fraud.amount+avg","keys":{"card_id":"c1"}}`
		resp, err := http.Post(s.url+"/osprey.v1.EngineService/Get", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("POST /osprey.v1.EngineService/Get: %s, Content-Type %q: %s", resp.Status, resp.Header.Get("Content-Type"), b)
		}
		var m struct {
			Fqn   string `json:"fqn"`
			Value struct {
				FloatValue *float64 `json:"floatValue"`
			} `json:"value"`
			Fresh bool `json:"fresh"`
			Found bool `json:"found"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("response %s: %v", b, err)
		}
		if m.Fqn != "fraud.amount" || m.Value.FloatValue == nil || *m.Value.FloatValue != 26.25 || !m.Fresh || !m.Found {
			t.Errorf(`response %s; want "fqn":"fraud.amount", "floatValue":26.25, "fresh":true, "found":true`, b)
		}
	})

	t.Run("cli-protocols", func(t *testing.T) {
		for _, p := range []string{"connect", "grpc", "grpcweb"} {
			out := s.mustCLI(t, "get", "--protocol", p, "fraud.amount+avg", "card_id=c1")
			if !strings.HasPrefix(out, "fraud.amount+avg = 26.25  (fresh, at ") {
				t.Errorf("osprey get --protocol %s printed %q", p, out)
			}
		}
		out := s.mustCLI(t, "get", "--output", "json", "fraud.amount", "card_id=c1")
		var m struct {
			Value struct {
				Window struct{ Sum, Count, Max, Avg float64 } `json:"window"`
			} `json:"value"`
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("osprey get --output json printed %q: %v", out, err)
		}
		if w := m.Value.Window; w.Sum != 52.5 || w.Count != 2 || w.Max != 40 || w.Avg != 26.25 {
			t.Errorf("osprey get --output json fraud.amount: %s", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		s.forEachProtocol(t, "", func(t *testing.T, c api) {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount+median", Keys: map[string]string{"card_id": "c1"}}))
			wantError(t, "Get fraud.amount+median", err, connect.CodeInvalidArgument, "selector",
				`selector: invalid selector "fraud.amount+median"`, `unknown aggregation "median"`)

			_, err = c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.amount", Keys: map[string]string{"user_id": "u1"}}))
			wantError(t, "Get fraud.amount without card_id", err, connect.CodeInvalidArgument, "keys", "keys: ", "card_id")

			_, err = c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "nope.nope", Keys: map[string]string{"id": "1"}}))
			wantError(t, "Get nope.nope", err, connect.CodeNotFound, "", "nope.nope")

			_, err = c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{
				Fqn: "fraud.limit", Keys: map[string]string{"card_id": "c1"}, Value: structpb.NewStringValue("abc")}))
			wantError(t, `Set fraud.limit "abc"`, err, connect.CodeFailedPrecondition, "value", "value: ", "type mismatch")

			_, err = c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{
				Fqn: "fraud.amount", Keys: map[string]string{"card_id": "c1"}, Value: structpb.NewNumberValue(1),
				Timestamp: timestamppb.New(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))}))
			wantError(t, "Set fraud.amount at 2000-01-01", err, connect.CodeOutOfRange, "timestamp", "timestamp: ")

			_, err = c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: []string{"fraud.limit"}}))
			wantError(t, "GetMany without entities", err, connect.CodeInvalidArgument, "entities", "entities: ")

			_, err = c.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: "fraud.nope"}))
			wantError(t, "FeatureDescriptor fraud.nope", err, connect.CodeNotFound, "")

			_, err = c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.nope"}))
			wantError(t, "Ingest fraud.nope", err, connect.CodeNotFound, "")

			// A row the program fails on: nothing is written, and the row is named.
			bad, _ := structpb.NewStruct(map[string]any{"card_id": "c7", "amount_cents": 100, "status": "pending"})
			_, err = c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "fraud.transactions", Rows: []*structpb.Struct{bad}}))
			wantError(t, "Ingest a row with status pending", err, connect.CodeInvalidArgument, "rows[0]", "nothing written", "row 0", "pending")
			if got := get(ctx, t, c, "fraud.amount", "card_id", "c7"); got.Found {
				t.Errorf("after a failed Ingest, fraud.amount for c7 is %v; want absent", got.Value)
			}
		})
		res := s.cli(t, "get", "fraud.amount+median", "card_id=c1")
		if want := `osprey get: invalid_argument: selector: invalid selector "fraud.amount+median": aggregation: unknown aggregation "median"`; res.code != 1 || !strings.Contains(res.stderr, want) || res.stdout != "" {
			t.Errorf("osprey get fraud.amount+median: want exit 1, nothing on stdout and %q on stderr; got %v", want, res)
		}
		res = s.cli(t, "get", "nope.nope", "id=1")
		if res.code != 1 || !strings.Contains(res.stderr, "osprey get: not_found: ") {
			t.Errorf("osprey get nope.nope: want exit 1 and not_found on stderr; got %v", res)
		}
	})

	t.Run("watch", func(t *testing.T) {
		for i, p := range protocols {
			t.Run(p.name, func(t *testing.T) {
				c := s.api(p, "")
				stream := watch(ctx, t, c, "fraud.limit", "card_id", "c1")
				defer stream.Close()
				// A change of another entity is not delivered; the watched one's is.
				set(ctx, t, c, "fraud.limit", "card_id", "c2", 1)
				want := float64(200 + i)
				set(ctx, t, c, "fraud.limit", "card_id", "c1", want)
				m := receive(t, stream)
				if m.Fqn != "fraud.limit" || m.Keys["card_id"] != "c1" || len(m.Keys) != 1 || m.Op != "set" || m.Timestamp == nil {
					t.Errorf("Watch delivered %v; want fraud.limit {card_id: c1} op set with a timestamp", m)
				}
				wantFloat(t, "Watch value", m.Value, want)
			})
		}
		t.Run("cli-set", func(t *testing.T) {
			c := s.api(protocolNamed("grpc"), "")
			stream := watch(ctx, t, c, "fraud.limit", "card_id", "c1")
			defer stream.Close()
			s.mustCLI(t, "set", "fraud.limit", "card_id=c1", "105")
			wantFloat(t, "Watch value after osprey set", receive(t, stream).Value, 105)
		})
		t.Run("windowed", func(t *testing.T) {
			// A window's notification carries no value: the server reads the window.
			c := s.api(protocolNamed("connect"), "")
			stream := watch(ctx, t, c, "fraud.amount", "card_id", "c2")
			defer stream.Close()
			s.mustCLI(t, "ingest", "fraud.transactions", "examples/fraud/transactions.jsonl")
			m := receive(t, stream)
			if w := m.GetValue().GetWindow(); m.Keys["card_id"] != "c2" || w == nil || w.GetCount() != 2 || w.GetSum() != 10 {
				t.Errorf("Watch fraud.amount c2 after a second ingest: %v; want the window with count 2, sum 10", m)
			}
		})
	})

	t.Run("restart", func(t *testing.T) {
		// Watch streams are ended by a graceful shutdown, with Unavailable.
		type ended struct {
			name string
			err  error
		}
		done := make(chan ended, 2)
		for _, name := range []string{"grpc", "connect"} {
			stream := watch(ctx, t, s.api(protocolNamed(name), ""), "fraud.limit")
			go func() {
				defer stream.Close()
				for stream.Receive() {
				}
				done <- ended{name, stream.Err()}
			}()
		}
		s.stop(t)
		for range 2 {
			select {
			case e := <-done:
				if connect.CodeOf(e.err) != connect.CodeUnavailable {
					t.Errorf("%s Watch at shutdown ended with %v; want Unavailable", e.name, e.err)
				}
			case <-time.After(receiveTimeout):
				t.Fatalf("a Watch stream did not end within %v of the server's exit", receiveTimeout)
			}
		}
		if t.Failed() {
			t.FailNow()
		}

		s2 := startServer(t, dataDir)
		s2.forEachProtocol(t, "", func(t *testing.T, c api) {
			checkListed(ctx, t, c)
			// The modules came back from the data directory too.
			r, _ := structpb.NewStruct(map[string]any{"card_id": "c9", "amount_cents": 705, "status": "approved"})
			res, err := c.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "fraud.amount", Row: r}))
			if err != nil {
				t.Fatalf("DryRun after restart: %v", err)
			}
			wantFloat(t, "DryRun after restart", res.Msg.Value, 7.05)
			_, err = c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{
				Fqn: "payments.amount", Keys: map[string]string{"account_id": "r"}, Value: structpb.NewNumberValue(-1)}))
			wantError(t, "Set payments.amount -1 after restart", err, connect.CodeFailedPrecondition, "value", "negative")
		})
		out := s2.mustCLI(t, "apply", exampleManifests...)
		var want []string
		for _, o := range exampleObjects {
			want = append(want, o+" unchanged")
		}
		if got := lines(out); !slices.Equal(got, want) {
			t.Errorf("osprey apply after restart printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
		}
	})
}

// TestMessageLimit checks --max-message-bytes: a larger request fails with
// ResourceExhausted, whatever the protocol, and the server keeps serving.
func TestMessageLimit(t *testing.T) {
	s := startServer(t, t.TempDir(), "--max-message-bytes", "1024")
	ctx := context.Background()
	big := structpb.NewStringValue(strings.Repeat("x", 4096))
	s.forEachProtocol(t, "", func(t *testing.T, c api) {
		_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.limit", Keys: map[string]string{"card_id": "c1"}, Value: big}))
		wantError(t, "Set with a 4 KiB value", err, connect.CodeResourceExhausted, "")
		// A small request gets as far as the engine (which has no such feature).
		_, err = c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.limit", Keys: map[string]string{"card_id": "c1"}, Value: structpb.NewNumberValue(1)}))
		wantError(t, "small Set", err, connect.CodeNotFound, "")
	})
	// The examples' modules are megabytes: applying them fails, and says why.
	res := s.cli(t, "apply", "-f", "examples/middleware")
	if res.code != 1 || !strings.Contains(res.stderr, "resource_exhausted") {
		t.Errorf("osprey apply to a server with --max-message-bytes 1024: want exit 1 and resource_exhausted; got %v", res)
	}
}

// TestAuth checks --tokens: no token or an unknown one is Unauthenticated, a read token
// may read but not write, a write token may do both; health and reflection need none.
func TestAuth(t *testing.T) {
	s := startServer(t, t.TempDir(), "--tokens", "r1:read,w1:write")
	ctx := context.Background()
	manifest := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: limit, namespace: auth}
spec:
  primitive: float
  freshness: 1h
  staleness: 2h
  keys: [card_id]
`), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("cli", func(t *testing.T) {
		if res := s.cli(t, "apply", "-f", manifest); res.code != 1 || !strings.Contains(res.stderr, "unauthenticated") {
			t.Errorf("osprey apply without a token: want exit 1 and unauthenticated; got %v", res)
		}
		if res := s.cli(t, "apply", "--token", "r1", "-f", manifest); res.code != 1 || !strings.Contains(res.stderr, "permission_denied") {
			t.Errorf("osprey apply with a read token: want exit 1 and permission_denied; got %v", res)
		}
		if out := s.mustCLI(t, "apply", "--token", "w1", "-f", manifest); out != "feature auth.limit created\n" {
			t.Errorf("osprey apply with a write token printed %q", out)
		}
		if out := s.mustCLI(t, "get", "--token", "r1", "auth.limit", "card_id=c0"); out != "auth.limit: absent\n" {
			t.Errorf("osprey get with a read token printed %q", out)
		}
	})

	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) { checkTokens(ctx, t, s, p) })
	}

	t.Run("reflection-without-token", func(t *testing.T) { checkReflection(t, s) })
}

// checkTokens checks each kind of caller against the auth.limit feature over p.
func checkTokens(ctx context.Context, t *testing.T, s *ospreyServer, p protocol) {
	t.Helper()
	anon, reader, writer, stranger := s.api(p, ""), s.api(p, "r1"), s.api(p, "w1"), s.api(p, "nope")
	getReq := func() *connect.Request[ospreyv1.GetRequest] {
		return connect.NewRequest(&ospreyv1.GetRequest{Selector: "auth.limit", Keys: map[string]string{"card_id": "c1"}})
	}
	setReq := func(v float64) *connect.Request[ospreyv1.SetRequest] {
		return connect.NewRequest(&ospreyv1.SetRequest{Fqn: "auth.limit", Keys: map[string]string{"card_id": "c1"}, Value: structpb.NewNumberValue(v)})
	}
	_, err := anon.engine.Get(ctx, getReq())
	wantError(t, "Get without a token", err, connect.CodeUnauthenticated, "", "missing bearer token")
	_, err = stranger.engine.Get(ctx, getReq())
	wantError(t, "Get with an unknown token", err, connect.CodeUnauthenticated, "", "unknown bearer token")
	_, err = anon.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	wantError(t, "ListFeatures without a token", err, connect.CodeUnauthenticated, "")
	_, err = reader.engine.Set(ctx, setReq(1))
	wantError(t, "Set with a read token", err, connect.CodePermissionDenied, "", "write scope")
	_, err = reader.registry.DryRun(ctx, connect.NewRequest(&ospreyv1.DryRunRequest{Fqn: "auth.limit"}))
	wantError(t, "DryRun with a read token", err, connect.CodePermissionDenied, "")

	wctx, cancel := context.WithTimeout(ctx, receiveTimeout) // bounded, should the server stream
	defer cancel()
	stream, err := anon.engine.Watch(wctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "auth.limit"}))
	if err == nil {
		for stream.Receive() {
			t.Errorf("Watch without a token delivered %v", stream.Msg())
		}
		err = stream.Err()
		stream.Close()
	}
	wantError(t, "Watch without a token", err, connect.CodeUnauthenticated, "")

	res, err := writer.engine.Set(ctx, setReq(7))
	if err != nil {
		t.Fatalf("Set with a write token: %v", err)
	}
	wantFloat(t, "Set with a write token", res.Msg.Value, 7)
	for name, c := range map[string]api{"read": reader, "write": writer} {
		got, err := c.engine.Get(ctx, getReq())
		if err != nil {
			t.Fatalf("Get with a %s token: %v", name, err)
		}
		wantFloat(t, "Get with a "+name+" token", got.Msg.Value, 7)
		if _, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{})); err != nil {
			t.Errorf("ListFeatures with a %s token: %v", name, err)
		}
	}
}

// TestReflection lists the API's methods over gRPC reflection, with buf curl as a user
// would and with connect's reflection client.
func TestReflection(t *testing.T) {
	checkReflection(t, startServer(t, t.TempDir()))
}

func checkReflection(t *testing.T, s *ospreyServer) {
	t.Helper()
	engineMethods := []string{"Get", "GetMany", "Set", "Append", "Incr", "Update", "FeatureDescriptor", "Watch"}
	t.Run("buf-curl", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout) // may build buf first
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "tool", "buf", "curl", "--list-methods", "--protocol", "grpc", "--http2-prior-knowledge", s.url)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("buf curl --list-methods: %v\n%s", err, out)
		}
		got := lines(string(out))
		for _, m := range engineMethods {
			if !slices.Contains(got, "osprey.v1.EngineService/"+m) {
				t.Errorf("buf curl --list-methods lacks osprey.v1.EngineService/%s:\n%s", m, out)
			}
		}
		for _, m := range []string{"osprey.v1.RegistryService/ApplyFeature", "osprey.v1.RegistryService/ListFeatures", "osprey.v1.IngestService/Ingest"} {
			if !slices.Contains(got, m) {
				t.Errorf("buf curl --list-methods lacks %s:\n%s", m, out)
			}
		}
	})
	t.Run("grpcreflect", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		client := grpcreflect.NewClient(s.httpClient(true, ""), s.url, connect.WithGRPC())
		stream := client.NewStream(ctx)
		defer stream.Close()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatalf("ListServices: %v", err)
		}
		var services []string
		for _, n := range names {
			services = append(services, string(n))
		}
		for _, want := range []string{"osprey.v1.EngineService", "osprey.v1.RegistryService", "osprey.v1.IngestService", "grpc.health.v1.Health"} {
			if !slices.Contains(services, want) {
				t.Errorf("reflection lists %v; it lacks %s", services, want)
			}
		}
		files, err := stream.FileContainingSymbol("osprey.v1.EngineService")
		if err != nil {
			t.Fatalf("FileContainingSymbol: %v", err)
		}
		var methods []string
		for _, f := range files {
			for _, svc := range f.GetService() {
				if f.GetPackage()+"."+svc.GetName() == "osprey.v1.EngineService" {
					for _, m := range svc.GetMethod() {
						methods = append(methods, m.GetName())
					}
				}
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(methods)), slices.Sorted(slices.Values(engineMethods))) {
			t.Errorf("reflection describes EngineService with methods %v; want %v", methods, engineMethods)
		}
	})
}

// get reads one feature for one entity (keys: name, value, …) and fails the test on error.
func get(ctx context.Context, t *testing.T, c api, selector string, keys ...string) *ospreyv1.GetResponse {
	t.Helper()
	res, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: selector, Keys: keyMap(keys...)}))
	if err != nil {
		t.Fatalf("Get %s %v: %v", selector, keys, err)
	}
	return res.Msg
}

func set(ctx context.Context, t *testing.T, c api, fqn, key, entity string, v float64) {
	t.Helper()
	res, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: fqn, Keys: map[string]string{key: entity}, Value: structpb.NewNumberValue(v)}))
	if err != nil {
		t.Fatalf("Set %s %s=%s %v: %v", fqn, key, entity, v, err)
	}
	wantFloat(t, "Set "+fqn, res.Msg.Value, v)
}

// getMany reads selectors for entities named by one key.
func getMany(ctx context.Context, t *testing.T, c api, selectors []string, key string, entities ...string) *ospreyv1.GetManyResponse {
	t.Helper()
	var ents []*ospreyv1.Entity
	for _, e := range entities {
		ents = append(ents, &ospreyv1.Entity{Keys: map[string]string{key: e}})
	}
	res, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: selectors, Entities: ents}))
	if err != nil {
		t.Fatalf("GetMany %v × %v: %v", selectors, entities, err)
	}
	return res.Msg
}

// checkMany checks a GetMany response against want[entity][selector]: a float64, or nil for
// a cell read without error and without a value.
func checkMany(t *testing.T, res *ospreyv1.GetManyResponse, selectors, entities []string, want [][]any) {
	t.Helper()
	if len(res.Results) != len(entities) {
		t.Fatalf("GetMany: %d results, want %d", len(res.Results), len(entities))
	}
	for i, r := range res.Results {
		if len(r.Features) != len(selectors) {
			t.Fatalf("GetMany: entity %s: %d cells, want %d", entities[i], len(r.Features), len(selectors))
		}
		for j, cell := range r.Features {
			name := fmt.Sprintf("GetMany %s for %s", selectors[j], entities[i])
			if cell.Selector != selectors[j] || cell.Error != "" || cell.Fqn == "" {
				t.Errorf("%s: selector %q fqn %q error %q", name, cell.Selector, cell.Fqn, cell.Error)
			}
			switch w := want[i][j].(type) {
			case nil:
				if cell.Found || cell.Value != nil {
					t.Errorf("%s: %v, want absent", name, cell.Value)
				}
			case float64:
				if !cell.Found || !cell.Fresh || cell.Timestamp == nil {
					t.Errorf("%s: found %v fresh %v timestamp %v, want a fresh value", name, cell.Found, cell.Fresh, cell.Timestamp)
				}
				wantFloat(t, name, cell.Value, w)
			}
		}
	}
}

func describe(ctx context.Context, t *testing.T, c api, selector string) *ospreyv1.Feature {
	t.Helper()
	res, err := c.engine.FeatureDescriptor(ctx, connect.NewRequest(&ospreyv1.FeatureDescriptorRequest{Selector: selector}))
	if err != nil {
		t.Fatalf("FeatureDescriptor %s: %v", selector, err)
	}
	return res.Msg.Feature
}

// checkListed checks that ListFeatures lists the examples.
func checkListed(ctx context.Context, t *testing.T, c api) {
	t.Helper()
	res, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	if err != nil {
		t.Fatalf("ListFeatures: %v", err)
	}
	if got := featureFQNs(res.Msg); !slices.Equal(got, exampleFeatures) {
		t.Errorf("ListFeatures: features %v, want %v", got, exampleFeatures)
	}
	ds := res.Msg.DataSources
	if len(ds) != 1 || ds[0].Fqn != "fraud.transactions" || !slices.Equal(ds[0].KeyFields, []string{"card_id"}) || ds[0].TimestampField != "ts" {
		t.Errorf("ListFeatures: data sources %v, want fraud.transactions keyed by card_id, timed by ts", ds)
	}
}

func featureFQNs(m *ospreyv1.ListFeaturesResponse) []string {
	var fqns []string
	for _, f := range m.Features {
		fqns = append(fqns, f.Fqn)
	}
	return fqns
}

// watch opens a Watch stream for the entities named by one key (every entity when none
// are given) and waits for its response headers, which the server sends once the watch is
// registered: a change made after watch returns is delivered. The stream's context ends
// with the test.
func watch(ctx context.Context, t *testing.T, c api, fqn string, keys ...string) *connect.ServerStreamForClient[ospreyv1.WatchResponse] {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	req := &ospreyv1.WatchRequest{Fqn: fqn}
	for i := 0; i+1 < len(keys); i += 2 {
		req.Entities = append(req.Entities, &ospreyv1.Entity{Keys: map[string]string{keys[i]: keys[i+1]}})
	}
	stream, err := c.engine.Watch(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("Watch %s: %v", fqn, err)
	}
	headers := make(chan struct{})
	go func() {
		stream.ResponseHeader() // blocks until the headers are in (or the call failed)
		close(headers)
	}()
	select {
	case <-headers:
	case <-time.After(receiveTimeout):
		t.Fatalf("Watch %s: no response headers within %v", fqn, receiveTimeout)
	}
	return stream
}

// receive waits (bounded) for the stream's next message.
func receive(t *testing.T, stream *connect.ServerStreamForClient[ospreyv1.WatchResponse]) *ospreyv1.WatchResponse {
	t.Helper()
	got := make(chan bool, 1)
	go func() { got <- stream.Receive() }()
	select {
	case ok := <-got:
		if !ok {
			t.Fatalf("Watch ended without delivering the change: %v", stream.Err())
		}
		return stream.Msg()
	case <-time.After(receiveTimeout):
		t.Fatalf("Watch delivered nothing within %v", receiveTimeout)
	}
	return nil
}

// wantFloat checks that v is a float_value near want.
func wantFloat(t *testing.T, what string, v *ospreyv1.Value, want float64) {
	t.Helper()
	fv, ok := v.GetKind().(*ospreyv1.Value_FloatValue)
	if !ok {
		t.Errorf("%s: value %v, want the float %v", what, v, want)
		return
	}
	if math.Abs(fv.FloatValue-want) > 1e-9 {
		t.Errorf("%s: %v, want %v", what, fv.FloatValue, want)
	}
}

// wantError checks an error's code, the request field its google.rpc.BadRequest detail
// names (field "" wants none), and that its message contains each of msgs.
func wantError(t *testing.T, what string, err error, code connect.Code, field string, msgs ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, code)
		return
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Errorf("%s: %v (%T), want a *connect.Error with code %v", what, err, err, code)
		return
	}
	if ce.Code() != code {
		t.Errorf("%s: %v, want code %v", what, err, code)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(ce.Message(), m) {
			t.Errorf("%s: message %q lacks %q", what, ce.Message(), m)
		}
	}
	var fields []string
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Errorf("%s: undecodable error detail %s: %v", what, d.Type(), err)
			continue
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.FieldViolations {
				fields = append(fields, fv.Field)
			}
		}
	}
	switch {
	case field == "" && len(fields) > 0:
		t.Errorf("%s: %v names the fields %v, want none", what, err, fields)
	case field != "" && !slices.Contains(fields, field):
		t.Errorf("%s: %v names the fields %v, want %q", what, err, fields, field)
	}
}

func keyMap(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
