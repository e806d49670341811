package abi_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/abi/abitest"
)

const vectorsFile = "testdata/vectors.json"

// TestVectors checks every golden vector against the codec: valid ones decode to their
// meaning and re-encode to the same bytes; invalid ones are rejected.
func TestVectors(t *testing.T) {
	vs, err := abitest.Load(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[abitest.Kind]int{}
	invalid := 0
	names := map[string]bool{}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			if err := abitest.Check(v); err != nil {
				t.Error(err)
			}
		})
		if names[v.Name] {
			t.Errorf("vector name %s is used twice", v.Name)
		}
		names[v.Name] = true
		if v.Error {
			invalid++
		} else {
			kinds[v.Kind]++
		}
	}
	for _, k := range abitest.Kinds {
		if kinds[k] == 0 {
			t.Errorf("no valid vector of kind %s", k)
		}
	}
	if invalid < 10 {
		t.Errorf("%d invalid vectors, want at least 10", invalid)
	}
}

// TestVectorsUpToDate checks that the committed file is what the generator writes, so that a
// change to the list below is not forgotten. Regenerate with
//
//	OSPREY_WRITE_VECTORS=1 go test -run TestWriteVectors ./abi
func TestVectorsUpToDate(t *testing.T) {
	want, err := renderVectors()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run OSPREY_WRITE_VECTORS=1 go test -run TestWriteVectors ./abi", vectorsFile)
	}
}

// TestWriteVectors regenerates testdata/vectors.json when OSPREY_WRITE_VECTORS=1.
func TestWriteVectors(t *testing.T) {
	if os.Getenv("OSPREY_WRITE_VECTORS") != "1" {
		t.Skip("set OSPREY_WRITE_VECTORS=1 to regenerate " + vectorsFile)
	}
	data, err := renderVectors()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

type validVector struct {
	name string
	msg  any
}

type invalidVector struct {
	name, reason string
	kind         abitest.Kind
	hex          string // spaces allowed
}

func renderVectors() ([]byte, error) {
	var vs []abitest.Vector
	for _, v := range validVectors() {
		kind, err := abitest.KindOf(v.msg)
		if err != nil {
			return nil, err
		}
		b, err := abitest.Encode(v.msg)
		if err != nil {
			return nil, err
		}
		m, err := abitest.MeaningOf(v.msg)
		if err != nil {
			return nil, err
		}
		vs = append(vs, abitest.Vector{Name: v.name, Kind: kind, Hex: hex.EncodeToString(b), Meaning: m})
	}
	for _, v := range invalidVectors() {
		vs = append(vs, abitest.Vector{Name: v.name, Kind: v.kind, Hex: strings.ReplaceAll(v.hex, " ", ""), Error: true, Reason: v.reason})
	}
	// One vector per line: diffs stay readable and the file stays greppable.
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, v := range vs {
		line, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		buf.WriteString("  ")
		buf.Write(line)
		if i < len(vs)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	return buf.Bytes(), nil
}

func tenFieldRow() []abi.Field {
	return []abi.Field{
		{Name: "card_id", Value: abi.String("c_4242")},
		{Name: "amount_cents", Value: abi.Int(12550)},
		{Name: "currency", Value: abi.String("EUR")},
		{Name: "status", Value: abi.String("approved")},
		{Name: "ts", Value: abi.Timestamp(1700000000123456789)},
		{Name: "merchant_id", Value: abi.String("m_17")},
		{Name: "mcc", Value: abi.Int(5411)},
		{Name: "country", Value: abi.String("FR")},
		{Name: "card_present", Value: abi.Bool(true)},
		{Name: "risk_score", Value: abi.Float(0.125)},
	}
}

func validVectors() []validVector {
	long := strings.Repeat("x", 200) // a 2-byte uvarint length
	manyBools := make([]bool, 130)   // a 2-byte uvarint count
	for i := range manyBools {
		manyBools[i] = i%3 == 0
	}
	allKinds := []abi.Field{
		{Name: "null", Value: abi.Null()},
		{Name: "int", Value: abi.Int(-7)},
		{Name: "float", Value: abi.Float(2.5)},
		{Name: "string", Value: abi.String("ß")},
		{Name: "bool", Value: abi.Bool(false)},
		{Name: "timestamp", Value: abi.Timestamp(1)},
		{Name: "ints", Value: abi.Value{Tag: abi.TagIntList, Ints: []int64{1, 2}}},
		{Name: "floats", Value: abi.Value{Tag: abi.TagFloatList, Floats: []float64{0.5}}},
		{Name: "strings", Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"a", ""}}},
		{Name: "bools", Value: abi.Value{Tag: abi.TagBoolList, Bools: []bool{true}}},
		{Name: "timestamps", Value: abi.Value{Tag: abi.TagTimestampList, Times: []int64{}}},
		{Name: "window", Value: abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrCount, Count: 3}}},
		{Name: "", Value: abi.String("an empty field name is allowed")},
	}
	window := abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrSum | abi.AggrCount | abi.AggrAvg | abi.AggrMax, Sum: 251.5, Count: 3, Min: 0, Max: 125.5}}
	return []validVector{
		// Values: every kind, with edge cases.
		{"value/null", abi.Null()},
		{"value/int/zero", abi.Int(0)},
		{"value/int/42", abi.Int(42)},
		{"value/int/-1", abi.Int(-1)},
		{"value/int/max", abi.Int(math.MaxInt64)},
		{"value/int/min", abi.Int(math.MinInt64)},
		{"value/float/zero", abi.Float(0)},
		{"value/float/negative-zero", abi.Float(math.Copysign(0, -1))},
		{"value/float/1.5", abi.Float(1.5)},
		{"value/float/-0.1", abi.Float(-0.1)},
		{"value/float/max", abi.Float(math.MaxFloat64)},
		{"value/float/smallest-subnormal", abi.Float(math.SmallestNonzeroFloat64)},
		{"value/float/1e21", abi.Float(1e21)},
		{"value/string/empty", abi.String("")},
		{"value/string/ascii", abi.String("hello")},
		{"value/string/e-acute", abi.String("é")},
		{"value/string/unicode", abi.String("日本語 🦅 \u0000 end")},
		{"value/string/200-bytes", abi.String(long)},
		{"value/bool/true", abi.Bool(true)},
		{"value/bool/false", abi.Bool(false)},
		{"value/timestamp/2023", abi.Timestamp(1700000000000000000)},
		{"value/timestamp/epoch", abi.Timestamp(0)},
		{"value/timestamp/before-epoch", abi.Timestamp(-1)},
		{"value/timestamp/max", abi.Timestamp(math.MaxInt64)},
		{"value/timestamp/min", abi.Timestamp(math.MinInt64)},
		{"value/ints/empty", abi.Value{Tag: abi.TagIntList, Ints: []int64{}}},
		{"value/ints/edges", abi.Value{Tag: abi.TagIntList, Ints: []int64{0, 1, -1, math.MaxInt64, math.MinInt64}}},
		{"value/floats/empty", abi.Value{Tag: abi.TagFloatList, Floats: []float64{}}},
		{"value/floats/some", abi.Value{Tag: abi.TagFloatList, Floats: []float64{0.5, math.Copysign(0, -1), -1e-300, 3}}},
		{"value/strings/empty", abi.Value{Tag: abi.TagStringList, Strs: []string{}}},
		{"value/strings/some", abi.Value{Tag: abi.TagStringList, Strs: []string{"", "a", "é", "日本"}}},
		{"value/bools/empty", abi.Value{Tag: abi.TagBoolList, Bools: []bool{}}},
		{"value/bools/some", abi.Value{Tag: abi.TagBoolList, Bools: []bool{true, false, true}}},
		{"value/bools/130", abi.Value{Tag: abi.TagBoolList, Bools: manyBools}},
		{"value/timestamps/empty", abi.Value{Tag: abi.TagTimestampList, Times: []int64{}}},
		{"value/timestamps/some", abi.Value{Tag: abi.TagTimestampList, Times: []int64{1700000000000000000, 0, -1}}},
		{"value/window/sum-count-avg-max", window},
		{"value/window/all", abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: abi.AggrSum | abi.AggrCount | abi.AggrMin | abi.AggrMax | abi.AggrAvg, Sum: -3, Count: 2, Min: -2.5, Max: -0.5}}},
		{"value/window/empty", abi.Value{Tag: abi.TagWindow}},

		// Keys and rows.
		{"keys/empty", []abi.KV{}},
		{"keys/one", []abi.KV{{Name: "card_id", Value: "c_4242"}}},
		{"keys/two", []abi.KV{{Name: "user_id", Value: "u1"}, {Name: "page", Value: "/é"}}},
		{"keys/empty-value", []abi.KV{{Name: "k", Value: ""}}},
		{"row/empty", []abi.Field{}},
		{"row/ten-fields", tenFieldRow()},
		{"row/every-kind", allKinds},

		// Calls.
		{"program_call/fraud-row", abi.ProgramCall{FQN: "fraud.amount", Timestamp: 1700000000123456789, Row: tenFieldRow()}},
		{"program_call/on-request", abi.ProgramCall{FQN: "fraud.utilisation", Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}}, Timestamp: 1700000060000000000}},
		{"program_call/keys-and-row", abi.ProgramCall{FQN: "default.clicks", Keys: []abi.KV{{Name: "user_id", Value: "u1"}, {Name: "page", Value: "home"}},
			Timestamp: -5, Row: []abi.Field{{Name: "n", Value: abi.Int(1)}}}},
		{"middleware_call/preSet-set", abi.MiddlewareCall{Stage: abi.StagePreSet, Op: abi.OpSet, FQN: "payments.amount",
			Keys: []abi.KV{{Name: "card_id", Value: "c1"}}, Timestamp: 1700000000000000000, Value: abi.Float(-5)}},
		{"middleware_call/postGet-get-window", abi.MiddlewareCall{Stage: abi.StagePostGet, Op: abi.OpGet, FQN: "fraud.amount",
			Keys: []abi.KV{{Name: "card_id", Value: "c1"}}, Timestamp: 1700000000000000000, Value: window}},
		{"middleware_call/preGet-get-null", abi.MiddlewareCall{Stage: abi.StagePreGet, Op: abi.OpGet, FQN: "geo.city", Value: abi.Null()}},
		{"middleware_call/postSet-append", abi.MiddlewareCall{Stage: abi.StagePostSet, Op: abi.OpAppend, FQN: "fraud.recent_merchants",
			Keys: []abi.KV{{Name: "card_id", Value: "c1"}}, Timestamp: 1, Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"m_1"}}}},
		{"middleware_call/preSet-incr", abi.MiddlewareCall{Stage: abi.StagePreSet, Op: abi.OpIncr, FQN: "user.logins", Value: abi.Int(1)}},
		{"middleware_call/preSet-update", abi.MiddlewareCall{Stage: abi.StagePreSet, Op: abi.OpUpdate, FQN: "fraud.limit", Value: abi.Float(1000)}},

		// Responses.
		{"program_result/value-only", abi.ProgramResult{Value: abi.Float(125.5)}},
		{"program_result/null-writes-nothing", abi.ProgramResult{Value: abi.Null()}},
		{"program_result/keys", abi.ProgramResult{Value: abi.Int(3), HasKeys: true, Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}}}},
		{"program_result/timestamp", abi.ProgramResult{Value: abi.String("FR"), HasTimestamp: true, Timestamp: 1700000000123456789}},
		{"program_result/keys-and-timestamp", abi.ProgramResult{Value: abi.Float(125.5), HasKeys: true, Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}},
			HasTimestamp: true, Timestamp: 1700000000123456789}},
		{"program_result/empty-keys-present", abi.ProgramResult{Value: abi.Bool(true), HasKeys: true, Keys: []abi.KV{}}},
		{"program_result/timestamp-min", abi.ProgramResult{Value: abi.Int(1), HasTimestamp: true, Timestamp: math.MinInt64}},
		{"value_result/float", abitest.ValueResult{Value: abi.Float(10000)}},
		{"value_result/null", abitest.ValueResult{Value: abi.Null()}},
		{"value_result/strings", abitest.ValueResult{Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"A", "B"}}}},
		{"error_response/error", abi.Response{Status: abi.StatusError, Message: "boom"}},
		{"error_response/rejected", abi.Response{Status: abi.StatusRejected, Message: "amount is negative: -5"}},
		{"error_response/empty-message", abi.Response{Status: abi.StatusError, Message: ""}},
		{"error_response/unicode", abi.Response{Status: abi.StatusRejected, Message: "montant négatif : −5 €"}},

		// get_feature results.
		{"get_result/found-fresh", abi.GetResult{Found: true, Value: abi.Float(251.5), Timestamp: 1700000000000000000, Fresh: true}},
		{"get_result/absent", abi.GetResult{Value: abi.Null()}},
		{"get_result/window-stale", abi.GetResult{Found: true, Value: window, Timestamp: 1699999000000000000}},
		{"get_result/string", abi.GetResult{Found: true, Value: abi.String("FR"), Timestamp: 1, Fresh: true}},

		// osprey_configure input (ABI 1.1): names sorted by byte, values as the manifest has them.
		{"configure_call/empty", abi.ConfigureCall{Config: []abi.KV{}}},
		{"configure_call/one", abi.ConfigureCall{Config: []abi.KV{{Name: "max", Value: "10000"}}}},
		{"configure_call/sorted", abi.ConfigureCall{Config: abi.SortedConfig(map[string]string{
			"threshold": "0.75", "Mode": "strict", "currency": "EUR", "label": "montant négatif", "empty": ""})}},
		{"configure_call/200-byte-value", abi.ConfigureCall{Config: []abi.KV{{Name: "allow", Value: long}}}},

		// storage_set's val and storage_get's result (ABI 1.2): Null (not set; set clears) and
		// every primitive kind.
		{"storage_value/null", abitest.StorageValue{Value: abi.Null()}},
		{"storage_value/int", abitest.StorageValue{Value: abi.Int(3)}},
		{"storage_value/int-min", abitest.StorageValue{Value: abi.Int(math.MinInt64)}},
		{"storage_value/float", abitest.StorageValue{Value: abi.Float(0.25)}},
		{"storage_value/float-negative-zero", abitest.StorageValue{Value: abi.Float(math.Copysign(0, -1))}},
		{"storage_value/string", abitest.StorageValue{Value: abi.String("session-é")}},
		{"storage_value/string-empty", abitest.StorageValue{Value: abi.String("")}},
		{"storage_value/bool-true", abitest.StorageValue{Value: abi.Bool(true)}},
		{"storage_value/bool-false", abitest.StorageValue{Value: abi.Bool(false)}},
		{"storage_value/timestamp", abitest.StorageValue{Value: abi.Timestamp(1700000000123456789)}},
		{"storage_value/timestamp-before-epoch", abitest.StorageValue{Value: abi.Timestamp(-1)}},
		{"storage_value/ints", abitest.StorageValue{Value: abi.Value{Tag: abi.TagIntList, Ints: []int64{1, -1, math.MaxInt64}}}},
		{"storage_value/floats", abitest.StorageValue{Value: abi.Value{Tag: abi.TagFloatList, Floats: []float64{0.5, -3}}}},
		{"storage_value/strings", abitest.StorageValue{Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"/home", "/cart", ""}}}},
		{"storage_value/strings-empty", abitest.StorageValue{Value: abi.Value{Tag: abi.TagStringList, Strs: []string{}}}},
		{"storage_value/bools", abitest.StorageValue{Value: abi.Value{Tag: abi.TagBoolList, Bools: []bool{false, true}}}},
		{"storage_value/timestamps", abitest.StorageValue{Value: abi.Value{Tag: abi.TagTimestampList, Times: []int64{1700000000000000000, 1700000060000000000}}}},
		{"storage_value/timestamps-empty", abitest.StorageValue{Value: abi.Value{Tag: abi.TagTimestampList, Times: []int64{}}}},

		// A message call (ABI 1.2): the receiving address, the event time, the sender, hops,
		// attempt and the message.
		{"message_call/int", abi.MessageCall{FQN: "fraud.alerts", Keys: []abi.KV{{Name: "card_id", Value: "c_4242"}}, Timestamp: 1700000000123456789,
			FromFQN: "fraud.amount", FromKeys: []abi.KV{{Name: "card_id", Value: "c_4242"}}, Hops: 1, Attempt: 1, Message: abi.Int(12550)}},
		{"message_call/redelivered", abi.MessageCall{FQN: "user.session", Keys: []abi.KV{{Name: "user_id", Value: "u1"}, {Name: "page", Value: "/é"}},
			Timestamp: -5, FromFQN: "user.clicks", FromKeys: []abi.KV{{Name: "user_id", Value: "u1"}}, Hops: 3, Attempt: 2, Message: abi.String("session-é")}},
		{"message_call/no-keys", abi.MessageCall{FQN: "default.total", FromFQN: "default.count", Hops: 1, Attempt: 1, Message: abi.Bool(true)}},
		{"message_call/200-hops", abi.MessageCall{FQN: "a.b", Keys: []abi.KV{{Name: "k", Value: ""}}, Timestamp: 0, FromFQN: "a.b",
			FromKeys: []abi.KV{{Name: "k", Value: ""}}, Hops: 200, Attempt: 10, Message: abi.Value{Tag: abi.TagStringList, Strs: []string{"x", ""}}}},
		{"message_call/timestamp", abi.MessageCall{FQN: "fraud.timer", Keys: []abi.KV{{Name: "card_id", Value: "c1"}}, Timestamp: 1700000060000000000,
			FromFQN: "fraud.timer", FromKeys: []abi.KV{{Name: "card_id", Value: "c1"}}, Hops: 2, Attempt: 1, Message: abi.Timestamp(1700000000000000000)}},
		{"message_call/float-list", abi.MessageCall{FQN: "geo.path", Keys: []abi.KV{{Name: "id", Value: "1"}}, Timestamp: 1,
			FromFQN: "geo.point", FromKeys: []abi.KV{{Name: "id", Value: "1"}}, Hops: 1, Attempt: 1, Message: abi.Value{Tag: abi.TagFloatList, Floats: []float64{0.5, math.Copysign(0, -1)}}}},

		// send's and send_after's msg (ABI 1.2): a storage value; the host refuses Null.
		{"message_value/int", abitest.MessageValue{Value: abi.Int(42)}},
		{"message_value/float", abitest.MessageValue{Value: abi.Float(-0.1)}},
		{"message_value/string", abitest.MessageValue{Value: abi.String("alert: é")}},
		{"message_value/string-empty", abitest.MessageValue{Value: abi.String("")}},
		{"message_value/bool", abitest.MessageValue{Value: abi.Bool(false)}},
		{"message_value/timestamp", abitest.MessageValue{Value: abi.Timestamp(1700000000123456789)}},
		{"message_value/ints", abitest.MessageValue{Value: abi.Value{Tag: abi.TagIntList, Ints: []int64{1, math.MinInt64}}}},
		{"message_value/floats", abitest.MessageValue{Value: abi.Value{Tag: abi.TagFloatList, Floats: []float64{0.25}}}},
		{"message_value/strings", abitest.MessageValue{Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"a", "é"}}}},
		{"message_value/bools-empty", abitest.MessageValue{Value: abi.Value{Tag: abi.TagBoolList, Bools: []bool{}}}},
		{"message_value/timestamps", abitest.MessageValue{Value: abi.Value{Tag: abi.TagTimestampList, Times: []int64{0, -1}}}},

		// egress's row (ABI 1.2): a Row of storage values.
		{"egress_row/empty", abitest.EgressRow{}},
		{"egress_row/alert", abitest.EgressRow{
			{Name: "card_id", Value: abi.String("c_4242")},
			{Name: "score", Value: abi.Float(0.875)},
			{Name: "at", Value: abi.Timestamp(1700000000123456789)},
			{Name: "reasons", Value: abi.Value{Tag: abi.TagStringList, Strs: []string{"velocity", "country"}}},
			{Name: "note", Value: abi.Null()},
		}},
		{"egress_row/every-kind", abitest.EgressRow(allKinds[:11])},
	}
}

func invalidVectors() []invalidVector {
	return []invalidVector{
		{"invalid/value/empty", "no tag byte", abitest.KindValue, ""},
		{"invalid/value/int-truncated", "an int needs 8 bytes", abitest.KindValue, "01 2a000000"},
		{"invalid/value/float-truncated", "a float needs 8 bytes", abitest.KindValue, "02 000000000000f8"},
		{"invalid/value/unknown-tag-11", "tag 11 is not defined", abitest.KindValue, "0b"},
		{"invalid/value/unknown-tag-255", "tag 255 is not defined", abitest.KindValue, "ff 0000000000000000"},
		{"invalid/value/bool-2", "a bool is 0 or 1", abitest.KindValue, "04 02"},
		{"invalid/value/bools-element-2", "a bool is 0 or 1", abitest.KindValue, "09 02 01 02"},
		{"invalid/value/string-bad-utf8", "0xff is not UTF-8", abitest.KindValue, "03 02 61ff"},
		{"invalid/value/string-surrogate", "an encoded surrogate (ED A0 80) is not UTF-8", abitest.KindValue, "03 03 eda080"},
		{"invalid/value/strings-bad-utf8", "a list element is not UTF-8", abitest.KindValue, "08 02 0161 01c3"},
		{"invalid/value/string-length-past-end", "the length says 5, 2 bytes follow", abitest.KindValue, "03 05 6869"},
		{"invalid/value/string-non-minimal-length", "uvarint 0x80 0x00 is a padded 0", abitest.KindValue, "03 8000"},
		{"invalid/value/ints-non-minimal-count", "uvarint 0x81 0x00 is a padded 1", abitest.KindValue, "06 8100 0100000000000000"},
		{"invalid/value/ints-hostile-count", "a count of 2^40 with no elements", abitest.KindValue, "06 8080808080 20"},
		{"invalid/value/uvarint-overflow", "a uvarint longer than 64 bits", abitest.KindValue, "03 ffffffffffffffffff7f"},
		{"invalid/value/window-truncated", "a window is a mask and 4 floats", abitest.KindValue, "20 06 0000000000000000"},
		{"invalid/value/trailing-byte", "one byte after the value", abitest.KindValue, "00 00"},
		{"invalid/keys/duplicate", "key names are unique", abitest.KindKeys, "02 0161 0131 0161 0132"},
		{"invalid/keys/truncated", "the count says 1, nothing follows", abitest.KindKeys, "01"},
		{"invalid/row/duplicate", "field names are unique", abitest.KindRow, "02 0161 00 0161 0401"},
		{"invalid/row/bad-field-name", "a field name is not UTF-8", abitest.KindRow, "01 01c0 00"},
		{"invalid/program_call/empty", "no kind byte", abitest.KindProgramCall, ""},
		{"invalid/program_call/wrong-kind", "kind 2 is a middleware call", abitest.KindProgramCall, "02 00 00 0000000000000000 00"},
		{"invalid/program_call/truncated-timestamp", "the timestamp needs 8 bytes", abitest.KindProgramCall, "01 0161 00 00000000"},
		{"invalid/program_call/trailing-byte", "one byte after the row", abitest.KindProgramCall, "01 0161 00 0000000000000000 00 00"},
		{"invalid/middleware_call/unknown-stage", "stage 5 is not defined", abitest.KindMiddlewareCall, "02 05 02 0161 00 0000000000000000 00"},
		{"invalid/middleware_call/unknown-op", "op 0 is not defined", abitest.KindMiddlewareCall, "02 03 00 0161 00 0000000000000000 00"},
		{"invalid/program_result/unknown-flag", "flag bit 2 is not defined", abitest.KindProgramResult, "00 00 04"},
		{"invalid/program_result/missing-flags", "the flags byte is required", abitest.KindProgramResult, "00 00"},
		{"invalid/program_result/keys-flag-no-keys", "flag bit 0 promises keys", abitest.KindProgramResult, "00 00 01"},
		{"invalid/error_response/unknown-status", "status 3 is not defined", abitest.KindErrorResponse, "03 00"},
		{"invalid/error_response/no-message", "an error response carries a message", abitest.KindErrorResponse, "01"},
		{"invalid/get_result/found-2", "found is 0 or 1", abitest.KindGetResult, "02 00 0000000000000000 00"},
		{"invalid/get_result/fresh-2", "fresh is 0 or 1", abitest.KindGetResult, "01 00 0000000000000000 02"},
		{"invalid/configure_call/empty", "no kind byte", abitest.KindConfigureCall, ""},
		{"invalid/configure_call/wrong-kind", "kind 1 is a program call", abitest.KindConfigureCall, "01 00"},
		{"invalid/configure_call/unsorted", "names must be in increasing byte order: b before a", abitest.KindConfigureCall, "03 02 0162 0131 0161 0132"},
		{"invalid/configure_call/duplicate", "names are unique", abitest.KindConfigureCall, "03 02 0161 0131 0161 0132"},
		{"invalid/configure_call/upper-after-lower", "byte order puts M (0x4d) before m (0x6d)", abitest.KindConfigureCall, "03 02 016d 0131 014d 0132"},
		{"invalid/configure_call/value-bad-utf8", "a value is not UTF-8", abitest.KindConfigureCall, "03 01 0161 01ff"},
		{"invalid/configure_call/truncated", "the count says 1, nothing follows", abitest.KindConfigureCall, "03 01"},
		{"invalid/configure_call/trailing-byte", "one byte after the pairs", abitest.KindConfigureCall, "03 00 00"},
		{"invalid/storage_value/empty", "no tag byte", abitest.KindStorageValue, ""},
		{"invalid/storage_value/window", "a window is not a storage value", abitest.KindStorageValue, "20 04 0000000000000000 0000000000000840 0000000000000000 0000000000000000"},
		{"invalid/storage_value/unknown-tag", "tag 11 is not defined", abitest.KindStorageValue, "0b"},
		{"invalid/storage_value/bool-2", "a bool is 0 or 1", abitest.KindStorageValue, "04 02"},
		{"invalid/storage_value/timestamp-truncated", "a timestamp needs 8 bytes", abitest.KindStorageValue, "05 00f2"},
		{"invalid/storage_value/string-bad-utf8", "0xff is not UTF-8", abitest.KindStorageValue, "03 01 ff"},
		{"invalid/storage_value/trailing-byte", "one byte after the value", abitest.KindStorageValue, "01 0300000000000000 00"},
		{"invalid/message_call/empty", "no kind byte", abitest.KindMessageCall, ""},
		{"invalid/message_call/wrong-kind", "kind 1 is a program call", abitest.KindMessageCall, "01 0161 00 0000000000000000 0162 00 01 01 01 0100000000000000 00"},
		{"invalid/message_call/null-message", "a message is never null", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 01 01 00"},
		{"invalid/message_call/window-message", "a window is not a message", abitest.KindMessageCall,
			"04 0161 00 0000000000000000 0162 00 01 01 20 04 0000000000000000 0000000000000840 0000000000000000 0000000000000000"},
		{"invalid/message_call/hops-0", "hops are at least 1", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 00 01 01 0100000000000000"},
		{"invalid/message_call/attempt-0", "attempts are at least 1", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 01 00 01 0100000000000000"},
		{"invalid/message_call/hops-non-minimal", "uvarint 0x81 0x00 is a padded 1", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 8100 01 01 0100000000000000"},
		{"invalid/message_call/hops-too-large", "hops of 2^24+1, more than 16 MiB", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 81808008 01 01 0100000000000000"},
		{"invalid/message_call/duplicate-from-key", "the sender's key names are unique", abitest.KindMessageCall,
			"04 0161 00 0000000000000000 0162 02 016b 0131 016b 0132 01 01 01 0100000000000000"},
		{"invalid/message_call/no-message", "the message is required", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 01 01"},
		{"invalid/message_call/truncated-from", "the sender's fqn says 5 bytes, 1 follows", abitest.KindMessageCall, "04 0161 00 0000000000000000 0562"},
		{"invalid/message_call/trailing-byte", "one byte after the message", abitest.KindMessageCall, "04 0161 00 0000000000000000 0162 00 01 01 01 0100000000000000 00"},
		{"invalid/message_value/empty", "no tag byte", abitest.KindMessageValue, ""},
		{"invalid/message_value/window", "a window is not a message", abitest.KindMessageValue, "20 04 0000000000000000 0000000000000840 0000000000000000 0000000000000000"},
		{"invalid/message_value/unknown-tag", "tag 11 is not defined", abitest.KindMessageValue, "0b"},
		{"invalid/message_value/trailing-byte", "one byte after the value", abitest.KindMessageValue, "04 01 00"},
		{"invalid/egress_row/window", "a window is not an egress row's value", abitest.KindEgressRow,
			"01 0177 20 04 0000000000000000 0000000000000840 0000000000000000 0000000000000000"},
		{"invalid/egress_row/duplicate", "field names are unique", abitest.KindEgressRow, "02 0161 00 0161 0401"},
		{"invalid/egress_row/truncated", "the count says 2, one field follows", abitest.KindEgressRow, "02 0161 00"},
		{"invalid/egress_row/bad-field-name", "a field name is not UTF-8", abitest.KindEgressRow, "01 01c0 00"},
		{"invalid/egress_row/trailing-byte", "one byte after the row", abitest.KindEgressRow, "00 00"},
	}
}
