package plugins

import (
	"context"
	"fmt"

	ospreyregistry "github.com/osprey-ml/osprey/registry"
)

// RegistryStoreFactory creates a registry store (where the registry persists the applied
// objects and their modules) from its configuration. ctx bounds the creation, not the
// Store's lifetime.
type RegistryStoreFactory func(ctx context.Context, cfg Config) (ospreyregistry.Store, error)

var registryStores = newRegistry[RegistryStoreFactory]("registry store")

// RegisterRegistryStore registers a registry store under name. It panics like
// RegisterState.
func RegisterRegistryStore(name string, f RegistryStoreFactory) {
	if f == nil {
		panic(fmt.Sprintf("plugins: RegisterRegistryStore(%q) with a nil factory", name))
	}
	registryStores.register(name, f)
}

// NewRegistryStore creates the registry store registered under name with cfg. An unknown
// name yields an error wrapping ErrNotRegistered that lists the registered names.
func NewRegistryStore(ctx context.Context, name string, cfg Config) (ospreyregistry.Store, error) {
	f, err := registryStores.lookup(name)
	if err != nil {
		return nil, err
	}
	s, err := f(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("plugins: registry store %q: %w", name, err)
	}
	if s == nil {
		return nil, fmt.Errorf("plugins: registry store %q: factory returned no Store", name)
	}
	return s, nil
}

// RegistryStoreNames returns the names of the registered registry stores, sorted.
func RegistryStoreNames() []string { return registryStores.names() }
