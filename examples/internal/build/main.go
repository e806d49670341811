// Command build builds the example guests, examples/<name>/<dir>/main.go, into Wasm with the
// standard Go toolchain: examples/<name>/<dir>.wasm next to the manifests that name them,
// and the compressed copies osprey embeds, examples/prebuilt/<name>/<dir>.wasm.gz, with
// examples/prebuilt/SOURCES (the digest of their inputs, for the freshness test). Run it
// from the repository root: go tool task examples.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/osprey-ml/osprey/examples/internal/wasmsum"
)

func main() {
	if err := run("."); err != nil {
		fmt.Fprintln(os.Stderr, "examples/internal/build:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	guests, err := wasmsum.Guests(root)
	if err != nil {
		return err
	}
	if len(guests) == 0 {
		return fmt.Errorf("no examples/*/*/main.go under %s (run from the repository root)", root)
	}
	digest, err := wasmsum.Digest(root)
	if err != nil {
		return err
	}
	prebuilt := filepath.Join(root, "examples", "prebuilt")
	if err := os.RemoveAll(prebuilt); err != nil {
		return err
	}
	var sums strings.Builder
	fmt.Fprintf(&sums, "# Written by go tool task examples (examples/internal/build); do not edit.\n")
	fmt.Fprintf(&sums, "sources %s\n", digest)
	fmt.Fprintf(&sums, "go %s\n", runtime.Version())
	for _, g := range guests {
		out := filepath.Join(root, "examples", filepath.FromSlash(g)+".wasm")
		cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", out, "./examples/"+g)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./examples/%s: %v\n%s", g, err, msg)
		}
		wasm, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		var gz bytes.Buffer
		zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(wasm); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		dst := filepath.Join(prebuilt, filepath.FromSlash(g)+".wasm.gz")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, gz.Bytes(), 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(gz.Bytes())
		fmt.Fprintf(&sums, "%s %s.wasm.gz\n", hex.EncodeToString(sum[:]), g)
		fmt.Printf("%s (%d bytes), %s (%d bytes)\n", out, len(wasm), dst, gz.Len())
	}
	return os.WriteFile(filepath.Join(prebuilt, "SOURCES"), []byte(sums.String()), 0o644)
}
