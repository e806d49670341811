//go:build wasip1

package core

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
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

var in = abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "bench.p", Timestamp: 1, Row: wasmRow()})
var sink bool

func BenchmarkWasmDecodeProgram(b *testing.B) {
	var c Call
	for b.Loop() {
		c.DecodeProgram(in)
		c.End()
	}
}

func BenchmarkWasmFastProgram(b *testing.B) {
	var c Call
	for b.Loop() {
		c.begin(in)
		sink = c.fastProgram(in)
	}
}

func BenchmarkWasmBegin(b *testing.B) {
	var c Call
	for b.Loop() {
		c.begin(in)
	}
}

func BenchmarkWasmStr(b *testing.B) {
	for b.Loop() {
		_, _, sink = str(in, 1)
	}
}

func BenchmarkWasmCheckDup(b *testing.B) {
	var c Call
	c.DecodeProgram(in)
	for b.Loop() {
		sink = c.row.checkDuplicates(false) == nil
	}
}

func BenchmarkWasmCheckValue(b *testing.B) {
	v := abi.Int(1)
	for b.Loop() {
		sink = CheckValue(v) == ""
	}
}

func BenchmarkWasmAppendValue(b *testing.B) {
	v := abi.Int(1)
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = abi.AppendValue(buf[:0], v)
	}
}

func BenchmarkWasmHeader(b *testing.B) {
	var c Call
	for b.Loop() {
		_, sink = c.fastHeader(in, 1)
	}
}

func BenchmarkWasmScanRow(b *testing.B) {
	var c Call
	p, _ := c.fastHeader(in, 1)
	for b.Loop() {
		_, sink = c.row.scanRow(in, p)
	}
}

func BenchmarkWasmParse0(b *testing.B) {
	var c Call
	for b.Loop() {
		c.row.parse0(in)
	}
}

var sinkBuf []byte

func BenchmarkWasmCoreAppendValue(b *testing.B) {
	v := abi.Int(1)
	for b.Loop() {
		sinkBuf, _ = AppendValue(append(sinkBuf[:0], 0), &v)
	}
}
