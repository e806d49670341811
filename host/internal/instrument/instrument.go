// Package instrument rewrites a WebAssembly module so that the host can stop it cheaply.
//
// wazero's WithCloseOnContextDone(true) makes every Wasm `loop` header call out to Go to ask
// whether the module was closed, which makes a call into a standard-Go guest several times
// slower (a raw call of the noop Go guest's osprey_program: ~7.6 µs with it, ~1.3 µs
// without, ~1.6 µs instrumented). Instrument compiles a much cheaper check into the module
// instead: two new mutable i32 globals — a stop flag, exported as StopExport, that the host
// sets to 1 from another goroutine when the call's deadline passes, and a countdown — and, at
// the head of every `loop`, the code checkFor returns: the countdown is decremented, and every
// SafePointInterval iterations a safe point runs `memory.grow 0` and tests the flag, trapping
// with "unreachable" when it is set. Wasm can only branch backwards to a `loop`, so a guest
// that runs forever passes safe points again and again; unbounded recursion ends in stack
// exhaustion anyway.
//
// The safe point's `memory.grow 0` is there because Go cannot preempt a goroutine that runs
// compiled Wasm: a stop-the-world GC starting while a guest spins would wait for it forever,
// and with it the goroutine that would set the flag. wazero runs memory.grow in Go, so the GC
// gets in at every safe point (TestGCDuringSpin). Modules without a memory (which the host
// refuses anyway) get the bare flag test instead.
//
// A start function would run during instantiation, before the host can reach the global, so
// modules with a start section are refused (guests initialise in _initialize, which the host
// calls under a deadline). The host finds the flag with api.Module.ExportedGlobal(StopExport);
// a flag set just as a call returns would stop the next call, so the host discards an
// instance whose stop fired.
//
// Instrument copies everything else byte for byte (types, imports, functions, tables,
// memories, elements, data, data count and custom sections), except the DWARF custom
// sections (".debug*"), whose code offsets the inserted checks would invalidate. No index
// changes: the new globals come after all the existing ones.
//
// The rewrite is a single pass over the module; instructions are decoded (every opcode of
// the core specification with its immediates, including SIMD, bulk memory, reference types,
// tail calls, threads and multi-memory memargs) only to find the loops, without allocating
// per instruction. It does not validate the module beyond what that decoding needs: the
// runtime does, when it compiles the result.
package instrument

import (
	"bytes"
	"fmt"
	"math"

	"github.com/osprey-ml/osprey/host/internal/wasmbin"
)

// StopExport is the name of the exported global the host sets to 1 to stop the guest.
const StopExport = "__osprey_stop"

// Result reports what Instrument did.
type Result struct {
	// Wasm is the instrumented module (a new slice; the input is not modified).
	Wasm []byte
	// Loops is the number of loop instructions that got a stop check.
	Loops int
	// StopGlobal is the index of the stop global in the module's global index space: the
	// number of imported plus defined globals of the input.
	StopGlobal uint32
	// StrippedSections lists, in module order, the names of the custom sections dropped
	// because their contents refer to code offsets (DWARF, ".debug*").
	StrippedSections []string
	// Imports lists the module's imports in order.
	Imports []Import
	// TableEntries is the most entries the module's tables can ever hold together: their
	// maximums, as declared or as capped to Limits.MaxTableEntries.
	TableEntries uint64
	// Stats describes the module's structure (the largest of each measure).
	Stats Stats

	// inserted holds, per function body of the output, the output ranges of the inserted
	// code (for tests).
	inserted [][][2]int
}

// Import is one import of a module.
type Import struct {
	Module, Name string
	Kind         byte // 0 function, 1 table, 2 memory, 3 global
}

// KindName names an import kind.
func KindName(kind byte) string {
	switch kind {
	case wasmbin.KindFunc:
		return "function"
	case wasmbin.KindTable:
		return "table"
	case wasmbin.KindMemory:
		return "memory"
	case wasmbin.KindGlobal:
		return "global"
	}
	return fmt.Sprintf("kind %#x", kind)
}

// Stats are the largest measures of a module's structure, as the limits count them.
type Stats struct {
	Functions         uint32 // imported and defined
	MaxNesting        uint32 // blocks, loops and ifs open at once in one function
	MaxLocals         uint32 // locals one function declares (parameters not counted)
	MaxBrTableTargets uint32 // targets of one br_table
	MaxFunctionSize   uint32 // bytes of one function body's code
	Checks            int    // checks inserted: loop headers, entries, bulk instructions, host calls
	TotalLocals       uint64 // locals and parameters of all functions together
	Globals           uint32 // imported and defined
	ElementEntries    uint64 // entries of all element segments (wazero keeps 8 bytes each per instance)
	// CompileWork estimates what makes wazero's compile time grow faster than the module's
	// size: over every block, loop, if and end, how many blocks are open there (quadratic
	// in nesting), plus n²/16 for every br_table of n targets. A unit is about 2.6 ns of
	// compile time (measured: nesting 16,000 deep, 0.67 s; a 100,000-target br_table, 1.7 s).
	CompileWork uint64
}

// sectionRank is the position a non-custom section must take in a module (sections appear
// at most once, in increasing rank), or 0 for an unknown or unsupported id (the tag section
// of the exception-handling proposal, which the instrumenter does not rewrite).
func sectionRank(id byte) int {
	if id == wasmbin.SecTag {
		return 0
	}
	return wasmbin.SectionRank(id)
}

// hasVector reports whether a section's contents are a vector (a count, then the entries).
func hasVector(id byte) bool {
	switch id {
	case wasmbin.SecType, wasmbin.SecImport, wasmbin.SecFunction, wasmbin.SecTable, wasmbin.SecMemory, wasmbin.SecGlobal, wasmbin.SecExport, wasmbin.SecElement, wasmbin.SecCode, wasmbin.SecData:
		return true
	}
	return false
}

var (
	rankGlobal = sectionRank(wasmbin.SecGlobal)
	rankExport = sectionRank(wasmbin.SecExport)
)

// maxU32LEB is the longest unsigned LEB128 encoding of a u32.
const maxU32LEB = 5

// debugPrefix starts the names of the DWARF custom sections.
var debugPrefix = []byte(".debug")

// instrumenter holds the state of one Instrument call.
type instrumenter struct {
	in  []byte
	out []byte

	lim   Limits
	stats Stats

	importedFuncs   uint32
	importedGlobals uint32
	importList      []Import
	typeParams      []uint32 // parameters of each function type
	funcTypes       []uint32 // type of each defined function
	definedGlobals  uint32
	elemEntries     uint64
	hostCharge      map[uint32]hostCallCharge // imported function index → its charge
	tableEntries    uint64
	funcs           uint32  // entries of the function section
	haveFuncs       bool    // there is a function section
	haveCode        bool    // there is a code section
	globalDone      bool    // the stop global is defined (and stop is set)
	exportDone      bool    // the stop global is exported
	stop            uint32  // index of the stop global
	g               globals // the instrumentation's globals, for the inserted code
	hasMemory       bool    // the module defines or imports a memory (memory.grow is then valid)
	inserts         []insert
	frames          []frame
	inserted        [][][2]int

	loops    int
	stripped []string
}

// Instrument returns a copy of a WebAssembly binary module (core specification, binary
// format, version 1) in which
//
//   - two globals `(global (mut i32) (i32.const 0))`, the stop flag and the safe-point
//     countdown, are appended to the global section (which is created, in its place in the
//     section order, if the module has none); the flag's index is the number of imported
//     and defined globals, so no existing index changes;
//   - the flag is exported as StopExport (appended to the export section, or in a new one);
//   - right after every `loop` instruction's block type, the check of defineStop (see
//     checkFor) is inserted;
//   - function body and section sizes are recomputed;
//   - custom sections whose names start with ".debug" (DWARF, whose code offsets would now
//     be wrong) are dropped and listed in Result.StrippedSections; other custom sections
//     (e.g. "name") are kept as they are.
//
// It returns an error for a malformed module (naming the function index and the byte
// offset in the input, for an error in code), an unknown opcode (e.g. those of the
// exception-handling proposals), a module that already exports StopExport, and a module
// with a start section: a start function runs during instantiation, before the host can
// reach the stop global.
func Instrument(wasm []byte, lim Limits) (Result, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte{0x00, 'a', 's', 'm'}) {
		return Result{}, fmt.Errorf("instrument: not a WebAssembly binary module (no \\0asm magic)")
	}
	if !bytes.Equal(wasm[4:8], []byte{0x01, 0x00, 0x00, 0x00}) {
		return Result{}, fmt.Errorf("instrument: unsupported binary format version % x (want 01 00 00 00)", wasm[4:8])
	}
	ins := &instrumenter{in: wasm, lim: lim, hostCharge: map[uint32]hostCallCharge{}}
	// The checks add a few bytes a loop: about 0.3% for Go guests.
	ins.out = make([]byte, 0, len(wasm)+len(wasm)/32+64)
	ins.out = append(ins.out, wasm[:8]...)
	if err := ins.sections(); err != nil {
		return Result{}, err
	}
	ins.stats.Functions = ins.importedFuncs + ins.funcs
	ins.stats.Globals = ins.importedGlobals + ins.definedGlobals
	ins.stats.ElementEntries = ins.elemEntries
	return Result{Wasm: ins.out, Loops: ins.loops, StopGlobal: ins.stop, StrippedSections: ins.stripped,
		Imports: ins.importList, TableEntries: ins.tableEntries, Stats: ins.stats, inserted: ins.inserted}, nil
}

// sections walks the module's sections, copying or rewriting each.
func (ins *instrumenter) sections() error {
	in := ins.in
	pos := 8
	lastRank := 0
	for pos < len(in) {
		start := pos
		id := in[pos]
		size, p := readU32(in, pos+1, len(in))
		if p < 0 {
			return fmt.Errorf("instrument: section id %d at byte offset %d: truncated or malformed size", id, start)
		}
		if int64(size) > int64(len(in)-p) {
			return fmt.Errorf("instrument: section id %d at byte offset %d: size %d runs past the end of the module (%d bytes left)", id, start, size, len(in)-p)
		}
		pos = p
		end := p + int(size)
		if id != wasmbin.SecCustom {
			rank := sectionRank(id)
			if id == wasmbin.SecTag {
				return fmt.Errorf("instrument: section id 13 (tag, exception handling) at byte offset %d is not supported", start)
			}
			if rank == 0 {
				return fmt.Errorf("instrument: unknown section id %d at byte offset %d", id, start)
			}
			if rank <= lastRank {
				return fmt.Errorf("instrument: section id %d at byte offset %d is duplicated or out of order", id, start)
			}
			lastRank = rank
			if err := ins.addMissing(rank); err != nil {
				return err
			}
		}
		if hasVector(id) {
			// Every entry takes a byte at least. (The check also keeps a runtime that
			// allocates by the declared count from allocating gigabytes for a tiny module.)
			if n, p := readU32(in, pos, end); p >= 0 && int64(n) > int64(end-p) {
				return fmt.Errorf("instrument: section id %d at byte offset %d: %d entries cannot fit in its %d bytes", id, start, n, end-p)
			}
		}
		var err error
		switch id {
		case wasmbin.SecCustom:
			err = ins.custom(start, pos, end)
		case wasmbin.SecImport:
			err = ins.imports(pos, end)
			ins.out = append(ins.out, in[start:end]...)
		case wasmbin.SecFunction:
			err = ins.functions(pos, end)
			ins.out = append(ins.out, in[start:end]...)
		case wasmbin.SecGlobal:
			err = ins.globals(pos, end)
		case wasmbin.SecExport:
			err = ins.exports(pos, end)
		case wasmbin.SecStart:
			if !ins.lim.AllowStart {
				err = fmt.Errorf("instrument: the module has a start section (byte offset %d): a start function is not allowed: initialise in _initialize", start)
			} else {
				ins.out = append(ins.out, in[start:end]...)
			}
		case wasmbin.SecCode:
			err = ins.code(pos, end)
		case wasmbin.SecMemory:
			if n, p := readU32(in, pos, end); p >= 0 && n > 0 {
				ins.hasMemory = true
			}
			ins.out = append(ins.out, in[start:end]...)
		case wasmbin.SecType:
			err = ins.types(pos, end)
			ins.out = append(ins.out, in[start:end]...)
		case wasmbin.SecTable:
			err = ins.tables(pos, end)
		case wasmbin.SecElement:
			err = ins.elements(pos, end)
			ins.out = append(ins.out, in[start:end]...)
		default: // data count, data
			ins.out = append(ins.out, in[start:end]...)
		}
		if err != nil {
			return err
		}
		pos = end
	}
	if err := ins.addMissing(math.MaxInt); err != nil {
		return err
	}
	if ins.haveFuncs && ins.funcs > 0 && !ins.haveCode {
		return fmt.Errorf("instrument: the function section declares %d functions but there is no code section", ins.funcs)
	}
	return nil
}

// addMissing creates the global and export sections, if the module has none, before a
// section of the given rank.
func (ins *instrumenter) addMissing(rank int) error {
	if !ins.globalDone && rank > rankGlobal {
		ins.defineStop(ins.importedGlobals)
		at := ins.beginSection(wasmbin.SecGlobal)
		ins.out = append(ins.out, instrumentGlobals)
		ins.out = appendStopGlobal(ins.out)
		if err := ins.endSection(at); err != nil {
			return err
		}
	}
	if !ins.exportDone && rank > rankExport {
		ins.exportDone = true
		at := ins.beginSection(wasmbin.SecExport)
		ins.out = append(ins.out, 1)
		ins.out = ins.appendStopExport(ins.out)
		if err := ins.endSection(at); err != nil {
			return err
		}
	}
	return nil
}

// SafePointInterval is how many units of work (see BytesPerUnit) run between safe points:
// where a guest lets the Go runtime in (a stop-the-world GC waits for every goroutine, and
// compiled Wasm cannot be preempted) and checks the stop global. A tight loop is charged a
// unit an iteration, so a safe point comes every 2^16 iterations.
const SafePointInterval = 1 << 16

// instrumentGlobals is how many globals Instrument appends: the stop flag, the safe-point
// countdown and two scratch globals for dynamic charges.
const instrumentGlobals = 4

// defineStop records the index of the stop global (the countdown and the scratch globals
// follow it) for the inserted code (check.go).
func (ins *instrumenter) defineStop(idx uint32) {
	ins.globalDone = true
	ins.stop = idx
	ins.g = newGlobals(idx, ins.hasMemory)
}

// appendS32 appends an opcode and a signed LEB128 immediate.
func appendS32(b []byte, op byte, v int32) []byte {
	b = append(b, op)
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendStopGlobal appends the instrumentation's globals (the stop flag, the safe-point
// countdown, two scratch globals): instrumentGlobals `(global (mut i32) (i32.const 0))`.
func appendStopGlobal(b []byte) []byte {
	for range instrumentGlobals {
		b = append(b, 0x7f, 0x01, 0x41, 0x00, 0x0b)
	}
	return b
}

// appendStopExport appends the export of the stop global.
func (ins *instrumenter) appendStopExport(b []byte) []byte {
	b = appendU32(b, uint32(len(StopExport)))
	b = append(b, StopExport...)
	b = append(b, wasmbin.KindGlobal)
	return appendU32(b, ins.stop)
}

// beginSection starts a section whose size is not known yet: it appends the id and room for
// the longest size encoding, and returns where the contents start.
func (ins *instrumenter) beginSection(id byte) int {
	ins.out = append(ins.out, id, 0, 0, 0, 0, 0)
	return len(ins.out)
}

// endSection writes the size of the section begun at `at` (the start of its contents) and
// closes the gap left for it.
func (ins *instrumenter) endSection(at int) error {
	size := len(ins.out) - at
	if size > math.MaxUint32 {
		return fmt.Errorf("instrument: section id %d of the output is too large (%d bytes)", ins.out[at-maxU32LEB-1], size)
	}
	var enc [maxU32LEB]byte
	n := len(appendU32(enc[:0], uint32(size)))
	dst := at - maxU32LEB + n
	copy(ins.out[dst:], ins.out[at:])
	copy(ins.out[at-maxU32LEB:], enc[:n])
	ins.out = ins.out[:len(ins.out)-(maxU32LEB-n)]
	return nil
}

// custom copies a custom section, unless it is DWARF.
func (ins *instrumenter) custom(start, pos, end int) error {
	in := ins.in
	n, p := readU32(in, pos, end)
	if p < 0 || int64(n) > int64(end-p) {
		return fmt.Errorf("instrument: custom section at byte offset %d: truncated or malformed name", start)
	}
	name := in[p : p+int(n)]
	if bytes.HasPrefix(name, debugPrefix) {
		ins.stripped = append(ins.stripped, string(name))
		return nil
	}
	ins.out = append(ins.out, in[start:end]...)
	return nil
}

// imports counts the imported functions and globals.
func (ins *instrumenter) imports(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	if p < 0 {
		return fmt.Errorf("instrument: import section at byte offset %d: truncated or malformed count", pos)
	}
	for i := uint32(0); i < count; i++ {
		at := p
		modAt := p
		p = skipName(in, p, end)
		nameAt := p
		p = skipName(in, p, end)
		if p < 0 || p >= end {
			return fmt.Errorf("instrument: import %d at byte offset %d: truncated or malformed name", i, at)
		}
		kind := in[p]
		imp := Import{Module: nameAt2(in, modAt), Name: nameAt2(in, nameAt), Kind: kind}
		if lim := ins.lim.MaxImports; lim > 0 && uint32(len(ins.importList)) >= lim {
			return fmt.Errorf("%w: more than %d imports", ErrLimit, lim)
		}
		ins.importList = append(ins.importList, imp)
		p++
		switch kind {
		case wasmbin.KindFunc:
			p = skipLEB(in, p, end, maxU32LEB)
			if imp.Module == "wasi_snapshot_preview1" {
				if c, ok := hostCharges[imp.Name]; ok {
					ins.hostCharge[ins.importedFuncs] = c
				}
			}
			ins.importedFuncs++
		case wasmbin.KindTable:
			p = skipValType(in, p, end)
			p = skipLimits(in, p, end)
		case wasmbin.KindMemory:
			p = skipLimits(in, p, end)
			ins.hasMemory = true
		case wasmbin.KindGlobal:
			p = skipValType(in, p, end)
			if p >= 0 {
				p = skipByte(p, end) // mutability
			}
			ins.importedGlobals++
		default:
			return fmt.Errorf("instrument: import %d at byte offset %d: unsupported import kind %#x", i, at, kind)
		}
		if p < 0 {
			return fmt.Errorf("instrument: import %d at byte offset %d: truncated or malformed description", i, at)
		}
	}
	if p != end {
		return fmt.Errorf("instrument: import section at byte offset %d: %d bytes left over after %d imports", pos, end-p, count)
	}
	return nil
}

// types reads the number of parameters of each function type (a function's parameters
// are locals too).
func (ins *instrumenter) types(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	ins.typeParams = make([]uint32, 0, min(count, uint32(end-pos)))
	for i := uint32(0); i < count && p >= 0; i++ {
		at := p
		if p >= end || in[p] != 0x60 {
			return fmt.Errorf("instrument: type %d at byte offset %d: not a function type", i, at)
		}
		var n uint32
		n, p = readU32(in, p+1, end)
		for k := uint32(0); k < n && p >= 0; k++ {
			p = skipValType(in, p, end)
		}
		ins.typeParams = append(ins.typeParams, n)
		var r uint32
		r, p = readU32(in, p, end)
		for k := uint32(0); k < r && p >= 0; k++ {
			p = skipValType(in, p, end)
		}
	}
	if p != end {
		return fmt.Errorf("instrument: type section at byte offset %d: truncated or malformed", pos)
	}
	return nil
}

// nameAt2 returns the name (a u32 length and the bytes) at pos, which skipName accepted.
func nameAt2(b []byte, pos int) string {
	n, p := readU32(b, pos, len(b))
	return string(b[p : p+int(n)])
}

// functions reads the number of functions the module defines.
func (ins *instrumenter) functions(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	ins.funcTypes = make([]uint32, 0, min(count, uint32(end-pos)))
	for i := uint32(0); i < count && p >= 0; i++ {
		var t uint32
		t, p = readU32(in, p, end)
		ins.funcTypes = append(ins.funcTypes, t)
	}
	if p != end {
		return fmt.Errorf("instrument: function section at byte offset %d: truncated or malformed", pos)
	}
	ins.haveFuncs = true
	ins.funcs = count
	if lim := ins.lim.MaxFunctions; lim > 0 && uint64(count)+uint64(ins.importedFuncs) > uint64(lim) {
		return fmt.Errorf("%w: %d functions; the limit is %d", ErrLimit, uint64(count)+uint64(ins.importedFuncs), lim)
	}
	return nil
}

// globals rewrites the global section with the stop global appended. The existing globals
// are copied as they are.
func (ins *instrumenter) globals(pos, end int) error {
	count, p := readU32(ins.in, pos, end)
	if p < 0 {
		return fmt.Errorf("instrument: global section at byte offset %d: truncated or malformed count", pos)
	}
	idx := uint64(ins.importedGlobals) + uint64(count)
	if lim := ins.lim.MaxGlobals; lim > 0 && idx > uint64(lim) {
		return fmt.Errorf("%w: %d globals; the limit is %d", ErrLimit, idx, lim)
	}
	ins.definedGlobals = count
	if idx >= math.MaxUint32-instrumentGlobals {
		return fmt.Errorf("instrument: global section at byte offset %d: too many globals (%d)", pos, idx)
	}
	ins.defineStop(uint32(idx))
	at := ins.beginSection(wasmbin.SecGlobal)
	body := p
	for i := uint32(0); i < count; i++ {
		at := p
		p = skipValType(ins.in, p, end)
		p = skipByte(p, end) // mutability
		var err error
		if p, err = ins.constExpr(p, end); err != nil {
			return fmt.Errorf("%w (global %d at byte offset %d)", err, i, at)
		}
		if p < 0 {
			return fmt.Errorf("instrument: global %d at byte offset %d: truncated or malformed", i, at)
		}
	}
	if p != end {
		return fmt.Errorf("instrument: global section at byte offset %d: %d bytes left over after %d globals", pos, end-p, count)
	}
	ins.out = appendU32(ins.out, count+instrumentGlobals)
	ins.out = append(ins.out, ins.in[body:end]...)
	ins.out = appendStopGlobal(ins.out)
	return ins.endSection(at)
}

// exports rewrites the export section with the stop global's export appended, after
// checking that the name is free.
func (ins *instrumenter) exports(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	if p < 0 || count == math.MaxUint32 {
		return fmt.Errorf("instrument: export section at byte offset %d: truncated or malformed count", pos)
	}
	body := p
	for i := uint32(0); i < count; i++ {
		at := p
		n, q := readU32(in, p, end)
		if q < 0 || int64(n) > int64(end-q) {
			return fmt.Errorf("instrument: export %d at byte offset %d: truncated or malformed name", i, at)
		}
		if string(in[q:q+int(n)]) == StopExport {
			return fmt.Errorf("instrument: the module already exports %q (export %d at byte offset %d)", StopExport, i, at)
		}
		p = skipByte(q+int(n), end) // kind
		p = skipLEB(in, p, end, maxU32LEB)
		if p < 0 {
			return fmt.Errorf("instrument: export %d at byte offset %d: truncated or malformed", i, at)
		}
	}
	if p != end {
		return fmt.Errorf("instrument: export section at byte offset %d: %d bytes left over after %d exports", pos, end-p, count)
	}
	ins.exportDone = true
	at := ins.beginSection(wasmbin.SecExport)
	ins.out = appendU32(ins.out, count+1)
	ins.out = append(ins.out, in[body:end]...)
	ins.out = ins.appendStopExport(ins.out)
	return ins.endSection(at)
}

// code rewrites the code section, inserting the check at every loop header.
func (ins *instrumenter) code(pos, end int) error {
	in := ins.in
	ins.haveCode = true
	count, p := readU32(in, pos, end)
	if p < 0 {
		return fmt.Errorf("instrument: code section at byte offset %d: truncated or malformed count", pos)
	}
	if count != ins.funcs {
		return fmt.Errorf("instrument: the code section has %d function bodies but the function section declares %d", count, ins.funcs)
	}
	// wazero walks every global once for each function it compiles.
	ins.stats.CompileWork += 2 * uint64(ins.importedGlobals+ins.definedGlobals) * uint64(count)
	if lim := ins.lim.MaxCompileWork; lim > 0 && ins.stats.CompileWork > lim {
		return fmt.Errorf("%w: the module is too complex to compile (compile work over %d: many globals and functions)", ErrLimit, lim)
	}
	at := ins.beginSection(wasmbin.SecCode)
	ins.out = appendU32(ins.out, count)
	ins.inserted = make([][][2]int, 0, count)
	for i := uint32(0); i < count; i++ {
		fn := uint64(ins.importedFuncs) + uint64(i)
		size, q := readU32(in, p, end)
		if q < 0 || int64(size) > int64(end-q) {
			return fmt.Errorf("instrument: function %d (byte offset %d): truncated or malformed body size", fn, p)
		}
		bodyEnd := q + int(size)
		if err := ins.scan(fn, q, bodyEnd); err != nil {
			return err
		}
		ins.stats.MaxFunctionSize = max(ins.stats.MaxFunctionSize, size)
		body := ins.beginBody()
		var ranges [][2]int
		last := q
		for _, c := range ins.inserts {
			if c.kind != insDynamic && c.charge == 0 {
				continue // the entry's slot, unused
			}
			ins.out = append(ins.out, in[last:c.at]...)
			from := len(ins.out)
			ins.out = ins.g.appendInsert(ins.out, c)
			ranges = append(ranges, [2]int{from, len(ins.out)})
			last = c.at
			ins.stats.Checks++
			if c.kind == insStatic && !c.entry {
				ins.loops++
			}
		}
		ins.out = append(ins.out, in[last:bodyEnd]...)
		shift, err := ins.endBody(body, fn)
		if err != nil {
			return err
		}
		for k := range ranges {
			ranges[k][0] -= shift
			ranges[k][1] -= shift
		}
		ins.inserted = append(ins.inserted, ranges)
		p = bodyEnd
	}
	if p != end {
		return fmt.Errorf("instrument: code section at byte offset %d: %d bytes left over after %d function bodies", pos, end-p, count)
	}
	// The section's size is written in place of the 5 bytes reserved, which moves the
	// bodies; the test ranges are relative to the output as finished.
	before := len(ins.out)
	if err := ins.endSection(at); err != nil {
		return err
	}
	moved := before - len(ins.out)
	for _, rs := range ins.inserted {
		for k := range rs {
			rs[k][0] -= moved
			rs[k][1] -= moved
		}
	}
	return nil
}

// beginBody reserves room for a function body's size and returns where the body starts.
func (ins *instrumenter) beginBody() int {
	ins.out = append(ins.out, 0, 0, 0, 0, 0)
	return len(ins.out)
}

// endBody writes the size of the body begun at `at` and closes the gap left for it; it
// returns by how many bytes the body moved back.
func (ins *instrumenter) endBody(at int, fn uint64) (int, error) {
	size := len(ins.out) - at
	if size > math.MaxUint32 {
		return 0, fmt.Errorf("instrument: function %d: instrumented body too large", fn)
	}
	var enc [maxU32LEB]byte
	n := len(appendU32(enc[:0], uint32(size)))
	dst := at - maxU32LEB + n
	copy(ins.out[dst:], ins.out[at:])
	copy(ins.out[at-maxU32LEB:], enc[:n])
	ins.out = ins.out[:len(ins.out)-(maxU32LEB-n)]
	return maxU32LEB - n, nil
}

// LEB128 and other primitive decoders. They take the input, a position and the end of the
// enclosing section or body, and return the position after what they read, or -1 if it is
// truncated or malformed. They also accept -1 as a position, to chain them.

// readU32 decodes an unsigned LEB128 u32.
func readU32(b []byte, pos, end int) (uint32, int) {
	if pos < 0 {
		return 0, -1
	}
	var v uint32
	for shift := uint(0); shift < 35; shift += 7 {
		if pos >= end {
			return 0, -1
		}
		c := b[pos]
		pos++
		if shift == 28 && c > 0x0f {
			return 0, -1 // more than 32 bits, or a sixth byte
		}
		v |= uint32(c&0x7f) << shift
		if c < 0x80 {
			return v, pos
		}
	}
	return 0, -1
}

// readS33 decodes a signed LEB128 of at most 33 bits (block types, heap types).
func readS33(b []byte, pos, end int) (int64, int) {
	if pos < 0 {
		return 0, -1
	}
	var v int64
	for shift := uint(0); shift < 35; shift += 7 {
		if pos >= end {
			return 0, -1
		}
		c := b[pos]
		pos++
		v |= int64(c&0x7f) << shift
		if c < 0x80 {
			if c&0x40 != 0 {
				v |= -1 << (shift + 7) // sign-extend
			}
			return v, pos
		}
	}
	return 0, -1
}

// skipLEB skips a LEB128 number of at most maxBytes bytes.
func skipLEB(b []byte, pos, end, maxBytes int) int {
	if pos < 0 {
		return -1
	}
	for range maxBytes {
		if pos >= end {
			return -1
		}
		c := b[pos]
		pos++
		if c < 0x80 {
			return pos
		}
	}
	return -1
}

// skipByte skips one byte.
func skipByte(pos, end int) int {
	if pos < 0 || pos >= end {
		return -1
	}
	return pos + 1
}

// skipName skips a name (a u32 length and that many bytes).
func skipName(b []byte, pos, end int) int {
	n, p := readU32(b, pos, end)
	if p < 0 || int64(n) > int64(end-p) {
		return -1
	}
	return p + int(n)
}

// skipLimits skips the limits of a table or memory type: a flags byte (bit 0: a maximum
// follows; bit 1: shared; bit 2: 64-bit), the minimum and the optional maximum.
func skipLimits(b []byte, pos, end int) int {
	if pos < 0 || pos >= end {
		return -1
	}
	flags := b[pos]
	if flags > 0x07 {
		return -1
	}
	pos = skipLEB(b, pos+1, end, 10)
	if flags&0x01 != 0 {
		pos = skipLEB(b, pos, end, 10)
	}
	return pos
}

// skipValType skips a value type: one byte, or a reference type prefix (0x63 ref null,
// 0x64 ref) and its heap type (function-references proposal).
func skipValType(b []byte, pos, end int) int {
	if pos < 0 || pos >= end {
		return -1
	}
	switch b[pos] {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69: // i32 i64 f32 f64 v128 funcref externref exnref
		return pos + 1
	case 0x63, 0x64:
		return skipLEB(b, pos+1, end, maxU32LEB) // s33 heap type
	}
	return -1
}

// appendU32 appends v in unsigned LEB128.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
