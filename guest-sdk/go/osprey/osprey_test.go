//go:build !wasip1

package osprey

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
)

// decode starts a call over a program call built from keys and row, and returns its
// Context and Row. The caller ends it with end.
func decode(t testing.TB, keys []abi.KV, row []abi.Field) (ctx *Context, r Row, end func()) {
	t.Helper()
	c := new(core.Call)
	in := abi.AppendProgramCall(nil, &abi.ProgramCall{FQN: "test.feature", Keys: keys, Timestamp: 1700000000123456789, Row: row})
	if err := c.DecodeProgram(in); err != nil {
		t.Fatal(err)
	}
	return (*Context)(c), Row(c.Row()), c.End
}

var ts = time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)

func testRow() []abi.Field {
	return []abi.Field{
		{Name: "n", Value: abi.Int(42)},
		{Name: "neg", Value: abi.Int(-7)},
		{Name: "f", Value: abi.Float(1.5)},
		{Name: "whole", Value: abi.Float(3)},
		{Name: "huge", Value: abi.Float(1e19)},
		{Name: "s", Value: abi.String("é")},
		{Name: "b", Value: abi.Bool(true)},
		{Name: "ts", Value: abi.Timestamp(ts.UnixNano())},
		{Name: "secs", Value: abi.Int(1700000000)},
		{Name: "rfc", Value: abi.String("2026-12-01T10:00:00.5+01:00")},
		{Name: "day", Value: abi.String("2026-12-01")},
		{Name: "null", Value: abi.Null()},
		{Name: "ints", Value: abi.Value{Tag: abi.TagIntList, Ints: []int64{1, 2}}},
		{Name: "w", Value: abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrSum, Sum: 2}}},
	}
}

func TestRowAccessors(t *testing.T) {
	_, row, end := decode(t, nil, testRow())
	defer end()
	type call struct {
		accessor, field string
		want            any    // the value, when err is ""
		err             string // the whole error message
	}
	tests := []call{
		{"Int", "n", int64(42), ""},
		{"Int", "neg", int64(-7), ""},
		{"Int", "whole", int64(3), ""},
		{"Int", "f", nil, `field "f": want int, got float 1.5 (not a whole number in the int64 range)`},
		{"Int", "huge", nil, `field "huge": want int, got float 1e+19 (not a whole number in the int64 range)`},
		{"Int", "s", nil, `field "s": want int, got string`},
		{"Int", "null", nil, `field "null": want int, got null`},
		{"Int", "ints", nil, `field "ints": want int, got []int`},
		{"Int", "nope", nil, `field "nope": missing`},
		{"Float", "f", 1.5, ""},
		{"Float", "n", 42.0, ""},
		{"Float", "b", nil, `field "b": want float, got bool`},
		{"Float", "w", nil, `field "w": want float, got window`},
		{"Float", "nope", nil, `field "nope": missing`},
		{"String", "s", "é", ""},
		{"String", "n", nil, `field "n": want string, got int`},
		{"String", "nope", nil, `field "nope": missing`},
		{"Bool", "b", true, ""},
		{"Bool", "s", nil, `field "s": want bool, got string`},
		{"Time", "ts", ts, ""},
		{"Time", "secs", time.Unix(1700000000, 0).UTC(), ""},
		{"Time", "f", time.Unix(1, 5e8).UTC(), ""},
		{"Time", "huge", nil, `field "huge": want timestamp, got float 1e+19 (not Unix seconds between 1678 and 2262)`},
		{"Time", "rfc", time.Date(2026, 12, 1, 9, 0, 0, 5e8, time.UTC), ""},
		{"Time", "day", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ""},
		{"Time", "s", nil, `field "s": want timestamp (RFC 3339, e.g. 2026-12-01T10:00:00Z, or Unix seconds), got string "é"`},
		{"Time", "nope", nil, `field "nope": missing`},
	}
	for _, tt := range tests {
		t.Run(tt.accessor+"/"+tt.field, func(t *testing.T) {
			var got any
			var err error
			switch tt.accessor {
			case "Int":
				got, err = row.Int(tt.field)
			case "Float":
				got, err = row.Float(tt.field)
			case "String":
				got, err = row.String(tt.field)
			case "Bool":
				got, err = row.Bool(tt.field)
			case "Time":
				got, err = row.Time(tt.field)
			}
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("error %#v is not a *FieldError for %q", err, tt.field)
				}
				if missing := strings.HasSuffix(tt.err, "missing"); errors.Is(err, ErrMissing) != missing {
					t.Errorf("errors.Is(err, ErrMissing) = %v, want %v", !missing, missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	if row.Len() != len(testRow()) {
		t.Errorf("Len = %d, want %d", row.Len(), len(testRow()))
	}
	if got := strings.Join(row.Names(), ","); got != "n,neg,f,whole,huge,s,b,ts,secs,rfc,day,null,ints,w" {
		t.Errorf("Names = %s", got)
	}
	for _, name := range []string{"n", "null", "w"} {
		if !row.Has(name) {
			t.Errorf("Has(%q) = false", name)
		}
	}
	if row.Has("nope") || row.Has("") {
		t.Error("Has reports a missing field")
	}
	for name, want := range map[string]bool{"null": true, "nope": true, "n": false, "s": false} {
		if got := row.IsNull(name); got != want {
			t.Errorf("IsNull(%q) = %v, want %v", name, got, want)
		}
	}
	for _, f := range testRow() {
		v, ok := row.Value(f.Name)
		if !ok || !sameValue(v, f.Value) {
			t.Errorf("Value(%q) = %+v, %v; want %+v", f.Name, v, ok, f.Value)
		}
	}
	if _, ok := row.Value("nope"); ok {
		t.Error("Value of a missing field")
	}
}

func sameValue(a, b abi.Value) bool {
	return string(abi.AppendValue(nil, a)) == string(abi.AppendValue(nil, b))
}

func TestRowIntBounds(t *testing.T) {
	_, row, end := decode(t, nil, []abi.Field{
		{Name: "min", Value: abi.Float(-(1 << 63))},
		{Name: "max", Value: abi.Float(1 << 63)},
		{Name: "negzero", Value: abi.Float(math.Copysign(0, -1))},
	})
	defer end()
	if n, err := row.Int("min"); err != nil || n != math.MinInt64 {
		t.Errorf("Int(-2^63 as float) = %d, %v", n, err)
	}
	if _, err := row.Int("max"); err == nil {
		t.Error("Int(2^63 as float) did not fail")
	}
	if n, err := row.Int("negzero"); err != nil || n != 0 {
		t.Errorf("Int(-0.0) = %d, %v", n, err)
	}
}

// TestRowWide checks a row wide enough to be searched through its sorted index.
func TestRowWide(t *testing.T) {
	var fields []abi.Field
	for i := range 40 {
		fields = append(fields, abi.Field{Name: "f" + strconv.Itoa(39-i), Value: abi.Int(int64(39 - i))})
	}
	_, row, end := decode(t, nil, fields)
	defer end()
	for i := range 40 {
		if n, err := row.Int("f" + strconv.Itoa(i)); err != nil || n != int64(i) {
			t.Errorf("f%d = %d, %v", i, n, err)
		}
	}
	for _, name := range []string{"", "f", "f40", "g", "e"} {
		if row.Has(name) {
			t.Errorf("Has(%q)", name)
		}
	}
}

func TestRowDuplicates(t *testing.T) {
	for _, n := range []int{2, 16, 17, 40} {
		var row []abi.Field
		for i := range n {
			row = append(row, abi.Field{Name: "f" + strconv.Itoa(i), Value: abi.Null()})
		}
		row[n-1].Name = "f0"
		in := abi.AppendProgramCall(nil, &abi.ProgramCall{Row: row})
		var c core.Call
		err := c.DecodeProgram(in)
		if err == nil || !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), `duplicate field "f0"`) {
			t.Errorf("%d fields with a duplicate: error %v", n, err)
		}
		keys := make([]abi.KV, n)
		for i := range keys {
			keys[i] = abi.KV{Name: "k" + strconv.Itoa(i%(n-1))}
		}
		in = abi.AppendProgramCall(nil, &abi.ProgramCall{Keys: keys})
		if err := c.DecodeProgram(in); err == nil || !strings.Contains(err.Error(), `duplicate key "k0"`) {
			t.Errorf("%d keys with a duplicate: error %v", n, err)
		}
	}
}

func TestRowStale(t *testing.T) {
	_, row, end := decode(t, nil, testRow())
	end()
	if _, err := row.Float("f"); err == nil || err.Error() != `field "f": row used after its call returned` {
		t.Errorf("stale Float: %v", err)
	}
	if row.Has("f") || row.Len() != 0 || row.Names() != nil {
		t.Error("a stale row still has fields")
	}
	if _, ok := row.Value("f"); ok {
		t.Error("a stale row still has values")
	}
}

func TestZeroRow(t *testing.T) {
	var row Row
	if row.Len() != 0 || row.Has("x") || !row.IsNull("x") {
		t.Error("zero Row is not empty")
	}
	if _, err := row.Int("x"); !errors.Is(err, ErrMissing) {
		t.Errorf("zero Row Int: %v", err)
	}
}

func TestKeys(t *testing.T) {
	k := K("card_id", "c1", "merchant", "m7")
	if len(k) != 2 || k[1] != (abi.KV{Name: "merchant", Value: "m7"}) {
		t.Errorf("K = %v", k)
	}
	if v, ok := k.Get("merchant"); !ok || v != "m7" {
		t.Errorf("Get(merchant) = %q, %v", v, ok)
	}
	if _, ok := k.Get("x"); ok {
		t.Error("Get of a missing key")
	}
	if len(K()) != 0 {
		t.Error("K() is not empty")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "odd number") {
			t.Errorf("K with an odd count: recovered %v", r)
		}
	}()
	K("a") //lint:ignore SA5012 the odd count is the point
}

func TestConstructors(t *testing.T) {
	t0 := time.Unix(5, 6)
	tests := []struct {
		got, want abi.Value
	}{
		{Null(), abi.Value{}},
		{Int(-1), abi.Value{Tag: abi.TagInt, I: -1}},
		{Float(2.5), abi.Value{Tag: abi.TagFloat, F: 2.5}},
		{String("x"), abi.Value{Tag: abi.TagString, S: "x"}},
		{Bool(true), abi.Value{Tag: abi.TagBool, I: 1}},
		{Time(t0), abi.Value{Tag: abi.TagTimestamp, I: 5_000_000_006}},
		{Ints(nil), abi.Value{Tag: abi.TagIntList, Ints: []int64{}}},
		{Floats([]float64{1}), abi.Value{Tag: abi.TagFloatList, Floats: []float64{1}}},
		{Strings([]string{"a"}), abi.Value{Tag: abi.TagStringList, Strs: []string{"a"}}},
		{Bools([]bool{true}), abi.Value{Tag: abi.TagBoolList, Bools: []bool{true}}},
		{Times([]time.Time{t0}), abi.Value{Tag: abi.TagTimestampList, Times: []int64{5_000_000_006}}},
	}
	for _, tt := range tests {
		if !sameValue(tt.got, tt.want) || tt.got.Tag != tt.want.Tag {
			t.Errorf("got %+v, want %+v", tt.got, tt.want)
		}
	}
}

func TestContextHeader(t *testing.T) {
	ctx, _, end := decode(t, []abi.KV{{Name: "card_id", Value: "c1"}}, nil)
	defer end()
	if ctx.FQN() != "test.feature" {
		t.Errorf("FQN = %q", ctx.FQN())
	}
	if k := ctx.Keys(); len(k) != 1 || k[0] != (abi.KV{Name: "card_id", Value: "c1"}) {
		t.Errorf("Keys = %v", k)
	}
	if !ctx.Timestamp().Equal(ts) || ctx.Timestamp().Location() != time.UTC {
		t.Errorf("Timestamp = %v, want %v", ctx.Timestamp(), ts)
	}
	ctx2, _, end2 := decode(t, nil, nil)
	defer end2()
	if ctx2.Keys() != nil {
		t.Errorf("Keys of a call without keys = %v, want nil", ctx2.Keys())
	}
}

func TestContextGet(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{
		Get: func(sel string, keys []abi.KV) (abi.GetResult, error) {
			switch sel {
			case "fraud.amount+sum":
				return abi.GetResult{Found: true, Value: abi.Float(251.5), Timestamp: ts.UnixNano(), Fresh: true}, nil
			case "big.list":
				return abi.GetResult{Found: true, Value: abi.Value{Tag: abi.TagStringList, Strs: strings.Split(strings.Repeat("abcdefgh,", 100), ",")}}, nil
			case "absent":
				return abi.GetResult{}, nil
			}
			return abi.GetResult{}, errors.New("feature " + sel + " is not a dependency of test.feature")
		},
	})
	callKeys := []abi.KV{{Name: "card_id", Value: "c1"}}
	ctx, _, end := decode(t, callKeys, nil)

	r, err := ctx.Get("fraud.amount+sum", nil)
	if err != nil || !r.Found || !r.Fresh || r.Value.F != 251.5 || !r.Timestamp.Equal(ts) {
		t.Errorf("Get = %+v, %v", r, err)
	}
	if got := h.Gets[0]; len(got.Keys) != 1 || got.Keys[0] != callKeys[0] {
		t.Errorf("nil keys sent %v, want the call's %v", got.Keys, callKeys)
	}
	if _, err := ctx.Get("fraud.amount+sum", K("card_id", "c2")); err != nil || h.Gets[1].Keys[0].Value != "c2" {
		t.Errorf("explicit keys: sent %v, %v", h.Gets[1].Keys, err)
	}
	if _, err := ctx.Get("fraud.amount+sum", Keys{}); err != nil || len(h.Gets[2].RawKeys) != 1 || h.Gets[2].RawKeys[0] != 0 {
		t.Errorf("empty keys: sent %x, %v", h.Gets[2].RawKeys, err)
	}

	// A result larger than the first buffer comes through result.
	r, err = ctx.Get("big.list", nil)
	if err != nil || len(r.Value.Strs) != 101 || r.Value.Strs[0] != "abcdefgh" {
		t.Errorf("big Get = %d strings, %v", len(r.Value.Strs), err)
	}
	r, err = ctx.Get("absent", nil)
	if err != nil || r.Found || r.Value.Tag != abi.TagNull || !r.Timestamp.IsZero() {
		t.Errorf("absent Get = %+v, %v", r, err)
	}
	_, err = ctx.Get("other.feature", nil)
	if err == nil || err.Error() != "get other.feature: feature other.feature is not a dependency of test.feature" {
		t.Errorf("failed Get: %v", err)
	}
	_, err = ctx.Get("x", K("a", "1", "a", "2"))
	if err == nil || err.Error() != `get x: duplicate key "a"` {
		t.Errorf("duplicate keys: %v", err)
	}
	_, err = ctx.Get("x", K("a", "\xff"))
	if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("invalid UTF-8 keys: %v", err)
	}
	end()
	if _, err := ctx.Get("fraud.amount+sum", nil); !errors.Is(err, ErrCallEnded) {
		t.Errorf("Get after the call: %v", err)
	}

	// A call without keys passes an empty Keys encoding for nil keys.
	ctx, _, end = decode(t, nil, nil)
	defer end()
	n := len(h.Gets)
	if _, err := ctx.Get("absent", nil); err != nil || string(h.Gets[n].RawKeys) != "\x00" {
		t.Errorf("call without keys: sent %x, %v", h.Gets[n].RawKeys, err)
	}
}

func TestContextGetMalformedResult(t *testing.T) {
	hosttest.Install(t, &hosttest.Host{RawGet: func(string, []byte) ([]byte, bool) { return []byte{2, 0}, false }})
	ctx, _, end := decode(t, nil, nil)
	defer end()
	_, err := ctx.Get("x", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "get x: abi: malformed message: bool at byte 0 is 2") {
		t.Errorf("malformed result: %v", err)
	}
}

func TestNoHost(t *testing.T) {
	ctx, _, end := decode(t, nil, nil)
	defer end()
	_, err := ctx.Get("x", nil)
	if err == nil || !strings.Contains(err.Error(), "no Osprey host") {
		t.Errorf("Get without a host: %v", err)
	}
}

type stringerT struct{}

func (stringerT) String() string { return "I am a Stringer" }

func TestLog(t *testing.T) {
	h := hosttest.Install(t, &hosttest.Host{})
	ctx, _, end := decode(t, nil, nil)
	defer end()
	ctx.Info("plain")
	ctx.Log(Level(-8), "custom level", "a", 1)
	ctx.Debug("d")
	ctx.Warn("w")
	ctx.Error("e", "err", errors.New("boom"))
	ctx.Info("attrs",
		"s", "x", "i", 7, "u8", uint8(8), "big", uint64(math.MaxUint64), "f", 1.5, "nan", math.NaN(),
		"b", true, "t", ts, "d", 1500*time.Millisecond, "ints", []int{1, 2}, "strs", []string{"a", "\xff"},
		"v", Int(3), "nil", nil, "stringer", stringerT{}, "bad", "\xffx", "struct", struct{}{},
		"s", "again", "s", "third", 42, "lonely")
	want := []struct {
		level int32
		msg   string
		attrs string
	}{
		{0, "plain", ""},
		{-8, "custom level", "a=1"},
		{-4, "d", ""},
		{4, "w", ""},
		{8, "e", "err=boom"},
		{0, "attrs", "s=x i=7 u8=8 big=18446744073709551615 f=1.5 nan=NaN b=true t=2023-11-14T22:13:20.123456789Z d=1.5s " +
			"ints=[]int{1, 2} strs=[]string{\"a\", \"\ufffd\"} v=3 nil=null stringer=I am a Stringer bad=\ufffdx " +
			"struct=" + core.Unsupported + " s#2=again s#3=third !BADKEY=42 !BADKEY#2=lonely"},
	}
	if len(h.Logs) != len(want) {
		t.Fatalf("%d logs, want %d", len(h.Logs), len(want))
	}
	for i, w := range want {
		l := h.Logs[i]
		var attrs []string
		for _, f := range l.Attrs {
			attrs = append(attrs, f.Name+"="+core.FormatValue(f.Value))
		}
		if l.Level != w.level || l.Msg != w.msg || strings.Join(attrs, " ") != w.attrs {
			t.Errorf("log %d = %d %q %s\nwant %d %q %s", i, l.Level, l.Msg, strings.Join(attrs, " "), w.level, w.msg, w.attrs)
		}
	}
	if got := h.Logs[5].Attrs[1].Value; got.Tag != abi.TagInt {
		t.Errorf("int attribute has tag %v", got.Tag)
	}
}

func TestNow(t *testing.T) {
	hosttest.Install(t, &hosttest.Host{Nanos: ts.UnixNano()})
	if got := Now(); !got.Equal(ts) || got.Location() != time.UTC {
		t.Errorf("Now = %v, want %v", got, ts)
	}
}

func TestReject(t *testing.T) {
	err := Reject("amount %d is negative", -5)
	var rej *RejectedError
	if !errors.As(err, &rej) || err.Error() != "amount -5 is negative" {
		t.Errorf("Reject = %#v", err)
	}
	if err := Reject("100%"); err.Error() != "100%" {
		t.Errorf("Reject without arguments formatted its message: %q", err)
	}
}

// BenchmarkRowFloat reads one float from a 10-field row.
func BenchmarkRowFloat(b *testing.B) {
	_, row, end := decode(b, nil, tenFields())
	defer end()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := row.Float("risk_score"); err != nil {
			b.Fatal(err)
		}
	}
}

func tenFields() []abi.Field {
	return []abi.Field{
		{Name: "card_id", Value: abi.String("c_4242")},
		{Name: "amount_cents", Value: abi.Int(12550)},
		{Name: "currency", Value: abi.String("EUR")},
		{Name: "status", Value: abi.String("approved")},
		{Name: "ts", Value: abi.Timestamp(1700000000123456789)},
		{Name: "merchant_id", Value: abi.String("m_17")},
		{Name: "mcc", Value: abi.Int(5411)},
		{Name: "country", Value: abi.String("FR")},
		{Name: "card_present", Value: abi.Bool(true)},
		{Name: "risk_score", Value: abi.Float(0.125)},
	}
}

// TestRowStringReuse checks that a field holding the same text as in the previous call
// returns the same string (no allocation), and different text a new one.
func TestRowStringReuse(t *testing.T) {
	c := new(core.Call)
	input := func(status string) []byte {
		return abi.AppendProgramCall(nil, &abi.ProgramCall{Row: []abi.Field{{Name: "status", Value: abi.String(status)}}})
	}
	approved, declined := input("approved"), input("declined")
	read := func(in []byte) string {
		if err := c.DecodeProgram(in); err != nil {
			t.Fatal(err)
		}
		s, err := Row(c.Row()).String("status")
		if err != nil {
			t.Fatal(err)
		}
		c.End()
		return s
	}
	a := read(approved)
	b := read(approved)
	if a != "approved" || b != "approved" || unsafeData(a) != unsafeData(b) {
		t.Errorf("the same text was allocated twice")
	}
	if d := read(declined); d != "declined" {
		t.Errorf("got %q after a change", d)
	}
	if n := testing.AllocsPerRun(100, func() { read(approved) }); n != 0 {
		t.Errorf("%v allocations reading a repeated string", n)
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
