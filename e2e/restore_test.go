//go:build unix

package e2e_test

import (
	"context"
	"math"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// The restart test's bounds. Each wait below is bounded, so the test cannot hang CI
// whatever the server does.
const (
	poisonDelay        = 5 * time.Second  // from the first server's start to the poison's date
	restoreTimeoutFlag = "2s"             // --restore-timeout of the second start
	restartReadyBound  = 20 * time.Second // the second start must listen within this
	promptExit         = 10 * time.Second // an exit after SIGTERM must take less
	rpcTimeout         = 30 * time.Second // every API call
)

const poisonManifests = `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: poison, namespace: e2e}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
  builder: {module: poison.wasm}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: zgood, namespace: e2e}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
  builder: {module: good.wasm}
`

// TestRestartWithPoisonPill: a feature whose module behaves when applied and hangs in
// _initialize after a date (a recursion without any loop instruction) is quarantined when
// the server restarts past that date; the server still starts listening within a bounded
// time, serves the good feature (restored after the poison), lists the poisoned one with
// its error, and exits promptly on SIGTERM, also when the signal comes during the restore.
func TestRestartWithPoisonPill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, rpcTimeout) }
	dataDir := t.TempDir()

	s := startServer(t, dataDir)
	date := time.Now().Add(poisonDelay)
	modules := map[string][]byte{"poison.wasm": poisonModule(date.UnixNano()), "good.wasm": poisonModule(0)}
	c := s.api(protocolNamed("connect"), "")
	actx, acancel := call()
	res, err := c.registry.ApplyFeature(actx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(poisonManifests), Modules: modules}))
	acancel()
	if err != nil {
		t.Fatalf("ApplyFeature before the poison's date: %v", err)
	}
	if n := len(res.Msg.GetApplied()); n != 2 {
		t.Fatalf("applied %d objects, want 2", n)
	}
	s.stop(t)
	if time.Now().After(date) {
		t.Fatalf("the first server ran past the poison's date (%v after its start): the test cannot check the restart", poisonDelay)
	}
	time.Sleep(time.Until(date) + 200*time.Millisecond)

	// The restart, past the date.
	began := time.Now()
	s2 := startServer(t, dataDir, "--restore-timeout", restoreTimeoutFlag)
	if took := time.Since(began); took > restartReadyBound {
		t.Errorf("the restarted server was ready after %v, want under %v", took, restartReadyBound)
	}
	c2 := s2.api(protocolNamed("grpc"), "")
	gctx, gcancel := call()
	get, err := c2.engine.Get(gctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "e2e.zgood", Keys: map[string]string{"id": "1"}}))
	gcancel()
	if err != nil || get.Msg.GetValue().GetIntValue() != 42 {
		t.Errorf("Get e2e.zgood after the restart = %v, %v; want 42", get, err)
	}
	lctx, lcancel := call()
	list, err := c2.registry.ListFeatures(lctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	lcancel()
	if err != nil {
		t.Fatalf("ListFeatures: %v", err)
	}
	if got := featureFQNs(list.Msg); !slices.Equal(got, []string{"e2e.zgood"}) {
		t.Errorf("served %v, want [e2e.zgood]", got)
	}
	q := list.Msg.GetQuarantined()
	if len(q) != 1 || q[0].GetKind() != "Feature" || q[0].GetFqn() != "e2e.poison" ||
		!strings.Contains(q[0].GetError(), "e2e.poison") || q[0].GetSince() == nil {
		t.Errorf("quarantined %v, want Feature e2e.poison with an error naming it", q)
	} else {
		t.Logf("quarantined: %s", q[0].GetError())
	}
	out := s2.mustCLI(t, "features")
	if !strings.Contains(out, "e2e.poison") || !strings.Contains(out, "QUARANTINED") {
		t.Errorf("osprey features printed\n%s\nwant e2e.poison marked QUARANTINED", out)
	}
	if !strings.Contains(s2.log.String(), `"level":"ERROR"`) || !strings.Contains(s2.log.String(), "quarantined") {
		t.Errorf("the quarantine was not logged at ERROR")
	}
	stopped := time.Now()
	s2.stop(t)
	if took := time.Since(stopped); took > promptExit {
		t.Errorf("the restarted server took %v to exit after SIGTERM, want under %v", took, promptExit)
	}
	if l := s2.log.String(); strings.Contains(l, "abandoned the restore") || strings.Contains(l, "closing the Wasm host did not finish") {
		t.Errorf("the host did not stop the poison's guest code at its deadline (the restore abandoned it, or closing the host hung)")
	}

	// SIGTERM during the restore: with a restore timeout longer than the test, only the
	// signal ends the poison's restore; the process exits 0 without listening.
	p := exec.Command(ospreyBin, "-log-format", "json", "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--restore-timeout", "10m")
	p.Dir = repoRoot
	log := &syncBuffer{}
	p.Stdout, p.Stderr = log, log
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()
	defer func() {
		if p.ProcessState == nil {
			_ = p.Process.Kill()
		}
		if t.Failed() {
			t.Logf("osprey serve interrupted during its restore, log tail:\n%s", tail(log.String(), logTailLines))
		}
	}()
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(log.String(), "registry: restoring") {
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not begin within %v", readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // well inside the poison's _initialize
	signalled := time.Now()
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("interrupted during its restore, osprey serve exited with %v; want 0", err)
		}
		if took := time.Since(signalled); took > promptExit {
			t.Errorf("osprey serve took %v to exit after SIGTERM during its restore, want under %v", took, promptExit)
		}
	case <-time.After(stopTimeout):
		_ = p.Process.Kill()
		<-exited
		t.Fatalf("osprey serve did not exit within %v of SIGTERM during its restore", stopTimeout)
	}
	if l := log.String(); !strings.Contains(l, "interrupted while starting") || strings.Contains(l, `"msg":"listening"`) {
		t.Errorf("want the interruption logged and no listening")
	}
}

// poisonModule returns a program module (abi/ABI.md: the exports of a program whose
// osprey_program returns the int 42) with an _initialize that reads the wall clock (WASI
// clock_time_get, realtime) and, once it is past date (Unix nanoseconds; 0: never), calls
// f(60), where f(n) calls f(n-1) twice when n > 0: 2^60 calls at a stack depth of 60,
// without a single loop instruction. In WAT:
//
//	(import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
//	(memory (export "memory") 1)
//	(data (i32.const 256) "\00\01\2a\00\00\00\00\00\00\00\00")
//	(func (export "osprey_abi_version") (result i32) (i32.const 0x10000))
//	(func (export "osprey_alloc") (param i32) (result i32)
//	  (select (i32.const 1024) (i32.const 0) (i32.le_u (local.get 0) (i32.const 60000))))
//	(func (export "osprey_program") (param i32 i32) (result i64) (i64.const 0x1_0000_000b))
//	(func $f (param i32)
//	  (if (local.get 0) (then
//	    (call $f (i32.sub (local.get 0) (i32.const 1)))
//	    (call $f (i32.sub (local.get 0) (i32.const 1))))))
//	(func (export "_initialize")
//	  (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 16)))
//	  (if (i64.gt_u (i64.load (i32.const 16)) (i64.const DATE)) (then (call $f (i32.const 60)))))
func poisonModule(date int64) []byte {
	const (
		typeClock, typeVersion, typeAlloc, typeProgram, typeF, typeInit = 0, 1, 2, 3, 4, 5
		fnClock, fnVersion, fnAlloc, fnProgram, fnF, fnInit             = 0, 1, 2, 3, 4, 5
		i32, i64, empty                                                 = 0x7f, 0x7e, 0x40
	)
	if date == 0 {
		date = math.MaxInt64
	}
	types := [][]byte{
		funcType([]byte{i32, i64, i32}, []byte{i32}),
		funcType(nil, []byte{i32}),
		funcType([]byte{i32}, []byte{i32}),
		funcType([]byte{i32, i32}, []byte{i64}),
		funcType([]byte{i32}, nil),
		funcType(nil, nil),
	}
	imports := [][]byte{cat(wasmName("wasi_snapshot_preview1"), wasmName("clock_time_get"), []byte{0x00, typeClock})}
	funcs := [][]byte{{typeVersion}, {typeAlloc}, {typeProgram}, {typeF}, {typeInit}}
	memories := [][]byte{{0x00, 0x01}} // no maximum, 1 page
	exports := [][]byte{
		cat(wasmName("memory"), []byte{0x02, 0}),
		cat(wasmName("osprey_abi_version"), []byte{0x00, fnVersion}),
		cat(wasmName("osprey_alloc"), []byte{0x00, fnAlloc}),
		cat(wasmName("osprey_program"), []byte{0x00, fnProgram}),
		cat(wasmName("_initialize"), []byte{0x00, fnInit}),
	}
	const (
		opIf, opEnd, opCall, opDrop, opSelect         = 0x04, 0x0b, 0x10, 0x1a, 0x1b
		opLocalGet, opI64Load, opI32Const, opI64Const = 0x20, 0x29, 0x41, 0x42
		opI32LeU, opI64GtU, opI32Sub                  = 0x4d, 0x56, 0x6b
	)
	recurse := cat([]byte{opLocalGet, 0}, []byte{opI32Const}, sleb(1), []byte{opI32Sub, opCall, fnF})
	bodies := [][]byte{
		cat([]byte{opI32Const}, sleb(0x10000)),
		cat([]byte{opI32Const}, sleb(1024), []byte{opI32Const}, sleb(0), []byte{opLocalGet, 0, opI32Const}, sleb(60000), []byte{opI32LeU, opSelect}),
		cat([]byte{opI64Const}, sleb(256<<32|11)),
		cat([]byte{opLocalGet, 0, opIf, empty}, recurse, recurse, []byte{opEnd}),
		cat([]byte{opI32Const}, sleb(0), []byte{opI64Const}, sleb(1), []byte{opI32Const}, sleb(16), []byte{opCall, fnClock, opDrop},
			[]byte{opI32Const}, sleb(16), []byte{opI64Load, 3, 0}, []byte{opI64Const}, sleb(date), []byte{opI64GtU, opIf, empty},
			[]byte{opI32Const}, sleb(60), []byte{opCall, fnF, opEnd}),
	}
	var code [][]byte
	for _, b := range bodies {
		body := cat([]byte{0x00}, b, []byte{opEnd}) // no locals
		code = append(code, cat(uleb(uint64(len(body))), body))
	}
	response := []byte{0x00, 0x01, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x00} // OK, int 42, no keys, no timestamp
	data := [][]byte{cat([]byte{0x00, opI32Const}, sleb(256), []byte{opEnd}, uleb(uint64(len(response))), response)}

	out := []byte{0x00, 'a', 's', 'm', 0x01, 0, 0, 0}
	for _, sec := range []struct {
		id    byte
		items [][]byte
	}{{1, types}, {2, imports}, {3, funcs}, {5, memories}, {7, exports}, {10, code}, {11, data}} {
		content := cat(append([][]byte{uleb(uint64(len(sec.items)))}, sec.items...)...)
		out = append(append(append(out, sec.id), uleb(uint64(len(content)))...), content...)
	}
	return out
}

func funcType(params, results []byte) []byte {
	return cat([]byte{0x60}, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
}

func wasmName(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func uleb(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b |= 0x80
		}
		out = append(out, b)
		if v == 0 {
			return out
		}
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}
