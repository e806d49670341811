// Package encoder provides the built-in encodings a selector can name (`user.email[hash]`),
// registered with the plugins registry at init:
//
//   - hash: a keyed hash (HMAC-SHA256) of the value, as lowercase hex — a stable pseudonym
//     for joins and counts that does not reveal the value to whoever lacks the key. Config:
//     key (the secret, at least 16 bytes; or key-env naming an environment variable that
//     holds it), bytes (how many bytes of the MAC to keep, 8 to 32, default 32). Without a
//     key every read with [hash] fails, saying how to configure one: an unkeyed hash of a
//     low-entropy value (an email, a card number) is reversible by enumeration.
//   - json: the value as its JSON text (a string): ints exactly, floats in the shortest form
//     that round-trips, timestamps in RFC 3339 with nanoseconds, lists as arrays, windows as
//     an object of their aggregates.
//
// Both are deterministic: the same value always encodes the same way, whatever its source.
// The hash covers the value's kind as well as its content, so the int 1 and the string "1"
// hash differently.
package encoder

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterEncoder("hash", newHash)
	plugins.RegisterEncoder("json", newJSON)
}

// minKeyBytes is the shortest key the hash accepts.
const minKeyBytes = 16

// ErrNoKey is returned by the hash encoding when no key is configured.
var ErrNoKey = errors.New("the hash encoding has no key")

func newHash(cfg plugins.Config) (engine.Encoder, error) {
	key := cfg.String("key", "")
	if env := cfg.String("key-env", ""); env != "" {
		if key != "" {
			return nil, fmt.Errorf("%w: key and key-env are both set; set one", plugins.ErrInvalidConfig)
		}
		key = os.Getenv(env)
		if key == "" {
			return nil, fmt.Errorf("%w: key-env: the environment variable %s is empty or unset", plugins.ErrInvalidConfig, env)
		}
	}
	if key != "" && len(key) < minKeyBytes {
		return nil, fmt.Errorf("%w: key: %d bytes; a key needs %d at least", plugins.ErrInvalidConfig, len(key), minKeyBytes)
	}
	n, err := cfg.Int("bytes", sha256.Size)
	if err != nil {
		return nil, err
	}
	if n < 8 || n > sha256.Size {
		return nil, fmt.Errorf("%w: bytes: %d is outside 8 to %d", plugins.ErrInvalidConfig, n, sha256.Size)
	}
	if key == "" {
		return func(context.Context, engine.Value) (engine.Value, error) {
			return engine.Null, fmt.Errorf("%w: configure one (server config encoders.hash.key, or key-env naming a variable that holds it)", ErrNoKey)
		}, nil
	}
	secret := []byte(key)
	return func(_ context.Context, v engine.Value) (engine.Value, error) {
		m := hmac.New(sha256.New, secret)
		m.Write(canonical(nil, v))
		return engine.String(hex.EncodeToString(m.Sum(nil)[:n])), nil
	}, nil
}

func newJSON(plugins.Config) (engine.Encoder, error) {
	return func(_ context.Context, v engine.Value) (engine.Value, error) {
		b, err := json.Marshal(jsonOf(v))
		if err != nil {
			return engine.Null, err
		}
		return engine.String(string(b)), nil
	}, nil
}

// canonical appends a value's kind and content in a form that no two distinct values share:
// the kind byte, then fixed-width numbers, or length-prefixed strings, or a count and the
// elements.
func canonical(b []byte, v engine.Value) []byte {
	b = append(b, byte(v.Kind()))
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		return append(b, s...)
	}
	num := func(b []byte, u uint64) []byte { return binary.BigEndian.AppendUint64(b, u) }
	switch v.Kind() {
	case engine.KindInt, engine.KindFloat, engine.KindBool, engine.KindTimestamp:
		return num(b, v.Bits())
	case engine.KindString:
		return str(b, v.Str())
	case engine.KindIntList:
		b = num(b, uint64(len(v.Ints())))
		for _, x := range v.Ints() {
			b = num(b, uint64(x))
		}
	case engine.KindFloatList:
		b = num(b, uint64(len(v.Floats())))
		for _, x := range v.Floats() {
			b = num(b, math.Float64bits(x))
		}
	case engine.KindStringList:
		b = num(b, uint64(len(v.Strs())))
		for _, x := range v.Strs() {
			b = str(b, x)
		}
	case engine.KindBoolList:
		b = num(b, uint64(len(v.Bools())))
		for _, x := range v.Bools() {
			if x {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case engine.KindTimestampList:
		b = num(b, uint64(len(v.Times())))
		for _, x := range v.Times() {
			b = num(b, uint64(x.UnixNano()))
		}
	case engine.KindWindow:
		w, _ := json.Marshal(jsonOf(v))
		b = str(b, string(w))
	}
	return b
}

// jsonOf returns what json.Marshal should write for a value.
func jsonOf(v engine.Value) any {
	switch v.Kind() {
	case engine.KindInt:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case engine.KindFloat:
		return v.Float()
	case engine.KindTimestamp:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case engine.KindTimestampList:
		out := make([]string, len(v.Times()))
		for i, t := range v.Times() {
			out[i] = t.UTC().Format(time.RFC3339Nano)
		}
		return out
	case engine.KindIntList:
		out := make([]json.Number, len(v.Ints()))
		for i, x := range v.Ints() {
			out[i] = json.Number(strconv.FormatInt(x, 10))
		}
		return out
	}
	return v.Interface()
}
