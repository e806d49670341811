// Package wasmsum computes the digest of what the prebuilt example Wasm modules are built
// from, so that a test can tell when examples/prebuilt is stale without rebuilding it (Go
// builds are reproducible only with the same toolchain, so comparing the bytes of a rebuild
// would fail on every other Go release).
package wasmsum

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Guests returns the example guests under root (the repository root): the directories
// examples/<name>/<dir> holding a main.go, as slash paths relative to examples/
// ("fraud/amount"), sorted. examples/internal (this tooling) holds none.
func Guests(root string) ([]string, error) {
	mains, err := filepath.Glob(filepath.Join(root, "examples", "*", "*", "main.go"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mains {
		rel, err := filepath.Rel(filepath.Join(root, "examples"), filepath.Dir(m))
		if err != nil {
			return nil, err
		}
		if rel = filepath.ToSlash(rel); !strings.HasPrefix(rel, "internal/") {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Digest returns the SHA-256, in hex, of every input of the example guests under root: the
// files of each guest directory, and the non-test Go files, go.mod and go.sum of the guest
// SDK (guest-sdk/go) and the ABI (abi) modules they depend on.
func Digest(root string) (string, error) {
	guests, err := Guests(root)
	if err != nil {
		return "", err
	}
	var files []string
	for _, g := range guests {
		entries, err := os.ReadDir(filepath.Join(root, "examples", filepath.FromSlash(g)))
		if err != nil {
			return "", fmt.Errorf("wasmsum: %w", err)
		}
		for _, de := range entries {
			if !de.IsDir() {
				files = append(files, "examples/"+g+"/"+de.Name())
			}
		}
	}
	for _, mod := range []string{"guest-sdk/go", "abi"} {
		err := filepath.WalkDir(filepath.Join(root, filepath.FromSlash(mod)), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if name == "testdata" || strings.HasPrefix(name, ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) || name == "go.mod" || name == "go.sum" {
				rel, err := filepath.Rel(root, path)
				if err != nil {
					return err
				}
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("wasmsum: %w", err)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return "", fmt.Errorf("wasmsum: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
