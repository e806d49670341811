package abi_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/abi/abitest"
)

func TestVersion(t *testing.T) {
	if abi.Version != 0x00010002 || abi.Version12 != abi.Version {
		t.Fatalf("Version = %#x, want 0x00010002 (1.2)", abi.Version)
	}
	if abi.Version11 != 0x00010001 {
		t.Fatalf("Version11 = %#x, want 0x00010001", abi.Version11)
	}
	if abi.Version10 != 0x00010000 {
		t.Fatalf("Version10 = %#x, want 0x00010000", abi.Version10)
	}
	if got := abi.VersionMajor(0x00020003); got != 2 {
		t.Errorf("VersionMajor = %d, want 2", got)
	}
	if got := abi.VersionMinor(0x00020003); got != 3 {
		t.Errorf("VersionMinor = %d, want 3", got)
	}
}

// TestRoundTrip encodes every kind of message, decodes it and compares.
func TestRoundTrip(t *testing.T) {
	for _, v := range validVectors() {
		t.Run(v.name, func(t *testing.T) {
			kind, err := abitest.KindOf(v.msg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := abitest.Encode(v.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := abitest.Decode(kind, b)
			if err != nil {
				t.Fatalf("decode %x: %v", b, err)
			}
			if !abitest.Equal(got, v.msg) {
				t.Errorf("decoded %+v, want %+v", got, v.msg)
			}
		})
	}
}

func TestScalarCodec(t *testing.T) {
	for _, x := range []uint64{0, 1, 127, 128, 255, 16383, 16384, 1<<21 - 1, 1 << 21, 1<<32 - 1, 1 << 32, math.MaxUint64} {
		b := abi.AppendUvarint(nil, x)
		d := abi.NewDecoder(b)
		if got := d.Uvarint(); got != x || d.Done() != nil {
			t.Errorf("uvarint %d: decoded %d (%v) from %x", x, got, d.Err(), b)
		}
	}
	for _, x := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64} {
		d := abi.NewDecoder(abi.AppendI64(nil, x))
		if got := d.I64(); got != x || d.Done() != nil {
			t.Errorf("i64 %d: decoded %d (%v)", x, got, d.Err())
		}
	}
	for _, x := range []float64{0, math.Copysign(0, -1), 1.5, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(-1)} {
		d := abi.NewDecoder(abi.AppendF64(nil, x))
		if got := d.F64(); math.Float64bits(got) != math.Float64bits(x) || d.Done() != nil {
			t.Errorf("f64 %v: decoded %v (%v)", x, got, d.Err())
		}
	}
	// StringBytes aliases the input.
	in := abi.AppendString(nil, "abc")
	d := abi.NewDecoder(in)
	sb := d.StringBytes()
	if string(sb) != "abc" || &sb[0] != &in[1] || cap(sb) != 3 {
		t.Errorf("StringBytes = %q (cap %d), want an alias of the input with cap 3", sb, cap(sb))
	}
}

func TestUvarintMinimal(t *testing.T) {
	tests := []struct {
		hex  string
		want uint64
		err  string
	}{
		{"00", 0, ""},
		{"7f", 127, ""},
		{"8001", 128, ""},
		{"ffffffffffffffffff01", math.MaxUint64, ""},
		{"8000", 0, "non-minimal uvarint at byte 0"},
		{"ff00", 0, "non-minimal uvarint"},
		{"808000", 0, "non-minimal uvarint"},
		{"81808000", 0, "non-minimal uvarint"},
		{"80", 0, "bad uvarint at byte 0"},
		{"", 0, "bad uvarint"},
		{"ffffffffffffffffff02", 0, "bad uvarint"}, // more than 64 bits
		{"ffffffffffffffffffff01", 0, "bad uvarint"},
	}
	for _, tt := range tests {
		b, _ := hex.DecodeString(tt.hex)
		d := abi.NewDecoder(b)
		got := d.Uvarint()
		err := d.Done()
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s: got %d, %v; want %d", tt.hex, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, abi.ErrMalformed)):
			t.Errorf("%s: error %v, want one containing %q", tt.hex, err, tt.err)
		}
	}
}

// TestErrorMessages checks that decoding errors say what is wrong.
func TestErrorMessages(t *testing.T) {
	tests := []struct {
		kind abitest.Kind
		hex  string
		want string
	}{
		{abitest.KindValue, "0b", "unknown value tag 11"},
		{abitest.KindValue, "0402", "bool at byte 1 is 2, want 0 or 1"},
		{abitest.KindValue, "030261ff", "string at byte 1 is not valid UTF-8"},
		{abitest.KindValue, "01000000", "truncated at byte 1 (need 8 more, have 3)"},
		{abitest.KindValue, "06808080808020", "length 1099511627776 at byte 1 exceeds the 16777216-byte message limit"},
		{abitest.KindValue, "0000", "1 unexpected bytes after the message"},
		{abitest.KindKeys, "020161013101610132", `duplicate key "a"`},
		{abitest.KindRow, "020161000161040001", `duplicate field "a"`},
		{abitest.KindProgramCall, "0200", "call kind 2, want 1 (program)"},
		{abitest.KindMiddlewareCall, "01", "call kind 1, want 2 (middleware)"},
		{abitest.KindMiddlewareCall, "020902", "unknown stage 9"},
		{abitest.KindMiddlewareCall, "020306", "unknown op 6"},
		{abitest.KindProgramResult, "000008", "unknown program result flags 0x8"},
		{abitest.KindErrorResponse, "07", "unknown response status 7"},
	}
	for _, tt := range tests {
		b, _ := hex.DecodeString(tt.hex)
		_, err := abitest.Decode(tt.kind, b)
		if err == nil || !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %s: error %v, want one containing %q", tt.kind, tt.hex, err, tt.want)
		}
	}
}

// TestTruncations cuts every valid vector at every byte: each prefix must be rejected with
// ErrMalformed (none is valid, since every message ends with a fixed part or a count), and
// decoding must not panic.
func TestTruncations(t *testing.T) {
	for _, v := range validVectors() {
		kind, _ := abitest.KindOf(v.msg)
		b, _ := abitest.Encode(v.msg)
		for i := range len(b) {
			_, err := abitest.Decode(kind, b[:i])
			if !errors.Is(err, abi.ErrMalformed) {
				t.Errorf("%s cut at %d/%d (%x): error %v, want ErrMalformed", v.name, i, len(b), b[:i], err)
			}
		}
	}
}

// TestHostileCounts checks that a count larger than the input is rejected before anything
// is allocated for it.
func TestHostileCounts(t *testing.T) {
	counts := []uint64{1 << 40, 1 << 31, 1<<32 - 1, abi.MaxMessageSize, abi.MaxMessageSize + 1, math.MaxUint64}
	prefixes := map[string][]byte{
		"string":     {byte(abi.TagString)},
		"ints":       {byte(abi.TagIntList)},
		"floats":     {byte(abi.TagFloatList)},
		"strings":    {byte(abi.TagStringList)},
		"bools":      {byte(abi.TagBoolList)},
		"timestamps": {byte(abi.TagTimestampList)},
	}
	for name, p := range prefixes {
		for _, n := range counts {
			in := append(abi.AppendUvarint(append([]byte(nil), p...), n), make([]byte, 64)...)
			checkBounded(t, name, func() error {
				_, err := abitest.Decode(abitest.KindValue, in)
				return err
			})
			checkBounded(t, name+" skipped", func() error {
				d := abi.NewDecoder(in)
				d.SkipValue()
				return d.Err()
			})
		}
	}
	for _, n := range counts {
		in := append(abi.AppendUvarint(nil, n), make([]byte, 64)...)
		checkBounded(t, "keys", func() error { _, err := abitest.Decode(abitest.KindKeys, in); return err })
		checkBounded(t, "row", func() error { _, err := abitest.Decode(abitest.KindRow, in); return err })
		call := append(append([]byte{abi.CallProgram, 0}, abi.AppendUvarint(nil, n)...), make([]byte, 64)...)
		checkBounded(t, "program call keys", func() error { _, err := abi.DecodeProgramCall(call); return err })
		checkBounded(t, "egress row", func() error { _, err := abitest.Decode(abitest.KindEgressRow, in); return err })
		// A message call's sender keys, after an empty fqn, keys and a timestamp, and its
		// sender fqn.
		sender := append(append([]byte{abi.CallMessage, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, abi.AppendUvarint(nil, n)...), make([]byte, 64)...)
		checkBounded(t, "message call sender keys", func() error { _, err := abi.DecodeMessageCall(sender); return err })
		from := append(append([]byte{abi.CallMessage, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, abi.AppendUvarint(nil, n)...), make([]byte, 64)...)
		checkBounded(t, "message call sender fqn", func() error { _, err := abi.DecodeMessageCall(from); return err })
	}
	// A count that the input could hold but with elements that take more memory than wire
	// bytes: a row claiming 100000 fields, each a 2-byte (empty name, null) field, in 200 KB.
	// The decoder must not reserve 100000 Fields (~20 MB) up front: it fails at the second
	// field (a duplicate empty name) having allocated little.
	in := abi.AppendUvarint(nil, 100000)
	in = append(in, make([]byte, 200000)...)
	checkBounded(t, "row of empty names", func() error { _, err := abitest.Decode(abitest.KindRow, in); return err })
}

func checkBounded(t *testing.T, name string, decode func() error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := decode()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, abi.ErrMalformed) {
		t.Errorf("%s: error %v, want ErrMalformed", name, err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Errorf("%s: allocated %d bytes rejecting a hostile count", name, got)
	}
}

// TestManyNames checks duplicate detection on large Keys and Rows (which switches from pair
// comparison to a map) both ways.
func TestManyNames(t *testing.T) {
	for _, n := range []int{2, 15, 16, 17, 100, 5000} {
		row := make([]abi.Field, n)
		keys := make([]abi.KV, n)
		for i := range row {
			name := "f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i)
			row[i] = abi.Field{Name: name, Value: abi.Int(int64(i))}
			keys[i] = abi.KV{Name: name, Value: "v"}
		}
		if _, err := abitest.Decode(abitest.KindRow, abi.AppendRow(nil, row)); err != nil {
			t.Errorf("%d unique fields: %v", n, err)
		}
		if _, err := abitest.Decode(abitest.KindKeys, abi.AppendKeys(nil, keys)); err != nil {
			t.Errorf("%d unique keys: %v", n, err)
		}
		for _, at := range []int{1, n / 2, n - 1} {
			if at == 0 {
				continue
			}
			dupRow := append([]abi.Field(nil), row...)
			dupRow[at].Name = row[at-1].Name
			if _, err := abitest.Decode(abitest.KindRow, abi.AppendRow(nil, dupRow)); err == nil || !strings.Contains(err.Error(), "duplicate field") {
				t.Errorf("%d fields, duplicate at %d: error %v", n, at, err)
			}
			dupKeys := append([]abi.KV(nil), keys...)
			dupKeys[at].Name = keys[0].Name
			if _, err := abitest.Decode(abitest.KindKeys, abi.AppendKeys(nil, dupKeys)); err == nil || !strings.Contains(err.Error(), "duplicate key") {
				t.Errorf("%d keys, duplicate at %d: error %v", n, at, err)
			}
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestSkipValueAgrees checks that SkipValue accepts and consumes exactly what Value does.
func TestSkipValueAgrees(t *testing.T) {
	vs, err := abitest.Load(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Kind != abitest.KindValue {
			continue
		}
		b, _ := v.Bytes()
		checkSkip(t, b)
		for i := range len(b) {
			checkSkip(t, b[:i])
		}
	}
}

func checkSkip(t *testing.T, b []byte) {
	t.Helper()
	d1, d2 := abi.NewDecoder(b), abi.NewDecoder(b)
	d1.Value()
	d2.SkipValue()
	if (d1.Err() == nil) != (d2.Err() == nil) || d1.Offset() != d2.Offset() {
		t.Errorf("%x: Value: offset %d, %v; SkipValue: offset %d, %v", b, d1.Offset(), d1.Err(), d2.Offset(), d2.Err())
	}
}

func TestStickyError(t *testing.T) {
	d := abi.NewDecoder([]byte{0x0b, 1, 2, 3})
	d.Value()
	first := d.Err()
	if first == nil {
		t.Fatal("no error for tag 11")
	}
	if d.U8() != 0 || d.I64() != 0 || d.String() != "" || d.Keys() != nil || d.Len() != 0 {
		t.Error("reads after an error return non-zero values")
	}
	if d.Err() != first || d.Done() != first {
		t.Errorf("error changed from %v to %v", first, d.Err())
	}
	d.Reset([]byte{0})
	if v := d.Value(); v.Tag != abi.TagNull || d.Done() != nil {
		t.Errorf("after Reset: %+v, %v", v, d.Err())
	}
}

func TestTagString(t *testing.T) {
	tests := map[abi.Tag]string{abi.TagNull: "null", abi.TagInt: "int", abi.TagFloat: "float", abi.TagString: "string",
		abi.TagBool: "bool", abi.TagTimestamp: "timestamp", abi.TagIntList: "[]int", abi.TagFloatList: "[]float",
		abi.TagStringList: "[]string", abi.TagBoolList: "[]bool", abi.TagTimestampList: "[]timestamp",
		abi.TagWindow: "window", 11: "tag(11)"}
	for tag, want := range tests {
		if got := tag.String(); got != want {
			t.Errorf("Tag(%d).String() = %q, want %q", tag, got, want)
		}
	}
}

func TestFinite(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		v    abi.Value
		want bool
	}{
		{abi.Float(1), true},
		{abi.Float(nan), false},
		{abi.Float(-inf), false},
		{abi.Int(math.MaxInt64), true},
		{abi.Value{Tag: abi.TagFloatList, Floats: []float64{1, inf}}, false},
		{abi.Value{Tag: abi.TagFloatList, Floats: []float64{1, 2}}, true},
		{abi.Value{Tag: abi.TagWindow, W: abi.Window{Max: nan}}, false},
		{abi.Value{Tag: abi.TagWindow, W: abi.Window{Sum: 1}}, true},
	}
	for _, tt := range tests {
		if got := tt.v.Finite(); got != tt.want {
			t.Errorf("%+v.Finite() = %v, want %v", tt.v, got, tt.want)
		}
	}
}

// Fuzz targets: decoding never panics, and a message that decodes re-encodes to exactly
// its input (the encoding is canonical).

func addSeeds(f *testing.F, kinds ...abitest.Kind) {
	vs, err := abitest.Load(vectorsFile)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range vs {
		for _, k := range kinds {
			if v.Kind == k {
				b, _ := v.Bytes()
				f.Add(b)
			}
		}
	}
}

func fuzzCanonical(t *testing.T, kind abitest.Kind, in []byte) {
	msg, err := abitest.Decode(kind, in)
	if err != nil {
		if !errors.Is(err, abi.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	out, err := abitest.Encode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("decoded %x as %+v, which encodes as %x", in, msg, out)
	}
}

func FuzzDecodeProgramCall(f *testing.F) {
	addSeeds(f, abitest.KindProgramCall)
	f.Fuzz(func(t *testing.T, in []byte) { fuzzCanonical(t, abitest.KindProgramCall, in) })
}

func FuzzDecodeMiddlewareCall(f *testing.F) {
	addSeeds(f, abitest.KindMiddlewareCall)
	f.Fuzz(func(t *testing.T, in []byte) { fuzzCanonical(t, abitest.KindMiddlewareCall, in) })
}

// FuzzDecodeResponse decodes the input as each kind of response.
func FuzzDecodeResponse(f *testing.F) {
	addSeeds(f, abitest.KindProgramResult, abitest.KindValueResult, abitest.KindErrorResponse)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCanonical(t, abitest.KindProgramResult, in)
		fuzzCanonical(t, abitest.KindValueResult, in)
		fuzzCanonical(t, abitest.KindErrorResponse, in)
	})
}

func FuzzGetResult(f *testing.F) {
	addSeeds(f, abitest.KindGetResult)
	f.Fuzz(func(t *testing.T, in []byte) { fuzzCanonical(t, abitest.KindGetResult, in) })
}

// FuzzValue also checks that SkipValue agrees with Value.
func FuzzValue(f *testing.F) {
	addSeeds(f, abitest.KindValue, abitest.KindKeys, abitest.KindRow)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCanonical(t, abitest.KindValue, in)
		fuzzCanonical(t, abitest.KindKeys, in)
		fuzzCanonical(t, abitest.KindRow, in)
		checkSkip(t, in)
	})
}

func FuzzDecodeMessageCall(f *testing.F) {
	addSeeds(f, abitest.KindMessageCall)
	f.Fuzz(func(t *testing.T, in []byte) { fuzzCanonical(t, abitest.KindMessageCall, in) })
}

// FuzzMessageArguments decodes the input as send's msg and as egress's row.
func FuzzMessageArguments(f *testing.F) {
	addSeeds(f, abitest.KindMessageValue, abitest.KindEgressRow)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCanonical(t, abitest.KindMessageValue, in)
		fuzzCanonical(t, abitest.KindEgressRow, in)
	})
}

func benchCall() *abi.ProgramCall {
	return &abi.ProgramCall{FQN: "fraud.amount", Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}},
		Timestamp: 1700000000123456789, Row: tenFieldRow()}
}

func BenchmarkDecodeProgramCall10Fields(b *testing.B) {
	in := abi.AppendProgramCall(nil, benchCall())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := abi.DecodeProgramCall(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendProgramCall10Fields(b *testing.B) {
	c := benchCall()
	buf := abi.AppendProgramCall(nil, c)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = abi.AppendProgramCall(buf[:0], c)
	}
}

func TestAppendProgramCallAllocs(t *testing.T) {
	c := benchCall()
	buf := abi.AppendProgramCall(nil, c)
	if n := testing.AllocsPerRun(100, func() { buf = abi.AppendProgramCall(buf[:0], c) }); n != 0 {
		t.Errorf("AppendProgramCall with a reused buffer: %v allocs, want 0", n)
	}
}

func TestConfigureCall(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want string // hex
	}{
		{"nil", nil, "0300"},
		{"one", map[string]string{"max": "1"}, "0301036d61780131"},
		{"sorted by byte", map[string]string{"b": "", "B": "", "a": ""}, "03030142000161000162" + "00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := abi.ConfigureCall{Config: abi.SortedConfig(tt.in)}
			b := abi.AppendConfigureCall(nil, &c)
			if got := hex.EncodeToString(b); got != tt.want {
				t.Fatalf("encoded %s, want %s", got, tt.want)
			}
			back, err := abi.DecodeConfigureCall(b)
			if err != nil || !abitest.Equal(back, c) {
				t.Fatalf("decoded %+v, %v; want %+v", back, err, c)
			}
		})
	}
}

// A storage value (ABI 1.2) is a Value of a kind a program's storage holds: Null and the
// primitive kinds, not a window.
func TestStorageValue(t *testing.T) {
	for tag := abi.Tag(0); tag < 255; tag++ {
		want := tag <= abi.TagTimestampList
		if got := tag.Storable(); got != want {
			t.Errorf("%s.Storable() = %v, want %v", tag, got, want)
		}
	}
	window := abi.AppendValue(nil, abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrCount, Count: 2}})
	if _, err := abi.DecodeStorageValue(window); !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), "a window value at byte 0 cannot be stored") {
		t.Errorf("window: %v", err)
	}
	if v, err := abi.DecodeStorageValue(abi.AppendValue(nil, abi.Timestamp(5))); err != nil || v.Tag != abi.TagTimestamp || v.I != 5 {
		t.Errorf("timestamp: %+v, %v", v, err)
	}
}

// Messages (ABI 1.2): a message value is a storage value, whose window is an error saying it
// cannot be sent; an egress row holds storage values; a message call's hops and attempt are
// at least 1 and its message is never Null; the imports are recognised as the message ones.
func TestMessaging(t *testing.T) {
	window := abi.AppendValue(nil, abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrCount, Count: 2}})
	if _, err := abi.DecodeMessageValue(window); !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), "a window value at byte 0 cannot be sent") {
		t.Errorf("window message: %v", err)
	}
	if v, err := abi.DecodeMessageValue([]byte{byte(abi.TagNull)}); err != nil || v.Tag != abi.TagNull {
		t.Errorf("a Null message value decodes (the host refuses it): %+v, %v", v, err)
	}
	row := abi.AppendRow(nil, []abi.Field{{Name: "a", Value: abi.Int(1)}, {Name: "w", Value: abi.Value{Tag: abi.TagWindow}}})
	if _, err := abi.DecodeEgressRow(row); !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), "a window value at byte 14 cannot be sent") {
		t.Errorf("window in an egress row: %v", err)
	}
	if _, err := abitest.Decode(abitest.KindRow, row); err != nil {
		t.Errorf("the same row as a Row: %v", err)
	}
	c := abi.MessageCall{FQN: "a.b", Keys: []abi.KV{{Name: "k", Value: "v"}}, Timestamp: 7, FromFQN: "a.c", Hops: 16, Attempt: 3, Message: abi.Float(0.5)}
	b := abi.AppendMessageCall(nil, &c)
	if b[0] != abi.CallMessage {
		t.Fatalf("kind %d, want %d", b[0], abi.CallMessage)
	}
	got, err := abi.DecodeMessageCall(b)
	if err != nil || !abitest.Equal(got, c) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, c)
	}
	for _, tt := range []struct {
		name string
		edit func(*abi.MessageCall)
		msg  string
	}{
		{"hops 0", func(c *abi.MessageCall) { c.Hops = 0 }, "hops 0 at byte"},
		{"attempt 0", func(c *abi.MessageCall) { c.Attempt = 0 }, "attempt 0 at byte"},
		{"null", func(c *abi.MessageCall) { c.Message = abi.Null() }, "is null"},
		{"window", func(c *abi.MessageCall) { c.Message = abi.Value{Tag: abi.TagWindow} }, "cannot be sent"},
	} {
		bad := c
		tt.edit(&bad)
		if _, err := abi.DecodeMessageCall(abi.AppendMessageCall(nil, &bad)); !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.msg)
		}
	}
	if _, err := abi.DecodeProgramCall(b); err == nil || !strings.Contains(err.Error(), "call kind 4, want 1") {
		t.Errorf("a message call as a program call: %v", err)
	}
	for _, name := range []string{abi.ImportSend, abi.ImportSendAfter, abi.ImportCancel, abi.ImportEgress} {
		if !abi.IsMessageImport(name) || abi.IsStorageImport(name) {
			t.Errorf("%s: IsMessageImport %v, IsStorageImport %v", name, abi.IsMessageImport(name), abi.IsStorageImport(name))
		}
	}
	for _, name := range []string{abi.ImportStorageGet, abi.ImportGetFeature, abi.ImportLog, "sendx", ""} {
		if abi.IsMessageImport(name) {
			t.Errorf("IsMessageImport(%q) = true", name)
		}
	}
}
