package wasmbuild

import "fmt"

// Fixture guests of the Osprey ABI (abi/ABI.md), for host tests.
//
// Unless its doc says otherwise, every fixture is a variation of NoopProgram, which exports:
//
//   - memory: one memory of 1 page (64 KiB), no maximum;
//   - osprey_abi_version () -> i32: returns DefaultABIVersion (0x00010000, ABI 1.0);
//   - osprey_alloc (size i32) -> i32: returns AllocPtr (1024) when size <= AllocMaxSize
//     (60000), else 0; it always hands out the same region;
//   - osprey_program (ptr i32, len i32) -> i64: ignores its input and returns
//     ResponseOffset<<32 | len(NoopResponse()), pointing at NoopResponse's bytes, which a
//     data segment places at ResponseOffset (256), below the alloc region so the host's input
//     never overwrites them.
//
// Each fixture returns the module's binary encoding.

// Layout and values of the fixture guests.
const (
	// DefaultABIVersion is what the fixtures' osprey_abi_version returns: ABI 1.0.
	DefaultABIVersion uint32 = 0x00010000
	// ResponseOffset is where the fixtures keep their response in memory.
	ResponseOffset = 256
	// AllocPtr is the pointer the fixtures' osprey_alloc returns.
	AllocPtr = 1024
	// AllocMaxSize is the largest size the fixtures' osprey_alloc accepts; larger gets 0.
	AllocMaxSize = 60000
)

// noopResponse is an OK ProgramResult: status 0, Value int (tag 1) 42 as i64 LE, flags 0.
var noopResponse = []byte{0x00, 0x01, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x00}

// NoopResponse returns the response bytes of NoopProgram: status OK (0), value tag int (1),
// 42 as 8 little-endian bytes, flags 0 (no keys, no timestamp); 11 bytes.
func NoopResponse() []byte { return append([]byte(nil), noopResponse...) }

// Export names of the Osprey ABI (the same as package abi's; this package has no dependencies).
const (
	exportMemory  = "memory"
	exportVersion = "osprey_abi_version"
	exportAlloc   = "osprey_alloc"
	exportProgram = "osprey_program"
)

// ProgramType is the signature of osprey_program: (ptr i32, len i32) -> i64.
var ProgramType = FuncType{Params: []ValType{I32, I32}, Results: []ValType{I64}}

type importSpec struct {
	module, name string
	t            FuncType
}

// guestSpec describes a variation of NoopProgram.
type guestSpec struct {
	version  uint32
	minPages uint32
	omit     string // export to leave out
	imports  []importSpec
	// program adds osprey_program (and any helper functions) and returns its index; nil means
	// the well-behaved one.
	program   func(m *Module) uint32
	loopStart bool   // add a start function that never returns
	export    string // the name osprey_program's function is exported under ("": osprey_program)
}

func defaultSpec() guestSpec { return guestSpec{version: DefaultABIVersion, minPages: 1} }

func okResult() []byte {
	return I64Const(int64(ResponseOffset)<<32 | int64(len(noopResponse)))
}

func buildGuest(s guestSpec) []byte {
	m := New()
	for _, im := range s.imports {
		m.ImportFunc(im.module, im.name, im.t)
	}
	m.Memory(s.minPages, nil)
	m.Data(ResponseOffset, noopResponse)

	version := m.Func(FuncType{Results: []ValType{I32}}, nil, I32Const(int32(s.version)))
	alloc := m.Func(FuncType{Params: []ValType{I32}, Results: []ValType{I32}}, nil,
		// select(AllocPtr, 0, size <= AllocMaxSize)
		I32Const(AllocPtr), I32Const(0), LocalGet(0), I32Const(AllocMaxSize), I32LeU(), Select())
	var program uint32
	if s.program != nil {
		program = s.program(m)
	} else {
		program = m.Func(ProgramType, nil, okResult())
	}
	if s.loopStart {
		m.Start(m.Func(FuncType{}, nil, Loop(BlockEmpty, Br(0))))
	}

	exports := []struct {
		name string
		add  func()
	}{
		{exportMemory, func() { m.ExportMemory(exportMemory) }},
		{exportVersion, func() { m.ExportFunc(exportVersion, version) }},
		{exportAlloc, func() { m.ExportFunc(exportAlloc, alloc) }},
		{exportProgram, func() {
			if s.export != "" {
				m.ExportFunc(s.export, program)
			} else {
				m.ExportFunc(exportProgram, program)
			}
		}},
	}
	for _, e := range exports {
		if e.name != s.omit {
			e.add()
		}
	}
	return m.Bytes()
}

// withProgram returns a NoopProgram whose osprey_program has the given body.
func withProgram(body ...[]byte) []byte {
	s := defaultSpec()
	s.program = func(m *Module) uint32 { return m.Func(ProgramType, nil, body...) }
	return buildGuest(s)
}

// NoopProgram returns a well-behaved program guest: osprey_program returns the OK response
// NoopResponse (value int 42, no keys, no timestamp). See the package's fixture notes for its
// exports and memory layout.
func NoopProgram() []byte { return buildGuest(defaultSpec()) }

// NoopFunc returns a module that exports only `noop` () -> () with an empty body: no memory,
// no ABI exports. It measures the floor cost of a call into a guest.
func NoopFunc() []byte {
	m := New()
	m.ExportFunc("noop", m.Func(FuncType{}, nil))
	return m.Bytes()
}

// InfiniteLoopProgram returns a NoopProgram whose osprey_program is `loop br 0 end`: it never
// returns and never calls the host, so only an interrupting host (a deadline with wazero's
// WithCloseOnContextDone) gets control back.
func InfiniteLoopProgram() []byte {
	return withProgram(Loop(BlockEmpty, Br(0)), Unreachable())
}

// InfiniteLoopStart returns a NoopProgram with a start function that is `loop br 0 end`: its
// instantiation never completes unless the host interrupts it.
func InfiniteLoopStart() []byte {
	s := defaultSpec()
	s.loopStart = true
	return buildGuest(s)
}

// memoryBombLoop grows memory by one page until memory.grow returns -1.
func memoryBombLoop() []byte {
	return Loop(BlockEmpty, I32Const(1), MemoryGrow(), I32Const(-1), I32Ne(), BrIf(0))
}

// MemoryBombProgram returns a NoopProgram whose osprey_program grows memory one page at a time
// until memory.grow fails (returns -1, i.e. the host's memory limit is reached), then executes
// `unreachable`: the call traps with "unreachable" after exhausting the limit. Without a limit
// it would grow to 4 GiB first.
func MemoryBombProgram() []byte {
	return withProgram(memoryBombLoop(), Unreachable())
}

// MemoryBombProgramNoTrap returns a NoopProgram whose osprey_program grows memory one page at
// a time until memory.grow fails, then returns the valid NoopResponse: the call succeeds and
// leaves the instance with its memory at the host's limit.
func MemoryBombProgramNoTrap() []byte {
	return withProgram(memoryBombLoop(), okResult())
}

// TrapKind selects the trap TrapProgram raises.
type TrapKind int

// Trap kinds, with the message wazero v1.12 reports for each (its error reads
// "wasm error: <message>\nwasm stack trace:\n...").
const (
	// TrapUnreachable executes `unreachable`: "unreachable".
	TrapUnreachable TrapKind = iota
	// TrapOutOfBounds loads an i32 at address 0xFFFFFFF0: "out of bounds memory access".
	TrapOutOfBounds
	// TrapDivideByZero executes 1 / 0 with i32.div_s: "integer divide by zero".
	TrapDivideByZero
	// TrapIntegerOverflow executes MinInt32 / -1 with i32.div_s: "integer overflow".
	TrapIntegerOverflow
	// TrapStackOverflow calls a function that calls itself unconditionally: "stack overflow",
	// which wazero's compiler engine returns bare, without the "wasm error: " prefix or a
	// stack trace (the interpreter adds both). It takes the compiler ~0.1-0.4 s and ~160 MB of
	// transient Go heap (its Wasm stack grows to a ceiling of that order) before it traps.
	TrapStackOverflow
)

// String returns the kind's name.
func (k TrapKind) String() string {
	switch k {
	case TrapUnreachable:
		return "Unreachable"
	case TrapOutOfBounds:
		return "OutOfBounds"
	case TrapDivideByZero:
		return "DivideByZero"
	case TrapIntegerOverflow:
		return "IntegerOverflow"
	case TrapStackOverflow:
		return "StackOverflow"
	}
	return fmt.Sprintf("TrapKind(%d)", int(k))
}

// TrapProgram returns a NoopProgram whose osprey_program traps as kind says. Every other
// export behaves; the trapping code is the whole of osprey_program (were it not to trap it
// would return a result that is not a valid response, never the OK one). It panics on an
// unknown kind.
func TrapProgram(kind TrapKind) []byte {
	switch kind {
	case TrapUnreachable:
		return withProgram(Unreachable())
	case TrapOutOfBounds:
		return withProgram(I32Const(-16), I32Load(2, 0), I64ExtendI32U()) // address 0xFFFFFFF0
	case TrapDivideByZero:
		return withProgram(I32Const(1), I32Const(0), I32DivS(), I64ExtendI32S())
	case TrapIntegerOverflow:
		return withProgram(I32Const(-1<<31), I32Const(-1), I32DivS(), I64ExtendI32S())
	case TrapStackOverflow:
		s := defaultSpec()
		s.program = func(m *Module) uint32 {
			self := uint32(len(m.imports) + len(m.funcs))
			recurse := m.Func(FuncType{}, nil, Call(self))
			return m.Func(ProgramType, nil, Call(recurse), I64Const(0))
		}
		return buildGuest(s)
	}
	panic(fmt.Sprintf("wasmbuild: unknown trap kind %v", kind))
}

// MissingExport returns a NoopProgram without the named export, which must be one of
// "memory", "osprey_abi_version", "osprey_alloc" or "osprey_program" (it panics otherwise).
// The function or memory is still defined, only not exported.
func MissingExport(name string) []byte {
	switch name {
	case exportMemory, exportVersion, exportAlloc, exportProgram:
	default:
		panic(fmt.Sprintf("wasmbuild: MissingExport: %q is not an export of NoopProgram", name))
	}
	s := defaultSpec()
	s.omit = name
	return buildGuest(s)
}

// ABIVersion returns a NoopProgram whose osprey_abi_version returns v (major<<16 | minor).
func ABIVersion(v uint32) []byte {
	s := defaultSpec()
	s.version = v
	return buildGuest(s)
}

// ForbiddenImport returns a NoopProgram that also imports a function () -> () as
// module.name (e.g. "env", "system"). The import is never called, so a host that does not
// check imports would run the module fine once it resolves the import.
func ForbiddenImport(module, name string) []byte {
	s := defaultSpec()
	s.imports = []importSpec{{module: module, name: name, t: FuncType{}}}
	return buildGuest(s)
}

// ImportsHost returns a NoopProgram that also imports function name of type t from module
// "osprey" (e.g. "now", FuncType{Results: []ValType{I64}}). The import is never called.
func ImportsHost(name string, t FuncType) []byte {
	s := defaultSpec()
	s.imports = []importSpec{{module: "osprey", name: name, t: t}}
	return buildGuest(s)
}

// BigMemory returns a NoopProgram whose memory declares minPages initial pages (64 KiB each)
// and no maximum. minPages must be at least 1 (the data segment lives in page 0); it panics
// otherwise. A runtime whose page limit is below minPages refuses to compile the module.
func BigMemory(minPages uint32) []byte {
	if minPages == 0 {
		panic("wasmbuild: BigMemory needs at least 1 page")
	}
	s := defaultSpec()
	s.minPages = minPages
	return buildGuest(s)
}

// WrongSignature returns a NoopProgram whose osprey_program has type () -> () (an empty
// body) instead of (i32, i32) -> i64.
func WrongSignature() []byte {
	s := defaultSpec()
	s.program = func(m *Module) uint32 { return m.Func(FuncType{}, nil) }
	return buildGuest(s)
}

// BadResponse returns a NoopProgram whose osprey_program returns ptr<<32 | length whatever it
// is given. Interesting values: (0, 0), which the ABI calls a protocol error;
// (0xFFFF0000, 16), beyond the 64 KiB memory; (65530, 16), straddling its end;
// (0xFFFFFFFF, 16), whose end overflows 32 bits; (0, 0xFFFFFFFF), a 4 GiB length.
func BadResponse(ptr, length uint32) []byte {
	return withProgram(I64Const(int64(uint64(ptr)<<32 | uint64(length))))
}

// ProgramWith returns a NoopProgram (memory of minPages pages) whose osprey_program is the
// function build adds to the module (it may add helpers, tables and globals first).
func ProgramWith(minPages uint32, build func(m *Module) uint32) []byte {
	s := defaultSpec()
	s.minPages = minPages
	s.program = build
	return buildGuest(s)
}

// ProgramImporting is ProgramWith for a guest that imports the function module.name of
// type t first: its index is 0.
func ProgramImporting(minPages uint32, module, name string, t FuncType, build func(m *Module) uint32) []byte {
	s := defaultSpec()
	s.minPages = minPages
	s.imports = []importSpec{{module: module, name: name, t: t}}
	s.program = build
	return buildGuest(s)
}

// OKResult is the instruction osprey_program ends with to return NoopResponse.
func OKResult() []byte { return okResult() }

// RecursionProgram returns a NoopProgram whose osprey_program calls f(depth), where f(d)
// calls f(d-1) twice unless d is 0: 2^depth calls, no loop instruction, and a stack only
// depth deep. At depth 60 it would run for centuries.
func RecursionProgram(depth int32) []byte {
	return ProgramWith(1, func(m *Module) uint32 {
		// f is the next function: its index is known before it is added.
		f := m.FuncCount()
		m.Func(FuncType{Params: []ValType{I32}}, nil,
			LocalGet(0), I32Eqz(), If(BlockEmpty, Return()),
			LocalGet(0), I32Const(1), I32Sub(), Call(f),
			LocalGet(0), I32Const(1), I32Sub(), Call(f),
		)
		return m.Func(ProgramType, nil, I32Const(depth), Call(f), okResult())
	})
}

// ConfigureResponseOffset is where ConfigurableProgram keeps osprey_configure's response.
const ConfigureResponseOffset = 512

// RefusedMessage is the message with which ConfigurableProgram(v, true) refuses its
// configuration.
const RefusedMessage = "refused by the fixture"

// ConfigurableProgram returns a NoopProgram whose osprey_abi_version returns version and
// which also exports osprey_configure (ptr i32, len i32) -> i64 (ABI 1.1): it counts its
// calls in a global and returns the OK response (one byte, 0) or, when refuse is true, an
// error response with RefusedMessage, kept at ConfigureResponseOffset. Its osprey_program
// returns the int value of that count (how many times the instance was configured) instead
// of NoopResponse's 42.
func ConfigurableProgram(version uint32, refuse bool) []byte {
	s := defaultSpec()
	s.version = version
	resp := []byte{0}
	if refuse {
		resp = append([]byte{1, byte(len(RefusedMessage))}, RefusedMessage...)
	}
	s.program = func(m *Module) uint32 {
		n := m.Global(I32, true, I32Const(0))
		m.Data(ConfigureResponseOffset, resp)
		configure := m.Func(ProgramType, nil,
			GlobalGet(n), I32Const(1), I32Add(), GlobalSet(n),
			I64Const(int64(ConfigureResponseOffset)<<32|int64(len(resp))))
		m.ExportFunc("osprey_configure", configure)
		return m.Func(ProgramType, nil,
			I32Const(ResponseOffset+2), GlobalGet(n), I64ExtendI32U(), I64Store(3, 0),
			okResult())
	}
	return buildGuest(s)
}

// The storage imports of StorageGuest (ABI 1.2), by function index, and their types.
const (
	StorageGetFunc   uint32 = 0 // storage_get (name_ptr, name_len, out_ptr, out_cap i32) -> i32
	StorageSetFunc   uint32 = 1 // storage_set (name_ptr, name_len, val_ptr, val_len i32) -> i32
	StorageClearFunc uint32 = 2 // storage_clear (name_ptr, name_len i32) -> i32
)

var (
	storageGetType   = FuncType{Params: []ValType{I32, I32, I32, I32}, Results: []ValType{I32}}
	storageClearType = FuncType{Params: []ValType{I32, I32}, Results: []ValType{I32}}
)

// StorageGuest returns a NoopProgram whose osprey_abi_version returns version and which
// imports storage_get, storage_set and storage_clear from "osprey" (ABI 1.2; function
// indices StorageGetFunc, StorageSetFunc, StorageClearFunc). build, when not nil, adds the
// program function (and anything else: data, an _initialize export) and returns its index;
// nil is NoopProgram's, which never calls the imports. The program function is exported as
// export: "osprey_program", or "osprey_middleware" for a middleware.
func StorageGuest(version uint32, export string, build func(m *Module) uint32) []byte {
	s := defaultSpec()
	s.version = version
	s.export = export
	s.imports = []importSpec{
		{module: "osprey", name: "storage_get", t: storageGetType},
		{module: "osprey", name: "storage_set", t: storageGetType},
		{module: "osprey", name: "storage_clear", t: storageClearType},
	}
	s.program = build
	return buildGuest(s)
}

// The message imports of MessageGuest (ABI 1.2), by function index, and their types.
const (
	SendFunc      uint32 = 0 // send (fqn_ptr, fqn_len, keys_ptr, keys_len, msg_ptr, msg_len i32) -> i32
	SendAfterFunc uint32 = 1 // send_after (delay_ns i64, token_ptr, token_len, fqn_ptr, fqn_len, keys_ptr, keys_len, msg_ptr, msg_len i32) -> i32
	CancelFunc    uint32 = 2 // cancel (token_ptr, token_len i32) -> i32
	EgressFunc    uint32 = 3 // egress (name_ptr, name_len, row_ptr, row_len i32) -> i32
	// ResultFunc is the index of result (out_ptr, out_cap i32) -> i32, which MessageGuest
	// imports too.
	ResultFunc uint32 = 4
)

var (
	sendType      = FuncType{Params: []ValType{I32, I32, I32, I32, I32, I32}, Results: []ValType{I32}}
	sendAfterType = FuncType{Params: []ValType{I64, I32, I32, I32, I32, I32, I32, I32, I32}, Results: []ValType{I32}}
)

// MessageGuest returns a NoopProgram whose osprey_abi_version returns version and which
// imports send, send_after, cancel, egress and result from "osprey" (ABI 1.2; function
// indices SendFunc, SendAfterFunc, CancelFunc, EgressFunc, ResultFunc). build, when not nil,
// adds the program function (and anything else) and returns its index; nil is NoopProgram's,
// which never calls the imports. The program function is exported as export:
// "osprey_program", or "osprey_middleware" for a middleware.
func MessageGuest(version uint32, export string, build func(m *Module) uint32) []byte {
	s := defaultSpec()
	s.version = version
	s.export = export
	s.imports = []importSpec{
		{module: "osprey", name: "send", t: sendType},
		{module: "osprey", name: "send_after", t: sendAfterType},
		{module: "osprey", name: "cancel", t: storageClearType},
		{module: "osprey", name: "egress", t: storageGetType},
		{module: "osprey", name: "result", t: storageClearType},
	}
	s.program = build
	return buildGuest(s)
}

// ErrorResponseOffset is where ReturnHeldError builds its response.
const ErrorResponseOffset = 8192

// ReturnHeldError returns the instructions that end an osprey_program whose last host call
// left its result n (an i32) on the stack: n >= 0 returns NoopResponse; n < 0 fetches the
// error held (-n bytes, at most 16383) with result (import index resultFunc) and returns it
// as an error response (status 1, the message as a String), built at ErrorResponseOffset.
// local is the index of an i32 local of the function, which it uses.
func ReturnHeldError(resultFunc, local uint32) []byte {
	const msg = ErrorResponseOffset + 3 // status, a uvarint length of up to 2 bytes, the message
	return Seq(
		LocalSet(local),
		LocalGet(local), I32Const(0), I32GeS(),
		If(BlockEmpty, okResult(), Return()),
		I32Const(0), LocalGet(local), I32Sub(), LocalSet(local), // local = len = -n
		I32Const(msg), LocalGet(local), Call(resultFunc), Drop(),
		I32Const(ErrorResponseOffset), I32Const(1), I32Store8(0, 0), // status 1
		// The length as a 2-byte uvarint when it needs one, else 1 byte: the message moves
		// left by one (memory.copy) so that the String follows the status directly.
		LocalGet(local), I32Const(128), I32LtU(),
		IfElse(BlockEmpty,
			Seq(
				I32Const(ErrorResponseOffset+1), LocalGet(local), I32Store8(0, 0),
				I32Const(ErrorResponseOffset+2), I32Const(msg), LocalGet(local), MemoryCopy(),
				I64Const(int64(ErrorResponseOffset)<<32), LocalGet(local), I32Const(2), I32Add(), I64ExtendI32U(), I64Or(), Return(),
			),
			Seq(
				I32Const(ErrorResponseOffset+1), LocalGet(local), I32Const(0x7f), I32And(), I32Const(0x80), I32Or(), I32Store8(0, 0),
				I32Const(ErrorResponseOffset+2), LocalGet(local), I32Const(7), I32ShrU(), I32Store8(0, 0),
				I64Const(int64(ErrorResponseOffset)<<32), LocalGet(local), I32Const(3), I32Add(), I64ExtendI32U(), I64Or(), Return(),
			)),
		Unreachable(),
	)
}
