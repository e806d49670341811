package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/plugins"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
	"github.com/osprey-ml/osprey/server"
)

// counters counts the calls entering servertest_counted_block, by its config "counter".
var counters sync.Map // name → *atomic.Int64

func counter(name string) *atomic.Int64 {
	c, _ := counters.LoadOrStore(name, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func init() {
	// servertest_counted_block counts the calls entering it, then blocks until the call's
	// deadline: a slow middleware whose runs a test can count.
	plugins.RegisterMiddleware("servertest_counted_block", func(_ context.Context, _ *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		c := counter(ref.Config["counter"])
		return func(ctx context.Context, _ *engine.Call, _ engine.Value) (engine.Value, error) {
			c.Add(1)
			<-ctx.Done()
			return engine.Null, ctx.Err()
		}, nil
	})
}

// slowFeatures is a manifest of n features hard.<prefix>0…n-1 with the given timeout whose
// reads block until their deadline, counted by counter prefix.
func slowFeatures(prefix string, n int, timeout time.Duration) (string, []string) {
	var b strings.Builder
	var fqns []string
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: %s%d, namespace: hard}
spec:
  primitive: int
  freshness: 1h
  staleness: 24h
  timeout: %v
  keys: [card_id]
  middlewares:
    - {name: servertest_counted_block, stages: [preGet], config: {counter: %s}}
`, prefix, i, timeout, prefix)
		fqns = append(fqns, fmt.Sprintf("hard.%s%d", prefix, i))
	}
	return b.String(), fqns
}

// TestGetManyOneDeadline checks that a GetMany is bounded as a whole by the largest timeout
// of the features it reads — cells queued behind slow ones are not each given a timeout of
// their own — that cells read in time are returned while those not read carry
// DeadlineExceeded, and that the caller's own deadline, when shorter, wins.
func TestGetManyOneDeadline(t *testing.T) {
	e := start(t, envOptions{})
	// The fast feature's timeout is below the slow ones', so theirs bounds the call.
	e.apply(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: fast, namespace: hard}
spec: {primitive: int, freshness: 1h, staleness: 24h, timeout: 10ms, keys: [card_id]}
`, nil, "")
	c := e.clients(protocols[0])
	if _, err := c.engine.Set(context.Background(), connect.NewRequest(&ospreyv1.SetRequest{Fqn: "hard.fast", Keys: keys("c1"), Value: structpb.NewNumberValue(3)})); err != nil {
		t.Fatal(err)
	}
	workers := min(4*runtime.GOMAXPROCS(0), 64)
	tests := []struct {
		name       string
		prefix     string
		slow       int           // slow features
		timeout    time.Duration // theirs
		entities   int
		caller     time.Duration // the caller's deadline; 0 for none
		wantCode   connect.Code  // of the call; 0 for success
		minEntered int64         // slow cells that must start
		maxEntered int64         // slow cells that may start
	}{
		// One entity: its cells are read one after another, the fast one first. The first
		// slow one holds its worker until the call's deadline; the others must not start.
		{"cells queued behind a slow one", "queue", 5, 500 * time.Millisecond, 1, 0, 0, 1, 1},
		// More entities than workers: each worker starts one, the rest are never read.
		{"entities queued behind slow ones", "wide", 1, 500 * time.Millisecond, workers + 100, 0, 0, 1, int64(workers)},
		// The caller's deadline is far sooner than the features' timeouts (the call may end
		// before the server has started the slow cell).
		{"the caller's deadline wins", "caller", 3, 30 * time.Second, 1, 500 * time.Millisecond, connect.CodeDeadlineExceeded, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counter(tt.prefix).Store(0)
			manifest, slow := slowFeatures(tt.prefix, tt.slow, tt.timeout)
			e.apply(manifest, nil, "")
			sels := append([]string{"hard.fast"}, slow...)
			ents := make([]*ospreyv1.Entity, tt.entities)
			for i := range ents {
				ents[i] = &ospreyv1.Entity{Keys: keys("c1")}
			}
			ctx := context.Background()
			if tt.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.caller)
				defer cancel()
			}
			res, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: sels, Entities: ents}))
			entered := counter(tt.prefix).Load()
			if entered < tt.minEntered || entered > tt.maxEntered {
				t.Errorf("%d slow cells started, want %d to %d (of %d): cells not read by the deadline must not start",
					entered, tt.minEntered, tt.maxEntered, tt.slow*tt.entities)
			}
			if tt.wantCode != 0 {
				wantCode(t, err, tt.wantCode)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(res.Msg.GetResults()); n != tt.entities {
				t.Fatalf("%d entity results, want %d", n, tt.entities)
			}
			for i, r := range res.Msg.GetResults() {
				cells := r.GetFeatures()
				if len(cells) != len(sels) {
					t.Fatalf("entity %d: %d cells, want %d", i, len(cells), len(sels))
				}
				if cells[0].GetError() != "" && i == 0 {
					t.Errorf("entity 0: the fast cell failed: %s", cells[0].GetError())
				}
				if i == 0 && cells[0].GetValue().GetIntValue() != 3 {
					t.Errorf("entity 0: hard.fast = %v, want 3", cells[0].GetValue())
				}
				for j, cell := range cells[1:] {
					if !strings.HasPrefix(cell.GetError(), "deadline_exceeded: ") || cell.GetFqn() != slow[j] || cell.GetSelector() != slow[j] {
						t.Errorf("entity %d, %s: cell = %v, want a deadline_exceeded error naming the feature", i, slow[j], cell)
					}
				}
			}
		})
	}
}

// TestOversizedKeys checks that a key value over engine.MaxKeyBytes is refused as
// InvalidArgument naming the request field, without its value copied into the message.
func TestOversizedKeys(t *testing.T) {
	e := start(t, envOptions{})
	c := e.clients(protocols[0])
	huge := strings.Repeat("x", 20<<20)
	over := strings.Repeat("x", engine.MaxKeyBytes+1)
	cases := []struct {
		name  string
		call  func(ctx context.Context, key string) error
		field string
	}{
		{"Get", func(ctx context.Context, k string) error {
			_, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.count", Keys: keys(k)}))
			return err
		}, "keys"},
		{"Set", func(ctx context.Context, k string) error {
			_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.count", Keys: keys(k), Value: structpb.NewNumberValue(1)}))
			return err
		}, "keys"},
		{"Incr", func(ctx context.Context, k string) error {
			_, err := c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: "fraud.count", Keys: keys(k), Value: structpb.NewNumberValue(1)}))
			return err
		}, "keys"},
		{"GetMany", func(ctx context.Context, k string) error {
			_, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: []string{"fraud.count"},
				Entities: []*ospreyv1.Entity{{Keys: keys("c1")}, {Keys: keys(k)}}}))
			return err
		}, "entities[1].keys"},
		{"GetMany, an oversized key name", func(ctx context.Context, k string) error {
			_, err := c.engine.GetMany(ctx, connect.NewRequest(&ospreyv1.GetManyRequest{Selectors: []string{"fraud.count"},
				Entities: []*ospreyv1.Entity{{Keys: map[string]string{k: "c1"}}}}))
			return err
		}, "entities[0].keys"},
	}
	for _, key := range []struct{ name, v string }{{"one byte over", over}, {"20 MB", huge}} {
		for _, tc := range cases {
			t.Run(key.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				ce := wantCode(t, tc.call(ctx, key.v), connect.CodeInvalidArgument)
				if !hasField(ce, tc.field) || !strings.HasPrefix(ce.Message(), tc.field+": ") {
					t.Errorf("the error does not name %s: %.200s", tc.field, ce.Message())
				}
				if !strings.Contains(ce.Message(), fmt.Sprint(engine.MaxKeyBytes)) {
					t.Errorf("the error does not give the limit: %.200s", ce.Message())
				}
				if len(ce.Message()) > 1000 {
					t.Errorf("the message is %d bytes: it copies the key", len(ce.Message()))
				}
			})
		}
	}
	// A key at the limit is served.
	at := strings.Repeat("x", engine.MaxKeyBytes)
	if _, err := c.engine.Get(context.Background(), connect.NewRequest(&ospreyv1.GetRequest{Selector: "fraud.count", Keys: keys(at)})); err != nil {
		t.Fatalf("a key of MaxKeyBytes: %v", err)
	}
}

// TestOverflowCodes checks that writes whose arithmetic would leave the number's range are
// refused with FailedPrecondition naming the value, like a Set of ±Inf, and change nothing.
func TestOverflowCodes(t *testing.T) {
	e := start(t, envOptions{})
	e.apply(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: ratio, namespace: hard}
spec: {primitive: float, freshness: 1h, staleness: 24h, keys: [card_id]}
`, nil, "")
	c := e.clients(protocols[0])
	ctx := context.Background()
	num, str := structpb.NewNumberValue, structpb.NewStringValue
	cases := []struct {
		name       string
		fqn        string
		setup      *structpb.Value // Set (or, for a window, Update) first
		incr       bool            // then Incr by, else Update by
		by         *structpb.Value
		read, want string // a selector read afterwards and its value
	}{
		{"int past max", "fraud.count", str("9223372036854775807"), true, num(1), "fraud.count", "9223372036854775807"},
		{"int past min", "fraud.count", str("-9223372036854775808"), true, num(-1), "fraud.count", "-9223372036854775808"},
		{"float past max", "hard.ratio", num(math.MaxFloat64), true, num(math.MaxFloat64), "hard.ratio", fmt.Sprint(math.MaxFloat64)},
		{"window bucket sum", "fraud.amount", num(1.5e308), false, num(1.5e308), "fraud.amount+sum", fmt.Sprint(1.5e308)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := keys(tc.name)
			var err error
			if tc.fqn == "fraud.amount" {
				_, err = c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: tc.fqn, Keys: k, Value: tc.setup}))
			} else {
				_, err = c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: tc.fqn, Keys: k, Value: tc.setup}))
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.incr {
				_, err = c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: tc.fqn, Keys: k, Value: tc.by}))
			} else {
				_, err = c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: tc.fqn, Keys: k, Value: tc.by}))
			}
			ce := wantCode(t, err, connect.CodeFailedPrecondition)
			if !strings.Contains(ce.Message(), "overflow") || !hasField(ce, "value") {
				t.Errorf("message %q does not say overflow, or no detail names value", ce.Message())
			}
			got, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: tc.read, Keys: k}))
			if err != nil {
				t.Fatal(err)
			}
			var s string
			switch v := got.Msg.GetValue(); {
			case v.GetIntValue() != 0:
				s = fmt.Sprint(v.GetIntValue())
			default:
				s = fmt.Sprint(v.GetFloatValue())
			}
			if s != tc.want {
				t.Errorf("after the refused write %s = %s, want %s", tc.read, s, tc.want)
			}
		})
	}
}

// TestApplyOverMaxTimeout checks that a feature whose spec.timeout is over the host's
// ceiling is refused as InvalidArgument naming the field, the value and the ceiling.
func TestApplyOverMaxTimeout(t *testing.T) {
	e := start(t, envOptions{})
	c := e.clients(protocols[0])
	_, err := c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: patient, namespace: hard}
spec: {primitive: int, freshness: 1h, staleness: 24h, timeout: 10m, keys: [card_id]}
`)}))
	ce := wantCode(t, err, connect.CodeInvalidArgument)
	for _, want := range []string{"spec.timeout", "10m0s", engine.DefaultMaxTimeout.String()} {
		if !strings.Contains(ce.Message(), want) {
			t.Errorf("message %q lacks %q", ce.Message(), want)
		}
	}
}

// TestIngestStopsWhenClientGoesAway checks that an Ingest whose client goes away stops
// between rows — no program runs for the rows after — and writes nothing.
func TestIngestStopsWhenClientGoesAway(t *testing.T) {
	const nRows = 1000
	clientCtx, clientGone := context.WithCancel(context.Background())
	defer clientGone()
	var runs atomic.Int64
	prog := programFunc(func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		if runs.Add(1) == 3 {
			clientGone()
			<-ctx.Done() // until the server sees the client go (or the feature's timeout)
			return engine.ProgramResult{}, ctx.Err()
		}
		return engine.ProgramResult{Value: engine.Float(1)}, nil
	})
	st := memstate.New()
	t.Cleanup(func() { st.Close() })
	eng := engine.New(st, engine.WithPrograms(programLoader{prog}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(func() { eng.Close() })
	if err := eng.ApplyDataSource(context.Background(), &engine.DataSource{FQN: "hard.rows", Kind: "rows"}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Apply(context.Background(), &engine.Feature{FQN: "hard.seen", Primitive: engine.PrimitiveFloat,
		Freshness: time.Hour, Staleness: time.Hour, Timeout: engine.DefaultMaxTimeout, Keys: []string{"card_id"},
		DataSource: "hard.rows", Builder: engine.Builder{Kind: "wasm", Module: "p"}}); err != nil {
		t.Fatal(err)
	}
	e := start(t, envOptions{cfg: server.Config{Engine: eng}, noApply: true, noHost: true})
	rows := make([]*structpb.Struct, nRows)
	for i := range rows {
		rows[i], _ = structpb.NewStruct(map[string]any{"card_id": fmt.Sprintf("c%d", i)})
	}
	_, err := e.clients(protocols[0]).ingest.Ingest(clientCtx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "hard.rows", Rows: rows}))
	if err == nil {
		t.Fatal("Ingest succeeded for a client that went away")
	}
	waitFor(t, func() bool {
		return strings.Contains(e.logs.String(), "procedure=/osprey.v1.IngestService/Ingest protocol=connect feature=hard.rows code=canceled")
	})
	if n := runs.Load(); n != 3 {
		t.Errorf("%d programs ran, want 3: the rows after the client went away must not run", n)
	}
	for _, id := range []string{"c0", "c1", fmt.Sprintf("c%d", nRows-1)} {
		if got, err := eng.Get(context.Background(), "hard.seen", engine.Keys{"card_id": id}); err != nil || got.Found() {
			t.Errorf("%s: %v, %v; want nothing written", id, got.Value, err)
		}
	}
}

type programFunc func(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error)

func (f programFunc) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	return f(ctx, call)
}

// programLoader serves one Go program for every feature.
type programLoader struct{ p engine.Program }

func (l programLoader) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return l.p, nil
}
