package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/osprey-ml/osprey/abi"
)

// Guest logging: what a guest writes to stdout and stderr (WASI) and what it logs through the
// osprey.log import (ABI.md §3). Both are bounded and kept apart from the host's own lines:
//
//   - Rate: a token bucket per feature (FQN), shared by all the feature's instances and both
//     sources (DefaultGuestLogRate lines a second, bursts of DefaultGuestLogBurst; see
//     WithGuestLogLimit). Lines over the limit are dropped and counted; the host logs one
//     "guest log lines dropped" line per feature at most once per summaryInterval.
//   - Size: a stdout/stderr line, an osprey.log message and each attribute value are cut at
//     maxLine bytes, attribute names at maxAttrKey, a record at maxAttrs attributes and
//     maxRecord bytes in all; a cut is marked ("…[truncated N bytes]").
//   - Namespace: the record's message is a fixed host string ("guest log", "guest stdout",
//     "guest stderr"); the host sets fqn and component=guest; the guest's text is the
//     attribute "text" and its attributes live in the group "guest", so no guest-chosen name
//     can become a top-level key. Control characters, line separators and bidirectional
//     overrides in guest strings are escaped, and attribute names are reduced to printable
//     characters without space, = or quotes, so a guest cannot start a new-looking line on
//     a terminal either.
//   - Level: osprey.log levels are clamped to Debug..Warn (ERROR belongs to the host: it
//     pages operators, and a guest must not be able to).

// Defaults of the per-feature guest log rate limit (WithGuestLogLimit).
const (
	DefaultGuestLogRate  = 100 // lines a second, sustained
	DefaultGuestLogBurst = 200 // lines at once
)

// Size limits of a guest's log records.
const (
	maxLine         = 4096        // bytes of a stdout/stderr line, an osprey.log message or an attribute value
	maxAttrs        = 32          // attributes of an osprey.log record; more are counted, not shown
	maxAttrKey      = 64          // bytes of an attribute name
	maxRecord       = 4 * maxLine // bytes of a record's text and attribute values together
	maxAttrBytes    = 64 << 10    // encoded osprey.log attributes larger than this are not decoded
	summaryInterval = time.Second
)

// The fixed messages of guest records: never the guest's own text.
const (
	msgGuestLog     = "guest log"
	msgGuestStdout  = "guest stdout"
	msgGuestStderr  = "guest stderr"
	msgGuestDropped = "guest log lines dropped"
)

// guestLogLimit is the configured rate limit (config.guestLog); the zero value means the
// defaults.
type guestLogLimit struct {
	perSecond, burst int
	set              bool
}

// guestLogs holds the rate limits of guest log lines, one bucket per FQN. The zero value is
// ready; it is safe for concurrent use.
type guestLogs struct {
	mu      sync.Mutex
	buckets map[string]*logBucket
}

// logBucket returns the rate limit of a feature's guest log lines, creating it on first use.
// (Buckets are never removed: there is one per feature FQN the host has run, a few dozen
// bytes each.) Lines logged while no feature call runs (_initialize) share the bucket of the
// empty FQN.
func (h *Host) logBucket(fqn string) *logBucket {
	l := &h.guestLogs
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[fqn]; b != nil {
		return b
	}
	perSecond, burst := DefaultGuestLogRate, DefaultGuestLogBurst
	if h.cfg.guestLog.set {
		perSecond, burst = h.cfg.guestLog.perSecond, h.cfg.guestLog.burst
	}
	b := &logBucket{fqn: fqn, log: h.log, burst: float64(max(burst, 1)), last: monotonic()}
	if perSecond > 0 {
		b.perNano = float64(perSecond) / float64(time.Second)
		b.tokens = b.burst
	}
	if l.buckets == nil {
		l.buckets = map[string]*logBucket{}
	}
	l.buckets[fqn] = b
	return b
}

// logBucket is a token bucket of guest log lines for one feature. Its methods are safe for
// concurrent use.
type logBucket struct {
	fqn     string
	log     *slog.Logger
	perNano float64 // tokens added per nanosecond (0: none, every line is dropped)
	burst   float64 // the bucket's capacity

	mu      sync.Mutex
	tokens  float64
	last    time.Duration // when tokens was last brought up to date (monotonic())
	dropped int64         // lines dropped since the last summary
	pending bool          // timer is set to log a summary
	timer   *time.Timer
}

// clockBase is the origin of monotonic.
var clockBase = time.Now()

// monotonic is the monotonic clock's reading since clockBase.
func monotonic() time.Duration { return time.Since(clockBase) }

// allow takes a token for one line and reports whether the line may be logged. A line it
// refuses is counted for the next summary; it does not allocate (but for the bucket's one
// timer, made the first time a line is dropped).
func (b *logBucket) allow() bool {
	now := monotonic()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)*b.perNano)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.dropped++
	if !b.pending {
		b.pending = true
		if b.timer == nil {
			b.timer = time.AfterFunc(summaryInterval, b.summarise)
		} else {
			b.timer.Reset(summaryInterval)
		}
	}
	return false
}

// summarise logs how many lines were dropped since the last summary (on the timer's
// goroutine, summaryInterval after the first of them).
func (b *logBucket) summarise() {
	b.mu.Lock()
	n := b.dropped
	b.dropped, b.pending = 0, false
	b.mu.Unlock()
	if n > 0 {
		b.log.LogAttrs(context.Background(), slog.LevelWarn, msgGuestDropped,
			slog.String("fqn", b.fqn), slog.String("component", "guest"), slog.Int64("dropped", n))
	}
}

// guestOutput logs what a guest writes to stdout or stderr, line by line, with the FQN of
// the feature it was running for, and keeps the last lines of stderr for error messages (even
// those the rate limit kept out of the log). It also caches the instance's log bucket for
// osprey.log. Its methods are safe for concurrent use; the zero value of every field but
// inst, level and stream is ready.
type guestOutput struct {
	inst   *instance
	level  slog.Level
	stream string // "stdout" or "stderr"

	mu        sync.Mutex
	partial   []byte // the current line, at most maxLine bytes of it
	overflow  int    // bytes of the current line beyond maxLine, discarded
	last      lastLines
	bucketFQN string
	bucket    *logBucket
}

// Write logs each complete line of p. A line's first maxLine bytes are kept; the rest is
// counted, and the line is logged when its newline arrives. It never fails.
// writeCheckBytes is how much of a write is processed between checks of the call's stop.
const writeCheckBytes = 64 << 10

// errStoppedWrite is what a write of a stopped call gets (WASI fd_write returns EIO).
var errStoppedWrite = errors.New("fd_write: the call was stopped")

func (g *guestOutput) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(p)
	checked := len(p) // where the stop was last checked: bytes left then
	if g.inst.stopped() {
		return 0, errStoppedWrite
	}
	for len(p) > 0 {
		if checked-len(p) >= writeCheckBytes { // a write costs by its size: stop in it too
			if g.inst.stopped() {
				return n - len(p), errStoppedWrite
			}
			checked = len(p)
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		take := min(maxLine-len(g.partial), len(chunk))
		g.partial = append(g.partial, chunk[:take]...)
		g.overflow += len(chunk) - take
		if i < 0 {
			break
		}
		g.endLine()
		p = p[i+1:]
	}
	return n, nil
}

// endLine logs the current line, within the rate limit, and remembers it (stderr). Callers
// hold g.mu.
func (g *guestOutput) endLine() {
	line := bytes.TrimSuffix(g.partial, []byte{'\r'})
	if g.stream == "stderr" {
		g.last.add(line, g.overflow)
	}
	h := g.inst.m.h
	ctx := context.Background()
	if h.log.Enabled(ctx, g.level) && g.bucketLocked().allow() {
		msg := msgGuestStdout
		if g.stream == "stderr" {
			msg = msgGuestStderr
		}
		h.log.LogAttrs(ctx, g.level, msg, slog.String("fqn", g.inst.fqn), slog.String("component", "guest"),
			slog.String("text", cleanString(string(line), maxLine, g.overflow)))
	}
	g.partial, g.overflow = g.partial[:0], 0
}

// allow takes a token from the bucket of the feature the instance is running for.
func (g *guestOutput) allow() bool {
	g.mu.Lock()
	b := g.bucketLocked()
	g.mu.Unlock()
	return b.allow()
}

// bucketLocked returns the log bucket of the instance's current FQN (looked up when it
// changes). Callers hold g.mu.
func (g *guestOutput) bucketLocked() *logBucket {
	if fqn := g.inst.fqn; g.bucket == nil || g.bucketFQN != fqn {
		g.bucket, g.bucketFQN = g.inst.m.h.logBucket(fqn), fqn
	}
	return g.bucket
}

// tail summarises what the guest last wrote, to end an error message: the last "panic:" or
// "fatal error:" line (a Go guest's dying words, before its stack trace) with the next
// non-blank line, or else the last three lines; it sees every line, including those the rate
// limit kept out of the log. The lines are escaped as in the log.
func (g *guestOutput) tail() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	pick := g.last.pick(keptLine{g.partial, g.overflow})
	if len(pick) == 0 {
		return ""
	}
	parts := make([]string, len(pick))
	for i, l := range pick {
		parts[i] = cleanString(string(l.b), maxLine, l.extra)
	}
	return ": " + strings.Join(parts, " | ")
}

// lastLines remembers what tail needs of a stream, in bounded memory: the last three lines
// and the last "panic:" or "fatal error:" line with the next non-blank line, each at most
// maxLine bytes (with the count of bytes cut). Its buffers are reused, so adding a line does
// not allocate once they have grown.
type lastLines struct {
	ring   [3]keptLine
	n      int // lines added; the next goes to ring[n%3]
	marker [2]keptLine
	nm     int // 0: no marker line; 1: a marker line, no line after it yet; 2: both
}

// keptLine is a line's first maxLine bytes and the count of the others.
type keptLine struct {
	b     []byte
	extra int
}

func (k *keptLine) set(b []byte, extra int) { k.b, k.extra = append(k.b[:0], b...), extra }

func isMarker(line []byte) bool {
	return bytes.HasPrefix(line, []byte("panic:")) || bytes.HasPrefix(line, []byte("fatal error:"))
}

func (l *lastLines) add(line []byte, extra int) {
	l.ring[l.n%3].set(line, extra)
	l.n++
	switch {
	case isMarker(line):
		l.marker[0].set(line, extra)
		l.nm = 1
	case l.nm == 1 && len(bytes.TrimSpace(line)) > 0: // Go leaves a blank line after a panic's
		l.marker[1].set(line, extra)
		l.nm = 2
	}
}

// pick returns the lines tail reports, as if partial (when not empty) were one more line.
func (l *lastLines) pick(partial keptLine) []keptLine {
	if len(partial.b) > 0 {
		switch {
		case isMarker(partial.b):
			return []keptLine{partial}
		case l.nm == 1 && len(bytes.TrimSpace(partial.b)) > 0:
			return []keptLine{l.marker[0], partial}
		case l.nm == 1:
			return l.marker[:1]
		case l.nm == 2:
			return l.marker[:]
		}
		return append(l.lastN(2), partial)
	}
	if l.nm > 0 {
		return l.marker[:l.nm]
	}
	return l.lastN(3)
}

// lastN returns the last k lines (fewer if fewer were added), oldest first.
func (l *lastLines) lastN(k int) []keptLine {
	k = min(k, l.n)
	out := make([]keptLine, 0, k+1)
	for i := l.n - k; i < l.n; i++ {
		out = append(out, l.ring[i%3])
	}
	return out
}

// clampLevel keeps a guest's level within Debug..Warn.
func clampLevel(l slog.Level) slog.Level { return min(max(l, slog.LevelDebug), slog.LevelWarn) }

// guestLog: (level, msg_ptr, msg_len, attrs_ptr, attrs_len). The level is clamped to
// Debug..Warn; nothing is read when the host's logger would discard the record, and the
// attributes are decoded (and checked) only when the rate limit lets the line through.
func (h *Host) guestLog(ctx context.Context, mod api.Module, stack []uint64) {
	inst := h.callingInstance(mod, abi.ImportLog)
	level := clampLevel(slog.Level(int32(uint32(stack[0]))))
	if !h.log.Enabled(ctx, level) {
		return
	}
	msg := read(mod, uint32(stack[1]), uint32(stack[2]), "log message")
	var enc []byte
	if n := uint32(stack[4]); n > 0 {
		enc = read(mod, uint32(stack[3]), n, "log attributes")
	}
	if !inst.stderr.allow() {
		return
	}
	text := cleanString(string(msg[:min(len(msg), 4*maxLine)]), maxLine, len(msg)-min(len(msg), 4*maxLine))
	top := make([]slog.Attr, 0, 6)
	top = append(top, slog.String("fqn", inst.fqn), slog.String("component", "guest"), slog.String("text", text))
	if len(enc) > maxAttrBytes {
		top = append(top, slog.Int("attrs_omitted_bytes", len(enc)))
		enc = nil
	}
	if len(enc) > 0 {
		var d abi.Decoder
		d.Reset(enc)
		row := d.Row()
		if err := d.Done(); err != nil {
			fault("log attributes: %v", err)
		}
		group, omitted := guestAttrs(row, maxRecord-len(text))
		if len(group) > 0 {
			top = append(top, slog.Attr{Key: "guest", Value: slog.GroupValue(group...)})
		}
		if omitted > 0 {
			top = append(top, slog.Int("attrs_omitted", omitted))
		}
	}
	h.log.LogAttrs(ctx, level, msgGuestLog, top...)
}

// guestAttrs turns a guest's attributes into slog attributes with clean names and bounded
// values: at most maxAttrs of them, their values within budget bytes in all. It returns them
// and how many were left out.
func guestAttrs(row []abi.Field, budget int) ([]slog.Attr, int) {
	attrs := make([]slog.Attr, 0, min(len(row), maxAttrs))
	for i, f := range row {
		if i == maxAttrs || budget < 64 {
			return attrs, len(row) - i
		}
		v, n := guestValue(f.Value, min(maxLine, budget))
		budget -= n
		attrs = append(attrs, slog.Attr{Key: cleanKey(f.Name), Value: v})
	}
	return attrs, 0
}

// guestValue converts a guest's attribute value, within limit bytes when it is text, and
// returns it with the bytes it takes. Scalars keep their type; lists and windows become text.
func guestValue(v abi.Value, limit int) (slog.Value, int) {
	switch v.Tag {
	case abi.TagNull:
		return slog.AnyValue(nil), 4
	case abi.TagInt:
		return slog.Int64Value(v.I), 20
	case abi.TagBool:
		return slog.BoolValue(v.I != 0), 5
	case abi.TagTimestamp:
		return slog.TimeValue(time.Unix(0, v.I).UTC()), 30
	case abi.TagFloat:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return slog.StringValue(strconv.FormatFloat(v.F, 'g', -1, 64)), 4
		}
		return slog.Float64Value(v.F), 24
	case abi.TagString:
		s := cleanString(v.S, limit, 0)
		return slog.StringValue(s), len(s)
	}
	s := cleanString(listText(v, limit), limit, 0)
	return slog.StringValue(s), len(s)
}

// listText renders a list or window value, stopping soon after limit bytes (cleanString
// then cuts and escapes it).
func listText(v abi.Value, limit int) string {
	if v.Tag == abi.TagWindow {
		w := v.W
		return fmt.Sprintf("window{mask=%#x sum=%g count=%g min=%g max=%g}", w.Mask, w.Sum, w.Count, w.Min, w.Max)
	}
	var n int
	switch v.Tag {
	case abi.TagIntList:
		n = len(v.Ints)
	case abi.TagFloatList:
		n = len(v.Floats)
	case abi.TagStringList:
		n = len(v.Strs)
	case abi.TagBoolList:
		n = len(v.Bools)
	case abi.TagTimestampList:
		n = len(v.Times)
	default:
		return v.Tag.String()
	}
	b := make([]byte, 0, min(limit+16, 256))
	b = append(b, '[')
	for i := 0; i < n && len(b) <= limit; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		switch v.Tag {
		case abi.TagIntList:
			b = strconv.AppendInt(b, v.Ints[i], 10)
		case abi.TagFloatList:
			b = strconv.AppendFloat(b, v.Floats[i], 'g', -1, 64)
		case abi.TagStringList:
			s := v.Strs[i]
			if len(s) > limit {
				s = s[:limit]
			}
			b = strconv.AppendQuote(b, s)
		case abi.TagBoolList:
			b = strconv.AppendBool(b, v.Bools[i])
		case abi.TagTimestampList:
			b = time.Unix(0, v.Times[i]).UTC().AppendFormat(b, time.RFC3339Nano)
		}
	}
	b = append(b, ']')
	return string(b)
}

// cleanKey makes a guest's attribute name safe to print: printable ASCII but for space, =, "
// and \, and letters and digits (anything else becomes _), at most maxAttrKey bytes, never
// empty.
func cleanKey(s string) string {
	ok := len(s) > 0 && len(s) <= maxAttrKey
	for _, r := range s {
		if !keyRune(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, min(len(s), maxAttrKey))
	for _, r := range s {
		if !keyRune(r) {
			r = '_'
		}
		if len(b)+utf8.RuneLen(r) > maxAttrKey {
			break
		}
		b = utf8.AppendRune(b, r)
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// keyRune reports whether r may appear in an attribute name as it is: printable ASCII but
// for space, '=', '"' and '\\' (which would let a name end itself or need quoting), and
// letters and digits beyond ASCII.
func keyRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r > ' ' && r < 0x7f && r != '=' && r != '"' && r != '\\'
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// truncatedMark ends a string that was cut.
func truncatedMark(n int) string { return "…[truncated " + strconv.Itoa(n) + " bytes]" }

// cleanString returns s escaped for a log line and cut to at most limit bytes (before the
// mark), followed by a truncation mark counting the bytes of s left out plus extra (bytes the
// caller already discarded). Escaped: control characters (C0, DEL, C1, as \n, \r, \t or
// \uXXXX), line and paragraph separators and bidirectional controls (\uXXXX); invalid UTF-8
// becomes U+FFFD. A backslash that would start the text \x1b is written \u005c, because the
// tint handler turns that text back into an escape character when it colours a quoted value.
// It returns s itself when there is nothing to do.
func cleanString(s string, limit, extra int) string {
	if len(s) <= limit && extra == 0 && plain(s) {
		return s
	}
	b := make([]byte, 0, min(len(s), limit)+32)
	var esc [6]byte
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		var e []byte
		switch {
		case r == utf8.RuneError && size == 1:
			e = utf8.AppendRune(esc[:0], utf8.RuneError)
		case r == '\n':
			e = append(esc[:0], `\n`...)
		case r == '\r':
			e = append(esc[:0], `\r`...)
		case r == '\t':
			e = append(esc[:0], `\t`...)
		case r == '\\' && strings.HasPrefix(s[i+1:], "x1b"):
			e = append(esc[:0], `\u005c`...)
		case unicode.IsControl(r) || unsafeFormat(r):
			e = append(esc[:0], '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		}
		n := size
		if e != nil {
			n = len(e)
		}
		if len(b)+n > limit {
			break
		}
		if e != nil {
			b = append(b, e...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	if left := len(s) - i + extra; left > 0 {
		b = append(b, truncatedMark(left)...)
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

// plain reports whether s is printable ASCII without a backslash: nothing to escape.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// unsafeFormat reports whether r reorders or breaks lines on display: the line and paragraph
// separators and the bidirectional controls (the "Trojan Source" characters).
func unsafeFormat(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029,
		r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
