package osprey

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Row is the input row of a program call: a lazy view over the call's encoded row. The SDK
// indexes the row's field names once per call (reusing memory from call to call) and decodes
// a field only when asked, so reading a few fields of a wide row costs little and, apart from
// strings and lists, allocates nothing.
//
// A Row is valid only during the call that received it: afterwards its accessors report
// that it is stale. The zero Row is empty.
type Row core.RowView

// ErrMissing is wrapped by the error a Row accessor returns for a field the row lacks.
var ErrMissing = errors.New("missing")

// FieldError is the error of a Row accessor: the field and what is wrong with it. Its
// message reads `field "amount": want float, got string`.
type FieldError struct {
	// Field is the field's name.
	Field string
	// Msg says what is wrong: "missing", "want int, got string", …
	Msg string

	err error // ErrMissing, core.ErrStale or nil
}

// Error returns `field "name": ` and the message.
func (e *FieldError) Error() string { return "field " + strconv.Quote(e.Field) + ": " + e.Msg }

// Unwrap returns ErrMissing for a missing field.
func (e *FieldError) Unwrap() error { return e.err }

func (r Row) view() core.RowView { return core.RowView(r) }

// field returns the named field's Value encoding (tag first).
func (r Row) field(name string) ([]byte, error) {
	b, ok, err := r.view().Find(name)
	switch {
	case err != nil:
		return nil, &FieldError{Field: name, Msg: err.Error(), err: err}
	case !ok:
		return nil, &FieldError{Field: name, Msg: "missing", err: ErrMissing}
	}
	return b, nil
}

func wrongType(name, want string, b []byte) error {
	got := abi.Tag(b[0]).String()
	if abi.Tag(b[0]) == abi.TagFloat {
		got += " " + strconv.FormatFloat(f64(b), 'g', -1, 64)
	}
	return &FieldError{Field: name, Msg: "want " + want + ", got " + got}
}

// i64 and f64 read the 8-byte payload after a tag.
func i64(b []byte) int64   { return int64(binary.LittleEndian.Uint64(b[1:])) }
func f64(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b[1:])) }

// Len returns the number of fields.
func (r Row) Len() int {
	x, _ := r.view().Index()
	if x == nil {
		return 0
	}
	return x.Len()
}

// Names returns the field names in the row's order. It allocates; it is meant for
// debugging and logs.
func (r Row) Names() []string {
	x, _ := r.view().Index()
	if x == nil {
		return nil
	}
	names := make([]string, x.Len())
	for i := range names {
		names[i] = x.Name(i)
	}
	return names
}

// Has reports whether the row has the named field (even if it is null).
func (r Row) Has(name string) bool {
	_, ok, _ := r.view().Find(name)
	return ok
}

// IsNull reports whether the named field is absent or null.
func (r Row) IsNull(name string) bool {
	b, ok, _ := r.view().Find(name)
	return !ok || abi.Tag(b[0]) == abi.TagNull
}

// Value decodes the named field. Strings and lists allocate.
func (r Row) Value(name string) (Value, bool) {
	b, ok, _ := r.view().Find(name)
	if !ok {
		return Value{}, false
	}
	var d abi.Decoder
	d.Reset(b)
	return d.Value(), true
}

// Int returns an int field. A float field with no fractional part that fits in an int64 is
// accepted too.
func (r Row) Int(name string) (int64, error) {
	b, err := r.field(name)
	if err != nil {
		return 0, err
	}
	switch abi.Tag(b[0]) {
	case abi.TagInt:
		return i64(b), nil
	case abi.TagFloat:
		// -2^63 is exact in a float64; 2^63 is the first float too large.
		if f := f64(b); f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return int64(f), nil
		}
		return 0, &FieldError{Field: name, Msg: "want int, got float " + strconv.FormatFloat(f64(b), 'g', -1, 64) + " (not a whole number in the int64 range)"}
	}
	return 0, wrongType(name, "int", b)
}

// Float returns a float field, or an int field converted to float64.
func (r Row) Float(name string) (float64, error) {
	b, err := r.field(name)
	if err != nil {
		return 0, err
	}
	switch abi.Tag(b[0]) {
	case abi.TagFloat:
		return f64(b), nil
	case abi.TagInt:
		return float64(i64(b)), nil
	}
	return 0, wrongType(name, "float", b)
}

// String returns a string field. It allocates the string, unless the same field held the
// same text in the previous call (a status, a currency: the SDK keeps the last string read
// from each field and returns it again when the bytes match).
func (r Row) String(name string) (string, error) {
	x, i, _ := r.view().FindIndex(name)
	if i < 0 {
		_, err := r.field(name) // the error saying why
		return "", err
	}
	b := x.Val(i)
	if abi.Tag(b[0]) != abi.TagString {
		return "", wrongType(name, "string", b)
	}
	return x.String(i, core.StringBytes(b[1:])), nil
}

// Bool returns a bool field.
func (r Row) Bool(name string) (bool, error) {
	b, err := r.field(name)
	if err != nil {
		return false, err
	}
	if abi.Tag(b[0]) != abi.TagBool {
		return false, wrongType(name, "bool", b)
	}
	return b[1] == 1, nil
}

// Time returns a timestamp field as a UTC time. It also reads what rows that came as JSON
// carry for a timestamp: an int or a float as Unix seconds, and a string in RFC 3339
// (2026-12-01T10:00:00Z, with an offset or fractional seconds) or a date (2026-12-01,
// midnight UTC).
func (r Row) Time(name string) (time.Time, error) {
	b, err := r.field(name)
	if err != nil {
		return time.Time{}, err
	}
	switch abi.Tag(b[0]) {
	case abi.TagTimestamp:
		return unixTime(i64(b)), nil
	case abi.TagInt:
		return time.Unix(i64(b), 0).UTC(), nil
	case abi.TagFloat:
		f := f64(b)
		// Unix seconds within the range of a timestamp (1678–2262, int64 nanoseconds).
		if math.IsNaN(f) || f < -9.2e9 || f > 9.2e9 {
			return time.Time{}, &FieldError{Field: name, Msg: "want timestamp, got float " + strconv.FormatFloat(f, 'g', -1, 64) + " (not Unix seconds between 1678 and 2262)"}
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	case abi.TagString:
		s := string(core.StringBytes(b[1:]))
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t, err = time.Parse(time.DateOnly, s)
		}
		if err != nil {
			q := strconv.Quote(s)
			if len(q) > 66 {
				q = q[:64] + "…\""
			}
			return time.Time{}, &FieldError{Field: name, Msg: "want timestamp (RFC 3339, e.g. 2026-12-01T10:00:00Z, or Unix seconds), got string " + q}
		}
		return t.UTC(), nil
	}
	return time.Time{}, wrongType(name, "timestamp", b)
}
