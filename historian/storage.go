package historian

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotFound is wrapped by Storage.Open's error for a key that holds no object.
var ErrNotFound = errors.New("historian: object not found")

// Storage is where the history's objects live: an S3 bucket (plugins/historystore/s3) or a
// local directory (plugins/historystore/file). Keys are slash-separated paths relative to the
// storage's root (the bucket and prefix, or the directory), such as
// "fqn=fraud.amount/date=2026-12-01/20261201T101500Z-1-3f2a….parquet". Implementations are
// safe for concurrent use.
type Storage interface {
	// Put writes an object under key, atomically: a reader never sees part of it, and a
	// Put that fails leaves no object (or the one there before). The historian never puts
	// the same key twice; Put of an existing key replaces it.
	Put(ctx context.Context, key string, body []byte) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Open returns a reader of the object under key, which the caller closes; ErrNotFound
	// when there is none.
	Open(ctx context.Context, key string) (Object, error)
	// Close releases the storage's resources.
	Close() error
}

// Object is an object opened for reading: random access, as Parquet readers need.
type Object interface {
	io.ReaderAt
	io.Closer
	// Size is the object's length in bytes.
	Size() int64
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// KeyProblem says what is wrong with key as a Storage key, or "" when nothing is: a key is a
// relative slash-separated path of non-empty segments other than "." and "..", without
// backslashes or NUL bytes. Every Storage accepts these keys, so that objects can move
// between them; a Storage may refuse more (the file store: its temporary names).
func KeyProblem(key string) string {
	switch {
	case key == "":
		return "is empty"
	case strings.HasPrefix(key, "/"):
		return "is absolute"
	case strings.ContainsRune(key, '\\'):
		return "has a backslash"
	case strings.ContainsRune(key, 0):
		return "has a NUL byte"
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return "has an empty segment"
		case ".", "..":
			return fmt.Sprintf("has a %q segment", seg)
		}
	}
	return ""
}
