//go:build wasip1

package middleware

import "unsafe"

// ospreyMiddleware is the osprey_middleware export (ABI §4.2): it serves the call at
// ptr..ptr+n and returns the response's location as ptr<<32 | len.
//
//go:wasmexport osprey_middleware
//lint:ignore U1000 exported to the host by go:wasmexport, which staticcheck does not see
func ospreyMiddleware(ptr unsafe.Pointer, n int32) int64 {
	resp := Run(unsafe.Slice((*byte)(ptr), int(uint32(n))))
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(resp))))<<32 | int64(len(resp))
}
