package host_test

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

// tenFields is the 10-field row of the per-call benchmarks.
var tenFields = engine.Row{
	"card_id": engine.String("card-0001"), "amount_cents": engine.Int(12345), "currency": engine.String("EUR"),
	"status": engine.String("approved"), "ts": engine.Timestamp(time.Unix(1_700_000_000, 0)),
	"merchant": engine.String("m-42"), "mcc": engine.Int(5411), "country": engine.String("PT"),
	"online": engine.Bool(true), "risk": engine.Float(0.12),
}

// benchRaw is the floor: a raw wazero call of an exported no-op, cached api.Function,
// CallWithStack, with or without the termination checks the host compiles in.
func benchRaw(b *testing.B, termination bool) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(termination))
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, wb.NoopFunc())
	if err != nil {
		b.Fatal(err)
	}
	fn := mod.ExportedFunction("noop")
	stack := make([]uint64, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := fn.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawNoop(b *testing.B)            { benchRaw(b, false) }
func BenchmarkRawNoopTermination(b *testing.B) { benchRaw(b, true) }

// benchProgram runs a program through the host: encode the call with a 10-field row, take
// an instance from the pool, write the input, call, decode the response.
func benchProgram(b *testing.B, wasm []byte, opts ...host.Option) {
	h := newHost(b, opts...)
	p := load(b, h, "bench.p", wasm)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	call := &engine.ProgramCall{Timestamp: time.Now(), Row: tenFields}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Run(ctx, call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostProgramWAT: the host's whole per-call path on a hand-assembled guest that
// does no work, so this is the host's own overhead.
func BenchmarkHostProgramWAT(b *testing.B) { benchProgram(b, wb.NoopProgram()) }

// BenchmarkHostProgramWATNoTermination: the same without the termination checks (and so
// without wazero's per-call watcher goroutine): what stopping runaway guests costs.
func BenchmarkHostProgramWATNoTermination(b *testing.B) {
	benchProgram(b, wb.NoopProgram(), host.WithoutTermination())
}
