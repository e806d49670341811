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

// BenchmarkHostProgramWATWazeroStop: the same with wazero's own termination checks instead
// of the host's instrumentation.
func BenchmarkHostProgramWATWazeroStop(b *testing.B) {
	benchProgram(b, wb.NoopProgram(), host.WithWazeroStop)
}

// BenchmarkHostProgramWATNoStop: the same with no way to stop the guest: the floor.
func BenchmarkHostProgramWATNoStop(b *testing.B) { benchProgram(b, wb.NoopProgram(), host.WithoutStop) }

// BenchmarkGoGuestCall10Fields is the per-call number: a standard-Go guest
// (guest-sdk/go) whose program does nothing, called through the host with a 10-field row:
// host → guest → host. Compare with BenchmarkRawNoop (the floor) from the same run.
func BenchmarkGoGuestCall10Fields(b *testing.B) {
	benchProgram(b, buildGuest(b, "host/testdata/guests/noop"))
}

// BenchmarkGoGuestRawABI: a Go guest written against the ABI without the SDK, returning a
// constant: the boundary's share of BenchmarkGoGuestCall10Fields (host path + Go's export).
func BenchmarkGoGuestRawABI(b *testing.B) {
	benchProgram(b, buildGuest(b, "host/testdata/guests/raw"))
}

// BenchmarkGoGuestCall10FieldsWazeroStop: the same with wazero's termination checks, which
// call out to Go at every loop header the guest runs.
func BenchmarkGoGuestCall10FieldsWazeroStop(b *testing.B) {
	benchProgram(b, buildGuest(b, "host/testdata/guests/noop"), host.WithWazeroStop)
}

// BenchmarkGoGuestCall10FieldsNoStop: the same with no way to stop the guest: the floor.
func BenchmarkGoGuestCall10FieldsNoStop(b *testing.B) {
	benchProgram(b, buildGuest(b, "host/testdata/guests/noop"), host.WithoutStop)
}

// BenchmarkGoGuestAmount runs the fraud example's program (reads four of the ten fields).
func BenchmarkGoGuestAmount(b *testing.B) {
	row := engine.Row{}
	for k, v := range tenFields {
		row[k] = v
	}
	h := newHost(b)
	p := load(b, h, "bench.amount", buildGuest(b, "examples/fraud/amount"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	call := &engine.ProgramCall{Timestamp: time.Now(), Row: row}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Run(ctx, call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGoGuestParallel calls the no-op Go guest from every core at once (one instance
// per goroutine from the pool): 1e9 / (ns/op) is calls per second on the machine.
func BenchmarkGoGuestParallel(b *testing.B) {
	h := newHost(b)
	p := load(b, h, "bench.par", buildGuest(b, "host/testdata/guests/noop"))
	b.ReportAllocs()
	b.ResetTimer() // not the compile (b.Loop does this for the other benchmarks)
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		call := &engine.ProgramCall{Timestamp: time.Now(), Row: tenFields}
		for pb.Next() {
			if _, err := p.Run(ctx, call); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCompileCold compiles a Go guest with an empty compilation cache.
func BenchmarkCompileCold(b *testing.B) {
	wasm := buildGuest(b, "examples/fraud/amount")
	ctx := context.Background()
	for b.Loop() {
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true))
		if _, err := r.CompileModule(ctx, wasm); err != nil {
			b.Fatal(err)
		}
		r.Close(ctx)
	}
}

// BenchmarkCompileCached compiles it again from a warm on-disk compilation cache (a host
// restart with host.WithCompilationCache).
func BenchmarkCompileCached(b *testing.B) {
	wasm := buildGuest(b, "examples/fraud/amount")
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	compile := func() {
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true).WithCompilationCache(cache))
		if _, err := r.CompileModule(ctx, wasm); err != nil {
			b.Fatal(err)
		}
		r.Close(ctx)
	}
	compile() // warm
	for b.Loop() {
		compile()
	}
}

// BenchmarkInstantiate creates an instance of a compiled Go guest the way the pool does:
// instantiate with the host's WASI, run _initialize, check osprey_abi_version.
func BenchmarkInstantiate(b *testing.B) {
	h := newHost(b, host.WithMaxInstances(1<<20))
	p := load(b, h, "bench.inst", buildGuest(b, "examples/fraud/amount"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := host.NewInstanceForBenchmark(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// benchConfig runs the config guest (ABI 1.1; its program reads its config's "n" through
// ctx.ConfigInt) as the programs of n features with different configurations, calling them
// in turn from one goroutine. With one feature every call finds its instance configured;
// with two, the one idle instance moves between them, so every call re-delivers first: the
// worst case of sharing a module's pool across configurations.
func benchConfig(b *testing.B, features int) {
	wasm := buildGuest(b, "host/testdata/guests/config")
	h := newHost(b)
	progs := make([]engine.Program, features)
	for i := range progs {
		progs[i] = mustLoadWith(b, h, "bench.cfg"+string(rune('a'+i)), wasm, map[string]string{"n": string(rune('0' + i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	call := &engine.ProgramCall{Timestamp: time.Now(), Row: tenFields}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := progs[i%features].Run(ctx, call); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGoGuestConfigRead: a Go guest reading one configuration key on every call.
func BenchmarkGoGuestConfigRead(b *testing.B) { benchConfig(b, 1) }

// BenchmarkGoGuestConfigAlternating: two configurations alternating on one idle instance.
func BenchmarkGoGuestConfigAlternating(b *testing.B) { benchConfig(b, 2) }
