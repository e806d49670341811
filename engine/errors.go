package engine

import (
	"errors"
	"fmt"
)

// Sentinel errors. Engine errors wrap one of these (test with errors.Is) together with a
// message naming the feature, field or value at fault.
var (
	// ErrFeatureNotFound: no feature with that FQN is applied.
	ErrFeatureNotFound = errors.New("feature not found")
	// ErrInvalidSelector: a selector or FQN is malformed; the message names the part.
	ErrInvalidSelector = errors.New("invalid selector")
	// ErrInvalidKeys: an entity key is missing, unknown or not valid UTF-8.
	ErrInvalidKeys = errors.New("invalid keys")
	// ErrTypeMismatch: a value does not have, or cannot be converted to, the feature's type.
	ErrTypeMismatch = errors.New("type mismatch")
	// ErrUnsupported: the operation does not apply to the feature (Append to a scalar,
	// Incr of a string, +aggr on an unwindowed feature, …).
	ErrUnsupported = errors.New("unsupported operation")
	// ErrVersionOutOfRange: a selector asks for a previous version the feature does not keep.
	ErrVersionOutOfRange = errors.New("version out of range")
	// ErrInvalidFeature: a feature descriptor is inconsistent (applied without a manifest).
	ErrInvalidFeature = errors.New("invalid feature")
	// ErrOutOfWindow: a windowed write's timestamp falls in a bucket that is no longer kept.
	ErrOutOfWindow = errors.New("timestamp outside the kept window")
	// ErrRejected: a middleware stopped the operation.
	ErrRejected = errors.New("rejected by middleware")
	// ErrOverflow: the result of arithmetic on a stored value does not fit the feature's
	// type — an int Incr past the int64 range (it never wraps), a float Incr or a window
	// bucket's running sum reaching ±Inf, or a window's sum over its buckets doing so on a
	// read. A write that overflows writes nothing. It wraps ErrTypeMismatch, as a Set of
	// ±Inf is one, so a caller branching on that sees it too (the server answers
	// FailedPrecondition: the request is well formed, the stored value refuses it).
	ErrOverflow = fmt.Errorf("%w: overflow", ErrTypeMismatch)
)
