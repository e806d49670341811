// Package storagetest is the conformance suite of historian.Storage implementations: the
// file store (plugins/historystore/file) and the S3 store (plugins/historystore/s3) pass the
// same cases (Run).
//
// The suite's keys never make one key a directory prefix of another ("a" and "a/b"), which a
// file system cannot hold and the historian never writes.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/osprey-ml/osprey/historian"
)

// Run runs the suite. newStorage returns an empty Storage for t; Run closes it when t ends.
func Run(t *testing.T, newStorage func(t *testing.T) historian.Storage) {
	ctx := context.Background()
	open := func(t *testing.T) historian.Storage {
		t.Helper()
		s := newStorage(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}

	t.Run("put open list", func(t *testing.T) {
		s := open(t)
		objs := map[string][]byte{
			"fqn=fraud.amount/date=2026-12-01/20261201T101500Z-1-a.parquet": []byte("first object"),
			"fqn=fraud.amount/date=2026-12-02/20261202T000000Z-1-b.parquet": []byte("second"),
			"top-level":   []byte("at the root"),
			"empty/plain": {},
		}
		for k, b := range objs {
			mustPut(t, s, k, b)
		}
		got := mustList(t, s, "")
		if keys := keysOf(got); !slices.Equal(keys, sortedKeys(objs)) {
			t.Fatalf("List(\"\") = %q, want %q", keys, sortedKeys(objs))
		}
		for _, info := range got {
			if info.Size != int64(len(objs[info.Key])) {
				t.Errorf("List: %s has size %d, want %d", info.Key, info.Size, len(objs[info.Key]))
			}
			if info.Modified.IsZero() {
				t.Errorf("List: %s has no modification time", info.Key)
			}
		}
		for k, b := range objs {
			if got := readAll(t, s, k); !bytes.Equal(got, b) {
				t.Errorf("%s = %q, want %q", k, got, b)
			}
		}
	})

	t.Run("replace", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "k/obj", []byte("old, and longer than the new one"))
		mustPut(t, s, "k/obj", []byte("new"))
		if got := readAll(t, s, "k/obj"); string(got) != "new" {
			t.Fatalf("after a replace: %q", got)
		}
		if got := mustList(t, s, "k/"); len(got) != 1 || got[0].Size != 3 {
			t.Fatalf("List after a replace = %+v, want one object of 3 bytes", got)
		}
	})

	t.Run("atomic replace", func(t *testing.T) {
		// Readers racing a writer that keeps replacing the object open one version whole,
		// never a mix or a part. Reading an Object may fail once the object is replaced
		// (S3's does: it reads the version it opened or nothing); opening may not.
		s := open(t)
		const key = "race/obj"
		versions := [][]byte{bytes.Repeat([]byte{'a'}, 64<<10), bytes.Repeat([]byte{'b'}, 96<<10)}
		mustPut(t, s, key, versions[0])
		const puts = 21
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 1; i <= puts; i++ {
				if err := s.Put(ctx, key, versions[i%2]); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
		for range 4 {
			wg.Go(func() {
				for range 20 {
					obj, err := s.Open(ctx, key)
					if err != nil {
						t.Errorf("Open while replacing: %v", err)
						return
					}
					got, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
					obj.Close()
					if err == nil && !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
						t.Errorf("read %d bytes that are neither version", len(got))
						return
					}
				}
			})
		}
		wg.Wait()
		if got := readAll(t, s, key); !bytes.Equal(got, versions[puts%2]) {
			t.Errorf("after the replacements: %d bytes that are not the last version", len(got))
		}
	})

	t.Run("listing order", func(t *testing.T) {
		// Sorted by key bytes, not by directory: "a-b" < "a.b" < "a/b" < "a0" < "ab".
		s := open(t)
		keys := []string{"ab", "a/b", "a0", "a.b", "a-b", "a/a/z", "a/c", "B", "a/b0"}
		for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(len(keys)) {
			mustPut(t, s, keys[i], []byte(keys[i]))
		}
		want := slices.Sorted(slices.Values(keys))
		if got := keysOf(mustList(t, s, "")); !slices.Equal(got, want) {
			t.Fatalf("List = %q, want %q", got, want)
		}
	})

	t.Run("prefix", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{
			"fqn=fraud.amount/date=2026-12-01/x.parquet",
			"fqn=fraud.amount/date=2026-12-02/y.parquet",
			"fqn=fraud.amount/date=2026-11-30/z.parquet",
			"fqn=fraud.count/date=2026-12-01/x.parquet",
			"fqn=fraud/date=2026-12-01/x.parquet",
			"fqn=fraudulent.x/date=2026-12-01/x.parquet",
			"fqn=geo.city/date=2026-12-01/x.parquet",
		} {
			mustPut(t, s, k, []byte(k))
		}
		tests := []struct {
			prefix string
			want   []string
		}{
			{"fqn=fraud.", []string{
				"fqn=fraud.amount/date=2026-11-30/z.parquet",
				"fqn=fraud.amount/date=2026-12-01/x.parquet",
				"fqn=fraud.amount/date=2026-12-02/y.parquet",
				"fqn=fraud.count/date=2026-12-01/x.parquet",
			}},
			{"fqn=fraud.amount/", []string{
				"fqn=fraud.amount/date=2026-11-30/z.parquet",
				"fqn=fraud.amount/date=2026-12-01/x.parquet",
				"fqn=fraud.amount/date=2026-12-02/y.parquet",
			}},
			{"fqn=fraud.amount/date=2026-12-0", []string{
				"fqn=fraud.amount/date=2026-12-01/x.parquet",
				"fqn=fraud.amount/date=2026-12-02/y.parquet",
			}},
			{"fqn=fraud.amount/date=2026-12-01/x", []string{"fqn=fraud.amount/date=2026-12-01/x.parquet"}},
			{"fqn=fraud.amount/date=2026-12-01/x.parquet", []string{"fqn=fraud.amount/date=2026-12-01/x.parquet"}},
			{"fqn=fraud/", []string{"fqn=fraud/date=2026-12-01/x.parquet"}},
			{"fqn=g", []string{"fqn=geo.city/date=2026-12-01/x.parquet"}},
			{"fqn=fraud.amount/date=2026-12-01/x.parquet/", nil},
			{"fqn=fraud.amount/date=2027", nil},
			{"fqn=nope/", nil},
			{"nope", nil},
			{"fqn=nope/deeper/still", nil},
		}
		for _, tt := range tests {
			if got := keysOf(mustList(t, s, tt.prefix)); !slices.Equal(got, tt.want) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		}
	})

	t.Run("missing key", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "dir/sub/obj", []byte("x"))
		for _, key := range []string{"nope", "dir/nope", "dir/sub", "dir", "dir/sub/obj/below", "dir/sub/ob"} {
			obj, err := s.Open(ctx, key)
			if !errors.Is(err, historian.ErrNotFound) {
				if obj != nil {
					obj.Close()
				}
				t.Errorf("Open(%q) = %v, want ErrNotFound", key, err)
				continue
			}
			if !strings.Contains(err.Error(), key) {
				t.Errorf("Open(%q) error %q does not name the key", key, err)
			}
		}
	})

	t.Run("bad keys", func(t *testing.T) {
		s := open(t)
		for _, key := range []string{"", "/abs", "a/../b", "..", "../up", "a/..", "./a", "a/./b", "a//b", "a/", `a\b`, "a\x00b"} {
			if err := s.Put(ctx, key, []byte("x")); err == nil {
				t.Errorf("Put(%q) succeeded", key)
			}
			if obj, err := s.Open(ctx, key); err == nil {
				obj.Close()
				t.Errorf("Open(%q) succeeded", key)
			}
		}
		if got := mustList(t, s, ""); len(got) != 0 {
			t.Errorf("bad keys left objects: %q", keysOf(got))
		}
	})

	t.Run("concurrent puts", func(t *testing.T) {
		s := open(t)
		const writers, each = 8, 8
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					key := fmt.Sprintf("fqn=c.f/date=2026-12-0%d/w%d-%d.parquet", i%3, w, i)
					if err := s.Put(ctx, key, []byte(key)); err != nil {
						t.Errorf("Put: %v", err)
					}
					// Every writer also replaces one shared key.
					if err := s.Put(ctx, "fqn=c.f/shared", fmt.Appendf(nil, "writer %d", w)); err != nil {
						t.Errorf("Put shared: %v", err)
					}
				}
			})
		}
		wg.Wait()
		got := mustList(t, s, "fqn=c.f/")
		if len(got) != writers*each+1 {
			t.Fatalf("%d objects, want %d", len(got), writers*each+1)
		}
		for _, info := range got {
			b := readAll(t, s, info.Key)
			if info.Key == "fqn=c.f/shared" {
				if !strings.HasPrefix(string(b), "writer ") {
					t.Errorf("shared = %q", b)
				}
			} else if string(b) != info.Key {
				t.Errorf("%s = %q", info.Key, b)
			}
		}
	})

	t.Run("large object", func(t *testing.T) {
		s := open(t)
		body := make([]byte, 8<<20)
		r := rand.NewChaCha8([32]byte{1})
		_, _ = r.Read(body)
		mustPut(t, s, "big/8MiB.parquet", body)
		if got := mustList(t, s, "big/"); len(got) != 1 || got[0].Size != int64(len(body)) {
			t.Fatalf("List = %+v, want one object of %d bytes", got, len(body))
		}
		if got := readAll(t, s, "big/8MiB.parquet"); !bytes.Equal(got, body) {
			t.Fatalf("read %d bytes that differ from the %d put", len(got), len(body))
		}
	})

	t.Run("reader at", func(t *testing.T) {
		s := open(t)
		body := make([]byte, 1<<20+17)
		for i := range body {
			body[i] = byte(i * 7 / 3)
		}
		mustPut(t, s, "ra/obj", body)
		obj, err := s.Open(ctx, "ra/obj")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		if obj.Size() != int64(len(body)) {
			t.Fatalf("Size = %d, want %d", obj.Size(), len(body))
		}
		size := int64(len(body))
		tests := []struct {
			name    string
			off     int64
			n       int   // len of the buffer
			want    int   // bytes read
			eofOK   bool  // io.EOF allowed with a full read
			wantErr error // the error of a short read
		}{
			{"start", 0, 100, 100, false, nil},
			{"middle", 500_000, 4096, 4096, false, nil},
			{"footer", size - 8, 8, 8, true, nil},
			{"whole", 0, len(body), len(body), true, nil},
			{"across the end", size - 10, 100, 10, false, io.EOF},
			{"at the end", size, 10, 0, false, io.EOF},
			{"past the end", size + 1000, 10, 0, false, io.EOF},
		}
		// Backwards, so that a reader that streams forwards has to go back.
		for _, tt := range slices.Backward(tests) {
			t.Run(tt.name, func(t *testing.T) {
				p := make([]byte, tt.n)
				n, err := obj.ReadAt(p, tt.off)
				if n != tt.want {
					t.Fatalf("ReadAt(%d bytes at %d) read %d, want %d (err %v)", tt.n, tt.off, n, tt.want, err)
				}
				switch {
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("ReadAt(%d bytes at %d): err %v, want %v", tt.n, tt.off, err, tt.wantErr)
					}
				case err != nil && !(tt.eofOK && err == io.EOF):
					t.Fatalf("ReadAt(%d bytes at %d): %v", tt.n, tt.off, err)
				}
				if want := body[min(tt.off, size):min(tt.off+int64(tt.want), size)]; !bytes.Equal(p[:n], want) {
					t.Fatalf("ReadAt(%d bytes at %d) read the wrong bytes", tt.n, tt.off)
				}
			})
		}
		if _, err := obj.ReadAt(make([]byte, 1), -1); err == nil {
			t.Error("ReadAt at a negative offset succeeded")
		}
	})

	t.Run("empty object", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "e/empty", nil)
		obj, err := s.Open(ctx, "e/empty")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		if obj.Size() != 0 {
			t.Fatalf("Size = %d", obj.Size())
		}
		if n, err := obj.ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt = %d, %v; want 0, io.EOF", n, err)
		}
	})

	t.Run("canceled context", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, "c/obj", []byte("x"))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Put(cctx, "c/new", []byte("y")); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a canceled context: %v, want context.Canceled", err)
		}
		if _, err := s.List(cctx, ""); !errors.Is(err, context.Canceled) {
			t.Errorf("List with a canceled context: %v, want context.Canceled", err)
		}
		if obj, err := s.Open(cctx, "c/obj"); !errors.Is(err, context.Canceled) {
			if obj != nil {
				obj.Close()
			}
			t.Errorf("Open with a canceled context: %v, want context.Canceled", err)
		}
		if got := keysOf(mustList(t, s, "")); !slices.Equal(got, []string{"c/obj"}) {
			t.Errorf("after the canceled Put: %q", got)
		}
	})
}

func mustPut(t *testing.T, s historian.Storage, key string, body []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, body); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustList(t *testing.T, s historian.Storage, prefix string) []historian.ObjectInfo {
	t.Helper()
	got, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	if !slices.IsSortedFunc(got, func(a, b historian.ObjectInfo) int { return strings.Compare(a.Key, b.Key) }) {
		t.Fatalf("List(%q) is not sorted: %q", prefix, keysOf(got))
	}
	return got
}

func readAll(t *testing.T, s historian.Storage, key string) []byte {
	t.Helper()
	b, err := tryReadAll(context.Background(), s, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tryReadAll opens key and reads it whole through its ReaderAt.
func tryReadAll(ctx context.Context, s historian.Storage, key string) ([]byte, error) {
	obj, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

func keysOf(infos []historian.ObjectInfo) []string {
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
