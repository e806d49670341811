package extism_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// The Go guest doing validate's work over the Osprey ABI, built once per test binary with
// the standard toolchain (as host/guests_test.go builds its guests), from the repository
// root so that go.work resolves the guest SDK.
var abiValidate struct {
	once sync.Once
	wasm []byte
	err  error
}

// abiValidateWasm returns the module built from testdata/abivalidate.
func abiValidateWasm(tb testing.TB) []byte {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds a Go guest; skipped with -short")
	}
	abiValidate.once.Do(func() {
		dir, err := os.MkdirTemp("", "osprey-abivalidate-")
		if err != nil {
			abiValidate.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "abivalidate.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./host/extism/testdata/abivalidate")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			abiValidate.err = errors.New("build testdata/abivalidate: " + err.Error() + "\n" + string(msg))
			return
		}
		abiValidate.wasm, abiValidate.err = os.ReadFile(out)
	})
	if abiValidate.err != nil {
		tb.Fatal(abiValidate.err)
	}
	return abiValidate.wasm
}

// Middleware kinds of getEngine.
const (
	mwNone   = "none"
	mwABI    = "abi-validate"
	mwPlugin = "plugin-validate"
)

// getEngine returns an engine on the in-process state with the float feature
// payments.amount applied, whose postGet middleware is none, the ABI guest or the validate
// plugin, both with config max=10000. Everything is closed when tb ends.
func getEngine(tb testing.TB, kind string) (*engine.Engine, *engine.Feature) {
	tb.Helper()
	f := &engine.Feature{FQN: "payments.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"account_id"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	config := map[string]string{"max": "10000"}
	opts := []engine.Option{engine.WithLogger(quiet)}
	switch kind {
	case mwNone:
	case mwABI:
		h, err := host.New(ctx, quiet)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h.Close(ctx) })
		ref, err := h.AddModule(abiValidateWasm(tb))
		if err != nil {
			tb.Fatal(err)
		}
		f.Middlewares = []engine.MiddlewareRef{{Name: "validate", Module: ref, Stages: []engine.Stage{engine.StagePostGet}, Config: config}}
		opts = append(opts, engine.WithMiddlewareResolver(h.Resolver(nil)))
	case mwPlugin:
		pl := load(tb, extism.DefaultPolicy, extism.Spec{Name: "validate", Module: module(tb, "../../examples/plugins/validate/validate.wasm")})
		f.Middlewares = []engine.MiddlewareRef{{Name: "validate", Stages: []engine.Stage{engine.StagePostGet}, Config: config}}
		opts = append(opts, engine.WithMiddlewareResolver(engine.MiddlewareResolverFunc(func(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
			return pl.Middleware("handle", f, ref.Config), nil
		})))
	default:
		tb.Fatalf("unknown middleware kind %q", kind)
	}
	st := memory.New()
	tb.Cleanup(func() { st.Close() })
	e := engine.New(st, opts...)
	tb.Cleanup(func() { e.Close() })
	if err := e.Apply(ctx, f); err != nil {
		tb.Fatal(err)
	}
	return e, f
}

// TestABIValidateMatchesPlugin: the ABI guest and the validate plugin, as postGet
// middlewares with max=10000, give the same reads — a value under the limit unchanged, a
// negative one as 0, one above the limit an error (not a rejection) naming value and limit —
// so that BenchmarkGetMiddlewareABIvsPlugin compares equal work.
func TestABIValidateMatchesPlugin(t *testing.T) {
	tests := []struct {
		in      float64
		want    float64
		wantErr string
	}{
		{2500, 2500, ""},
		{-5, 0, ""},
		{25000, 0, "validate: payments.amount: value 25000 exceeds max 10000"},
	}
	for _, kind := range []string{mwABI, mwPlugin} {
		t.Run(kind, func(t *testing.T) {
			e, f := getEngine(t, kind)
			for i, tt := range tests {
				keys := engine.Keys{"account_id": "a" + string(rune('1'+i))}
				if _, err := e.Set(ctx, f.FQN, keys, tt.in, time.Time{}); err != nil {
					t.Fatal(err)
				}
				got, err := e.Get(ctx, f.FQN, keys)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, engine.ErrRejected) {
						t.Errorf("Get %v = %v, %v; want an error saying %q", tt.in, got.Value, err, tt.wantErr)
					}
					continue
				}
				if err != nil || got.Value.Kind() != engine.KindFloat || got.Value.Float() != tt.want {
					t.Errorf("Get %v = %v, %v; want %v", tt.in, got.Value, err, tt.want)
				}
			}
		})
	}
}

// BenchmarkGetMiddlewareABIvsPlugin measures, side by side, an engine Get of a float on the
// in-process state with no middleware, with the Go ABI guest doing validate's work as its
// postGet middleware (resolved by the host), and with the validate Extism plugin (the same
// value back in both):
//
//	go test -run '^$' -bench GetMiddlewareABIvsPlugin -benchmem ./host/extism/
func BenchmarkGetMiddlewareABIvsPlugin(b *testing.B) {
	for _, kind := range []string{mwNone, mwABI, mwPlugin} {
		b.Run(kind, func(b *testing.B) {
			e, f := getEngine(b, kind)
			keys := engine.Keys{"account_id": "a1"}
			if _, err := e.Set(ctx, f.FQN, keys, 2500.0, time.Time{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if got, err := e.Get(ctx, f.FQN, keys); err != nil || got.Value.Float() != 2500 {
					b.Fatal(got.Value, err)
				}
			}
		})
	}
}
