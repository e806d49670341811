package instrument

import "fmt"

// Instruction decoding (https://webassembly.github.io/spec/core/binary/instructions.html).
// Each opcode has an immediate class saying what follows it; scan uses it to step over the
// immediates and find the loops.

// Immediate classes.
const (
	immUnknown    = iota // not an opcode this package knows: an error
	immNone              // no immediate
	immBlock             // block type (block, if)
	immLoop              // block type, and the check goes after it
	immU32               // one u32 (indices, branch depths)
	immU32U32            // two u32s
	immBrTable           // vec(u32) u32
	immSelectT           // vec(valtype)
	immMemarg            // memarg: align (bit 6: a memory index follows), [memidx], offset
	immS32               // i32.const
	immS64               // i64.const
	immF32               // 4 bytes
	immF64               // 8 bytes
	immHeapType          // ref.null: a heap type (one byte for funcref and externref)
	immPrefixFC          // 0xFC: u32 sub-opcode (saturating truncation, bulk memory, tables)
	immPrefixFD          // 0xFD: u32 sub-opcode (SIMD)
	immPrefixFE          // 0xFE: u32 sub-opcode (threads)
	immV128              // 16 bytes (v128.const, i8x16.shuffle)
	immLane              // one lane-index byte
	immMemargLane        // memarg and a lane-index byte
	immFence             // one reserved 0x00 byte (atomic.fence)
)

// opcodes is the immediate class of every single-byte opcode.
var opcodes = func() (t [256]uint8) {
	set := func(lo, hi int, class uint8) {
		for op := lo; op <= hi; op++ {
			t[op] = class
		}
	}
	set(0x00, 0x01, immNone)     // unreachable nop
	set(0x02, 0x02, immBlock)    // block
	set(0x03, 0x03, immLoop)     // loop
	set(0x04, 0x04, immBlock)    // if
	set(0x05, 0x05, immNone)     // else
	set(0x0b, 0x0b, immNone)     // end
	set(0x0c, 0x0d, immU32)      // br br_if
	set(0x0e, 0x0e, immBrTable)  // br_table
	set(0x0f, 0x0f, immNone)     // return
	set(0x10, 0x10, immU32)      // call
	set(0x11, 0x11, immU32U32)   // call_indirect typeidx tableidx
	set(0x12, 0x12, immU32)      // return_call
	set(0x13, 0x13, immU32U32)   // return_call_indirect
	set(0x1a, 0x1b, immNone)     // drop select
	set(0x1c, 0x1c, immSelectT)  // select t*
	set(0x20, 0x24, immU32)      // local.get/set/tee global.get/set
	set(0x25, 0x26, immU32)      // table.get/set
	set(0x28, 0x3e, immMemarg)   // loads and stores
	set(0x3f, 0x40, immU32)      // memory.size/grow memidx
	set(0x41, 0x41, immS32)      // i32.const
	set(0x42, 0x42, immS64)      // i64.const
	set(0x43, 0x43, immF32)      // f32.const
	set(0x44, 0x44, immF64)      // f64.const
	set(0x45, 0xc4, immNone)     // numeric and sign-extension
	set(0xd0, 0xd0, immHeapType) // ref.null
	set(0xd1, 0xd1, immNone)     // ref.is_null
	set(0xd2, 0xd2, immU32)      // ref.func
	set(0xfc, 0xfc, immPrefixFC)
	set(0xfd, 0xfd, immPrefixFD)
	set(0xfe, 0xfe, immPrefixFE)
	return t
}()

// opcodesFC is the immediate class of the 0xFC sub-opcodes.
var opcodesFC = [...]uint8{
	0: immNone, 1: immNone, 2: immNone, 3: immNone, // i32.trunc_sat_f32_s ... i32.trunc_sat_f64_u
	4: immNone, 5: immNone, 6: immNone, 7: immNone, // i64.trunc_sat_*
	8:  immU32U32, // memory.init dataidx memidx
	9:  immU32,    // data.drop dataidx
	10: immU32U32, // memory.copy memidx memidx
	11: immU32,    // memory.fill memidx
	12: immU32U32, // table.init elemidx tableidx
	13: immU32,    // elem.drop elemidx
	14: immU32U32, // table.copy tableidx tableidx
	15: immU32,    // table.grow
	16: immU32,    // table.size
	17: immU32,    // table.fill
}

// opcodesFD is the immediate class of the 0xFD (SIMD) sub-opcodes 0-255. The gaps of the
// specification's table (154, 162, ...) stay immUnknown, and so do the relaxed-SIMD
// sub-opcodes (256 and up).
var opcodesFD = func() (t [256]uint8) {
	for op := range t {
		t[op] = immNone
	}
	for op := 0; op <= 11; op++ {
		t[op] = immMemarg // v128.load ... v128.store
	}
	t[12] = immV128 // v128.const
	t[13] = immV128 // i8x16.shuffle
	for op := 21; op <= 34; op++ {
		t[op] = immLane // extract_lane and replace_lane
	}
	for op := 84; op <= 91; op++ {
		t[op] = immMemargLane // v128.load8_lane ... v128.store64_lane
	}
	t[92] = immMemarg // v128.load32_zero
	t[93] = immMemarg // v128.load64_zero
	for _, op := range []int{154, 162, 165, 166, 175, 176, 178, 179, 180, 187, 194, 197, 198, 207, 208, 210, 211, 212, 226, 238} {
		t[op] = immUnknown
	}
	return t
}()

// opcodeFE returns the immediate class of a 0xFE (threads) sub-opcode.
func opcodeFE(sub uint32) uint8 {
	switch {
	case sub <= 0x02: // memory.atomic.notify, memory.atomic.wait32/64
		return immMemarg
	case sub == 0x03: // atomic.fence
		return immFence
	case sub >= 0x10 && sub <= 0x4e: // atomic loads, stores and read-modify-writes
		return immMemarg
	}
	return immUnknown
}

// frame is an open block, loop or if of the body being scanned.
type frame struct {
	loop  int // index in ins.inserts of the loop's check, or -1 for a block or if
	start int // input offset where the loop's body starts
}

// scan decodes the body of function fn, in[start:end] (locals and code), checks it against
// the limits, and records in ins.inserts the checks to insert:
//
//   - at the function's entry, a static charge for the whole body — unless the body reaches
//     a loop header before any branch or call (as every standard-Go function does), in which
//     case that loop's check stands for the entry and is charged for the whole body;
//   - after the block type of every loop, a static charge for the loop's body;
//   - before every bulk memory and table instruction, a dynamic charge for its length;
//   - before every call of an imported function, its charge and a stop test.
func (ins *instrumenter) scan(fn uint64, start, end int) error {
	b := ins.in
	ins.inserts = append(ins.inserts[:0], insert{kind: insStatic}) // the entry's slot
	ins.frames = ins.frames[:0]

	groups, pos := readU32(b, start, end)
	var locals uint64
	for i := uint32(0); i < groups && pos >= 0; i++ {
		var n uint32
		n, pos = readU32(b, pos, end)
		locals += uint64(n)
		pos = skipValType(b, pos, end)
	}
	if pos < 0 {
		return fmt.Errorf("instrument: function %d (byte offset %d): truncated or malformed locals", fn, start)
	}
	if lim := ins.lim.MaxLocals; lim > 0 && locals > uint64(lim) {
		return fmt.Errorf("%w: function %d declares %d locals; the limit is %d", ErrLimit, fn, locals, lim)
	}
	ins.stats.MaxLocals = max(ins.stats.MaxLocals, uint32(locals))
	// wazero sets up every local and parameter of every function: ~13 ns and ~8 bytes kept
	// each (measured: 8,000 functions of 50,000 locals, 5.3 s and 3 GB).
	if d := fn - uint64(ins.importedFuncs); d < uint64(len(ins.funcTypes)) {
		if t := ins.funcTypes[d]; t < uint32(len(ins.typeParams)) {
			locals += uint64(ins.typeParams[t])
		}
	}
	ins.stats.TotalLocals += locals
	if lim := ins.lim.MaxTotalLocals; lim > 0 && ins.stats.TotalLocals > lim {
		return fmt.Errorf("%w: function %d: the module's functions have %d locals and parameters together; the limit is %d", ErrLimit, fn, ins.stats.TotalLocals, lim)
	}
	ins.stats.CompileWork += 5 * locals
	if lim := ins.lim.MaxCompileWork; lim > 0 && ins.stats.CompileWork > lim {
		return fmt.Errorf("%w: function %d: the module is too complex to compile (compile work over %d: many locals)", ErrLimit, fn, lim)
	}
	code := pos
	if lim := ins.lim.MaxFunctionSize; lim > 0 && end-code > int(lim) {
		return fmt.Errorf("%w: function %d has %d bytes of code; the limit is %d", ErrLimit, fn, end-code, lim)
	}
	entryOpen := true // no branch or call yet: a loop reached now stands for the entry check
	entryLoop := -1   // the index in ins.inserts of the loop that does
	ins.frames = append(ins.frames, frame{loop: -1})

	last := -1 // the last opcode
	for pos < end {
		at := pos
		op := b[pos]
		pos++
		last = int(op)
		switch op {
		case 0x04, 0x05, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13: // if else br br_if br_table return call*
			entryOpen = false
		case 0x0b: // end
			entryOpen = false
			ins.stats.CompileWork += uint64(len(ins.frames))
			n := len(ins.frames)
			if n == 0 {
				return fmt.Errorf("instrument: function %d: byte offset %d: `end` with no open block", fn, at)
			}
			f := ins.frames[n-1]
			ins.frames = ins.frames[:n-1]
			if f.loop >= 0 {
				ins.inserts[f.loop].charge = units(at - f.start)
			}
		}
		switch opcodes[op] {
		case immNone:
		case immBlock:
			pos = skipBlockType(b, pos, end)
			if err := ins.push(fn, at, frame{loop: -1}); err != nil {
				return err
			}
		case immLoop:
			pos = skipBlockType(b, pos, end)
			if pos >= 0 {
				if entryOpen {
					entryLoop = len(ins.inserts)
					entryOpen = false
				}
				ins.inserts = append(ins.inserts, insert{at: pos, kind: insStatic})
				if err := ins.push(fn, at, frame{loop: len(ins.inserts) - 1, start: pos}); err != nil {
					return err
				}
			}
		case immU32:
			if op == 0x10 || op == 0x12 { // call, return_call
				var idx uint32
				idx, pos = readU32(b, pos, end)
				if pos >= 0 && idx < ins.importedFuncs {
					c := ins.hostCharge[idx]
					ins.inserts = append(ins.inserts, insert{at: at, kind: insImport, charge: importCallCharge, dyn: c.dyn, shift: c.shift, spill: c.spill})
				}
				break
			}
			if op == 0xd2 { // ref.func
				var idx uint32
				idx, pos = readU32(b, pos, end)
				if pos >= 0 && idx < ins.importedFuncs {
					return fmt.Errorf("%w: function %d: byte offset %d: ref.func of imported function %d (host functions may only be called directly)", ErrLimit, fn, at, idx)
				}
				break
			}
			pos = skipLEB(b, pos, end, maxU32LEB)
		case immU32U32:
			pos = skipLEB(b, pos, end, maxU32LEB)
			pos = skipLEB(b, pos, end, maxU32LEB)
		case immBrTable:
			var n uint32
			n, pos = readU32(b, pos, end)
			if lim := ins.lim.MaxBrTableTargets; lim > 0 && n > lim {
				return fmt.Errorf("%w: function %d: byte offset %d: br_table with %d targets; the limit is %d", ErrLimit, fn, at, n, lim)
			}
			ins.stats.MaxBrTableTargets = max(ins.stats.MaxBrTableTargets, n)
			ins.stats.CompileWork += uint64(n) * uint64(n) / 16 // wazero's compile time grows with n²
			if lim := ins.lim.MaxCompileWork; lim > 0 && ins.stats.CompileWork > lim {
				return fmt.Errorf("%w: function %d: byte offset %d: the module's control structure is too complex to compile (compile work over %d: deep nesting or large br_tables)", ErrLimit, fn, at, lim)
			}
			for i := uint64(0); i <= uint64(n) && pos >= 0; i++ { // n labels and the default
				pos = skipLEB(b, pos, end, maxU32LEB)
			}
		case immSelectT:
			var n uint32
			n, pos = readU32(b, pos, end)
			for i := uint32(0); i < n && pos >= 0; i++ {
				pos = skipValType(b, pos, end)
			}
		case immMemarg:
			pos = skipMemarg(b, pos, end)
		case immS32:
			pos = skipLEB(b, pos, end, 5)
		case immS64:
			pos = skipLEB(b, pos, end, 10)
		case immF32:
			pos = skipN(pos, end, 4)
		case immF64:
			pos = skipN(pos, end, 8)
		case immHeapType:
			pos = skipLEB(b, pos, end, maxU32LEB) // s33
		case immPrefixFC, immPrefixFD, immPrefixFE:
			var sub uint32
			sub, pos = readU32(b, pos, end)
			if pos < 0 {
				break
			}
			class := uint8(immUnknown)
			switch op {
			case 0xfc:
				if sub < uint32(len(opcodesFC)) {
					class = opcodesFC[sub]
				}
				switch sub {
				case 8, 10, 11: // memory.init, memory.copy, memory.fill: [.. n]
					ins.inserts = append(ins.inserts, insert{at: at, kind: insDynamic, shift: memoryShift})
				case 12, 14, 15, 17: // table.init, table.copy, table.grow, table.fill: [.. n]
					ins.inserts = append(ins.inserts, insert{at: at, kind: insDynamic, shift: tableShift})
				}
			case 0xfd:
				if sub < uint32(len(opcodesFD)) {
					class = opcodesFD[sub]
				}
			case 0xfe:
				class = opcodeFE(sub)
			}
			switch class {
			case immNone:
			case immU32:
				pos = skipLEB(b, pos, end, maxU32LEB)
			case immU32U32:
				pos = skipLEB(b, pos, end, maxU32LEB)
				pos = skipLEB(b, pos, end, maxU32LEB)
			case immMemarg:
				pos = skipMemarg(b, pos, end)
			case immV128:
				pos = skipN(pos, end, 16)
			case immLane:
				pos = skipByte(pos, end)
			case immMemargLane:
				pos = skipMemarg(b, pos, end)
				pos = skipByte(pos, end)
			case immFence:
				pos = skipByte(pos, end)
			default:
				return fmt.Errorf("instrument: function %d: byte offset %d: unknown opcode %#02x %d", fn, at, op, sub)
			}
		default:
			return fmt.Errorf("instrument: function %d: byte offset %d: unknown opcode %#02x", fn, at, op)
		}
		if pos < 0 {
			return fmt.Errorf("instrument: function %d: byte offset %d: truncated or malformed immediate of opcode %#02x", fn, at, op)
		}
	}
	if last != 0x0b || len(ins.frames) != 0 {
		return fmt.Errorf("instrument: function %d (byte offset %d): the body does not end with `end`", fn, start)
	}
	if entryLoop < 0 {
		ins.inserts[0] = insert{at: code, kind: insStatic, charge: units(end - code), entry: true}
	} else {
		// The loop stands for the entry: it is charged for the whole body, the code before
		// it and after its end included (each runs at most once per entry between checks).
		ins.inserts[entryLoop].charge = max(ins.inserts[entryLoop].charge, units(end-code))
	}
	return nil
}

// push opens a block, checking the nesting limit.
func (ins *instrumenter) push(fn uint64, at int, f frame) error {
	ins.frames = append(ins.frames, f)
	ins.stats.CompileWork += uint64(len(ins.frames))
	if lim := ins.lim.MaxCompileWork; lim > 0 && ins.stats.CompileWork > lim {
		return fmt.Errorf("%w: function %d: byte offset %d: the module's control structure is too complex to compile (compile work over %d: deep nesting or large br_tables)", ErrLimit, fn, at, lim)
	}
	depth := uint32(len(ins.frames) - 1) // the function's own frame is not a block
	if lim := ins.lim.MaxNesting; lim > 0 && depth > lim {
		return fmt.Errorf("%w: function %d: byte offset %d: blocks nested %d deep; the limit is %d", ErrLimit, fn, at, depth, lim)
	}
	ins.stats.MaxNesting = max(ins.stats.MaxNesting, depth)
	return nil
}

// skipBlockType skips the block type of a block, loop or if: 0x40 (empty), a value type, or
// a non-negative s33 type index.
func skipBlockType(b []byte, pos, end int) int {
	if pos < end && b[pos] < 0x40 { // the common case: a type index below 64
		return pos + 1
	}
	v, p := readS33(b, pos, end)
	if p < 0 {
		return -1
	}
	switch {
	case v >= 0: // type index
		return p
	case v == -64: // 0x40: empty
		return p
	case v >= -5: // 0x7f..0x7b: i32 i64 f32 f64 v128
		return p
	case v == -16, v == -17, v == -23: // 0x70 funcref, 0x6f externref, 0x69 exnref
		return p
	case v == -29, v == -28: // 0x63 ref null, 0x64 ref: a heap type follows
		return skipLEB(b, p, end, maxU32LEB)
	}
	return -1
}

// skipMemarg skips a memarg: the alignment exponent, a memory index if its bit 6 is set
// (multi-memory), and the offset (up to 64 bits, for memory64).
func skipMemarg(b []byte, pos, end int) int {
	align, p := readU32(b, pos, end)
	if p < 0 {
		return -1
	}
	if align&0x40 != 0 {
		p = skipLEB(b, p, end, maxU32LEB)
	}
	return skipLEB(b, p, end, 10)
}

// skipN skips n bytes.
func skipN(pos, end, n int) int {
	if pos < 0 || end-pos < n {
		return -1
	}
	return pos + n
}
