// Package parquetgroup builds Parquet groups whose fields keep the order they are given:
// parquet-go's parquet.Group is a map and sorts its fields by name, while the history's
// objects and the export's output have a documented column order.
package parquetgroup

import (
	"reflect"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// Group is a required Parquet group of the fields in order. Its rows are built as
// parquet.Row values, never from Go structs.
type Group []parquet.Field

// Field names n as a field of a Group.
func Field(name string, n parquet.Node) parquet.Field { return &field{Node: n, name: name} }

// ID implements parquet.Node.
func (g Group) ID() int { return 0 }

// String prints the group as a schema.
func (g Group) String() string {
	var b strings.Builder
	if err := parquet.PrintSchema(&b, "", g); err != nil {
		return "group"
	}
	return b.String()
}

// Type implements parquet.Node.
func (g Group) Type() parquet.Type { return parquet.Group{}.Type() }

// Optional implements parquet.Node: a Group is required.
func (g Group) Optional() bool { return false }

// Repeated implements parquet.Node.
func (g Group) Repeated() bool { return false }

// Required implements parquet.Node.
func (g Group) Required() bool { return true }

// Leaf implements parquet.Node.
func (g Group) Leaf() bool { return false }

// Fields returns the fields in order.
func (g Group) Fields() []parquet.Field { return g }

// Encoding implements parquet.Node.
func (g Group) Encoding() encoding.Encoding { return nil }

// Compression implements parquet.Node.
func (g Group) Compression() compress.Codec { return nil }

// GoType is the type of a row as a map: rows are parquet.Row values.
func (g Group) GoType() reflect.Type { return reflect.TypeFor[map[string]any]() }

type field struct {
	parquet.Node
	name string
}

func (f *field) Name() string { return f.name }

// Value returns the zero reflect.Value: rows are not Go values.
func (f *field) Value(reflect.Value) reflect.Value { return reflect.Value{} }
