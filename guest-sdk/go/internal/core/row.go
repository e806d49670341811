package core

import "errors"

// ErrStale is returned by a RowView whose call has returned.
var ErrStale = errors.New("row used after its call returned")

// RowView is a view of a call's row. The zero RowView is an empty row.
type RowView struct {
	idx *Index
	gen uint32
}

// Index returns the view's index, or nil and ErrStale when the call it belongs to has
// returned; the zero view returns nil and no error.
func (r RowView) Index() (*Index, error) {
	if r.idx == nil {
		return nil, nil
	}
	if r.idx.gen != r.gen {
		return nil, ErrStale
	}
	return r.idx, nil
}

// Find returns the encoding of the named field's Value (tag first), or false.
func (r RowView) Find(name string) ([]byte, bool, error) {
	_, i, err := r.FindIndex(name)
	if i < 0 {
		return nil, false, err
	}
	return r.idx.Val(i), true, nil
}

// FindIndex returns the index and the entry number of the named field, or -1.
func (r RowView) FindIndex(name string) (*Index, int, error) {
	x, err := r.Index()
	if x == nil {
		return nil, -1, err
	}
	return x, x.Find(name), nil
}
