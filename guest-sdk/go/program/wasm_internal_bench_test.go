//go:build wasip1

package program

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

var noop Handler = func(*osprey.Context, osprey.Row) (Result, error) {
	return Result{Value: osprey.Int(1)}, nil
}

var sinkRes Result
var sinkB []byte

func BenchmarkWasmHandlerDirect(b *testing.B) {
	for b.Loop() {
		sinkRes, _ = noop((*osprey.Context)(&call), osprey.Row(call.Row()))
	}
}

func BenchmarkWasmInvoke(b *testing.B) {
	for b.Loop() {
		_, _ = invoke(noop, (*osprey.Context)(&call), osprey.Row(call.Row()), &sinkRes)
	}
}

func BenchmarkWasmEncodeTail(b *testing.B) {
	res := Result{Value: osprey.Int(1)}
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = abi.AppendValue(append(buf[:0], abi.StatusOK), res.Value)
		buf = append(buf, 0)
		sinkB = buf
	}
}

var in = abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "bench.p", Timestamp: 1, Row: []abi.Field{
	{Name: "card_id", Value: abi.String("card-0001")}, {Name: "amount_cents", Value: abi.Int(12345)},
	{Name: "currency", Value: abi.String("EUR")}, {Name: "status", Value: abi.String("approved")},
	{Name: "ts", Value: abi.Timestamp(1_700_000_000e9)}, {Name: "merchant", Value: abi.String("m-42")},
	{Name: "mcc", Value: abi.Int(5411)}, {Name: "country", Value: abi.String("PT")},
	{Name: "online", Value: abi.Bool(true)}, {Name: "risk", Value: abi.Float(0.12)},
}})

func BenchmarkWasmDecodeGlobal(b *testing.B) {
	for b.Loop() {
		call.DecodeProgram(in)
		call.End()
	}
}

func BenchmarkWasmServeStage1(b *testing.B) { // decode + invoke
	for b.Loop() {
		call.DecodeProgram(in)
		_, _ = invoke(noop, (*osprey.Context)(&call), osprey.Row(call.Row()), &sinkRes)
		call.End()
	}
}

func BenchmarkWasmServeStage2(b *testing.B) { // decode + invoke
	handler = noop
	for b.Loop() {
		sinkB = serve(sinkB[:0], in)
	}
}

func serveA(b, input []byte) []byte { // decode, invoke, End
	if err := call.DecodeProgram(input); err != nil {
		return b
	}
	var res Result
	panicked, err := invoke(handler, (*osprey.Context)(&call), osprey.Row(call.Row()), &res)
	call.End()
	if panicked != "" || err != nil {
		return b
	}
	return b
}

func serveB(b, input []byte) []byte { // + encode the value
	if err := call.DecodeProgram(input); err != nil {
		return b
	}
	var res Result
	panicked, err := invoke(handler, (*osprey.Context)(&call), osprey.Row(call.Row()), &res)
	call.End()
	if panicked != "" || err != nil {
		return b
	}
	b, _ = core.AppendValue(append(b, abi.StatusOK), &res.Value)
	return append(b, 0)
}

func BenchmarkWasmServeA(b *testing.B) {
	handler = noop
	for b.Loop() {
		sinkB = serveA(sinkB[:0], in)
	}
}

func BenchmarkWasmServeB(b *testing.B) {
	handler = noop
	for b.Loop() {
		sinkB = serveB(sinkB[:0], in)
	}
}
