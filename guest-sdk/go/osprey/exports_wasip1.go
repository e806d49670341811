//go:build wasip1

package osprey

import (
	"unsafe"

	"github.com/osprey-ml/osprey/abi"
)

// ospreyABIVersion is the osprey_abi_version export (ABI §1).
//
//go:wasmexport osprey_abi_version
//lint:ignore U1000 exported to the host by go:wasmexport, which staticcheck does not see
func ospreyABIVersion() int32 { return abi.Version }

// input is the region osprey_alloc hands to the host. It only grows, and the package-level
// variable keeps it alive: the host may write into the last region it was given without
// asking again (ABI §2, memory ownership).
var input []byte

// minInput is the smallest region osprey_alloc allocates.
const minInput = 4 << 10

// ospreyAlloc is the osprey_alloc export: a pointer to at least size writable bytes.
//
//go:wasmexport osprey_alloc
//lint:ignore U1000 exported to the host by go:wasmexport, which staticcheck does not see
func ospreyAlloc(size int32) int32 {
	if size < 0 || size > abi.MaxMessageSize {
		return 0
	}
	if n := int(size); n > cap(input) {
		input = make([]byte, max(n, 2*cap(input), minInput))
	}
	input = input[:cap(input)]
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(input))))
}

// ospreyConfigure is the osprey_configure export (ABI §4.4, ABI 1.1): it takes the
// configuration at ptr..ptr+n and returns its response's location as ptr<<32 | len.
//
//go:wasmexport osprey_configure
//lint:ignore U1000 exported to the host by go:wasmexport, which staticcheck does not see
func ospreyConfigure(ptr unsafe.Pointer, n int32) int64 {
	resp := Configure(unsafe.Slice((*byte)(ptr), int(uint32(n))))
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(resp))))<<32 | int64(len(resp))
}
