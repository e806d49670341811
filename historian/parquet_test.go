package historian

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/parquetgroup"
)

var (
	pqT0      = time.Date(2026, 12, 1, 10, 15, 0, 123456789, time.UTC)
	pqNegZero = math.Copysign(0, -1)
)

// pqFeature describes the feature of test records.
type pqFeature struct {
	fqn       string
	primitive engine.Primitive
	keyNames  []string
}

// write returns a write record of f for the key values keys.
func (f pqFeature) write(i int, v engine.Value, keys ...string) Record {
	return Record{
		Kind:        KindWrite,
		FQN:         f.fqn,
		Primitive:   f.primitive,
		KeyNames:    f.keyNames,
		Keys:        keys,
		EncodedKeys: pqEncodeKeys(f.keyNames, keys),
		Op:          engine.OpSet,
		Value:       v,
		EventTime:   pqT0.Add(time.Duration(i) * time.Second),
		WriteTime:   pqT0.Add(time.Duration(i)*time.Second + 7),
		Fence:       int64(i),
	}
}

func (f pqFeature) bucket(i int, kind RecordKind, b BucketRecord, keys ...string) Record {
	r := f.write(i, engine.Null, keys...)
	r.Kind, r.Op, r.Bucket = kind, engine.OpUpdate, &b
	return r
}

func pqEncodeKeys(names, values []string) string {
	keys := engine.Keys{}
	for i, n := range names {
		keys[n] = values[i]
	}
	enc, err := engine.EncodeKeys(names, keys)
	if err != nil {
		panic(err)
	}
	return enc
}

func pqEncode(t testing.TB, recs []Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := EncodeParquet(&buf, recs); err != nil {
		t.Fatalf("EncodeParquet: %v", err)
	}
	return buf.Bytes()
}

func pqDecode(b []byte) ([]Record, error) { return DecodeParquet(bytes.NewReader(b), int64(len(b))) }

// pqSameValue is Value.Equal with floats compared by their bits, so that NaN equals NaN and
// -0 differs from 0, and lists of kind k compared without regard to nil.
func pqSameValue(a, b engine.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case engine.KindFloat:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case engine.KindFloatList:
		return slices.EqualFunc(a.Floats(), b.Floats(), func(x, y float64) bool {
			return math.Float64bits(x) == math.Float64bits(y)
		})
	case engine.KindTimestamp:
		return a.Bits() == b.Bits()
	}
	return a.Equal(b)
}

func pqSameFloat(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

// pqDiffRecord describes how got differs from want, or returns "".
func pqDiffRecord(want, got Record) string {
	var d []string
	check := func(field string, ok bool, w, g any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	check("Kind", got.Kind == want.Kind, want.Kind, got.Kind)
	check("FQN", got.FQN == want.FQN, want.FQN, got.FQN)
	check("Primitive", got.Primitive == want.Primitive, want.Primitive, got.Primitive)
	check("KeyNames", slices.Equal(got.KeyNames, want.KeyNames), want.KeyNames, got.KeyNames)
	check("Keys", slices.Equal(got.Keys, want.Keys), want.Keys, got.Keys)
	check("EncodedKeys", got.EncodedKeys == want.EncodedKeys, want.EncodedKeys, got.EncodedKeys)
	check("Op", got.Op == want.Op, want.Op, got.Op)
	check("Superseded", got.Superseded == want.Superseded, want.Superseded, got.Superseded)
	check("Value", pqSameValue(got.Value, want.Value), want.Value, got.Value)
	check("EventTime", got.EventTime.Equal(want.EventTime), want.EventTime, got.EventTime)
	check("WriteTime", got.WriteTime.Equal(want.WriteTime), want.WriteTime, got.WriteTime)
	check("Fence", got.Fence == want.Fence, want.Fence, got.Fence)
	switch {
	case (got.Bucket == nil) != (want.Bucket == nil):
		d = append(d, fmt.Sprintf("Bucket: got %v, want %v", got.Bucket, want.Bucket))
	case got.Bucket != nil:
		g, w := *got.Bucket, *want.Bucket
		ok := g.ID == w.ID && g.Start.Equal(w.Start) && g.End.Equal(w.End) && g.Open == w.Open &&
			pqSameFloat(g.Sum, w.Sum) && pqSameFloat(g.Count, w.Count) && pqSameFloat(g.Min, w.Min) && pqSameFloat(g.Max, w.Max)
		check("Bucket", ok, w, g)
	}
	if got.EventTime.Location() != time.UTC || got.WriteTime.Location() != time.UTC {
		d = append(d, "times not in UTC")
	}
	return strings.Join(d, "; ")
}

func pqCheckRoundTrip(t *testing.T, recs []Record) []byte {
	t.Helper()
	b := pqEncode(t, recs)
	got, err := pqDecode(b)
	if err != nil {
		t.Fatalf("DecodeParquet: %v", err)
	}
	if len(got) != len(recs) {
		t.Fatalf("decoded %d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if d := pqDiffRecord(recs[i], got[i]); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
	return b
}

func TestParquetRoundTrip(t *testing.T) {
	card := []string{"card"}
	ts := func(ns int64) time.Time { return time.Unix(0, ns).UTC() }
	manyKeys := make([]string, 40)
	manyValues := make([]string, 40)
	for i := range manyKeys {
		manyKeys[i] = "k" + strconv.Itoa(i)
		manyValues[i] = strings.Repeat("v", i)
	}
	scalar := func(p engine.Primitive, vs ...engine.Value) []Record {
		f := pqFeature{"fraud." + strings.Trim(p.String(), "[]"), p, card}
		recs := make([]Record, len(vs))
		for i, v := range vs {
			recs[i] = f.write(i, v, "c"+strconv.Itoa(i))
		}
		return recs
	}
	win := pqFeature{"fraud.amount_1h", engine.PrimitiveFloat, []string{"card", "shop"}}
	tests := []struct {
		name string
		recs []Record
	}{
		{"int", scalar(engine.PrimitiveInt,
			engine.Int(0), engine.Int(-1), engine.Int(42), engine.Int(math.MaxInt64), engine.Int(math.MinInt64))},
		{"float", scalar(engine.PrimitiveFloat,
			engine.Float(0), engine.Float(pqNegZero), engine.Float(0.1), engine.Float(math.NaN()),
			engine.Float(math.Inf(1)), engine.Float(math.Inf(-1)), engine.Float(math.MaxFloat64),
			engine.Float(math.SmallestNonzeroFloat64), engine.Float(-1e-300))},
		{"string", scalar(engine.PrimitiveString,
			engine.String(""), engine.String("plain"), engine.String("héllo ✓ 日本 🦅"),
			engine.String("nul\x00inside"), engine.String(strings.Repeat("long ", 10_000)))},
		{"bool", scalar(engine.PrimitiveBool, engine.Bool(true), engine.Bool(false))},
		{"timestamp", scalar(engine.PrimitiveTimestamp,
			engine.Timestamp(time.Unix(0, 0)), engine.Timestamp(pqT0), engine.Timestamp(ts(-1)),
			engine.Timestamp(ts(math.MinInt64)), engine.Timestamp(ts(math.MaxInt64)),
			engine.Timestamp(time.Time{}), // the engine keeps its (overflowed) nanoseconds
			engine.Timestamp(pqT0.In(time.FixedZone("X", 3600))))},
		{"null values", scalar(engine.PrimitiveInt, engine.Null, engine.Int(1), engine.Null)},
		{"int list", scalar(engine.PrimitiveIntList,
			engine.IntList([]int64{1, 2, 3}), engine.IntList([]int64{}), engine.IntList(nil),
			engine.IntList([]int64{math.MinInt64}), engine.Null, engine.IntList([]int64{0, 0}))},
		{"float list", scalar(engine.PrimitiveFloatList,
			engine.FloatList([]float64{math.NaN(), math.Inf(1), math.Inf(-1), pqNegZero, 0, 1.5}),
			engine.FloatList(nil), engine.FloatList([]float64{2}))},
		{"string list", scalar(engine.PrimitiveStringList,
			engine.StringList([]string{"", "a", "ünï", ";\\"}), engine.StringList([]string{}),
			engine.StringList([]string{""}), engine.Null)},
		{"bool list", scalar(engine.PrimitiveBoolList,
			engine.BoolList([]bool{true, false, true}), engine.BoolList(nil))},
		{"timestamp list", scalar(engine.PrimitiveTimestampList,
			engine.TimestampList([]time.Time{time.Unix(0, 0), pqT0, ts(-1), ts(math.MinInt64), ts(math.MaxInt64)}),
			engine.TimestampList(nil), engine.TimestampList([]time.Time{pqT0.In(time.FixedZone("Y", -7200))}))},
		{"unicode and separator keys", []Record{
			pqFeature{"k.u", engine.PrimitiveInt, []string{"card", "pays"}}.write(0, engine.Int(1), "ça;va\\", "日本"),
			pqFeature{"k.u", engine.PrimitiveInt, []string{"card", "pays"}}.write(1, engine.Int(2), "", ""),
		}},
		{"escaped key names", []Record{
			pqFeature{"k.e", engine.PrimitiveInt, []string{"shop é", "_x", "a,b", "100%", "ok_name", "KEY"}}.
				write(0, engine.Int(1), "1", "2", "3", "4", "5", "6"),
		}},
		{"no keys", []Record{
			pqFeature{"k.none", engine.PrimitiveString, []string{}}.write(0, engine.String("x")),
			pqFeature{"k.none", engine.PrimitiveString, []string{}}.write(1, engine.String("y")),
		}},
		{"nil key names", []Record{pqFeature{"k.nil", engine.PrimitiveString, nil}.write(0, engine.String("x"))}},
		{"many keys", []Record{
			pqFeature{"k.many", engine.PrimitiveBool, manyKeys}.write(0, engine.Bool(true), manyValues...),
		}},
		{"ops and superseded", func() []Record {
			f := pqFeature{"ops.list", engine.PrimitiveIntList, card}
			var recs []Record
			for i, op := range []engine.Op{engine.OpSet, engine.OpAppend, engine.OpIncr, engine.OpUpdate} {
				for _, sup := range []bool{false, true} {
					r := f.write(i, engine.IntList([]int64{int64(i)}), "c")
					r.Op, r.Superseded, r.Fence = op, sup, math.MaxInt64-int64(i)
					recs = append(recs, r)
				}
			}
			return recs
		}()},
		{"buckets", []Record{
			win.write(0, engine.Null, "c1", "s1"),
			win.bucket(1, KindBucketSnapshot, BucketRecord{ID: 29_000_000, Start: pqT0, End: pqT0.Add(time.Minute), Open: true,
				Sum: 10.5, Count: 3, Min: 1.5, Max: 6}, "c1", "s1"),
			win.bucket(2, KindBucketFinal, BucketRecord{ID: 29_000_000, Start: pqT0, End: pqT0.Add(time.Minute),
				Sum: math.NaN(), Count: 0, Min: math.Inf(1), Max: math.Inf(-1)}, "c1", "s1"),
			win.bucket(3, KindBucketSnapshot, BucketRecord{ID: -5, Start: ts(-60e9), End: ts(0), Sum: pqNegZero}, "c2", "s2"),
		}},
		{"several batches and pages", func() []Record {
			f := pqFeature{"big.f", engine.PrimitiveStringList, []string{"user", "item"}}
			recs := make([]Record, 5000)
			for i := range recs {
				l := make([]string, i%7)
				for j := range l {
					l[j] = strconv.Itoa(i * j)
				}
				recs[i] = f.write(i, engine.StringList(l), strconv.Itoa(i%13), strconv.Itoa(i))
				recs[i].Superseded = i%5 == 0
			}
			return recs
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { pqCheckRoundTrip(t, tt.recs) })
	}
}

// TestParquetSchema checks the columns, their order and types, and the metadata.
func TestParquetSchema(t *testing.T) {
	f := pqFeature{"fraud.amount", engine.PrimitiveFloat, []string{"card", "shop é"}}
	b := pqEncode(t, []Record{f.write(0, engine.Float(1), "c", "s")})
	pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	const (
		str  = "BYTE_ARRAY STRING"
		ts   = "INT64 TIMESTAMP(isAdjustedToUTC=true,unit=NANOS)"
		i32  = "INT32 INT(32,true)"
		i64  = "INT64 INT(64,true)"
		dbl  = "DOUBLE"
		bl   = "BOOLEAN"
		req  = "required"
		opt  = "optional"
		elem = "list element"
	)
	want := []struct{ path, typ, rep string }{
		{"schema_version", i32, req},
		{"fqn", str, req},
		{"kind", str, req},
		{"op", str, req},
		{"superseded", bl, req},
		{"key_card", str, req},
		{"key__shop_20_c3_a9", str, req},
		{"keys", str, req},
		{"primitive", str, req},
		{"value_int", i64, opt},
		{"value_float", dbl, opt},
		{"value_string", str, opt},
		{"value_bool", bl, opt},
		{"value_timestamp", ts, opt},
		{"value_int_list.list.element", i64, elem},
		{"value_float_list.list.element", dbl, elem},
		{"value_string_list.list.element", str, elem},
		{"value_bool_list.list.element", bl, elem},
		{"value_timestamp_list.list.element", ts, elem},
		{"event_time", ts, req},
		{"write_time", ts, req},
		{"bucket_id", i64, opt},
		{"bucket_start", ts, opt},
		{"bucket_end", ts, opt},
		{"bucket_open", bl, opt},
		{"window_sum", dbl, opt},
		{"window_count", dbl, opt},
		{"window_min", dbl, opt},
		{"window_max", dbl, opt},
		{"fence", i64, req},
	}
	var leaves []*parquet.Column
	var walk func(c *parquet.Column)
	walk = func(c *parquet.Column) {
		if c.Leaf() {
			leaves = append(leaves, c)
		}
		for _, child := range c.Columns() {
			walk(child)
		}
	}
	walk(pf.Root())
	if len(leaves) != len(want) {
		t.Fatalf("%d leaf columns, want %d:\n%s", len(leaves), len(want), pf.Schema())
	}
	for i, w := range want {
		c := leaves[i]
		typ := c.Type().Kind().String()
		if lt := c.Type().LogicalType(); lt != nil && lt.Value != nil {
			typ += " " + lt.String()
		}
		rep := map[[2]int]string{{0, 0}: req, {0, 1}: opt, {1, 2}: elem}[[2]int{c.MaxRepetitionLevel(), c.MaxDefinitionLevel()}]
		if got := strings.Join(c.Path(), "."); got != w.path || typ != w.typ || rep != w.rep || c.Index() != i {
			t.Errorf("leaf %d: %s %s %s (index %d), want %s %s %s", i, got, typ, rep, c.Index(), w.path, w.typ, w.rep)
		}
	}
	for _, name := range []string{"value_int_list", "value_float_list", "value_string_list", "value_bool_list", "value_timestamp_list"} {
		c := pf.Root().Column(name)
		if lt := c.Type().LogicalType(); lt == nil || lt.String() != "LIST" || !c.Optional() {
			t.Errorf("column %s: %v optional=%t, want an optional LIST", name, lt, c.Optional())
		}
	}
	for key, want := range map[string]string{
		"osprey.schema_version": "1",
		"osprey.fqn":            "fraud.amount",
		"osprey.primitive":      "float",
		"osprey.keys":           "card,shop%20%C3%A9",
	} {
		if got, ok := pf.Lookup(key); !ok || got != want {
			t.Errorf("metadata %s = %q (present %t), want %q", key, got, ok, want)
		}
	}
	for _, rg := range pf.Metadata().RowGroups {
		for i, cc := range rg.Columns {
			if cc.MetaData.Codec != format.Zstd {
				t.Errorf("column %d: compression %v, want zstd", i, cc.MetaData.Codec)
			}
		}
	}
}

func TestKeyColumn(t *testing.T) {
	tests := []struct{ name, want string }{
		{"card", "key_card"},
		{"card_id", "key_card_id"},
		{"Card9", "key_Card9"},
		{"9lives", "key_9lives"},
		{"trailing_", "key_trailing_"},
		{"_lead", "key___5flead"},
		{"shop é", "key__shop_20_c3_a9"},
		{"a,b", "key__a_2cb"},
		{"a.b", "key__a_2eb"},
		{"a_2eb", "key_a_2eb"}, // plain, so no clash with the escaped "a.b"
		{"", "key__"},
	}
	for _, tt := range tests {
		if got := KeyColumn(tt.name); got != tt.want {
			t.Errorf("KeyColumn(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestEncodeParquetRefuses(t *testing.T) {
	f := pqFeature{"fraud.amount", engine.PrimitiveFloat, []string{"card"}}
	ok := func() Record { return f.write(0, engine.Float(1), "c") }
	with := func(change func(r *Record)) []Record {
		r := ok()
		change(&r)
		return []Record{ok(), r}
	}
	tests := []struct {
		name string
		recs []Record
		want string
	}{
		{"no records", nil, "no records"},
		{"mixed fqn", with(func(r *Record) { r.FQN = "other.f" }), `record 1 (other.f): feature "other.f", not "fraud.amount"`},
		{"mixed primitive", with(func(r *Record) { r.Primitive = engine.PrimitiveInt }), "record 1 (fraud.amount): primitive int, not float"},
		{"mixed key names", with(func(r *Record) { r.KeyNames = []string{"user"} }), "key names (user), not (card)"},
		{"missing key value", with(func(r *Record) { r.Keys = nil }), "record 1 (fraud.amount): 0 key values for 1 key names"},
		{"get op", with(func(r *Record) { r.Op = engine.OpGet }), "op get is not a write"},
		{"zero op", with(func(r *Record) { r.Op = 0 }), "is not a write"},
		{"zero kind", with(func(r *Record) { r.Kind = 0 }), "unknown record kind 0"},
		{"write with bucket", with(func(r *Record) { r.Bucket = &BucketRecord{} }), "a write record with a bucket"},
		{"bucket without bucket", with(func(r *Record) { r.Kind = KindBucketFinal }), "a bucket_final record without a bucket"},
		{"wrong value kind", with(func(r *Record) { r.Value = engine.Int(1) }), "a int value for a float feature"},
		{"window value", with(func(r *Record) { r.Value = engine.Window(engine.WindowResult{}) }), "a window value"},
		{"zero event time", with(func(r *Record) { r.EventTime = time.Time{} }), "event time 0001-01-01T00:00:00Z is outside"},
		{"late write time", with(func(r *Record) { r.WriteTime = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }), "write time 2300-01-01T00:00:00Z is outside"},
		{"bucket bound", with(func(r *Record) {
			r.Kind, r.Bucket = KindBucketSnapshot, &BucketRecord{Start: pqT0}
		}), "bucket end 0001-01-01T00:00:00Z is outside"},
		{"invalid primitive", []Record{{Kind: KindWrite, FQN: "x.y", Op: engine.OpSet}}, "record 0 (x.y): invalid primitive unknown"},
		{"empty key name", []Record{pqFeature{"x.y", engine.PrimitiveInt, []string{""}}.write(0, engine.Int(1), "")}, "key name 0 is empty"},
		{"duplicate key names", []Record{pqFeature{"x.y", engine.PrimitiveInt, []string{"a", "a"}}.write(0, engine.Int(1), "1", "2")}, `key name "a" appears twice`},
		{"timestamp list element", []Record{
			pqFeature{"x.y", engine.PrimitiveTimestampList, []string{"a"}}.write(0, engine.TimestampList([]time.Time{pqT0, {}}), "1"),
		}, "timestamp list element 1 0001-01-01T00:00:00Z is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := EncodeParquet(&buf, tt.recs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("EncodeParquet: %v, want an error containing %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before refusing", buf.Len())
			}
		})
	}
}

// pqWriteObject writes rows with EncodeParquet's schema for keyNames and the metadata given,
// after change has modified each row's values (which it finds by column name, see col).
func pqWriteObject(t *testing.T, recs []Record, meta map[string]string, change func(l *layout, row parquet.Row) parquet.Row) []byte {
	t.Helper()
	l, err := newLayout(&recs[0])
	if err != nil {
		t.Fatal(err)
	}
	opts := []parquet.WriterOption{l.schema}
	for k, v := range meta {
		opts = append(opts, parquet.KeyValueMetadata(k, v))
	}
	var buf bytes.Buffer
	w := parquet.NewWriter(&buf, opts...)
	for i := range recs {
		row := l.appendRow(nil, &recs[i])
		if change != nil {
			row = change(l, row)
		}
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pqSet replaces the value of the scalar column named name in row.
func pqSet(l *layout, row parquet.Row, name string, v parquet.Value) parquet.Row {
	for i, c := range l.schema.Fields() {
		if c.Name() == name {
			def := 0
			if c.Optional() && !v.IsNull() {
				def = 1
			}
			for j := range row {
				if row[j].Column() == i {
					row[j] = v.Level(0, def, i)
				}
			}
			return row
		}
	}
	panic("no column " + name)
}

func pqGoodMeta(f pqFeature) map[string]string {
	return map[string]string{
		"osprey.schema_version": "1",
		"osprey.fqn":            f.fqn,
		"osprey.primitive":      f.primitive.String(),
		"osprey.keys":           strings.Join(f.keyNames, ","),
	}
}

// pqWithFooter returns b with its footer changed by change.
func pqWithFooter(t *testing.T, b []byte, change func(md *format.FileMetaData)) []byte {
	t.Helper()
	n := int(binary.LittleEndian.Uint32(b[len(b)-8:]))
	footer := b[len(b)-8-n : len(b)-8]
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), footer, &md); err != nil {
		t.Fatal(err)
	}
	change(&md)
	nf, err := thrift.Marshal(new(thrift.CompactProtocol), &md)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(b[:len(b)-8-n])
	out = append(out, nf...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(nf)))
	return append(out, "PAR1"...)
}

// A plain Parquet file with the metadata of a history object and too few columns.
type pqPartialRow struct {
	SchemaVersion int64  `parquet:"schema_version"`
	FQN           string `parquet:"fqn"`
}

func TestDecodeParquetRefuses(t *testing.T) {
	f := pqFeature{"fraud.amount", engine.PrimitiveFloat, []string{"card"}}
	recs := []Record{f.write(0, engine.Float(1), "c"), f.write(1, engine.Float(2), "d")}
	valid := pqEncode(t, recs)
	meta := pqGoodMeta(f)
	withMeta := func(key, value string) map[string]string {
		m := pqGoodMeta(f)
		if value == "" {
			delete(m, key)
		} else {
			m[key] = value
		}
		return m
	}
	onRow1 := func(name string, v parquet.Value) func(*layout, parquet.Row) parquet.Row {
		n := 0
		return func(l *layout, row parquet.Row) parquet.Row {
			if n++; n == 2 {
				return pqSet(l, row, name, v)
			}
			return row
		}
	}
	plain := func(m map[string]string) []byte {
		var buf bytes.Buffer
		opts := []parquet.WriterOption{}
		for k, v := range m {
			opts = append(opts, parquet.KeyValueMetadata(k, v))
		}
		if err := parquet.Write(&buf, []pqPartialRow{{1, f.fqn}}, opts...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	str := func(s string) parquet.Value { return parquet.ByteArrayValue([]byte(s)) }
	bucket := f.bucket(0, KindBucketSnapshot, BucketRecord{Start: pqT0, End: pqT0}, "c")
	tests := []struct {
		name string
		obj  []byte
		want string
	}{
		{"empty", nil, "historian: decode parquet:"},
		{"not parquet", []byte("this is not a parquet file at all"), "historian: decode parquet:"},
		{"newer schema version", pqWriteObject(t, recs, withMeta("osprey.schema_version", "2"), nil),
			"the object has schema version 2, newer than the 1 this build reads"},
		{"bad schema version", pqWriteObject(t, recs, withMeta("osprey.schema_version", "one"), nil), `metadata osprey.schema_version is "one"`},
		{"no metadata", pqWriteObject(t, recs, withMeta("osprey.fqn", ""), nil), "not a history object: no osprey.fqn metadata"},
		{"bad primitive metadata", pqWriteObject(t, recs, withMeta("osprey.primitive", "double"), nil), `metadata osprey.primitive is "double"`},
		{"bad keys metadata", pqWriteObject(t, recs, withMeta("osprey.keys", "a%zz"), nil), "metadata osprey.keys"},
		{"keys metadata names other columns", pqWriteObject(t, recs, withMeta("osprey.keys", "user"), nil), "column key_user: missing"},
		{"missing columns", plain(meta), "column schema_version: want required INT32, have INT64"},
		{"too many rows", pqWithFooter(t, valid, func(md *format.FileMetaData) { md.NumRows = MaxParquetRows + 1 }),
			"declares 10000001 rows, more than the 10000000 allowed"},
		{"row count mismatch", pqWithFooter(t, valid, func(md *format.FileMetaData) { md.NumRows = 1 }),
			"declares 1 rows and holds 2"},
		{"row schema version", pqWriteObject(t, recs, meta, onRow1("schema_version", parquet.Int32Value(2))),
			"fraud.amount: row 1: column schema_version: version 2, not one this build reads"},
		{"row fqn", pqWriteObject(t, recs, meta, onRow1("fqn", str("other.f"))),
			`row 1: column fqn: "other.f", but the object's metadata says "fraud.amount"`},
		{"row kind", pqWriteObject(t, recs, meta, onRow1("kind", str("delete"))), `row 1: column kind: unknown kind "delete"`},
		{"row op", pqWriteObject(t, recs, meta, onRow1("op", str("get"))), `row 1: column op: "get" is not a write operation`},
		{"row primitive", pqWriteObject(t, recs, meta, onRow1("primitive", str("int"))), `row 1: column primitive: "int"`},
		{"other value column", pqWriteObject(t, recs, meta, onRow1("value_int", parquet.Int64Value(3))),
			"row 1: column value_int: set in a float feature's object"},
		{"bucket column in a write", pqWriteObject(t, recs, meta, onRow1("window_sum", parquet.DoubleValue(3))),
			"row 1: column window_sum: set in a write record"},
		{"bucket column missing", pqWriteObject(t, []Record{bucket, bucket}, meta, onRow1("bucket_open", parquet.NullValue())),
			"row 1: column bucket_open: null in a bucket_snapshot record"},
		{"lz4", pqWithFooter(t, valid, func(md *format.FileMetaData) { md.RowGroups[0].Columns[3].MetaData.Codec = format.Lz4Raw }),
			"row group 0, column op: LZ4_RAW compression (history objects are zstd-compressed)"},
		{"chunk outside", pqWithFooter(t, valid, func(md *format.FileMetaData) { md.RowGroups[0].Columns[1].MetaData.TotalCompressedSize = 1 << 20 }),
			"row group 0, column fqn: the chunk's 1048576 bytes at"},
		{"page header", pqWithFooter(t, valid, func(md *format.FileMetaData) {
			c := &md.RowGroups[0].Columns[1].MetaData
			c.DataPageOffset++
			c.DictionaryPageOffset = 0
		}), "row group 0, column fqn: "},
		{"footer length", append(slices.Clone(valid[:len(valid)-8]), 0xff, 0xff, 0xff, 0x7f, 'P', 'A', 'R', '1'),
			"the footer's length 2147483647 is more than the"},
		{"truncated", valid[:len(valid)-1], "historian: decode parquet:"},
		{"footer only", valid[len(valid)-100:], "historian: decode parquet:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pqDecode(tt.obj)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodeParquet: %v (%d records), want an error containing %q", err, len(got), tt.want)
			}
			if got != nil {
				t.Errorf("records returned with the error: %d", len(got))
			}
		})
	}
}

func TestThriftCheck(t *testing.T) {
	deep := bytes.Repeat([]byte{0x1c}, 40) // struct field 1 of type struct, 40 deep
	tests := []struct {
		name string
		b    []byte
		want string // "" for valid
	}{
		{"empty struct", []byte{0x00}, ""},
		{"fields", []byte{0x15, 0x02, 0x18, 0x02, 'h', 'i', 0x11, 0x00}, ""},              // i32 1, binary "hi", bool true
		{"long field id", []byte{0x05, 0x80, 0x01, 0x04, 0x00}, ""},                       // i32 field 64 (zigzag varint ID)
		{"list", []byte{0x19, 0x35, 0x02, 0x04, 0x06, 0x00}, ""},                          // list of 3 i32
		{"bool list", []byte{0x19, 0x21, 0x01, 0x02, 0x00}, ""},                           // list of 2 bools, a byte each
		{"map", []byte{0x1b, 0x01, 0x85, 0x01, 'k', 0x02, 0x00}, ""},                      // map of 1 binary → i32
		{"huge list", []byte{0x19, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00}, "a length"}, // 2^31-1 i32
		{"huge binary", []byte{0x18, 0xff, 0xff, 0xff, 0xff, 0x07}, "a length"},
		{"huge map", []byte{0x1b, 0xff, 0xff, 0x03, 0x55, 0x00}, "a length"},
		{"no stop", []byte{0x15, 0x02}, "a length"},
		{"bad varint", append([]byte{0x15}, bytes.Repeat([]byte{0xff}, 11)...), "a bad varint"},
		{"unknown type", []byte{0x1e, 0x00}, "unknown type 14"},
		{"too deep", append(deep, 0x00), "nested too deep"},
	}
	for _, tt := range tests {
		c := thriftCheck{b: tt.b}
		err := c.value(thriftStruct)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestDecodeParquetTooLarge checks that DecodeParquet refuses an object larger than
// MaxParquetObjectBytes before it reads it.
func TestDecodeParquetTooLarge(t *testing.T) {
	_, err := DecodeParquet(bytes.NewReader(nil), MaxParquetObjectBytes+1)
	if want := "more than the 1073741824 allowed"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("DecodeParquet: %v, want an error containing %q", err, want)
	}
}

// TestDecodeParquetExtraColumns checks that a later writer's extra columns are ignored.
func TestDecodeParquetExtraColumns(t *testing.T) {
	f := pqFeature{"fraud.amount", engine.PrimitiveInt, []string{"card"}}
	recs := []Record{f.write(0, engine.Int(1), "c"), f.write(1, engine.Int(2), "d")}
	l, err := newLayout(&recs[0])
	if err != nil {
		t.Fatal(err)
	}
	fields := slices.Clone(l.schema.Fields())
	fields = slices.Insert(fields, 3, (parquetgroup.Field("later_column", parquet.Optional(parquet.String()))))
	schema := parquet.NewSchema("osprey_history", parquetgroup.Group(fields))
	opts := []parquet.WriterOption{schema}
	for k, v := range pqGoodMeta(f) {
		opts = append(opts, parquet.KeyValueMetadata(k, v))
	}
	var buf bytes.Buffer
	w := parquet.NewWriter(&buf, opts...)
	for i := range recs {
		var row parquet.Row
		for _, v := range l.appendRow(nil, &recs[i]) {
			c := v.Column()
			if c >= 3 {
				c++
			}
			row = append(row, v.Level(v.RepetitionLevel(), v.DefinitionLevel(), c))
		}
		row = slices.Insert(row, 3, parquet.ByteArrayValue([]byte("new")).Level(0, 1, 3))
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := pqDecode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if d := pqDiffRecord(recs[i], got[i]); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
}

// TestDecodeParquetTruncated decodes every prefix of a valid object: each is an error, and
// none panics.
func TestDecodeParquetTruncated(t *testing.T) {
	b := pqValidObject(t)
	for n := range len(b) {
		if recs, err := pqDecode(b[:n]); err == nil {
			t.Fatalf("the first %d of %d bytes decoded to %d records", n, len(b), len(recs))
		}
	}
}

// pqValidObject is an object with every kind of column set somewhere.
func pqValidObject(t testing.TB) []byte {
	f := pqFeature{"fuzz.f", engine.PrimitiveTimestampList, []string{"card", "shop"}}
	recs := []Record{
		f.write(0, engine.TimestampList([]time.Time{pqT0, time.Unix(0, -1)}), "c", "s"),
		f.write(1, engine.TimestampList(nil), "é", ";"),
		f.write(2, engine.Null, "", ""),
		f.bucket(3, KindBucketFinal, BucketRecord{ID: 7, Start: pqT0, End: pqT0.Add(time.Hour), Sum: math.NaN(), Min: math.Inf(1)}, "c", "s"),
	}
	recs[1].Superseded = true
	return pqEncode(t, recs)
}

func FuzzDecodeParquet(f *testing.F) {
	b := pqValidObject(f)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := pqDecode(b)
		if err != nil {
			return
		}
		// Whatever decodes is a valid batch of records, which encodes and decodes the same.
		if len(recs) == 0 {
			return
		}
		again := pqCheckRoundTrip(t, recs)
		if len(again) == 0 {
			t.Fatal("empty re-encoding")
		}
	})
}

func BenchmarkEncodeParquet(b *testing.B) {
	const n = 100_000
	f := pqFeature{"bench.amount", engine.PrimitiveFloat, []string{"card"}}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = f.write(i, engine.Float(float64(i)*0.25), "card-"+strconv.Itoa(i%5000))
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	runs := 0
	for b.Loop() {
		buf.Reset()
		if err := EncodeParquet(&buf, recs); err != nil {
			b.Fatal(err)
		}
		runs++
	}
	b.ReportMetric(float64(runs)*n/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(buf.Len())/n, "bytes/record")
}
