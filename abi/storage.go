package abi

// Storage (ABI 1.2, ABI.md §4.5). storage_set takes an encoded Value and storage_get
// returns one; both use the Value encoding (§5.2) restricted to the kinds a program's
// storage can hold: Null (not set, or clear) and the ten primitive kinds. A window is a
// read's aggregate, never a stored value.

// Storable reports whether a program's storage can hold a Value of tag t: Null and the
// primitive kinds (int … []timestamp), not a window.
func (t Tag) Storable() bool { return t <= TagTimestampList }

// StorageValue decodes a storage value: a Value of a storable kind. A window, or anything
// Value rejects (an unknown tag among them), is an error.
func (d *Decoder) StorageValue() Value {
	return d.primitive("cannot be stored (storage holds null or a primitive kind)")
}

// primitive decodes a Value of a storable kind; a window is an error whose message ends with
// why (after "a window value at byte n").
func (d *Decoder) primitive(why string) Value {
	at := d.off
	if d.err == nil && d.off < len(d.buf) && Tag(d.buf[d.off]) == TagWindow {
		d.fail(errorf("a window value at byte %d %s", at, why))
		return Value{}
	}
	return d.Value()
}

// DecodeStorageValue decodes a whole storage value (storage_set's val, storage_get's
// result).
func DecodeStorageValue(b []byte) (Value, error) {
	d := NewDecoder(b)
	v := d.StorageValue()
	return v, d.Done()
}
