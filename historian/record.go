package historian

import (
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// SchemaVersion is the version of the history's Parquet schema (docs/history.md), written in
// every record's schema_version column and in each object's key-value metadata. It changes
// when a column is removed or changes meaning; adding a column does not change it.
const SchemaVersion = 1

// RecordKind says what a Record is.
type RecordKind uint8

// Record kinds.
const (
	// KindWrite is a write to a feature (any operation), superseded or not. For a windowed
	// feature it is one add, its Value the number added (the buckets have records of their
	// own).
	KindWrite RecordKind = iota + 1
	// KindBucketSnapshot is a window bucket as it stood after a batch of writes to it
	// (the writes of one batch to one bucket are coalesced into one snapshot).
	KindBucketSnapshot
	// KindBucketFinal is a window bucket that has left its window, as it closed: its
	// aggregates can no longer change.
	KindBucketFinal
)

// String returns "write", "bucket_snapshot" or "bucket_final", the kind column's values.
func (k RecordKind) String() string {
	switch k {
	case KindWrite:
		return "write"
	case KindBucketSnapshot:
		return "bucket_snapshot"
	case KindBucketFinal:
		return "bucket_final"
	}
	return "unknown"
}

// ParseRecordKind is the inverse of RecordKind.String; ok is false for anything else.
func ParseRecordKind(s string) (k RecordKind, ok bool) {
	switch s {
	case "write":
		return KindWrite, true
	case "bucket_snapshot":
		return KindBucketSnapshot, true
	case "bucket_final":
		return KindBucketFinal, true
	}
	return 0, false
}

// Record is one row of the history: a write, or a window bucket's snapshot or final state.
// All records of one Parquet object share a feature (FQN, Primitive, KeyNames).
type Record struct {
	Kind RecordKind
	// FQN is the feature's fully qualified name.
	FQN string
	// Primitive is the feature's primitive; Value has its kind (windowed features: float,
	// Value unset, the aggregates in Window).
	Primitive engine.Primitive
	// KeyNames are the feature's entity key names in the feature's order, Keys their values
	// (one column each, key_<name>), EncodedKeys the engine's encoding of them.
	KeyNames    []string
	Keys        []string
	EncodedKeys string
	// Op is the write's operation (KindWrite; OpUpdate for a bucket's records).
	Op engine.Op
	// Superseded is set for a write that arrived after a later one (it did not become the
	// current value, and is kept or dropped among the previous versions).
	Superseded bool
	// Value is the value written (KindWrite): the value after the write for incr and
	// append, the late value itself for a superseded write.
	Value engine.Value
	// EventTime is the write's timestamp (KindWrite), or the latest timestamp added to the
	// bucket (bucket records).
	EventTime time.Time
	// WriteTime is when the engine wrote (KindWrite), or when the historian read the bucket.
	WriteTime time.Time
	// Bucket is set for bucket records: its ID, bounds [Start, End), whether it was still
	// inside its window when recorded, and its aggregates.
	Bucket *BucketRecord
	// Fence is the fencing token of the writer that wrote the record's object: the
	// historian leader's lease (0 for a writer that needs no lock, the embedded default).
	Fence int64
}

// BucketRecord is a window bucket's fields of a Record.
type BucketRecord struct {
	ID         int64
	Start, End time.Time
	Open       bool
	Sum, Count float64
	Min, Max   float64
}
