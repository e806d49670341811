// Package manifest owns Osprey's manifest format, in both directions: it reads YAML
// manifests (osprey.dev/v1alpha1, and RaptorML's k8s.raptor.ml/v1alpha1, migrated) into the
// engine's Feature and DataSource, and writes those back as canonical osprey.dev/v1alpha1
// manifests.
//
// # Reading
//
// Parse reads the "---" separated documents of one input and Load reads files and
// directories. Every field is checked, unknown fields are rejected (with the nearest known
// name as a suggestion), and each Feature and DataSource is validated with its own Validate.
// A manifest that parses is therefore one the engine accepts, short of what depends on what
// is applied (a data source, a middleware, a module).
//
// Errors are *Error values, each wrapping ErrInvalid (and the cause, when there is one: a
// *engine.FieldError from Validate, a file's fs.ErrNotExist, …). An error names the source,
// the document, the line and the field path, then what is wrong:
//
//	fraud.yaml: document 2 (line 14): spec.staleness: must be ≥ spec.freshness (1m0s < 1h0m0s)
//	fraud.yaml: document 1 (line 9): spec.freshnes: unknown field (did you mean freshness?)
//
// Field paths use dots for fields and brackets for list elements and for names that are not
// identifiers (spec.keys[1], metadata.labels["app.kubernetes.io/name"]). When an input has
// several problems, every one is reported (up to 100), one per line, in document then line
// order, joined with errors.Join; an input with one problem gives that *Error itself.
//
// RaptorML manifests load where their fields map onto Osprey's: '-' in names becomes '_',
// the builder kind headless is sourceless, a data source's config list of {name, value}
// becomes a mapping, and the Kubernetes fields Osprey has no use for (status, uid,
// replicas, a Python runtime, …) are ignored. What cannot be migrated — Python code,
// Models, secret references — is an error saying so (see docs/migrating-from-raptor.md).
//
// # Writing
//
// Feature, DataSource and Marshal write an object as a canonical osprey.dev/v1alpha1
// manifest: the same object always gives the same bytes (fields in schema order, map keys
// sorted, defaults spelled out, empty fields left out), and Parse reads them back to an
// equal object. The registry stores objects in this form and compares them by it.
//
// The reader and the writer share one description of the format (schema.go): the writer's
// wire structs, whose yaml tags are the fields the reader accepts.
package manifest
