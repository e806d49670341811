package host_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmittmann/tint"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

// guestOut is one thing a log test guest does in its loop: an osprey.log call (Level, Msg,
// Attrs) or, when Fd is 1 or 2, a write of Msg to stdout or stderr.
type guestOut struct {
	Fd    int32
	Level int32
	Msg   string
	Attrs []abi.Field
}

// logGuest builds a program guest whose osprey_program does outs, repeat times, then
// returns the fixtures' OK response. Its data lives from the second page on, clear of the
// fixtures' alloc region.
func logGuest(repeat int32, outs ...guestOut) []byte {
	i32 := wb.I32
	m := wb.New()
	logFn := m.ImportFunc(abi.HostModule, abi.ImportLog, wb.FuncType{Params: []wb.ValType{i32, i32, i32, i32, i32}})
	fdWrite := m.ImportFunc("wasi_snapshot_preview1", "fd_write", wb.FuncType{Params: []wb.ValType{i32, i32, i32, i32}, Results: []wb.ValType{i32}})
	const base = 65536
	var data []byte
	put := func(b []byte) int32 {
		off := int32(base + len(data))
		data = append(data, b...)
		for len(data)%8 != 0 {
			data = append(data, 0)
		}
		return off
	}
	nwritten := put(make([]byte, 8))
	var body []byte
	for _, o := range outs {
		msg := put([]byte(o.Msg))
		if o.Fd != 0 {
			iov := put(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(msg)), uint32(len(o.Msg))))
			body = append(body, wb.Seq(wb.I32Const(o.Fd), wb.I32Const(iov), wb.I32Const(1), wb.I32Const(nwritten), wb.Call(fdWrite), wb.Drop())...)
			continue
		}
		var attrs, attrsLen int32
		if len(o.Attrs) > 0 {
			enc := abi.AppendRow(nil, o.Attrs)
			attrs, attrsLen = put(enc), int32(len(enc))
		}
		body = append(body, wb.Seq(wb.I32Const(o.Level), wb.I32Const(msg), wb.I32Const(int32(len(o.Msg))),
			wb.I32Const(attrs), wb.I32Const(attrsLen), wb.Call(logFn))...)
	}
	m.Memory(uint32(2+len(data)/65536), nil)
	m.Data(wb.ResponseOffset, wb.NoopResponse())
	m.Data(base, data)
	version := m.Func(wb.FuncType{Results: []wb.ValType{i32}}, nil, wb.I32Const(int32(wb.DefaultABIVersion)))
	alloc := m.Func(wb.FuncType{Params: []wb.ValType{i32}, Results: []wb.ValType{i32}}, nil,
		wb.I32Const(wb.AllocPtr), wb.I32Const(0), wb.LocalGet(0), wb.I32Const(wb.AllocMaxSize), wb.I32LeU(), wb.Select())
	program := m.Func(wb.ProgramType, []wb.ValType{i32},
		wb.Loop(wb.BlockEmpty,
			body,
			wb.LocalGet(2), wb.I32Const(1), wb.I32Add(), wb.LocalTee(2), wb.I32Const(repeat), wb.I32LtU(), wb.BrIf(0)),
		wb.I64Const(int64(wb.ResponseOffset)<<32|int64(len(wb.NoopResponse()))))
	m.ExportMemory("memory")
	m.ExportFunc(abi.ExportVersion, version)
	m.ExportFunc(abi.ExportAlloc, alloc)
	m.ExportFunc(abi.ExportProgram, program)
	return m.Bytes()
}

// jsonLines parses JSON handler output, one record a line, and returns the records with
// component=guest.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, sc.Text())
		}
		if m["component"] == "guest" {
			recs = append(recs, m)
		}
	}
	return recs
}

func attrs(kv ...any) []abi.Field {
	var fs []abi.Field
	for i := 0; i < len(kv); i += 2 {
		var v abi.Value
		switch x := kv[i+1].(type) {
		case string:
			v = abi.String(x)
		case int:
			v = abi.Int(int64(x))
		case abi.Value:
			v = x
		}
		fs = append(fs, abi.Field{Name: kv[i].(string), Value: v})
	}
	return fs
}

// TestGuestLogRecords checks what one guest line becomes in the JSON handler's output: the
// host's fixed message, fqn and component at the top, the guest's text and attributes below,
// cut and escaped.
func TestGuestLogRecords(t *testing.T) {
	long := strings.Repeat("é", 5000) // 10000 bytes
	var many []any
	for i := range 40 {
		many = append(many, fmt.Sprintf("a%02d", i), i)
	}
	tests := []struct {
		name  string
		out   guestOut
		check func(t *testing.T, rec map[string]any)
	}{
		{"forged attribute names", guestOut{Level: 0, Msg: "hi", Attrs: attrs("level", "ERROR", "msg", "forged", "time", "yesterday",
			"component", "host", "fqn", "t.other", "guest", "nested", "n", 42)},
			func(t *testing.T, rec map[string]any) {
				want := map[string]any{"level": "INFO", "msg": "guest log", "component": "guest", "fqn": "t.log", "text": "hi"}
				for k, v := range want {
					if rec[k] != v {
						t.Errorf("%s = %v, want %v", k, rec[k], v)
					}
				}
				if _, err := time.Parse(time.RFC3339Nano, rec["time"].(string)); err != nil {
					t.Errorf("time = %v", rec["time"])
				}
				g, _ := rec["guest"].(map[string]any)
				wantGuest := map[string]any{"level": "ERROR", "msg": "forged", "time": "yesterday", "component": "host", "fqn": "t.other", "guest": "nested", "n": 42.0}
				if len(g) != len(wantGuest) {
					t.Errorf("guest = %v, want %v", g, wantGuest)
				}
				for k, v := range wantGuest {
					if g[k] != v {
						t.Errorf("guest.%s = %v, want %v", k, g[k], v)
					}
				}
				if len(rec) != 7 { // time, level, msg, fqn, component, text, guest
					t.Errorf("top-level keys: %v", rec)
				}
			}},
		{"error level is clamped to warn", guestOut{Level: 8, Msg: "bad"}, wantTop("level", "WARN")},
		{"huge level is clamped to warn", guestOut{Level: 1 << 30, Msg: "bad"}, wantTop("level", "WARN")},
		{"tiny level is clamped to debug", guestOut{Level: -1 << 30, Msg: "quiet"}, wantTop("level", "DEBUG")},
		{"warn+2 is clamped to warn", guestOut{Level: 6, Msg: "x"}, wantTop("level", "WARN")},
		{"info+1 is kept", guestOut{Level: 1, Msg: "x"}, wantTop("level", "INFO+1")},
		{"long message", guestOut{Msg: long}, wantTop("text", strings.Repeat("é", 2048)+"…[truncated 5904 bytes]")},
		{"long attribute", guestOut{Msg: "m", Attrs: attrs("v", long)}, wantGuest("v", strings.Repeat("é", 2048)+"…[truncated 5904 bytes]")},
		{"long attribute name", guestOut{Msg: "m", Attrs: attrs(strings.Repeat("k", 100), 1)}, wantGuest(strings.Repeat("k", 64), 1.0)},
		{"attribute name with spaces and escapes", guestOut{Msg: "m", Attrs: attrs("a b=c\n\x1b[2J", 1)}, wantGuest("a_b_c__[2J", 1.0)},
		{"many attributes", guestOut{Msg: "m", Attrs: attrs(many...)},
			func(t *testing.T, rec map[string]any) {
				if g := rec["guest"].(map[string]any); len(g) != 32 || g["a31"] != 31.0 || g["a32"] != nil {
					t.Errorf("guest = %v, want a00..a31", g)
				}
				if rec["attrs_omitted"] != 8.0 {
					t.Errorf("attrs_omitted = %v, want 8", rec["attrs_omitted"])
				}
			}},
		{"record budget", guestOut{Msg: "m", Attrs: attrs("a", long, "b", long, "c", long, "d", long, "e", long)},
			func(t *testing.T, rec map[string]any) {
				g := rec["guest"].(map[string]any)
				n := 0
				for _, v := range g {
					n += len(v.(string))
				}
				if n > 4*(4096+32) || len(g) != 4 || rec["attrs_omitted"] != 1.0 {
					t.Errorf("%d attributes, %d bytes, %v omitted; want 4 within 16 KiB, 1 omitted", len(g), n, rec["attrs_omitted"])
				}
			}},
		{"control characters", guestOut{Msg: "a\nb\r\tc\x1b[2J\x00\x7f\u0085\u2028\u202ed\xffe\\x1b[31m"},
			wantTop("text", `a\nb\r\tc\u001b[2J\u0000\u007f\u0085\u2028\u202ed`+"\uFFFD"+`e\u005cx1b[31m`)},
		{"control characters in an attribute", guestOut{Msg: "m", Attrs: attrs("s", "x\ny")}, wantGuest("s", `x\ny`)},
		{"values keep their types", guestOut{Msg: "m", Attrs: attrs("i", 7, "f", abi.Float(1.5), "b", abi.Bool(true), "nil", abi.Null(),
			"ts", abi.Timestamp(0), "l", abi.Value{Tag: abi.TagStringList, Strs: []string{"a", "b\n"}})},
			func(t *testing.T, rec map[string]any) {
				g := rec["guest"].(map[string]any)
				want := map[string]any{"i": 7.0, "f": 1.5, "b": true, "nil": nil, "ts": "1970-01-01T00:00:00Z", "l": `["a" "b\n"]`}
				for k, v := range want {
					if g[k] != v {
						t.Errorf("guest.%s = %#v, want %#v", k, g[k], v)
					}
				}
			}},
		{"stdout", guestOut{Fd: 1, Msg: "out\x1b[2J\n"}, func(t *testing.T, rec map[string]any) {
			wantTop("msg", "guest stdout")(t, rec)
			wantTop("level", "INFO")(t, rec)
			wantTop("text", `out\u001b[2J`)(t, rec)
			wantTop("component", "guest")(t, rec)
		}},
		{"stderr", guestOut{Fd: 2, Msg: "err\r\n"}, func(t *testing.T, rec map[string]any) {
			wantTop("msg", "guest stderr")(t, rec)
			wantTop("level", "WARN")(t, rec)
			wantTop("text", "err")(t, rec)
		}},
		{"long stdout line", guestOut{Fd: 1, Msg: strings.Repeat("x", 10000) + "\n"}, wantTop("text", strings.Repeat("x", 4096)+"…[truncated 5904 bytes]")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &syncBuffer{}
			h, err := host.New(context.Background(), slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(context.Background())
			p := load(t, h, "t.log", logGuest(1, tt.out))
			if _, err := run(p, time.Second); err != nil {
				t.Fatal(err)
			}
			recs := jsonLines(t, out.String())
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(recs), out.String())
			}
			tt.check(t, recs[0])
		})
	}
}

func wantTop(key string, want any) func(*testing.T, map[string]any) {
	return func(t *testing.T, rec map[string]any) {
		t.Helper()
		if rec[key] != want {
			t.Errorf("%s = %#v, want %#v", key, rec[key], want)
		}
	}
}

func wantGuest(key string, want any) func(*testing.T, map[string]any) {
	return func(t *testing.T, rec map[string]any) {
		t.Helper()
		g, _ := rec["guest"].(map[string]any)
		if g[key] != want {
			t.Errorf("guest.%s = %#v, want %#v (guest = %v)", key, g[key], want, g)
		}
	}
}

// TestGuestLogText checks the text handlers the project uses (internal/logging: tint on a
// terminal, with or without colour): a guest's line is one line, with no escape sequence of
// the guest's and no top-level key of its choosing.
func TestGuestLogText(t *testing.T) {
	out := guestOut{Msg: "hi\nERR forged line level=ERROR msg=x \x1b[2J \\x1b[2J \x1b]0;title\x07",
		Attrs: attrs("level", "ERROR", "msg=x", "y", "s", "a \x1b[2J\nb \\x1b[2J")}
	for _, noColor := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoColor=%v", noColor), func(t *testing.T) {
			buf := &syncBuffer{}
			h, err := host.New(context.Background(), slog.New(tint.NewTextHandler(buf, &tint.Options{NoColor: noColor})))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(context.Background())
			p := load(t, h, "t.log", logGuest(1, out, guestOut{Fd: 1, Msg: out.Msg + "\n"}))
			if _, err := run(p, time.Second); err != nil {
				t.Fatal(err)
			}
			raw := buf.String()
			for _, bad := range []string{"\x1b[2J", "\x1b]", "\x07", "\r"} {
				if strings.Contains(raw, bad) {
					t.Errorf("output contains %q:\n%q", bad, raw)
				}
			}
			s := tintColour.ReplaceAllString(raw, "") // tint's own colours
			lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
			if len(lines) != 3 { // the log call, and stdout's two lines
				t.Fatalf("%d lines, want 3:\n%s", len(lines), s)
			}
			for i, want := range []string{
				`INF guest log fqn=t.log component=guest text="hi\\nERR forged line level=ERROR msg=x \\u001b[2J \\u005cx1b[2J \\u001b]0;title\\u0007" guest.level=ERROR guest.msg_x=y guest.s="a \\u001b[2J\\nb \\u005cx1b[2J"`,
				`INF guest stdout fqn=t.log component=guest text=hi`,
				`INF guest stdout fqn=t.log component=guest text="ERR forged line level=ERROR msg=x \\u001b[2J \\u005cx1b[2J \\u001b]0;title\\u0007"`,
			} {
				if _, rest, _ := strings.Cut(lines[i], " INF "); "INF "+rest != want {
					t.Errorf("line %d:\n%s\nwant\n%s", i, lines[i], want)
				}
			}
		})
	}
}

// tintColour matches the colour codes tint writes.
var tintColour = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// logCounts counts a JSON log's guest records and the lines its drop summaries report, by FQN.
func logCounts(t *testing.T, out string) (logged, dropped map[string]int) {
	logged, dropped = map[string]int{}, map[string]int{}
	for _, rec := range jsonLines(t, out) {
		fqn, _ := rec["fqn"].(string)
		switch rec["msg"] {
		case "guest log", "guest stdout", "guest stderr":
			logged[fqn]++
		case "guest log lines dropped":
			n, _ := rec["dropped"].(float64)
			dropped[fqn] += int(n)
		default:
			t.Errorf("unexpected record %v", rec)
		}
	}
	return logged, dropped
}

// TestGuestLogFlood floods the log from osprey.log, stdout and stderr, from several instances
// at once: each feature gets about its burst into the log, every other line is counted in a
// drop summary (one a second at most), and the calls succeed.
func TestGuestLogFlood(t *testing.T) {
	const rate, burst, lines = 10, 20, 20000
	tests := []struct {
		name       string
		outs       []guestOut
		concurrent int
		opts       []host.Option
		wantBurst  int
		wantRate   int
	}{
		{"osprey.log", []guestOut{{Msg: "flood", Attrs: attrs("i", 1)}}, 1, []host.Option{host.WithGuestLogLimit(rate, burst)}, burst, rate},
		{"stdout", []guestOut{{Fd: 1, Msg: "flood\n"}}, 1, []host.Option{host.WithGuestLogLimit(rate, burst)}, burst, rate},
		{"all sources, concurrent instances", []guestOut{{Msg: "flood"}, {Fd: 1, Msg: "out\n"}, {Fd: 2, Msg: "err\n"}}, 4,
			[]host.Option{host.WithGuestLogLimit(rate, burst), host.WithMaxInstances(4)}, burst, rate},
		{"defaults", []guestOut{{Msg: "flood"}}, 1, nil, host.DefaultGuestLogBurst, host.DefaultGuestLogRate},
		{"silenced", []guestOut{{Msg: "flood"}}, 1, []host.Option{host.WithGuestLogLimit(0, 0)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &syncBuffer{}
			h, err := host.New(context.Background(), slog.New(slog.NewJSONHandler(out, nil)), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(context.Background())
			wasm := logGuest(lines, tt.outs...)
			fqns := []string{"t.flood1", "t.flood2"} // two features, one module: separate limits
			var wg sync.WaitGroup
			start := time.Now()
			for _, fqn := range fqns {
				p := load(t, h, fqn, wasm)
				for range tt.concurrent {
					wg.Go(func() {
						if _, err := run(p, 5*time.Second); err != nil {
							t.Error(err)
						}
					})
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			t.Logf("%d calls of %d lines each in %v", len(fqns)*tt.concurrent, lines*len(tt.outs), elapsed)
			sent := lines * len(tt.outs) * tt.concurrent
			// The summaries come within a second of the last drop.
			var logged, dropped map[string]int
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				logged, dropped = logCounts(t, out.String())
				if logged[fqns[0]]+dropped[fqns[0]] == sent && logged[fqns[1]]+dropped[fqns[1]] == sent {
					break
				}
			}
			maxLogged := tt.wantBurst + int(float64(tt.wantRate)*elapsed.Seconds()) + 1
			for _, fqn := range fqns {
				if logged[fqn] < tt.wantBurst || logged[fqn] > maxLogged || logged[fqn]+dropped[fqn] != sent {
					t.Errorf("%s: %d lines logged, %d reported dropped; want %d..%d logged, %d in all", fqn, logged[fqn], dropped[fqn], tt.wantBurst, maxLogged, sent)
				}
			}
			if n := strings.Count(out.String(), "guest log lines dropped"); n > 2*(int(time.Since(start).Seconds())+2) {
				t.Errorf("%d drop summaries, want at most one a second per feature", n)
			}
		})
	}
}

// TestGoGuestLogFlood floods the log from a Go guest, through the SDK: the call succeeds
// within its deadline with about a burst of lines logged, forged names inside the guest
// group; a guest that floods stderr and then panics still has its panic message in the error.
func TestGoGuestLogFlood(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/hostile")
	out := &syncBuffer{}
	h, err := host.New(context.Background(), slog.New(slog.NewJSONHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	e := engine.New(newState(t), engine.WithPrograms(h), engine.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := context.Background()
	f := feature(t, h, "t.hostile", wasm)
	f.Timeout = 5 * time.Second
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := e.DryRun(ctx, "t.hostile", engine.Keys{"id": "a"}, engine.Row{"mode": engine.String("logflood")}, time.Time{})
	if err != nil || res.Value.Int() != 100000 {
		t.Fatalf("logflood = %v, %v", res.Value, err)
	}
	t.Logf("logflood: 100000 osprey.log calls in %v", time.Since(start))
	logged := 0
	for _, rec := range jsonLines(t, out.String()) {
		if rec["msg"] != "guest log" {
			continue
		}
		logged++
		if rec["level"] != "WARN" || rec["fqn"] != "t.hostile" || rec["component"] != "guest" || rec["text"] != `flood\n\u001b[2Jlevel=ERROR` {
			t.Fatalf("record %v", rec)
		}
		if g := rec["guest"].(map[string]any); g["level"] != "ERROR" || g["fqn"] != "t.other" || g["component"] != "host" {
			t.Fatalf("guest attributes %v", g)
		}
	}
	if max := host.DefaultGuestLogBurst + int(time.Since(start).Seconds()*host.DefaultGuestLogRate) + 1; logged < host.DefaultGuestLogBurst || logged > max {
		t.Errorf("%d lines logged, want %d..%d", logged, host.DefaultGuestLogBurst, max)
	}

	start = time.Now()
	_, err = e.DryRun(ctx, "t.hostile", engine.Keys{"id": "a"}, engine.Row{"mode": engine.String("stderrflood")}, time.Time{})
	t.Logf("stderrflood: %v in %v", err, time.Since(start))
	if !errors.Is(err, host.ErrTrap) || !strings.Contains(err.Error(), "panic: drowned in noise") {
		t.Fatalf("stderrflood: %v; want a trap with the panic message", err)
	}
	if n := strings.Count(out.String(), `"guest stderr"`); n > host.DefaultGuestLogBurst+int(time.Since(start).Seconds()*host.DefaultGuestLogRate)+1 {
		t.Errorf("%d stderr lines logged", n)
	}
	if out, err := e.DryRun(ctx, "t.hostile", engine.Keys{"id": "a"}, engine.Row{"mode": engine.String("ok")}, time.Time{}); err != nil || out.Value.Int() != 7 {
		t.Fatalf("after the floods: %v, %v", out.Value, err)
	}
}

// BenchmarkGuestLog measures an osprey.log call or a stdout line from a guest (a module that
// logs 1000 times a call; ns/log is per line): dropped by the rate limit, logged to a JSON
// handler writing to io.Discard, or refused by the logger's level.
func BenchmarkGuestLog(b *testing.B) {
	const perCall = 1000
	logCall := logGuest(perCall, guestOut{Msg: "a guest line", Attrs: attrs("user", "u-123", "n", 42)})
	stdout := logGuest(perCall, guestOut{Fd: 1, Msg: "a guest line on stdout\n"})
	for _, bc := range []struct {
		name  string
		wasm  []byte
		log   *slog.Logger
		limit host.Option
	}{
		{"Dropped", logCall, slog.New(slog.NewJSONHandler(io.Discard, nil)), host.WithGuestLogLimit(1, 1)},
		{"Logged", logCall, slog.New(slog.NewJSONHandler(io.Discard, nil)), host.WithGuestLogLimit(1<<30, 1<<30)},
		{"Disabled", logCall, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})), host.WithGuestLogLimit(1, 1)},
		{"StdoutDropped", stdout, slog.New(slog.NewJSONHandler(io.Discard, nil)), host.WithGuestLogLimit(1, 1)},
		{"StdoutLogged", stdout, slog.New(slog.NewJSONHandler(io.Discard, nil)), host.WithGuestLogLimit(1<<30, 1<<30)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := host.New(context.Background(), bc.log, bc.limit)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			p := load(b, h, "t.bench", bc.wasm)
			if _, err := run(p, 10*time.Second); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := run(p, 10*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perCall), "ns/log")
		})
	}
}
