//go:build wasip1

package core

// Benchmarks that run inside WebAssembly: `go tool task bench:guest` runs them under the
// wazero CLI. They measure the steps of a program call as a guest executes them, which is
// what the host's per-call benchmark cannot show (RATIONALE.md, "Go guests").

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
)

// benchCall is a program call with the 10-field row of the host's per-call benchmark.
var benchCall = abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "bench.p", Timestamp: 1, Row: []abi.Field{
	{Name: "card_id", Value: abi.String("card-0001")}, {Name: "amount_cents", Value: abi.Int(12345)},
	{Name: "currency", Value: abi.String("EUR")}, {Name: "status", Value: abi.String("approved")},
	{Name: "ts", Value: abi.Timestamp(1_700_000_000e9)}, {Name: "merchant", Value: abi.String("m-42")},
	{Name: "mcc", Value: abi.Int(5411)}, {Name: "country", Value: abi.String("PT")},
	{Name: "online", Value: abi.Bool(true)}, {Name: "risk", Value: abi.Float(0.12)},
}})

var sinkOK bool

// BenchmarkWasmDecodeProgram: the whole decoding of a call (header and row).
func BenchmarkWasmDecodeProgram(b *testing.B) {
	var c Call
	for b.Loop() {
		if c.DecodeProgram(benchCall) != nil {
			b.Fatal("malformed")
		}
		c.End()
	}
}

// BenchmarkWasmHeader: the call's FQN, keys and timestamp.
func BenchmarkWasmHeader(b *testing.B) {
	var c Call
	for b.Loop() {
		_, sinkOK = c.fastHeader(benchCall, 1)
	}
}

// BenchmarkWasmScanRow: indexing and validating the 10-field row.
func BenchmarkWasmScanRow(b *testing.B) {
	var c Call
	p, _ := c.fastHeader(benchCall, 1)
	for b.Loop() {
		_, sinkOK = c.row.scanRow(benchCall, p)
	}
}

var sinkBuf []byte

// BenchmarkWasmAppendValue: checking and encoding a program's int result.
func BenchmarkWasmAppendValue(b *testing.B) {
	v := abi.Int(1)
	for b.Loop() {
		sinkBuf, _ = AppendValue(append(sinkBuf[:0], 0), &v)
	}
}
