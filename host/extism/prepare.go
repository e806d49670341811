package extism

import (
	"errors"
	"fmt"

	"github.com/osprey-ml/osprey/host/internal/wasmbuild"

	"github.com/osprey-ml/osprey/host/internal/wasmbin"
)

// startExport is the name under which prepare exports a module's start function.
const startExport = "__osprey_start"

// prepare rewrites a plugin's module (already checked by host.StructureLimits.Check) for the
// host's stop-flag instrumentation (host/internal/instrument), which needs two things a
// plugin may lack:
//
//   - No start section. A start function runs inside instantiation, before the host can
//     reach the stop flag; AssemblyScript plugins have one. prepare drops the start section
//     and exports its function as startExport instead, and the host calls it right after
//     instantiating, under the stop flag and the instantiation's deadline (the same order
//     as Wasm's own: after the data and element segments, before any other export).
//   - A memory. The instrumentation's safe points run `memory.grow 0` so that a
//     stop-the-world GC is never stuck behind a guest spinning in compiled code (Go cannot
//     preempt it); a plugin without a memory of its own (hand-written ones that use only
//     the kernel's, like testdata/echo.wat) gets an empty one, `(memory 0 0)`, that its
//     code cannot name (it was valid without a memory, so no instruction uses one).
//
// Everything else is copied byte for byte. It reports whether the module had a start
// function.
func prepare(wasm []byte) (out []byte, hasStart bool, err error) {
	if len(wasm) < 8 {
		return nil, false, errors.New("not a WebAssembly binary module")
	}
	type section struct {
		id               byte
		start, body, end int
	}
	var secs []section
	for pos := 8; pos < len(wasm); {
		id := wasm[pos]
		size, p, ok := readU32(wasm, pos+1, len(wasm))
		if !ok || uint64(size) > uint64(len(wasm)-p) {
			return nil, false, fmt.Errorf("section id %d at byte offset %d: malformed size", id, pos)
		}
		secs = append(secs, section{id: id, start: pos, body: p, end: p + int(size)})
		pos = p + int(size)
	}
	hasMemory, haveExports := false, false
	var startFn uint32
	for _, s := range secs {
		switch s.id {
		case wasmbin.SecImport:
			m, err := importsMemory(wasm, s.body, s.end)
			if err != nil {
				return nil, false, err
			}
			hasMemory = hasMemory || m
		case wasmbin.SecMemory:
			if n, _, ok := readU32(wasm, s.body, s.end); ok && n > 0 {
				hasMemory = true
			}
		case wasmbin.SecStart:
			fn, _, ok := readU32(wasm, s.body, s.end)
			if !ok {
				return nil, false, fmt.Errorf("start section at byte offset %d: malformed", s.start)
			}
			hasStart, startFn = true, fn
		case wasmbin.SecExport:
			haveExports = true
		}
	}
	if hasMemory && !hasStart {
		return wasm, false, nil
	}

	out = make([]byte, 0, len(wasm)+32)
	out = append(out, wasm[:8]...)
	entry := wasmbuild.AppendULEB128(nil, uint64(len(startExport)))
	entry = append(entry, startExport...)
	entry = append(entry, 0x00) // a function
	entry = wasmbuild.AppendULEB128(entry, uint64(startFn))
	memDone, expDone := hasMemory, !hasStart || haveExports
	addMissing := func(rank int) {
		if !memDone && rank > sectionRank(wasmbin.SecMemory) {
			out = append(out, wasmbin.SecMemory, 4, 1, 0x01, 0, 0) // one memory: min 0, max 0
			memDone = true
		}
		if !expDone && rank > sectionRank(wasmbin.SecExport) {
			body := append([]byte{1}, entry...)
			out = appendSection(out, wasmbin.SecExport, body)
			expDone = true
		}
	}
	for _, s := range secs {
		if s.id != wasmbin.SecCustom {
			addMissing(sectionRank(s.id))
		}
		switch {
		case s.id == wasmbin.SecStart:
			// dropped: exported as startExport
		case s.id == wasmbin.SecExport && hasStart:
			n, p, ok := readU32(wasm, s.body, s.end)
			if !ok {
				return nil, false, fmt.Errorf("export section at byte offset %d: malformed", s.start)
			}
			body := wasmbuild.AppendULEB128(nil, uint64(n+1))
			body = append(body, wasm[p:s.end]...)
			body = append(body, entry...)
			out = appendSection(out, wasmbin.SecExport, body)
		case s.id == wasmbin.SecMemory && !hasMemory: // an empty memory section: ours instead
			out = append(out, wasmbin.SecMemory, 4, 1, 0x01, 0, 0)
			memDone = true
		default:
			out = append(out, wasm[s.start:s.end]...)
		}
	}
	addMissing(1 << 30)
	return out, hasStart, nil
}

// sectionRank is the position of a non-custom section in a module's section order; an
// unknown id sorts last.
func sectionRank(id byte) int {
	if r := wasmbin.SectionRank(id); r > 0 {
		return r
	}
	return 1 << 30
}

// importsMemory reports whether an import section imports a memory.
func importsMemory(b []byte, pos, end int) (bool, error) {
	bad := func() (bool, error) { return false, fmt.Errorf("import section at byte offset %d: malformed", pos) }
	n, p, ok := readU32(b, pos, end)
	if !ok {
		return bad()
	}
	for range n {
		for range 2 { // module and field names
			l, q, ok := readU32(b, p, end)
			if !ok || uint64(l) > uint64(end-q) {
				return bad()
			}
			p = q + int(l)
		}
		if p >= end {
			return bad()
		}
		kind := b[p]
		p++
		switch kind {
		case 0x00: // function: a type index
			if _, p, ok = readU32(b, p, end); !ok {
				return bad()
			}
		case 0x01: // table: a reference type and limits
			if p >= end {
				return bad()
			}
			if p, ok = skipLimits(b, p+1, end); !ok {
				return bad()
			}
		case 0x02: // memory
			return true, nil
		case 0x03: // global: a value type and mutability
			p += 2
		case 0x04: // tag: an attribute and a type index
			if _, p, ok = readU32(b, p+1, end); !ok {
				return bad()
			}
		default:
			return bad()
		}
		if p > end {
			return bad()
		}
	}
	return false, nil
}

// skipLimits steps over a table type's limits (flags, minimum, and maximum when flagged).
func skipLimits(b []byte, p, end int) (int, bool) {
	if p >= end {
		return 0, false
	}
	flags := b[p]
	p++
	count := 1
	if flags&1 != 0 {
		count = 2
	}
	for range count {
		q := p
		for q < end && q-p < 10 && b[q]&0x80 != 0 {
			q++
		}
		if q >= end || q-p >= 10 {
			return 0, false
		}
		p = q + 1
	}
	return p, true
}

// readU32 reads an unsigned LEB128 u32 at b[pos:end]: the value, the position after it, and
// whether it was well formed.
func readU32(b []byte, pos, end int) (uint32, int, bool) {
	var v uint32
	for i := 0; i < 5; i++ {
		if pos+i >= end || pos+i >= len(b) {
			return 0, 0, false
		}
		c := b[pos+i]
		if i == 4 && c > 0x0f {
			return 0, 0, false
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, pos + i + 1, true
		}
	}
	return 0, 0, false
}

// appendSection appends a section: its id, its size, its body.
func appendSection(b []byte, id byte, body []byte) []byte {
	b = append(b, id)
	b = wasmbuild.AppendULEB128(b, uint64(len(body)))
	return append(b, body...)
}
