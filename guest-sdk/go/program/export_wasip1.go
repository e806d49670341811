//go:build wasip1

package program

import "unsafe"

// ospreyProgram is the osprey_program export (ABI §4.1): it serves the call at ptr..ptr+n
// and returns the response's location as ptr<<32 | len. The response stays valid until the
// next call.
//
//go:wasmexport osprey_program
//lint:ignore U1000 exported to the host by go:wasmexport, which staticcheck does not see
func ospreyProgram(ptr unsafe.Pointer, n int32) int64 {
	resp := Run(unsafe.Slice((*byte)(ptr), int(uint32(n))))
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(resp))))<<32 | int64(len(resp))
}
