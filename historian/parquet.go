package historian

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/parquetgroup"
)

// MaxParquetRows is the most rows DecodeParquet reads from one object. An object whose footer
// declares more is refused before any row is read, and one whose pages hold more than it
// declares is refused as soon as it passes the limit: a history object holds one batch of
// one feature, far fewer rows, so a larger one is corrupt or not the historian's.
const MaxParquetRows = 10_000_000

// MaxParquetListElements is the most list elements, over all the rows and list columns of one
// object, that DecodeParquet reads: with MaxParquetRows it bounds the memory a decode takes,
// whatever the object claims.
const MaxParquetListElements = 10_000_000

// MaxParquetObjectBytes is the largest object DecodeParquet reads: it reads objects whole.
const MaxParquetObjectBytes = 1 << 30

// MaxParquetPageBytes is the largest page, uncompressed, that DecodeParquet reads. The pages
// EncodeParquet writes hold about 256 KiB, more only for a single larger value.
const MaxParquetPageBytes = 256 << 20

// The key-value metadata of every history object (docs/history.md).
const (
	metaSchemaVersion = "osprey.schema_version"
	metaFQN           = "osprey.fqn"
	metaPrimitive     = "osprey.primitive"
	metaKeys          = "osprey.keys"
)

// writeBatch is how many rows EncodeParquet hands the Parquet writer at a time.
const writeBatch = 512

// Timestamps are written as TIMESTAMP(NANOS, isAdjustedToUTC=true): the engine keeps
// timestamps as Unix nanoseconds, so every Value round-trips exactly, and write_time keeps
// the order of writes that fall within one microsecond.
var (
	tsNode     = parquet.Timestamp(parquet.Nanosecond)
	stringNode = parquet.String()
	dictString = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
	int32Node  = parquet.Leaf(parquet.Int32Type)
	int64Node  = parquet.Leaf(parquet.Int64Type)
	doubleNode = parquet.Leaf(parquet.DoubleType)
	boolNode   = parquet.Leaf(parquet.BooleanType)
)

// The columns before the key columns, in order.
const (
	colSchemaVersion = iota
	colFQN
	colKind
	colOp
	colSuperseded
	numHeadColumns
)

// The columns after the key columns, in order, numbered from the first of them.
const (
	tailKeys = iota
	tailPrimitive
	tailValueInt
	tailValueFloat
	tailValueString
	tailValueBool
	tailValueTimestamp
	tailValueIntList
	tailValueFloatList
	tailValueStringList
	tailValueBoolList
	tailValueTimestampList
	tailEventTime
	tailWriteTime
	tailBucketID
	tailBucketStart
	tailBucketEnd
	tailBucketOpen
	tailWindowSum
	tailWindowCount
	tailWindowMin
	tailWindowMax
	tailFence
	numTailColumns
)

// columnDef is one column of the history schema. A list column's leaf is at
// name.list.element; every other column is its own leaf.
type columnDef struct {
	name string
	node parquet.Node
	// kind, logic and shape describe the column for the decoder: its leaf's physical type
	// and logical type, and its nesting.
	kind   parquet.Kind
	logic  logicalKind
	shape  shape
	suffix []string // the leaf's path below the column: nil, or list.element
}

type logicalKind uint8

const (
	logicNone logicalKind = iota
	logicString
	logicTimestamp
)

type shape uint8

const (
	shapeRequired shape = iota // max definition level 0
	shapeOptional              // max definition level 1
	shapeList                  // optional list of required elements: levels 2 and 1
)

var listSuffix = []string{"list", "element"}

func required(name string, node parquet.Node, kind parquet.Kind, logic logicalKind) columnDef {
	return columnDef{name: name, node: node, kind: kind, logic: logic, shape: shapeRequired}
}

func optional(name string, node parquet.Node, kind parquet.Kind, logic logicalKind) columnDef {
	return columnDef{name: name, node: parquet.Optional(node), kind: kind, logic: logic, shape: shapeOptional}
}

func list(name string, elem parquet.Node, kind parquet.Kind, logic logicalKind) columnDef {
	return columnDef{
		name: name, node: parquet.Optional(parquet.List(parquet.Required(elem))),
		kind: kind, logic: logic, shape: shapeList, suffix: listSuffix,
	}
}

var headColumns = [numHeadColumns]columnDef{
	colSchemaVersion: required("schema_version", int32Node, parquet.Int32, logicNone),
	colFQN:           required("fqn", dictString, parquet.ByteArray, logicString),
	colKind:          required("kind", dictString, parquet.ByteArray, logicString),
	colOp:            required("op", dictString, parquet.ByteArray, logicString),
	colSuperseded:    required("superseded", boolNode, parquet.Boolean, logicNone),
}

var tailColumns = [numTailColumns]columnDef{
	tailKeys:               required("keys", stringNode, parquet.ByteArray, logicString),
	tailPrimitive:          required("primitive", dictString, parquet.ByteArray, logicString),
	tailValueInt:           optional("value_int", int64Node, parquet.Int64, logicNone),
	tailValueFloat:         optional("value_float", doubleNode, parquet.Double, logicNone),
	tailValueString:        optional("value_string", stringNode, parquet.ByteArray, logicString),
	tailValueBool:          optional("value_bool", boolNode, parquet.Boolean, logicNone),
	tailValueTimestamp:     optional("value_timestamp", tsNode, parquet.Int64, logicTimestamp),
	tailValueIntList:       list("value_int_list", int64Node, parquet.Int64, logicNone),
	tailValueFloatList:     list("value_float_list", doubleNode, parquet.Double, logicNone),
	tailValueStringList:    list("value_string_list", stringNode, parquet.ByteArray, logicString),
	tailValueBoolList:      list("value_bool_list", boolNode, parquet.Boolean, logicNone),
	tailValueTimestampList: list("value_timestamp_list", tsNode, parquet.Int64, logicTimestamp),
	tailEventTime:          required("event_time", tsNode, parquet.Int64, logicTimestamp),
	tailWriteTime:          required("write_time", tsNode, parquet.Int64, logicTimestamp),
	tailBucketID:           optional("bucket_id", int64Node, parquet.Int64, logicNone),
	tailBucketStart:        optional("bucket_start", tsNode, parquet.Int64, logicTimestamp),
	tailBucketEnd:          optional("bucket_end", tsNode, parquet.Int64, logicTimestamp),
	tailBucketOpen:         optional("bucket_open", boolNode, parquet.Boolean, logicNone),
	tailWindowSum:          optional("window_sum", doubleNode, parquet.Double, logicNone),
	tailWindowCount:        optional("window_count", doubleNode, parquet.Double, logicNone),
	tailWindowMin:          optional("window_min", doubleNode, parquet.Double, logicNone),
	tailWindowMax:          optional("window_max", doubleNode, parquet.Double, logicNone),
	tailFence:              required("fence", int64Node, parquet.Int64, logicNone),
}

// valueColumn is the tail column of each primitive's values.
var valueColumn = [...]int{
	engine.PrimitiveInt:           tailValueInt,
	engine.PrimitiveFloat:         tailValueFloat,
	engine.PrimitiveString:        tailValueString,
	engine.PrimitiveBool:          tailValueBool,
	engine.PrimitiveTimestamp:     tailValueTimestamp,
	engine.PrimitiveIntList:       tailValueIntList,
	engine.PrimitiveFloatList:     tailValueFloatList,
	engine.PrimitiveStringList:    tailValueStringList,
	engine.PrimitiveBoolList:      tailValueBoolList,
	engine.PrimitiveTimestampList: tailValueTimestampList,
}

// KeyColumn returns the name of the column that holds the values of the entity key called
// name: "key_" + name when name is made of ASCII letters, digits and '_' and does not start with '_' (every key
// name the engine accepts, see engine.ValidName), so key "card_id" is column key_card_id.
// Any other name is escaped, so that every column name is a plain identifier that SQL
// engines take unquoted: "key__" (two underscores, which no plain name's column starts
// with) followed by the name's bytes, each ASCII letter or digit as itself and every other
// byte, '_' included, as '_' and two lower-case hex digits ("shop é" → key__shop_20_c3_a9).
// Distinct names always give distinct columns.
func KeyColumn(name string) string {
	if plainKeyName(name) {
		return "key_" + name
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len("key__") + 3*len(name))
	b.WriteString("key__")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isASCIIAlnum(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func plainKeyName(name string) bool {
	if name == "" || name[0] == '_' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isASCIIAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// encodeKeyNames is the osprey.keys metadata: the key names, each path-escaped (which
// leaves engine key names as they are and escapes ',' and '%'), joined by ','.
func encodeKeyNames(names []string) string {
	esc := make([]string, len(names))
	for i, n := range names {
		esc[i] = url.PathEscape(n)
	}
	return strings.Join(esc, ",")
}

func decodeKeyNames(s string) ([]string, error) {
	if s == "" {
		return []string{}, nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		n, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		parts[i] = n
	}
	return parts, checkKeyNames(parts)
}

func checkKeyNames(names []string) error {
	if len(names) > parquet.MaxColumnIndex+1-numHeadColumns-numTailColumns {
		return fmt.Errorf("%d key names, more than a Parquet object has columns for", len(names))
	}
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("key name %d is empty", i)
		}
		if seen[n] {
			return fmt.Errorf("key name %q appears twice", n)
		}
		seen[n] = true
	}
	return nil
}

// layout is the schema of one feature's objects.
type layout struct {
	keyNames []string
	schema   *parquet.Schema
	// The bytes of the columns every row of an object shares.
	fqn, primitive []byte
}

// The bytes of the kind and op columns, converted once.
var (
	kindBytes = enumBytes(KindWrite, KindBucketFinal)
	opBytes   = enumBytes(engine.OpSet, engine.OpUpdate)
)

func enumBytes[E interface {
	~uint8
	String() string
}](first, last E) [][]byte {
	b := make([][]byte, last+1)
	for e := first; e <= last; e++ {
		b[e] = []byte(e.String())
	}
	return b
}

// newLayout returns the layout of the objects of the feature of r.
func newLayout(r *Record) (*layout, error) {
	keyNames := r.KeyNames
	if err := checkKeyNames(keyNames); err != nil {
		return nil, err
	}
	l := &layout{
		keyNames:  keyNames,
		fqn:       []byte(r.FQN),
		primitive: []byte(r.Primitive.String()),
	}
	fields := make(parquetgroup.Group, 0, numHeadColumns+len(keyNames)+numTailColumns)
	for _, c := range headColumns {
		fields = append(fields, parquetgroup.Field(c.name, c.node))
	}
	for _, n := range keyNames {
		fields = append(fields, parquetgroup.Field(KeyColumn(n), stringNode))
	}
	for _, c := range tailColumns {
		fields = append(fields, parquetgroup.Field(c.name, c.node))
	}
	l.schema = parquet.NewSchema("osprey_history", fields)
	return l, nil
}

// EncodeParquet writes recs to w as one Parquet object (docs/history.md): one row per record,
// zstd-compressed, with the feature's FQN, primitive and key names in the key-value
// metadata. The records must share one feature: the same FQN, a valid Primitive and the
// same KeyNames (no name empty, none twice), else nothing is written and the error names the
// first record that differs. recs must not be empty.
//
// Each record must also be well-formed: a known Kind and Op, one key value per key name, a
// Value that is null or of the Primitive's kind, a Bucket exactly for the bucket kinds, and
// every time (EventTime, WriteTime, the bucket's bounds, the elements of a timestamp list)
// within the years 1678 to 2262 that Unix nanoseconds hold, the zero time.Time included.
// All records are checked before anything is written; an error after that comes from w,
// which then holds part of an object that the caller discards.
func EncodeParquet(w io.Writer, recs []Record) error {
	if len(recs) == 0 {
		return errors.New("historian: encode parquet: no records (an object holds at least one)")
	}
	first := &recs[0]
	if !first.Primitive.Valid() {
		return fmt.Errorf("historian: encode parquet: record 0 (%s): invalid primitive %s", first.FQN, first.Primitive)
	}
	l, err := newLayout(first)
	if err != nil {
		return fmt.Errorf("historian: encode parquet: record 0 (%s): %w", first.FQN, err)
	}
	for i := range recs {
		if err := checkRecord(first, &recs[i]); err != nil {
			return fmt.Errorf("historian: encode parquet: record %d (%s): %w", i, recs[i].FQN, err)
		}
	}

	pw := parquet.NewWriter(w, l.schema,
		parquet.Compression(&parquet.Zstd),
		parquet.KeyValueMetadata(metaSchemaVersion, strconv.Itoa(SchemaVersion)),
		parquet.KeyValueMetadata(metaFQN, first.FQN),
		parquet.KeyValueMetadata(metaPrimitive, first.Primitive.String()),
		parquet.KeyValueMetadata(metaKeys, encodeKeyNames(first.KeyNames)),
	)
	rows := make([]parquet.Row, 0, writeBatch)
	for i := range recs {
		if len(rows) == cap(rows) {
			if _, err := pw.WriteRows(rows); err != nil {
				return fmt.Errorf("historian: encode parquet %s: %w", first.FQN, err)
			}
			rows = rows[:0]
		}
		rows = rows[:len(rows)+1]
		rows[len(rows)-1] = l.appendRow(rows[len(rows)-1][:0], &recs[i])
	}
	if _, err := pw.WriteRows(rows); err != nil {
		return fmt.Errorf("historian: encode parquet %s: %w", first.FQN, err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("historian: encode parquet %s: %w", first.FQN, err)
	}
	return nil
}

// Unix nanoseconds hold the times from minTime to maxTime.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func checkTime(field string, t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s %s is outside the years 1678 to 2262 that a timestamp column holds", field, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// checkRecord checks r, and that it has the feature of first.
func checkRecord(first, r *Record) error {
	switch {
	case r.FQN != first.FQN:
		return fmt.Errorf("feature %q, not %q: an object holds one feature", r.FQN, first.FQN)
	case r.Primitive != first.Primitive:
		return fmt.Errorf("primitive %s, not %s: an object holds one feature", r.Primitive, first.Primitive)
	case !slices.Equal(r.KeyNames, first.KeyNames):
		return fmt.Errorf("key names (%s), not (%s): an object holds one feature", strings.Join(r.KeyNames, ", "), strings.Join(first.KeyNames, ", "))
	case len(r.Keys) != len(r.KeyNames):
		return fmt.Errorf("%d key values for %d key names", len(r.Keys), len(r.KeyNames))
	case r.Op < engine.OpSet || r.Op > engine.OpUpdate:
		return fmt.Errorf("op %s is not a write", r.Op)
	}
	switch r.Kind {
	case KindWrite:
		if r.Bucket != nil {
			return errors.New("a write record with a bucket")
		}
	case KindBucketSnapshot, KindBucketFinal:
		if r.Bucket == nil {
			return fmt.Errorf("a %s record without a bucket", r.Kind)
		}
		if err := checkTime("bucket start", r.Bucket.Start); err != nil {
			return err
		}
		if err := checkTime("bucket end", r.Bucket.End); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown record kind %d", r.Kind)
	}
	if k := r.Value.Kind(); k != engine.KindNull && k != engine.Kind(r.Primitive) {
		return fmt.Errorf("a %s value for a %s feature", k, r.Primitive)
	}
	for i, t := range r.Value.Times() {
		if t.Before(minTime) || t.After(maxTime) {
			return checkTime(fmt.Sprintf("timestamp list element %d", i), t)
		}
	}
	if err := checkTime("event time", r.EventTime); err != nil {
		return err
	}
	return checkTime("write time", r.WriteTime)
}

func stringValue(s string) parquet.Value { return parquet.ByteArrayValue([]byte(s)) }

func timeValue(t time.Time) parquet.Value { return parquet.Int64Value(t.UnixNano()) }

// appendRow appends r's row to row, r being a record checkRecord accepted of the feature l
// was set for: one value per leaf column, in column order, except for
// the list columns, which have one value per element (a null one for a null or empty list).
func (l *layout) appendRow(row parquet.Row, r *Record) parquet.Row {
	col := 0
	req := func(v parquet.Value) {
		row = append(row, v.Level(0, 0, col))
		col++
	}
	opt := func(v parquet.Value, ok bool) {
		if ok {
			row = append(row, v.Level(0, 1, col))
		} else {
			row = append(row, parquet.NullValue().Level(0, 0, col))
		}
		col++
	}
	req(parquet.Int32Value(SchemaVersion))
	req(parquet.ByteArrayValue(l.fqn))
	req(parquet.ByteArrayValue(kindBytes[r.Kind]))
	req(parquet.ByteArrayValue(opBytes[r.Op]))
	req(parquet.BooleanValue(r.Superseded))
	var key parquet.Value
	for _, k := range r.Keys {
		key = stringValue(k)
		req(key)
	}
	if len(r.Keys) != 1 || r.EncodedKeys != r.Keys[0] {
		key = stringValue(r.EncodedKeys) // else one key is its own encoding
	}
	req(key)
	req(parquet.ByteArrayValue(l.primitive))

	v := r.Value
	k := v.Kind()
	opt(parquet.Int64Value(v.Int()), k == engine.KindInt)
	opt(parquet.DoubleValue(v.Float()), k == engine.KindFloat)
	opt(stringValue(v.Str()), k == engine.KindString)
	opt(parquet.BooleanValue(v.Bool()), k == engine.KindBool)
	opt(parquet.Int64Value(int64(v.Bits())), k == engine.KindTimestamp)
	row = appendList(row, col+0, k == engine.KindIntList, v.Ints(), parquet.Int64Value)
	row = appendList(row, col+1, k == engine.KindFloatList, v.Floats(), parquet.DoubleValue)
	row = appendList(row, col+2, k == engine.KindStringList, v.Strs(), stringValue)
	row = appendList(row, col+3, k == engine.KindBoolList, v.Bools(), parquet.BooleanValue)
	row = appendList(row, col+4, k == engine.KindTimestampList, v.Times(), timeValue)
	col += 5

	req(timeValue(r.EventTime))
	req(timeValue(r.WriteTime))
	var b BucketRecord
	ok := r.Bucket != nil
	if ok {
		b = *r.Bucket
	}
	opt(parquet.Int64Value(b.ID), ok)
	opt(timeValue(b.Start), ok)
	opt(timeValue(b.End), ok)
	opt(parquet.BooleanValue(b.Open), ok)
	opt(parquet.DoubleValue(b.Sum), ok)
	opt(parquet.DoubleValue(b.Count), ok)
	opt(parquet.DoubleValue(b.Min), ok)
	opt(parquet.DoubleValue(b.Max), ok)
	req(parquet.Int64Value(r.Fence))
	return row
}

// appendList appends the values of an optional list of required elements: a null value at
// definition level 0 for no list (set is false), one at level 1 for an empty list, else
// each element at level 2, the first at repetition level 0 and the others at 1.
func appendList[T any](row parquet.Row, col int, set bool, elems []T, value func(T) parquet.Value) parquet.Row {
	switch {
	case !set:
		return append(row, parquet.NullValue().Level(0, 0, col))
	case len(elems) == 0:
		return append(row, parquet.NullValue().Level(0, 1, col))
	}
	for i, e := range elems {
		rep := 1
		if i == 0 {
			rep = 0
		}
		row = append(row, value(e).Level(rep, 2, col))
	}
	return row
}

// DecodeParquet reads the records of a Parquet object that EncodeParquet wrote, size bytes
// of r. The feature comes from the object's key-value metadata, and every row must agree
// with it; the records share one KeyNames slice, which the caller must not modify. Columns
// are found by name, so an object with more columns than this build knows (a later version
// of the same SchemaVersion) is read, its extra columns ignored.
//
// It reads the object whole, with one ReadAt, and checks its structure before it decodes a
// page: objects of more than MaxParquetObjectBytes, pages of more than MaxParquetPageBytes
// and compression codecs other than zstd (and none) are refused. It also refuses, with an
// error that names the column and the row (counted from 0) at fault: an object of a
// SchemaVersion newer than this build's; one without the metadata, or lacking a column or
// holding it with another type; one that declares or holds more than MaxParquetRows rows or
// MaxParquetListElements list elements; and any row that is not a record EncodeParquet
// could have written. A corrupt or truncated object gives an error, never a panic.
func DecodeParquet(r io.ReaderAt, size int64) (recs []Record, err error) {
	if size < 0 || size > MaxParquetObjectBytes {
		return nil, fmt.Errorf("historian: decode parquet: the object's %d bytes are more than the %d allowed", size, MaxParquetObjectBytes)
	}
	buf := make([]byte, size)
	if n, err := r.ReadAt(buf, 0); n != len(buf) {
		return nil, fmt.Errorf("historian: decode parquet: reading the object: %d of %d bytes: %w", n, size, err)
	}
	defer func() {
		// parquet-go trusts much of what an object says about itself: even after the checks
		// below, some corrupt pages make it panic rather than return an error.
		if p := recover(); p != nil {
			recs, err = nil, fmt.Errorf("historian: decode parquet: corrupt object: %v", p)
		}
	}()
	dataEnd, err := checkStructure(buf)
	if err != nil {
		return nil, fmt.Errorf("historian: decode parquet: %w", err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(buf), size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("historian: decode parquet: %w", err)
	}
	if err := checkPages(buf, dataEnd, f.Metadata()); err != nil {
		return nil, fmt.Errorf("historian: decode parquet: %w", err)
	}
	d, err := newDecoder(f)
	if err != nil {
		return nil, fmt.Errorf("historian: decode parquet: %w", err)
	}
	recs, err = d.decode(f)
	if err != nil {
		return nil, fmt.Errorf("historian: decode parquet %s: %w", d.fqn, err)
	}
	return recs, nil
}

// checkStructure checks the end of a Parquet object, the footer's length and "PAR1", and
// that the footer is well-formed Thrift whose every length fits in it: parquet.OpenFile
// allocates the footer's length before it compares it with the object's size, and each
// list of the footer at the length the list declares. It returns where the footer starts.
func checkStructure(b []byte) (dataEnd int64, err error) {
	const magic = "PAR1"
	if len(b) < 2*len(magic)+4 {
		return 0, fmt.Errorf("%d bytes are too few for a Parquet object", len(b))
	}
	if string(b[:4]) != magic || string(b[len(b)-4:]) != magic {
		return 0, fmt.Errorf("not a Parquet object: it starts with %q and ends with %q, not %q", b[:4], b[len(b)-4:], magic)
	}
	n := int64(binary.LittleEndian.Uint32(b[len(b)-8:]))
	dataEnd = int64(len(b)) - 8 - n
	if dataEnd < int64(len(magic)) {
		return 0, fmt.Errorf("the footer's length %d is more than the %d-byte object holds", n, len(b))
	}
	c := thriftCheck{b: b[dataEnd : len(b)-8]}
	if err := c.value(thriftStruct); err != nil {
		return 0, fmt.Errorf("corrupt footer at byte %d of %d: %w", c.off, n, err)
	}
	return dataEnd, nil
}

// checkPages walks the page headers of every column chunk: each must decode within its
// chunk, with a page that fits in the chunk and, uncompressed, in MaxParquetPageBytes.
// parquet-go allocates what a page header declares before it reads the page.
func checkPages(b []byte, dataEnd int64, md *format.FileMetaData) error {
	protocol := new(thrift.CompactProtocol)
	for g, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			m := &cc.MetaData
			col := strings.Join(m.PathInSchema, ".")
			// EncodeParquet writes zstd. parquet-go's decoders of some other codecs trust the
			// data they decompress (its LZ4 decoder doubles its buffer until a corrupt block
			// fits, without end), so a bit flipped in a codec field must not select them.
			if m.Codec != format.Zstd && m.Codec != format.Uncompressed {
				return fmt.Errorf("row group %d, column %s: %s compression (history objects are zstd-compressed)", g, col, m.Codec)
			}
			start := m.DataPageOffset // where parquet-go starts reading the chunk
			if m.DictionaryPageOffset != 0 {
				start = m.DictionaryPageOffset
			}
			end := start + m.TotalCompressedSize
			if start < 4 || m.TotalCompressedSize < 0 || end < start || end > dataEnd {
				return fmt.Errorf("row group %d, column %s: the chunk's %d bytes at %d are outside the object's pages", g, col, m.TotalCompressedSize, start)
			}
			for off := start; off < end; {
				r := protocol.NewReaderFromBytes(b[off:end])
				var h format.PageHeader
				if err := thrift.NewDecoder(r).Decode(&h); err != nil {
					return fmt.Errorf("row group %d, column %s: page header at byte %d: %w", g, col, off, err)
				}
				off += int64(r.BytesRead())
				levels, nulls := int64(0), false
				if v2 := h.DataPageHeaderV2; v2.Valid {
					levels = int64(v2.V.RepetitionLevelsByteLength) + int64(v2.V.DefinitionLevelsByteLength)
					nulls = v2.V.NumNulls > v2.V.NumValues
				}
				switch {
				case h.CompressedPageSize < 0 || int64(h.CompressedPageSize) > end-off:
					return fmt.Errorf("row group %d, column %s: the page at byte %d declares %d bytes, beyond its chunk", g, col, off, h.CompressedPageSize)
				case h.UncompressedPageSize < 0 || h.UncompressedPageSize > MaxParquetPageBytes:
					return fmt.Errorf("row group %d, column %s: the page at byte %d declares %d bytes uncompressed, more than the %d allowed", g, col, off, h.UncompressedPageSize, MaxParquetPageBytes)
				case levels < 0 || levels > int64(h.CompressedPageSize):
					return fmt.Errorf("row group %d, column %s: the page at byte %d declares %d bytes of levels in %d bytes", g, col, off, levels, h.CompressedPageSize)
				case nulls:
					return fmt.Errorf("row group %d, column %s: the page at byte %d declares more nulls than values", g, col, off)
				}
				off += int64(h.CompressedPageSize)
			}
		}
	}
	return nil
}

// Thrift compact protocol types.
const (
	thriftTrue   = 1
	thriftFalse  = 2
	thriftByte   = 3
	thriftI16    = 4
	thriftI32    = 5
	thriftI64    = 6
	thriftDouble = 7
	thriftBinary = 8
	thriftList   = 9
	thriftSet    = 10
	thriftMap    = 11
	thriftStruct = 12
)

// thriftCheck walks a Thrift compact protocol value without decoding it, checking that
// every length, and every count of a list, set or map (each element takes a byte at least),
// fits in what is left of b.
type thriftCheck struct {
	b     []byte
	off   int
	depth int
}

var errThriftShort = errors.New("a length is more than the bytes left")

func (c *thriftCheck) skip(n uint64) error {
	if n > uint64(len(c.b)-c.off) {
		return errThriftShort
	}
	c.off += int(n)
	return nil
}

func (c *thriftCheck) uvarint() (uint64, error) {
	v, n := binary.Uvarint(c.b[c.off:])
	if n <= 0 {
		return 0, errors.New("a bad varint")
	}
	c.off += n
	return v, nil
}

func (c *thriftCheck) byte() (byte, error) {
	if c.off >= len(c.b) {
		return 0, errThriftShort
	}
	c.off++
	return c.b[c.off-1], nil
}

// value walks a value of type typ; elem is set for the elements of lists, sets and maps,
// where a bool takes a byte.
func (c *thriftCheck) value(typ byte) error { return c.walk(typ, false) }

func (c *thriftCheck) walk(typ byte, elem bool) error {
	switch typ {
	case thriftTrue, thriftFalse:
		if elem {
			return c.skip(1)
		}
		return nil
	case thriftByte:
		return c.skip(1)
	case thriftI16, thriftI32, thriftI64:
		_, err := c.uvarint()
		return err
	case thriftDouble:
		return c.skip(8)
	case thriftBinary:
		n, err := c.uvarint()
		if err != nil {
			return err
		}
		return c.skip(n)
	}
	if c.depth++; c.depth > 32 {
		return errors.New("values nested too deep")
	}
	defer func() { c.depth-- }()
	switch typ {
	case thriftList, thriftSet:
		h, err := c.byte()
		if err != nil {
			return err
		}
		n := uint64(h >> 4)
		if n == 15 {
			if n, err = c.uvarint(); err != nil {
				return err
			}
		}
		if n > uint64(len(c.b)-c.off) {
			return errThriftShort
		}
		for range n {
			if err := c.walk(h&0xf, true); err != nil {
				return err
			}
		}
		return nil
	case thriftMap:
		n, err := c.uvarint()
		if err != nil || n == 0 {
			return err
		}
		kv, err := c.byte()
		if err != nil {
			return err
		}
		if n > uint64(len(c.b)-c.off)/2 {
			return errThriftShort
		}
		for range n {
			if err := c.walk(kv>>4, true); err != nil {
				return err
			}
			if err := c.walk(kv&0xf, true); err != nil {
				return err
			}
		}
		return nil
	case thriftStruct:
		for {
			h, err := c.byte()
			if err != nil {
				return err
			}
			if h == 0 { // stop
				return nil
			}
			if h>>4 == 0 { // the field ID follows, instead of a delta in the header
				if _, err := c.uvarint(); err != nil {
					return err
				}
			}
			if err := c.walk(h&0xf, false); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unknown type %d", typ)
}

// decoder reads the rows of one object.
type decoder struct {
	fqn       string
	primitive engine.Primitive
	keyNames  []string
	// cols are the columns read, in the writer's order: the head columns, the key columns,
	// the tail columns.
	cols []decodeColumn
	// slot maps a leaf column of the object to its index in cols, or -1 for a column this
	// build does not know.
	slot []int
	// per row
	vals  []parquet.Value   // the value of each scalar column
	seen  []int             // how many values each column had
	elems [][]parquet.Value // the elements of each list column
	// totals
	rows, listElems int64
}

type decodeColumn struct {
	columnDef
	// nsPer is the nanoseconds per unit of a timestamp column.
	nsPer int64
}

func newDecoder(f *parquet.File) (*decoder, error) {
	meta := func(key string) (string, error) {
		v, ok := f.Lookup(key)
		if !ok {
			return "", fmt.Errorf("not a history object: no %s metadata", key)
		}
		return v, nil
	}
	vs, err := meta(metaSchemaVersion)
	if err != nil {
		return nil, err
	}
	version, err := strconv.Atoi(vs)
	switch {
	case err != nil || version < 1:
		return nil, fmt.Errorf("metadata %s is %q, not a schema version", metaSchemaVersion, vs)
	case version > SchemaVersion:
		return nil, fmt.Errorf("the object has schema version %d, newer than the %d this build reads: read it with a newer osprey", version, SchemaVersion)
	}
	d := &decoder{}
	if d.fqn, err = meta(metaFQN); err != nil {
		return nil, err
	}
	ps, err := meta(metaPrimitive)
	if err != nil {
		return nil, err
	}
	if d.primitive, err = engine.ParsePrimitive(ps); err != nil || ps != d.primitive.String() {
		return nil, fmt.Errorf("metadata %s is %q, not a primitive", metaPrimitive, ps)
	}
	ks, err := meta(metaKeys)
	if err != nil {
		return nil, err
	}
	if d.keyNames, err = decodeKeyNames(ks); err != nil {
		return nil, fmt.Errorf("metadata %s %q: %w", metaKeys, ks, err)
	}
	if n := f.NumRows(); n < 0 || n > MaxParquetRows {
		return nil, fmt.Errorf("the object declares %d rows, more than the %d allowed", n, MaxParquetRows)
	}

	d.cols = make([]decodeColumn, 0, numHeadColumns+len(d.keyNames)+numTailColumns)
	for _, c := range headColumns {
		d.cols = append(d.cols, decodeColumn{columnDef: c})
	}
	for _, n := range d.keyNames {
		d.cols = append(d.cols, decodeColumn{columnDef: required(KeyColumn(n), stringNode, parquet.ByteArray, logicString)})
	}
	for _, c := range tailColumns {
		d.cols = append(d.cols, decodeColumn{columnDef: c})
	}

	// The object's leaf columns by path (joined by NUL, which no column name holds).
	leaves := map[string]*parquet.Column{}
	numLeaves := 0
	var walk func(c *parquet.Column)
	walk = func(c *parquet.Column) {
		if c.Leaf() {
			leaves[strings.Join(c.Path(), "\x00")] = c
			numLeaves++
			return
		}
		for _, child := range c.Columns() {
			walk(child)
		}
	}
	walk(f.Root())
	d.slot = make([]int, numLeaves)
	for i := range d.slot {
		d.slot[i] = -1
	}
	for i := range d.cols {
		c := &d.cols[i]
		leaf := leaves[strings.Join(append([]string{c.name}, c.suffix...), "\x00")]
		if leaf == nil {
			return nil, fmt.Errorf("column %s: missing", c.name)
		}
		if err := c.check(leaf); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
		if idx := leaf.Index(); idx >= 0 && idx < len(d.slot) {
			d.slot[idx] = i
		} else {
			return nil, fmt.Errorf("column %s: leaf index %d out of range", c.name, idx)
		}
	}
	d.vals = make([]parquet.Value, len(d.cols))
	d.seen = make([]int, len(d.cols))
	d.elems = make([][]parquet.Value, len(d.cols))
	return d, nil
}

var shapeNames = [...]string{shapeRequired: "required", shapeOptional: "optional", shapeList: "an optional list of required"}

// check checks that leaf is the leaf of the column c describes, and sets c.nsPer.
func (c *decodeColumn) check(leaf *parquet.Column) error {
	typ := leaf.Type()
	want := shapeNames[c.shape] + " " + c.kind.String()
	switch c.logic {
	case logicString:
		want += " (STRING)"
	case logicTimestamp:
		want += " (TIMESTAMP)"
	}
	have := fmt.Sprintf("%s (%s) with repetition and definition levels %d and %d",
		typ.Kind(), typ.LogicalType(), leaf.MaxRepetitionLevel(), leaf.MaxDefinitionLevel())
	bad := fmt.Errorf("want %s, have %s", want, have)
	if typ.Kind() != c.kind {
		return bad
	}
	rep, def := 0, int(c.shape) // the shapes are numbered by their definition levels
	if c.shape == shapeList {
		rep = 1
	}
	if leaf.MaxRepetitionLevel() != rep || leaf.MaxDefinitionLevel() != def {
		return bad
	}
	lt := typ.LogicalType()
	var ltv format.LogicalTypeValue
	if lt != nil {
		ltv = lt.Value
	}
	switch c.logic {
	case logicString:
		if _, ok := ltv.(*format.StringType); !ok {
			return bad
		}
	case logicTimestamp:
		ts, ok := ltv.(*format.TimestampType)
		if !ok || !ts.IsAdjustedToUTC {
			return bad
		}
		switch ts.Unit.Value.(type) {
		case *format.NanoSeconds:
			c.nsPer = 1
		case *format.MicroSeconds:
			c.nsPer = 1e3
		case *format.MilliSeconds:
			c.nsPer = 1e6
		default:
			return bad
		}
	}
	return nil
}

func (d *decoder) decode(f *parquet.File) ([]Record, error) {
	recs := make([]Record, 0, min(f.NumRows(), 1<<14))
	buf := make([]parquet.Row, 128)
	for g, rg := range f.RowGroups() {
		if n := rg.NumRows(); n < 0 || n > MaxParquetRows-d.rows {
			return nil, fmt.Errorf("row group %d declares %d rows, more than the %d allowed in all", g, n, MaxParquetRows)
		}
		var err error
		if recs, err = d.decodeRowGroup(rg, buf, recs); err != nil {
			return nil, err
		}
	}
	if int64(len(recs)) != f.NumRows() {
		return nil, fmt.Errorf("the object declares %d rows and holds %d", f.NumRows(), len(recs))
	}
	return recs, nil
}

func (d *decoder) decodeRowGroup(rg parquet.RowGroup, buf []parquet.Row, recs []Record) ([]Record, error) {
	rows := rg.Rows()
	defer rows.Close()
	for {
		n, err := rows.ReadRows(buf)
		for i := range n {
			if d.rows >= MaxParquetRows {
				return nil, fmt.Errorf("the object holds more than the %d rows allowed", MaxParquetRows)
			}
			rec, err := d.record(buf[i])
			if err != nil {
				return nil, fmt.Errorf("row %d: %w", d.rows, err)
			}
			recs = append(recs, rec)
			d.rows++
		}
		switch {
		case errors.Is(err, io.EOF):
			return recs, nil
		case err != nil:
			return nil, fmt.Errorf("row %d: %w", d.rows+int64(n), err)
		case n == 0:
			return nil, fmt.Errorf("row %d: the reader returned no rows and no error", d.rows)
		}
	}
}

// record turns one row into a Record.
func (d *decoder) record(row parquet.Row) (Record, error) {
	clear(d.seen)
	for i := range d.elems {
		d.elems[i] = d.elems[i][:0]
	}
	for _, v := range row {
		c := v.Column()
		if c < 0 || c >= len(d.slot) {
			return Record{}, fmt.Errorf("a value of leaf column %d, which the object does not have", c)
		}
		s := d.slot[c]
		if s < 0 {
			continue
		}
		d.seen[s]++
		if d.cols[s].shape == shapeList {
			d.elems[s] = append(d.elems[s], v)
		} else {
			d.vals[s] = v
		}
	}
	for s := range d.cols {
		if d.seen[s] == 0 || d.cols[s].shape != shapeList && d.seen[s] != 1 {
			return Record{}, fmt.Errorf("column %s: %d values in the row, want one", d.cols[s].name, d.seen[s])
		}
		if d.cols[s].shape != shapeRequired || !d.vals[s].IsNull() {
			continue
		}
		return Record{}, fmt.Errorf("column %s: null in a required column", d.cols[s].name)
	}

	nk := len(d.keyNames)
	tail := numHeadColumns + nk
	rec := Record{
		FQN:       d.fqn,
		Primitive: d.primitive,
		KeyNames:  d.keyNames,
		Fence:     d.vals[tail+tailFence].Int64(),
	}
	if v := d.vals[colSchemaVersion].Int32(); v < 1 || v > SchemaVersion {
		return Record{}, fmt.Errorf("column schema_version: version %d, not one this build reads (1 to %d)", v, SchemaVersion)
	}
	if b := d.vals[colFQN].ByteArray(); string(b) != d.fqn {
		return Record{}, fmt.Errorf("column fqn: %q, but the object's metadata says %q", b, d.fqn)
	}
	kind, ok := ParseRecordKind(string(d.vals[colKind].ByteArray()))
	if !ok {
		return Record{}, fmt.Errorf("column kind: unknown kind %q", d.vals[colKind].ByteArray())
	}
	rec.Kind = kind
	if rec.Op, ok = parseOp(d.vals[colOp].ByteArray()); !ok {
		return Record{}, fmt.Errorf("column op: %q is not a write operation", d.vals[colOp].ByteArray())
	}
	rec.Superseded = d.vals[colSuperseded].Boolean()
	rec.Keys = make([]string, nk)
	for i := range nk {
		rec.Keys[i] = string(d.vals[numHeadColumns+i].ByteArray())
	}
	rec.EncodedKeys = string(d.vals[tail+tailKeys].ByteArray())
	if b := d.vals[tail+tailPrimitive].ByteArray(); string(b) != d.primitive.String() {
		return Record{}, fmt.Errorf("column primitive: %q, but the object's metadata says %q", b, d.primitive)
	}

	want := tail + valueColumn[d.primitive]
	for s := tail + tailValueInt; s <= tail+tailValueTimestampList; s++ {
		if s != want && d.set(s) {
			return Record{}, fmt.Errorf("column %s: set in a %s feature's object", d.cols[s].name, d.primitive)
		}
	}
	if d.set(want) {
		v, err := d.value(want)
		if err != nil {
			return Record{}, fmt.Errorf("column %s: %w", d.cols[want].name, err)
		}
		rec.Value = v
	}

	var err error
	if rec.EventTime, err = d.time(tail + tailEventTime); err != nil {
		return Record{}, err
	}
	if rec.WriteTime, err = d.time(tail + tailWriteTime); err != nil {
		return Record{}, err
	}
	bucket := kind != KindWrite
	for s := tail + tailBucketID; s <= tail+tailWindowMax; s++ {
		if d.set(s) != bucket {
			if bucket {
				return Record{}, fmt.Errorf("column %s: null in a %s record", d.cols[s].name, kind)
			}
			return Record{}, fmt.Errorf("column %s: set in a %s record", d.cols[s].name, kind)
		}
	}
	if bucket {
		b := &BucketRecord{
			ID:    d.vals[tail+tailBucketID].Int64(),
			Open:  d.vals[tail+tailBucketOpen].Boolean(),
			Sum:   d.vals[tail+tailWindowSum].Double(),
			Count: d.vals[tail+tailWindowCount].Double(),
			Min:   d.vals[tail+tailWindowMin].Double(),
			Max:   d.vals[tail+tailWindowMax].Double(),
		}
		if b.Start, err = d.time(tail + tailBucketStart); err != nil {
			return Record{}, err
		}
		if b.End, err = d.time(tail + tailBucketEnd); err != nil {
			return Record{}, err
		}
		rec.Bucket = b
	}
	return rec, nil
}

// set reports whether column s is not null in the row (for a list, an empty list is set).
func (d *decoder) set(s int) bool {
	if d.cols[s].shape == shapeList {
		e := d.elems[s]
		return len(e) > 1 || len(e) == 1 && e[0].DefinitionLevel() > 0
	}
	return !d.vals[s].IsNull()
}

// nanos returns a timestamp column's value in Unix nanoseconds.
func (d *decoder) nanos(s int, v parquet.Value) (int64, error) {
	n, per := v.Int64(), d.cols[s].nsPer
	if per == 1 {
		return n, nil
	}
	if n > math.MaxInt64/per || n < math.MinInt64/per {
		return 0, fmt.Errorf("column %s: %d is outside the years 1678 to 2262", d.cols[s].name, n)
	}
	return n * per, nil
}

func (d *decoder) time(s int) (time.Time, error) {
	n, err := d.nanos(s, d.vals[s])
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n).UTC(), nil
}

// value returns the Value of the set value column s.
func (d *decoder) value(s int) (engine.Value, error) {
	v := d.vals[s]
	switch d.primitive {
	case engine.PrimitiveInt:
		return engine.Int(v.Int64()), nil
	case engine.PrimitiveFloat:
		return engine.Float(v.Double()), nil
	case engine.PrimitiveString:
		return engine.String(string(v.ByteArray())), nil
	case engine.PrimitiveBool:
		return engine.Bool(v.Boolean()), nil
	case engine.PrimitiveTimestamp:
		n, err := d.nanos(s, v)
		if err != nil {
			return engine.Null, err
		}
		return engine.Timestamp(time.Unix(0, n)), nil
	}

	elems := d.elems[s]
	if len(elems) == 1 && elems[0].DefinitionLevel() == 1 {
		elems = elems[:0] // an empty list
	}
	if d.listElems += int64(len(elems)); d.listElems > MaxParquetListElements {
		return engine.Null, fmt.Errorf("the object holds more than the %d list elements allowed", MaxParquetListElements)
	}
	for i, e := range elems {
		if e.DefinitionLevel() != 2 {
			return engine.Null, fmt.Errorf("element %d: null in a list of required elements", i)
		}
	}
	switch d.primitive {
	case engine.PrimitiveIntList:
		return engine.IntList(listOf(elems, parquet.Value.Int64)), nil
	case engine.PrimitiveFloatList:
		return engine.FloatList(listOf(elems, parquet.Value.Double)), nil
	case engine.PrimitiveStringList:
		return engine.StringList(listOf(elems, func(v parquet.Value) string { return string(v.ByteArray()) })), nil
	case engine.PrimitiveBoolList:
		return engine.BoolList(listOf(elems, parquet.Value.Boolean)), nil
	case engine.PrimitiveTimestampList:
		ts := make([]time.Time, len(elems))
		for i, e := range elems {
			n, err := d.nanos(s, e)
			if err != nil {
				return engine.Null, fmt.Errorf("element %d: %w", i, err)
			}
			ts[i] = time.Unix(0, n).UTC()
		}
		return engine.TimestampList(ts), nil
	}
	return engine.Null, fmt.Errorf("no value column for primitive %s", d.primitive)
}

func listOf[T any](elems []parquet.Value, get func(parquet.Value) T) []T {
	l := make([]T, len(elems))
	for i, e := range elems {
		l[i] = get(e)
	}
	return l
}

// parseOp is the inverse of engine.Op.String for the write operations.
func parseOp(b []byte) (engine.Op, bool) {
	switch string(b) {
	case "set":
		return engine.OpSet, true
	case "append":
		return engine.OpAppend, true
	case "incr":
		return engine.OpIncr, true
	case "update":
		return engine.OpUpdate, true
	}
	return 0, false
}
