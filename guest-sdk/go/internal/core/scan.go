package core

import (
	"encoding/binary"
	"unicode/utf8"

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
	for j := p; j < p+l; j++ {
		if in[j] >= utf8.RuneSelf {
			if !utf8.Valid(in[j : p+l]) {
				return 0, 0, false
			}
			break
		}
	}
	return p, p + l, true
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
		if p > len(in) {
			return 0, false
		}
		e.val1 = int32(p)
		x.ents = append(x.ents, e)
	}
	return p, x.checkDuplicates(keys) == nil
}

// fastHeader decodes fqn, keys and timestamp at p; it returns the offset after them.
func (c *Call) fastHeader(in []byte, p int) (int, bool) {
	s0, s1, ok := str(in, p)
	if !ok {
		return 0, false
	}
	if fqn := in[s0:s1]; view(fqn) != c.fqn {
		c.fqn = string(fqn)
	}
	k0 := s1
	if p, ok = c.keys.scan(in, s1, true); !ok {
		return 0, false
	}
	c.keysRaw = in[k0:p:p]
	if len(in)-p < 8 {
		return 0, false
	}
	c.ts = int64(binary.LittleEndian.Uint64(in[p:]))
	return p + 8, true
}

// fastProgram decodes a program call, or reports that the slow path must.
func (c *Call) fastProgram(in []byte) bool {
	if len(in) < 1 || in[0] != abi.CallProgram {
		return false
	}
	p, ok := c.fastHeader(in, 1)
	if !ok {
		return false
	}
	p, ok = c.row.scan(in, p, false)
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
