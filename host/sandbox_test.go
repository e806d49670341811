package host_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

// hang bounds how long a call that must be stopped may take before the test calls it a
// hang: far above the deadlines used (no timing assertion), far below the overruns the
// stop mechanism exists to prevent (minutes to centuries).
const hang = 20 * time.Second

// runWithin runs p with the given deadline and fails the test if it has not returned
// after hang.
func runWithin(t *testing.T, p engine.Program, ctx context.Context, call *engine.ProgramCall) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, call)
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(hang):
		t.Fatalf("the call did not return within %v", hang)
		return nil
	}
}

func sampleCall() *engine.ProgramCall {
	return &engine.ProgramCall{Keys: engine.Keys{"id": "a"}, Timestamp: time.Now(), Row: engine.Row{"x": engine.Int(1)}}
}

// memoryLoop returns a program that loops forever, doing op (memory.fill or memory.copy)
// of n bytes at address 0 each iteration.
func memoryLoop(op []byte, n int32) []byte {
	return wb.ProgramWith(uint32(n>>16)+2, func(m *wb.Module) uint32 {
		return m.Func(wb.ProgramType, nil,
			wb.Loop(wb.BlockEmpty, wb.I32Const(0), wb.I32Const(0), wb.I32Const(n), op, wb.Br(0)),
			wb.Unreachable())
	})
}

// wasiLoop returns a program that calls the WASI function name with args forever (memory 0
// starts with an iovec {ptr 16, len 8} for fd_write).
func wasiLoop(name string, args ...[]byte) []byte {
	params := make([]wb.ValType, len(args))
	for i := range params {
		params[i] = wb.I32
	}
	return wb.ProgramImporting(17, "wasi_snapshot_preview1", name, wb.FuncType{Params: params, Results: []wb.ValType{wb.I32}}, func(m *wb.Module) uint32 {
		m.Data(0, []byte{16, 0, 0, 0, 8, 0, 0, 0})
		return m.Func(wb.ProgramType, nil, wb.Loop(wb.BlockEmpty, wb.Seq(args...), wb.Call(0), wb.Drop(), wb.Br(0)), wb.Unreachable())
	})
}

// hugeWrite returns a program that makes one fd_write of 16,384 iovecs, each the same 16 MiB
// without a newline (16 MiB of memory at 1 MiB), and then returns OK: the host must stop
// processing the write at the deadline, and the call must fail although the guest ignores
// the error and returns.
func hugeWrite() []byte {
	const iovs, n = 16384, 16 << 20
	return wb.ProgramImporting(18*16+2, "wasi_snapshot_preview1", "fd_write",
		wb.FuncType{Params: []wb.ValType{wb.I32, wb.I32, wb.I32, wb.I32}, Results: []wb.ValType{wb.I32}},
		func(m *wb.Module) uint32 {
			// local 2: i. iov[i] = {1 MiB, 16 MiB} at 17 MiB + 8i; memory 1..17 MiB is 'x'.
			return m.Func(wb.ProgramType, []wb.ValType{wb.I32},
				wb.I32Const(1<<20), wb.I32Const('x'), wb.I32Const(n), wb.MemoryFill(),
				wb.Loop(wb.BlockEmpty,
					wb.LocalGet(2), wb.I32Const(8), wb.I32Mul(), wb.I32Const(17<<20), wb.I32Add(),
					wb.I32Const(1<<20), wb.I32Store(2, 0),
					wb.LocalGet(2), wb.I32Const(8), wb.I32Mul(), wb.I32Const(17<<20), wb.I32Add(),
					wb.I32Const(n), wb.I32Store(2, 4),
					wb.LocalGet(2), wb.I32Const(1), wb.I32Add(), wb.LocalTee(2), wb.I32Const(iovs), wb.I32LtU(), wb.BrIf(0)),
				wb.I32Const(1), wb.I32Const(17<<20), wb.I32Const(iovs), wb.I32Const(0), wb.Call(0), wb.Drop(),
				wb.OKResult())
		})
}

// TestStoppedByWork: every path that repeats, and work charged by its size, reaches a stop
// check: loop-free recursion, bulk memory instructions of megabytes per iteration.
func TestStoppedByWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
	}{
		{"recursion without a loop", wb.RecursionProgram(60)},
		{"memory.fill of 16 MiB per iteration", memoryLoop(wb.MemoryFill(), 16<<20)},
		{"memory.copy of 8 MiB per iteration", memoryLoop(wb.MemoryCopy(), 8<<20)},
		{"random_get of 1 MiB per iteration", wasiLoop("random_get", wb.I32Const(0), wb.I32Const(1<<20))},
		{"fd_write per iteration", wasiLoop("fd_write", wb.I32Const(1), wb.I32Const(0), wb.I32Const(1), wb.I32Const(64))},
		{"one fd_write of 16,384 iovecs of 16 MiB", hugeWrite()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			p := load(t, h, "t.work", tc.wasm)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := runWithin(t, p, ctx, sampleCall())
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "t.work") {
				t.Fatalf("err = %v; want DeadlineExceeded naming the feature", err)
			}
			t.Logf("stopped after %v: %v", time.Since(start), err)
			// The instance was discarded; the module still serves (a new instance).
			if got := h.Stats().Instances; got != 0 {
				t.Fatalf("%d instances left after the stop; want 0", got)
			}
		})
	}
}

// TestCancelStops: a call whose context is cancelled (a client that went away) is stopped
// well before its deadline.
func TestCancelStops(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "t.cancel", wb.InfiniteLoopProgram())
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	time.AfterFunc(50*time.Millisecond, cancel)
	err := runWithin(t, p, ctx, sampleCall())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want Canceled", err)
	}
}

// TestInitializeStopped: a module whose _initialize never returns (by recursion, with no
// loop) is refused at load, bounded by the init timeout.
func TestInitializeStopped(t *testing.T) {
	h := newHost(t, host.WithInitTimeout(100*time.Millisecond))
	wasm := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		f := m.FuncCount()
		m.Func(wb.FuncType{Params: []wb.ValType{wb.I32}}, nil,
			wb.LocalGet(0), wb.I32Eqz(), wb.If(wb.BlockEmpty, wb.Return()),
			wb.LocalGet(0), wb.I32Const(1), wb.I32Sub(), wb.Call(f),
			wb.LocalGet(0), wb.I32Const(1), wb.I32Sub(), wb.Call(f))
		m.ExportFunc("_initialize", m.Func(wb.FuncType{}, nil, wb.I32Const(60), wb.Call(f)))
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	done := make(chan error, 1)
	go func() {
		_, err := h.LoadProgram(context.Background(), feature(t, h, "t.init", wasm))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), "_initialize did not finish in time") {
			t.Fatalf("err = %v; want ErrModule, _initialize did not finish in time", err)
		}
	case <-time.After(hang):
		t.Fatal("the load did not return")
	}
}

// TestStructureLimits: modules beyond a structural limit are refused before compiling, fast,
// with an error naming the limit.
func TestStructureLimits(t *testing.T) {
	nested := func(depth int) []byte {
		return wb.ProgramWith(1, func(m *wb.Module) uint32 {
			body := append(bytes.Repeat([]byte{0x02, 0x40}, depth), bytes.Repeat([]byte{0x0b}, depth)...)
			return m.Func(wb.ProgramType, nil, body, wb.OKResult())
		})
	}
	brTable := func(n int) []byte {
		return wb.ProgramWith(1, func(m *wb.Module) uint32 {
			br := wb.AppendULEB128([]byte{0x02, 0x40, 0x41, 0x00, 0x0e}, uint64(n))
			br = append(br, make([]byte, n+1)...)
			return m.Func(wb.ProgramType, nil, append(br, 0x0b), wb.OKResult())
		})
	}
	bigTable := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		m.Table(1<<27, nil)
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	localsAcross := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		locals := make([]wb.ValType, 30_000)
		for i := range locals {
			locals[i] = wb.I32
		}
		for range 200 {
			m.Func(wb.FuncType{}, locals)
		}
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	manyLocals := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		locals := make([]wb.ValType, 60_000)
		for i := range locals {
			locals[i] = wb.I32
		}
		return m.Func(wb.ProgramType, locals, wb.OKResult())
	})
	for _, tc := range []struct {
		name, want string
		wasm       []byte
	}{
		{"nesting", "blocks nested 4097 deep; the limit is 4096", nested(5000)},
		{"br_table", "br_table with 20000 targets; the limit is 16384", brTable(20_000)},
		{"table", "the tables declare 134217728 entries at least; the limit is 1048576", bigTable},
		{"locals", "declares 60000 locals; the limit is 50000", manyLocals},
		{"locals across functions", "locals and parameters together; the limit is 4194304", localsAcross},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			_, err := h.LoadProgram(context.Background(), feature(t, h, "t.big", tc.wasm))
			if !errors.Is(err, host.ErrModule) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrModule with %q", err, tc.want)
			}
		})
	}
}

// TestTableGrowCapped: table.grow beyond the host's table limit fails in the guest (-1).
func TestTableGrowCapped(t *testing.T) {
	h := newHost(t)
	// osprey_program: if table.grow(null, 2^26) == -1 then OK else unreachable.
	wasm := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		m.Table(1, nil)
		return m.Func(wb.ProgramType, nil,
			wb.RefNullFunc(), wb.I32Const(1<<26), wb.TableGrow(0), wb.I32Const(-1), wb.I32Ne(),
			wb.If(wb.BlockEmpty, wb.Unreachable()), wb.OKResult())
	})
	p := load(t, h, "t.table", wasm)
	if _, err := run(p, time.Second); err != nil {
		t.Fatalf("run: %v (table.grow by 2^26 should have failed in the guest)", err)
	}
}

// TestResponseLimit: a response larger than the ABI's limit is refused.
func TestResponseLimit(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "t.resp", wb.BadResponse(0, 45<<20))
	_, err := run(p, time.Second)
	if !errors.Is(err, host.ErrTrap) || !strings.Contains(err.Error(), "more than the ABI's") {
		t.Fatalf("err = %v", err)
	}
}

// TestInputTooLarge: an input over the ABI's limit is the caller's error, and the instance
// is kept.
func TestInputTooLarge(t *testing.T) {
	h := newHost(t)
	p := load(t, h, "t.input", wb.NoopProgram())
	before := h.Stats().Instances
	_, err := p.Run(context.Background(), &engine.ProgramCall{Keys: engine.Keys{"id": strings.Repeat("k", 17<<20)}, Timestamp: time.Now()})
	if !errors.Is(err, host.ErrInputTooLarge) {
		t.Fatalf("err = %v; want ErrInputTooLarge", err)
	}
	if got := h.Stats().Instances; got != before {
		t.Fatalf("%d instances after the refused call; want %d", got, before)
	}
}

// TestGuestStatusIsGuestFailed: a program's own error status matches ErrGuestFailed.
func TestGuestStatusIsGuestFailed(t *testing.T) {
	h := newHost(t)
	resp := []byte{0x02, 4, 'n', 'o', 'p', 'e'} // status error, message "nope"
	wasm := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		m.Data(2048, resp)
		return m.Func(wb.ProgramType, nil, wb.I64Const(2048<<32|int64(len(resp))))
	})
	p := load(t, h, "t.status", wasm)
	_, err := run(p, time.Second)
	if !errors.Is(err, host.ErrGuestFailed) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v; want ErrGuestFailed with the guest's message", err)
	}
}

// TestRetainReleases: modules no applied feature names, and that no Hold keeps, are released
// with their instances and bytes.
func TestRetainReleases(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	kept := feature(t, h, "t.kept", wb.NoopProgram())
	if _, err := h.LoadProgram(ctx, kept); err != nil {
		t.Fatal(err)
	}
	gone := feature(t, h, "t.gone", wb.MemoryBombProgramNoTrap())
	p, err := h.LoadProgram(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(p, time.Second); err != nil {
		t.Fatal(err)
	}
	rejected, err := h.AddModule([]byte("not wasm at all"))
	if err != nil {
		t.Fatal(err)
	}
	held, err := h.AddModule(wb.InfiniteLoopProgram())
	if err != nil {
		t.Fatal(err)
	}
	release := h.Hold(held)
	if s := h.Stats(); s.Modules != 2 || s.Blobs != 4 || s.Instances != 2 {
		t.Fatalf("before Retain: %+v", s)
	}
	h.Retain(ctx, []*engine.Feature{kept})
	s := h.Stats()
	if s.Modules != 1 || s.Blobs != 2 || s.Instances != 1 {
		t.Fatalf("after Retain: %+v; want the kept module (and the held bytes)", s)
	}
	if _, err := run(p, time.Second); !errors.Is(err, host.ErrModuleNotFound) {
		t.Fatalf("a call of the released module: %v; want ErrModuleNotFound", err)
	}
	release()
	if s := h.Stats(); s.Blobs != 1 {
		t.Fatalf("after release: %+v; want only the kept bytes", s)
	}
	_ = rejected
	h.Retain(ctx, nil)
	if s := h.Stats(); s.Modules != 0 || s.Blobs != 0 || s.Instances != 0 || s.MemoryInUse != 0 || s.MemoryReserved != 0 {
		t.Fatalf("after Retain(nil): %+v; want nothing held", s)
	}
}

// TestBudget: the modules loaded must fit the memory budget one instance each; beyond it an
// apply is refused with ErrExhausted, and releasing a module makes room again.
func TestBudget(t *testing.T) {
	ctx := context.Background()
	const limit = 1 << 20 // each module: 1 MiB of memory
	h := newHost(t, host.WithMemoryBudget(3*limit), host.WithMemoryCeiling(limit))
	var fs []*engine.Feature
	for i := range 4 {
		f := feature(t, h, "t.b", wb.ProgramWith(uint32(i+1), func(m *wb.Module) uint32 { return m.Func(wb.ProgramType, nil, wb.OKResult()) }))
		f.Builder.Config = map[string]string{"memoryLimit": "1Mi"}
		fs = append(fs, f)
	}
	for _, f := range fs[:3] {
		if _, err := h.LoadProgram(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.LoadProgram(ctx, fs[3]); !errors.Is(err, host.ErrExhausted) {
		t.Fatalf("the fourth module: %v; want ErrExhausted", err)
	}
	defer h.Hold(fs[3].Builder.Module)() // as an apply in progress does
	h.Retain(ctx, fs[1:3])
	if _, err := h.LoadProgram(ctx, fs[3]); err != nil {
		t.Fatalf("after releasing one: %v", err)
	}
	if s := h.Stats(); s.MemoryReserved != 3*limit || s.MemoryInUse > 3*limit {
		t.Fatalf("stats %+v", s)
	}
}

// TestCompileAbandonedByItsCaller: when the load compiling a module gives up, a load of the
// same module waiting for it compiles it again instead of taking the first one's error.
func TestCompileAbandonedByItsCaller(t *testing.T) {
	h := newHost(t)
	// _initialize counts to 2^28: long enough to cancel the first load in the middle.
	wasm := wb.ProgramWith(1, func(m *wb.Module) uint32 {
		m.ExportFunc("_initialize", m.Func(wb.FuncType{}, []wb.ValType{wb.I32},
			wb.Loop(wb.BlockEmpty, wb.LocalGet(0), wb.I32Const(1), wb.I32Add(), wb.LocalTee(0),
				wb.I32Const(1<<28), wb.I32LtU(), wb.BrIf(0))))
		return m.Func(wb.ProgramType, nil, wb.OKResult())
	})
	f := feature(t, h, "t.slow", wasm)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := h.LoadProgram(ctx, f)
		first <- err
	}()
	time.Sleep(20 * time.Millisecond) // the first load is compiling or initialising
	second := make(chan error, 1)
	go func() {
		_, err := h.LoadProgram(context.Background(), f)
		second <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("the waiting load: %v; want the module (its own context is live)", err)
		}
	case <-time.After(hang):
		t.Fatal("the waiting load did not return")
	}
	<-first
}

// TestBudgetEvicts: a call that needs room first lowers idle instances to their actual size,
// then evicts them; when only busy instances are left it fails with ErrExhausted.
func TestBudgetEvicts(t *testing.T) {
	ctx := context.Background()
	const limit = 1 << 20
	h := newHost(t, host.WithMemoryBudget(3*limit), host.WithMemoryCeiling(limit))
	mk := func(fqn string, wasm []byte) engine.Program {
		f := feature(t, h, fqn, wasm)
		f.Builder.Config = map[string]string{"memoryLimit": "1Mi"}
		p, err := h.LoadProgram(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	spin := mk("t.spin", wb.InfiniteLoopProgram())
	mk("t.idle", wb.NoopProgram()) // one idle instance, charged at its ceiling
	if s := h.Stats(); s.Instances != 2 || s.MemoryInUse != 2*limit {
		t.Fatalf("before: %+v", s)
	}
	// Four calls that spin until their deadline: the first reuses t.spin's instance, the
	// second fits, the third needs t.idle's room, the fourth finds none.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := spin.Run(ctx, sampleCall())
			errs <- err
		}()
	}
	var exhausted, deadline int
	for range 4 {
		select {
		case err := <-errs:
			switch {
			case errors.Is(err, host.ErrExhausted):
				exhausted++
			case errors.Is(err, context.DeadlineExceeded):
				deadline++
			default:
				t.Errorf("a call: %v", err)
			}
		case <-time.After(hang):
			t.Fatal("a call did not return")
		}
	}
	if exhausted != 1 || deadline != 3 {
		t.Fatalf("%d calls exhausted, %d ran to their deadline; want 1 and 3", exhausted, deadline)
	}
	if s := h.Stats(); s.Instances != 0 || s.MemoryInUse != 0 {
		t.Fatalf("after: %+v; want t.idle's instance evicted and the spinning ones discarded", s)
	}
}
