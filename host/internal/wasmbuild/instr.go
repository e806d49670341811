package wasmbuild

import "slices"

// LEB128 encodings (https://webassembly.github.io/spec/core/binary/values.html#integers).

// AppendULEB128 appends v in unsigned LEB128, the encoding of indices, counts and sizes.
func AppendULEB128(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// AppendSLEB128 appends v in signed LEB128, the encoding of i32.const and i64.const operands.
func AppendSLEB128(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7 // arithmetic shift: keeps the sign
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// ULEB128 returns v in unsigned LEB128.
func ULEB128(v uint64) []byte { return AppendULEB128(nil, v) }

// SLEB128 returns v in signed LEB128.
func SLEB128(v int64) []byte { return AppendSLEB128(nil, v) }

// Seq concatenates instructions into one.
func Seq(instrs ...[]byte) []byte { return slices.Concat(instrs...) }

func op(code byte) []byte { return []byte{code} }

func opIdx(code byte, idx uint32) []byte { return AppendULEB128([]byte{code}, uint64(idx)) }

func structured(code byte, bt BlockType, body [][]byte) []byte {
	b := []byte{code, byte(bt)}
	for _, in := range body {
		b = append(b, in...)
	}
	return append(b, opEnd)
}

func memarg(code byte, align, offset uint32) []byte {
	b := AppendULEB128([]byte{code}, uint64(align))
	return AppendULEB128(b, uint64(offset))
}

// Control instructions.

// Unreachable is `unreachable`: traps when executed.
func Unreachable() []byte { return op(0x00) }

// Nop is `nop`.
func Nop() []byte { return op(0x01) }

// Block is `block bt body... end`. A branch to it jumps past its end.
func Block(bt BlockType, body ...[]byte) []byte { return structured(0x02, bt, body) }

// Loop is `loop bt body... end`. A branch to it jumps back to its start.
func Loop(bt BlockType, body ...[]byte) []byte { return structured(0x03, bt, body) }

// If is `if bt then... end`: pops an i32 and runs then if it is not zero.
func If(bt BlockType, then ...[]byte) []byte { return structured(0x04, bt, then) }

// IfElse is `if bt then else els end`.
func IfElse(bt BlockType, then, els []byte) []byte {
	b := []byte{0x04, byte(bt)}
	b = append(b, then...)
	b = append(b, 0x05)
	b = append(b, els...)
	return append(b, opEnd)
}

// Br is `br depth`: branches to the depth-th enclosing block (0 is the innermost).
func Br(depth uint32) []byte { return opIdx(0x0c, depth) }

// BrIf is `br_if depth`: pops an i32 and branches if it is not zero.
func BrIf(depth uint32) []byte { return opIdx(0x0d, depth) }

// Return is `return`.
func Return() []byte { return op(0x0f) }

// Call is `call idx`.
func Call(idx uint32) []byte { return opIdx(0x10, idx) }

// Parametric instructions.

// Drop is `drop`.
func Drop() []byte { return op(0x1a) }

// Select is `select`: pops c, b, a and pushes a if c is not zero, else b.
func Select() []byte { return op(0x1b) }

// Variable instructions.

// LocalGet is `local.get idx`.
func LocalGet(idx uint32) []byte { return opIdx(0x20, idx) }

// LocalSet is `local.set idx`.
func LocalSet(idx uint32) []byte { return opIdx(0x21, idx) }

// LocalTee is `local.tee idx`.
func LocalTee(idx uint32) []byte { return opIdx(0x22, idx) }

// GlobalGet is `global.get idx`.
func GlobalGet(idx uint32) []byte { return opIdx(0x23, idx) }

// GlobalSet is `global.set idx`.
func GlobalSet(idx uint32) []byte { return opIdx(0x24, idx) }

// Memory instructions. align is the log2 of the alignment hint (at most the access size's,
// e.g. 2 for i32, 3 for i64); offset is added to the address operand.

// I32Load is `i32.load align offset`.
func I32Load(align, offset uint32) []byte { return memarg(0x28, align, offset) }

// I64Load is `i64.load align offset`.
func I64Load(align, offset uint32) []byte { return memarg(0x29, align, offset) }

// I32Load8U is `i32.load8_u align offset`.
func I32Load8U(align, offset uint32) []byte { return memarg(0x2d, align, offset) }

// I32Store is `i32.store align offset`.
func I32Store(align, offset uint32) []byte { return memarg(0x36, align, offset) }

// I64Store is `i64.store align offset`.
func I64Store(align, offset uint32) []byte { return memarg(0x37, align, offset) }

// I32Store8 is `i32.store8 align offset`.
func I32Store8(align, offset uint32) []byte { return memarg(0x3a, align, offset) }

// MemorySize is `memory.size`: pushes memory 0's size in pages.
func MemorySize() []byte { return []byte{0x3f, 0x00} }

// MemoryGrow is `memory.grow`: pops a page count, grows memory 0 by it and pushes the old
// size in pages, or -1 if the memory could not grow.
func MemoryGrow() []byte { return []byte{0x40, 0x00} }

// Numeric instructions.

// I32Const is `i32.const v`.
func I32Const(v int32) []byte { return AppendSLEB128([]byte{0x41}, int64(v)) }

// I64Const is `i64.const v`.
func I64Const(v int64) []byte { return AppendSLEB128([]byte{0x42}, v) }

// I32Eqz is `i32.eqz`.
func I32Eqz() []byte { return op(0x45) }

// I32Eq is `i32.eq`.
func I32Eq() []byte { return op(0x46) }

// I32Ne is `i32.ne`.
func I32Ne() []byte { return op(0x47) }

// I32LtS is `i32.lt_s`.
func I32LtS() []byte { return op(0x48) }

// I32LtU is `i32.lt_u`.
func I32LtU() []byte { return op(0x49) }

// I32GtS is `i32.gt_s`.
func I32GtS() []byte { return op(0x4a) }

// I32GtU is `i32.gt_u`.
func I32GtU() []byte { return op(0x4b) }

// I32LeU is `i32.le_u`.
func I32LeU() []byte { return op(0x4d) }

// I32GeS is `i32.ge_s`.
func I32GeS() []byte { return op(0x4e) }

// I32GeU is `i32.ge_u`.
func I32GeU() []byte { return op(0x4f) }

// I64Eqz is `i64.eqz`.
func I64Eqz() []byte { return op(0x50) }

// I32Add is `i32.add`.
func I32Add() []byte { return op(0x6a) }

// I32Sub is `i32.sub`.
func I32Sub() []byte { return op(0x6b) }

// I32Mul is `i32.mul`.
func I32Mul() []byte { return op(0x6c) }

// I32DivS is `i32.div_s`: traps on division by zero and on MinInt32 / -1.
func I32DivS() []byte { return op(0x6d) }

// I32DivU is `i32.div_u`: traps on division by zero.
func I32DivU() []byte { return op(0x6e) }

// I32And is `i32.and`.
func I32And() []byte { return op(0x71) }

// I32Or is `i32.or`.
func I32Or() []byte { return op(0x72) }

// I32Shl is `i32.shl`.
func I32Shl() []byte { return op(0x74) }

// I32ShrU is `i32.shr_u`.
func I32ShrU() []byte { return op(0x76) }

// I64Add is `i64.add`.
func I64Add() []byte { return op(0x7c) }

// I64Or is `i64.or`.
func I64Or() []byte { return op(0x84) }

// I64Shl is `i64.shl`.
func I64Shl() []byte { return op(0x86) }

// I64ShrU is `i64.shr_u`.
func I64ShrU() []byte { return op(0x88) }

// I32WrapI64 is `i32.wrap_i64`.
func I32WrapI64() []byte { return op(0xa7) }

// I64ExtendI32S is `i64.extend_i32_s`.
func I64ExtendI32S() []byte { return op(0xac) }

// I64ExtendI32U is `i64.extend_i32_u`.
func I64ExtendI32U() []byte { return op(0xad) }

// PackPtrLen returns the instructions that push the i64 ptr<<32 | len that Osprey entry
// points return, where ptr and length are instruction sequences that each push an i32 (e.g.
// LocalGet(0), I32Const(256)).
func PackPtrLen(ptr, length []byte) []byte {
	return Seq(ptr, I64ExtendI32U(), I64Const(32), I64Shl(), length, I64ExtendI32U(), I64Or())
}

// TableGrow is table.grow of table idx: [ref n] -> [old size or -1].
func TableGrow(idx uint32) []byte { return AppendULEB128([]byte{0xfc, 15}, uint64(idx)) }

// TableSize is table.size of table idx.
func TableSize(idx uint32) []byte { return AppendULEB128([]byte{0xfc, 16}, uint64(idx)) }

// RefNullFunc is ref.null func.
func RefNullFunc() []byte { return []byte{0xd0, 0x70} }

// MemoryFill is memory.fill of memory 0: [dest value n] -> [].
func MemoryFill() []byte { return []byte{0xfc, 11, 0x00} }

// MemoryCopy is memory.copy within memory 0: [dest src n] -> [].
func MemoryCopy() []byte { return []byte{0xfc, 10, 0x00, 0x00} }
