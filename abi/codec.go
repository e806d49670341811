package abi

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("abi: malformed message")

// MalformedError is the type of decoding errors: it wraps ErrMalformed and says what is
// wrong and where.
type MalformedError struct{ Msg string }

// Error returns "abi: malformed message: " and the message.
func (e *MalformedError) Error() string { return ErrMalformed.Error() + ": " + e.Msg }

// Unwrap returns ErrMalformed.
func (e *MalformedError) Unwrap() error { return ErrMalformed }

// errorf formats a MalformedError. It understands the verbs this package uses — %d for
// integers, %q for strings, %#x for bytes — rather than calling fmt, so that a guest
// linking this package does not link fmt (about 0.7 MB of WebAssembly).
func errorf(format string, args ...any) error {
	var b []byte
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) || len(args) == 0 {
			b = append(b, c)
			continue
		}
		i++
		hex := false
		if format[i] == '#' && i+1 < len(format) {
			hex = true
			i++
		}
		verb := format[i]
		arg := args[0]
		args = args[1:]
		switch a := arg.(type) {
		case string:
			if verb == 'q' {
				b = strconv.AppendQuote(b, a)
			} else {
				b = append(b, a...)
			}
			continue
		case int:
			b = strconv.AppendInt(b, int64(a), 10)
			continue
		case int64:
			b = strconv.AppendInt(b, a, 10)
			continue
		}
		var u uint64
		switch a := arg.(type) {
		case uint8:
			u = uint64(a)
		case Tag:
			u = uint64(a)
		case uint64:
			u = a
		}
		if hex {
			b = strconv.AppendUint(append(b, "0x"...), u, 16)
		} else {
			b = strconv.AppendUint(b, u, 10)
		}
	}
	return &MalformedError{Msg: string(b)}
}

// AppendUvarint appends x as unsigned LEB128.
func AppendUvarint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }

// AppendI64 appends x as 8 little-endian bytes.
func AppendI64(b []byte, x int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(x)) }

// AppendF64 appends x's IEEE 754 bits as 8 little-endian bytes.
func AppendF64(b []byte, x float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
}

// AppendString appends s as a uvarint length and its bytes.
func AppendString(b []byte, s string) []byte {
	b = AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decoder reads ABI encodings from a byte slice. The first error sticks: later reads return
// zero values, and Err reports it. A Decoder never panics, whatever the input.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder returns a Decoder over b. It does not copy b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Reset makes d read b from the start and clears its error.
func (d *Decoder) Reset(b []byte) { d.buf, d.off, d.err = b, 0, nil }

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Len returns how many bytes are left.
func (d *Decoder) Len() int { return len(d.buf) - d.off }

// Offset returns how many bytes were read.
func (d *Decoder) Offset() int { return d.off }

// Done returns an error if d failed or if bytes are left over.
func (d *Decoder) Done() error {
	if d.err == nil && d.off != len(d.buf) {
		d.err = errorf("%d unexpected bytes after the message", len(d.buf)-d.off)
	}
	return d.err
}

func (d *Decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.off = len(d.buf)
}

func (d *Decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.buf)-d.off < n {
		d.fail(errorf("truncated at byte %d (need %d more, have %d)", d.off, n, len(d.buf)-d.off))
		return false
	}
	return true
}

func (d *Decoder) skip(n int) {
	if d.need(n) {
		d.off += n
	}
}

// U8 reads one byte.
func (d *Decoder) U8() uint8 {
	if !d.need(1) {
		return 0
	}
	d.off++
	return d.buf[d.off-1]
}

func (d *Decoder) bool() uint8 {
	at := d.off
	b := d.U8()
	if b > 1 {
		d.fail(errorf("bool at byte %d is %d, want 0 or 1", at, b))
		return 0
	}
	return b
}

// Uvarint reads an unsigned LEB128 number in its minimal (shortest) encoding; a padded
// encoding such as 0x80 0x00 for 0 is an error.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail(errorf("bad uvarint at byte %d", d.off))
		return 0
	}
	if n > 1 && d.buf[d.off+n-1] == 0 {
		// A last byte of 0 adds nothing: the shorter encoding was possible. Accepting it would
		// give one message two encodings (ABI.md: uvarints are minimal).
		d.fail(errorf("non-minimal uvarint at byte %d", d.off))
		return 0
	}
	d.off += n
	return x
}

// count reads a length or element count and checks that at least n*elemSize bytes remain,
// so that a hostile count cannot make the decoder allocate more than the input's size.
func (d *Decoder) count(elemSize int) int {
	at := d.off
	x := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if x > MaxMessageSize {
		d.fail(errorf("length %d at byte %d exceeds the %d-byte message limit", x, at, MaxMessageSize))
		return 0
	}
	if int(x)*elemSize > len(d.buf)-d.off {
		d.fail(errorf("length %d at byte %d exceeds the %d bytes left", x, at, len(d.buf)-d.off))
		return 0
	}
	return int(x)
}

// I64 reads 8 little-endian bytes.
func (d *Decoder) I64() int64 {
	if !d.need(8) {
		return 0
	}
	x := binary.LittleEndian.Uint64(d.buf[d.off:])
	d.off += 8
	return int64(x)
}

// F64 reads an IEEE 754 double.
func (d *Decoder) F64() float64 { return math.Float64frombits(uint64(d.I64())) }

// StringBytes reads a String and returns its bytes without copying: they alias the input.
func (d *Decoder) StringBytes() []byte {
	at := d.off
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	if !utf8.Valid(b) {
		d.fail(errorf("string at byte %d is not valid UTF-8", at))
		return nil
	}
	return b
}

// String reads a String (a copy).
func (d *Decoder) String() string { return string(d.StringBytes()) }
