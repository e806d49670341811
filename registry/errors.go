package registry

import "errors"

// Sentinel errors. The registry's errors wrap one of these where the cause is the
// registry's own, and otherwise wrap the engine's, the host's (through Modules), the
// manifest package's or the Store's errors unchanged, so that callers classify them with
// errors.Is (the server maps them to codes: server/errors.go).
var (
	// ErrNotFound: Delete found no applied or quarantined object of the name.
	ErrNotFound = errors.New("not found")
	// ErrPending: the object's restore at start overran its deadline and its apply has not
	// returned yet; applying it again would race with that apply. Retry later.
	ErrPending = errors.New("restore still running")
	// ErrInUse: a data source or a plugin cannot be deleted while features use it, nor a
	// plugin replaced by one without a function they use.
	ErrInUse = errors.New("in use")
	// ErrNoModules: a manifest names a Wasm module and the registry has no Modules (no
	// Wasm host).
	ErrNoModules = errors.New("no Wasm host")
	// ErrModuleUnknown: a manifest names a module by reference that neither the request
	// carries nor the registry holds.
	ErrModuleUnknown = errors.New("module not in the registry")
	// ErrConflict: a SharedStore refused a write because the object changed in the store
	// (another replica applied or deleted it) since this registry last saw it; nothing was
	// applied. The registry catches up within its sync period: retry then.
	ErrConflict = errors.New("changed concurrently")
	// ErrUnsupportedKind: a manifest of a kind this registry cannot apply: a Plugin without
	// a plugin host (Config.Plugins), an Egress without egresses (Config.Egresses).
	ErrUnsupportedKind = errors.New("kind not supported")
)

// kindError is an error with its own message that is one of the sentinels above, and
// wraps a cause when there is one.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// FieldError reports a malformed part of an apply request other than a manifest: Field
// names it (`modules["fraud.wasm"]`). Err is the cause: the host's error (through
// Modules.AddModule) when it refused the bytes, otherwise the registry's description.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ObjectError reports a manifest object that could not be applied (or checked, in a dry
// run): the engine refused it, a module it names does not compile, a middleware it names
// does not resolve. Pos is where the object is ("manifest: document 2 (line 14)"); Err is
// the engine's, the host's or the registry's error, unchanged.
type ObjectError struct {
	Pos string
	Key Key
	Err error
}

func (e *ObjectError) Error() string { return e.Pos + ": " + e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }
