package dir_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/plugins"
	dirstore "github.com/osprey-ml/osprey/plugins/registrystore/dir"
)

func ref(b []byte) string { return moduleref.Of(b) }

func TestStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	modA, modB := []byte("\x00asm module a"), []byte("\x00asm module b")
	docF := []byte("apiVersion: osprey.dev/v1alpha1\nkind: Feature\n")
	docDS := []byte("apiVersion: osprey.dev/v1alpha1\nkind: DataSource\n")
	if err := s.Save(ctx, "Feature", "ns.f", docF, map[string][]byte{ref(modA): modA, ref(modB): modB}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "DataSource", "ns.src", docDS, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "Feature", "ns.g", docF, map[string][]byte{ref(modA): modA}); err != nil {
		t.Fatal(err)
	}
	objs, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, o := range objs {
		order = append(order, o.Kind+" "+o.FQN)
	}
	if !reflect.DeepEqual(order, []string{"DataSource ns.src", "Feature ns.f", "Feature ns.g"}) {
		t.Fatalf("Load order = %v", order)
	}
	f := objs[1]
	if !strings.HasSuffix(string(f.Manifest), string(docF)) || len(f.Modules) != 2 || string(f.Modules[ref(modB)]) != string(modB) {
		t.Fatalf("Load = %+v", f)
	}
	// The object file names its modules in a leading YAML comment.
	if !strings.HasPrefix(string(f.Manifest), "# osprey registry object: Feature ns.f\n# module: sha256:") {
		t.Fatalf("header: %q", f.Manifest)
	}

	// Replacing f drops module b, which no object names any more.
	if err := s.Save(ctx, "Feature", "ns.f", docF, map[string][]byte{ref(modA): modA}); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, filepath.Join(dir, "modules", "sha256")); n != 1 {
		t.Fatalf("%d module files, want 1", n)
	}
	// Deleting both users drops module a; deleting twice is fine.
	for _, fqn := range []string{"ns.f", "ns.g", "ns.g"} {
		if err := s.Delete(ctx, "Feature", fqn); err != nil {
			t.Fatal(err)
		}
	}
	if n := countFiles(t, filepath.Join(dir, "modules", "sha256")); n != 0 {
		t.Fatalf("%d module files, want 0", n)
	}
	if objs, _ := s.Load(ctx); len(objs) != 1 {
		t.Fatalf("Load after deletes = %d objects", len(objs))
	}
	// No temporary files are left behind.
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if strings.HasPrefix(d.Name(), ".tmp") {
			t.Errorf("left behind: %s", path)
		}
		return nil
	})
}

func TestStoreRejects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	mod := []byte("module")
	for name, save := range map[string]func() error{
		"bad kind":        func() error { return s.Save(ctx, "Model", "ns.f", nil, nil) },
		"path traversal":  func() error { return s.Save(ctx, "Feature", "../../etc", nil, nil) },
		"upper case":      func() error { return s.Save(ctx, "Feature", "NS.f", nil, nil) },
		"bad reference":   func() error { return s.Save(ctx, "Feature", "ns.f", nil, map[string][]byte{"mod.wasm": mod}) },
		"digest mismatch": func() error { return s.Save(ctx, "Feature", "ns.f", nil, map[string][]byte{ref([]byte("other")): mod}) },
		"delete bad kind": func() error { return s.Delete(ctx, "Model", "ns.f") },
	} {
		if err := save(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A corrupt module is reported in its object's Err, naming it; Load itself succeeds.
	if err := s.Save(ctx, "Feature", "ns.f", []byte("x: 1\n"), map[string][]byte{ref(mod): mod}); err != nil {
		t.Fatal(err)
	}
	h := strings.TrimPrefix(ref(mod), "sha256:")
	if err := os.WriteFile(filepath.Join(dir, "modules", "sha256", h+".wasm"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := s.Load(ctx)
	if err != nil || len(objs) != 1 || objs[0].Err == nil || !strings.Contains(objs[0].Err.Error(), "corrupt") {
		t.Fatalf("Load of a corrupt module: %v, %+v", err, objs)
	}
	if _, err := dirstore.New(""); err == nil {
		t.Error("New(\"\") succeeded")
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestRegistered: the store registers as "dir" and takes the directory as its one key.
func TestRegistered(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := plugins.NewRegistryStore(ctx, "dir", plugins.Config{"dir": dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "Feature", "ns.f", []byte("kind: Feature\n"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "Feature", "ns.f.yaml")); err != nil {
		t.Error(err)
	}
	if _, err := plugins.NewRegistryStore(ctx, "dir", plugins.Config{"dir": dir, "bogus": "1"}); err == nil {
		t.Error("an unknown key was accepted")
	}
	if _, err := plugins.NewRegistryStore(ctx, "dir", nil); err == nil {
		t.Error("no directory was accepted")
	}
	if _, err := plugins.NewRegistryStore(ctx, "nope", nil); !errors.Is(err, plugins.ErrNotRegistered) {
		t.Errorf("unknown store: %v", err)
	}
	if !slices.Contains(plugins.RegistryStoreNames(), "dir") {
		t.Errorf("names %v", plugins.RegistryStoreNames())
	}
}
