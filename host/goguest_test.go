package host_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/manifest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGoGuestMisbehaving(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/hostile")
	logs := &syncBuffer{}
	h, err := host.New(context.Background(), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	st := newState(t)
	e := engine.New(st, engine.WithPrograms(h), engine.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := context.Background()
	other := &engine.Feature{FQN: "t.other", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	if err := e.Apply(ctx, other); err != nil {
		t.Fatal(err)
	}
	f := feature(t, h, "t.hostile", wasm)
	f.Timeout = 2 * time.Second
	f.Dependencies = []string{"t.other"}
	f.Builder.Config = map[string]string{"memoryLimit": "24Mi"}
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Set(ctx, "t.other", engine.Keys{"id": "a"}, 99, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode    string
		want    int64
		wantErr error
		msg     string
	}{
		{"ok", 7, nil, ""},
		{"error", 0, nil, "the input makes no sense"},
		{"panic", 0, nil, "boom"},
		{"nilmap", 0, nil, "assignment to entry in nil map"},
		{"exit", 0, host.ErrTrap, "exited with code 3"},
		{"loop", 0, context.DeadlineExceeded, "t.hostile"},
		{"bomb", 0, host.ErrTrap, "out of memory"},
		// No real sleep is granted: time.Sleep spins in guest code, where the deadline stops
		// it like any loop (no host goroutine is left blocked in a sleep).
		{"sleep", 0, context.DeadlineExceeded, "t.hostile"},
		{"read", 99, nil, ""},
		{"log", 1, nil, ""},
		{"wrongtype", 0, engine.ErrTypeMismatch, "want int"},
		{"nan", 0, nil, "NaN"}, // refused by the SDK already; the host would refuse it too
		{"nosuchmode", 0, nil, "unknown mode"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			out, err := e.DryRun(ctx, "t.hostile", engine.Keys{"id": "a"}, engine.Row{"mode": engine.String(tt.mode)}, time.Time{})
			switch {
			case tt.msg == "" && tt.wantErr == nil:
				if err != nil || out.Value.Int() != tt.want {
					t.Fatalf("got %v, %v; want %d", out.Value, err, tt.want)
				}
			default:
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v; want %v mentioning %q", err, tt.wantErr, tt.msg)
				}
			}
			// Whatever happened, the feature keeps serving.
			if out, err := e.DryRun(ctx, "t.hostile", engine.Keys{"id": "a"}, engine.Row{"mode": engine.String("ok")}, time.Time{}); err != nil || out.Value.Int() != 7 {
				t.Fatalf("after %s: %v, %v", tt.mode, out.Value, err)
			}
		})
	}
	if !strings.Contains(logs.String(), "hello from the guest") || !strings.Contains(logs.String(), "fqn=t.hostile") || !strings.Contains(logs.String(), "answer=42") {
		t.Errorf("guest log not forwarded:\n%s", logs.String())
	}
}

// loadExamples applies the example manifests with their Go guests built from source.
func loadExamples(t *testing.T, h *host.Host, e *engine.Engine) {
	t.Helper()
	ctx := context.Background()
	for _, dir := range []string{"fraud", "derived", "middleware", "velocity"} {
		ms, err := manifest.Load(filepath.Join("..", "examples", dir))
		if err != nil {
			t.Fatal(err)
		}
		build := func(module string) string {
			pkg := filepath.ToSlash(filepath.Join("examples", dir, strings.TrimSuffix(module, ".wasm")))
			ref, err := h.AddModule(buildGuest(t, pkg))
			if err != nil {
				t.Fatal(err)
			}
			return ref
		}
		for _, m := range ms {
			if m.DataSource != nil {
				if err := e.ApplyDataSource(ctx, m.DataSource); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, m := range ms {
			f := m.Feature
			if f == nil {
				continue
			}
			if f.Builder.Module != "" {
				f.Builder.Module = build(f.Builder.Module)
			}
			for i := range f.Middlewares {
				if f.Middlewares[i].Module != "" {
					f.Middlewares[i].Module = build(f.Middlewares[i].Module)
				}
			}
			if err := e.Apply(ctx, f); err != nil {
				t.Fatalf("%s: %v", m.Pos, err)
			}
		}
	}
}

func TestExamples(t *testing.T) {
	h := newHost(t)
	e := engine.New(newState(t), engine.WithPrograms(h), engine.WithMiddlewareResolver(h.Resolver(nil)),
		engine.WithLogger(slog.New(slog.DiscardHandler)))
	loadExamples(t, h, e)
	ctx := context.Background()
	now := time.Now().UTC()
	row := func(card string, cents int64, status string, ago time.Duration) engine.Row {
		return engine.Row{
			"card_id": engine.String(card), "amount_cents": engine.Int(cents), "currency": engine.String("EUR"),
			"status": engine.String(status), "ts": engine.Timestamp(now.Add(-ago)), "merchant_id": engine.String("m1"),
			"mcc": engine.Int(5411), "country": engine.String("PT"), "card_present": engine.Bool(true), "risk_score": engine.Float(0.1),
		}
	}
	res, err := e.Ingest(ctx, "fraud.transactions", []engine.Row{
		row("c1", 1250, "approved", 30*time.Minute),
		row("c1", 4000, "approved", 2*time.Minute),
		row("c1", 99900, "declined", time.Minute),
		row("c2", 500, "approved", time.Second),
	})
	if err != nil || res.Written != 3 || res.Skipped != 1 {
		t.Fatalf("ingest = %+v, %v", res, err)
	}
	for sel, want := range map[string]float64{"fraud.amount+sum": 52.5, "fraud.amount+count": 2, "fraud.amount+avg": 26.25, "fraud.amount+max": 40} {
		got, err := e.Get(ctx, sel, engine.Keys{"card_id": "c1"})
		if err != nil || got.Value.Float() != want {
			t.Errorf("%s = %v (%v), want %v", sel, got.Value, err, want)
		}
	}
	// A bad row is refused whole, naming the field.
	bad := row("c3", 0, "approved", 0)
	bad["amount_cents"] = engine.String("lots")
	if _, err := e.Ingest(ctx, "fraud.transactions", []engine.Row{row("c3", 100, "approved", 0), bad}); err == nil || !strings.Contains(err.Error(), "amount_cents") {
		t.Fatalf("bad row: %v", err)
	}
	// The derived feature reads two others, on request.
	if got, err := e.Get(ctx, "fraud.utilisation", engine.Keys{"card_id": "c1"}); err != nil || got.Found() {
		t.Fatalf("utilisation without a limit = %v, %v", got.Value, err)
	}
	if _, err := e.Set(ctx, "fraud.limit", engine.Keys{"card_id": "c1"}, 105, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Get(ctx, "fraud.utilisation", engine.Keys{"card_id": "c1"})
	if err != nil || got.Value.Float() != 0.5 {
		t.Fatalf("utilisation = %v, %v; want 52.5/105 = 0.5", got.Value, err)
	}
	// The Wasm middleware rejects negatives and clips large amounts.
	if _, err := e.Set(ctx, "payments.amount", engine.Keys{"account_id": "a1"}, -5, time.Time{}); !errors.Is(err, engine.ErrRejected) {
		t.Fatalf("negative payment: %v", err)
	}
	if v, err := e.Set(ctx, "payments.amount", engine.Keys{"account_id": "a1"}, 25000, time.Time{}); err != nil || v.Float() != 10000 {
		t.Fatalf("large payment = %v, %v; want clipped to 10000", v, err)
	}
	// A dry run computes without writing.
	dr, err := e.DryRun(ctx, "fraud.amount", nil, row("c9", 705, "approved", 0), time.Time{})
	if err != nil || dr.Value.Float() != 7.05 || dr.Keys["card_id"] != "c9" {
		t.Fatalf("dry run = %+v, %v", dr, err)
	}
	if got, _ := e.Get(ctx, "fraud.amount", engine.Keys{"card_id": "c9"}); got.Found() {
		t.Fatal("dry run wrote")
	}
}
