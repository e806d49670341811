package instrument

import (
	"errors"
	"fmt"

	"github.com/osprey-ml/osprey/host/internal/wasmbin"
)

// ErrLimit is wrapped by the errors of a module that exceeds a structural limit (or uses a
// construct the host does not allow, such as a reference to an imported function).
var ErrLimit = errors.New("module exceeds a limit")

// Limits are the structural limits a module is checked against before it is compiled. They
// bound what compiling and instantiating it can cost: wazero allocates by declared sizes
// (locals, table entries) and its compile time grows with the square of block nesting. A
// zero field means no limit.
type Limits struct {
	MaxFunctions      uint32 // imported and defined functions
	MaxFunctionSize   uint32 // bytes of code in one function body
	MaxLocals         uint32 // locals declared by one function
	MaxNesting        uint32 // blocks, loops and ifs open at once in one function
	MaxBrTableTargets uint32 // targets of one br_table
	MaxCompileWork    uint64 // Stats.CompileWork of the whole module
	MaxTotalLocals    uint64 // locals and parameters of all functions together
	MaxGlobals        uint32 // imported and defined globals
	// MaxElementEntries bounds the entries of all element segments together (wazero keeps
	// 8 bytes of each per instance, passive segments included).
	MaxElementEntries uint64
	MaxImports        uint32 // imports
	MaxTables         uint32 // tables defined
	// MaxTableEntries bounds the entries of all tables together: a module whose tables'
	// minimums add up to more is refused, and each table's maximum is lowered (or set,
	// when it has none) so that the maximums add up to at most this. table.grow beyond
	// it fails in the guest (returns -1), as the specification allows.
	MaxTableEntries uint32
	// AllowStart lets a module have a start section, for a caller that bounds
	// instantiation itself rather than through the stop flag (Extism plugins, run with
	// wazero's close-on-context-done; host/extism).
	AllowStart bool
}

// tables rewrites the table section with each table's maximum capped (see
// Limits.MaxTableEntries).
func (ins *instrumenter) tables(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	if p < 0 {
		return fmt.Errorf("instrument: table section at byte offset %d: truncated or malformed count", pos)
	}
	if lim := ins.lim.MaxTables; lim > 0 && count > lim {
		return fmt.Errorf("%w: %d tables; the limit is %d", ErrLimit, count, lim)
	}
	type table struct {
		ref      []byte
		min, max uint64
		hasMax   bool
	}
	tabs := make([]table, 0, count)
	var mins uint64
	for i := uint32(0); i < count; i++ {
		at := p
		if p < end && in[p] == 0x40 {
			return fmt.Errorf("instrument: table %d at byte offset %d: tables with an initialiser are not supported", i, at)
		}
		q := skipValType(in, p, end)
		if q < 0 || q >= end {
			return fmt.Errorf("instrument: table %d at byte offset %d: truncated or malformed", i, at)
		}
		t := table{ref: in[p:q]}
		flags := in[q]
		if flags > 1 {
			return fmt.Errorf("instrument: table %d at byte offset %d: limits flags %#x are not supported (shared or 64-bit tables)", i, at, flags)
		}
		var v uint32
		v, p = readU32(in, q+1, end)
		t.min = uint64(v)
		if flags == 1 {
			v, p = readU32(in, p, end)
			t.max, t.hasMax = uint64(v), true
		}
		if p < 0 {
			return fmt.Errorf("instrument: table %d at byte offset %d: truncated or malformed limits", i, at)
		}
		mins += t.min
		tabs = append(tabs, t)
	}
	if p != end {
		return fmt.Errorf("instrument: table section at byte offset %d: %d bytes left over after %d tables", pos, end-p, count)
	}
	lim := uint64(ins.lim.MaxTableEntries)
	if lim > 0 && mins > lim {
		return fmt.Errorf("%w: the tables declare %d entries at least; the limit is %d (8 bytes an entry per instance)", ErrLimit, mins, lim)
	}
	at := ins.beginSection(wasmbin.SecTable)
	ins.out = appendU32(ins.out, count)
	var spare uint64
	if lim > 0 && count > 0 {
		spare = (lim - mins) / uint64(count)
	}
	for _, t := range tabs {
		ins.out = append(ins.out, t.ref...)
		max, hasMax := t.max, t.hasMax
		if lim > 0 && (!hasMax || max > t.min+spare) {
			max, hasMax = t.min+spare, true
		}
		if hasMax {
			ins.out = append(ins.out, 0x01)
			ins.out = appendU32(ins.out, uint32(t.min))
			ins.out = appendU32(ins.out, uint32(max))
			ins.tableEntries += max
		} else {
			ins.out = append(ins.out, 0x00)
			ins.out = appendU32(ins.out, uint32(t.min))
			ins.tableEntries += 1 << 32 // unbounded but for the runtime's own limit
		}
	}
	return ins.endSection(at)
}

// elements checks the element section: no segment may hold an imported function (host
// functions are called directly, where their calls are charged, never through a table).
func (ins *instrumenter) elements(pos, end int) error {
	in := ins.in
	count, p := readU32(in, pos, end)
	if p < 0 {
		return fmt.Errorf("instrument: element section at byte offset %d: truncated or malformed count", pos)
	}
	for i := uint32(0); i < count; i++ {
		at := p
		var flags uint32
		flags, p = readU32(in, p, end)
		if p < 0 || flags > 7 {
			return fmt.Errorf("instrument: element segment %d at byte offset %d: malformed flags", i, at)
		}
		var err error
		if flags&0x01 == 0 { // active: [table index] offset expression
			if flags&0x02 != 0 {
				p = skipLEB(in, p, end, maxU32LEB)
			}
			if p, err = ins.constExpr(p, end); err != nil {
				return fmt.Errorf("%w (element segment %d)", err, i)
			}
		}
		exprs := flags&0x04 != 0
		if flags&0x03 != 0 { // an element kind (0x00) or a reference type follows
			if exprs {
				p = skipValType(in, p, end)
			} else {
				p = skipByte(p, end)
			}
		}
		var n uint32
		n, p = readU32(in, p, end)
		ins.elemEntries += uint64(n)
		if lim := ins.lim.MaxElementEntries; lim > 0 && ins.elemEntries > lim {
			return fmt.Errorf("%w: the element segments hold more than %d entries together (the limit; 8 bytes each per instance)", ErrLimit, lim)
		}
		for k := uint32(0); k < n && p >= 0; k++ {
			if exprs {
				if p, err = ins.constExpr(p, end); err != nil {
					return fmt.Errorf("%w (element segment %d)", err, i)
				}
				continue
			}
			var idx uint32
			idx, p = readU32(in, p, end)
			if p >= 0 && idx < ins.importedFuncs {
				return fmt.Errorf("%w: element segment %d holds imported function %d (host functions may only be called directly)", ErrLimit, i, idx)
			}
		}
		if p < 0 {
			return fmt.Errorf("instrument: element segment %d at byte offset %d: truncated or malformed", i, at)
		}
	}
	if p != end {
		return fmt.Errorf("instrument: element section at byte offset %d: %d bytes left over after %d segments", pos, end-p, count)
	}
	return nil
}

// constExpr skips a constant expression (up to its `end`), refusing a ref.func of an
// imported function. It returns the position after the expression, or -1 if malformed.
func (ins *instrumenter) constExpr(pos, end int) (int, error) {
	b := ins.in
	for pos >= 0 && pos < end {
		op := b[pos]
		pos++
		switch op {
		case 0x0b:
			return pos, nil
		case 0x41: // i32.const
			pos = skipLEB(b, pos, end, 5)
		case 0x42: // i64.const
			pos = skipLEB(b, pos, end, 10)
		case 0x43:
			pos = skipN(pos, end, 4)
		case 0x44:
			pos = skipN(pos, end, 8)
		case 0x23: // global.get
			pos = skipLEB(b, pos, end, maxU32LEB)
		case 0xd0: // ref.null
			pos = skipLEB(b, pos, end, maxU32LEB)
		case 0xd2: // ref.func
			var idx uint32
			idx, pos = readU32(b, pos, end)
			if pos >= 0 && idx < ins.importedFuncs {
				return -1, fmt.Errorf("%w: ref.func of imported function %d (host functions may only be called directly)", ErrLimit, idx)
			}
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant expressions: add, sub, mul
		case 0xfd: // v128.const
			var sub uint32
			sub, pos = readU32(b, pos, end)
			if sub != 12 {
				return -1, nil
			}
			pos = skipN(pos, end, 16)
		default:
			return -1, nil
		}
	}
	return -1, nil
}
