package main

import (
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

func TestWriteArgs(t *testing.T) {
	for _, tc := range []struct {
		words []string
		keys  map[string]string
		value string
		err   string
	}{
		{[]string{"card_id=c1", "500"}, map[string]string{"card_id": "c1"}, "500", ""},
		{[]string{"user_id=u1", "device=phone", "-5"}, map[string]string{"user_id": "u1", "device": "phone"}, "-5", ""},
		{[]string{"at=home", "3"}, map[string]string{"at": "home"}, "3", ""}, // at= is a key: --at is the timestamp
		{[]string{"card_id=c1", `"a=b"`}, map[string]string{"card_id": "c1"}, `"a=b"`, ""},
		{[]string{"card_id=c1", "Porto Santo"}, map[string]string{"card_id": "c1"}, "Porto Santo", ""},
		{[]string{"card_id=c1"}, nil, "", "missing the value after the keys"},
		{nil, nil, "", "missing the keys and the value"},
		{[]string{"c1", "500"}, nil, "", `"c1" is not KEY=VALUE`},
		{[]string{"card_id=c1", "card_id=c2", "5"}, nil, "", `key "card_id" given twice`},
	} {
		keys, value, err := writeArgs("set", tc.words)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("writeArgs(%q) = %v; want an error with %q", tc.words, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(keys, tc.keys) || value != tc.value {
			t.Errorf("writeArgs(%q) = %v, %q, %v; want %v, %q", tc.words, keys, value, err, tc.keys, tc.value)
		}
	}
}

func TestEntityArgs(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  []map[string]string
		err   string
	}{
		{[]string{"card_id=c1", "card_id=c2"}, []map[string]string{{"card_id": "c1"}, {"card_id": "c2"}}, ""},
		{[]string{"user_id=u1", "device=a", "user_id=u2", "device=b"},
			[]map[string]string{{"user_id": "u1", "device": "a"}, {"user_id": "u2", "device": "b"}}, ""},
		{[]string{"card_id=a,b"}, []map[string]string{{"card_id": "a,b"}}, ""},
		{nil, nil, "at least one entity"},
		{[]string{"c1"}, nil, "not KEY=VALUE"},
	} {
		got, err := entityArgs(tc.words)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("entityArgs(%q) = %v; want an error with %q", tc.words, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.EqualFunc(got, tc.want, maps.Equal) {
			t.Errorf("entityArgs(%q) = %v, %v; want %v", tc.words, got, err, tc.want)
		}
	}
}

func TestDryRunArgs(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.json")
	two := filepath.Join(dir, "two.jsonl")
	os.WriteFile(one, []byte("\n{\"a\": 1}\n"), 0o644)
	os.WriteFile(two, []byte("{\"a\": 1}\n{\"a\": 2}\n"), 0o644)
	for _, tc := range []struct {
		words []string
		row   bool
		keys  map[string]string
		err   string
	}{
		{[]string{`{"card_id":"c9"}`}, true, map[string]string{}, ""},
		{[]string{"card_id=c9"}, false, map[string]string{"card_id": "c9"}, ""},
		{[]string{one, "card_id=c9"}, true, map[string]string{"card_id": "c9"}, ""},
		{[]string{two}, false, nil, "want one row, found 2 (lines [1 2])"},
		{[]string{"card_id:c9"}, false, nil, "is neither a row"},
		{[]string{`{"card_id":`}, false, nil, "row: not JSON"},
		{[]string{`{"a":1}`, `{"a":2}`}, false, nil, "more than one row"},
	} {
		row, keys, err := dryRunArgs(strings.NewReader(""), tc.words)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("dryRunArgs(%q) = %v; want an error with %q", tc.words, err, tc.err)
			}
			continue
		}
		if err != nil || (row != nil) != tc.row || !maps.Equal(keys, tc.keys) {
			t.Errorf("dryRunArgs(%q) = %v, %v, %v", tc.words, row, keys, err)
		}
	}
}

func TestJSONRow(t *testing.T) {
	for _, tc := range []struct{ text, err string }{
		{`{"a":1}`, ""},
		{`[1,2]`, "a row is a JSON object"},
		{`null`, "got null"},
		{`card_id:c9`, "not JSON"},
	} {
		_, err := jsonRow(tc.text)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("jsonRow(%q) = %v; want %q", tc.text, err, tc.err)
		}
	}
}

func TestReadRowLines(t *testing.T) {
	_, lines, err := readRowLines(strings.NewReader("{\"a\":1}\n\n  \n{\"a\":2}\n"), "-")
	if err != nil || !slices.Equal(lines, []int{1, 4}) {
		t.Fatalf("lines %v, %v; want [1 4]", lines, err)
	}
	if _, _, err := readRowLines(strings.NewReader("{\"a\":1}\n\nnope\n"), "-"); err == nil || !strings.HasPrefix(err.Error(), "-:3: not JSON") {
		t.Fatalf("err = %v; want -:3: not JSON", err)
	}
}

func TestIngestFailure(t *testing.T) {
	ce := connect.NewError(connect.CodeInvalidArgument, errors.New("ingest x: nothing written: row 1: boom"))
	d, err := connect.NewErrorDetail(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "rows[1]", Description: "fraud.amount: boom"}}})
	if err != nil {
		t.Fatal(err)
	}
	ce.AddDetail(d)
	got := ingestFailure("rows.jsonl", []int{1, 3}, ce).Error()
	if want := "invalid_argument: nothing written:\nrows.jsonl:3: fraud.amount: boom"; got != want {
		t.Errorf("ingestFailure = %q, want %q", got, want)
	}
	plain := connect.NewError(connect.CodeUnavailable, errors.New("down"))
	if got := ingestFailure("r", []int{2, 5}, plain).Error(); got != "lines 2–5 of r: unavailable: down" {
		t.Errorf("ingestFailure without details = %q", got)
	}
}

func TestVersionOf(t *testing.T) {
	for _, tc := range []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3 go1.26.7"},
		{debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}},
			"devel (0123456789ab, modified) go1.26.7"},
		{debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Version: "v0.0.0-20261124002537-0123456789ab"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}},
			"v0.0.0-20261124002537-0123456789ab go1.26.7"},
	} {
		if got := versionOf(&tc.info); got != tc.want {
			t.Errorf("versionOf(%v) = %q, want %q", tc.info.Main, got, tc.want)
		}
	}
}

func TestDevBanner(t *testing.T) {
	b := devBanner("127.0.0.1:8080", "the examples", "osprey", false)
	for _, want := range []string{"with the examples applied", "osprey ingest fraud.transactions -", "osprey watch fraud.limit", "osprey get-many"} {
		if !strings.Contains(b, want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "OSPREY_ADDR") || strings.Contains(b, "transactions.jsonl") {
		t.Errorf("banner for the default address outside a checkout:\n%s", b)
	}
	b = devBanner("127.0.0.1:9999", "the examples", "go run ./cmd/osprey", true)
	if !strings.Contains(b, "export OSPREY_ADDR=http://127.0.0.1:9999") || !strings.Contains(b, "go run ./cmd/osprey ingest fraud.transactions examples/fraud/transactions.jsonl") {
		t.Errorf("banner for another address in a checkout:\n%s", b)
	}
	if b := devBanner("127.0.0.1:8080", "", "osprey", false); !strings.Contains(b, "no examples applied") || strings.Contains(b, "with the examples") {
		t.Errorf("banner without examples:\n%s", b)
	}
	if got := devCommand("/tmp/go-build123/b001/exe/osprey"); got != "go run ./cmd/osprey" {
		t.Errorf("devCommand(go run) = %q", got)
	}
	if got := devCommand("/usr/local/bin/osprey"); got != "osprey" {
		t.Errorf("devCommand(installed) = %q", got)
	}
}

func TestFailedTargets(t *testing.T) {
	rep := &benchReport{Targets: []benchVerdict{verdict("a", 1, 0.9, true), verdict("b", 2, 1.2, false)}}
	if err := rep.failedTargets(); err == nil || !strings.Contains(err.Error(), "1 of 2 targets failed: b") {
		t.Errorf("failedTargets = %v", err)
	}
	rep.Targets = rep.Targets[:1]
	if err := rep.failedTargets(); err != nil {
		t.Errorf("failedTargets with all passing = %v", err)
	}
}

func TestManifestTree(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a.yaml", "sub/b.yml", "sub/deeper/c.yaml", "sub/notes.txt", ".hidden/d.yaml", "testdata/e.yaml"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), nil, 0o644)
	}
	got, err := manifestFiles([]string{dir}, true)
	if err != nil {
		t.Fatal(err)
	}
	var rel []string
	for _, g := range got {
		r, _ := filepath.Rel(dir, g)
		rel = append(rel, filepath.ToSlash(r))
	}
	if want := []string{"a.yaml", "sub/b.yml", "sub/deeper/c.yaml"}; !slices.Equal(rel, want) {
		t.Errorf("manifestTree = %q, want %q", rel, want)
	}
	if _, err := manifestFiles([]string{filepath.Join(dir, "sub", "deeper", "..", "..", ".hidden", "..", "testdata", "nope")}, true); err == nil {
		t.Error("a missing path: no error")
	}
	empty := t.TempDir()
	if _, err := manifestFiles([]string{empty}, true); err == nil || !strings.Contains(err.Error(), "no *.yaml") {
		t.Errorf("an empty directory: %v", err)
	}
}

// TestJSONRowExact: the CLI reads a row's numbers exactly: integer literals as int64 (even
// beyond ±2^53, which a google.protobuf.Struct would round), others as floats.
func TestJSONRowExact(t *testing.T) {
	row, err := jsonRow(`{"a":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"f":1.5,"e":1e3,"n":null,"l":[1,2.5]}`)
	if err != nil {
		t.Fatal(err)
	}
	f := row.GetFields()
	if f["a"].GetIntValue() != 1<<53+1 || f["max"].GetIntValue() != math.MaxInt64 || f["min"].GetIntValue() != math.MinInt64 {
		t.Fatalf("ints: %v %v %v", f["a"], f["max"], f["min"])
	}
	if f["f"].GetFloatValue() != 1.5 || f["e"].GetFloatValue() != 1000 || len(f["l"].GetFloatList().GetValues()) != 2 {
		t.Fatalf("floats: %v %v %v", f["f"], f["e"], f["l"])
	}
	if _, ok := f["n"]; ok {
		t.Fatal("a null field is sent")
	}
	if _, err := jsonRow(`{"big":9223372036854775808}`); err == nil || !strings.Contains(err.Error(), "outside the int64 range") {
		t.Fatalf("2^63: %v", err)
	}
	if _, err := jsonRow(`{"o":{"x":1}}`); err == nil || !strings.Contains(err.Error(), "an object is not a row value") {
		t.Fatalf("object: %v", err)
	}
}

// TestJSONValueExact: a write's value keeps an integer beyond ±2^53 exact (as its string).
func TestJSONValueExact(t *testing.T) {
	for in, want := range map[string]any{
		"9007199254740993":      "9007199254740993",
		"9223372036854775807":   "9223372036854775807",
		"-9223372036854775808":  "-9223372036854775808",
		"42":                    42.0,
		"1.5":                   1.5,
		"hello":                 "hello",
		"[9007199254740993, 1]": []any{"9007199254740993", 1.0},
	} {
		v, err := jsonValue(in)
		if err != nil || !reflect.DeepEqual(v.AsInterface(), want) {
			t.Errorf("jsonValue(%s) = %v, %v; want %v", in, v.AsInterface(), err, want)
		}
	}
}
