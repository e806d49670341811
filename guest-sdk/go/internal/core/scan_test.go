package core

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/osprey-ml/osprey/abi"
)

// state is what decoding leaves in a Call, for comparing the fast and slow paths.
type state struct {
	fqn, keysRaw string
	ts           int64
	stage, op    uint8
	value        string
	keys, row    []entry
}

func snapshot(c *Call, v abi.Value) state {
	return state{c.fqn, string(c.keysRaw), c.ts, c.stage, c.op, string(abi.AppendValue(nil, v)),
		slices.Clone(c.keys.ents), slices.Clone(c.row.ents)}
}

func same(a, b state) bool {
	return a.fqn == b.fqn && a.keysRaw == b.keysRaw && a.ts == b.ts && a.stage == b.stage && a.op == b.op &&
		a.value == b.value && slices.Equal(a.keys, b.keys) && slices.Equal(a.row, b.row)
}

// checkPaths decodes in with the fast and the slow path and fails t if they disagree.
func checkPaths(t *testing.T, in []byte) {
	var fast, slow Call
	fast.begin(in)
	fastOK := fast.fastProgram(in)
	slowErr := slow.slowProgram(in)
	if fastOK != (slowErr == nil) || fastOK && !same(snapshot(&fast, abi.Value{}), snapshot(&slow, abi.Value{})) {
		t.Fatalf("program call %x: fast ok=%v, slow %v", in, fastOK, slowErr)
	}
	fast.begin(in)
	fv, fastOK := fast.fastMiddleware(in)
	sv, slowErr := slow.slowMiddleware(in)
	if fastOK != (slowErr == nil) || fastOK && !same(snapshot(&fast, fv), snapshot(&slow, sv)) {
		t.Fatalf("middleware call %x: fast ok=%v, slow %v", in, fastOK, slowErr)
	}
}

func seeds(t testing.TB) [][]byte {
	data, err := os.ReadFile("../../../../abi/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct{ Kind, Hex string }
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, v := range vs {
		b, _ := hex.DecodeString(v.Hex)
		switch v.Kind {
		case "program_call", "middleware_call":
			out = append(out, b)
		case "row":
			out = append(out, append([]byte{1, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0}, b...))
		case "value":
			out = append(out, append([]byte{2, 3, 2, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0}, b...))
			out = append(out, append([]byte{1, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'v'}, b...))
		case "keys":
			out = append(out, append(append([]byte{1, 1, 'x'}, b...), 0, 0, 0, 0, 0, 0, 0, 0, 0))
		}
	}
	return out
}

// TestScanAgrees runs the fast and slow paths over the golden vectors and every truncation
// of them.
func TestScanAgrees(t *testing.T) {
	for _, in := range seeds(t) {
		for i := range len(in) + 1 {
			checkPaths(t, in[:i])
		}
	}
}

func FuzzScan(f *testing.F) {
	for _, in := range seeds(f) {
		f.Add(in)
	}
	f.Fuzz(checkPaths)
}
