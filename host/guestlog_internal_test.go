package host

import (
	"log/slog"
	"strings"
	"testing"
)

// testOutput returns a stderr guestOutput of an instance of a host that logs nothing.
func testOutput() *guestOutput {
	h := &Host{log: slog.New(slog.DiscardHandler)}
	return &guestOutput{inst: &instance{m: &module{h: h}, fqn: "t.x"}, level: slog.LevelWarn, stream: "stderr"}
}

func TestTail(t *testing.T) {
	noise := strings.Repeat("noise\n", 10000)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"nothing", nil, ""},
		{"last three lines", []string{"a\nb\n", "c\nd\n"}, ": b | c | d"},
		{"a partial line counts", []string{"a\nb\nc\nd"}, ": b | c | d"},
		{"Go panic", []string{"panic: boom\n\ngoroutine 1 [running]:\nmain.f()\n"}, ": panic: boom | goroutine 1 [running]:"},
		{"written piecewise", []string{"pan", "ic: bo", "om\n", "\n", "goroutine 1", " [running]:\n"}, ": panic: boom | goroutine 1 [running]:"},
		{"panic after a flood", []string{noise, "panic: boom\n\n", "goroutine 1 [running]:\n", noise}, ": panic: boom | goroutine 1 [running]:"},
		{"the last panic", []string{"panic: one\n\ngoroutine 1\npanic: two\n"}, ": panic: two"},
		{"a partial panic line", []string{"x\npanic: bo"}, ": panic: bo"},
		{"after a panic, a partial line", []string{"panic: boom\n\ngorou"}, ": panic: boom | gorou"},
		{"fatal error", []string{"runtime: out of memory\nfatal error: out of memory\n\nruntime stack:\n"}, ": fatal error: out of memory | runtime stack:"},
		{"escaped", []string{"a\x1b[2J\nb\n"}, `: a\u001b[2J | b`},
		{"long line cut", []string{strings.Repeat("x", 5000) + "\n"}, ": " + strings.Repeat("x", maxLine) + "…[truncated 904 bytes]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testOutput()
			for _, w := range tt.writes {
				if n, err := g.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := g.tail(); got != tt.want {
				t.Errorf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCleanString(t *testing.T) {
	tests := []struct {
		in           string
		limit, extra int
		want         string
	}{
		{"plain", 10, 0, "plain"},
		{"", 10, 0, ""},
		{"a\nb", 10, 0, `a\nb`},
		{"tab\there", 20, 0, `tab\there`},
		{"esc\x1b[31m", 20, 0, `esc\u001b[31m`},
		{`lit\x1b[31m`, 20, 0, `lit\u005cx1b[31m`},
		{`back\slash`, 20, 0, `back\slash`},
		{"bidi\u202eevil", 20, 0, `bidi\u202eevil`},
		{"sep\u2028x", 20, 0, `sep\u2028x`},
		{"c1\u009bx", 20, 0, `c1\u009bx`},
		{"bad\xffutf8", 20, 0, "bad\uFFFDutf8"},
		{"héllo wörld", 20, 0, "héllo wörld"},
		{"abcdef", 3, 0, "abc…[truncated 3 bytes]"},
		{"abc", 3, 5, "abc…[truncated 5 bytes]"},
		{"ééé", 5, 0, "éé…[truncated 2 bytes]"}, // never half a rune
		{"a\nb", 2, 0, "a…[truncated 2 bytes]"}, // never half an escape
	}
	for _, tt := range tests {
		if got := cleanString(tt.in, tt.limit, tt.extra); got != tt.want {
			t.Errorf("cleanString(%q, %d, %d) = %q, want %q", tt.in, tt.limit, tt.extra, got, tt.want)
		}
	}
}

func TestCleanKey(t *testing.T) {
	for in, want := range map[string]string{
		"user_id": "user_id", "a.b-c:d/e": "a.b-c:d/e", "!BADKEY": "!BADKEY", "x#2": "x#2", "": "_", "a b": "a_b", "k=v": "k_v", `q"\`: "q__",
		"x\ny": "x_y", "naïve": "naïve", "\u202e": "_", strings.Repeat("k", 70): strings.Repeat("k", maxAttrKey),
	} {
		if got := cleanKey(in); got != want {
			t.Errorf("cleanKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkGuestLogDropped measures the rate limiter refusing a line: what a guest flooding
// the log costs the host per line, beyond the host call itself (see BenchmarkGuestLog).
func BenchmarkGuestLogDropped(b *testing.B) {
	h := &Host{log: slog.New(slog.DiscardHandler), cfg: config{guestLog: guestLogLimit{perSecond: 0, burst: 1, set: true}}}
	bk := h.logBucket("t.x")
	bk.allow() // makes the summary timer
	b.ReportAllocs()
	for b.Loop() {
		if bk.allow() {
			b.Fatal("allowed")
		}
	}
	bk.timer.Stop()
}

// BenchmarkGuestLogAllowed measures the rate limiter letting a line through.
func BenchmarkGuestLogAllowed(b *testing.B) {
	h := &Host{log: slog.New(slog.DiscardHandler), cfg: config{guestLog: guestLogLimit{perSecond: 1 << 40, burst: 1 << 40, set: true}}}
	bk := h.logBucket("t.x")
	b.ReportAllocs()
	for b.Loop() {
		if !bk.allow() {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkGuestStderrDropped measures a stderr line the rate limit drops: split, kept for
// tail, counted.
func BenchmarkGuestStderrDropped(b *testing.B) {
	g := testOutput()
	g.inst.m.h.log = slog.New(slog.NewJSONHandler(nopWriter{}, nil))
	g.inst.m.h.cfg.guestLog = guestLogLimit{perSecond: 0, burst: 1, set: true}
	line := []byte("a line of a guest's stderr, of a typical length for a log line\n")
	g.Write(line)
	b.ReportAllocs()
	for b.Loop() {
		g.Write(line)
	}
	g.bucket.timer.Stop()
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
