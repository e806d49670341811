// Package manifest owns Osprey's manifest format, in both directions: it reads YAML
// manifests (osprey.dev/v1alpha1, and RaptorML's k8s.raptor.ml/v1alpha1, migrated) into the
// engine's Feature and DataSource and into this package's Plugin and Egress, and writes
// those back as canonical osprey.dev/v1alpha1 manifests.
//
// # Kinds
//
// A Feature manifest describes an engine.Feature, a DataSource manifest an
// engine.DataSource. A Plugin manifest describes an Extism plugin (Plugin): a Wasm module
// and the functions it exports for Osprey, each with its role (middleware, encoder or
// connector), the Extism config it reads, the hosts it may call over HTTP and the limits it
// asks for:
//
//	apiVersion: osprey.dev/v1alpha1
//	kind: Plugin
//	metadata: {name: mask, namespace: pii, labels: {team: privacy}}
//	spec:
//	  module: mask.wasm            # a path relative to the manifest, or sha256:<hex>
//	  functions:
//	    - {name: encode, role: encoder}
//	    - {name: handle, role: middleware}
//	  config: {mask_char: "*"}     # Extism config, names to strings
//	  allowedHosts: [api.example.com, "*.geo.example.net"]
//	  limits: {timeout: 200ms, memoryPages: 64, httpResponseBytes: 1048576, outputBytes: 65536}
//
// spec.module and spec.functions are required; function names are Wasm export names
// ([A-Za-z_][A-Za-z0-9_]*, at most 128 characters), each listed once. An allowed host is a
// host name or a glob pattern of one, without scheme, port or path. Every limit is optional
// (absent or 0: the host's default; a timeout that is written must be positive), and
// memoryPages counts 64 KiB pages, at most 65536. Whether the operator allows those hosts
// and limits is checked by the host that loads the plugin, not here. A plugin's module,
// like a feature's spec.builder.module, is kept as the manifest writes it: a path, which
// whoever sends the module's bytes resolves relative to the manifest's file, or a
// "sha256:<hex>" reference to a module already uploaded. RaptorML has no Plugin kind.
//
// An Egress manifest describes an egress (Egress): a destination outside Osprey that
// programs emit messages to, by its FQN (namespace.name; a bare name is in the engine's
// default namespace), of a type registered by name (package plugins/egress) with the
// type's configuration:
//
//	apiVersion: osprey.dev/v1alpha1
//	kind: Egress
//	metadata: {name: alerts, namespace: fraud}
//	spec:
//	  type: webhook                # webhook, redis-stream, …
//	  config:                      # the type's; strings, lists of strings, or mappings of them
//	    url: https://hooks.example.com/fraud
//	    headers: {Authorization: "Bearer …"}
//	    timeout: 5s
//
// spec.type is required. A config value is a scalar (read as the string it is written as:
// 5s, 1000 and true are strings), a list of scalars, or a mapping of names to scalars;
// deeper nesting is refused. Which keys a type knows and what they must hold is checked by
// the type when the egress is applied (docs/egress.md), not here. RaptorML has no Egress
// kind.
//
// A Feature whose program receives messages from other programs declares their type in
// spec.builder.messages (a primitive: int, string, []float, …; engine.Feature.Messages).
//
// # Reading
//
// Parse reads the "---" separated documents of one input and Load reads files and
// directories. Every field is checked, unknown fields are rejected (with the nearest known
// name as a suggestion), and each Feature, DataSource, Plugin and Egress is validated with
// its own Validate. A manifest that parses is therefore one the engine accepts, short of what
// depends on what is applied (a data source, a middleware, a module) and, for a plugin, on
// the operator's policy.
//
// Errors are *Error values, each wrapping ErrInvalid (and the cause, when there is one: a
// *engine.FieldError from Validate, with engine.ErrInvalidFeature, engine.ErrInvalidDataSource,
// ErrInvalidPlugin or ErrInvalidEgress; a file's fs.ErrNotExist, …). An error names the source,
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
// Feature, DataSource and Marshal (for a Plugin and an Egress too) write an object as a canonical
// osprey.dev/v1alpha1 manifest: the same object always gives the same bytes (fields in schema order, map keys
// sorted, defaults spelled out, empty fields left out), and Parse reads them back to an
// equal object. The registry stores objects in this form and compares them by it.
//
// The reader and the writer share one description of the format (schema.go): the writer's
// wire structs, whose yaml tags are the fields the reader accepts.
package manifest
