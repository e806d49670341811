package core

import (
	"unicode/utf8"
	"unsafe"

	"github.com/osprey-ml/osprey/abi"
)

// The fast path of call decoding. Go's WebAssembly code pays dearly for function calls
// (tens of nanoseconds each), so the per-call scan of a row is one flat loop over the
// bytes instead of a Decoder method per element: it cuts the SDK's per-call cost in a
// guest several times. It only answers "valid or not": on any failure the caller decodes
// again with abi.Decoder, which explains the error. The two must accept exactly the same
// messages (FuzzScan checks it).

// uvarint reads a minimal uvarint no larger than abi.MaxMessageSize at p.
func uvarint(in []byte, p int) (x, next int, ok bool) {
	var v uint64
	for i := 0; i < 4; i++ { // MaxMessageSize (2^24) takes at most 4 bytes
		if p+i >= len(in) {
			return 0, 0, false
		}
		b := in[p+i]
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 || v > abi.MaxMessageSize {
				return 0, 0, false
			}
			return int(v), p + i + 1, true
		}
	}
	return 0, 0, false
}

// str skips a String at p, checking its UTF-8; it returns the bytes' start and end.
func str(in []byte, p int) (s0, s1 int, ok bool) {
	if p >= len(in) {
		return 0, 0, false
	}
	l := int(in[p])
	p++
	if l >= 0x80 {
		if l, p, ok = uvarint(in, p-1); !ok {
			return 0, 0, false
		}
	}
	if l > len(in)-p {
		return 0, 0, false
	}
	return p, p + l, validUTF8(in, p, p+l)
}

// highBits has the top bit of every byte of a word set: a word of ASCII has none.
const highBits = 0x8080808080808080

// word reads the 8 bytes at in[p:p+8], which the caller has checked are inside in, as one
// little-endian word, without a bounds check.
func word(in []byte, p int) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(in)), p))
}

// validUTF8 reports whether in[s0:s1] is valid UTF-8. It tests eight bytes at a time for
// ASCII, the common case, and hands anything else to utf8.Valid: in a WebAssembly guest a
// loop costs about 4 ns an iteration, so a byte loop over a 10-field row took ~0.5 µs.
func validUTF8(in []byte, s0, s1 int) bool {
	p := s0
	for ; s1-p >= 8; p += 8 {
		if word(in, p)&highBits != 0 {
			return utf8.Valid(in[p:s1])
		}
	}
	r := s1 - p // 0 to 7 bytes left
	var w uint64
	switch {
	case r == 0:
		return true
	case len(in)-p >= 8: // the word at p: keep its low r bytes
		w = word(in, p) << (64 - 8*r)
	case s1 >= 8: // the word ending at s1: keep its high r bytes
		w = word(in, s1-8) >> (64 - 8*r)
	default:
		return utf8.Valid(in[p:s1])
	}
	return w&highBits == 0 || utf8.Valid(in[p:s1])
}

// StringBytes returns the bytes of a String encoding (§5.1) that a scan already checked.
func StringBytes(b []byte) []byte {
	l, p := int(b[0]), 1
	if l >= 0x80 {
		l, p, _ = uvarint(b, 0)
	}
	return b[p : p+l]
}

// scan indexes a Keys (keys=true) or Row at p in in and returns the offset after it.
func (x *Index) scan(in []byte, p int, keys bool) (int, bool) {
	x.parse0(in)
	n, p, ok := uvarint(in, p)
	if !ok || n > (len(in)-p)/2 {
		return 0, false
	}
	for range n {
		var e entry
		s0, s1, ok := str(in, p)
		if !ok {
			return 0, false
		}
		e.name0, e.name1 = int32(s0), int32(s1)
		p = s1
		if keys {
			if s0, s1, ok = str(in, p); !ok {
				return 0, false
			}
			e.val0, e.val1 = int32(s0), int32(s1)
			p = s1
			x.ents = append(x.ents, e)
			continue
		}
		if p >= len(in) {
			return 0, false
		}
		e.val0 = int32(p)
		tag := abi.Tag(in[p])
		p++
		switch tag {
		case abi.TagNull:
		case abi.TagInt, abi.TagFloat, abi.TagTimestamp:
			p += 8
		case abi.TagString:
			if _, p, ok = str(in, p); !ok {
				return 0, false
			}
		case abi.TagBool:
			if p >= len(in) || in[p] > 1 {
				return 0, false
			}
			p++
		default:
			if p, ok = skipValue(in, p, tag); !ok {
				return 0, false
			}
		}
		if p > len(in) {
			return 0, false
		}
		e.val1 = int32(p)
		x.ents = append(x.ents, e)
	}
	return p, x.checkDuplicates(keys) == nil
}

// at returns in[p] without a bounds check; the caller has checked p.
func at(in []byte, p int) byte {
	return *(*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(in)), p))
}

// scanRow indexes a Row at p like scan, for the common case: up to linearMax fields, names
// and string values of ASCII shorter than 128 bytes, and scalar values. Anything else, or
// any error, hands the whole row to scan.
//
// It is one loop with no function calls, its reads checked once and explicitly: a Go
// function compiled to WebAssembly keeps its variables in registers only between calls
// (all are caller-saved), branches cost several instructions each, and a call tens of
// nanoseconds. Written with helpers, scanning a 10-field row cost ~0.8 µs in a guest. The
// duplicate check is a 64-bit set of name hashes, in a register; only when two names take
// the same bit does checkDuplicates compare them, after the loop (a call inside it, even
// one never made, costs the loop a third more: its variables spill around the call).
func (x *Index) scanRow(in []byte, p0 int) (int, bool) {
	x.parse0(in)
	end := len(in)
	if p0 >= end || end < 8 || cap(x.ents) < linearMax {
		return x.scan(in, p0, false)
	}
	n := int(at(in, p0))
	if n > linearMax {
		return x.scan(in, p0, false)
	}
	p := p0 + 1
	ents := x.ents[:n]
	var seen, twice uint64 // a bit per name, by hash; the bits taken twice
	var acc uint64         // the strings' bytes or-ed together: ASCII if no high bit is set
	for i := range ents {
		// The field's name: its length byte, then the bytes. Two bytes at least remain: the
		// length and the value's tag.
		if end-p < 2 {
			return x.scan(in, p0, false)
		}
		l := int(at(in, p))
		p++
		if l >= 0x80 || l >= end-p {
			return x.scan(in, p0, false)
		}
		q, qe := p, p+l // ASCII? Whole words or-ed into acc (by hand: not inlined as a func)
		for ; qe-q >= 8; q += 8 {
			acc |= word(in, q)
		}
		if r := qe - q; r > 0 { // r < 8 bytes: the low r bytes of the word at q
			var w uint64
			if end-q >= 8 {
				w = word(in, q)
			} else { // the word ending at end, moved down to start at q
				w = word(in, end-8) >> (8 * (q - end + 8))
			}
			acc |= w << (64 - 8*r)
		}
		// Its bit in seen, from its length and first and last bytes (for an empty name, the
		// byte before it twice: its length, 0). A bit taken twice calls for a real check.
		h := uint64(1) << ((l*5 + int(at(in, p))*3 + int(at(in, p+l-1))) & 63)
		twice |= seen & h
		seen |= h
		e := entry{name0: int32(p), name1: int32(p + l), val0: int32(p + l)}
		p += l

		// The Value; p < end.
		tag := abi.Tag(at(in, p))
		p++
		switch tag {
		case abi.TagInt, abi.TagFloat, abi.TagTimestamp:
			p += 8
		case abi.TagString:
			if p >= end {
				return x.scan(in, p0, false)
			}
			l := int(at(in, p))
			p++
			if l >= 0x80 || l > end-p {
				return x.scan(in, p0, false)
			}
			q, qe := p, p+l // the same ASCII check, for the value
			for ; qe-q >= 8; q += 8 {
				acc |= word(in, q)
			}
			if r := qe - q; r > 0 { // r < 8 bytes: the low r bytes of the word at q
				var w uint64
				if end-q >= 8 {
					w = word(in, q)
				} else { // the word ending at end, moved down to start at q
					w = word(in, end-8) >> (8 * (q - end + 8))
				}
				acc |= w << (64 - 8*r)
			}
			p += l
		case abi.TagBool:
			if p >= end || at(in, p) > 1 {
				return x.scan(in, p0, false)
			}
			p++
		case abi.TagNull:
		default:
			return x.scan(in, p0, false)
		}
		if p > end {
			return x.scan(in, p0, false)
		}
		e.val1 = int32(p)
		ents[i] = e
	}
	if acc&highBits != 0 {
		return x.scan(in, p0, false)
	}
	x.ents = ents
	if twice != 0 && x.checkDuplicates(false) != nil {
		return 0, false
	}
	return p, true
}

// skipValue skips the payload of a list or window Value with tag at p (the rarer tags);
// the result may lie past the end of in, which the caller checks.
func skipValue(in []byte, p int, tag abi.Tag) (int, bool) {
	var ok bool
	switch tag {
	case abi.TagIntList, abi.TagFloatList, abi.TagTimestampList:
		var c int
		if c, p, ok = uvarint(in, p); !ok || c > (len(in)-p)/8 {
			return 0, false
		}
		p += 8 * c
	case abi.TagStringList:
		var c int
		if c, p, ok = uvarint(in, p); !ok || c > len(in)-p {
			return 0, false
		}
		for range c {
			if _, p, ok = str(in, p); !ok {
				return 0, false
			}
		}
	case abi.TagBoolList:
		var c int
		if c, p, ok = uvarint(in, p); !ok || c > len(in)-p {
			return 0, false
		}
		for _, b := range in[p : p+c] {
			if b > 1 {
				return 0, false
			}
		}
		p += c
	case abi.TagWindow:
		p += 1 + 4*8
	default:
		return 0, false
	}
	return p, true
}

// fastHeader decodes fqn, keys and timestamp at p; it returns the offset after them. The
// common call, for the same feature as the last one and without keys, takes no function
// call but one string comparison.
func (c *Call) fastHeader(in []byte, p int) (int, bool) {
	if n := len(c.fqn); n < 0x80 && n < len(in)-p && int(at(in, p)) == n && view(in[p+1:p+1+n]) == c.fqn {
		p += 1 + n // the last call's FQN, checked then
	} else {
		s0, s1, ok := str(in, p)
		if !ok {
			return 0, false
		}
		c.fqn = string(in[s0:s1])
		p = s1
	}
	k0 := p
	if p < len(in) && at(in, p) == 0 {
		p++ // no keys
		c.keys.parse0(in)
	} else {
		var ok bool
		if p, ok = c.keys.scan(in, p, true); !ok {
			return 0, false
		}
	}
	c.keysRaw = in[k0:p:p]
	if len(in)-p < 8 {
		return 0, false
	}
	c.ts = int64(word(in, p))
	return p + 8, true
}

// fastProgram decodes a program call, or reports that the slow path must. It sets all that
// begin would.
func (c *Call) fastProgram(in []byte) bool {
	if len(in) < 1 || in[0] != abi.CallProgram {
		return false
	}
	c.stage, c.op = 0, 0
	p, ok := c.fastHeader(in, 1)
	if !ok {
		return false
	}
	p, ok = c.row.scanRow(in, p)
	return ok && p == len(in)
}

// fastMiddleware decodes a middleware call, or reports that the slow path must.
func (c *Call) fastMiddleware(in []byte) (abi.Value, bool) {
	if len(in) < 3 || in[0] != abi.CallMiddleware || in[1] < abi.StagePreGet || in[1] > abi.StagePostSet ||
		in[2] < abi.OpGet || in[2] > abi.OpUpdate {
		return abi.Value{}, false
	}
	c.stage, c.op = in[1], in[2]
	p, ok := c.fastHeader(in, 3)
	if !ok {
		return abi.Value{}, false
	}
	c.dec.Reset(in[p:])
	v := c.dec.Value()
	return v, c.dec.Done() == nil
}
