package instrument

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/osprey-ml/osprey/abi"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"

	"github.com/osprey-ml/osprey/host/internal/wasmbin"
)

// memoryLimitPages bounds the fixtures' memory (the memory bombs stop there).
const memoryLimitPages = 16

// newRuntime returns a compiler runtime WITHOUT WithCloseOnContextDone: only the stop global
// can interrupt a guest in it.
func newRuntime(t testing.TB) wazero.Runtime {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(memoryLimitPages))
	t.Cleanup(func() { r.Close(ctx) })
	return r
}

// zeroStub is a host function that returns zeros.
var zeroStub = api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) { clear(stack) })

// instantiate compiles wasm in r and instantiates it anonymously, first providing each
// imported function (of a module r does not have yet) as a stub that returns zeros.
func instantiate(t testing.TB, r wazero.Runtime, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	c, err := r.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	byModule := map[string][]api.FunctionDefinition{}
	for _, f := range c.ImportedFunctions() {
		mod, _, _ := f.Import()
		byModule[mod] = append(byModule[mod], f)
	}
	for mod, fns := range byModule {
		if r.Module(mod) != nil {
			continue
		}
		b := r.NewHostModuleBuilder(mod)
		for _, f := range fns {
			_, name, _ := f.Import()
			b.NewFunctionBuilder().WithGoModuleFunction(zeroStub, f.ParamTypes(), f.ResultTypes()).Export(name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	return m
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// behaviour calls every exported function of mod but skip, each with all its arguments 16
// (osprey_alloc(16) succeeds; osprey_program gets a 16-byte call at 16), and describes what
// each returned, osprey_program's response, and the memory size at the end.
func behaviour(mod api.Module, skip string) string {
	ctx := context.Background()
	defs := mod.ExportedFunctionDefinitions()
	var names []string
	for name := range defs {
		if name != skip {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var sb strings.Builder
	for _, name := range names {
		args := make([]uint64, len(defs[name].ParamTypes()))
		for i := range args {
			args[i] = 16
		}
		res, err := mod.ExportedFunction(name).Call(ctx, args...)
		if err != nil {
			fmt.Fprintf(&sb, "%s: error %s\n", name, firstLine(err))
			continue
		}
		fmt.Fprintf(&sb, "%s: %v", name, res)
		if name == "osprey_program" && len(res) == 1 && memory(mod) != nil {
			b, ok := memory(mod).Read(uint32(res[0]>>32), uint32(res[0]))
			fmt.Fprintf(&sb, " response %x (%v)", b, ok)
		}
		sb.WriteByte('\n')
	}
	if mem := memory(mod); mem != nil {
		fmt.Fprintf(&sb, "memory: %d bytes\n", mem.Size())
	}
	return sb.String()
}

// memory returns mod's memory 0, or nil (wazero's Memory returns a typed nil pointer when
// there is none).
func memory(mod api.Module) api.Memory {
	if m := mod.Memory(); m != nil && !reflect.ValueOf(m).IsNil() {
		return m
	}
	return nil
}

type fixture struct {
	name  string
	wasm  []byte
	loops int
	skip  string // an export behaviour must not call (it would never return)
}

// fixtures returns the wasmbuild fixtures without a start section.
func fixtures() []fixture {
	fs := []fixture{
		{name: "NoopProgram", wasm: wb.NoopProgram()},
		{name: "NoopFunc", wasm: wb.NoopFunc()},
		{name: "InfiniteLoopProgram", wasm: wb.InfiniteLoopProgram(), loops: 1, skip: "osprey_program"},
		{name: "MemoryBombProgram", wasm: wb.MemoryBombProgram(), loops: 1},
		{name: "MemoryBombProgramNoTrap", wasm: wb.MemoryBombProgramNoTrap(), loops: 1},
		{name: "ABIVersion", wasm: wb.ABIVersion(0x00020000)},
		{name: "ForbiddenImport", wasm: wb.ForbiddenImport("env", "system")},
		{name: "ImportsHost", wasm: wb.ImportsHost("now", wb.FuncType{Results: []wb.ValType{wb.I64}})},
		{name: "BigMemory", wasm: wb.BigMemory(8)},
		{name: "WrongSignature", wasm: wb.WrongSignature()},
		{name: "BadResponse/0-0", wasm: wb.BadResponse(0, 0)},
		{name: "BadResponse/beyond", wasm: wb.BadResponse(0xFFFF0000, 16)},
		{name: "BadResponse/straddling", wasm: wb.BadResponse(65530, 16)},
	}
	for _, k := range []wb.TrapKind{wb.TrapUnreachable, wb.TrapOutOfBounds, wb.TrapDivideByZero, wb.TrapIntegerOverflow, wb.TrapStackOverflow} {
		fs = append(fs, fixture{name: "TrapProgram/" + k.String(), wasm: wb.TrapProgram(k)})
	}
	for _, e := range []string{"memory", "osprey_abi_version", "osprey_alloc", "osprey_program"} {
		fs = append(fs, fixture{name: "MissingExport/" + e, wasm: wb.MissingExport(e)})
	}
	return fs
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			res, err := Instrument(fx.wasm, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Loops != fx.loops || res.StopGlobal != 0 || res.StrippedSections != nil {
				t.Fatalf("result = %d loops, stop global %d, stripped %q; want %d loops, global 0, none", res.Loops, res.StopGlobal, res.StrippedSections, fx.loops)
			}
			checkCopied(t, fx.wasm, res)

			mod := instantiate(t, newRuntime(t), res.Wasm)
			g, ok := mod.ExportedGlobal(StopExport).(api.MutableGlobal)
			if !ok || g.Type() != api.ValueTypeI32 || g.Get() != 0 {
				t.Fatalf("stop global = %v (mutable: %v)", mod.ExportedGlobal(StopExport), ok)
			}
			want := behaviour(instantiate(t, newRuntime(t), fx.wasm), fx.skip)
			if got := behaviour(mod, fx.skip); got != want {
				t.Fatalf("instrumented module behaves differently:\n%s\nwant:\n%s", got, want)
			}
			t.Logf("%d -> %d bytes\n%s", len(fx.wasm), len(res.Wasm), want)
		})
	}
}

func TestStartSectionRefused(t *testing.T) {
	_, err := Instrument(wb.InfiniteLoopStart(), Limits{})
	if err == nil || !strings.Contains(err.Error(), "a start function is not allowed: initialise in _initialize") {
		t.Fatalf("err = %v", err)
	}
}

func TestAlreadyExported(t *testing.T) {
	m := wb.New()
	m.ExportFunc(StopExport, m.Func(wb.FuncType{}, nil))
	_, err := Instrument(m.Bytes(), Limits{})
	if err == nil || !strings.Contains(err.Error(), "already exports") || !strings.Contains(err.Error(), StopExport) {
		t.Fatalf("err = %v", err)
	}
	// Instrumenting twice is refused the same way.
	res, err := Instrument(wb.NoopProgram(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Instrument(res.Wasm, Limits{}); err == nil || !strings.Contains(err.Error(), "already exports") {
		t.Fatalf("second Instrument: err = %v", err)
	}
}

// callWithStop calls fn in mod, sets the stop global after delay from another goroutine, and
// returns the call's error and how long it took; it fails the test if the call does not
// return within timeout.
//
// The garbage collector is off during the call: Go cannot preempt a goroutine running
// compiled Wasm, so a stop-the-world phase of a GC cycle that began while the guest spins
// would wait for the guest forever, with the goroutine that is to set the stop global
// stopped too (see TestGCDuringSpin).
func callWithStop(t *testing.T, mod api.Module, delay, timeout time.Duration, fn string, args ...uint64) (time.Duration, error) {
	t.Helper()
	// No cycle in progress, and none starts until the call is over.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	stop := mod.ExportedGlobal(StopExport).(api.MutableGlobal)
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := mod.ExportedFunction(fn).Call(context.Background(), args...)
		errc <- err
	}()
	go func() {
		time.Sleep(delay)
		stop.Set(1)
	}()
	select {
	case err := <-errc:
		return time.Since(start), err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v of the stop global being set", fn, timeout)
		return 0, nil
	}
}

func TestStopInfiniteLoop(t *testing.T) {
	res, err := Instrument(wb.InfiniteLoopProgram(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	mod := instantiate(t, newRuntime(t), res.Wasm)
	const delay = 50 * time.Millisecond
	took, err := callWithStop(t, mod, delay, 5*time.Second, "osprey_program", wb.AllocPtr, 0)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v; want a trap with \"unreachable\"", err)
	}
	if took < delay || took > delay+time.Second {
		t.Fatalf("the call took %v; want just over %v", took, delay)
	}
	t.Logf("stopped after %v: %s", took, firstLine(err))
}

// TestGCDuringSpin documents the hazard callWithStop avoids: Go cannot preempt a
// goroutine running compiled Wasm, so once a GC cycle starts its stop-the-world phase while
// an instrumented guest spins in a loop, every other goroutine stops and waits for the
// guest, including the one that would set the stop global: the process hangs. (wazero's
// WithCloseOnContextDone has no such problem: its loop-header check exits to Go, where the
// goroutine can be preempted.) The test runs that scenario in a child process and checks
// that the child is still stuck after 3 s. If this test fails, the hazard is gone.
func TestGCDuringSpin(t *testing.T) {
	if w := os.Getenv("INSTRUMENT_GC_CHILD"); w != "" {
		hazardChild(t, w)
		return
	}
	if testing.Short() {
		t.Skip("waits 3 s for a child process; skipped with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"loop", "recursion", "memory.fill"} {
		t.Run(which, func(t *testing.T) { gcDuringSpin(t, exe, which) })
	}
}

// gcDuringSpin runs one guest of TestGCDuringSpin in a child process.
func gcDuringSpin(t *testing.T, exe, which string) {
	cmd := exec.Command(exe, "-test.run=^TestGCDuringSpin$", "-test.v")
	cmd.Env = append(os.Environ(), "INSTRUMENT_GC_CHILD="+which)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// With the safe points (memory.grow every SafePointInterval iterations) the GC gets in
	// and the stop lands: the child must finish.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the child failed (%v):\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the child is stuck: a GC during the spin blocked the stop:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "gc done") || !strings.Contains(out.String(), "guest returned") {
		t.Fatalf("the child did not go through the scenario:\n%s", out.String())
	}
}

// hazardChild runs the scenario of TestGCDuringSpin: a GC starts 20 ms into a guest that
// never returns (an infinite loop, a loop-free recursion, or a loop of large memory.fills),
// the stop global is to be set at 50 ms.
func hazardChild(t *testing.T, which string) {
	wasm := map[string][]byte{
		"loop":      wb.InfiniteLoopProgram(),
		"recursion": wb.RecursionProgram(60),
		"memory.fill": wb.ProgramWith(16, func(m *wb.Module) uint32 {
			return m.Func(wb.ProgramType, nil,
				wb.Loop(wb.BlockEmpty, wb.I32Const(0), wb.I32Const(0), wb.I32Const(512<<10), wb.MemoryFill(), wb.Br(0)),
				wb.Unreachable())
		}),
	}[which]
	res, err := Instrument(wasm, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	mod := instantiate(t, newRuntime(t), res.Wasm)
	stop := mod.ExportedGlobal(StopExport).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("osprey_program").Call(context.Background(), 0, 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	go func() {
		fmt.Println("gc start")
		runtime.GC()
		fmt.Println("gc done")
	}()
	go func() {
		time.Sleep(30 * time.Millisecond)
		stop.Set(1)
		fmt.Println("stop set")
	}()
	fmt.Println("guest returned:", firstLine(<-done))
}

// syncBuffer is a goroutine-safe bytes.Buffer.
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

// multiValueModule returns a module whose "sum" (n i32) -> i32 adds n + ... + 1 in a loop of
// type [i32 i32] -> [i32 i32] (block params and results, a type-index block type), nested in
// loops of other block types, with branches out of and back into them.
func multiValueModule() []byte {
	i32 := wb.I32
	m := wb.New()
	// The first function's type is type 0: the loop's.
	m.Func(wb.FuncType{Params: []wb.ValType{i32, i32}, Results: []wb.ValType{i32, i32}}, nil, wb.LocalGet(0), wb.LocalGet(1))
	const loopType = wb.BlockType(0)
	sum := m.Func(wb.FuncType{Params: []wb.ValType{i32}, Results: []wb.ValType{i32}}, []wb.ValType{i32, i32},
		wb.LocalGet(0), wb.I32Const(0),
		wb.Loop(loopType, // [i, acc] -> [i, acc]
			wb.LocalSet(1), wb.LocalTee(2), // local1 = acc, local2 = i; [i]
			wb.LocalGet(1), wb.I32Add(), wb.LocalSet(1), // acc += i; []
			wb.LocalGet(2), wb.I32Const(1), wb.I32Sub(), wb.LocalTee(2), // [i-1]
			wb.LocalGet(1),             // [i-1, acc]
			wb.LocalGet(2), wb.BrIf(0), // again while i-1 != 0
		),
		wb.LocalSet(1), wb.Drop(),
		// A loop of result type i32, run once, inside a block; and an empty loop in an if.
		wb.Block(wb.BlockI32,
			wb.Loop(wb.BlockI32, wb.LocalGet(1)),
		),
		wb.LocalGet(0),
		wb.If(wb.BlockEmpty, wb.Loop(wb.BlockEmpty, wb.Nop())),
	)
	m.ExportFunc("sum", sum)
	return m.Bytes()
}

func TestMultiValueLoop(t *testing.T) {
	wasm := multiValueModule()
	res, err := Instrument(wasm, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Loops != 3 {
		t.Fatalf("%d loops; want 3", res.Loops)
	}
	checkCopied(t, wasm, res)
	for name, w := range map[string][]byte{"original": wasm, "instrumented": res.Wasm} {
		mod := instantiate(t, newRuntime(t), w)
		got, err := mod.ExportedFunction("sum").Call(context.Background(), 10)
		if err != nil || got[0] != 55 {
			t.Fatalf("%s: sum(10) = %v, %v; want 55", name, got, err)
		}
	}
	// A long sum is stopped too.
	mod := instantiate(t, newRuntime(t), res.Wasm)
	took, err := callWithStop(t, mod, 10*time.Millisecond, 5*time.Second, "sum", 1<<31)
	if err != nil && !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v", err)
	}
	t.Logf("sum(2^31): %v after %v", err, took)
}

// TestImportedGlobals checks the stop global's index when the module imports and defines
// globals, and that the checks read that global.
func TestImportedGlobals(t *testing.T) {
	ctx := context.Background()
	env := wb.New()
	env.ExportGlobal("g", env.Global(wb.I32, false, wb.I32Const(42)))

	w := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	w = appendSec(w, wasmbin.SecType, 1, 0x60, 0, 1, 0x7f) // () -> i32
	w = appendSec(w, wasmbin.SecImport, 1, 3, 'e', 'n', 'v', 1, 'g', wasmbin.KindGlobal, 0x7f, 0x00)
	w = appendSec(w, wasmbin.SecFunction, 1, 0)
	w = appendSec(w, wasmbin.SecGlobal, 2, 0x7f, 0x00, 0x41, 0x05, 0x0b, 0x7e, 0x01, 0x42, 0x00, 0x0b)
	w = appendSec(w, wasmbin.SecExport, 1, 1, 'f', wasmbin.KindFunc, 0)
	body := wb.Seq(
		[]byte{1, 1, 0x7f}, // one i32 local
		wb.Loop(wb.BlockEmpty,
			wb.LocalGet(0), wb.I32Const(1), wb.I32Add(), wb.LocalTee(0), wb.I32Const(10), wb.I32LtU(), wb.BrIf(0)),
		wb.GlobalGet(0), wb.GlobalGet(1), wb.I32Add(), wb.LocalGet(0), wb.I32Add(), []byte{0x0b})
	w = appendSec(w, wasmbin.SecCode, slices.Concat([]byte{1}, wb.ULEB128(uint64(len(body))), body)...)

	res, err := Instrument(w, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if res.StopGlobal != 3 || res.Loops != 1 {
		t.Fatalf("stop global %d, %d loops; want 3, 1", res.StopGlobal, res.Loops)
	}
	checkCopied(t, w, res)
	r := newRuntime(t)
	if _, err := r.InstantiateWithConfig(ctx, env.Bytes(), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string][]byte{"original": w, "instrumented": res.Wasm} {
		got, err := instantiate(t, r, w).ExportedFunction("f").Call(ctx)
		if err != nil || got[0] != 57 {
			t.Fatalf("%s: f() = %v, %v; want 42+5+10", name, got, err)
		}
	}
	mod := instantiate(t, r, res.Wasm)
	mod.ExportedGlobal(StopExport).(api.MutableGlobal).Set(1)
	if _, err := mod.ExportedFunction("f").Call(ctx); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("with the stop global set: err = %v", err)
	}
}

func appendSec(b []byte, id byte, content ...byte) []byte {
	b = append(b, id)
	b = wb.AppendULEB128(b, uint64(len(content)))
	return append(b, content...)
}

// TestSectionsCreated instruments modules without global or export sections, with sections
// after the place of the new ones.
func TestSectionsCreated(t *testing.T) {
	empty := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	onlyType := wb.New()
	onlyType.Func(wb.FuncType{}, nil)
	noExports := wb.New()
	noExports.Func(wb.FuncType{}, nil, wb.Loop(wb.BlockEmpty, wb.Nop()))
	dataOnly := wb.New()
	dataOnly.Memory(1, nil)
	dataOnly.Data(0, []byte("hello"))
	globalsNoExports := wb.New()
	globalsNoExports.Global(wb.I64, true, wb.I64Const(1))
	globalsNoExports.Global(wb.I32, false, wb.I32Const(2))
	globalsNoExports.Func(wb.FuncType{}, nil)
	for name, tt := range map[string]struct {
		wasm []byte
		stop uint32
	}{
		"empty":            {empty, 0},
		"function":         {onlyType.Bytes(), 0},
		"noExports":        {noExports.Bytes(), 0},
		"dataOnly":         {dataOnly.Bytes(), 0},
		"globalsNoExports": {globalsNoExports.Bytes(), 2},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Instrument(tt.wasm, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if res.StopGlobal != tt.stop {
				t.Fatalf("stop global %d; want %d", res.StopGlobal, tt.stop)
			}
			checkCopied(t, tt.wasm, res)
			mod := instantiate(t, newRuntime(t), res.Wasm)
			if _, ok := mod.ExportedGlobal(StopExport).(api.MutableGlobal); !ok {
				t.Fatal("no mutable stop global exported")
			}
		})
	}
}

func TestDebugSectionsStripped(t *testing.T) {
	m := wb.New()
	m.ExportFunc("f", m.Func(wb.FuncType{}, nil, wb.Loop(wb.BlockEmpty)))
	m.Custom(".debug_info", []byte{1, 2, 3})
	m.Custom("osprey.meta", []byte("kept"))
	m.Custom(".debug_line", nil)
	m.Custom("debug", []byte("kept too"))
	wasm := m.Bytes()
	res, err := Instrument(wasm, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.StrippedSections, []string{".debug_info", ".debug_line"}) {
		t.Fatalf("stripped %q", res.StrippedSections)
	}
	checkCopied(t, wasm, res)
	instantiate(t, newRuntime(t), res.Wasm)
}

// allImmediates returns instructions (not a valid function: only decoded) with every kind of
// immediate, many of them containing 0x03, the loop opcode, and the number of bytes each
// instruction has.
func allImmediates() [][]byte {
	three := func(n int) []byte { return bytes.Repeat([]byte{0x03}, n) }
	ins := [][]byte{
		{0x00}, {0x01}, {0x02, 0x40}, {0x02, 0x7f}, {0x02, 0x03}, {0x02, 0x83, 0x03}, {0x04, 0x7b}, {0x04, 0x63, 0x70},
		{0x05}, {0x0b}, {0x0c, 0x83, 0x03}, {0x0d, 0x03}, {0x0e, 0x02, 0x03, 0x83, 0x03, 0x03}, {0x0f},
		{0x10, 0x03}, {0x11, 0x03, 0x00}, {0x11, 0x03, 0x03}, {0x12, 0x03}, {0x13, 0x03, 0x03},
		{0x1a}, {0x1b}, {0x1c, 0x03, 0x7f, 0x64, 0x03, 0x70},
		{0x20, 0x03}, {0x21, 0x03}, {0x22, 0x83, 0x03}, {0x23, 0x03}, {0x24, 0x03}, {0x25, 0x03}, {0x26, 0x03},
		{0x28, 0x02, 0x03}, {0x2d, 0x00, 0x83, 0x83, 0x83, 0x83, 0x03}, {0x3e, 0x43, 0x03, 0x03}, // memarg, multi-memory
		{0x3f, 0x00}, {0x40, 0x03},
		slices.Concat([]byte{0x41}, wb.SLEB128(-1<<31)), {0x41, 0x03},
		slices.Concat([]byte{0x42}, wb.SLEB128(-1<<63)), {0x42, 0x03},
		slices.Concat([]byte{0x43}, three(4)), slices.Concat([]byte{0x44}, three(8)),
		{0x45}, {0x6a}, {0xa7}, {0xc0}, {0xc4},
		{0xd0, 0x70}, {0xd0, 0x6f}, {0xd1}, {0xd2, 0x03},
	}
	for sub := range 8 {
		ins = append(ins, []byte{0xfc, byte(sub)})
	}
	ins = append(ins,
		[]byte{0xfc, 0x08, 0x03, 0x00}, []byte{0xfc, 0x09, 0x03}, []byte{0xfc, 0x0a, 0x00, 0x00}, []byte{0xfc, 0x0b, 0x00},
		[]byte{0xfc, 0x0c, 0x03, 0x03}, []byte{0xfc, 0x0d, 0x03}, []byte{0xfc, 0x0e, 0x03, 0x03},
		[]byte{0xfc, 0x0f, 0x03}, []byte{0xfc, 0x10, 0x03}, []byte{0xfc, 0x11, 0x03},
		[]byte{0xfc, 0x80, 0x00}, // sub-opcode 0 in two bytes
	)
	for sub := range 256 {
		if slices.Contains([]int{154, 162, 165, 166, 175, 176, 178, 179, 180, 187, 194, 197, 198, 207, 208, 210, 211, 212, 226, 238}, sub) {
			continue
		}
		in := wb.AppendULEB128([]byte{0xfd}, uint64(sub))
		switch {
		case sub <= 11 || sub == 92 || sub == 93:
			in = append(in, 0x04, 0x03)
		case sub == 12 || sub == 13:
			in = append(in, three(16)...)
		case sub >= 21 && sub <= 34:
			in = append(in, 0x03)
		case sub >= 84 && sub <= 91:
			in = append(in, 0x03, 0x83, 0x03, 0x03)
		}
		ins = append(ins, in)
	}
	ins = append(ins, []byte{0xfe, 0x00, 0x02, 0x03}, []byte{0xfe, 0x01, 0x02, 0x03}, []byte{0xfe, 0x02, 0x03, 0x03}, []byte{0xfe, 0x03, 0x00})
	for sub := 0x10; sub <= 0x4e; sub++ {
		ins = append(ins, []byte{0xfe, byte(sub), 0x02, 0x83, 0x03})
	}
	return ins
}

// TestDecoding checks that every opcode's immediates are stepped over: only the real loops
// get a loop check, each right after its block type, and the bulk memory and table
// instructions a charge right before them.
func TestDecoding(t *testing.T) {
	loops := [][]byte{{0x03, 0x40}, {0x03, 0x7f}, {0x03, 0x7b}, {0x03, 0x03}, {0x03, 0x83, 0x03}, {0x03, 0x63, 0x70}, {0x03, 0x64, 0x03}, {0x03, 0x6f}}
	var parts [][]byte
	for i, in := range allImmediates() {
		parts = append(parts, in)
		if i%20 == 0 {
			parts = append(parts, loops[i/20%len(loops)])
		}
	}
	parts = append(parts, loops...)
	// Close what is open (the instructions hold one `end`), so that the body balances.
	open := 0
	for _, p := range parts {
		switch p[0] {
		case 0x02, 0x03, 0x04:
			open++
		case 0x0b:
			open--
		}
	}
	for range open {
		parts = append(parts, []byte{0x0b})
	}

	m := wb.New()
	m.ImportFunc("env", "f", wb.FuncType{})
	m.Func(wb.FuncType{}, nil)
	m.Func(wb.FuncType{}, nil, parts...)
	m.Func(wb.FuncType{}, []wb.ValType{wb.I32, wb.I32, wb.F64}, wb.Loop(wb.BlockEmpty))
	wasm := m.Bytes()
	res, err := Instrument(wasm, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	checkCopied(t, wasm, res)
	// Where the checks should go, as offsets in the body of function 2 (after its locals
	// byte): after each loop's block type, before each bulk instruction.
	var wantLoops, wantBulk []int
	off := 1
	for _, p := range parts {
		switch {
		case p[0] == 0x03:
			wantLoops = append(wantLoops, off+len(p))
		case p[0] == 0xfc && slices.Contains([]byte{8, 10, 11, 12, 14, 15, 17}, p[1]):
			wantBulk = append(wantBulk, off)
		}
		off += len(p)
	}
	if res.Loops != len(wantLoops)+1 {
		t.Fatalf("%d loops; want %d", res.Loops, len(wantLoops)+1)
	}
	// The input offsets of the inserted checks of function 2 (body index 1), by length.
	start, _ := bodyRange(t, res.Wasm, 1)
	var got []int
	removed := 0
	for _, r := range res.inserted[1] {
		got = append(got, r[0]-start-removed)
		removed += r[1] - r[0]
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(wantLoops), wantBulk...)))
	if !slices.Equal(got, want) {
		t.Fatalf("checks at body offsets %v; want %v (loops %v, bulk %v)", got, want, wantLoops, wantBulk)
	}
	// Function 1 is empty (no loop before its end): an entry check. Function 3 opens with
	// a loop, whose check stands for the entry.
	if len(res.inserted[0]) != 1 || len(res.inserted[2]) != 1 {
		t.Fatalf("checks in the empty function %v, in the loop function %v; want one each", res.inserted[0], res.inserted[2])
	}
}

func TestUnknownOpcodes(t *testing.T) {
	marker := wb.I64Const(0x0123456789abcdef)
	for _, op := range [][]byte{
		{0x06, 0x40}, {0x07, 0x00}, {0x08, 0x00}, {0x09, 0x00}, {0x0a}, {0x14, 0x00}, {0x15, 0x00}, {0x18, 0x00}, {0x19},
		{0x1f, 0x40, 0x00}, {0x27}, {0xc5}, {0xd3}, {0xd4}, {0xd5, 0x00}, {0xd6, 0x00}, {0xfb, 0x00},
		{0xfc, 0x12}, {0xfc, 0x80, 0x01}, {0xfd, 0x9a, 0x01}, {0xfd, 0x80, 0x02}, {0xfe, 0x04}, {0xfe, 0x0f}, {0xfe, 0x4f}, {0xff},
	} {
		m := wb.New()
		m.ImportFunc("env", "f", wb.FuncType{})
		m.Func(wb.FuncType{}, nil, wb.Loop(wb.BlockEmpty))
		m.Func(wb.FuncType{}, nil, marker, wb.Drop(), op)
		wasm := m.Bytes()
		at := bytes.Index(wasm, marker) + len(marker) + 1
		_, err := Instrument(wasm, Limits{})
		if err == nil || !strings.Contains(err.Error(), "unknown opcode") || !strings.Contains(err.Error(), "function 2") ||
			!strings.Contains(err.Error(), fmt.Sprintf("byte offset %d", at)) {
			t.Errorf("% x: err = %v; want unknown opcode in function 2 at byte offset %d", op, err, at)
		}
	}
}

func TestMalformed(t *testing.T) {
	header := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	body := func(b ...byte) []byte {
		return slices.Concat(header,
			appendSec(nil, wasmbin.SecType, 1, 0x60, 0, 0),
			appendSec(nil, wasmbin.SecFunction, 1, 0),
			appendSec(nil, wasmbin.SecCode, slices.Concat([]byte{1}, wb.ULEB128(uint64(len(b))), b)...))
	}
	for name, tt := range map[string]struct {
		wasm []byte
		msg  string
	}{
		"short":            {[]byte{0x00, 'a', 's'}, "not a WebAssembly"},
		"magic":            {[]byte("\x00wasm\x01\x00\x00\x00"), "not a WebAssembly"},
		"version":          {[]byte("\x00asm\x02\x00\x00\x00"), "version"},
		"sectionSize":      {slices.Concat(header, []byte{wasmbin.SecType, 0x05, 0x00}), "runs past the end"},
		"sectionSizeLEB":   {slices.Concat(header, []byte{wasmbin.SecType, 0x80, 0x80}), "malformed size"},
		"unknownSection":   {slices.Concat(header, []byte{14, 0x00}), "unknown section id 14"},
		"tagSection":       {slices.Concat(header, []byte{wasmbin.SecTag, 0x00}), "not supported"},
		"order":            {slices.Concat(header, appendSec(nil, wasmbin.SecFunction, 0), appendSec(nil, wasmbin.SecType, 0)), "out of order"},
		"duplicate":        {slices.Concat(header, appendSec(nil, wasmbin.SecType, 0), appendSec(nil, wasmbin.SecType, 0)), "duplicated"},
		"noCode":           {slices.Concat(header, appendSec(nil, wasmbin.SecType, 1, 0x60, 0, 0), appendSec(nil, wasmbin.SecFunction, 1, 0)), "no code section"},
		"countMismatch":    {slices.Concat(header, appendSec(nil, wasmbin.SecCode, 1, 2, 0, 0x0b)), "function section declares 0"},
		"noEnd":            {body(0x00, 0x01), "does not end with `end`"},
		"emptyBody":        {body(), "locals"},
		"badLocals":        {body(0x01, 0x01, 0x55, 0x0b), "locals"},
		"truncatedImm":     {body(0x00, 0x41, 0x80), "truncated or malformed immediate of opcode 0x41"},
		"longLEB":          {body(0x00, 0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b), "opcode 0x20"},
		"badBlockType":     {body(0x00, 0x03, 0x50, 0x0b, 0x0b), "opcode 0x03"},
		"brTable":          {body(0x00, 0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x0b), "opcode 0x0e"},
		"bodySize":         {slices.Concat(header, appendSec(nil, wasmbin.SecType, 1, 0x60, 0, 0), appendSec(nil, wasmbin.SecFunction, 1, 0), appendSec(nil, wasmbin.SecCode, 1, 9, 0, 0x0b)), "body size"},
		"leftOver":         {slices.Concat(header, appendSec(nil, wasmbin.SecType, 1, 0x60, 0, 0), appendSec(nil, wasmbin.SecFunction, 1, 0), appendSec(nil, wasmbin.SecCode, 1, 2, 0, 0x0b, 0x00)), "left over"},
		"importKind":       {slices.Concat(header, appendSec(nil, wasmbin.SecImport, 1, 1, 'a', 1, 'b', 0x05, 0x00)), "import kind"},
		"importTruncated":  {slices.Concat(header, appendSec(nil, wasmbin.SecImport, 1, 1, 'a', 1, 'b', wasmbin.KindMemory, 0x01, 0x00)), "import 0"},
		"exportTruncated":  {slices.Concat(header, appendSec(nil, wasmbin.SecExport, 1, 9, 'a')), "export 0"},
		"customName":       {slices.Concat(header, appendSec(nil, wasmbin.SecCustom, 5, 'a')), "custom section"},
		"functionSection":  {slices.Concat(header, appendSec(nil, wasmbin.SecFunction, 2, 0x80, 0x80)), "function section"},
		"hugeCount":        {slices.Concat(header, appendSec(nil, wasmbin.SecData, 0x81, 0x81, 0x81, 0x30, 0)), "100679809 entries cannot fit in its 1 bytes"},
		"globalCount":      {slices.Concat(header, appendSec(nil, wasmbin.SecGlobal, 0x80)), "global section"},
		"unknownImmediate": {body(0x00, 0xfd, 0xe2, 0x01, 0x0b), "unknown opcode 0xfd 226"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Instrument(tt.wasm, Limits{})
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v; want one mentioning %q", err, tt.msg)
			}
		})
	}
}

// smallModules are modules for the truncation and corruption tests and the fuzz seeds.
func smallModules() [][]byte {
	ws := [][]byte{wb.NoopProgram(), wb.MemoryBombProgram(), wb.ForbiddenImport("env", "x"), multiValueModule()}
	m := wb.New()
	m.Func(wb.FuncType{}, nil, allImmediates()...)
	m.Custom(".debug_info", []byte{1})
	m.Custom("name", nil)
	return append(ws, m.Bytes())
}

// sectionEnds returns the offsets at which the sections of a well-formed module end
// (including 8, the end of the header).
func sectionEnds(t *testing.T, wasm []byte) map[int]bool {
	ends := map[int]bool{8: true}
	for _, s := range sectionsOf(t, wasm) {
		ends[s.end] = true
	}
	return ends
}

func TestTruncatedAndCorrupted(t *testing.T) {
	r := newRuntime(t)
	ctx := context.Background()
	for i, wasm := range smallModules() {
		ends := sectionEnds(t, wasm)
		for n := range len(wasm) {
			res, err := Instrument(wasm[:n], Limits{})
			switch {
			case err == nil && !ends[n]:
				t.Errorf("module %d truncated to %d bytes: no error", i, n)
			case err == nil:
				// A module cut at a section boundary may be well-formed.
				if c, err := r.CompileModule(ctx, wasm[:n]); err == nil {
					c.Close(ctx)
					if _, err := r.CompileModule(ctx, res.Wasm); err != nil {
						t.Errorf("module %d truncated to %d bytes: input compiles, output does not: %v", i, n, err)
					}
				}
			}
		}
		for n := range wasm {
			for _, v := range []byte{0x00, 0x03, 0x0b, 0x40, 0x7f, 0x80, 0xff} {
				c := slices.Clone(wasm)
				c[n] = v
				_, _ = Instrument(c, Limits{}) // must not panic
			}
		}
	}
}

func FuzzInstrument(f *testing.F) {
	for _, fx := range fixtures() {
		f.Add(fx.wasm)
	}
	for _, w := range smallModules() {
		f.Add(w)
	}
	f.Add(wb.InfiniteLoopStart())
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	f.Cleanup(func() { r.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		res, err := Instrument(wasm, Limits{})
		if err != nil {
			return
		}
		if _, err := Instrument(res.Wasm, Limits{}); err == nil || !strings.Contains(err.Error(), "already exports") {
			t.Fatalf("instrumenting the output: err = %v; want already exports", err)
		}
		if !affordable(wasm) {
			return
		}
		in, err := r.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		in.Close(ctx)
		out, err := r.CompileModule(ctx, res.Wasm)
		if err != nil {
			t.Fatalf("the input compiles but the output does not: %v", err)
		}
		if _, ok := out.ExportedMemories()[StopExport]; ok {
			t.Fatal("stop export is a memory")
		}
		out.Close(ctx)
	})
}

// affordable reports whether wazero can compile wasm, a module Instrument accepted, without
// allocating by a large declared size that Instrument does not check. wazero allocates
// function types' parameters and results, element segments' entries, data segments' bytes,
// functions' locals and the "name" section's names by their declared counts before it reads
// them (gigabytes for a 20-byte module), which would stall the fuzzer. The test is
// conservative: no "name" section, no number of 2^14 or more in the type, element and data
// sections, and at most 2^16 locals a function.
func affordable(wasm []byte) bool {
	pos := 8
	for pos < len(wasm) {
		id := wasm[pos]
		size, p := readU32(wasm, pos+1, len(wasm))
		if p < 0 || int64(size) > int64(len(wasm)-p) {
			return false
		}
		end := p + int(size)
		switch id {
		case wasmbin.SecCustom:
			if n, q := readU32(wasm, p, end); q < 0 || int64(n) > int64(end-q) || string(wasm[q:q+int(n)]) == "name" {
				return false
			}
		case wasmbin.SecType, wasmbin.SecElement, wasmbin.SecData:
			for i := p; i+1 < end; i++ {
				if wasm[i] >= 0x80 && wasm[i+1] >= 0x80 { // a LEB128 number of 2^14 or more
					return false
				}
			}
		case wasmbin.SecCode:
			count, q := readU32(wasm, p, end)
			for range count {
				var bodySize uint32
				bodySize, q = readU32(wasm, q, end)
				if q < 0 || int64(bodySize) > int64(end-q) {
					return false
				}
				next := q + int(bodySize)
				groups, r := readU32(wasm, q, next)
				var sum uint64
				for range groups {
					var n uint32
					n, r = readU32(wasm, r, next)
					r = skipValType(wasm, r, next)
					sum += uint64(n)
				}
				if r < 0 || sum > 1<<16 {
					return false
				}
				q = next
			}
		}
		pos = end
	}
	return true
}

// Go guests.

var (
	guestMu    sync.Mutex
	guestBuilt = map[string][]byte{}
)

// goGuest builds the Go guest package pkg (relative to the repository root) with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, once per test binary.
func goGuest(tb testing.TB, pkg string) []byte {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds a Go guest; skipped with -short")
	}
	guestMu.Lock()
	defer guestMu.Unlock()
	if b, ok := guestBuilt[pkg]; ok {
		return b
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+pkg)
	cmd.Dir = filepath.Join("..", "..", "..")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build guest %s: %v\n%s", pkg, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	guestBuilt[pkg] = b
	return b
}

// instantiateGoGuest instantiates a Go guest with WASI and a stub "osprey" host module, and
// runs its _initialize.
func instantiateGoGuest(t *testing.T, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	b := r.NewHostModuleBuilder("osprey")
	for name, sig := range map[string][2][]api.ValueType{
		"get_feature": {{i32, i32, i32, i32, i32, i32}, {i32}},
		"result":      {{i32, i32}, {i32}},
		"log":         {{i32, i32, i32, i32, i32}, nil},
		"now":         {nil, {i64}},
	} {
		b.NewFunctionBuilder().WithGoModuleFunction(zeroStub, sig[0], sig[1]).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("guest").WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
		t.Fatalf("_initialize: %v", err)
	}
	v, err := mod.ExportedFunction("osprey_abi_version").Call(ctx)
	if err != nil || v[0] != abi.Version {
		t.Fatalf("osprey_abi_version = %#x, %v; want %#x", v, err, abi.Version)
	}
	return mod
}

// programCall writes a program call with the given mode into the guest's memory and returns
// its location.
func programCall(t *testing.T, mod api.Module, mode string) (ptr, n uint64) {
	t.Helper()
	call := abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "t.x", Row: []abi.Field{{Name: "mode", Value: abi.String(mode)}}})
	p, err := mod.ExportedFunction("osprey_alloc").Call(context.Background(), uint64(len(call)))
	if err != nil || p[0] == 0 {
		t.Fatalf("osprey_alloc(%d) = %v, %v", len(call), p, err)
	}
	if !mod.Memory().Write(uint32(p[0]), call) {
		t.Fatal("the call does not fit in the guest's memory")
	}
	return p[0], uint64(len(call))
}

// runProgram calls osprey_program with mode and returns the result's int value.
func runProgram(t *testing.T, mod api.Module, mode string) int64 {
	t.Helper()
	ptr, n := programCall(t, mod, mode)
	res, err := mod.ExportedFunction("osprey_program").Call(context.Background(), ptr, n)
	if err != nil {
		t.Fatalf("osprey_program(%s): %v", mode, err)
	}
	b, ok := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok {
		t.Fatalf("response at %#x is outside memory", res[0])
	}
	resp, d := abi.DecodeResponse(b)
	if resp.Status != abi.StatusOK {
		t.Fatalf("osprey_program(%s): status %d: %s", mode, resp.Status, resp.Message)
	}
	pr := d.ProgramResult()
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	return pr.Value.I
}

func TestGoGuests(t *testing.T) {
	for _, pkg := range []string{"host/testdata/guests/noop", "host/testdata/guests/hostile"} {
		t.Run(filepath.Base(pkg), func(t *testing.T) {
			wasm := goGuest(t, pkg)
			start := time.Now()
			res, err := Instrument(wasm, Limits{})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if res.Loops == 0 {
				t.Fatal("no loops found")
			}
			checkCopied(t, wasm, res)
			t.Logf("%s: %d bytes -> %d bytes in %v: %d loops in %d functions, stop global %d, stripped %q",
				pkg, len(wasm), len(res.Wasm), took, res.Loops, len(codeBodies(t, wasm)), res.StopGlobal, res.StrippedSections)

			mod := instantiateGoGuest(t, res.Wasm)
			if pkg == "host/testdata/guests/noop" {
				if got := runProgram(t, mod, "ok"); got != 1 {
					t.Fatalf("noop returned %d; want 1", got)
				}
				return
			}
			if got := runProgram(t, mod, "ok"); got != 7 {
				t.Fatalf("hostile ok returned %d; want 7", got)
			}
			ptr, n := programCall(t, mod, "loop")
			const delay = 100 * time.Millisecond
			took, err = callWithStop(t, mod, delay, 5*time.Second, "osprey_program", ptr, n)
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("loop: err = %v; want a trap with \"unreachable\"", err)
			}
			if took > delay+time.Second {
				t.Fatalf("loop: stopped after %v", took)
			}
			t.Logf("loop stopped after %v: %s", took, firstLine(err))
		})
	}
}

func BenchmarkInstrumentGoGuest(b *testing.B) {
	wasm := goGuest(b, "host/testdata/guests/noop")
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	var loops int
	for b.Loop() {
		res, err := Instrument(wasm, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		loops = res.Loops
	}
	b.ReportMetric(float64(loops), "loops")
}

// A minimal section reader for the tests, independent of the code under test.

type section struct {
	id      byte
	name    string // of a custom section
	payload []byte // the contents (for a custom section, after the name)
	end     int    // offset just past the section
}

func readTestULEB(t testing.TB, b []byte, pos *int) uint64 {
	t.Helper()
	v, n := binary.Uvarint(b[*pos:])
	if n <= 0 {
		t.Fatalf("bad LEB128 at %d", *pos)
	}
	*pos += n
	return v
}

func sectionsOf(t testing.TB, wasm []byte) []section {
	t.Helper()
	var ss []section
	pos := 8
	for pos < len(wasm) {
		id := wasm[pos]
		pos++
		size := int(readTestULEB(t, wasm, &pos))
		s := section{id: id, payload: wasm[pos : pos+size], end: pos + size}
		if id == wasmbin.SecCustom {
			p := 0
			n := int(readTestULEB(t, s.payload, &p))
			s.name = string(s.payload[p : p+n])
			s.payload = s.payload[p+n:]
		}
		ss = append(ss, s)
		pos += size
	}
	return ss
}

// codeBodies returns the function bodies (locals and code) of a module.
func codeBodies(t testing.TB, wasm []byte) [][]byte {
	t.Helper()
	for _, s := range sectionsOf(t, wasm) {
		if s.id != wasmbin.SecCode {
			continue
		}
		p := 0
		n := readTestULEB(t, s.payload, &p)
		bodies := make([][]byte, n)
		for i := range bodies {
			size := int(readTestULEB(t, s.payload, &p))
			bodies[i] = s.payload[p : p+size]
			p += size
		}
		return bodies
	}
	return nil
}

// bodyRange returns the output offsets of function body i of a module (its locals and
// code, without the size).
func bodyRange(t testing.TB, wasm []byte, i int) (int, int) {
	t.Helper()
	p := 8
	for p < len(wasm) {
		id := wasm[p]
		p++
		size := int(readTestULEB(t, wasm, &p))
		if id != wasmbin.SecCode {
			p += size
			continue
		}
		n := int(readTestULEB(t, wasm, &p))
		for k := 0; k < n; k++ {
			sz := int(readTestULEB(t, wasm, &p))
			if k == i {
				return p, p + sz
			}
			p += sz
		}
	}
	t.Fatalf("no function body %d", i)
	return 0, 0
}

// checkCopied checks that the output has the input's sections, in order and byte for byte,
// but for the debug sections (gone), the global and export sections (the stop global
// appended, or a new section with it alone) and the code (the checks inserted, res.Loops of
// them).
func checkCopied(t testing.TB, in []byte, res Result) {
	t.Helper()
	is, outs := sectionsOf(t, in), sectionsOf(t, res.Wasm)
	hasMemory := false
	for _, s := range is {
		hasMemory = hasMemory || (s.id == wasmbin.SecMemory && len(s.payload) > 0 && s.payload[0] != 0)
	}
	_ = hasMemory
	stopGlobal := appendStopGlobal(nil) // stop, countdown, scratch
	stopExport := slices.Concat(wb.ULEB128(uint64(len(StopExport))), []byte(StopExport), []byte{wasmbin.KindGlobal}, wb.ULEB128(uint64(res.StopGlobal)))
	// appended checks that out is in's vector with k more elements, e.
	appended := func(what string, in, out, e []byte) {
		k := uint64(1)
		if bytes.Equal(e, stopGlobal) {
			k = instrumentGlobals
		}
		p, q := 0, 0
		var n uint64
		if in != nil {
			n = readTestULEB(t, in, &p)
		}
		if m := readTestULEB(t, out, &q); m != n+k || !bytes.Equal(out[q:], slices.Concat(in[p:], e)) {
			t.Fatalf("%s section: % x; want % x with % x appended", what, out, in, e)
		}
	}
	haveGlobal, haveExport := false, false
	for _, s := range is {
		haveGlobal = haveGlobal || s.id == wasmbin.SecGlobal
		haveExport = haveExport || s.id == wasmbin.SecExport
	}
	j := 0
	for _, s := range is {
		if s.id == wasmbin.SecCustom && strings.HasPrefix(s.name, ".debug") {
			continue
		}
		if s.id != wasmbin.SecCustom {
			for _, add := range []struct {
				id   byte
				have bool
				e    []byte
			}{{wasmbin.SecGlobal, haveGlobal, stopGlobal}, {wasmbin.SecExport, haveExport, stopExport}} {
				if !add.have && sectionRank(s.id) > sectionRank(add.id) && j < len(outs) && outs[j].id == add.id {
					appended(fmt.Sprint("new ", add.id), nil, outs[j].payload, add.e)
					j++
				}
			}
		}
		if j >= len(outs) || outs[j].id != s.id || outs[j].name != s.name {
			t.Fatalf("output section %d is not input section %d (%q)", j, s.id, s.name)
		}
		o := outs[j]
		j++
		switch s.id {
		case wasmbin.SecGlobal:
			appended("global", s.payload, o.payload, stopGlobal)
		case wasmbin.SecExport:
			appended("export", s.payload, o.payload, stopExport)
		case wasmbin.SecCode:
			ib := codeBodies(t, in)
			if len(res.inserted) != len(ib) {
				t.Fatalf("%d bodies instrumented; %d in the input", len(res.inserted), len(ib))
			}
			checks := 0
			for i := range ib {
				var stripped []byte
				bodyStart, bodyEnd := bodyRange(t, res.Wasm, i)
				last := bodyStart
				for _, r := range res.inserted[i] {
					if r[0] < last || r[1] > bodyEnd {
						t.Fatalf("function body %d: inserted range %v outside [%d, %d)", i, r, last, bodyEnd)
					}
					stripped = append(stripped, res.Wasm[last:r[0]]...)
					last = r[1]
					checks++
				}
				stripped = append(stripped, res.Wasm[last:bodyEnd]...)
				if !bytes.Equal(stripped, ib[i]) {
					t.Fatalf("function body %d: the output without the checks differs from the input", i)
				}
			}
			if checks != res.Stats.Checks || checks < res.Loops {
				t.Fatalf("%d checks in the code; Result: %d checks, %d loops", checks, res.Stats.Checks, res.Loops)
			}
		default:
			if !bytes.Equal(o.payload, s.payload) {
				t.Fatalf("section %d (%q) differs", s.id, s.name)
			}
		}
	}
	for _, add := range []struct {
		id   byte
		have bool
		e    []byte
	}{{wasmbin.SecGlobal, haveGlobal, stopGlobal}, {wasmbin.SecExport, haveExport, stopExport}} {
		if !add.have && j < len(outs) && outs[j].id == add.id {
			appended(fmt.Sprint("new ", add.id), nil, outs[j].payload, add.e)
			j++
		}
	}
	if j != len(outs) {
		t.Fatalf("output has %d sections; %d expected", len(outs), j)
	}
	if !haveGlobal && !slices.ContainsFunc(outs, func(s section) bool { return s.id == wasmbin.SecGlobal }) ||
		!haveExport && !slices.ContainsFunc(outs, func(s section) bool { return s.id == wasmbin.SecExport }) {
		t.Fatal("global or export section not created")
	}
}
