// Package wasmbuild assembles WebAssembly binary modules (the MVP binary format,
// https://webassembly.github.io/spec/core/binary/) from Go code.
//
// It exists for tests of the Wasm host, which must reject or survive hostile modules: there is
// no text-format assembler on the build machines, so tests build their modules here. A Module
// collects types, imports, functions, one memory, globals, exports, an optional start function
// and data segments; Bytes encodes them. Function bodies are plain byte slices made by the
// instruction helpers in instr.go (concatenated; the final `end` is added by Func).
//
// The builder checks only what it must to lay out the index spaces (imports before local
// functions, at most one memory); it does not validate the module, so tests can also build
// modules a runtime must refuse. fixtures.go has ready-made guests of the Osprey ABI.
package wasmbuild

import (
	"fmt"
	"slices"

	"github.com/osprey-ml/osprey/host/internal/wasmbin"
)

// ValType is a WebAssembly value type, as encoded in the binary format.
type ValType byte

// The MVP value types.
const (
	I32 ValType = 0x7f
	I64 ValType = 0x7e
	F32 ValType = 0x7d
	F64 ValType = 0x7c
)

// BlockType is the type of a block, loop or if: BlockEmpty, or one result value type.
type BlockType byte

// Block types: no result, or one result of a value type.
const (
	BlockEmpty BlockType = 0x40
	BlockI32   BlockType = BlockType(I32)
	BlockI64   BlockType = BlockType(I64)
	BlockF32   BlockType = BlockType(F32)
	BlockF64   BlockType = BlockType(F64)
)

// FuncType is a function signature.
type FuncType struct {
	Params, Results []ValType
}

const opEnd = 0x0b

type funcImport struct {
	module, name string
	typeIdx      uint32
}

type function struct {
	typeIdx uint32
	locals  []ValType
	body    []byte
}

type memory struct {
	min uint32
	max *uint32
}

type global struct {
	t       ValType
	mutable bool
	init    []byte
}

type export struct {
	name string
	kind byte
	idx  uint32
}

type dataSegment struct {
	offset uint32
	b      []byte
}

type customSection struct {
	name    string
	payload []byte
}

// Module is a WebAssembly module under construction. The zero value is not ready: use New.
type Module struct {
	types   []FuncType
	imports []funcImport
	funcs   []function
	memory  *memory
	tables  []memory // funcref tables: limits in entries
	globals []global
	exports []export
	start   *uint32
	data    []dataSegment
	custom  []customSection
}

// New returns an empty module.
func New() *Module { return &Module{} }

// typeIndex returns the index of t in the type section, adding it if it is new.
func (m *Module) typeIndex(t FuncType) uint32 {
	for i, u := range m.types {
		if slices.Equal(u.Params, t.Params) && slices.Equal(u.Results, t.Results) {
			return uint32(i)
		}
	}
	m.types = append(m.types, FuncType{Params: slices.Clone(t.Params), Results: slices.Clone(t.Results)})
	return uint32(len(m.types) - 1)
}

// ImportFunc imports function module.name of type t and returns its function index. Imported
// functions come first in the function index space, so ImportFunc panics if a local function
// has already been added.
func (m *Module) ImportFunc(module, name string, t FuncType) uint32 {
	if len(m.funcs) > 0 {
		panic("wasmbuild: ImportFunc after Func: imports must come first in the function index space")
	}
	m.imports = append(m.imports, funcImport{module: module, name: name, typeIdx: m.typeIndex(t)})
	return uint32(len(m.imports) - 1)
}

// Func adds a local function of type t with the given extra locals (after the parameters in
// the local index space) and returns its function index. body is the function's
// instructions, concatenated, without the final `end`, which Func appends.
func (m *Module) Func(t FuncType, locals []ValType, body ...[]byte) uint32 {
	m.funcs = append(m.funcs, function{typeIdx: m.typeIndex(t), locals: slices.Clone(locals), body: slices.Concat(body...)})
	return uint32(len(m.imports) + len(m.funcs) - 1)
}

// FuncCount returns the index the next function added will have.
func (m *Module) FuncCount() uint32 { return uint32(len(m.imports) + len(m.funcs)) }

// Memory declares the module's memory (memory 0) with minPages initial 64 KiB pages and an
// optional maximum. It panics if called twice: the MVP allows one memory.
func (m *Module) Memory(minPages uint32, maxPages *uint32) {
	if m.memory != nil {
		panic("wasmbuild: Memory called twice")
	}
	mem := &memory{min: minPages}
	if maxPages != nil {
		mx := *maxPages
		mem.max = &mx
	}
	m.memory = mem
}

// Table adds a funcref table of min entries (and at most max, if not nil) and returns its
// index.
func (m *Module) Table(min uint32, max *uint32) uint32 {
	t := memory{min: min}
	if max != nil {
		mx := *max
		t.max = &mx
	}
	m.tables = append(m.tables, t)
	return uint32(len(m.tables) - 1)
}

// Global adds a global of type t, mutable or not, initialised by the constant expression init
// (e.g. I32Const(0), without the final `end`, which Global appends), and returns its index.
func (m *Module) Global(t ValType, mutable bool, init ...[]byte) uint32 {
	m.globals = append(m.globals, global{t: t, mutable: mutable, init: slices.Concat(init...)})
	return uint32(len(m.globals) - 1)
}

// ExportFunc exports function idx under name. idx is not checked.
func (m *Module) ExportFunc(name string, idx uint32) {
	m.exports = append(m.exports, export{name: name, kind: wasmbin.KindFunc, idx: idx})
}

// ExportMemory exports memory 0 under name.
func (m *Module) ExportMemory(name string) {
	m.exports = append(m.exports, export{name: name, kind: wasmbin.KindMemory, idx: 0})
}

// ExportGlobal exports global idx under name. idx is not checked.
func (m *Module) ExportGlobal(name string, idx uint32) {
	m.exports = append(m.exports, export{name: name, kind: wasmbin.KindGlobal, idx: idx})
}

// Start makes function idx the module's start function, run during instantiation.
func (m *Module) Start(idx uint32) {
	m.start = &idx
}

// Data adds an active data segment that copies b into memory 0 at offset on instantiation.
func (m *Module) Data(offset uint32, b []byte) {
	m.data = append(m.data, dataSegment{offset: offset, b: slices.Clone(b)})
}

// Custom adds a custom section (placed after all other sections), e.g. to pad a module.
func (m *Module) Custom(name string, payload []byte) {
	m.custom = append(m.custom, customSection{name: name, payload: slices.Clone(payload)})
}

// Bytes encodes the module in the binary format. Empty sections are left out.
func (m *Module) Bytes() []byte {
	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

	if len(m.types) > 0 {
		b := AppendULEB128(nil, uint64(len(m.types)))
		for _, t := range m.types {
			b = append(b, 0x60)
			b = appendValTypes(b, t.Params)
			b = appendValTypes(b, t.Results)
		}
		out = appendSection(out, wasmbin.SecType, b)
	}

	if len(m.imports) > 0 {
		b := AppendULEB128(nil, uint64(len(m.imports)))
		for _, im := range m.imports {
			b = appendName(b, im.module)
			b = appendName(b, im.name)
			b = append(b, wasmbin.KindFunc)
			b = AppendULEB128(b, uint64(im.typeIdx))
		}
		out = appendSection(out, wasmbin.SecImport, b)
	}

	if len(m.funcs) > 0 {
		b := AppendULEB128(nil, uint64(len(m.funcs)))
		for _, f := range m.funcs {
			b = AppendULEB128(b, uint64(f.typeIdx))
		}
		out = appendSection(out, wasmbin.SecFunction, b)
	}

	if len(m.tables) > 0 {
		b := AppendULEB128(nil, uint64(len(m.tables)))
		for _, t := range m.tables {
			b = append(b, 0x70) // funcref
			if t.max == nil {
				b = append(b, 0x00)
				b = AppendULEB128(b, uint64(t.min))
			} else {
				b = append(b, 0x01)
				b = AppendULEB128(b, uint64(t.min))
				b = AppendULEB128(b, uint64(*t.max))
			}
		}
		out = appendSection(out, 4, b) // table
	}

	if m.memory != nil {
		b := AppendULEB128(nil, 1)
		if m.memory.max == nil {
			b = append(b, 0x00)
			b = AppendULEB128(b, uint64(m.memory.min))
		} else {
			b = append(b, 0x01)
			b = AppendULEB128(b, uint64(m.memory.min))
			b = AppendULEB128(b, uint64(*m.memory.max))
		}
		out = appendSection(out, wasmbin.SecMemory, b)
	}

	if len(m.globals) > 0 {
		b := AppendULEB128(nil, uint64(len(m.globals)))
		for _, g := range m.globals {
			b = append(b, byte(g.t))
			if g.mutable {
				b = append(b, 0x01)
			} else {
				b = append(b, 0x00)
			}
			b = append(b, g.init...)
			b = append(b, opEnd)
		}
		out = appendSection(out, wasmbin.SecGlobal, b)
	}

	if len(m.exports) > 0 {
		b := AppendULEB128(nil, uint64(len(m.exports)))
		for _, e := range m.exports {
			b = appendName(b, e.name)
			b = append(b, e.kind)
			b = AppendULEB128(b, uint64(e.idx))
		}
		out = appendSection(out, wasmbin.SecExport, b)
	}

	if m.start != nil {
		out = appendSection(out, wasmbin.SecStart, AppendULEB128(nil, uint64(*m.start)))
	}

	if len(m.funcs) > 0 {
		b := AppendULEB128(nil, uint64(len(m.funcs)))
		for _, f := range m.funcs {
			code := appendLocals(nil, f.locals)
			code = append(code, f.body...)
			code = append(code, opEnd)
			b = AppendULEB128(b, uint64(len(code)))
			b = append(b, code...)
		}
		out = appendSection(out, wasmbin.SecCode, b)
	}

	if len(m.data) > 0 {
		b := AppendULEB128(nil, uint64(len(m.data)))
		for _, d := range m.data {
			b = append(b, 0x00) // active, memory 0
			b = append(b, I32Const(int32(d.offset))...)
			b = append(b, opEnd)
			b = AppendULEB128(b, uint64(len(d.b)))
			b = append(b, d.b...)
		}
		out = appendSection(out, wasmbin.SecData, b)
	}

	for _, c := range m.custom {
		out = appendSection(out, wasmbin.SecCustom, append(appendName(nil, c.name), c.payload...))
	}
	return out
}

func appendSection(out []byte, id byte, content []byte) []byte {
	out = append(out, id)
	out = AppendULEB128(out, uint64(len(content)))
	return append(out, content...)
}

func appendName(b []byte, s string) []byte {
	b = AppendULEB128(b, uint64(len(s)))
	return append(b, s...)
}

func appendValTypes(b []byte, ts []ValType) []byte {
	b = AppendULEB128(b, uint64(len(ts)))
	for _, t := range ts {
		b = append(b, byte(t))
	}
	return b
}

// appendLocals encodes locals as runs of equal types, as the code section requires.
func appendLocals(b []byte, locals []ValType) []byte {
	type run struct {
		n uint32
		t ValType
	}
	var runs []run
	for _, t := range locals {
		if len(runs) > 0 && runs[len(runs)-1].t == t {
			runs[len(runs)-1].n++
		} else {
			runs = append(runs, run{n: 1, t: t})
		}
	}
	b = AppendULEB128(b, uint64(len(runs)))
	for _, r := range runs {
		b = AppendULEB128(b, uint64(r.n))
		b = append(b, byte(r.t))
	}
	return b
}

// String returns the type's name in the text format ("i32", ...).
func (t ValType) String() string {
	switch t {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	}
	return fmt.Sprintf("ValType(%#x)", byte(t))
}
