package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// startBenchStack serves an in-process host (in-memory state, the sourceless example
// features shop.spend and the bench ones applied) on 127.0.0.1 and returns its address.
func startBenchStack(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	s, err := newStack(ctx, e, &serveConfig{State: "memory", Notifier: "memory", MemoryCeiling: "64Mi"})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := embeddedManifests()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Feature != nil && (m.Feature.FQN == "shop.spend" || strings.HasPrefix(m.Feature.FQN, "bench.")) {
			if err := s.engine.Apply(ctx, m.Feature); err != nil {
				t.Fatal(err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.server.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.close()
	})
	return "http://" + ln.Addr().String()
}

// benchOK validates o and runs the bench, failing t on any error of the run or of its
// report.
func benchOK(t *testing.T, o *benchOptions) *benchReport {
	t.Helper()
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rep, err := bench(context.Background(), o, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if err := rep.err(); err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestBench(t *testing.T) {
	addr := startBenchStack(t)
	o := &benchOptions{addr: addr, protocol: "connect", selector: "shop.spend+avg", keys: keysFlag{"card_id": "c1"},
		concurrency: 4, connections: 2, duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond,
		rate: 500, many: 10, output: "json", setup: true, rounds: 2}
	rep := benchOK(t, o)
	if !rep.Found || rep.GetResponseBytes == 0 || rep.GetManyResponseBytes <= rep.GetResponseBytes {
		t.Errorf("setup: found=%v, Get %d B, GetMany %d B", rep.Found, rep.GetResponseBytes, rep.GetManyResponseBytes)
	}
	if len(rep.Phases) != 5 || len(rep.Targets) != 4 {
		t.Fatalf("%d phases, %d targets; want 5 and 4", len(rep.Phases), len(rep.Targets))
	}
	// The loop of Gets and GetManys in blocks sends as many of each.
	if g, m := rep.Phases[3].Osprey.Calls, rep.Phases[4].Osprey.Calls; m == 0 || g != m {
		t.Errorf("in blocks: %d Gets and %d GetManys, want as many of each", g, m)
	}
	for _, p := range rep.Phases {
		for who, s := range map[string]benchStats{"baseline": p.Baseline, "osprey": p.Osprey} {
			if s.Calls == 0 || s.Throughput <= 0 || s.Errors != 0 {
				t.Errorf("%s %s %s: %d calls, %.0f/s, %d errors (%s)", p.Call, p.Loop, who, s.Calls, s.Throughput, s.Errors, s.FirstError)
			}
			if !(0 < s.P50US && s.P50US <= s.P99US && s.P99US <= s.P999US && s.P999US <= s.MaxUS) {
				t.Errorf("%s %s %s: p50 %.0fµs, p99 %.0fµs, p99.9 %.0fµs, max %.0fµs", p.Call, p.Loop, who, s.P50US, s.P99US, s.P999US, s.MaxUS)
			}
			if p.Loop == "open" && !(0 < s.FromDueP50US && s.FromDueP50US <= s.FromDueP99US) {
				t.Errorf("%s %s %s: from due p50 %.0fµs, p99 %.0fµs", p.Call, p.Loop, who, s.FromDueP50US, s.FromDueP99US)
			}
		}
	}
	for _, v := range rep.Targets {
		if !(v.Ratio > 0) {
			t.Errorf("%s: ratio %v", v.Target, v.Ratio)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.writeText(&text)
	t.Log("\n" + text.String())
	for _, want := range []string{"Get closed c=4", "Get open 500/s", "GetMany 10×1 open 500/s", "GetMany 10×1, in blocks with Get open 500/s", "osprey/baseline", "PASS"} {
		if want == "PASS" {
			if !strings.Contains(text.String(), "PASS") && !strings.Contains(text.String(), "FAIL") {
				t.Errorf("no verdicts:\n%s", text.String())
			}
			continue
		}
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
}

func TestBenchHistogram(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 100_000; i++ {
		h.record(time.Duration(i) * time.Microsecond) // 1µs … 100ms, uniform
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}} {
		got := h.quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.01 || d > 0.01 {
			t.Errorf("q%v = %v, want %v ± 1 %%", c.q, got, c.want)
		}
	}
	for _, v := range []int64{0, 1, 255, 256, 257, 1000, 1 << 20, 1<<40 - 1, 1 << 41} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d out of range", v, i)
		}
		if v < 1<<40 {
			if got := histValue(i); math64Abs(got-v) > v/128+1 {
				t.Errorf("histValue(histIndex(%d)) = %d", v, got)
			}
		}
	}
	if h.max.Load() != int64(100*time.Millisecond) || h.mean() != 50000500*time.Nanosecond {
		t.Errorf("max %v, mean %v", time.Duration(h.max.Load()), h.mean())
	}
}

func math64Abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestBenchFlags(t *testing.T) {
	var k keysFlag
	if err := k.Set("a=1,b=2"); err != nil {
		t.Fatal(err)
	}
	if err := k.Set("c=3"); err != nil {
		t.Fatal(err)
	}
	if k.String() != "a=1,b=2,c=3" {
		t.Errorf("keys %q", k.String())
	}
	if err := k.Set("nope"); err == nil {
		t.Error("key without = accepted")
	}
	for in, want := range map[string]float64{"2000": 2000, "2000/s": 2000, "auto": 0, "0.5": 0.5} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseRate("-1"); err == nil {
		t.Error("negative rate accepted")
	}
	if selectorFQN("fraud.amount+avg") != "fraud.amount" || selectorFQN("geo.city@-1") != "geo.city" || selectorFQN("x") != "x" {
		t.Error("selectorFQN")
	}
	if code, _, errOut := runCLI(t, "", "bench", "--output", "yaml"); code != 1 || !strings.Contains(errOut, "--output") {
		t.Errorf("bad --output: exit %d, %q", code, errOut)
	}
}

// TestBenchProfile profiles the server's read path in this process, which the host (no
// pprof endpoint) cannot be: OSPREY_BENCH_PROFILE=cpu.out go test -run TestBenchProfile
// ./cmd/osprey, then go tool pprof -top cpu.out. The client's work is in the profile too.
func TestBenchProfile(t *testing.T) {
	out := os.Getenv("OSPREY_BENCH_PROFILE")
	if out == "" {
		t.Skip("set OSPREY_BENCH_PROFILE=FILE to profile the read path")
	}
	addr := startBenchStack(t)
	o := &benchOptions{addr: addr, protocol: "connect", connections: 1}
	target, err := newBenchTarget("osprey", addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer target.close()
	ctx := context.Background()
	keys := map[string]string{"card_id": "c1"}
	if _, err := target.clients[0].Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "shop.spend", Keys: keys,
		Value: structpb.NewNumberValue(1)})); err != nil {
		t.Fatal(err)
	}
	call := getCall(&ospreyv1.GetRequest{Selector: "shop.spend+avg", Keys: keys})
	if os.Getenv("OSPREY_BENCH_PROFILE_MANY") != "" {
		call = getManyCall(&ospreyv1.GetManyRequest{Selectors: slices.Repeat([]string{"shop.spend+avg"}, 50),
			Entities: []*ospreyv1.Entity{{Keys: keys}}})
	}
	closedLoop(ctx, target, call, 8, 500*time.Millisecond)
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	res := closedLoop(ctx, target, call, 8, 5*time.Second)
	pprof.StopCPUProfile()
	st := res.stats(false)
	t.Logf("%.0f calls/s, p50 %.0fµs, p99 %.0fµs, %d errors", st.Throughput, st.P50US, st.P99US, st.Errors)
}

func TestBenchIngestFlags(t *testing.T) {
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	err := runBench(context.Background(), e, []string{"--ingest", "x.jsonl", "--ingest-batch", "0"})
	if err == nil || !strings.Contains(err.Error(), "--ingest-batch") {
		t.Fatalf("batch 0: %v, want an --ingest-batch error", err)
	}
}

func TestBenchWindow(t *testing.T) {
	addr := startBenchStack(t)
	o := &benchOptions{addr: addr, protocol: "connect", selector: "bench.window+avg", scalar: "bench.scalar", keys: keysFlag{"card_id": "w1"},
		concurrency: 2, connections: 1, duration: 500 * time.Millisecond, warmup: 20 * time.Millisecond,
		rate: 400, output: "json", setup: true, rounds: 1}
	rep := benchOK(t, o)
	p := rep.Phases[len(rep.Phases)-1]
	if first, second, _ := p.sides(); first != "scalar" || second != "windowed" || !strings.Contains(p.Call, "bench.window+{sum,count,min,max,avg}") {
		t.Fatalf("last phase %q, sides %q %q", p.Call, first, second)
	}
	// Half the sends are scalar, the other half spread over the five aggregations.
	if s, w := p.Baseline.Calls, p.Osprey.Calls; s == 0 || s != w || p.Baseline.Errors+p.Osprey.Errors != 0 {
		t.Errorf("scalar %d calls, windowed %d calls, %d + %d errors", s, w, p.Baseline.Errors, p.Osprey.Errors)
	}
	v := rep.Targets[len(rep.Targets)-1]
	if !strings.Contains(v.Target, "windowed Get p99") || !strings.Contains(v.Target, "60 buckets filled") || !(v.Ratio > 0) || v.Reference {
		t.Errorf("verdict %+v", v)
	}
	if note := strings.Join(rep.Notes, "\n"); !strings.Contains(note, "+min") || !strings.Contains(note, "+avg") {
		t.Errorf("notes %q: want each aggregation's p99", note)
	}
	// The set-up filled the window: one value per bucket (1 … 60, the oldest 60), and the
	// bench's own 1. When a minute has turned since, the oldest bucket has left the window:
	// the reads see all of it or all but that one, never a mix.
	target, err := newBenchTarget("osprey", addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer target.close()
	sels := []string{"bench.window+count", "bench.window+min", "bench.window+max", "bench.window+sum"}
	full, slid := []float64{61, 1, 60, 1831}, []float64{60, 1, 59, 1771}
	for attempt := 0; ; attempt++ {
		var got []float64
		for _, sel := range sels {
			res, err := target.clients[0].Get(context.Background(), connect.NewRequest(&ospreyv1.GetRequest{Selector: sel, Keys: o.keys}))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.Msg.GetValue().GetFloatValue())
		}
		if slices.Equal(got, full) || slices.Equal(got, slid) {
			break
		}
		if attempt == 1 { // the minute may turn between two of the four reads: once more
			t.Fatalf("%v = %v, want %v (or %v once the oldest bucket has left the window)", sels, got, full, slid)
		}
	}
	var text bytes.Buffer
	rep.writeText(&text)
	if !strings.Contains(text.String(), "windowed/scalar") {
		t.Errorf("text lacks the windowed/scalar ratio:\n%s", text.String())
	}
}

func TestBenchWindowRefused(t *testing.T) {
	addr := startBenchStack(t)
	for _, c := range []struct{ selector, scalar, want string }{
		{"bench.scalar", "shop.spend", "--selector bench.scalar is not a windowed feature"},
		{"bench.window+avg", "shop.spend", "--scalar shop.spend is a windowed feature"},
		{"bench.window+avg", "nope.nothing", "--scalar nope.nothing"},
		{"nope.nothing+avg", "bench.scalar", "--selector nope.nothing+avg"},
	} {
		o := &benchOptions{addr: addr, protocol: "connect", selector: c.selector, scalar: c.scalar, keys: keysFlag{"card_id": "c1"}, connections: 1}
		target, err := newBenchTarget("osprey", addr, o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = planWindow(context.Background(), target.clients[0], o)
		target.close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--selector %s --scalar %s: %v, want %q", c.selector, c.scalar, err, c.want)
		}
	}
	o := &benchOptions{protocol: "connect", selector: "bench.window+avg", scalar: "bench.window+sum", concurrency: 1, connections: 1,
		duration: time.Second, rounds: 1, output: "text"}
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--scalar") {
		t.Errorf("--scalar naming --selector's feature: %v", err)
	}
}
