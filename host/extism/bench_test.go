package extism_test

import (
	"testing"

	sdk "github.com/extism/go-sdk"

	"github.com/osprey-ml/osprey/host/extism"
)

// BenchmarkCall measures one call of a pooled plugin instance against the Extism SDK called
// directly on one instance (its own per-call cost, the baseline) with the same 64-byte JSON
// input, through the hand-written echo plugin:
//
//	go test -run '^$' -bench Call -benchmem ./host/extism/
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
	b.Run("sdk-one-instance", func(b *testing.B) {
		m := sdk.Manifest{Wasm: []sdk.Wasm{sdk.WasmData{Data: wasm}}}
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
	})
	b.Run("sdk-one-instance-timeout", func(b *testing.B) {
		// The same, with a timeout: the SDK then closes a call's instance when its context
		// ends (wazero's CloseOnContextDone), as every osprey call does.
		m := sdk.Manifest{Wasm: []sdk.Wasm{sdk.WasmData{Data: wasm}}, Timeout: 1000}
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
	})
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
