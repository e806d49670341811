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

// The message imports (ABI 1.2), imported only when the guest calls them, like storage's.

//go:wasmimport osprey send
func send(fqn unsafe.Pointer, fqnLen uint32, keys unsafe.Pointer, keysLen uint32, msg unsafe.Pointer, msgLen uint32) int32

//go:wasmimport osprey send_after
func sendAfter(delay int64, token unsafe.Pointer, tokenLen uint32, fqn unsafe.Pointer, fqnLen uint32, keys unsafe.Pointer, keysLen uint32, msg unsafe.Pointer, msgLen uint32) int32

//go:wasmimport osprey cancel
func cancel(token unsafe.Pointer, tokenLen uint32) int32

//go:wasmimport osprey egress
func egress(name unsafe.Pointer, nameLen uint32, row unsafe.Pointer, rowLen uint32) int32

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

func sptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// Send calls the host's send (ABI 1.2): msg, an encoded Value, to (fqn, keys).
func Send(fqn string, keys, msg []byte) int32 {
	return send(sptr(fqn), uint32(len(fqn)), ptr(keys), uint32(len(keys)), ptr(msg), uint32(len(msg)))
}

// SendAfter calls the host's send_after (ABI 1.2).
func SendAfter(delay int64, token, fqn string, keys, msg []byte) int32 {
	return sendAfter(delay, sptr(token), uint32(len(token)), sptr(fqn), uint32(len(fqn)), ptr(keys), uint32(len(keys)), ptr(msg), uint32(len(msg)))
}

// Cancel calls the host's cancel (ABI 1.2).
func Cancel(token string) int32 { return cancel(sptr(token), uint32(len(token))) }

// Egress calls the host's egress (ABI 1.2): row, an encoded Row, to the egress name.
func Egress(name string, row []byte) int32 {
	return egress(sptr(name), uint32(len(name)), ptr(row), uint32(len(row)))
}
