package engine

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Keys are the entity keys of a feature value: key name → key value. Every key a feature
// names is required, and no other key is allowed. A key value may be any valid UTF-8 string,
// including the empty string and the separators used by EncodeKeys.
type Keys map[string]string

// keySep separates key values in an encoded key and keyEsc escapes it and itself.
const (
	keySep = ';'
	keyEsc = '\\'
)

// EncodeKeys validates keys against the key names a feature declares and encodes their
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
				return nil, fmt.Errorf("%w: encoded keys %q hold more than the %d named", ErrInvalidKeys, encoded, len(names))
			}
			keys[names[i]] = b.String()
			b.Reset()
			i++
			continue
		}
		if encoded[j] == keyEsc {
			j++
			if j == len(encoded) {
				return nil, fmt.Errorf("%w: encoded keys %q end in an escape", ErrInvalidKeys, encoded)
			}
		}
		b.WriteByte(encoded[j])
	}
	if i != len(names) {
		return nil, fmt.Errorf("%w: encoded keys %q hold %d values, want %d (%s)", ErrInvalidKeys, encoded, i, len(names), strings.Join(names, ", "))
	}
	return keys, nil
}

func checkKeys(names []string, keys Keys) error {
	for _, name := range names {
		v, ok := keys[name]
		if !ok {
			return fmt.Errorf("%w: missing key %q (want %s)", ErrInvalidKeys, name, strings.Join(names, ", "))
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: key %q: value is not valid UTF-8", ErrInvalidKeys, name)
		}
	}
	if len(keys) != len(names) {
		for k := range keys {
			known := false
			for _, name := range names {
				known = known || name == k
			}
			if !known {
				return fmt.Errorf("%w: unknown key %q (want %s)", ErrInvalidKeys, k, strings.Join(names, ", "))
			}
		}
	}
	return nil
}
