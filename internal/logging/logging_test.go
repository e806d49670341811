package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const esc = "\x1b["

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantJSON  bool
		wantLevel slog.Level // lowest level that is written
	}{
		{name: "zero options, not a terminal", opts: Options{}, wantJSON: true, wantLevel: slog.LevelInfo},
		{name: "auto, not a terminal", opts: Options{Format: FormatAuto}, wantJSON: true, wantLevel: slog.LevelInfo},
		{name: "forced json", opts: Options{Format: FormatJSON}, wantJSON: true, wantLevel: slog.LevelInfo},
		{name: "forced text", opts: Options{Format: FormatText}, wantJSON: false, wantLevel: slog.LevelInfo},
		{name: "json at debug", opts: Options{Format: FormatJSON, Level: slog.LevelDebug}, wantJSON: true, wantLevel: slog.LevelDebug},
		{name: "text at warn", opts: Options{Format: FormatText, Level: slog.LevelWarn}, wantJSON: false, wantLevel: slog.LevelWarn},
		{name: "json with source", opts: Options{Format: FormatJSON, AddSource: true}, wantJSON: true, wantLevel: slog.LevelInfo},
		{name: "text with source", opts: Options{Format: FormatText, AddSource: true}, wantJSON: false, wantLevel: slog.LevelInfo},
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, tt.opts)
			for _, l := range levels {
				log.Log(t.Context(), l, "hello "+l.String(), "feature", "fraud.amount")
			}
			out := buf.String()
			if strings.Contains(out, esc) {
				t.Errorf("output to a non-terminal contains ANSI escapes:\n%q", out)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			var want int
			for _, l := range levels {
				if l >= tt.wantLevel {
					want++
				}
			}
			if len(lines) != want {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), want, out)
			}
			for i, line := range lines {
				l := levels[len(levels)-want+i]
				msg := "hello " + l.String()
				if !tt.wantJSON {
					if !strings.Contains(line, msg) || !strings.Contains(line, "feature=fraud.amount") {
						t.Errorf("text line %q lacks message %q or attribute", line, msg)
					}
					if tt.opts.AddSource && !strings.Contains(line, "logging_test.go:") {
						t.Errorf("text line %q lacks source", line)
					}
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("line %q is not JSON: %v", line, err)
				}
				if rec["msg"] != msg || rec["level"] != l.String() || rec["feature"] != "fraud.amount" {
					t.Errorf("record %v: want msg %q, level %q, feature fraud.amount", rec, msg, l)
				}
				if _, ok := rec["source"]; ok != tt.opts.AddSource {
					t.Errorf("record %v: source present = %v, want %v", rec, ok, tt.opts.AddSource)
				}
			}
		})
	}
}

func TestColour(t *testing.T) {
	tests := []struct {
		name      string
		format    string
		tty       bool
		noColor   bool
		wantText  bool
		wantColor bool
	}{
		{name: "auto on terminal", format: FormatAuto, tty: true, wantText: true, wantColor: true},
		{name: "auto on terminal, NO_COLOR", format: FormatAuto, tty: true, noColor: true, wantText: true},
		{name: "auto off terminal", format: FormatAuto},
		{name: "text off terminal", format: FormatText, wantText: true},
		{name: "text on terminal", format: FormatText, tty: true, wantText: true, wantColor: true},
		{name: "text on terminal, NO_COLOR", format: FormatText, tty: true, noColor: true, wantText: true},
		{name: "json on terminal", format: FormatJSON, tty: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := newHandler(&buf, Options{Format: tt.format}, tt.tty, tt.noColor)
			slog.New(h).Error("boom", "err", "x")
			out := buf.String()
			if got := json.Valid(buf.Bytes()); got == tt.wantText {
				t.Errorf("JSON output = %v, want %v:\n%q", got, !tt.wantText, out)
			}
			if got := strings.Contains(out, esc); got != tt.wantColor {
				t.Errorf("colour = %v, want %v:\n%q", got, tt.wantColor, out)
			}
			if !strings.Contains(out, "boom") {
				t.Errorf("output lacks the message:\n%q", out)
			}
		})
	}
}

func TestNoColorEnv(t *testing.T) {
	// New reads NO_COLOR; a buffer is never a terminal, so forced text
	// must be plain either way. This guards the wiring, not the policy.
	for _, v := range []string{"", "1"} {
		t.Setenv("NO_COLOR", v)
		var buf bytes.Buffer
		New(&buf, Options{Format: FormatText}).Info("plain")
		if strings.Contains(buf.String(), esc) || !strings.Contains(buf.String(), "plain") {
			t.Errorf("NO_COLOR=%q: got %q", v, buf.String())
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	tests := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{name: "buffer", w: &bytes.Buffer{}, want: false},
		{name: "regular file", w: f, want: false},
		{name: "nil file", w: (*os.File)(nil), want: false},
		{name: "character device", w: null, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isTerminal(tt.w); got != tt.want {
				t.Errorf("isTerminal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{in: "", want: slog.LevelInfo},
		{in: "debug", want: slog.LevelDebug},
		{in: "DEBUG", want: slog.LevelDebug},
		{in: " Info ", want: slog.LevelInfo},
		{in: "warn", want: slog.LevelWarn},
		{in: "warning", want: slog.LevelWarn},
		{in: "WARNING", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: "info+2", want: slog.LevelInfo + 2},
		{in: "error-1", want: slog.LevelError - 1},
		{in: "verbose", wantErr: true},
		{in: "3", wantErr: true},
		{in: "info+", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLevel(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "", want: FormatAuto},
		{in: "auto", want: FormatAuto},
		{in: "TEXT", want: FormatText},
		{in: " json ", want: FormatJSON},
		{in: "logfmt", wantErr: true},
		{in: "jsonl", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFormat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFormat(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseFormat(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
