package wasmbin

import "testing"

func TestSectionRank(t *testing.T) {
	// The order of the spec's module grammar, with the tag section where the
	// exception-handling proposal puts it.
	order := []byte{SecType, SecImport, SecFunction, SecTable, SecMemory, SecTag, SecGlobal, SecExport,
		SecStart, SecElement, SecDataCount, SecCode, SecData}
	for i, id := range order {
		if got := SectionRank(id); got != i+1 {
			t.Errorf("SectionRank(%d) = %d, want %d", id, got, i+1)
		}
	}
	for _, id := range []byte{SecCustom, 14, 255} {
		if got := SectionRank(id); got != 0 {
			t.Errorf("SectionRank(%d) = %d, want 0", id, got)
		}
	}
}
