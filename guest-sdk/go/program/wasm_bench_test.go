//go:build wasip1

package program_test

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func wasmRow() []abi.Field {
	return []abi.Field{
		{Name: "card_id", Value: abi.String("card-0001")}, {Name: "amount_cents", Value: abi.Int(12345)},
		{Name: "currency", Value: abi.String("EUR")}, {Name: "status", Value: abi.String("approved")},
		{Name: "ts", Value: abi.Timestamp(1_700_000_000e9)}, {Name: "merchant", Value: abi.String("m-42")},
		{Name: "mcc", Value: abi.Int(5411)}, {Name: "country", Value: abi.String("PT")},
		{Name: "online", Value: abi.Bool(true)}, {Name: "risk", Value: abi.Float(0.12)},
	}
}

func BenchmarkWasmRunNoop(b *testing.B) {
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
		return program.Result{Value: osprey.Int(1)}, nil
	})
	in := abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "bench.p", Timestamp: 1, Row: wasmRow()})
	b.ReportAllocs()
	for b.Loop() {
		program.Run(in)
	}
}
