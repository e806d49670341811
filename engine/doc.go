// Package engine is Osprey's feature engine: features and their descriptors, typed values,
// selectors, entity keys, middleware pipelines, online window aggregation, and the State and
// Notifier interfaces that providers implement. Manifests, the YAML form of features and data
// sources, are read and written by package manifest.
//
// The engine runs no WebAssembly and opens no network connection; those live behind the
// interfaces it defines (State, Notifier, MiddlewareResolver), implemented in the host and
// plugins packages.
//
// # Semantics
//
// The age of a value is now − its timestamp. A value younger than the feature's freshness is
// served with Fresh=true; one at least as old as freshness but younger than staleness is
// served with Fresh=false; one at least as old as staleness is not served at all: Get
// reports it absent, never a wrong value.
//
// A windowed feature (one whose builder names aggregations) adds every update to the bucket
// of its timestamp (bucket size = granularity). A read aggregates the buckets inside the
// window (window = staleness) and returns sum, count, min, max and avg, or the one a
// selector names with +aggr. Buckets are kept for staleness + DeadGracePeriod so that the
// historian can collect them after they leave the window.
//
// A feature with keepPrevious {versions, over} keeps its previous values: the selector
// suffix @-N reads the Nth previous value while it is younger than over.
//
// Writes are ordered by event time: an entity's current value is the one with the latest
// timestamp. A Set (or an Update of a scalar) older than the current value is superseded —
// kept among the previous versions in timestamp order when it falls within versions, dropped
// otherwise — and Write reports it (WriteResult.Outcome, Notification.Outcome). Of two writes
// with equal timestamps the later wins. Incr and Append apply in call order. The State makes
// the decision atomically with the write (see State).
package engine
