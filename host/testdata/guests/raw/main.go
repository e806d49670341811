//go:build wasip1

// Command raw is a Go guest written against the ABI directly, without the guest SDK: its
// program ignores the call and returns a constant response (int 1). The host's benchmarks
// use it to split a Go guest's per-call cost between the boundary (host + Go's export path)
// and the SDK's own work.
package main

import "unsafe"

var (
	input    = make([]byte, 64<<10)
	response = []byte{0x00, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x00} // OK, int 1, no flags
)

//go:wasmexport osprey_abi_version
func abiVersion() int32 { return 0x00010000 }

//go:wasmexport osprey_alloc
func alloc(n int32) unsafe.Pointer {
	if int(n) > len(input) {
		input = make([]byte, n)
	}
	return unsafe.Pointer(&input[0])
}

//go:wasmexport osprey_program
func program(unsafe.Pointer, int32) int64 {
	return int64(uintptr(unsafe.Pointer(&response[0])))<<32 | int64(len(response))
}

func main() {}
