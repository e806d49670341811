package host_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

func newHost(t testing.TB, opts ...host.Option) *host.Host {
	t.Helper()
	h, err := host.New(context.Background(), slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func feature(t testing.TB, h *host.Host, fqn string, wasm []byte) *engine.Feature {
	t.Helper()
	ref, err := h.AddModule(wasm)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Feature{FQN: fqn, Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: host.BuilderWasm, Module: ref}}
}

func load(t testing.TB, h *host.Host, fqn string, wasm []byte) engine.Program {
	t.Helper()
	p, err := h.LoadProgram(context.Background(), feature(t, h, fqn, wasm))
	if err != nil {
		t.Fatalf("load %s: %v", fqn, err)
	}
	return p
}

func run(p engine.Program, timeout time.Duration) (engine.ProgramResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Run(ctx, &engine.ProgramCall{Keys: engine.Keys{"id": "a"}, Timestamp: time.Now(),
		Row: engine.Row{"x": engine.Int(1)}})
}

func TestNoopProgram(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "t.noop", wb.NoopProgram())
	for range 3 { // the instance is reused
		res, err := run(p, time.Second)
		if err != nil || !res.Value.Equal(engine.Int(42)) {
			t.Fatalf("run = %v, %v", res.Value, err)
		}
	}
}

func TestRejectedAtApply(t *testing.T) {
	small := newHost(t, host.WithMaxModuleSize(100))
	tests := []struct {
		name string
		wasm []byte
		h    *host.Host
		cfg  map[string]string
		want string
	}{
		{"garbage", []byte("not wasm at all"), nil, nil, "not a WebAssembly binary module"},
		{"no memory", wb.MissingExport("memory"), nil, nil, "missing export memory"},
		{"no version", wb.MissingExport("osprey_abi_version"), nil, nil, "missing export osprey_abi_version"},
		{"no alloc", wb.MissingExport("osprey_alloc"), nil, nil, "missing export osprey_alloc"},
		{"no program", wb.MissingExport("osprey_program"), nil, nil, "osprey_program"},
		{"abi 2", wb.ABIVersion(0x00020000), nil, nil, "ABI version 2.0 is not supported"},
		{"abi 0", wb.ABIVersion(0x00000003), nil, nil, "ABI version 0.3 is not supported"},
		{"forbidden import", wb.ForbiddenImport("env", "system"), nil, nil, "forbidden import env.system"},
		{"unknown host import", wb.ImportsHost("spawn", wb.FuncType{}), nil, nil, "osprey.spawn, which the host does not provide"},
		{"wrong host signature", wb.ImportsHost("now", wb.FuncType{Results: []wb.ValType{wb.I32}}), nil, nil, "osprey.now with signature () -> (i32), want () -> (i64)"},
		{"unknown wasi", wb.ForbiddenImport("wasi_snapshot_preview1", "sock_open_everything"), nil, nil, "not a WASI preview 1 function"},
		{"wrong export signature", wb.WrongSignature(), nil, nil, "export osprey_program has signature () -> ()"},
		{"too large", wb.NoopProgram(), small, nil, "more than the 100 allowed"},
		{"memory over limit", wb.BigMemory(100), nil, map[string]string{"memoryLimit": "4Mi"}, "over limit"},
		{"limit over ceiling", wb.NoopProgram(), nil, map[string]string{"memoryLimit": "1GiB"}, "above the host's ceiling"},
		{"bad limit", wb.NoopProgram(), nil, map[string]string{"memoryLimit": "lots"}, "spec.builder.config.memoryLimit"},
		{"start function", wb.InfiniteLoopStart(), nil, nil, "start function is not allowed"},
	}
	def := newHost(t, host.WithInitTimeout(200*time.Millisecond))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			if h == nil {
				h = def
			}
			ref, err := h.AddModule(tt.wasm)
			if err == nil {
				f := feature(t, def, "t.bad", wb.NoopProgram())
				f.Builder.Module, f.Builder.Config = ref, tt.cfg
				_, err = h.LoadProgram(context.Background(), f)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestInfiniteLoopIsStopped(t *testing.T) {
	h := newHost(t)
	loop := load(t, h, "t.loop", wb.InfiniteLoopProgram())
	noop := load(t, h, "t.noop", wb.NoopProgram())
	for range 3 { // each time a fresh instance replaces the one stopped
		start := time.Now()
		_, err := run(loop, 50*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "t.loop") {
			t.Fatalf("loop: err = %v, want DeadlineExceeded naming the feature", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("loop ran %v past its deadline", d)
		}
		if res, err := run(noop, time.Second); err != nil || res.Value.Int() != 42 {
			t.Fatalf("other feature while one loops: %v, %v", res.Value, err)
		}
	}
}

func TestTrapsBecomeErrors(t *testing.T) {
	h := newHost(t)
	tests := []struct {
		wasm []byte
		want string
	}{
		{wb.TrapProgram(wb.TrapUnreachable), "unreachable"},
		{wb.TrapProgram(wb.TrapOutOfBounds), "out of bounds memory access"},
		{wb.TrapProgram(wb.TrapDivideByZero), "integer divide by zero"},
		{wb.TrapProgram(wb.TrapStackOverflow), "stack overflow"},
		{wb.MemoryBombProgram(), "unreachable"},
		{wb.BadResponse(0, 0), "outside memory or empty"},
		{wb.BadResponse(0xFFFF0000, 16), "outside memory"},
		{wb.BadResponse(0xFFFFFFFF, 16), "outside memory"},
		{wb.BadResponse(0, 2), "malformed response"}, // OK, null, then no flags byte
	}
	for i, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			p := load(t, h, "t.trap"+string(rune('a'+i)), tt.wasm)
			for range 2 { // the broken instance is discarded; the next one fails the same way
				_, err := run(p, 10*time.Second)
				if !errors.Is(err, host.ErrTrap) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want ErrTrap mentioning %q", err, tt.want)
				}
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	h := newHost(t)
	f := feature(t, h, "t.bomb", wb.MemoryBombProgramNoTrap())
	f.Builder.Config = map[string]string{"memoryLimit": "2Mi"}
	p, err := h.LoadProgram(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	// The bomb grows until memory.grow fails at the manifest's limit, then answers.
	if res, err := run(p, 10*time.Second); err != nil || res.Value.Int() != 42 {
		t.Fatalf("run = %v, %v", res.Value, err)
	}
}

func TestWithEngine(t *testing.T) {
	h := newHost(t)
	st := newState(t)
	e := engine.New(st, engine.WithPrograms(h), engine.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := context.Background()
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "t.rows", Kind: "rows"}); err != nil {
		t.Fatal(err)
	}
	f := feature(t, h, "t.answer", wb.NoopProgram())
	f.DataSource = "t.rows"
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ingest(ctx, "t.rows", []engine.Row{{"id": engine.String("u1")}, {"id": engine.String("u2")}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"u1", "u2"} {
		res, err := e.Get(ctx, "t.answer", engine.Keys{"id": id})
		if err != nil || res.Value.Int() != 42 {
			t.Fatalf("%s = %v, %v", id, res.Value, err)
		}
	}
	bad := feature(t, h, "t.bad", wb.ForbiddenImport("env", "system"))
	if err := e.Apply(ctx, bad); !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "spec.builder") {
		t.Fatalf("apply bad module: %v", err)
	}
}
