package plugins

import (
	"context"
	"fmt"

	"github.com/osprey-ml/osprey/historian"
)

// HistoryStoreFactory creates a history store (where the historian keeps its Parquet
// objects: a local directory, an S3 bucket) from its configuration. ctx bounds the creation
// (checking that the bucket exists, say), not the Storage's lifetime. The caller owns the
// Storage and closes it.
type HistoryStoreFactory func(ctx context.Context, cfg Config) (historian.Storage, error)

var historyStores = newRegistry[HistoryStoreFactory]("history store")

// RegisterHistoryStore registers a history store under name. It panics like RegisterState.
func RegisterHistoryStore(name string, f HistoryStoreFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterHistoryStore(%q) with a nil factory", name))
	}
	historyStores.register(name, f)
}

// NewHistoryStore creates the history store registered under name with cfg. An unknown
// name yields an error wrapping ErrNotRegistered that lists the registered names.
func NewHistoryStore(ctx context.Context, name string, cfg Config) (historian.Storage, error) {
	f, err := historyStores.lookup(name)
	if err != nil {
		return nil, err
	}
	s, err := f(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugins: history store %q: %w", name, err)
	}
	if s == nil {
		return nil, fmt.Errorf("plugins: history store %q: factory returned no Storage", name)
	}
	return s, nil
}

// HistoryStoreNames returns the names of the registered history stores, sorted.
func HistoryStoreNames() []string { return historyStores.names() }
