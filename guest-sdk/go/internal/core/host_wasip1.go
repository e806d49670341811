//go:build wasip1

package core

import "unsafe"

//go:wasmimport osprey get_feature
func getFeature(sel unsafe.Pointer, selLen uint32, keys unsafe.Pointer, keysLen uint32, out unsafe.Pointer, outCap uint32) int32

//go:wasmimport osprey result
func result(out unsafe.Pointer, outCap uint32) int32

//go:wasmimport osprey log
func hostLog(level int32, msg unsafe.Pointer, msgLen uint32, attrs unsafe.Pointer, attrsLen uint32)

//go:wasmimport osprey now
func now() int64

// The storage imports (ABI 1.2). A module imports them only when the guest calls them
// (the linker drops unreachable imports), so a guest that uses no storage stays a module
// any 1.x host runs, and a middleware one the host accepts.

//go:wasmimport osprey storage_get
func storageGet(name unsafe.Pointer, nameLen uint32, out unsafe.Pointer, outCap uint32) int32

//go:wasmimport osprey storage_set
func storageSet(name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32) int32

//go:wasmimport osprey storage_clear
func storageClear(name unsafe.Pointer, nameLen uint32) int32

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// GetFeature calls the host's get_feature (ABI §3) with out as the result slot (its length
// is the capacity offered).
func GetFeature(sel string, keys, out []byte) int32 {
	return getFeature(unsafe.Pointer(unsafe.StringData(sel)), uint32(len(sel)), ptr(keys), uint32(len(keys)), ptr(out), uint32(len(out)))
}

// Result calls the host's result: it copies the held result into out.
func Result(out []byte) int32 { return result(ptr(out), uint32(len(out))) }

// Log calls the host's log.
func Log(level int32, msg string, attrs []byte) {
	hostLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)), ptr(attrs), uint32(len(attrs)))
}

// Now calls the host's now: Unix nanoseconds.
func Now() int64 { return now() }

// StorageGet calls the host's storage_get (ABI 1.2) with out as the result slot.
func StorageGet(name string, out []byte) int32 {
	return storageGet(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), ptr(out), uint32(len(out)))
}

// StorageSet calls the host's storage_set (ABI 1.2) with val, an encoded Value.
func StorageSet(name string, val []byte) int32 {
	return storageSet(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), ptr(val), uint32(len(val)))
}

// StorageClear calls the host's storage_clear (ABI 1.2).
func StorageClear(name string) int32 {
	return storageClear(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)))
}
