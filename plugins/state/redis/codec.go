package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// errCorrupt is wrapped by the errors reporting a stored value this package cannot decode.
var errCorrupt = errors.New("redis: corrupt stored value")

// keyPrefix starts every key this package writes.
const keyPrefix = "osp:{"

// Key suffixes: the current value, the previous versions, the window buckets, the scratch
// key of an int Incr and the program's storage (engine.StorageState).
const (
	sufValue   = "}:v"
	sufPrev    = "}:p"
	sufWindow  = "}:w"
	sufScratch = "}:x"
	sufStorage = "}:s"
)

// entityTag returns "osp:{<fqn>|<keys>": the common start of an entity's keys. FQNs cannot
// contain '|', so the FQN ends at the first one; the hash tag (up to the first '}') lies
// inside this common start, so all of an entity's keys share a Cluster hash slot.
func entityTag(fqn, keys string) string {
	return keyPrefix + fqn + "|" + keys
}

// featurePattern is the SCAN pattern matching every key of a feature.
func featurePattern(fqn string) string {
	return keyPrefix + globEscape(fqn) + "|*"
}

// globEscape escapes the characters SCAN MATCH treats specially.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\^-{}`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\^-{}`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kindByte is the first byte of a stored value: 'a' + the value's kind.
func kindByte(p engine.Primitive) string { return string(rune('a' + byte(p))) }

// tsHex writes a timestamp as 16 hex digits of its Unix nanoseconds with the sign bit
// flipped, so that the strings sort as the times do, before the epoch included.
func tsHex(ns int64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	u := uint64(ns) ^ 1<<63
	for i := 15; i >= 0; i-- {
		b[i] = digits[u&0xf]
		u >>= 4
	}
	return string(b[:])
}

// parseTsHex reverses tsHex.
func parseTsHex(s string) (int64, error) {
	u, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		return 0, fmt.Errorf("%w: timestamp %q", errCorrupt, s)
	}
	return int64(u ^ 1<<63), nil
}

// encodeValue encodes v (of a primitive kind) as this package stores it: ints and
// timestamps (Unix ns) in decimal, floats in the shortest decimal that round-trips (which
// Lua parses exactly), bools as 0 or 1, strings as they are, and lists as the
// concatenation of their elements' encodings — 8 bytes big-endian per int, float (its bits)
// or timestamp, 1 byte per bool, a uvarint length then the bytes per string — so that an
// Append is a string concatenation.
func encodeValue(v engine.Value) string {
	switch v.Kind() {
	case engine.KindInt:
		return strconv.FormatInt(v.Int(), 10)
	case engine.KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case engine.KindString:
		return v.Str()
	case engine.KindBool:
		if v.Bool() {
			return "1"
		}
		return "0"
	case engine.KindTimestamp:
		return strconv.FormatInt(v.Time().UnixNano(), 10)
	case engine.KindIntList:
		l := v.Ints()
		b := make([]byte, 0, 8*len(l))
		for _, x := range l {
			b = binary.BigEndian.AppendUint64(b, uint64(x))
		}
		return string(b)
	case engine.KindFloatList:
		l := v.Floats()
		b := make([]byte, 0, 8*len(l))
		for _, x := range l {
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(x))
		}
		return string(b)
	case engine.KindTimestampList:
		l := v.Times()
		b := make([]byte, 0, 8*len(l))
		for _, x := range l {
			b = binary.BigEndian.AppendUint64(b, uint64(x.UnixNano()))
		}
		return string(b)
	case engine.KindBoolList:
		l := v.Bools()
		b := make([]byte, len(l))
		for i, x := range l {
			if x {
				b[i] = 1
			}
		}
		return string(b)
	case engine.KindStringList:
		var b []byte
		for _, x := range v.Strs() {
			b = binary.AppendUvarint(b, uint64(len(x)))
			b = append(b, x...)
		}
		return string(b)
	}
	return ""
}

// decodeValue reverses encodeValue for a feature of primitive p.
func decodeValue(p engine.Primitive, s string) (engine.Value, error) {
	bad := func() (engine.Value, error) {
		return engine.Null, fmt.Errorf("%w: %q is no %s", errCorrupt, clip(s), p)
	}
	fixed := func() ([]uint64, bool) {
		if len(s)%8 != 0 {
			return nil, false
		}
		out := make([]uint64, len(s)/8)
		for i := range out {
			out[i] = binary.BigEndian.Uint64([]byte(s[8*i : 8*i+8]))
		}
		return out, true
	}
	switch p {
	case engine.PrimitiveInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad()
		}
		return engine.Int(n), nil
	case engine.PrimitiveFloat:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad()
		}
		return engine.Float(x), nil
	case engine.PrimitiveString:
		return engine.String(strings.Clone(s)), nil
	case engine.PrimitiveBool:
		if s != "0" && s != "1" {
			return bad()
		}
		return engine.Bool(s == "1"), nil
	case engine.PrimitiveTimestamp:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad()
		}
		return engine.Timestamp(time.Unix(0, n).UTC()), nil
	case engine.PrimitiveIntList:
		u, ok := fixed()
		if !ok {
			return bad()
		}
		l := make([]int64, len(u))
		for i, x := range u {
			l[i] = int64(x)
		}
		return engine.IntList(l), nil
	case engine.PrimitiveFloatList:
		u, ok := fixed()
		if !ok {
			return bad()
		}
		l := make([]float64, len(u))
		for i, x := range u {
			l[i] = math.Float64frombits(x)
		}
		return engine.FloatList(l), nil
	case engine.PrimitiveTimestampList:
		u, ok := fixed()
		if !ok {
			return bad()
		}
		l := make([]time.Time, len(u))
		for i, x := range u {
			l[i] = time.Unix(0, int64(x)).UTC()
		}
		return engine.TimestampList(l), nil
	case engine.PrimitiveBoolList:
		l := make([]bool, len(s))
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case 0:
			case 1:
				l[i] = true
			default:
				return bad()
			}
		}
		return engine.BoolList(l), nil
	case engine.PrimitiveStringList:
		l := []string{}
		b := []byte(s)
		for len(b) > 0 {
			n, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < n {
				return bad()
			}
			l = append(l, string(b[k:k+int(n)]))
			b = b[k+int(n):]
		}
		return engine.StringList(l), nil
	}
	return bad()
}

// decodeStamped decodes a stored "kind, ts, value" string for feature primitive p. ok is
// false when the kind is another (the value counts as absent).
func decodeStamped(p engine.Primitive, s string) (v engine.Value, ns int64, ok bool, err error) {
	if len(s) < 17 {
		return engine.Null, 0, false, fmt.Errorf("%w: %q is too short", errCorrupt, clip(s))
	}
	if s[:1] != kindByte(p) {
		return engine.Null, 0, false, nil
	}
	if ns, err = parseTsHex(s[1:17]); err != nil {
		return engine.Null, 0, false, err
	}
	v, err = decodeValue(p, s[17:])
	return v, ns, err == nil, err
}

// storageVersion is the field of a storage hash (:s) holding the address's version: no
// storage name (an engine.ValidName: letters, digits and '_') can be it.
const storageVersion = "#v"

// neverHex is the expiry of a storage value that never expires: tsHex of the largest
// time, which sorts after every other.
const neverHex = "ffffffffffffffff"

// expiryHex writes a storage value's expiry as tsHex: zero (never), and times past the
// last nanosecond int64 counts (in 2262), as neverHex; times before the first as the first.
func expiryHex(t time.Time) string {
	switch {
	case t.IsZero() || !t.Before(time.Unix(0, math.MaxInt64)):
		return neverHex
	case t.Before(time.Unix(0, math.MinInt64)):
		return tsHex(math.MinInt64)
	}
	return tsHex(t.UnixNano())
}

// packStored packs a storage value as a field of :s holds it: its kind byte, its expiry
// (expiryHex) and the value (encodeValue), laid out as a current value is (the expiry in
// the timestamp's place), so that the commit script compares expiries as strings.
func packStored(sv engine.StoredValue) (string, error) {
	p := engine.Primitive(sv.Value.Kind())
	if !p.Valid() {
		return "", fmt.Errorf("%w: a %s value cannot be stored", engine.ErrStorage, sv.Value.Kind())
	}
	return kindByte(p) + expiryHex(sv.Expires) + encodeValue(sv.Value), nil
}

// unpackStored reverses packStored.
func unpackStored(s string) (engine.StoredValue, error) {
	if len(s) < 17 {
		return engine.StoredValue{}, fmt.Errorf("%w: %q is too short", errCorrupt, clip(s))
	}
	p := engine.Primitive(s[0] - 'a')
	if s[0] < 'a' || !p.Valid() {
		return engine.StoredValue{}, fmt.Errorf("%w: kind byte %q", errCorrupt, s[:1])
	}
	var sv engine.StoredValue
	if exp := s[1:17]; exp != neverHex {
		ns, err := parseTsHex(exp)
		if err != nil {
			return engine.StoredValue{}, err
		}
		sv.Expires = time.Unix(0, ns).UTC()
	}
	v, err := decodeValue(p, s[17:])
	if err != nil {
		return engine.StoredValue{}, err
	}
	sv.Value = v
	return sv, nil
}

// bucketLen is the length of a stored bucket record: its ID (idBytes), sum, count, min and
// max as little-endian float64s (Lua's struct.pack('<dddd')), then the latest update's
// timestamp in Unix ns (idBytes).
const bucketLen = 8 + 4*8 + 8

// idBytes writes an int64 as 8 big-endian bytes with the sign bit flipped: byte strings that
// compare as the numbers do, which is how the scripts compare bucket IDs and timestamps
// exactly.
func idBytes(n int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n)^1<<63)
	return string(b[:])
}

// fromIDBytes reverses idBytes.
func fromIDBytes(s string) int64 {
	return int64(binary.BigEndian.Uint64([]byte(s)) ^ 1<<63)
}

// forBuckets calls fn with each record of a stored :w string whose ID is in [first, last],
// in ID order, stopping early when fn returns false.
func forBuckets(s string, first, last int64, fn func(engine.Bucket)) error {
	if len(s)%bucketLen != 0 {
		return fmt.Errorf("%w: bucket records of %d bytes", errCorrupt, len(s))
	}
	for i := 0; i < len(s); i += bucketLen {
		r := s[i : i+bucketLen]
		id := fromIDBytes(r[:8])
		if id > last {
			break
		}
		if id < first {
			continue
		}
		f := func(k int) float64 {
			return math.Float64frombits(binary.LittleEndian.Uint64([]byte(r[8+8*k : 16+8*k])))
		}
		fn(engine.Bucket{ID: id, Sum: f(0), Count: f(1), Min: f(2), Max: f(3), Updated: time.Unix(0, fromIDBytes(r[40:])).UTC()})
	}
	return nil
}

// bucketOf builds a bucket from the aggregate script's reply: sum, count, min and max in
// decimal and the latest update's timestamp (idBytes).
func bucketOf(id int64, f []string) (engine.Bucket, error) {
	b := engine.Bucket{ID: id}
	var err error
	for i, dst := range []*float64{&b.Sum, &b.Count, &b.Min, &b.Max} {
		if *dst, err = strconv.ParseFloat(f[i], 64); err != nil {
			return engine.Bucket{}, fmt.Errorf("%w: bucket field %q", errCorrupt, f[i])
		}
	}
	if len(f[4]) != 8 {
		return engine.Bucket{}, fmt.Errorf("%w: bucket timestamp %q", errCorrupt, f[4])
	}
	b.Updated = time.Unix(0, fromIDBytes(f[4])).UTC()
	return b, nil
}

// clip shortens a stored value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
