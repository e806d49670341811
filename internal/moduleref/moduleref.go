// Package moduleref owns the format of a Wasm module reference, "sha256:<hex>": the
// lower-case hex SHA-256 of the module's bytes behind the prefix "sha256:". The host hands
// references out (host.Host.AddModule), manifests name modules by them, and registry
// stores file modules under them; all of them use this package, so that the format is
// spelled in one place.
package moduleref

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Prefix starts every module reference.
const Prefix = "sha256:"

// Of returns the reference of a module's bytes.
func Of(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return Prefix + hex.EncodeToString(sum[:])
}

// FromHex returns the reference of a hex SHA-256 digest (as Hex returns it).
func FromHex(digest string) string { return Prefix + digest }

// Is reports whether s is written as a reference (starts with Prefix), as opposed to a
// path or name standing for module bytes sent alongside. It does not check the digest:
// Hex does.
func Is(s string) bool { return strings.HasPrefix(s, Prefix) }

// Hex returns the hex digest of a reference, checking that it is Prefix followed by 64
// lower-case hex digits.
func Hex(ref string) (string, error) {
	h, ok := strings.CutPrefix(ref, Prefix)
	if !ok || len(h) != 2*sha256.Size {
		return "", fmt.Errorf("module reference %q: want %s<64 hex digits>", ref, Prefix)
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", fmt.Errorf("module reference %q: want %s<64 lower-case hex digits>", ref, Prefix)
	}
	return h, nil
}

// Digest returns what follows Prefix in s (s itself when it lacks the prefix), without
// checking it.
func Digest(s string) string { return strings.TrimPrefix(s, Prefix) }
