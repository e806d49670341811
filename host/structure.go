package host

import "github.com/osprey-ml/osprey/host/internal/instrument"

// StructureLimits are the limits a module's structure is checked against when it is
// applied, before it is compiled: they bound what compiling and instantiating it can cost
// (wazero allocates by declared sizes, and its compile time grows with the square of block
// nesting and of br_table sizes). A module beyond one is refused with ErrModule, naming the
// limit and the function. Zero fields mean no limit. docs/sandbox.md lists them with the
// measurements behind the defaults.
type StructureLimits struct {
	Functions      uint32 // imported and defined functions
	FunctionSize   uint32 // bytes of code in one function body
	Locals         uint32 // locals declared by one function
	Nesting        uint32 // blocks, loops and ifs open at once in one function
	BrTableTargets uint32 // targets of one br_table
	Imports        uint32 // imports
	Tables         uint32 // tables
	// TableEntries bounds the entries of all of a module's tables together (8 bytes each, per
	// instance): tables declaring more at least are refused, and the tables' maximums are
	// capped so that table.grow fails in the guest beyond it. Table memory counts against the
	// memory budget with the linear memory.
	TableEntries uint32
	// TotalLocals bounds the locals and parameters of all functions together: wazero sets up
	// each (~13 ns of compile and ~8 bytes kept, measured).
	TotalLocals uint64
	// Globals bounds the globals (imported and defined): wazero walks each once per function
	// it compiles, and keeps an object of each per instance.
	Globals uint32
	// ElementEntries bounds the entries of all element segments together: wazero keeps 8
	// bytes of each per instance (charged to the memory budget), passive segments included.
	ElementEntries uint64
	// CompileWork bounds an estimate of wazero's superlinear compile costs: over every block,
	// loop, if and end, the blocks open there, plus n²/16 for a br_table of n targets, 5 for
	// each local and parameter, 2 for each global in each function. A unit is about 2.6 ns of
	// compile time.
	CompileWork uint64
}

// DefaultStructureLimits are generous for real guests — a standard-Go guest has ~1,700
// functions, blocks nested 549 deep, 17 locals (8,411 in all), 8 globals, 1,704 element
// entries, br_tables of 895 targets, functions of 29 KB and a compile work of 4.1 M — and
// keep the compile of any module within about a second beyond what its size costs.
var DefaultStructureLimits = StructureLimits{
	Functions:      200_000,
	FunctionSize:   4 << 20,
	Locals:         50_000,
	Nesting:        4096,
	BrTableTargets: 16_384,
	Imports:        1024,
	Tables:         4,
	TableEntries:   1 << 20,
	TotalLocals:    1 << 22,
	Globals:        16_384,
	ElementEntries: 1 << 20,
	CompileWork:    1 << 28,
}

func (l StructureLimits) instrumentLimits() instrument.Limits {
	return instrument.Limits{
		MaxFunctions: l.Functions, MaxFunctionSize: l.FunctionSize, MaxLocals: l.Locals,
		MaxNesting: l.Nesting, MaxBrTableTargets: l.BrTableTargets, MaxImports: l.Imports,
		MaxTables: l.Tables, MaxTableEntries: l.TableEntries, MaxCompileWork: l.CompileWork,
		MaxTotalLocals: l.TotalLocals, MaxGlobals: l.Globals, MaxElementEntries: l.ElementEntries,
	}
}

// Check checks a module's structure against l without compiling it: what every module the
// host runs is checked against first, exported for the hosts of other module kinds (Extism
// plugins, host/extism) that compile through another runtime. It returns an error naming
// the limit a module exceeds, or what is malformed.
//
// A start section is allowed: such a host bounds instantiation itself (host/extism
// instantiates under the plugin's timeout, with wazero closing the module when it passes).
func (l StructureLimits) Check(wasm []byte) error {
	lim := l.instrumentLimits()
	lim.AllowStart = true
	if _, err := instrument.Instrument(wasm, lim); err != nil {
		return err
	}
	return nil
}
