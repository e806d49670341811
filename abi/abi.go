// Package abi is the Osprey host↔guest contract in Go: the version, the names of exports and
// imports, and the binary codec of ABI.md. It has no dependencies and builds for every
// GOOS/GOARCH, including wasip1/wasm, so that guests and the host share one implementation.
//
// Encoding appends to a caller-owned []byte; decoding reads from a caller-owned []byte with a
// sticky error (check Decoder.Err once at the end) and allocates only for strings and lists.
package abi

// The ABI version this package implements (ABI.md §1).
const (
	Major = 1
	Minor = 2
	// Version is what a guest's osprey_abi_version returns: Major<<16 | Minor.
	Version = Major<<16 | Minor
	// Version10 is ABI 1.0, the first version: no configuration (no osprey_configure).
	Version10 = Major << 16
	// Version11 is ABI 1.1: configuration (osprey_configure), no storage.
	Version11 = Major<<16 | 1
	// Version12 is ABI 1.2: a program's address-scoped storage (storage_get, storage_set,
	// storage_clear) and messages (send, send_after, cancel, egress, and the message call).
	Version12 = Major<<16 | 2
)

// IsStorageImport reports whether name is one of the storage imports ABI 1.2 adds
// (storage_get, storage_set, storage_clear): a module that imports any of them must report
// 1.2 or later from osprey_abi_version, and may be used only as a program (ABI.md §4.5).
func IsStorageImport(name string) bool {
	return name == ImportStorageGet || name == ImportStorageSet || name == ImportStorageClear
}

// IsMessageImport reports whether name is one of the message imports ABI 1.2 adds (send,
// send_after, cancel, egress): a module that imports any of them must report 1.2 or later
// from osprey_abi_version, and may be used only as a program (ABI.md §4.6).
func IsMessageImport(name string) bool {
	return name == ImportSend || name == ImportSendAfter || name == ImportCancel || name == ImportEgress
}

// VersionMajor and VersionMinor split a value returned by osprey_abi_version.
func VersionMajor(v uint32) uint16 { return uint16(v >> 16) }

// VersionMinor returns the minor part of a version.
func VersionMinor(v uint32) uint16 { return uint16(v) }

// Export and import names (ABI.md §2, §3).
const (
	ExportMemory     = "memory"
	ExportVersion    = "osprey_abi_version"
	ExportAlloc      = "osprey_alloc"
	ExportProgram    = "osprey_program"
	ExportMiddleware = "osprey_middleware"
	ExportInitialize = "_initialize"
	ExportConfigure  = "osprey_configure" // ABI 1.1 (ABI.md §4.4)
	HostModule       = "osprey"
	ImportGetFeature = "get_feature"
	ImportResult     = "result"
	ImportLog        = "log"
	ImportNow        = "now"
	// ABI 1.2: a program's address-scoped storage (ABI.md §4.5).
	ImportStorageGet   = "storage_get"
	ImportStorageSet   = "storage_set"
	ImportStorageClear = "storage_clear"
	// ABI 1.2: messages between programs, and to egresses (ABI.md §4.6).
	ImportSend        = "send"
	ImportSendAfter   = "send_after"
	ImportCancel      = "cancel"
	ImportEgress      = "egress"
	WASIModule        = "wasi_snapshot_preview1"
	MaxMessageSize    = 16 << 20
	maxUvarint32Bytes = 5
)

// Call kinds (first byte of an input message).
const (
	CallProgram    uint8 = 1
	CallMiddleware uint8 = 2
	CallConfigure  uint8 = 3 // ABI 1.1: the input of osprey_configure
	CallMessage    uint8 = 4 // ABI 1.2: a message to a program, at osprey_program (ABI.md §4.6)
)

// Response statuses (first byte of a response).
const (
	StatusOK       uint8 = 0
	StatusError    uint8 = 1
	StatusRejected uint8 = 2
)

// Middleware stages and operations (ABI.md §4.2); the numbering matches the engine's.
const (
	StagePreGet  uint8 = 1
	StagePostGet uint8 = 2
	StagePreSet  uint8 = 3
	StagePostSet uint8 = 4

	OpGet    uint8 = 1
	OpSet    uint8 = 2
	OpAppend uint8 = 3
	OpIncr   uint8 = 4
	OpUpdate uint8 = 5
)

// Program result flags (ABI.md §4.1).
const (
	FlagKeys      uint8 = 1 << 0
	FlagTimestamp uint8 = 1 << 1
)

// Log levels, as log/slog's.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)
