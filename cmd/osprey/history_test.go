package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	historyfile "github.com/osprey-ml/osprey/plugins/historystore/file"
)

const historyManifests = `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: limit, namespace: fraud}
spec:
  primitive: float
  freshness: 10m
  staleness: 1h
  keys: [card_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: amount, namespace: fraud}
spec:
  primitive: float
  freshness: 1m
  staleness: 10m
  keys: [card_id]
  builder:
    aggr: [sum, count, avg]
    aggrGranularity: 1m
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: tags, namespace: fraud}
spec:
  primitive: "[]string"
  freshness: 5m
  staleness: 24h
  keys: [card_id, country]
`

var histT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// historyDir writes the manifests and a history (in <data-dir>/history, as osprey dev
// keeps it) and returns the data directory and the manifests' file.
func historyDir(t testing.TB) (dataDir, manifests string) {
	t.Helper()
	dir := t.TempDir()
	manifests = filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(manifests, []byte(historyManifests), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir = filepath.Join(dir, "data")
	s, err := historyfile.New(filepath.Join(dataDir, "history"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := time.Minute
	rec := func(fqn string, p engine.Primitive, keyNames, keys []string, op engine.Op, v engine.Value, et, wt time.Duration) historian.Record {
		ek, err := engine.EncodeKeys(keyNames, engine.Keys(zipKeys(keyNames, keys)))
		if err != nil {
			t.Fatal(err)
		}
		return historian.Record{Kind: historian.KindWrite, FQN: fqn, Primitive: p, KeyNames: keyNames, Keys: keys, EncodedKeys: ek,
			Op: op, Value: v, EventTime: histT0.Add(et), WriteTime: histT0.Add(wt)}
	}
	card := []string{"card_id"}
	limit := func(c string, v float64, et, wt time.Duration) historian.Record {
		return rec("fraud.limit", engine.PrimitiveFloat, card, []string{c}, engine.OpSet, engine.Float(v), et, wt)
	}
	add := func(v float64, et time.Duration) historian.Record {
		return rec("fraud.amount", engine.PrimitiveFloat, card, []string{"c1"}, engine.OpUpdate, engine.Float(v), et, et)
	}
	tags := func(v []string, et time.Duration) historian.Record {
		return rec("fraud.tags", engine.PrimitiveStringList, []string{"card_id", "country"}, []string{"c1", "FR"}, engine.OpAppend,
			engine.StringList(v), et, et)
	}
	put := func(name string, recs ...historian.Record) {
		t.Helper()
		var buf bytes.Buffer
		if err := historian.EncodeParquet(&buf, recs); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(context.Background(), historian.ObjectKey(recs[0].FQN, recs[0].EventTime.Format(time.DateOnly), name), buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	put("a", limit("c1", 100, 0, 0), limit("c1", 200, 30*m, 30*m))
	put("b", limit("c2", 5, 0, 20*m)) // a backfill: written 20 minutes late
	put("c", add(10, 0), add(20, 30*time.Second), add(30, 2*m))
	put("d", tags([]string{"a"}, 0), tags([]string{"a", "b"}, m))
	return dataDir, manifests
}

func zipKeys(names, values []string) map[string]string {
	m := map[string]string{}
	for i, n := range names {
		m[n] = values[i]
	}
	return m
}

func TestHistoryList(t *testing.T) {
	data, _ := historyDir(t)
	code, out, errOut := runCLI(t, "", "history", "list", "--data-dir", data)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got []string
	for _, l := range lines {
		got = append(got, strings.Fields(l)[0])
	}
	want := []string{"fqn=fraud.amount/date=2026-12-01/", "c.parquet", "fqn=fraud.limit/date=2026-12-01/", "a.parquet", "b.parquet",
		"fqn=fraud.tags/date=2026-12-01/", "d.parquet", "total:"}
	if !slices.Equal(got, want) {
		t.Errorf("list:\n%s\nwant the lines %q", out, want)
	}
	if !strings.Contains(out, "2 objects") || !regexpMatch(lines[len(lines)-1], `^total: 4 objects, \d+ bytes, in 3 partitions of 3 features$`) {
		t.Errorf("list:\n%s", out)
	}
	code, out, errOut = runCLI(t, "", "history", "list", "fraud.limit", "--data-dir", data)
	if code != 0 || strings.Contains(out, "amount") || !strings.Contains(out, "total: 2 objects") {
		t.Errorf("list fraud.limit: exit %d\n%s%s", code, out, errOut)
	}
}

func regexpMatch(s, pattern string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func TestHistoryGet(t *testing.T) {
	data, manifests := historyDir(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"fraud.limit", "card_id=c1", "--at", "2026-12-01T09:59:00Z"}, "fraud.limit: no value at 2026-12-01T09:59:00Z\n"},
		{[]string{"fraud.limit", "card_id=c1", "--at", "2026-12-01T10:05:00Z"}, "fraud.limit = 100  (fresh, at 2026-12-01T10:00:00Z)\n"},
		{[]string{"fraud.limit", "card_id=c1", "--at", "2026-12-01T10:45:00Z"}, "fraud.limit = 200  (stale, at 2026-12-01T10:30:00Z)\n"},
		{[]string{"fraud.limit", "card_id=c1", "--at", "2026-12-01T11:30:00Z"}, "fraud.limit: no value at 2026-12-01T11:30:00Z\n"},
		{[]string{"fraud.limit", "card_id=c2", "--at", "1796119800"}, "fraud.limit = 5  (stale, at 2026-12-01T10:00:00Z)\n"},
		{[]string{"fraud.limit", "card_id=c2", "--at", "1796119800", "--as-written"}, "fraud.limit: no value at 2026-12-01T10:10:00Z\n"},
		{[]string{"fraud.limit", "card_id=c2", "--at", "2026-12-01T10:20:00Z", "--as-written"}, "fraud.limit = 5  (stale, at 2026-12-01T10:00:00Z)\n"},
		{[]string{"fraud.amount+sum", "card_id=c1", "--at", "2026-12-01T10:01:00Z"}, "fraud.amount+sum = 30  (fresh, at 2026-12-01T10:00:30Z)\n"},
		{[]string{"fraud.amount", "card_id=c1", "--at", "2026-12-01T10:05:00Z"}, "fraud.amount = {sum=60 count=3 avg=20}  (stale, at 2026-12-01T10:02:00Z)\n"},
		{[]string{"fraud.tags", "card_id=c1", "country=FR", "--at", "2026-12-01T10:00:30Z"}, `fraud.tags = ["a"]  (fresh, at 2026-12-01T10:00:00Z)` + "\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"history", "get", "--data-dir", data, "-f", manifests}, tt.args...)
			code, out, errOut := runCLI(t, "", args...)
			if code != 0 || out != tt.want {
				t.Errorf("exit %d, output %q (%s); want %q", code, out, errOut, tt.want)
			}
		})
	}
	code, out, errOut := runCLI(t, "", "history", "get", "fraud.limit", "card_id=c1", "--at", "2026-12-01T10:05:00Z",
		"--data-dir", data, "-f", manifests, "--output", "json")
	var got struct {
		Value     struct{ FloatValue float64 }
		Timestamp time.Time
		Fresh     bool
		Found     bool
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Value.FloatValue != 100 || !got.Found || !got.Fresh || !got.Timestamp.Equal(histT0) {
		t.Errorf("--output json: exit %d, %+v (%v)\n%s%s", code, got, err, out, errOut)
	}
}

// TestHistoryFeaturesFromHost: without -f the descriptors come from the host at --addr.
func TestHistoryFeaturesFromHost(t *testing.T) {
	data, manifests := historyDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	s, err := newStack(ctx, e, &serveConfig{State: "memory", Notifier: "memory", MemoryCeiling: "64Mi"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.server.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.close()
	})
	addr := "http://" + ln.Addr().String()
	if code, _, errOut := runCLI(t, "", "apply", "--addr", addr, "-f", manifests); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errOut)
	}
	code, out, errOut := runCLI(t, "", "history", "get", "fraud.amount", "card_id=c1", "--at", "2026-12-01T10:02:30Z", "--data-dir", data, "--addr", addr)
	if want := "fraud.amount = {sum=60 count=3 avg=20}  (fresh, at 2026-12-01T10:02:00Z)\n"; code != 0 || out != want {
		t.Errorf("exit %d, %q (%s); want %q", code, out, errOut, want)
	}
	code, _, errOut = runCLI(t, "", "history", "get", "fraud.nope", "card_id=c1", "--at", "1796119800", "--data-dir", data, "--addr", addr)
	if code == 0 || !strings.Contains(errOut, "fraud.nope is not in the host at "+addr) {
		t.Errorf("unknown feature: exit %d, %s", code, errOut)
	}
}

// exportCSV runs an export to CSV and returns its records.
func exportCSV(t *testing.T, data, manifests, entities string, extra ...string) [][]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.csv")
	args := append([]string{"history", "export", "--data-dir", data, "-f", manifests, "--entities", entities,
		"--features", "fraud.limit,fraud.amount+sum,fraud.tags,fraud.amount", "--out", out}, extra...)
	code, stdout, errOut := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(stdout, "exported 4 rows × 4 features to "+out) {
		t.Errorf("stdout %q", stdout)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

const entitiesCSV = `card_id,country,timestamp,label
c1,FR,2026-12-01T09:59:00Z,0
c1,FR,2026-12-01T10:05:00Z,1
c2,DE,1796119800,0
c1,FR,2026-12-01T10:45:00Z,1
`

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHistoryExportCSV(t *testing.T) {
	data, manifests := historyDir(t)
	header := []string{"card_id", "country", "timestamp", "label", "fraud.limit", "fraud.amount+sum", "fraud.tags", "fraud.amount"}
	eventTime := [][]string{
		header,
		{"c1", "FR", "2026-12-01T09:59:00Z", "0", "", "", "", ""},
		{"c1", "FR", "2026-12-01T10:05:00Z", "1", "100", "60", `["a","b"]`, `{"avg":20,"count":3,"sum":60}`},
		{"c2", "DE", "1796119800", "0", "5", "", "", ""},
		{"c1", "FR", "2026-12-01T10:45:00Z", "1", "200", "", `["a","b"]`, ""},
	}
	jsonl := `{"card_id": "c1", "country": "FR", "timestamp": "2026-12-01T09:59:00Z", "label": 0}

{"card_id": "c1", "country": "FR", "timestamp": "2026-12-01T10:05:00Z", "label": 1}
{"card_id": "c2", "country": "DE", "timestamp": 1796119800, "label": 0}
{"country": "FR", "card_id": "c1", "timestamp": "2026-12-01T10:45:00.000Z", "label": 1}
`
	jsonlWant := slices.Clone(eventTime)
	jsonlWant[4] = slices.Clone(eventTime[4])
	jsonlWant[4][2] = "2026-12-01T10:45:00.000Z"
	asWritten := slices.Clone(eventTime)
	asWritten[3] = []string{"c2", "DE", "1796119800", "0", "", "", "", ""} // the backfill was written at 10:20
	tests := []struct {
		name     string
		entities string
		extra    []string
		want     [][]string
	}{
		{"CSV, event time", writeFile(t, "entities.csv", entitiesCSV), nil, eventTime},
		{"CSV, as written", writeFile(t, "entities.csv", entitiesCSV), []string{"--as-written"}, asWritten},
		{"JSON Lines", writeFile(t, "entities.jsonl", jsonl), nil, jsonlWant},
		{"a named timestamp column", writeFile(t, "e.txt", strings.Replace(entitiesCSV, "timestamp", "ts", 1)),
			[]string{"--timestamp-column", "ts", "--entities-format", "csv"}, renamed(eventTime, 2, "ts")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exportCSV(t, data, manifests, tt.entities, tt.extra...)
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("export:\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func renamed(recs [][]string, col int, name string) [][]string {
	out := slices.Clone(recs)
	out[0] = slices.Clone(recs[0])
	out[0][col] = name
	return out
}

func TestHistoryExportParquet(t *testing.T) {
	data, manifests := historyDir(t)
	out := filepath.Join(t.TempDir(), "out.parquet")
	code, _, errOut := runCLI(t, "", "history", "export", "--data-dir", data, "-f", manifests, "--entities", writeFile(t, "e.csv", entitiesCSV),
		"--features", "fraud.limit,fraud.amount+sum,fraud.tags,fraud.amount", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range pf.Root().Columns() {
		names = append(names, c.Name())
	}
	if want := []string{"card_id", "country", "timestamp", "label", "fraud.limit", "fraud.amount+sum", "fraud.tags", "fraud.amount"}; !slices.Equal(names, want) {
		t.Fatalf("columns %q, want %q", names, want)
	}
	schema := pf.Schema().String()
	for _, want := range []string{`optional double fraud.limit`, `optional group fraud.tags (LIST)`, `required binary element (STRING)`,
		`optional group fraud.amount`, `required double avg`, `optional binary card_id (STRING)`} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
	if !strings.Contains(fmt.Sprint(pf.Metadata().RowGroups[0].Columns[0].MetaData.Codec), "ZSTD") {
		t.Errorf("codec %v, want zstd", pf.Metadata().RowGroups[0].Columns[0].MetaData.Codec)
	}
	rows := make([]parquet.Row, 10)
	rr := pf.RowGroups()[0].Rows()
	n, err := rr.ReadRows(rows)
	if n != 4 || err != nil && err != io.EOF {
		t.Fatalf("read %d rows: %v", n, err)
	}
	// Leaf columns: 0-3 the entity's, 4 fraud.limit, 5 fraud.amount+sum, 6 fraud.tags'
	// elements, 7-9 fraud.amount's sum, count and avg.
	text := func(r parquet.Row) string {
		var parts []string
		for _, v := range r {
			if v.Column() < 4 {
				continue
			}
			s := "null"
			switch {
			case v.IsNull():
			case v.Kind() == parquet.Double:
				s = strconv.FormatFloat(v.Double(), 'g', -1, 64)
			default:
				s = string(v.ByteArray())
			}
			parts = append(parts, fmt.Sprintf("%d:%s", v.Column(), s))
		}
		return strings.Join(parts, " ")
	}
	want := []string{
		"4:null 5:null 6:null 7:null 8:null 9:null",
		"4:100 5:60 6:a 6:b 7:60 8:3 9:20",
		"4:5 5:null 6:null 7:null 8:null 9:null",
		"4:200 5:null 6:a 6:b 7:null 8:null 9:null",
	}
	for i := range 4 {
		if got := text(rows[i]); got != want[i] {
			t.Errorf("row %d: %s, want %s", i, got, want[i])
		}
	}
}

// TestHistoryExportParquetEntities: a Parquet entity file, with a timestamp column, keeps its
// columns' types in a Parquet output and its values in a CSV one.
func TestHistoryExportParquetEntities(t *testing.T) {
	data, manifests := historyDir(t)
	type entity struct {
		CardID  string    `parquet:"card_id"`
		Country string    `parquet:"country"`
		At      time.Time `parquet:"timestamp,timestamp(millisecond)"`
		Label   *int64    `parquet:"label,optional"`
	}
	one := int64(1)
	path := filepath.Join(t.TempDir(), "entities.parquet")
	if err := parquet.WriteFile(path, []entity{
		{"c1", "FR", histT0.Add(-time.Minute), nil},
		{"c1", "FR", histT0.Add(5 * time.Minute), &one},
		{"c2", "DE", histT0.Add(10 * time.Minute), nil},
		{"c1", "FR", histT0.Add(45 * time.Minute), &one},
	}); err != nil {
		t.Fatal(err)
	}
	got := exportCSV(t, data, manifests, path)
	want := [][]string{
		{"card_id", "country", "timestamp", "label", "fraud.limit", "fraud.amount+sum", "fraud.tags", "fraud.amount"},
		{"c1", "FR", "2026-12-01T09:59:00Z", "", "", "", "", ""},
		{"c1", "FR", "2026-12-01T10:05:00Z", "1", "100", "60", `["a","b"]`, `{"avg":20,"count":3,"sum":60}`},
		{"c2", "DE", "2026-12-01T10:10:00Z", "", "5", "", "", ""},
		{"c1", "FR", "2026-12-01T10:45:00Z", "1", "200", "", `["a","b"]`, ""},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("export:\n%q\nwant\n%q", got, want)
	}
	out := filepath.Join(t.TempDir(), "out.parquet")
	code, _, errOut := runCLI(t, "", "history", "export", "--data-dir", data, "-f", manifests, "--entities", path,
		"--features", "fraud.limit", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	schema := pf.Schema().String()
	for _, want := range []string{"required binary card_id (STRING)", "required int64 timestamp (TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS))",
		"optional int64 label", "optional double fraud.limit"} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
	rows, err := parquet.Read[struct {
		CardID string    `parquet:"card_id"`
		At     time.Time `parquet:"timestamp,timestamp(millisecond)"`
		Label  *int64    `parquet:"label,optional"`
	}](f, st.Size())
	if err != nil || len(rows) != 4 || rows[1].CardID != "c1" || !rows[2].At.Equal(histT0.Add(10*time.Minute)) || rows[0].Label != nil || *rows[3].Label != 1 {
		t.Errorf("rows %+v, %v", rows, err)
	}
}

func TestHistoryErrors(t *testing.T) {
	data, manifests := historyDir(t)
	entities := writeFile(t, "e.csv", entitiesCSV)
	badTime := writeFile(t, "bad.csv", "card_id,country,timestamp\nc1,FR,2026-12-01T10:00:00Z\nc1,FR,1796119800\nc1,FR,yesterday\n")
	noCountry := writeFile(t, "nocountry.csv", "card_id,timestamp\nc1,2026-12-01T10:00:00Z\n")
	ragged := writeFile(t, "ragged.csv", "card_id,country,timestamp\nc1,FR\n")
	badJSON := writeFile(t, "bad.jsonl", `{"card_id": "c1", "country": "FR", "timestamp": "2026-12-01T10:00:00Z"}`+"\n"+`{"card_id": "c1", "zone": 3}`+"\n")
	nullKey := writeFile(t, "null.jsonl", `{"card_id": null, "country": "FR", "timestamp": "2026-12-01T10:00:00Z"}`+"\n")
	out := filepath.Join(t.TempDir(), "out.csv")
	export := func(entities, features string, extra ...string) []string {
		return append([]string{"history", "export", "--data-dir", data, "-f", manifests, "--entities", entities, "--features", features, "--out", out}, extra...)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"missing key column", export(noCountry, "fraud.tags"), []string{noCountry, `no column "country", a key of fraud.tags`}},
		{"unparsable timestamp", export(badTime, "fraud.limit"), []string{badTime, "row 3 (line 4), column timestamp", `"yesterday" is not a time`}},
		{"unknown selector", export(entities, "fraud.limit,fraud.nope"), []string{`selector "fraud.nope"`, "fraud.nope is not in the manifests", "fraud.amount, fraud.limit, fraud.tags"}},
		{"previous version", export(entities, "fraud.limit@-1"), []string{"previous versions", "not supported in history reads"}},
		{"aggregation of a scalar", export(entities, "fraud.limit+avg"), []string{"not windowed"}},
		{"no timestamp column", export(entities, "fraud.limit", "--timestamp-column", "when"), []string{`no timestamp column "when"`, "card_id, country, timestamp, label"}},
		{"a row short of fields", export(ragged, "fraud.limit"), []string{ragged, "row 1", "wrong number of fields"}},
		{"a JSON field not in the first line", export(badJSON, "fraud.limit"), []string{badJSON, "row 2 (line 2)", `field "zone"`}},
		{"a null key", export(nullKey, "fraud.limit"), []string{nullKey, "row 1 (line 1), column card_id: null"}},
		{"unknown entity format", export(writeFile(t, "e.xml", ""), "fraud.limit"), []string{"--entities-format"}},
		{"not Parquet", export(writeFile(t, "e.parquet", "card_id\n"), "fraud.limit"), []string{"not a Parquet file"}},
		{"bad --at", []string{"history", "get", "fraud.limit", "card_id=c1", "--at", "soon", "--data-dir", data, "-f", manifests}, []string{`--at: "soon" is not a time`}},
		{"missing key", []string{"history", "get", "fraud.tags", "card_id=c1", "--at", "1796119800", "--data-dir", data, "-f", manifests}, []string{`missing key "country"`}},
		{"no history", []string{"history", "list", "--data-dir", filepath.Join(data, "nope")}, []string{"no history in " + filepath.Join(data, "nope", "history")}},
		{"unknown command", []string{"history", "frob"}, []string{`unknown command "frob"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "", tt.args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written despite the error", out)
			}
		})
	}
}

// BenchmarkExport joins 1,000,000 entity rows with 10 features (100,000 entities with three
// writes each per feature): the export end to end, from loading the history to writing
// Parquet.
func BenchmarkExport(b *testing.B) {
	const entities, rowsN, writesPer = 100_000, 1_000_000, 3
	dir := b.TempDir()
	s, err := historyfile.New(filepath.Join(dir, "history"))
	if err != nil {
		b.Fatal(err)
	}
	var manifests strings.Builder
	var sels []string
	rng := rand.New(rand.NewPCG(1, 2))
	day := 24 * time.Hour
	for i := range 10 {
		name := fmt.Sprintf("f%d", i)
		var prim engine.Primitive
		aggr := ""
		switch i % 5 {
		case 0, 1:
			prim = engine.PrimitiveFloat
		case 2:
			prim = engine.PrimitiveInt
		case 3:
			prim = engine.PrimitiveStringList
		case 4:
			prim = engine.PrimitiveFloat
			aggr = "\n  builder: {aggr: [sum, count, avg], aggrGranularity: 1h}"
		}
		fmt.Fprintf(&manifests, "---\napiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: %s, namespace: bench}\nspec:\n  primitive: %q\n  freshness: 1h\n  staleness: 24h\n  keys: [card_id]%s\n", name, prim, aggr)
		sel := "bench." + name
		if aggr != "" {
			sel += "+avg"
		}
		sels = append(sels, sel)
		var recs []historian.Record
		keyNames := []string{"card_id"}
		for e := range entities {
			card := "e" + strconv.Itoa(e)
			for w := range writesPer {
				ts := histT0.Add(time.Duration(rng.Int64N(int64(day))))
				r := historian.Record{Kind: historian.KindWrite, FQN: sel[:strings.IndexByte(sel+"+", '+')], Primitive: prim, KeyNames: keyNames,
					Keys: []string{card}, EncodedKeys: card, Op: engine.OpSet, EventTime: ts, WriteTime: ts}
				switch prim {
				case engine.PrimitiveFloat:
					r.Value = engine.Float(rng.Float64())
					if aggr != "" {
						r.Op = engine.OpUpdate
					}
				case engine.PrimitiveInt:
					r.Op, r.Value = engine.OpIncr, engine.Int(int64(w+1))
				default:
					r.Op, r.Value = engine.OpAppend, engine.StringList([]string{"m" + strconv.Itoa(w)})
				}
				recs = append(recs, r)
			}
		}
		for j := 0; j < len(recs); j += 50_000 {
			var buf bytes.Buffer
			if err := historian.EncodeParquet(&buf, recs[j:min(j+50_000, len(recs))]); err != nil {
				b.Fatal(err)
			}
			if err := s.Put(context.Background(), historian.ObjectKey(recs[0].FQN, histT0.Format(time.DateOnly), strconv.Itoa(j)), buf.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
	}
	s.Close()
	mpath := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(mpath, []byte(manifests.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var ents bytes.Buffer
	ents.WriteString("card_id,timestamp\n")
	for range rowsN {
		ts := histT0.Add(time.Duration(rng.Int64N(int64(day + day/2))))
		fmt.Fprintf(&ents, "e%d,%s\n", rng.IntN(entities), ts.Format(time.RFC3339))
	}
	epath := filepath.Join(dir, "entities.csv")
	if err := os.WriteFile(epath, ents.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.parquet")
	args := []string{"-log-level", "warn", "history", "export", "--data-dir", dir, "-f", mpath, "--entities", epath,
		"--features", strings.Join(sels, ","), "--out", out}
	b.ResetTimer()
	for b.Loop() {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != 0 {
			b.Fatalf("exit %d: %s", code, stderr.String())
		}
	}
	b.ReportMetric(float64(rowsN*b.N)/b.Elapsed().Seconds(), "rows/s")
}
