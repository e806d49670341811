package core

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strings"
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

// stringRows are program calls whose rows put strings of every length up to 20 bytes, ASCII
// or with a non-ASCII byte (valid UTF-8 or not) at each position, first, in the middle and
// last in the row, before or after names of the same shape: the cases of scanRow's
// word-at-a-time checks, at every distance from the end of the buffer.
func stringRows() [][]byte {
	var out [][]byte
	for l := range 21 {
		for bad := -1; bad < l; bad++ {
			for _, b := range []string{"\u00e9", "\xff"} {
				s := []byte(strings.Repeat("a", l))
				if bad >= 0 {
					s = slices.Concat(s[:bad], []byte(b), s[bad+1:])
				}
				str := string(s)
				for _, row := range [][]abi.Field{
					{{Name: str, Value: abi.Int(1)}},
					{{Name: "x", Value: abi.String(str)}},
					{{Name: "x", Value: abi.String(str)}, {Name: "y", Value: abi.Bool(true)}},
					{{Name: "y", Value: abi.Int(2)}, {Name: str, Value: abi.String(str)}},
					{{Name: str + "1", Value: abi.Null()}, {Name: str + "2", Value: abi.Float(0.5)}, {Name: "z", Value: abi.String(str)}},
				} {
					out = append(out, abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "f", Row: row}))
				}
			}
		}
	}
	// Duplicate names, in the same bin and in different bins.
	for _, names := range [][2]string{{"a", "a"}, {"", ""}, {"card", "card"}, {"ab", "ba"}, {"abc", "aac"}} {
		row := []abi.Field{{Name: names[0], Value: abi.Int(1)}, {Name: "m", Value: abi.Int(1)}, {Name: names[1], Value: abi.Int(2)}}
		out = append(out, abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "f", Row: row}))
	}
	return out
}

func TestScanRowStrings(t *testing.T) {
	for _, in := range stringRows() {
		checkPaths(t, in)
	}
}

func FuzzScan(f *testing.F) {
	for _, in := range stringRows() {
		f.Add(in)
	}
	for _, in := range seeds(f) {
		f.Add(in)
	}
	f.Fuzz(checkPaths)
}
