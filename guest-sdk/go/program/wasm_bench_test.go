//go:build wasip1

package program_test

// Benchmarks that run inside WebAssembly (`go tool task bench:guest`).

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

// BenchmarkWasmRunNoop: a whole program call as the guest runs it — decode the 10-field
// row of the host's per-call benchmark, run a program that returns 1, encode the response —
// without the host's side or the crossing.
func BenchmarkWasmRunNoop(b *testing.B) {
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
		return program.Result{Value: osprey.Int(1)}, nil
	})
	in := abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "bench.p", Timestamp: 1, Row: []abi.Field{
		{Name: "card_id", Value: abi.String("card-0001")}, {Name: "amount_cents", Value: abi.Int(12345)},
		{Name: "currency", Value: abi.String("EUR")}, {Name: "status", Value: abi.String("approved")},
		{Name: "ts", Value: abi.Timestamp(1_700_000_000e9)}, {Name: "merchant", Value: abi.String("m-42")},
		{Name: "mcc", Value: abi.Int(5411)}, {Name: "country", Value: abi.String("PT")},
		{Name: "online", Value: abi.Bool(true)}, {Name: "risk", Value: abi.Float(0.12)},
	}})
	b.ReportAllocs()
	for b.Loop() {
		if resp := program.Run(in); resp[0] != abi.StatusOK {
			b.Fatalf("response %x", resp)
		}
	}
}
