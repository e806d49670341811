package server

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

func typedValue(v any) *ospreyv1.Value {
	switch v := v.(type) {
	case int:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_IntValue{IntValue: int64(v)}}
	case float64:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_FloatValue{FloatValue: v}}
	case string:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_StringValue{StringValue: v}}
	case bool:
		return &ospreyv1.Value{Kind: &ospreyv1.Value_BoolValue{BoolValue: v}}
	case *ospreyv1.Value:
		return v
	}
	panic(fmt.Sprintf("typedValue(%T)", v))
}

func typedRow(kv ...any) *ospreyv1.Row {
	r := &ospreyv1.Row{Fields: map[string]*ospreyv1.Value{}}
	for i := 0; i < len(kv); i += 2 {
		r.Fields[kv[i].(string)] = typedValue(kv[i+1])
	}
	return r
}

// ingestWireSeeds are encodings of IngestRequests, well and badly formed, that the fast
// path takes, leaves to the slow one, or refuses.
func ingestWireSeeds(t testing.TB) [][]byte {
	marshal := func(m *ospreyv1.IngestRequest) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	common := &ospreyv1.IngestRequest{Source: "fraud.transactions", TypedRows: []*ospreyv1.Row{
		typedRow("card_id", "c1", "amount_cents", 1250, "ok", true, "score", 0.5),
		typedRow("card_id", "c2", "amount_cents", -7, "ok", false, "score", math.Copysign(0, -1)),
		typedRow(),
	}}
	ts := &ospreyv1.Value{Kind: &ospreyv1.Value_TimestampValue{TimestampValue: timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))}}
	badTs := &ospreyv1.Value{Kind: &ospreyv1.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}}}
	list := &ospreyv1.Value{Kind: &ospreyv1.Value_IntList{IntList: &ospreyv1.IntList{Values: []int64{1, 2, 3}}}}
	window := &ospreyv1.Value{Kind: &ospreyv1.Value_Window{Window: &ospreyv1.WindowResult{}}}
	slow := &ospreyv1.IngestRequest{Source: "s", TypedRows: []*ospreyv1.Row{
		typedRow("a", 1, "t", ts, "l", list, "n", &ospreyv1.Value{}),
		typedRow("nan", math.NaN()),
		typedRow("inf", math.Inf(-1), "b", badTs),
		typedRow("w", window),
		typedRow("x", 1),
	}}
	st, _ := structpb.NewStruct(map[string]any{"a": 1.0, "b": "x"})
	structs := &ospreyv1.IngestRequest{Source: "s", Rows: []*structpb.Struct{st}}
	both := &ospreyv1.IngestRequest{Rows: []*structpb.Struct{st}, TypedRows: []*ospreyv1.Row{typedRow("a", 1)}}

	// Hand-made encodings.
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	bytesField := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), v)
	}
	intValue := func(x uint64) []byte { return protowire.AppendVarint(tag(nil, 1, protowire.VarintType), x) }
	stringValue := func(s string) []byte { return bytesField(nil, 3, []byte(s)) }
	entry := func(key string, value []byte) []byte { return bytesField(bytesField(nil, 1, []byte(key)), 2, value) }
	request := func(rows ...[]byte) []byte {
		b := bytesField(nil, 1, []byte("src"))
		for _, r := range rows {
			b = bytesField(b, 3, r)
		}
		return b
	}
	row := func(entries ...[]byte) []byte {
		var b []byte
		for _, e := range entries {
			b = bytesField(b, 1, e)
		}
		return b
	}
	valueThenKey := bytesField(bytesField(nil, 2, intValue(1)), 1, []byte("k"))
	return [][]byte{
		marshal(common), marshal(slow), marshal(structs), marshal(both), marshal(&ospreyv1.IngestRequest{}), nil,
		request(row(entry("a", intValue(1)), entry("a", stringValue("again")))),               // a repeated key: the last wins
		request(row(entry("a", append(intValue(1), stringValue("then a string")...)))),        // a oneof set twice: the last wins
		request(row(entry("a", append(bytesField(nil, 6, nil), bytesField(nil, 6, nil)...)))), // a message set twice: merged
		request(row(valueThenKey)),                         // value before key
		request(row(bytesField(nil, 1, []byte("lonely")))), // a key without a value: null
		request(row(bytesField(nil, 2, intValue(5)))),      // a value without a key: ""
		request(row(entry("bad\xff", intValue(1)))),        // invalid UTF-8 in a name
		request(row(entry("s", stringValue("bad\xfe")))),   // and in a string
		request(row(append(entry("a", intValue(1)), protowire.AppendVarint(tag(nil, 9, protowire.VarintType), 3)...))), // an unknown field in an entry
		request(row(entry("a", append(intValue(1), protowire.AppendFixed32(tag(nil, 12, protowire.Fixed32Type), 7)...)))),
		request(append(row(entry("a", intValue(1))), protowire.AppendFixed64(tag(nil, 5, protowire.Fixed64Type), 1)...)),
		append(request(row(entry("a", intValue(1)))), protowire.AppendVarint(tag(nil, 3, protowire.VarintType), 4)...), // typed_rows as a varint: unknown
		append(request(row(entry("a", intValue(1)))), tag(tag(nil, 20, protowire.StartGroupType), 20, protowire.EndGroupType)...),
		request(row(entry("a", tag(nil, 1, protowire.VarintType)))),                             // a truncated varint
		request(row(entry("a", []byte{0x09, 1, 2}))),                                            // a truncated double
		request(row(entry("a", protowire.AppendVarint(tag(nil, 4, protowire.VarintType), 2)))),  // a bool of 2
		request(row(entry("a", protowire.AppendVarint(tag(nil, 1, protowire.Fixed64Type), 2)))), // an int with a double's wire type
		marshal(common)[:len(marshal(common))-3],                                                // truncated
		{0xff, 0xff, 0xff},
	}
}

// FuzzIngestWire holds decodeIngestRequest to what proto.Unmarshal and rowFromTyped make of
// the same bytes: the same error or none, the same source, struct rows and unknown fields,
// the same typed rows, and the same first row that does not convert.
func FuzzIngestWire(f *testing.F) {
	for _, s := range ingestWireSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got ingestRequest
		gotErr := decodeIngestRequest(b, &got)
		var want ospreyv1.IngestRequest
		wantErr := proto.Unmarshal(b, &want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("decodeIngestRequest: %v; proto.Unmarshal: %v", gotErr, wantErr)
		}
		if wantErr != nil {
			return
		}
		typedRows := want.TypedRows
		want.TypedRows = nil
		if !proto.Equal(&got.IngestRequest, &want) {
			t.Fatalf("request without its typed rows:\n got %v\nwant %v", &got.IngestRequest, &want)
		}
		if !got.decoded || len(got.typed) != len(typedRows) {
			t.Fatalf("%d typed rows (decoded %v), want %d", len(got.typed), got.decoded, len(typedRows))
		}
		var wantErrRow error
		for i, tr := range typedRows {
			row, err := rowFromTyped(fmt.Sprintf("typed_rows[%d]", i), tr)
			if err != nil {
				if wantErrRow == nil {
					wantErrRow = err
				}
				continue
			}
			if !sameRow(got.typed[i], row) {
				t.Fatalf("typed row %d = %v, want %v", i, got.typed[i], row)
			}
		}
		if fmt.Sprint(got.typedErr) != fmt.Sprint(wantErrRow) {
			t.Fatalf("first row error %v, want %v", got.typedErr, wantErrRow)
		}
	})
}

func sameRow(a, b engine.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Kind() != w.Kind() || !v.Equal(w) {
			return false
		}
	}
	return true
}

// TestFastRow: the rows clients send take the fast path, field names interned, and the
// others do not.
func TestFastRow(t *testing.T) {
	names := map[string]string{}
	for i, r := range []*ospreyv1.Row{
		typedRow("card_id", "c1", "amount_cents", 1250, "ok", true, "score", 0.5),
		typedRow("card_id", "c2", "amount_cents", math.MinInt64, "ok", false, "score", math.MaxFloat64),
		typedRow(),
	} {
		b, _ := proto.Marshal(r)
		got, ok := fastRow(b, names)
		want, err := rowFromTyped("row", r)
		if !ok || err != nil || !sameRow(got, want) {
			t.Errorf("row %d: fast path %v ok=%v, want %v (%v)", i, got, ok, want, err)
		}
	}
	if len(names) != 4 {
		t.Errorf("%d names interned, want 4: %v", len(names), names)
	}
	for i, r := range []*ospreyv1.Row{
		typedRow("nan", math.NaN()),
		typedRow("list", &ospreyv1.Value{Kind: &ospreyv1.Value_IntList{IntList: &ospreyv1.IntList{Values: []int64{1}}}}),
		typedRow("null", &ospreyv1.Value{}),
	} {
		b, _ := proto.Marshal(r)
		if _, ok := fastRow(b, names); ok {
			t.Errorf("slow row %d took the fast path", i)
		}
	}
}
