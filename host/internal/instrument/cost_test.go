package instrument

import (
	"context"
	"testing"

	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

// costModules are guests whose exported "run" (n i32) does n units of one kind of work: a
// tight loop, calls of a leaf function (an entry check each), and small memory.fills.
func costModules() map[string][]byte {
	i32 := wb.I32
	mk := func(body func(m *wb.Module) []byte) []byte {
		m := wb.New()
		m.Memory(1, nil)
		leaf := m.Func(wb.FuncType{Params: []wb.ValType{i32}, Results: []wb.ValType{i32}}, nil,
			wb.LocalGet(0), wb.I32Const(1), wb.I32Add())
		_ = leaf
		m.ExportFunc("run", m.Func(wb.FuncType{Params: []wb.ValType{i32}}, []wb.ValType{i32}, body(m)))
		m.ExportMemory("memory")
		return m.Bytes()
	}
	// loop: while n != 0 { n-- ; work }
	loop := func(work ...[]byte) []byte {
		return wb.Seq(wb.Loop(wb.BlockEmpty,
			wb.Seq(work...),
			wb.LocalGet(0), wb.I32Const(1), wb.I32Sub(), wb.LocalTee(0), wb.BrIf(0)))
	}
	return map[string][]byte{
		"loop": mk(func(*wb.Module) []byte { return loop() }),
		"call": mk(func(*wb.Module) []byte {
			return loop(wb.LocalGet(1), wb.Call(0), wb.LocalSet(1))
		}),
		"fill64": mk(func(*wb.Module) []byte {
			return loop(wb.I32Const(0), wb.I32Const(7), wb.I32Const(64), wb.MemoryFill())
		}),
		"fill4096": mk(func(*wb.Module) []byte {
			return loop(wb.I32Const(0), wb.I32Const(7), wb.I32Const(4096), wb.MemoryFill())
		}),
	}
}

// BenchmarkCost measures what the inserted checks cost per unit of work (ns/op is per
// iteration): each kind of work plain and instrumented.
func BenchmarkCost(b *testing.B) {
	const n = 1 << 20
	for _, name := range []string{"loop", "call", "fill64", "fill4096"} {
		wasm := costModules()[name]
		res, err := Instrument(wasm, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name string
			wasm []byte
		}{{"plain", wasm}, {"instrumented", res.Wasm}} {
			b.Run(name+"/"+v.name, func(b *testing.B) {
				mod := instantiate(b, newRuntime(b), v.wasm)
				fn := mod.ExportedFunction("run")
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; i < b.N; i += n {
					if _, err := fn.Call(ctx, uint64(min(n, b.N-i))); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestEntryLoopChargesBody: a loop that stands for the function's entry check is charged for
// the whole body — also the code after its end, which a recursive function could otherwise
// run unmetered on every call.
func TestEntryLoopChargesBody(t *testing.T) {
	m := wb.New()
	m.Memory(1, nil)
	g := m.Global(wb.I32, true, wb.I32Const(0))
	var tail [][]byte
	for range 2000 {
		tail = append(tail, wb.GlobalGet(g), wb.I32Const(1), wb.I32Add(), wb.GlobalSet(g))
	}
	m.ExportFunc("f", m.Func(wb.FuncType{}, nil, wb.Loop(wb.BlockEmpty), wb.Seq(tail...)))
	wasm := m.Bytes()
	res, err := Instrument(wasm, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.inserted[0]) != 1 {
		t.Fatalf("%d checks; want the loop's alone", len(res.inserted[0]))
	}
	r := res.inserted[0][0]
	code := res.Wasm[r[0]:r[1]]
	// global.get $count; i32.const C; ...
	p := 1 + len(appendU32(nil, res.StopGlobal+1))
	if code[p] != 0x41 {
		t.Fatalf("the check does not compare with a constant: % x", code[:p+1])
	}
	c, _ := readS33(code, p+1, len(code))
	start, end := bodyRange(t, res.Wasm, 0)
	if want := units(end - start - (r[1] - r[0])); uint32(c) < want-1 {
		t.Fatalf("the loop is charged %d units; the body needs %d", c, want)
	}
}
