package extism

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
)

// TestPrepare: prepare gives a module without a memory an empty one and turns a start
// section into the export startExport, and leaves a module with a memory and no start
// function as it is; what it returns compiles, with the exports expected.
func TestPrepare(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	// An empty memory section (count 0) and no export section, with a start function: both
	// added.
	startOnly := []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" + // type section: () -> ()
		"\x03\x02\x01\x00" + // function section: one of type 0
		"\x05\x01\x00" + // memory section: none
		"\x08\x01\x00" + // start section: function 0
		"\x0a\x04\x01\x02\x00\x0b") // code section: an empty body
	tests := []struct {
		file      string
		wasm      []byte
		start     bool
		unchanged bool
		exports   []string
	}{
		{file: "testdata/echo.wasm", exports: []string{"echo"}},
		{file: "testdata/hostile/start_loop.wasm", start: true, exports: []string{"noop", startExport}},
		{file: "../../examples/plugins/mask/mask.wasm", start: true, exports: []string{"encode", startExport}},
		{file: "testdata/fail.wasm", unchanged: true, exports: []string{"fail"}},
		{file: "start only", wasm: startOnly, start: true, exports: []string{startExport}},
	}
	for _, tc := range tests {
		wasm := tc.wasm
		if wasm == nil {
			var err error
			if wasm, err = os.ReadFile(tc.file); err != nil {
				t.Fatal(err)
			}
		}
		out, start, err := prepare(wasm)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if start != tc.start || bytes.Equal(out, wasm) != tc.unchanged {
			t.Fatalf("%s: start %v, unchanged %v", tc.file, start, bytes.Equal(out, wasm))
		}
		m, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("%s: the prepared module does not compile: %v", tc.file, err)
		}
		for _, name := range tc.exports {
			if m.ExportedFunctions()[name] == nil {
				t.Fatalf("%s: no export %q", tc.file, name)
			}
		}
		if len(m.ExportedFunctions()) != len(tc.exports) {
			t.Fatalf("%s: exports %v", tc.file, m.ExportedFunctions())
		}
		if !tc.unchanged && !tc.start {
			if mem := m.ExportedMemories(); len(mem) != 0 {
				t.Fatalf("%s: the added memory is exported", tc.file)
			}
		}
		m.Close(ctx)
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm\x01\x00\x00\x00\x01\xff"), []byte("\x00asm\x01\x00\x00\x00\x08\x01\xff")} {
		if _, _, err := prepare(bad); err == nil {
			t.Fatalf("prepare(% x) = nil error", bad)
		}
	}
}
