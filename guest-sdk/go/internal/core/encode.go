package core

import (
	"math"

	"github.com/osprey-ml/osprey/abi"
)

// AppendValue appends the encoding of *v to b after checking it as CheckValue does; on a
// bad value it returns b unchanged and the message. Scalars are encoded here, field by
// field: v is passed by pointer and never copied, because copying an abi.Value (some 200
// bytes) costs tens of nanoseconds in a WebAssembly guest, and this runs on every call.
func AppendValue(b []byte, v *abi.Value) ([]byte, string) {
	switch v.Tag {
	case abi.TagInt, abi.TagTimestamp:
		return abi.AppendI64(append(b, byte(v.Tag)), v.I), ""
	case abi.TagFloat:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			break
		}
		return abi.AppendF64(append(b, byte(v.Tag)), v.F), ""
	case abi.TagBool:
		if v.I != 0 {
			return append(b, byte(abi.TagBool), 1), ""
		}
		return append(b, byte(abi.TagBool), 0), ""
	case abi.TagNull:
		return append(b, byte(abi.TagNull)), ""
	}
	if msg := CheckValue(*v); msg != "" {
		return b, msg
	}
	return abi.AppendValue(b, *v), ""
}
