package hostile

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Modules of the corpus: corpus/*.wat compiled by wat2wasm, and the generated ones below.

var (
	watMu    sync.Mutex
	watCache = map[string][]byte{}
)

// wat returns corpus/<name>.wat compiled to a binary module. Without wat2wasm the test fails
// when CI=true (CI installs Debian's wabt package) and is skipped otherwise.
func wat(t testing.TB, name string) []byte {
	t.Helper()
	watMu.Lock()
	defer watMu.Unlock()
	if b, ok := watCache[name]; ok {
		return b
	}
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("wat2wasm is not installed (apt-get install -y wabt): the hostile corpus cannot be compiled")
		}
		t.Skipf("wat2wasm not found (apt-get install -y wabt): %v", err)
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command(tool, "--enable-all", "-o", out, filepath.Join("corpus", name+".wat"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm corpus/%s.wat: %v\n%s", name, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	watCache[name] = b
	return b
}

// withCustomSection returns wasm with a custom section appended: the same module under a
// different digest (so the host compiles it anew).
func withCustomSection(wasm []byte, name string, payload []byte) []byte {
	var sec []byte
	sec = appendULEB(sec, uint64(len(name)))
	sec = append(sec, name...)
	sec = append(sec, payload...)
	out := append([]byte(nil), wasm...)
	out = append(out, 0) // custom section id
	out = appendULEB(out, uint64(len(sec)))
	return append(out, sec...)
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// abiModule is a generated module of the Osprey ABI: it exports memory, osprey_abi_version
// (1.0), osprey_alloc (always 8192) and osprey_program, whose locals and body (without the
// final end) are given; the program's body must leave the packed response on the stack.
type abiModule struct {
	memPages uint32
	locals   []byte // the encoded locals vector of osprey_program; nil: none
	body     []byte
	data     []dataSegment
}

type dataSegment struct {
	offset uint32
	bytes  []byte
}

// okResponse is the response of noop.wat, at 16: status ok, int v, no flags.
func okResponse(v int64) dataSegment {
	b := []byte{0, 1}
	b = binary.LittleEndian.AppendUint64(b, uint64(v))
	return dataSegment{16, append(b, 0)}
}

// returnOK is the instruction returning the response okResponse put at 16 (11 bytes).
func returnOK() []byte { return appendSLEB([]byte{0x42}, 16<<32|11) } // i64.const

func section(out []byte, id byte, content []byte) []byte {
	out = append(out, id)
	out = appendULEB(out, uint64(len(content)))
	return append(out, content...)
}

func str(b []byte, s string) []byte { return append(appendULEB(b, uint64(len(s))), s...) }

func (m abiModule) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	// Types: 0 () -> i32, 1 (i32) -> i32, 2 (i32 i32) -> i64.
	out = section(out, 1, []byte{3,
		0x60, 0, 1, 0x7f,
		0x60, 1, 0x7f, 1, 0x7f,
		0x60, 2, 0x7f, 0x7f, 1, 0x7e})
	out = section(out, 3, []byte{3, 0, 1, 2}) // functions
	mem := []byte{1, 0}                       // one memory, min only
	out = section(out, 5, appendULEB(mem, uint64(m.memPages)))
	var exp []byte
	exp = append(exp, 4)
	exp = append(str(exp, "memory"), 2, 0)
	exp = append(str(exp, "osprey_abi_version"), 0, 0)
	exp = append(str(exp, "osprey_alloc"), 0, 1)
	exp = append(str(exp, "osprey_program"), 0, 2)
	out = section(out, 7, exp)

	// Code.
	version := append([]byte{0}, appendSLEB([]byte{0x41}, 0x10000)...)
	version = append(version, 0x0b)
	alloc := append([]byte{0}, appendSLEB([]byte{0x41}, 8192)...)
	alloc = append(alloc, 0x0b)
	locals := m.locals
	if locals == nil {
		locals = []byte{0}
	}
	prog := make([]byte, 0, len(locals)+len(m.body)+1)
	prog = append(append(append(prog, locals...), m.body...), 0x0b)
	code := []byte{3}
	for _, f := range [][]byte{version, alloc, prog} {
		code = appendULEB(code, uint64(len(f)))
		code = append(code, f...)
	}
	out = section(out, 10, code)

	if len(m.data) > 0 {
		var data []byte
		data = appendULEB(data, uint64(len(m.data)))
		for _, d := range m.data {
			data = append(data, 0)                                               // active, memory 0
			data = append(appendSLEB(append(data, 0x41), int64(d.offset)), 0x0b) // i32.const offset end
			data = appendULEB(data, uint64(len(d.bytes)))
			data = append(data, d.bytes...)
		}
		out = section(out, 11, data)
	}
	return out
}

// nestedBlocks: osprey_program opens n nested blocks (2 bytes each) and closes them.
func nestedBlocks(n int) []byte {
	body := bytes.Repeat([]byte{0x02, 0x40}, n)
	body = append(body, bytes.Repeat([]byte{0x0b}, n)...)
	body = append(body, returnOK()...)
	return abiModule{memPages: 1, body: body, data: []dataSegment{okResponse(42)}}.bytes()
}

// brTable: osprey_program runs one br_table with n targets (all the enclosing block).
func brTable(n int) []byte {
	body := []byte{0x02, 0x40, 0x41, 0x00, 0x0e} // block, i32.const 0, br_table
	body = appendULEB(body, uint64(n))
	body = append(body, bytes.Repeat([]byte{0}, n)...)
	body = append(body, 0, 0x0b) // default target, end of block
	body = append(body, returnOK()...)
	return abiModule{memPages: 1, body: body, data: []dataSegment{okResponse(42)}}.bytes()
}

// manyLocals: osprey_program declares n i32 locals in one entry of its locals vector.
func manyLocals(n int) []byte {
	locals := appendULEB([]byte{1}, uint64(n))
	locals = append(locals, 0x7f)
	return abiModule{memPages: 1, locals: locals, body: returnOK(), data: []dataSegment{okResponse(42)}}.bytes()
}

// hugeData: a data segment of n bytes into a memory of one page (more than any memory the
// feature may have, so no instance can ever hold it).
func hugeData(n int) []byte {
	payload := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'d', 'a', 't', 'a'})
	r.Read(payload)
	return abiModule{memPages: 1, body: returnOK(), data: []dataSegment{okResponse(42), {0x10000, payload}}}.bytes()
}

// notWasm is n bytes of text: an upload that is not a WebAssembly module at all.
func notWasm(n int) []byte {
	line := "this is not a WebAssembly module, just a large upload of text\n"
	return []byte(strings.Repeat(line, n/len(line)+1)[:n])
}

// churnModule is a program returning v whose module carries a 1 MiB data segment (so a
// leaked module, instance or memory shows in the measurements) and a 64-page memory.
func churnModule(v int64) []byte {
	payload := make([]byte, 1<<20)
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(v))
	rand.NewChaCha8(seed).Read(payload)
	return abiModule{memPages: 64, body: returnOK(), data: []dataSegment{okResponse(v), {0x10000, payload}}}.bytes()
}
