package instrument

// The code inserted into function bodies. Every check charges the safe-point countdown
// ($count) with the work it stands for, in units of about BytesPerUnit bytes of code run or
// memory touched, and when the countdown cannot pay the charge runs a safe point:
//
//	i32.const 65535 global.set $count ;; refill
//	i32.const 0 memory.grow drop      ;; wazero runs memory.grow in Go: a GC can proceed
//	global.get $stop if unreachable end
//
// A static charge C (loop headers, function entries, calls of imported functions) is
//
//	global.get $count i32.const C i32.lt_u
//	if <safe point> else global.get $count i32.const C i32.sub global.set $count end
//
// (with `global.get $count i32.eqz` as the test when C is 1, the common tight loop). A
// dynamic charge — the element count n on top of the stack of a bulk memory or table
// instruction, or a count argument of a host call — is the same with n >> shift as C; n is
// kept in a scratch global and left on the stack as it was.

// BytesPerUnit is roughly how many bytes of code, or of memory a bulk instruction touches,
// one unit of the countdown stands for: a unit costs about a nanosecond either way.
const BytesPerUnit = 16

// Charges of the inserted checks.
const (
	// importCallCharge is charged at every call of an imported (host) function: a host
	// call costs a few hundred nanoseconds, so a guest spinning on cheap host calls still
	// reaches a safe point every ~256 calls.
	importCallCharge = 256
	// memoryShift: a bulk memory instruction (memory.copy, memory.fill, memory.init) of n
	// bytes is charged n >> 4 units.
	memoryShift = 4
	// tableShift: a bulk table instruction (table.copy, table.fill, table.init, table.grow)
	// of n entries (8 bytes each in wazero) is charged n >> 1 units.
	tableShift = 1
)

// maxCharge caps a static charge: anything above SafePointInterval runs a safe point at
// every pass anyway.
const maxCharge = SafePointInterval

// units returns the static charge of n bytes of code: at least 1.
func units(n int) uint32 {
	u := n/BytesPerUnit + 1
	if u > maxCharge {
		return maxCharge
	}
	return uint32(u)
}

// insert is a check to insert at an input offset of a function body.
type insert struct {
	at     int    // input offset: the check goes before the instruction there
	kind   uint8  // insStatic, insDynamic, insImport
	charge uint32 // insStatic, insImport: the static charge (0: no check; the entry slot unused)
	shift  uint8  // insDynamic, and insImport with dyn: n >> shift units
	dyn    bool   // insImport: also a dynamic charge on an argument
	spill  bool   // the dynamic charge's count is below the top of the stack (spill the top)
	entry  bool   // insStatic: the function entry's check
}

const (
	insStatic = iota
	insDynamic
	insImport
)

// globals holds the indices of the instrumentation's globals.
type globals struct {
	stop, count, scratch, spill []byte // LEB128 indices
	hasMemory                   bool
}

func newGlobals(stop uint32, hasMemory bool) globals {
	return globals{
		stop:      appendU32(nil, stop),
		count:     appendU32(nil, stop+1),
		scratch:   appendU32(nil, stop+2),
		spill:     appendU32(nil, stop+3),
		hasMemory: hasMemory,
	}
}

// appendSafePoint appends the safe point: refill, memory.grow 0, the stop test. Without a
// memory (which the host refuses anyway) there is no memory.grow.
func (g *globals) appendSafePoint(b []byte) []byte {
	b = appendS32(b, 0x41, SafePointInterval-1)
	b = append(b, 0x24)
	b = append(b, g.count...)
	if g.hasMemory {
		b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0; memory.grow 0; drop
	}
	return g.appendStopTest(b)
}

// appendStopTest appends `global.get $stop if unreachable end`.
func (g *globals) appendStopTest(b []byte) []byte {
	b = append(b, 0x23)
	b = append(b, g.stop...)
	return append(b, 0x04, 0x40, 0x00, 0x0b)
}

// appendStatic appends a static charge of c units.
func (g *globals) appendStatic(b []byte, c uint32) []byte {
	b = append(b, 0x23)
	b = append(b, g.count...)
	if c == 1 {
		b = append(b, 0x45) // i32.eqz
	} else {
		b = appendS32(b, 0x41, int32(c))
		b = append(b, 0x49) // i32.lt_u
	}
	b = append(b, 0x04, 0x40) // if
	b = g.appendSafePoint(b)
	b = append(b, 0x05, 0x23) // else global.get $count
	b = append(b, g.count...)
	b = appendS32(b, 0x41, int32(c))
	b = append(b, 0x6b, 0x24) // i32.sub; global.set $count
	b = append(b, g.count...)
	return append(b, 0x0b)
}

// appendCharge appends `global.get $scratch`, shifted right by shift.
func (g *globals) appendCharge(b []byte, shift uint8) []byte {
	b = append(b, 0x23)
	b = append(b, g.scratch...)
	if shift > 0 {
		b = append(b, 0x41, shift, 0x76) // i32.const shift; i32.shr_u
	}
	return b
}

// appendDynamic appends a dynamic charge of (the i32 on top of the stack) >> shift units,
// or of the i32 below it when spill is set; the stack is left as it was.
func (g *globals) appendDynamic(b []byte, shift uint8, spill bool) []byte {
	if spill {
		b = append(b, 0x24)
		b = append(b, g.spill...)
	}
	b = append(b, 0x24) // global.set $scratch; global.get $scratch
	b = append(b, g.scratch...)
	b = append(b, 0x23)
	b = append(b, g.scratch...)
	b = append(b, 0x23) // global.get $count
	b = append(b, g.count...)
	b = g.appendCharge(b, shift)
	b = append(b, 0x49, 0x04, 0x40) // i32.lt_u; if
	b = g.appendSafePoint(b)
	b = append(b, 0x05, 0x23) // else global.get $count
	b = append(b, g.count...)
	b = g.appendCharge(b, shift)
	b = append(b, 0x6b, 0x24) // i32.sub; global.set $count
	b = append(b, g.count...)
	b = append(b, 0x0b)
	if spill {
		b = append(b, 0x23)
		b = append(b, g.spill...)
	}
	return b
}

// appendInsert appends the code of one insert.
func (g *globals) appendInsert(b []byte, in insert) []byte {
	switch in.kind {
	case insStatic:
		return g.appendStatic(b, in.charge)
	case insDynamic:
		return g.appendDynamic(b, in.shift, in.spill)
	}
	if in.dyn {
		b = g.appendDynamic(b, in.shift, in.spill)
	}
	b = g.appendStatic(b, in.charge)
	return g.appendStopTest(b)
}

// hostCallCharge says how a call of an imported function is charged beyond
// importCallCharge: by an argument that counts its work (shift applied), found on top of
// the stack or just below it (spill).
type hostCallCharge struct {
	dyn   bool
	shift uint8
	spill bool
}

// hostCharges are the WASI functions whose work grows with an argument.
var hostCharges = map[string]hostCallCharge{
	"random_get":  {dyn: true, shift: memoryShift},    // (buf, buf_len): bytes
	"fd_write":    {dyn: true, shift: 0, spill: true}, // (fd, iovs, iovs_len, nwritten): iovecs
	"fd_read":     {dyn: true, shift: 0, spill: true}, // (fd, iovs, iovs_len, nread): iovecs
	"poll_oneoff": {dyn: true, shift: 0, spill: true}, // (in, out, nsubscriptions, nevents)
}
