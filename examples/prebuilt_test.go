package examples_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/examples"
	"github.com/osprey-ml/osprey/examples/internal/wasmsum"
	"github.com/osprey-ml/osprey/manifest"
)

const rebuild = "run go tool task examples and commit examples/prebuilt"

// TestPrebuiltFresh fails when examples/prebuilt was not rebuilt after a change to what
// its modules are built from: a guest's source, the guest SDK or the ABI.
func TestPrebuiltFresh(t *testing.T) {
	data, err := os.ReadFile("prebuilt/SOURCES")
	if err != nil {
		t.Fatalf("%v (%s)", err, rebuild)
	}
	recorded := map[string]string{} // file (or "sources") → sha256
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "go ") {
			continue
		}
		if k, v, ok := strings.Cut(line, " "); ok && k == "sources" {
			recorded["sources"] = v
		} else if ok {
			recorded[v] = k
		}
	}
	digest, err := wasmsum.Digest("..")
	if err != nil {
		t.Fatal(err)
	}
	if recorded["sources"] != digest {
		t.Errorf("examples/prebuilt is stale: its sources changed (%s)", rebuild)
	}
	guests, err := wasmsum.Guests("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range guests {
		name := g + ".wasm.gz"
		gz, err := os.ReadFile(path.Join("prebuilt", name))
		if err != nil {
			t.Errorf("%v (%s)", err, rebuild)
			continue
		}
		sum := sha256.Sum256(gz)
		if recorded[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("prebuilt/%s is not the one SOURCES records (%s)", name, rebuild)
		}
	}
}

// TestModules checks that every module an embedded manifest names is embedded, and is Wasm.
func TestModules(t *testing.T) {
	n := 0
	err := fs.WalkDir(examples.Manifests, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := examples.Manifests.ReadFile(p)
		if err != nil {
			return err
		}
		ms, err := manifest.Parse(data, p)
		if err != nil {
			return err
		}
		for _, m := range ms {
			var refs []string
			switch {
			case m.Plugin != nil:
				refs = []string{m.Plugin.Module}
			case m.Feature != nil:
				refs = []string{m.Feature.Builder.Module}
				for _, mw := range m.Feature.Middlewares {
					refs = append(refs, mw.Module)
				}
			}
			for _, ref := range refs {
				if ref == "" {
					continue
				}
				b, err := examples.Module(p, ref)
				if err != nil {
					t.Error(err)
					continue
				}
				if !bytes.HasPrefix(b, []byte("\x00asm")) {
					t.Errorf("%s: %s is not Wasm", p, ref)
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no embedded manifest names a module")
	}
}
