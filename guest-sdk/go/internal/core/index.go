package core

import (
	"bytes"
	"slices"
	"strconv"
	"unsafe"

	"github.com/osprey-ml/osprey/abi"
)

// linearMax is the entry count up to which an Index finds names by scanning; above it, it
// sorts a permutation once per parse and binary-searches.
const linearMax = 16

// entry locates one (name, value) pair in an Index's buffer. For Keys the value range is
// the string's bytes; for a Row it is the whole Value encoding, tag included.
type entry struct{ name0, name1, val0, val1 int32 }

// Index is a reusable view of an encoded Keys or Row (ABI §5.4, §5.5): the offsets of its
// names and values, built by one scan that validates the encoding. Parsing again reuses the
// memory, so a steady stream of calls does not allocate.
type Index struct {
	buf    []byte
	ents   []entry
	sorted []int32  // entry numbers by name, when len(ents) > linearMax
	gen    uint32   // incremented by every parse, so stale RowViews can tell
	strs   []string // the last string returned for each entry number, kept across parses
}

// view returns b as a string without copying; the string must not outlive the call.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func malformed(msg string) error { return &abi.MalformedError{Msg: msg} }

// parse0 empties x, invalidating the views of its previous contents.
func (x *Index) parse0(buf []byte) {
	x.gen++
	x.buf = buf
	x.ents = x.ents[:0]
	x.sorted = x.sorted[:0]
}

// parse scans a Keys (keys=true) or Row encoding at d's position in buf (the buffer d
// reads), checking every string and value and rejecting duplicate names.
func (x *Index) parse(d *abi.Decoder, buf []byte, keys bool) error {
	x.parse0(buf)
	at := d.Offset()
	n := d.Uvarint()
	if d.Err() != nil {
		return d.Err()
	}
	if n > uint64(d.Len()/2) {
		return malformed("count " + strconv.FormatUint(n, 10) + " at byte " + strconv.Itoa(at) +
			" exceeds the " + strconv.Itoa(d.Len()) + " bytes left")
	}
	for range n {
		name := d.StringBytes()
		name1 := d.Offset()
		var e entry
		e.name0, e.name1 = int32(name1-len(name)), int32(name1)
		if keys {
			v := d.StringBytes()
			e.val1 = int32(d.Offset())
			e.val0 = e.val1 - int32(len(v))
		} else {
			e.val0 = int32(d.Offset())
			d.SkipValue()
			e.val1 = int32(d.Offset())
		}
		if d.Err() != nil {
			return d.Err()
		}
		x.ents = append(x.ents, e)
	}
	return x.checkDuplicates(keys)
}

func (x *Index) name(i int) []byte {
	e := x.ents[i]
	return x.buf[e.name0:e.name1]
}

func (x *Index) checkDuplicates(keys bool) error {
	n := len(x.ents)
	what := "field"
	if keys {
		what = "key"
	}
	if n <= linearMax {
		// A small hash table on the stack: each name is compared only with the earlier names
		// in its bin (chains of entry numbers + 1; 0 ends a chain). Comparing every pair
		// costs several times more in a WebAssembly guest.
		var heads [64]uint8
		var next [linearMax]uint8
		for i := range n {
			name := x.name(i)
			h := len(name)
			if h > 0 {
				h = h*31 + int(name[0])*7 + int(name[len(name)-1])
			}
			h &= 63
			for j := int(heads[h]) - 1; j >= 0; j = int(next[j]) - 1 {
				if bytes.Equal(x.name(j), name) {
					return malformed("duplicate " + what + " " + strconv.Quote(string(name)))
				}
			}
			next[i], heads[h] = heads[h], uint8(i+1)
		}
		return nil
	}
	for i := range n {
		x.sorted = append(x.sorted, int32(i))
	}
	slices.SortFunc(x.sorted, func(a, b int32) int { return bytes.Compare(x.name(int(a)), x.name(int(b))) })
	for i := 1; i < n; i++ {
		if bytes.Equal(x.name(int(x.sorted[i])), x.name(int(x.sorted[i-1]))) {
			return malformed("duplicate " + what + " " + strconv.Quote(string(x.name(int(x.sorted[i])))))
		}
	}
	return nil
}

// Len returns the number of entries.
func (x *Index) Len() int { return len(x.ents) }

// Name returns the i-th name (a copy).
func (x *Index) Name(i int) string { return string(x.name(i)) }

// NameView returns the i-th name without copying; it must not outlive the call.
func (x *Index) NameView(i int) string { return view(x.name(i)) }

// Val returns the i-th value's bytes (for a Row, the Value encoding; for Keys, the string).
func (x *Index) Val(i int) []byte {
	e := x.ents[i]
	return x.buf[e.val0:e.val1:e.val1]
}

// String returns the string whose bytes are b, read from entry i. When the last string
// returned for entry i has the same bytes — the same field of a steady stream of rows
// often holds the same text, such as a status or a currency — it is returned again rather
// than allocated.
func (x *Index) String(i int, b []byte) string {
	if i < len(x.strs) && x.strs[i] == view(b) {
		return x.strs[i]
	}
	s := string(b)
	if i < 1024 { // bound the cache on a wide row
		for len(x.strs) <= i {
			x.strs = append(x.strs, "")
		}
		x.strs[i] = s
	}
	return s
}

// Find returns the entry number of name, or -1.
func (x *Index) Find(name string) int {
	if len(x.sorted) == 0 {
		for i := range x.ents {
			if view(x.name(i)) == name {
				return i
			}
		}
		return -1
	}
	i, ok := slices.BinarySearchFunc(x.sorted, name, func(e int32, name string) int {
		n := view(x.name(int(e)))
		switch {
		case n < name:
			return -1
		case n > name:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return int(x.sorted[i])
}
