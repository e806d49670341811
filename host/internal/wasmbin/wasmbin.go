// Package wasmbin names the parts of the WebAssembly binary format
// (https://webassembly.github.io/spec/core/binary/) that the host's module readers and
// writers share: section ids, the order sections must come in, and the external kinds of
// imports and exports. It holds constants and pure functions only.
package wasmbin

// Section ids.
const (
	SecCustom    = 0
	SecType      = 1
	SecImport    = 2
	SecFunction  = 3
	SecTable     = 4
	SecMemory    = 5
	SecGlobal    = 6
	SecExport    = 7
	SecStart     = 8
	SecElement   = 9
	SecCode      = 10
	SecData      = 11
	SecDataCount = 12
	SecTag       = 13 // the exception-handling proposal's
)

// External kinds of imports and exports.
const (
	KindFunc   = 0x00
	KindTable  = 0x01
	KindMemory = 0x02
	KindGlobal = 0x03
)

// SectionRank is the position a non-custom section takes in a module — sections appear at
// most once, in increasing rank, and the tag section of the exception-handling proposal
// comes between memory and global — or 0 for a custom section or an unknown id.
func SectionRank(id byte) int {
	switch id {
	case SecType, SecImport, SecFunction, SecTable, SecMemory:
		return int(id)
	case SecTag:
		return 6
	case SecGlobal, SecExport, SecStart, SecElement:
		return int(id) + 1
	case SecDataCount:
		return 11
	case SecCode:
		return 12
	case SecData:
		return 13
	}
	return 0
}
