package wasmbuild

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

func TestLEB128(t *testing.T) {
	unsigned := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{63, []byte{0x3f}},
		{64, []byte{0x40}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{624485, []byte{0xe5, 0x8e, 0x26}},
		{math.MaxInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x07}},
		{math.MaxUint32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, c := range unsigned {
		if got := ULEB128(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("ULEB128(%d) = % x, want % x", c.v, got, c.want)
		}
	}
	signed := []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{-1, []byte{0x7f}},
		{63, []byte{0x3f}},
		{64, []byte{0xc0, 0x00}},
		{-64, []byte{0x40}},
		{-65, []byte{0xbf, 0x7f}},
		{127, []byte{0xff, 0x00}},
		{128, []byte{0x80, 0x01}},
		{-123456, []byte{0xc0, 0xbb, 0x78}},
		{math.MaxInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x07}},
		{math.MinInt32, []byte{0x80, 0x80, 0x80, 0x80, 0x78}},
		{math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}},
		{math.MinInt64, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}},
	}
	for _, c := range signed {
		if got := SLEB128(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("SLEB128(%d) = % x, want % x", c.v, got, c.want)
		}
	}

	// Random values: unsigned LEB128 is encoding/binary's uvarint; signed round-trips through
	// a reference decoder.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		u := rng.Uint64() >> rng.IntN(64)
		if got, want := ULEB128(u), binary.AppendUvarint(nil, u); !bytes.Equal(got, want) {
			t.Fatalf("ULEB128(%d) = % x, want % x", u, got, want)
		}
		s := int64(rng.Uint64()) >> rng.IntN(64)
		enc := SLEB128(s)
		if got, n := decodeSLEB128(enc); got != s || n != len(enc) {
			t.Fatalf("SLEB128(%d) = % x decodes to %d (%d bytes)", s, enc, got, n)
		}
	}
}

func decodeSLEB128(b []byte) (int64, int) {
	var v int64
	var shift uint
	for i, c := range b {
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, i + 1
		}
	}
	return 0, -1
}

func TestImportAfterFuncPanics(t *testing.T) {
	m := New()
	m.Func(FuncType{}, nil)
	defer func() {
		if recover() == nil {
			t.Fatal("ImportFunc after Func did not panic")
		}
	}()
	m.ImportFunc("env", "f", FuncType{})
}

func TestEmptyModule(t *testing.T) {
	want := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	if got := New().Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("empty module = % x, want % x", got, want)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.Instantiate(ctx, want); err != nil {
		t.Fatal(err)
	}
}

// TestBuilder runs a module that uses most of the builder and the instruction helpers.
func TestBuilder(t *testing.T) {
	m := New()
	host := m.ImportFunc("env", "add", FuncType{Params: []ValType{I32, I32}, Results: []ValType{I32}})
	maxPages := uint32(3)
	m.Memory(1, &maxPages)
	counter := m.Global(I32, true, I32Const(0))
	seven := m.Global(I64, false, I64Const(7))
	m.Data(100, []byte("hello"))
	m.Custom("padding", make([]byte, 1000))

	// sum(n) = 1 + 2 + ... + n, with a loop in a block, and counting calls in a global.
	i32 := []ValType{I32}
	sum := m.Func(FuncType{Params: i32, Results: i32}, []ValType{I32, I32, I64},
		GlobalGet(counter), I32Const(1), I32Add(), GlobalSet(counter),
		Block(BlockEmpty,
			LocalGet(0), I32Eqz(), BrIf(0),
			Loop(BlockEmpty,
				LocalGet(1), LocalGet(0), I32Add(), LocalSet(1),
				LocalGet(0), I32Const(1), I32Sub(), LocalTee(0),
				BrIf(0),
			),
		),
		LocalGet(1),
	)
	// abs(x) with if/else; sign(x) with if and return.
	abs := m.Func(FuncType{Params: i32, Results: i32}, nil,
		LocalGet(0), I32Const(0), I32LtS(),
		IfElse(BlockI32, Seq(I32Const(0), LocalGet(0), I32Sub()), LocalGet(0)))
	sign := m.Func(FuncType{Params: i32, Results: i32}, nil,
		LocalGet(0), I32Eqz(), If(BlockEmpty, I32Const(0), Return()),
		I32Const(1), I32Const(-1), LocalGet(0), I32Const(0), I32GtS(), Select())
	// pack(p, l) = p<<32 | l, plus the immutable global's value times zero.
	pack := m.Func(FuncType{Params: []ValType{I32, I32}, Results: []ValType{I64}}, nil,
		PackPtrLen(LocalGet(0), LocalGet(1)))
	// mem(): stores and loads through memory, then grows it; returns load(100) as u8 plus
	// the old size plus the new size.
	mem := m.Func(FuncType{Results: []ValType{I64}}, nil,
		I32Const(200), I64Const(math.MinInt64), I64Store(3, 0),
		I32Const(208), I32Const(-2), I32Store(2, 0),
		I32Const(212), I32Const(0x1ff), I32Store8(0, 0),
		I32Const(96), I32Load8U(0, 4), // 'h'
		I32Const(1), MemoryGrow(), I32Add(),
		MemorySize(), I32Add(),
		I64ExtendI32U(), GlobalGet(seven), I64Add())
	callHost := m.Func(FuncType{Params: i32, Results: i32}, nil, LocalGet(0), I32Const(1000), Call(host))
	m.ExportFunc("sum", sum)
	m.ExportFunc("abs", abs)
	m.ExportFunc("sign", sign)
	m.ExportFunc("pack", pack)
	m.ExportFunc("mem", mem)
	m.ExportFunc("call_host", callHost)
	m.ExportMemory("memory")
	m.ExportGlobal("counter", counter)

	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(a, b int32) int32 { return a + b }).Export("add").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := r.Instantiate(ctx, m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	call := func(name string, args ...uint64) uint64 {
		t.Helper()
		res, err := mod.ExportedFunction(name).Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s%v: %v", name, args, err)
		}
		return res[0]
	}
	neg := func(v int32) uint64 { return api.EncodeI32(v) }

	for n, want := range map[uint64]uint64{0: 0, 1: 1, 10: 55, 1000: 500500} {
		if got := call("sum", n); got != want {
			t.Errorf("sum(%d) = %d, want %d", n, got, want)
		}
	}
	if got := mod.ExportedGlobal("counter").Get(); got != 4 {
		t.Errorf("counter = %d, want 4", got)
	}
	if got := int32(call("abs", neg(-5))); got != 5 {
		t.Errorf("abs(-5) = %d", got)
	}
	if got := int32(call("abs", 6)); got != 6 {
		t.Errorf("abs(6) = %d", got)
	}
	for x, want := range map[int32]int32{-9: -1, 0: 0, 9: 1} {
		if got := int32(call("sign", neg(x))); got != want {
			t.Errorf("sign(%d) = %d, want %d", x, got, want)
		}
	}
	if got := call("pack", neg(-1), 7); got != 0xffffffff_00000007 {
		t.Errorf("pack(-1, 7) = %#x", got)
	}
	if got := call("mem"); got != 'h'+1+2+7 {
		t.Errorf("mem() = %d, want %d", got, 'h'+1+2+7)
	}
	memory := mod.ExportedMemory("memory")
	if v, _ := memory.ReadUint64Le(200); v != 1<<63 {
		t.Errorf("i64.store wrote %#x", v)
	}
	if v, _ := memory.ReadUint32Le(208); v != 0xfffffffe {
		t.Errorf("i32.store wrote %#x", v)
	}
	if v, _ := memory.ReadByte(212); v != 0xff {
		t.Errorf("i32.store8 wrote %#x", v)
	}
	if got := call("call_host", 234); got != 1234 {
		t.Errorf("call_host(234) = %d", got)
	}
	if def := mod.ExportedMemoryDefinitions()["memory"]; def.Min() != 1 {
		t.Errorf("memory min = %d", def.Min())
	} else if mx, ok := def.Max(); !ok || mx != 3 {
		t.Errorf("memory max = %d, %v", mx, ok)
	}
}

// instantiate compiles and instantiates bin in r, first defining host functions for its
// imports (which do nothing and return zeros).
func instantiate(t *testing.T, ctx context.Context, r wazero.Runtime, bin []byte) api.Module {
	t.Helper()
	compiled, err := r.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	byModule := map[string]wazero.HostModuleBuilder{}
	for _, def := range compiled.ImportedFunctions() {
		modName, name, _ := def.Import()
		b, ok := byModule[modName]
		if !ok {
			b = r.NewHostModuleBuilder(modName)
			byModule[modName] = b
		}
		nResults := len(def.ResultTypes())
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:nResults])
		}), def.ParamTypes(), def.ResultTypes()).Export(name)
	}
	for modName, b := range byModule {
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatalf("host module %s: %v", modName, err)
		}
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig())
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	return mod
}

// checkGuest checks the behaviour shared by all NoopProgram variants: the ABI exports, alloc,
// and (when ok) that osprey_program returns NoopResponse.
func checkGuest(t *testing.T, ctx context.Context, mod api.Module, wantVersion uint32) {
	t.Helper()
	if mod.ExportedMemory("memory") == nil {
		t.Fatal("no memory export")
	}
	res, err := mod.ExportedFunction("osprey_abi_version").Call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if uint32(res[0]) != wantVersion {
		t.Errorf("osprey_abi_version() = %#x, want %#x", res[0], wantVersion)
	}
	alloc := mod.ExportedFunction("osprey_alloc")
	for size, want := range map[uint64]uint64{0: AllocPtr, 100: AllocPtr, AllocMaxSize: AllocPtr, AllocMaxSize + 1: 0, math.MaxUint32: 0} {
		res, err := alloc.Call(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if res[0] != want {
			t.Errorf("osprey_alloc(%d) = %d, want %d", size, res[0], want)
		}
	}
}

func callProgram(ctx context.Context, mod api.Module) (uint64, error) {
	res, err := mod.ExportedFunction("osprey_program").Call(ctx, AllocPtr, 0)
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

func checkNoopResponse(t *testing.T, ctx context.Context, mod api.Module) {
	t.Helper()
	// Write an input that fills the alloc region: it must not clobber the response.
	if !mod.ExportedMemory("memory").Write(AllocPtr, bytes.Repeat([]byte{0xee}, AllocMaxSize)) {
		t.Fatal("writing the input failed")
	}
	packed, err := mod.ExportedFunction("osprey_program").Call(ctx, AllocPtr, AllocMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	ptr, n := uint32(packed[0]>>32), uint32(packed[0])
	if ptr != ResponseOffset || n != 11 {
		t.Errorf("osprey_program = (%d, %d), want (%d, 11)", ptr, n, ResponseOffset)
	}
	got, ok := mod.ExportedMemory("memory").Read(ptr, n)
	want := []byte{0x00, 0x01, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
	if !ok || !bytes.Equal(got, want) || !bytes.Equal(NoopResponse(), want) {
		t.Errorf("response = % x (%v), want % x", got, ok, want)
	}
}

func newRuntime(t *testing.T, ctx context.Context, cfg wazero.RuntimeConfig) wazero.Runtime {
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { r.Close(ctx) })
	return r
}

func TestNoopProgram(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
	mod := instantiate(t, ctx, r, NoopProgram())
	checkGuest(t, ctx, mod, 0x00010000)
	checkNoopResponse(t, ctx, mod)
	if got := mod.ExportedMemory("memory").Size(); got != 65536 {
		t.Errorf("memory size = %d", got)
	}
}

func TestNoopFunc(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
	mod := instantiate(t, ctx, r, NoopFunc())
	if _, err := mod.ExportedFunction("noop").Call(ctx); err != nil {
		t.Fatal(err)
	}
	// mod.Memory() is a non-nil api.Memory holding a nil pointer here: check the definitions.
	if len(mod.ExportedFunctionDefinitions()) != 1 || len(mod.ExportedMemoryDefinitions()) != 0 {
		t.Errorf("exports = %v, memories %v", mod.ExportedFunctionDefinitions(), mod.ExportedMemoryDefinitions())
	}
}

func TestABIVersion(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint32{0, 0x00010001, 0x00020000, 0xffffffff} {
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
		mod := instantiate(t, ctx, r, ABIVersion(v))
		checkGuest(t, ctx, mod, v)
		checkNoopResponse(t, ctx, mod)
	}
}

// engines are the runtime configurations trap messages are checked under.
var engines = map[string]func() wazero.RuntimeConfig{
	"default":     wazero.NewRuntimeConfig,
	"interpreter": wazero.NewRuntimeConfigInterpreter,
}

func TestTrapProgram(t *testing.T) {
	cases := []struct {
		kind TrapKind
		msg  string
	}{
		{TrapUnreachable, "unreachable"},
		{TrapOutOfBounds, "out of bounds memory access"},
		{TrapDivideByZero, "integer divide by zero"},
		{TrapIntegerOverflow, "integer overflow"},
		{TrapStackOverflow, "stack overflow"},
	}
	for engine, cfg := range engines {
		for _, c := range cases {
			t.Run(engine+"/"+c.kind.String(), func(t *testing.T) {
				ctx := context.Background()
				r := newRuntime(t, ctx, cfg())
				mod := instantiate(t, ctx, r, TrapProgram(c.kind))
				checkGuest(t, ctx, mod, DefaultABIVersion)
				start := time.Now()
				_, err := callProgram(ctx, mod)
				if err == nil {
					t.Fatal("no trap")
				}
				t.Logf("%v: %T %q", time.Since(start), err, err)
				if got := trapMessage(err); got != c.msg {
					t.Errorf("trap message of %q = %q, want %q", err, got, c.msg)
				}
			})
		}
	}
}

// trapMessage returns the trap message in a wazero error: its first line without the
// "wasm error: " prefix. (The compiler engine reports a stack overflow as a bare
// "stack overflow", with neither the prefix nor a stack trace.)
func trapMessage(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return strings.TrimPrefix(msg, "wasm error: ")
}

func TestInfiniteLoopProgram(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	mod := instantiate(t, ctx, r, InfiniteLoopProgram())
	checkGuest(t, ctx, mod, DefaultABIVersion)
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := callProgram(tctx, mod)
	elapsed := time.Since(start)
	t.Logf("%v: %q", elapsed, err)
	var exit *sys.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
		t.Fatalf("err = %v, want an ExitError with ExitCodeDeadlineExceeded", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("took %v to stop", elapsed)
	}
	// The module is closed: further calls fail.
	if _, err := mod.ExportedFunction("osprey_abi_version").Call(ctx); err == nil {
		t.Error("call after the deadline succeeded")
	} else {
		t.Logf("next call: %q", err)
	}
}

func TestInfiniteLoopStart(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Instantiate(tctx, InfiniteLoopStart())
	t.Logf("%v: %q", time.Since(start), err)
	var exit *sys.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
		t.Fatalf("err = %v, want an ExitError with ExitCodeDeadlineExceeded", err)
	}
}

func TestMemoryBomb(t *testing.T) {
	const limit = 64
	ctx := context.Background()
	for _, trap := range []bool{true, false} {
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(limit))
		bin := MemoryBombProgram()
		if !trap {
			bin = MemoryBombProgramNoTrap()
		}
		mod := instantiate(t, ctx, r, bin)
		checkGuest(t, ctx, mod, DefaultABIVersion)
		_, err := callProgram(ctx, mod)
		t.Logf("trap=%v: %q", trap, err)
		if trap {
			if err == nil || trapMessage(err) != "unreachable" {
				t.Errorf("err = %v, want unreachable", err)
			}
		} else {
			if err != nil {
				t.Fatal(err)
			}
			checkNoopResponse(t, ctx, mod)
		}
		if got := mod.ExportedMemory("memory").Size(); got != limit*65536 {
			t.Errorf("memory size after the bomb = %d pages, want %d", got/65536, limit)
		}
	}
}

func TestMissingExport(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"memory", "osprey_abi_version", "osprey_alloc", "osprey_program"} {
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
		mod := instantiate(t, ctx, r, MissingExport(name))
		for _, other := range []string{"osprey_abi_version", "osprey_alloc", "osprey_program"} {
			if got := mod.ExportedFunction(other) != nil; got != (other != name) {
				t.Errorf("MissingExport(%q): export %s present = %v", name, other, got)
			}
		}
		if got := mod.ExportedMemory("memory") != nil; got != (name != "memory") {
			t.Errorf("MissingExport(%q): memory exported = %v", name, got)
		}
		if got := mod.Memory().Size(); got != 65536 {
			t.Errorf("MissingExport(%q): memory 0 has %d bytes", name, got)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("MissingExport(\"bogus\") did not panic")
		}
	}()
	MissingExport("bogus")
}

func TestImports(t *testing.T) {
	ctx := context.Background()
	check := func(bin []byte, module, name string, ft FuncType) {
		t.Helper()
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
		compiled, err := r.CompileModule(ctx, bin)
		if err != nil {
			t.Fatal(err)
		}
		imports := compiled.ImportedFunctions()
		if len(imports) != 1 {
			t.Fatalf("%d imports", len(imports))
		}
		m, n, _ := imports[0].Import()
		if m != module || n != name || !sameTypes(imports[0].ParamTypes(), ft.Params) || !sameTypes(imports[0].ResultTypes(), ft.Results) {
			t.Errorf("import = %s.%s %v -> %v", m, n, imports[0].ParamTypes(), imports[0].ResultTypes())
		}
		// Without the host module it does not instantiate.
		if _, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig()); err == nil {
			t.Error("instantiated without its import")
		} else {
			t.Logf("without the import: %q", err)
		}
		r = newRuntime(t, ctx, wazero.NewRuntimeConfig())
		mod := instantiate(t, ctx, r, bin)
		checkGuest(t, ctx, mod, DefaultABIVersion)
		checkNoopResponse(t, ctx, mod)
	}
	check(ForbiddenImport("env", "system"), "env", "system", FuncType{})
	now := FuncType{Results: []ValType{I64}}
	check(ImportsHost("now", now), "osprey", "now", now)
	getFeature := FuncType{Params: []ValType{I32, I32, I32, I32, I32, I32}, Results: []ValType{I32}}
	check(ImportsHost("get_feature", getFeature), "osprey", "get_feature", getFeature)
}

// StorageGuest imports the three storage functions at their indices and exports its
// program under the name asked for.
func TestStorageGuest(t *testing.T) {
	ctx := context.Background()
	for _, export := range []string{"osprey_program", "osprey_middleware"} {
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
		compiled, err := r.CompileModule(ctx, StorageGuest(0x00010002, export, nil))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, def := range compiled.ImportedFunctions() {
			m, n, _ := def.Import()
			names = append(names, m+"."+n)
		}
		if want := "osprey.storage_get osprey.storage_set osprey.storage_clear"; strings.Join(names, " ") != want {
			t.Errorf("imports %v, want %s", names, want)
		}
		exports := compiled.ExportedFunctions()
		if _, ok := exports[export]; !ok || len(exports) != 3 {
			t.Errorf("exports %v, want osprey_abi_version, osprey_alloc and %s", exports, export)
		}
	}
}

func sameTypes(a []api.ValueType, b []ValType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != api.ValueType(b[i]) {
			return false
		}
	}
	return true
}

func TestBigMemory(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(64))
	mod := instantiate(t, ctx, r, BigMemory(64))
	if got := mod.ExportedMemory("memory").Size(); got != 64*65536 {
		t.Errorf("memory size = %d", got)
	}
	checkGuest(t, ctx, mod, DefaultABIVersion)
	checkNoopResponse(t, ctx, mod)

	_, err := r.CompileModule(ctx, BigMemory(65))
	t.Logf("65 pages, limit 64: %q", err)
	if err == nil {
		t.Error("a memory above the limit compiled")
	}
	_, err = newRuntime(t, ctx, wazero.NewRuntimeConfig()).CompileModule(ctx, BigMemory(65537))
	t.Logf("65537 pages, no limit: %q", err)
	if err == nil {
		t.Error("a memory above 4 GiB compiled")
	}
}

func TestWrongSignature(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
	mod := instantiate(t, ctx, r, WrongSignature())
	checkGuest(t, ctx, mod, DefaultABIVersion)
	def := mod.ExportedFunction("osprey_program").Definition()
	if len(def.ParamTypes()) != 0 || len(def.ResultTypes()) != 0 {
		t.Errorf("osprey_program: %v -> %v", def.ParamTypes(), def.ResultTypes())
	}
	_, err := callProgram(ctx, mod)
	t.Logf("calling with 2 params: %q", err)
	if err == nil {
		t.Error("call with the wrong arity succeeded")
	}
}

func TestBadResponse(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ ptr, n uint32 }{{0, 0}, {0xffff0000, 16}, {65530, 16}, {0xffffffff, 16}, {0, 0xffffffff}} {
		r := newRuntime(t, ctx, wazero.NewRuntimeConfig())
		mod := instantiate(t, ctx, r, BadResponse(c.ptr, c.n))
		checkGuest(t, ctx, mod, DefaultABIVersion)
		got, err := callProgram(ctx, mod)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(c.ptr)<<32 | uint64(c.n); got != want {
			t.Errorf("BadResponse(%#x, %#x) returned %#x", c.ptr, c.n, got)
		}
		if _, ok := mod.ExportedMemory("memory").Read(uint32(got>>32), uint32(got)); ok != (c.ptr == 0 && c.n == 0) {
			t.Errorf("BadResponse(%#x, %#x): memory read ok = %v", c.ptr, c.n, ok)
		}
	}
}
