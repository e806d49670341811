package historian

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// duckDBDir holds read.mjs and the npm package that brings DuckDB.
const duckDBDir = "testdata/duckdb"

var (
	npmOnce sync.Once
	npmErr  error
)

// duckDBNode returns the path of node when read.mjs can run: node is on PATH and the pinned
// @duckdb/node-api is installed in duckDBDir. Outside CI the test skips otherwise; with
// CI=true it fails without node, and installs the package itself (npm ci, once) when it is
// missing or not the pinned version.
func duckDBNode(t *testing.T) string {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	node, err := exec.LookPath("node")
	if err != nil {
		if ci {
			t.Fatalf("the DuckDB check needs Node.js (node on PATH) under CI=true: %v", err)
		}
		t.Skipf("no node on PATH (%v): the DuckDB check needs Node.js", err)
	}
	want, have, err := duckDBVersions()
	if err != nil {
		t.Fatal(err)
	}
	if have == want {
		return node
	}
	if !ci {
		t.Skipf("@duckdb/node-api %s is not installed in historian/%s (found %q): run `npm ci` there", want, duckDBDir, have)
	}
	npmOnce.Do(func() { npmErr = npmCI() })
	if npmErr != nil {
		t.Fatalf("npm ci in historian/%s: %v", duckDBDir, npmErr)
	}
	if _, have, err = duckDBVersions(); err != nil || have != want {
		t.Fatalf("after npm ci, @duckdb/node-api is %q, want %s (%v)", have, want, err)
	}
	return node
}

// duckDBVersions returns the @duckdb/node-api version package.json pins and the one
// installed in node_modules ("" for none).
func duckDBVersions() (want, have string, err error) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
		Version      string            `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(duckDBDir, "package.json"))
	if err != nil {
		return "", "", err
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", "", fmt.Errorf("%s/package.json: %w", duckDBDir, err)
	}
	want = pkg.Dependencies["@duckdb/node-api"]
	if want == "" {
		return "", "", fmt.Errorf("%s/package.json does not depend on @duckdb/node-api", duckDBDir)
	}
	b, err = os.ReadFile(filepath.Join(duckDBDir, "node_modules", "@duckdb", "node-api", "package.json"))
	if err != nil {
		return want, "", nil
	}
	pkg.Version = ""
	if err := json.Unmarshal(b, &pkg); err != nil {
		return want, "", nil
	}
	return want, pkg.Version, nil
}

// npmCI installs the locked packages in duckDBDir: npm ci replaces node_modules whole, so
// it is idempotent, and it runs only when the pinned version is missing.
func npmCI() error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = duckDBDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// duckDBRead runs read.mjs on the object b and returns the column types (in the object's
// order), the key-value metadata and the rows it printed.
func duckDBRead(t *testing.T, node string, b []byte) (columns []string, types, meta map[string]string, rows []map[string]any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "object.parquet")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "read.mjs", "--types", "--metadata", path)
	cmd.Dir = duckDBDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node read.mjs: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for i := 0; sc.Scan(); i++ {
		line := sc.Bytes()
		switch i {
		case 0:
			var v struct{ Types json.RawMessage }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("types line %s: %v", line, err)
			}
			columns = objectKeys(t, v.Types)
			if err := json.Unmarshal(v.Types, &types); err != nil {
				t.Fatal(err)
			}
		case 1:
			var v struct{ Metadata map[string]string }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("metadata line %s: %v", line, err)
			}
			meta = v.Metadata
		default:
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.UseNumber()
			var row map[string]any
			if err := dec.Decode(&row); err != nil {
				t.Fatalf("row line %s: %v", line, err)
			}
			rows = append(rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return columns, types, meta, rows
}

// objectKeys returns the keys of a JSON object in their order.
func objectKeys(t *testing.T, obj json.RawMessage) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", obj)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// duckTime is t as read.mjs prints a DuckDB TIMESTAMPTZ: DuckDB reads Parquet nanosecond
// UTC timestamps at microsecond precision, truncating toward zero, and the largest
// nanosecond timestamp as infinity.
func duckTime(t time.Time) string {
	ns := t.UnixNano()
	if ns == math.MaxInt64 {
		return "infinity"
	}
	return time.Unix(0, ns/1000*1000).UTC().Format("2006-01-02T15:04:05.000000000Z")
}

// duckFloat is f as read.mjs prints a DOUBLE: a number, or a string for what JSON numbers
// cannot spell.
func duckFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0 && math.Signbit(f):
		return "-0"
	}
	return f
}

func duckInt(i int64) any { return strconv.FormatInt(i, 10) }

func duckList[T any](l []T, conv func(T) any) any {
	out := make([]any, len(l))
	for i, e := range l {
		out[i] = conv(e)
	}
	return out
}

// duckRow is the row read.mjs should print for r.
func duckRow(r *Record) map[string]any {
	row := map[string]any{
		"schema_version": int64(SchemaVersion),
		"fqn":            r.FQN,
		"kind":           r.Kind.String(),
		"op":             r.Op.String(),
		"superseded":     r.Superseded,
		"keys":           r.EncodedKeys,
		"primitive":      r.Primitive.String(),
		"event_time":     duckTime(r.EventTime),
		"write_time":     duckTime(r.WriteTime),
		"fence":          duckInt(r.Fence),
	}
	for i, n := range r.KeyNames {
		row[KeyColumn(n)] = r.Keys[i]
	}
	for _, c := range tailColumns[tailValueInt : tailValueTimestampList+1] {
		row[c.name] = nil
	}
	for _, c := range tailColumns[tailBucketID : tailWindowMax+1] {
		row[c.name] = nil
	}
	v := r.Value
	switch v.Kind() {
	case engine.KindInt:
		row["value_int"] = duckInt(v.Int())
	case engine.KindFloat:
		row["value_float"] = duckFloat(v.Float())
	case engine.KindString:
		row["value_string"] = v.Str()
	case engine.KindBool:
		row["value_bool"] = v.Bool()
	case engine.KindTimestamp:
		row["value_timestamp"] = duckTime(v.Time())
	case engine.KindIntList:
		row["value_int_list"] = duckList(v.Ints(), duckInt)
	case engine.KindFloatList:
		row["value_float_list"] = duckList(v.Floats(), duckFloat)
	case engine.KindStringList:
		row["value_string_list"] = duckList(v.Strs(), func(s string) any { return s })
	case engine.KindBoolList:
		row["value_bool_list"] = duckList(v.Bools(), func(b bool) any { return b })
	case engine.KindTimestampList:
		row["value_timestamp_list"] = duckList(v.Times(), func(t time.Time) any { return duckTime(t) })
	}
	if b := r.Bucket; b != nil {
		row["bucket_id"] = duckInt(b.ID)
		row["bucket_start"] = duckTime(b.Start)
		row["bucket_end"] = duckTime(b.End)
		row["bucket_open"] = b.Open
		row["window_sum"] = duckFloat(b.Sum)
		row["window_count"] = duckFloat(b.Count)
		row["window_min"] = duckFloat(b.Min)
		row["window_max"] = duckFloat(b.Max)
	}
	return row
}

// sameJSON compares a value of duckRow with one decoded from read.mjs's output (numbers as
// json.Number): floats by their bits, integers exactly.
func sameJSON(want, got any) bool {
	switch w := want.(type) {
	case float64:
		n, ok := got.(json.Number)
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		return err == nil && math.Float64bits(f) == math.Float64bits(w)
	case int64:
		n, ok := got.(json.Number)
		return ok && string(n) == strconv.FormatInt(w, 10)
	case []any:
		g, ok := got.([]any)
		return ok && slices.EqualFunc(w, g, sameJSON)
	}
	return reflect.DeepEqual(want, got)
}

// TestDuckDBReadsObjects writes objects of several features with EncodeParquet and checks
// every value DuckDB, a reader independent of parquet-go, reads back.
func TestDuckDBReadsObjects(t *testing.T) {
	node := duckDBNode(t)
	ts := func(ns int64) time.Time { return time.Unix(0, ns).UTC() }

	count := pqFeature{"fraud.count", engine.PrimitiveInt, []string{"card"}}
	amount := pqFeature{"fraud.amount", engine.PrimitiveFloat, []string{"card", "shop"}}
	tags := pqFeature{"user.tags", engine.PrimitiveStringList, []string{"user id"}}
	seen := pqFeature{"user.last_seen", engine.PrimitiveTimestamp, []string{"user"}}
	window := pqFeature{"fraud.amount_1h", engine.PrimitiveFloat, []string{"card"}}

	incr := count.write(3, engine.Int(7), "c1")
	incr.Op, incr.Fence = engine.OpIncr, 42
	late := count.write(4, engine.Int(math.MinInt64), "c2")
	late.Superseded = true

	tests := []struct {
		name string
		recs []Record
	}{
		{"int", []Record{
			count.write(0, engine.Int(0), "c1"),
			count.write(1, engine.Int(math.MaxInt64), "ç;\\"),
			count.write(2, engine.Null, ""),
			incr, late,
		}},
		{"float", []Record{
			amount.write(0, engine.Float(0.1), "c1", "s1"),
			amount.write(1, engine.Float(math.NaN()), "c1", "s2"),
			amount.write(2, engine.Float(math.Inf(1)), "c2", "s1"),
			amount.write(3, engine.Float(math.Inf(-1)), "c2", "s2"),
			amount.write(4, engine.Float(pqNegZero), "c3", "s1"),
			amount.write(5, engine.Float(math.SmallestNonzeroFloat64), "c3", "s2"),
			amount.write(6, engine.Float(-1.7976931348623157e308), "日本", "🦅"),
		}},
		{"string list", []Record{
			tags.write(0, engine.StringList([]string{"a", "ünï ✓", ""}), "u1"),
			tags.write(1, engine.StringList([]string{}), "u2"),
			tags.write(2, engine.StringList([]string{""}), "u3"),
			tags.write(3, engine.Null, "u4"),
		}},
		{"timestamp", []Record{
			seen.write(0, engine.Timestamp(pqT0), "u1"),
			seen.write(1, engine.Timestamp(time.Unix(0, 0)), "u2"),
			seen.write(2, engine.Timestamp(ts(-1_500)), "u3"),
			seen.write(3, engine.Timestamp(time.Date(1700, 1, 1, 0, 0, 0, 999, time.UTC)), "u4"),
			seen.write(4, engine.Timestamp(ts(math.MaxInt64)), "u5"),
		}},
		{"windowed bucket", []Record{
			window.bucket(0, KindBucketSnapshot, BucketRecord{ID: 29_436_000, Start: pqT0, End: pqT0.Add(time.Minute), Open: true,
				Sum: 12.5, Count: 2, Min: 2.5, Max: 10}, "c1"),
			window.bucket(1, KindBucketFinal, BucketRecord{ID: 29_436_000, Start: pqT0, End: pqT0.Add(time.Minute),
				Sum: 12.5, Count: 2, Min: 2.5, Max: 10}, "c1"),
			window.bucket(2, KindBucketFinal, BucketRecord{ID: -1, Start: ts(-60e9), End: ts(0),
				Sum: 0, Count: 0, Min: math.Inf(1), Max: math.Inf(-1)}, "c2"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := &tt.recs[0]
			columns, types, meta, rows := duckDBRead(t, node, pqEncode(t, tt.recs))

			wantColumns := []string{"schema_version", "fqn", "kind", "op", "superseded"}
			for _, n := range first.KeyNames {
				wantColumns = append(wantColumns, KeyColumn(n))
			}
			for _, c := range tailColumns {
				wantColumns = append(wantColumns, c.name)
			}
			if !slices.Equal(columns, wantColumns) {
				t.Errorf("columns\n%v, want\n%v", columns, wantColumns)
			}
			for col, want := range duckTypes(first.KeyNames) {
				if types[col] != want {
					t.Errorf("column %s: DuckDB type %q, want %q", col, types[col], want)
				}
			}
			wantMeta := map[string]string{
				"osprey.schema_version": strconv.Itoa(SchemaVersion),
				"osprey.fqn":            first.FQN,
				"osprey.primitive":      first.Primitive.String(),
				"osprey.keys":           encodeKeyNames(first.KeyNames),
			}
			if !reflect.DeepEqual(meta, wantMeta) {
				t.Errorf("metadata %v, want %v", meta, wantMeta)
			}

			if len(rows) != len(tt.recs) {
				t.Fatalf("DuckDB read %d rows, want %d", len(rows), len(tt.recs))
			}
			for i := range tt.recs {
				want := duckRow(&tt.recs[i])
				for _, col := range wantColumns {
					if !sameJSON(want[col], rows[i][col]) {
						t.Errorf("row %d, column %s: DuckDB read %#v, want %#v", i, col, rows[i][col], want[col])
					}
				}
			}
		})
	}
}

// duckTypes are the types DuckDB gives the columns.
func duckTypes(keyNames []string) map[string]string {
	const tstz = "TIMESTAMP WITH TIME ZONE"
	types := map[string]string{
		"schema_version": "INTEGER", "fqn": "VARCHAR", "kind": "VARCHAR", "op": "VARCHAR",
		"superseded": "BOOLEAN", "keys": "VARCHAR", "primitive": "VARCHAR",
		"value_int": "BIGINT", "value_float": "DOUBLE", "value_string": "VARCHAR",
		"value_bool": "BOOLEAN", "value_timestamp": tstz,
		"value_int_list": "BIGINT[]", "value_float_list": "DOUBLE[]", "value_string_list": "VARCHAR[]",
		"value_bool_list": "BOOLEAN[]", "value_timestamp_list": tstz + "[]",
		"event_time": tstz, "write_time": tstz,
		"bucket_id": "BIGINT", "bucket_start": tstz, "bucket_end": tstz, "bucket_open": "BOOLEAN",
		"window_sum": "DOUBLE", "window_count": "DOUBLE", "window_min": "DOUBLE", "window_max": "DOUBLE",
		"fence": "BIGINT",
	}
	for _, n := range keyNames {
		types[KeyColumn(n)] = "VARCHAR"
	}
	return types
}
