// Package dir is the "dir" registry store: the registry's objects and modules in a local
// directory. Importing it registers it (plugins.RegisterRegistryStore) with one config key,
// dir, the directory.
package dir

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/registry"
)

func init() {
	plugins.RegisterRegistryStore("dir", func(_ context.Context, cfg plugins.Config) (registry.Store, error) {
		if err := cfg.Check("dir"); err != nil {
			return nil, err
		}
		return New(cfg.String("dir", ""))
	})
}

// Store is a registry.Store in a local directory:
//
//	<dir>/objects/Feature/<fqn>.yaml      one manifest per object
//	<dir>/objects/DataSource/<fqn>.yaml
//	<dir>/objects/Plugin/<fqn>.yaml
//	<dir>/modules/sha256/<hex>.wasm       module bytes by digest, shared between objects
//
// An object file is a manifest whose leading comment lists the modules it needs
// ("# module: sha256:<hex>"); it can be applied as it is to a server that has them. Every
// file is written to a temporary file, synced and renamed into place; modules are written
// before the object naming them, and a module no object names is removed after each Save
// and Delete. Module bytes are checked against their digest when saved and when loaded.
//
// A DirStore is safe for concurrent use by one process; two processes must not share a
// directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// New returns a Store in dir, creating the directory if needed.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("registry store: empty directory name")
	}
	subs := []string{filepath.Join(dir, "modules", "sha256")}
	for _, kind := range registry.Kinds() {
		subs = append(subs, filepath.Join(dir, "objects", kind))
	}
	for _, sub := range subs {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, fmt.Errorf("registry store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

const storeModuleLine = "# module: "

var _ registry.Store = (*Store)(nil)

func checkObject(kind, fqn string) error {
	if !slices.Contains(registry.Kinds(), kind) {
		return fmt.Errorf("registry store: kind %q (want %s)", kind, strings.Join(registry.Kinds(), ", "))
	}
	if got, err := engine.ParseFQN(fqn, ""); err != nil || got != fqn {
		return fmt.Errorf("registry store: %q is not a lower-case namespace.name", fqn)
	}
	return nil
}

func (d *Store) objectPath(kind, fqn string) string {
	return filepath.Join(d.dir, "objects", kind, fqn+".yaml")
}

func (d *Store) modulePath(hexDigest string) string {
	return filepath.Join(d.dir, "modules", "sha256", hexDigest+".wasm")
}

// Save implements registry.Store.
func (d *Store) Save(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte) error {
	if err := checkObject(kind, fqn); err != nil {
		return err
	}
	refs := slices.Sorted(maps.Keys(modules))
	for _, ref := range refs {
		if _, err := moduleref.Hex(ref); err != nil {
			return fmt.Errorf("registry store: save %s %s: %w", kind, fqn, err)
		}
		if got := moduleref.Of(modules[ref]); got != ref {
			return fmt.Errorf("registry store: save %s %s: module %s: the bytes have digest %s", kind, fqn, ref, got)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ref := range refs {
		h, _ := moduleref.Hex(ref)
		path := d.modulePath(h)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if err := writeFileAtomic(path, modules[ref]); err != nil {
			return fmt.Errorf("registry store: save %s %s: module %s: %w", kind, fqn, ref, err)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# osprey registry object: %s %s\n", kind, fqn)
	for _, ref := range refs {
		b.WriteString(storeModuleLine + ref + "\n")
	}
	b.Write(manifest)
	if err := writeFileAtomic(d.objectPath(kind, fqn), b.Bytes()); err != nil {
		return fmt.Errorf("registry store: save %s %s: %w", kind, fqn, err)
	}
	return d.collectGarbage()
}

// Delete implements registry.Store.
func (d *Store) Delete(ctx context.Context, kind, fqn string) error {
	if err := checkObject(kind, fqn); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	path := d.objectPath(kind, fqn)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("registry store: delete %s %s: %w", kind, fqn, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("registry store: delete %s %s: %w", kind, fqn, err)
	}
	return d.collectGarbage()
}

// Load implements registry.Store.
func (d *Store) Load(ctx context.Context) ([]registry.StoredObject, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []registry.StoredObject
	for _, kind := range registry.Kinds() {
		names, err := d.objectNames(kind)
		if err != nil {
			return nil, err
		}
		for _, fqn := range names {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			out = append(out, d.loadObject(kind, fqn))
		}
	}
	return out, nil
}

// loadObject reads one stored object; what cannot be read is reported in its Err. Callers
// hold d.mu.
func (d *Store) loadObject(kind, fqn string) registry.StoredObject {
	obj := registry.StoredObject{Kind: kind, FQN: fqn, Modules: map[string][]byte{}}
	path := d.objectPath(kind, fqn)
	data, err := os.ReadFile(path)
	if err != nil {
		obj.Err = fmt.Errorf("registry store: load %s %s: %w", kind, fqn, err)
		return obj
	}
	obj.Manifest = data
	for _, ref := range moduleRefs(data) {
		h, err := moduleref.Hex(ref)
		if err != nil {
			obj.Err = fmt.Errorf("registry store: load %s: %w", path, err)
			return obj
		}
		b, err := os.ReadFile(d.modulePath(h))
		if err != nil {
			obj.Err = fmt.Errorf("registry store: load %s: module %s: %w", path, ref, err)
			return obj
		}
		if got := moduleref.Of(b); got != ref {
			obj.Err = fmt.Errorf("registry store: load %s: module %s is corrupt (its bytes have digest %s)", path, ref, got)
			return obj
		}
		obj.Modules[ref] = b
	}
	return obj
}

// objectNames returns the FQNs of the stored objects of a kind, sorted.
func (d *Store) objectNames(kind string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.dir, "objects", kind))
	if err != nil {
		return nil, fmt.Errorf("registry store: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		fqn, ok := strings.CutSuffix(name, ".yaml")
		if !ok || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		names = append(names, fqn)
	}
	return names, nil
}

// moduleRefs reads the module references from an object file's leading comment.
func moduleRefs(data []byte) []string {
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if ref, ok := strings.CutPrefix(line, storeModuleLine); ok {
			refs = append(refs, strings.TrimSpace(ref))
		}
	}
	return refs
}

// collectGarbage removes module files no object names. Callers hold d.mu.
func (d *Store) collectGarbage() error {
	used := map[string]bool{}
	for _, kind := range registry.Kinds() {
		names, err := d.objectNames(kind)
		if err != nil {
			return err
		}
		for _, fqn := range names {
			data, err := os.ReadFile(d.objectPath(kind, fqn))
			if err != nil {
				return fmt.Errorf("registry store: %w", err)
			}
			for _, ref := range moduleRefs(data) {
				if h, err := moduleref.Hex(ref); err == nil {
					used[h] = true
				}
			}
		}
	}
	dir := filepath.Join(d.dir, "modules", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("registry store: %w", err)
	}
	for _, e := range entries {
		h, ok := strings.CutSuffix(e.Name(), ".wasm")
		if !ok || used[h] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("registry store: remove unused module: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and renames it to
// path, then syncs the directory: a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
