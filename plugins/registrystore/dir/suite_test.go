package dir_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dirstore "github.com/osprey-ml/osprey/plugins/registrystore/dir"
	"github.com/osprey-ml/osprey/registry"
	"github.com/osprey-ml/osprey/registry/storetest"
)

// TestConformance runs the registry stores' shared suite (registry/storetest), which the
// redis store passes too.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	dirs := map[registry.Store]string{}
	dirOf := func(s registry.Store) string {
		mu.Lock()
		defer mu.Unlock()
		return dirs[s]
	}
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) registry.Store {
			dir := t.TempDir()
			s, err := dirstore.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			dirs[s] = dir
			mu.Unlock()
			return s
		},
		Modules: func(t *testing.T, s registry.Store) int {
			return countFiles(t, filepath.Join(dirOf(s), "modules", "sha256"))
		},
		Corrupt: func(t *testing.T, s registry.Store, ref string) {
			h := strings.TrimPrefix(ref, "sha256:")
			if err := os.WriteFile(filepath.Join(dirOf(s), "modules", "sha256", h+".wasm"), []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}
