package registry

import (
	"context"

	"github.com/osprey-ml/osprey/manifest"
)

// Kinds returns the kinds of objects a Store holds, in the order they are restored: data
// sources, plugins and egresses before the features that name them or emit to them.
func Kinds() []string {
	return []string{string(manifest.KindDataSource), string(manifest.KindPlugin), string(manifest.KindEgress), string(manifest.KindFeature)}
}

// Store persists what the registry applied, so that a restarted process applies it again:
// one self-contained osprey.dev/v1alpha1 manifest per object (its Wasm modules named by
// their module references, "sha256:<hex>") and the bytes of those modules. Providers
// register by name in package plugins (plugins.RegisterRegistryStore); the directory store
// is "dir" (plugins/registrystore/dir).
//
// Implementations must be safe for concurrent use. The registry serialises its own calls.
// Kinds lists the kinds of objects, in the order Load returns them.
type Store interface {
	// Save stores (or replaces) an object: kind is one of Kinds(), fqn its
	// "namespace.name", manifest its YAML document, and modules the bytes of every module
	// the manifest names, by reference ("sha256:<hex>"). Save is atomic: a crash leaves the
	// old object or the new one.
	Save(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte) error
	// Delete removes an object; deleting one that is not stored is not an error.
	Delete(ctx context.Context, kind, fqn string) error
	// Load returns every stored object in the order of Kinds() (data sources, plugins,
	// egresses, features), each kind sorted by FQN. An object that cannot be read whole (its manifest unreadable, a module
	// it names missing or corrupt) is returned with Err set, so that the registry
	// quarantines it and restores the others; Load fails only when the store itself cannot
	// be read.
	Load(ctx context.Context) ([]StoredObject, error)
}

// StoredObject is one object a Store holds. It is plain data: Load hands out fresh copies.
type StoredObject struct {
	// Kind is one of Kinds().
	Kind string
	// FQN is the object's "namespace.name".
	FQN string
	// Manifest is the object's YAML document.
	Manifest []byte
	// Modules holds the bytes of the modules the manifest names, by reference.
	Modules map[string][]byte
	// Err, when set, says why the object could not be read whole (Manifest or Modules may
	// then be incomplete); the registry quarantines such an object.
	Err error
	// Version is the object's version in a SharedStore (opaque, different after every
	// write of the object); empty from a Store that keeps none.
	Version string
}
