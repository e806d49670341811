package engine

import (
	"errors"
	"maps"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"unicode/utf8"
)

func TestEncodeKeys(t *testing.T) {
	tests := []struct {
		names []string
		keys  Keys
		want  string
	}{
		{[]string{"id"}, Keys{"id": "42"}, "42"},
		{[]string{"id"}, Keys{"id": ""}, ""},
		{[]string{"id"}, Keys{"id": "a;b"}, `a\;b`},
		{[]string{"id"}, Keys{"id": `a\b`}, `a\\b`},
		{[]string{"id"}, Keys{"id": "日本語"}, "日本語"},
		{[]string{"a", "b"}, Keys{"a": "1", "b": "2"}, "1;2"},
		{[]string{"b", "a"}, Keys{"a": "1", "b": "2"}, "2;1"}, // declared order, not map order
		{[]string{"a", "b"}, Keys{"a": "", "b": ""}, ";"},
		{[]string{"a", "b"}, Keys{"a": ";", "b": `\`}, `\;;\\`},
		{[]string{"a", "b", "c"}, Keys{"a": `x\;`, "b": "", "c": "z"}, `x\\\;;;z`},
		{nil, Keys{}, ""},
		{nil, nil, ""},
	}
	for _, tt := range tests {
		got, err := EncodeKeys(tt.names, tt.keys)
		if err != nil || got != tt.want {
			t.Errorf("EncodeKeys(%q, %q) = %q, %v; want %q", tt.names, tt.keys, got, err, tt.want)
			continue
		}
		back, err := DecodeKeys(tt.names, got)
		if err != nil || !maps.Equal(back, tt.keys) {
			t.Errorf("DecodeKeys(%q, %q) = %q, %v; want %q", tt.names, got, back, err, tt.keys)
		}
	}
}

func TestEncodeKeysErrors(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		keys  Keys
		want  string // must appear in the message, naming the key
	}{
		{"missing", []string{"card_id"}, Keys{}, `missing key "card_id" (want card_id)`},
		{"nil map", []string{"card_id"}, nil, `missing key "card_id"`},
		{"one of two missing", []string{"a", "b"}, Keys{"a": "1"}, `missing key "b" (want a, b)`},
		{"missing while another is unknown", []string{"a", "b"}, Keys{"a": "1", "c": "3"}, `unknown key "c" (want a, b)`}, // a misspelt key is named
		{"unknown", []string{"a"}, Keys{"a": "1", "zzz": "2"}, `unknown key "zzz" (want a)`},
		{"unknown with none named", nil, Keys{"x": "1"}, `unknown key "x"`},
		{"invalid UTF-8", []string{"a", "b"}, Keys{"a": "ok", "b": "\xff"}, `key "b": value is not valid UTF-8`},
		{"truncated UTF-8", []string{"a"}, Keys{"a": "日本"[:4]}, `key "a": value is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeKeys(tt.names, tt.keys)
			if err == nil {
				t.Fatalf("EncodeKeys = %q, want an error", got)
			}
			if !errors.Is(err, ErrInvalidKeys) {
				t.Errorf("error %v does not wrap ErrInvalidKeys", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeKeysErrors(t *testing.T) {
	tests := []struct {
		names   []string
		encoded string
		want    string
	}{
		{[]string{"a"}, "1;2", "hold more than the 1 named"},
		{[]string{"a", "b"}, "1", "hold 1 values, want 2 (a, b)"},
		{[]string{"a", "b", "c"}, `1\;2;3`, "hold 2 values, want 3"},
		{[]string{"a"}, `x\`, "end in an escape"},
		{nil, "x", "hold more than the 0 named"},
	}
	for _, tt := range tests {
		keys, err := DecodeKeys(tt.names, tt.encoded)
		if !errors.Is(err, ErrInvalidKeys) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeKeys(%q, %q) = %v, %v; want an ErrInvalidKeys containing %q", tt.names, tt.encoded, keys, err, tt.want)
		}
	}
}

func TestEncodeKeysAllocs(t *testing.T) {
	names := []string{"card_id"}
	keys := Keys{"card_id": "4111-1111-1111-1111"}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := EncodeKeys(names, keys); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("EncodeKeys of a single plain key allocates %v times, want 0", allocs)
	}
}

// TestKeysRoundTripQuick checks the round trip and injectivity of EncodeKeys on random key
// tuples drawn from an alphabet rich in separators and escapes.
func TestKeysRoundTripQuick(t *testing.T) {
	alphabet := []string{";", `\`, "a", "é", "日", "\x00", " "}
	randValue := func(r *rand.Rand) string {
		var b strings.Builder
		for range r.Intn(6) {
			b.WriteString(alphabet[r.Intn(len(alphabet))])
		}
		return b.String()
	}
	names := []string{"k1", "k2", "k3"}
	cfg := &quick.Config{
		MaxCount: 5000,
		Values: func(args []reflect.Value, r *rand.Rand) {
			n := 1 + r.Intn(len(names))
			for i := range args {
				k := make(Keys, n)
				for _, name := range names[:n] {
					k[name] = randValue(r)
				}
				args[i] = reflect.ValueOf(k)
			}
			if r.Intn(4) == 0 { // often equal, to exercise both sides of injectivity
				args[1] = reflect.ValueOf(maps.Clone(args[0].Interface().(Keys)))
			}
		},
	}
	property := func(k1, k2 Keys) bool {
		n1 := names[:len(k1)]
		e1, err := EncodeKeys(n1, k1)
		if err != nil {
			return false
		}
		back, err := DecodeKeys(n1, e1)
		if err != nil || !maps.Equal(back, k1) {
			return false
		}
		if len(k1) != len(k2) {
			return true
		}
		e2, err := EncodeKeys(n1, k2)
		return err == nil && (e1 == e2) == maps.Equal(k1, k2)
	}
	if err := quick.Check(property, cfg); err != nil {
		t.Error(err)
	}
}

// fuzzKeyNames are the key names FuzzKeysRoundTrip encodes its values under.
var fuzzKeyNames = []string{"a", "b", "c"}

// splitFuzzKeys turns a fuzzed string into 1 to 3 key values: the part before the first
// \x00, the part up to the second, and the rest, so that the fuzzer controls how many
// values there are and what they hold (\x00 itself is a valid key byte elsewhere).
func splitFuzzKeys(s string, n uint8) Keys {
	count := int(n%3) + 1
	parts := strings.SplitN(s, "\x00", count)
	for len(parts) < count {
		parts = append(parts, "")
	}
	keys := make(Keys, count)
	for i := 0; i < count; i++ {
		keys[fuzzKeyNames[i]] = parts[i]
	}
	return keys
}

// FuzzKeysRoundTrip checks that DecodeKeys reverses EncodeKeys exactly for any UTF-8 values
// (including ';', '\' and empty strings), and that EncodeKeys is injective: two different
// key tuples under the same names never encode to the same string.
func FuzzKeysRoundTrip(f *testing.F) {
	for _, s := range []string{"", "x", ";", `\`, `\;`, ";;", `a\`, "a\x00b", "a;b\x00c\\d\x00", "\x00\x00", "日本\x00;"} {
		for n := range uint8(3) {
			f.Add(s, n, s+";", n+1)
		}
	}
	f.Fuzz(func(t *testing.T, s1 string, n1 uint8, s2 string, n2 uint8) {
		if !utf8.ValidString(s1) || !utf8.ValidString(s2) {
			// Invalid UTF-8 must be rejected, naming the key.
			k := splitFuzzKeys(s1+"\xff", n1)
			_, err := EncodeKeys(fuzzKeyNames[:len(k)], k)
			if !errors.Is(err, ErrInvalidKeys) || !strings.Contains(err.Error(), "not valid UTF-8") {
				t.Fatalf("EncodeKeys(%q) error = %v, want invalid UTF-8", k, err)
			}
			return
		}
		k1, k2 := splitFuzzKeys(s1, n1), splitFuzzKeys(s2, n2)
		names1 := fuzzKeyNames[:len(k1)]
		e1, err := EncodeKeys(names1, k1)
		if err != nil {
			t.Fatalf("EncodeKeys(%q): %v", k1, err)
		}
		back, err := DecodeKeys(names1, e1)
		if err != nil || !maps.Equal(back, k1) {
			t.Fatalf("DecodeKeys(EncodeKeys(%q) = %q) = %q, %v", k1, e1, back, err)
		}
		if len(k1) == len(k2) {
			e2, err := EncodeKeys(names1, k2)
			if err != nil {
				t.Fatalf("EncodeKeys(%q): %v", k2, err)
			}
			if (e1 == e2) != maps.Equal(k1, k2) {
				t.Fatalf("injectivity: %q → %q and %q → %q", k1, e1, k2, e2)
			}
		}
	})
}

// TestDecodeKeyValues: DecodeKeyValues gives DecodeKeys' values, in the names' order, for
// every encoding (escapes included), and its errors.
func TestDecodeKeyValues(t *testing.T) {
	names := []string{"a", "b", "c"}
	for _, vals := range [][]string{{"x", "y", "z"}, {"", "", ""}, {"a;b", `c\d`, "\x00;\\"}, {"ünï", ";", `\`}} {
		keys := Keys{"a": vals[0], "b": vals[1], "c": vals[2]}
		enc, err := EncodeKeys(names, keys)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeKeyValues([]string{"keep"}, names, enc)
		if err != nil || len(got) != 4 || got[0] != "keep" || got[1] != vals[0] || got[2] != vals[1] || got[3] != vals[2] {
			t.Errorf("DecodeKeyValues(%q) = %q, %v; want keep + %q", enc, got, err, vals)
		}
		m, err := DecodeKeys(names, enc)
		if err != nil || m["a"] != vals[0] || m["b"] != vals[1] || m["c"] != vals[2] {
			t.Errorf("DecodeKeys(%q) = %v, %v", enc, m, err)
		}
	}
	for _, bad := range []string{"x;y", "x;y;z;w", `x;y;z\`} {
		if got, err := DecodeKeyValues(nil, names, bad); err == nil || len(got) != 0 {
			t.Errorf("DecodeKeyValues(%q) = %q, %v; want an error and nothing appended", bad, got, err)
		}
	}
	if got, err := DecodeKeyValues(nil, nil, ""); err != nil || len(got) != 0 {
		t.Errorf("no keys: %q, %v", got, err)
	}
}
