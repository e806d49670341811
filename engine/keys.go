package engine

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Keys are the entity keys of a feature value: key name → key value. Every key a feature
// names is required, and no other key is allowed. A key value may be any valid UTF-8 string
// of at most MaxKeyBytes bytes, including the empty string and the separators used by
// EncodeKeys.
type Keys map[string]string

// MaxKeyBytes is the longest key value, in bytes, that EncodeKeys accepts: an entity ID
// (a card number, a user ID, a hash, even a URL) fits many times over, while a key that
// would be stored, hashed, logged and handed to every program and middleware of a feature
// with each call cannot take megabytes of memory or state per entity.
const MaxKeyBytes = 64 << 10

// keySep separates key values in an encoded key and keyEsc escapes it and itself.
const (
	keySep = ';'
	keyEsc = '\\'
)

// EncodeKeys validates keys against the key names a feature declares (every one present,
// no other, each value valid UTF-8 of at most MaxKeyBytes; else ErrInvalidKeys) and encodes their
// values, in the declared order, into one string: each value with '\' written as "\\" and
// ';' as "\;", joined by ';'. DecodeKeys reverses it exactly.
//
// The encoding of a single key whose value contains neither separator is the value itself,
// so it does not allocate.
func EncodeKeys(names []string, keys Keys) (string, error) {
	if err := checkKeys(names, keys); err != nil {
		return "", err
	}
	if len(names) == 1 {
		v := keys[names[0]]
		if strings.IndexByte(v, keySep) < 0 && strings.IndexByte(v, keyEsc) < 0 {
			return v, nil
		}
	}
	var b strings.Builder
	n := len(names)
	for _, name := range names {
		n += len(keys[name]) + 1
	}
	b.Grow(n)
	for i, name := range names {
		if i > 0 {
			b.WriteByte(keySep)
		}
		v := keys[name]
		for j := 0; j < len(v); j++ {
			if c := v[j]; c == keySep || c == keyEsc {
				b.WriteByte(keyEsc)
			}
			b.WriteByte(v[j])
		}
	}
	return b.String(), nil
}

// DecodeKeyValues reverses EncodeKeys into the values in the order of names, appended to
// dst: what a caller that needs no map (the historian, one column per key) uses.
func DecodeKeyValues(dst []string, names []string, encoded string) ([]string, error) {
	if len(names) == 0 && encoded == "" {
		return dst, nil
	}
	start, i := len(dst), 0
	from := 0        // start of the current value in encoded
	escaped := false // the current value holds an escape: build it byte by byte
	var b strings.Builder
	for j := 0; j <= len(encoded); j++ {
		if j == len(encoded) || encoded[j] == keySep {
			if i >= len(names) {
				return dst[:start], fmt.Errorf("%w: encoded keys %s hold more than the %d named", ErrInvalidKeys, quoteClipped(encoded), len(names))
			}
			if escaped {
				dst = append(dst, b.String())
				b.Reset()
			} else {
				dst = append(dst, encoded[from:j]) // shares encoded's bytes: no copy
			}
			i++
			from, escaped = j+1, false
			continue
		}
		if encoded[j] == keyEsc {
			if !escaped {
				b.WriteString(encoded[from:j])
				escaped = true
			}
			j++
			if j == len(encoded) {
				return dst[:start], fmt.Errorf("%w: encoded keys %s end in an escape", ErrInvalidKeys, quoteClipped(encoded))
			}
		}
		if escaped {
			b.WriteByte(encoded[j])
		}
	}
	if i != len(names) {
		return dst[:start], fmt.Errorf("%w: encoded keys %s hold %d values, want %d (%s)", ErrInvalidKeys, quoteClipped(encoded), i, len(names), strings.Join(names, ", "))
	}
	return dst, nil
}

// DecodeKeys reverses EncodeKeys for the same key names.
func DecodeKeys(names []string, encoded string) (Keys, error) {
	if len(names) == 0 && encoded == "" { // EncodeKeys of no keys
		return Keys{}, nil
	}
	keys := make(Keys, len(names))
	var b strings.Builder
	i := 0
	for j := 0; j <= len(encoded); j++ {
		if j == len(encoded) || encoded[j] == keySep {
			if i >= len(names) {
				return nil, fmt.Errorf("%w: encoded keys %s hold more than the %d named", ErrInvalidKeys, quoteClipped(encoded), len(names))
			}
			keys[names[i]] = b.String()
			b.Reset()
			i++
			continue
		}
		if encoded[j] == keyEsc {
			j++
			if j == len(encoded) {
				return nil, fmt.Errorf("%w: encoded keys %s end in an escape", ErrInvalidKeys, quoteClipped(encoded))
			}
		}
		b.WriteByte(encoded[j])
	}
	if i != len(names) {
		return nil, fmt.Errorf("%w: encoded keys %s hold %d values, want %d (%s)", ErrInvalidKeys, quoteClipped(encoded), i, len(names), strings.Join(names, ", "))
	}
	return keys, nil
}

func checkKeys(names []string, keys Keys) error {
	for _, name := range names {
		v, ok := keys[name]
		if !ok {
			if err := unknownKey(names, keys); err != nil {
				return err // a misspelt key says so, rather than that the right one is missing
			}
			return fmt.Errorf("%w: missing key %q (want %s)", ErrInvalidKeys, name, strings.Join(names, ", "))
		}
		if len(v) > MaxKeyBytes {
			return fmt.Errorf("%w: key %q: value is %d bytes, more than the %d allowed", ErrInvalidKeys, name, len(v), MaxKeyBytes)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: key %q: value is not valid UTF-8", ErrInvalidKeys, name)
		}
	}
	if len(keys) != len(names) {
		return unknownKey(names, keys)
	}
	return nil
}

// unknownKey reports a key of keys that is not among names, or nil.
func unknownKey(names []string, keys Keys) error {
	for k := range keys {
		if !slices.Contains(names, k) {
			return fmt.Errorf("%w: unknown key %s (want %s)", ErrInvalidKeys, quoteClipped(k), strings.Join(names, ", "))
		}
	}
	return nil
}

// maxQuoted is the most bytes of a caller's string an error message quotes.
const maxQuoted = 64

// quoteClipped quotes s for an error message, cut to maxQuoted bytes (on a rune boundary)
// with its length said, so a huge input is never copied into a message.
func quoteClipped(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
