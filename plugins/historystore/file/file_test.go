package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/historian/storagetest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/historystore/file"
)

func newStorage(t *testing.T) *file.Storage {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the history stores' shared suite (historian/storagetest), which the
// s3 store passes too.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) historian.Storage { return newStorage(t) })
}

// TestLayout: a key is a path under the directory, written through a temporary file that
// does not stay behind; List ignores the temporary files of interrupted Puts.
func TestLayout(t *testing.T) {
	ctx := context.Background()
	s := newStorage(t)
	defer s.Close()
	key := "fqn=fraud.amount/date=2026-12-01/20261201T101500Z-1-3f2a.parquet"
	if err := s.Put(ctx, key, []byte("PAR1")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), "fqn=fraud.amount", "date=2026-12-01")
	b, err := os.ReadFile(filepath.Join(dir, "20261201T101500Z-1-3f2a.parquet"))
	if err != nil || string(b) != "PAR1" {
		t.Fatalf("the object's file: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in %s, want the object alone", len(ents), dir)
	}
	// What a crash in the middle of a Put leaves.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-x.parquet-123"), []byte("PA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir(), ".tmp-dir", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != key || got[0].Size != 4 {
		t.Fatalf("List = %+v, want the object alone", got)
	}
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // "" for a valid key
	}{
		{"a", ""},
		{"fqn=fraud.amount/date=2026-12-01/x.parquet", ""},
		{"a/..b/c..", ""},
		{".hidden/x", ""},
		{"", "is empty"},
		{"/etc/passwd", "is absolute"},
		{"a/../../etc", `".." segment`},
		{"..", `".." segment`},
		{"a/./b", `"." segment`},
		{"a//b", "empty segment"},
		{"a/", "empty segment"},
		{`a\..\b`, "backslash"},
		{"a\x00b", "NUL"},
		{"a/.tmp-b", "reserved for temporary files"},
	}
	for _, tt := range tests {
		err := file.CheckKey(tt.key)
		if tt.want == "" {
			if err != nil {
				t.Errorf("CheckKey(%q) = %v", tt.key, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), strconv.Quote(tt.key)) {
			t.Errorf("CheckKey(%q) = %v, want an error naming the key and saying %q", tt.key, err, tt.want)
		}
	}
}

// TestRefusals: Put, Open and List refuse bad keys and prefixes with the check's error, and a
// symbolic link does not lead outside the directory.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	s := newStorage(t)
	defer s.Close()
	if err := s.Put(ctx, "../escape", []byte("x")); err == nil || !strings.Contains(err.Error(), `"../escape"`) {
		t.Errorf("Put(../escape) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir()), "escape")); err == nil {
		t.Error("Put wrote outside the directory")
	}
	for _, prefix := range []string{"../", "/abs", "a/../b/c", `a\b/c`} {
		if _, err := s.List(ctx, prefix); err == nil || !strings.Contains(err.Error(), strconv.Quote(prefix)) {
			t.Errorf("List(%q) = %v, want an error naming it", prefix, err)
		}
	}

	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "link")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	if obj, err := s.Open(ctx, "link/secret"); err == nil {
		obj.Close()
		t.Error("Open followed a symbolic link outside the directory")
	}
	if err := s.Put(ctx, "link/planted", []byte("x")); err == nil {
		t.Error("Put followed a symbolic link outside the directory")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Error("Put wrote outside the directory")
	}
}

// TestKeyClash: a key cannot be a directory of another key; the Put fails, naming the key,
// and leaves the other object alone.
func TestKeyClash(t *testing.T) {
	ctx := context.Background()
	s := newStorage(t)
	defer s.Close()
	if err := s.Put(ctx, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "a/b/c"} {
		if err := s.Put(ctx, key, []byte("y")); err == nil || !strings.Contains(err.Error(), strconv.Quote(key)) {
			t.Errorf("Put(%q) = %v, want an error naming the key", key, err)
		}
	}
	got, err := s.List(ctx, "")
	if err != nil || len(got) != 1 || got[0].Key != "a/b" {
		t.Fatalf("List = %+v, %v", got, err)
	}
}

// TestRegistered: the store registers as "file" and takes the directory as its one key.
func TestRegistered(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "history")
	s, err := plugins.NewHistoryStore(ctx, "file", plugins.Config{"dir": dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "k/v", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k", "v")); err != nil {
		t.Error(err)
	}
	tests := []struct {
		name string
		cfg  plugins.Config
		want string
	}{
		{"unknown key", plugins.Config{"dir": dir, "bogus": "1"}, `unknown key "bogus"`},
		{"no dir", nil, `"dir" is required`},
		{"blank dir", plugins.Config{"dir": "  "}, `"dir" is required`},
	}
	for _, tt := range tests {
		_, err := plugins.NewHistoryStore(ctx, "file", tt.cfg)
		if !errors.Is(err, plugins.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig saying %q", tt.name, err, tt.want)
		}
	}
	if !slices.Contains(plugins.HistoryStoreNames(), "file") {
		t.Errorf("names %v", plugins.HistoryStoreNames())
	}
}
