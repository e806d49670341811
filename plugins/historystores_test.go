package plugins

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/historian"
)

type fakeHistoryStore struct {
	historian.Storage
	cfg Config
}

func init() {
	RegisterHistoryStore("test-history", func(_ context.Context, cfg Config) (historian.Storage, error) {
		return fakeHistoryStore{cfg: cfg}, nil
	})
	RegisterHistoryStore("test-history-failing", func(context.Context, Config) (historian.Storage, error) {
		return nil, errors.New("no such bucket")
	})
	RegisterHistoryStore("test-history-nil", func(context.Context, Config) (historian.Storage, error) { return nil, nil })
}

func TestHistoryStores(t *testing.T) {
	mustPanic(t, func() {
		RegisterHistoryStore("test-history", func(context.Context, Config) (historian.Storage, error) { return nil, nil })
	})
	mustPanic(t, func() { RegisterHistoryStore("test-history-nil-factory", nil) })

	s, err := NewHistoryStore(ctx, "test-history", Config{"dir": "x"})
	if fs, ok := s.(fakeHistoryStore); err != nil || !ok || fs.cfg["dir"] != "x" {
		t.Fatalf("NewHistoryStore = %v, %v", s, err)
	}
	tests := []struct {
		name string
		want []string // substrings of the error
	}{
		{"test-history-failing", []string{`history store "test-history-failing": no such bucket`}},
		{"test-history-nil", []string{`history store "test-history-nil"`, "no Storage"}},
		{"nope", []string{`history store "nope"`, "test-history, test-history-failing, test-history-nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHistoryStore(ctx, tt.name, nil)
			if err == nil {
				t.Fatal("succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := NewHistoryStore(ctx, "nope", nil); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("unknown history store error does not wrap ErrNotRegistered: %v", err)
	}
	if names := HistoryStoreNames(); !slices.IsSorted(names) || !slices.Contains(names, "test-history") {
		t.Fatalf("HistoryStoreNames = %v", names)
	}
}
