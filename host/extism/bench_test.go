package extism_test

import (
	"context"
	"testing"
	"time"

	sdk "github.com/extism/go-sdk"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

// BenchmarkCall measures one call of a pooled plugin instance through the host's own kernel
// ABI host (osprey-pool) against the Extism SDK (github.com/extism/go-sdk, a test-only
// dependency kept as the baseline) called directly on one instance with the same 64-byte
// JSON input, through the hand-written echo plugin:
//
//	go test -run '^$' -bench Call -benchmem -count 3 ./host/extism/
//
// osprey-pool-cancellable calls with a context that can be cancelled (a request's): the
// call then also watches it (context.AfterFunc).
func BenchmarkCall(b *testing.B) {
	in := []byte(`{"version":1,"feature":"user.email","value":"alice@example.com"}`)
	wasm := module(b, "testdata/echo.wasm")
	b.Run("osprey-pool", func(b *testing.B) {
		pl := load(b, extism.DefaultPolicy, extism.Spec{Name: "echo", Module: wasm, Functions: []string{"echo"}})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pl.Call(ctx, "echo", in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("osprey-pool-cancellable", func(b *testing.B) {
		pl := load(b, extism.DefaultPolicy, extism.Spec{Name: "echo", Module: wasm, Functions: []string{"echo"}})
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pl.Call(cctx, "echo", in); err != nil {
				b.Fatal(err)
			}
		}
	})
	sdkCall := func(timeoutMS uint64) func(b *testing.B) {
		return func(b *testing.B) {
			m := sdk.Manifest{Wasm: []sdk.Wasm{sdk.WasmData{Data: wasm}}, Timeout: timeoutMS}
			p, err := sdk.NewPlugin(ctx, m, sdk.PluginConfig{EnableWasi: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.CallWithContext(ctx, "echo", in); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("sdk-one-instance", sdkCall(0))
	// The same, with a timeout, as every osprey call has: the SDK then has wazero close a
	// call's instance when its context ends (CloseOnContextDone: a goroutine per Wasm call
	// and a call out to Go at every loop header), where osprey sets the instrumentation's
	// stop flag.
	b.Run("sdk-one-instance-timeout", sdkCall(1000))
	b.Run("osprey-pool-parallel", func(b *testing.B) {
		pl := load(b, extism.DefaultPolicy, extism.Spec{Name: "echo", Module: wasm, Functions: []string{"echo"}})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := pl.Call(ctx, "echo", in); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkGetThroughMiddleware measures an engine Get of a float on the in-process state
// with no middleware, and with the example validate plugin as its postGet middleware (the
// same value back): the cost a plugin middleware adds to a read.
//
//	go test -run '^$' -bench GetThroughMiddleware -benchmem ./host/extism/
func BenchmarkGetThroughMiddleware(b *testing.B) {
	for _, withPlugin := range []bool{false, true} {
		name := "none"
		if withPlugin {
			name = "plugin-validate"
		}
		b.Run(name, func(b *testing.B) {
			f := &engine.Feature{FQN: "payments.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"account_id"}, Freshness: time.Hour,
				Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
			var opts []engine.Option
			if withPlugin {
				pl := load(b, extism.DefaultPolicy, extism.Spec{Name: "validate", Module: module(b, "../../examples/plugins/validate/validate.wasm")})
				f.Middlewares = []engine.MiddlewareRef{{Name: "validate", Stages: []engine.Stage{engine.StagePostGet}, Config: map[string]string{"max": "10000"}}}
				opts = append(opts, engine.WithMiddlewareResolver(engine.MiddlewareResolverFunc(func(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
					return pl.Middleware("handle", f, ref.Config), nil
				})))
			}
			st := memory.New()
			defer st.Close()
			e := engine.New(st, append(opts, engine.WithLogger(quiet))...)
			defer e.Close()
			if err := e.Apply(ctx, f); err != nil {
				b.Fatal(err)
			}
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
