// Package file is the "file" history store: the historian's objects as files under a local
// directory, one file per key (the key's slashes are directories). Importing it registers it
// (plugins.RegisterHistoryStore) with one config key, dir, the directory (required; created
// when missing).
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterHistoryStore("file", func(_ context.Context, cfg plugins.Config) (historian.Storage, error) {
		if err := cfg.Check("dir"); err != nil {
			return nil, err
		}
		dir := cfg.String("dir", "")
		if dir == "" {
			return nil, fmt.Errorf("%w: key %q is required", plugins.ErrInvalidConfig, "dir")
		}
		return New(dir)
	})
}

// tempPrefix starts the names of the temporary files Put writes before renaming them into
// place. List skips them and keys may not have a segment starting with it.
const tempPrefix = ".tmp-"

// Storage is a historian.Storage in a local directory. Put writes each object to a
// temporary file beside its final name, syncs it, renames it into place and syncs the
// directory (and every directory it had to create), so that a crash leaves the old object or
// the new one, never a part of one; the temporary file of a Put interrupted by a crash stays
// behind, ignored by List.
//
// Keys are relative slash-separated paths: a key that is empty or absolute, or has an empty,
// "." or ".." segment, a segment starting with ".tmp-", a backslash or a NUL is refused, and
// every access goes through an os.Root, so that not even a symbolic link inside the directory
// leads a key outside it. Since a key's segments are directories, a key cannot also be a
// prefix directory of another key ("a" and "a/b" cannot both be objects).
//
// A Storage is safe for concurrent use, also by several processes sharing the directory.
type Storage struct {
	dir  string
	root *os.Root
}

var _ historian.Storage = (*Storage)(nil)

// New returns a Storage in dir, creating the directory if needed. Close it.
func New(dir string) (*Storage, error) {
	if dir == "" {
		return nil, errors.New("history store file: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("history store file: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("history store file: %w", err)
	}
	return &Storage{dir: dir, root: root}, nil
}

// Dir returns the directory the Storage was opened in.
func (s *Storage) Dir() string { return s.dir }

// CheckKey returns an error (naming the key) unless key is a valid key of a Storage: a
// relative slash-separated path of non-empty segments other than "." and "..", none starting
// with ".tmp-", without backslashes or NULs, that stays inside the directory.
func CheckKey(key string) error {
	if reason := badKey(key); reason != "" {
		return fmt.Errorf("history store file: key %q %s", key, reason)
	}
	return nil
}

// badKey says what is wrong with key, or "": historian.KeyProblem, and the file store's own
// rules (its temporary names, the directory's bounds).
func badKey(key string) string {
	if reason := historian.KeyProblem(key); reason != "" {
		return reason
	}
	for seg := range strings.SplitSeq(key, "/") {
		if strings.HasPrefix(seg, tempPrefix) {
			return fmt.Sprintf("has a segment starting with %q (reserved for temporary files)", tempPrefix)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return "escapes the directory"
	}
	return ""
}

// Put implements historian.Storage.
func (s *Storage) Put(ctx context.Context, key string, body []byte) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := s.put(ctx, key, body); err != nil {
		return fmt.Errorf("history store file: put %q in %s: %w", key, s.dir, err)
	}
	return nil
}

func (s *Storage) put(ctx context.Context, key string, body []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := path.Dir(key)
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	f, tmp, err := s.createTemp(dir, path.Base(key))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = s.root.Remove(tmp)
		}
	}()
	if _, err = f.Write(body); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// A Put whose context ended while it wrote fails without replacing the object.
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = s.root.Rename(tmp, key); err != nil {
		return err
	}
	return s.syncDir(dir)
}

// createTemp creates a new temporary file for base in dir.
func (s *Storage) createTemp(dir, base string) (*os.File, string, error) {
	for {
		name := path.Join(dir, tempPrefix+base+"-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
}

// mkdirs creates dir and its missing parents, syncing the parent of each one it creates.
func (s *Storage) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		err := s.root.Mkdir(dir[:i], 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.syncDir(path.Dir(dir[:i])); err != nil {
			return err
		}
	}
	return nil
}

// syncDir syncs a directory, so that the entries created or renamed in it last.
func (s *Storage) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// List implements historian.Storage. It walks the directory of prefix's last complete
// segment ("fqn=fraud." walks the whole directory, "fqn=fraud.amount/date=2026-12" the one
// of fqn=fraud.amount), skipping the subdirectories that cannot hold a match.
func (s *Storage) List(ctx context.Context, prefix string) ([]historian.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history store file: list %q in %s: %w", prefix, s.dir, err)
	}
	dir := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
		reason := badKey(dir)
		if dir == "" {
			reason = "is absolute"
		}
		if reason != "" {
			return nil, fmt.Errorf("history store file: list %q: the prefix's directory %q %s", prefix, dir, reason)
		}
	}
	var out []historian.ObjectInfo
	err := fs.WalkDir(s.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if notFound(err) {
				// The prefix's directory does not exist, or a file went while walking.
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if p != dir && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(p, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if notFound(err) {
				return nil
			}
			return err
		}
		out = append(out, historian.ObjectInfo{Key: p, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history store file: list %q in %s: %w", prefix, s.dir, err)
	}
	slices.SortFunc(out, func(a, b historian.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// notFound reports whether err says a path does not exist (or crosses a file).
func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Open implements historian.Storage. The Object is the open file (an *os.File).
func (s *Storage) Open(ctx context.Context, key string) (historian.Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history store file: open %q in %s: %w", key, s.dir, err)
	}
	f, err := s.root.Open(key)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("history store file: open %q in %s: %w", key, s.dir, historian.ErrNotFound)
		}
		return nil, fmt.Errorf("history store file: open %q in %s: %w", key, s.dir, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("history store file: open %q in %s: %w", key, s.dir, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("history store file: open %q in %s: %w (a %s is there)", key, s.dir, historian.ErrNotFound, fileKind(info.Mode()))
	}
	return &object{File: f, size: info.Size()}, nil
}

func fileKind(m fs.FileMode) string {
	if m.IsDir() {
		return "directory"
	}
	return "non-regular file"
}

// object is an opened file.
type object struct {
	*os.File
	size int64
}

// Size implements historian.Object.
func (o *object) Size() int64 { return o.size }

// Close closes the directory; the Storage cannot be used afterwards (Objects opened before
// stay readable until closed).
func (s *Storage) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("history store file: close %s: %w", s.dir, err)
	}
	return nil
}
