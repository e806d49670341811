// Package logging builds the structured loggers used by Osprey's commands.
//
// Output is human-friendly (colourised text, via [tint.NewTextHandler]) when it goes to a
// terminal and machine-friendly (one JSON object per line, via
// [slog.JSONHandler]) otherwise, so the same binary logs well both on a
// developer's screen and under a log collector. Either can be forced.
//
// Colour follows the NO_COLOR convention (https://no-color.org): when the
// NO_COLOR environment variable is set to a non-empty value, text output is
// never colourised. Text written to something other than a terminal is not
// colourised either.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// Output formats accepted by [Options].Format and [ParseFormat].
const (
	// FormatAuto picks FormatText when the writer is a terminal and
	// FormatJSON otherwise.
	FormatAuto = "auto"
	// FormatText is human-readable, colourised (on terminals) text.
	FormatText = "text"
	// FormatJSON is one JSON object per record.
	FormatJSON = "json"
)

// Options configures [New].
type Options struct {
	// Level is the minimum level logged. Nil means slog.LevelInfo.
	Level slog.Leveler
	// Format is one of FormatAuto, FormatText or FormatJSON. The empty
	// string means FormatAuto; anything else is treated as FormatAuto too
	// (validate user input with [ParseFormat] first).
	Format string
	// AddSource adds the source file and line of the logging call.
	AddSource bool
}

// New returns a logger writing to w as configured by opts.
func New(w io.Writer, opts Options) *slog.Logger {
	return slog.New(newHandler(w, opts, isTerminal(w), os.Getenv("NO_COLOR") != ""))
}

// newHandler holds New's logic with its environment made explicit, for tests.
func newHandler(w io.Writer, opts Options, tty, noColor bool) slog.Handler {
	text := false
	switch opts.Format {
	case FormatText:
		text = true
	case FormatJSON:
		text = false
	default: // FormatAuto
		text = tty
	}
	if text {
		return tint.NewTextHandler(w, &tint.Options{
			Level:      opts.Level,
			AddSource:  opts.AddSource,
			TimeFormat: time.TimeOnly + ".000",
			NoColor:    noColor || !tty,
		})
	}
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:     opts.Level,
		AddSource: opts.AddSource,
	})
}

// isTerminal reports whether w is a character device such as a terminal.
// It deliberately avoids a dependency on a terminal library: a character
// device that is not a terminal (/dev/null) merely gets text output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}

// ParseLevel parses a level name, case-insensitively: "debug", "info",
// "warn" (or "warning"), "error", optionally with an offset as slog writes
// it ("info+2", "error-1"). The empty string is slog.LevelInfo.
func ParseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return slog.LevelInfo, nil
	case "warning":
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("logging: invalid level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// ParseFormat validates and normalises a format name, case-insensitively.
// The empty string is FormatAuto.
func ParseFormat(s string) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatText, FormatJSON:
		return f, nil
	default:
		return "", fmt.Errorf("logging: invalid format %q (want auto, text or json)", s)
	}
}
