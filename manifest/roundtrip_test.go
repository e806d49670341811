package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// roundTripInputs cover every kind and, between them, every field of the format, in both
// apiVersions. TestRoundTripCoversEveryField checks that they do.
var roundTripInputs = []struct {
	name string
	src  string
}{
	{"feature, every field", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata:
  name: Spend
  namespace: fraud
  labels: {team: risk, tier: 1, "app.kubernetes.io/name": osprey, "<<": merge, "": empty, "null": ~x}
spec:
  primitive: float
  freshness: 90s
  staleness: 2h30m
  timeout: 250ms
  keys: [card_id, merchant_id]
  dataSource: {name: Transactions}
  builder:
    module: "sha256:` + strings.Repeat("ab", 32) + `"
    aggr: [SUM, mean, count, max, min]
    aggrGranularity: 5m
    config: {field: amount, scale: "2", multi: "line one\nline two\n", spaced: "  padded  ", yes: "yes", quote: "it's \"x\""}
  middlewares:
    - {name: validate, stages: [preSet, post-get], priority: -3, config: {min: "0"}}
    - {name: shaper, module: shaper.wasm, stages: [postSet, preGet], priority: 0x10}
    - {name: audit, module: audit.wasm, stages: [PostSet]}
  dependencies: [other, geo.city]
`},
	{"feature, defaults", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: clicks}
spec:
  primitive: '[]string'
  freshness: 1m
  staleness: 1h
  keys: [user_id]
`},
	{"feature, empty collections and nulls", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: f, namespace: ns, labels: {}}
spec:
  primitive: timestamp
  freshness: 1m
  staleness: 1h
  timeout: ~
  keys: [id]
  dataSource: rows
  builder: {kind: streaming, config: {}}
  middlewares: []
  dependencies: []
`},
	{"feature, plugin builder with a module", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: f, namespace: ns}
spec:
  primitive: '[]int'
  freshness: 1m
  staleness: 1h
  keepPrevious: {versions: 3, over: 24h}
  keys: [id]
  builder: {kind: streaming, module: x.wasm}
`},
	{"feature, a program with storage", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: sessions, namespace: clicks}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user_id]
  dataSource: events
  builder:
    module: sessions.wasm
    storage:
      - {name: last_seen, type: timestamp, expireAfterWrite: 30m}
      - {name: count, type: INT, expireAfterCall: 1h30m}
      - {name: pages, type: '[]string'}
    messages: ' []Int'
`},
	{"feature, plugin connector and plugin middlewares", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: country, namespace: geo}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [ip]
  builder: {plugin: GeoIP, function: lookup, config: {field: country}}
  middlewares:
    - {plugin: pii.validate, function: handle, stages: [postGet], config: {max: "3"}}
    - {plugin: audit, function: _log2, stages: [postGet], priority: 2}
`},
	{"data source, every field", `apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: stream, namespace: fraud, labels: {"app.kubernetes.io/name": osprey}}
spec:
  kind: streaming
  config: {topic: tx, brokers: "a:9092,b:9092", partitions: 12, enabled: true, empty: ""}
  keyFields: [card_id, merchant_id]
  timestampField: ts
  schema: {type: object, properties: {amount: {type: number}}}
`},
	{"data source, string schema", `apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: tx}
spec:
  kind: rest
  keyFields: []
  config: {}
  schema: |
    {"type": "object"}
`},
	{"plugin, every field", `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata:
  name: Mask
  namespace: PII
  labels: {team: privacy, "app.kubernetes.io/name": osprey}
spec:
  module: modules/mask.wasm
  functions:
    - {name: encode, role: encoder}
    - {name: handle, role: Middleware}
    - {name: _compute2, role: connector}
  config: {mask_char: "*", width: 2, empty: "", multi: "line one\nline two\n", yes: "yes"}
  allowedHosts: [api.example.com, "*.geo.example.net", "*"]
  limits: {timeout: 1m30s, memoryPages: 65536, httpResponseBytes: 1048576, outputBytes: 0x10000}
`},
	{"plugin, minimal", `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: p, labels: {}}
spec:
  module: "sha256:` + strings.Repeat("cd", 32) + `"
  functions: [{name: handle, role: middleware}]
  config: {}
  allowedHosts: []
  limits: {memoryPages: 0, timeout: ~}
`},
	{"plugin, some limits", `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: p, namespace: ns}
spec:
  module: p.wasm
  functions: [{name: f, role: encoder}]
  limits: {outputBytes: 10}
`},
	{"egress, every kind of value", `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: Alerts, namespace: Fraud, labels: {team: risk, "app.kubernetes.io/name": osprey}}
spec:
  type: webhook
  config:
    url: https://hooks.example.com/fraud?a=1&b=2
    headers: {Authorization: "Bearer x", X-Int: 3, X-Empty: "", "X-Quote": "it's \"x\""}
    timeout: 5s
    maxLen: 1000
    yes: yes
    multi: "line one\nline two\n"
    spaced: "  padded  "
    addrs: [a:6379, "b:6379", 0x10, ""]
    none: []
    nothing: {}
    "odd key": "~"
`},
	{"egress, minimal", `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: out, labels: {}}
spec:
  type: redis-stream
  config: {}
`},
	{"RaptorML feature", `apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: card-spend
  namespace: fraud-v1
  uid: 0a1b
  annotations: {a: b}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  timeout: 200ms
  keys: [card_id]
  dataSource: {name: card-transactions, namespace: fraud-v1}
  dependencies: [other-feature]
  builder:
    kind: streaming
    module: card_spend.wasm
    aggrGranularity: 1m
    aggr: [sum, count, avg, max]
    runtime: python3.11
    packages: [numpy]
    code: "  "
status: {ready: true}
`},
	{"RaptorML headless feature", `apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: card-label, namespace: legacy-fraud}
spec:
  primitive: string
  freshness: 1h
  staleness: 24h
  keys: [card_id]
  builder: {kind: headless}
`},
	{"RaptorML data source", `apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: card-tx, namespace: my-ns, annotations: {a: b}}
spec:
  kind: streaming
  replicas: 3
  resources: {limits: {cpu: "1"}}
  config:
    - {name: topic, value: tx}
    - {name: empty, value: ""}
    - {name: nothing, value: ~}
  keyFields: [card_id]
  timestampField: ts
status: {ready: true}
`},
}

// roundTrip checks, for every manifest of an input Parse accepted, that its canonical
// manifest parses back to the same object (parse → write → parse) and that writing that
// gives the same bytes again (write → parse → write). It returns the canonical manifests.
func roundTrip(t *testing.T, ms []Manifest) [][]byte {
	t.Helper()
	var outs [][]byte
	for _, m := range ms {
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", m.FQN(), err)
		}
		back, err := Parse(out, "canonical.yaml")
		if err != nil {
			t.Fatalf("%s: the canonical manifest does not parse: %v\n%s", m.FQN(), err, out)
		}
		if len(back) != 1 {
			t.Fatalf("%s: the canonical manifest holds %d manifests\n%s", m.FQN(), len(back), out)
		}
		if back[0].APIVersion != APIVersion || back[0].Kind != m.Kind {
			t.Errorf("%s: written as %s %s, want %s %s", m.FQN(), back[0].APIVersion, back[0].Kind, APIVersion, m.Kind)
		}
		if got, want := objectOf(back[0]), objectOf(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: parse → write → parse differs:\n%s\n got %+v\nwant %+v", m.FQN(), out, got, want)
		}
		again, err := Marshal(back[0])
		if err != nil {
			t.Fatalf("%s: Marshal again: %v", m.FQN(), err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("%s: write → parse → write differs:\n%s\n---- then ----\n%s", m.FQN(), out, again)
		}
		outs = append(outs, out)
	}
	return outs
}

// objectOf is what a round trip keeps: the object, not where it was nor its apiVersion.
func objectOf(m Manifest) any {
	switch {
	case m.Feature != nil:
		return m.Feature
	case m.DataSource != nil:
		return m.DataSource
	case m.Egress != nil:
		return m.Egress
	}
	return m.Plugin
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range roundTripInputs {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse([]byte(tt.src), "t.yaml")
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, tt.src)
			}
			if len(ms) == 0 {
				t.Fatal("no manifests")
			}
			roundTrip(t, ms)
		})
	}
}

// TestRoundTripFiles round-trips the valid test fixtures and the examples.
func TestRoundTripFiles(t *testing.T) {
	for _, path := range []string{"testdata/manifests", "../examples/fraud", "../examples/derived", "../examples/middleware"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			ms, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, ms)
		})
	}
}

// TestRoundTripCoversEveryField checks that roundTripInputs, written canonically, between
// them write every field of the schema, and that the writer writes no field the reader
// does not accept.
func TestRoundTripCoversEveryField(t *testing.T) {
	seen := map[Kind]map[string]bool{KindFeature: {}, KindDataSource: {}, KindPlugin: {}, KindEgress: {}}
	for _, tt := range roundTripInputs {
		ms, err := Parse([]byte(tt.src), "t.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, m := range ms {
			out, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			fieldPaths(doc.Content[0], "", seen[m.Kind])
		}
	}
	prefixed := func(prefix string, fs fieldSet) []string {
		var out []string
		for _, f := range fs.named {
			out = append(out, prefix+f)
		}
		return out
	}
	common := slices.Concat(prefixed("", topFields), prefixed("metadata.", metadataFields))
	want := map[Kind][]string{
		KindFeature: slices.Concat(common, prefixed("spec.", featureFields), prefixed("spec.keepPrevious.", keepPreviousFields),
			prefixed("spec.builder.", builderFields), prefixed("spec.builder.storage[].", storageFields), prefixed("spec.middlewares[].", middlewareFields)),
		KindDataSource: slices.Concat(common, prefixed("spec.", dataSourceFields)),
		KindPlugin: slices.Concat(common, prefixed("spec.", pluginFields), prefixed("spec.functions[].", pluginFunctionFields),
			prefixed("spec.limits.", pluginLimitsFields)),
		KindEgress: slices.Concat(common, prefixed("spec.", egressFields)),
	}
	for kind, paths := range want {
		for _, p := range paths {
			if !seen[kind][p] {
				t.Errorf("%s: no round-trip input writes %s", kind, p)
			}
		}
		for p := range seen[kind] {
			if !slices.Contains(paths, p) {
				t.Errorf("%s: the writer writes %s, which is not in the schema", kind, p)
			}
		}
	}
}

// fieldPaths records the field paths of the mappings in n, lists written as [], not
// descending into string maps (labels, config).
func fieldPaths(n *yaml.Node, path string, seen map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		if strings.HasSuffix(path, "labels") || strings.HasSuffix(path, "config") {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			seen[p] = true
			fieldPaths(n.Content[i+1], p, seen)
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			fieldPaths(e, path+"[]", seen)
		}
	}
}

// TestCanonical pins the canonical form: the registry compares objects by these bytes, so
// a change to them shows every stored object as changed.
func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"feature", roundTripInputs[14].src, `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata:
  name: card_label
  namespace: legacy_fraud
spec:
  primitive: string
  freshness: 1h0m0s
  staleness: 24h0m0s
  timeout: 1s
  keys:
    - card_id
  builder:
    kind: sourceless
`},
		{"windowed feature", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: spend, namespace: fraud, labels: {tier: "1", team: risk}}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [card_id]
  dataSource: transactions
  builder: {module: spend.wasm, aggr: [avg, sum], aggrGranularity: 1m, config: {b: "2", a: "1"}}
  middlewares: [{name: clip, stages: [preSet], priority: 5, config: {max: "100"}}]
  dependencies: [fraud.count]
`, `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata:
  name: spend
  namespace: fraud
  labels:
    team: risk
    tier: "1"
spec:
  primitive: float
  freshness: 1m0s
  staleness: 1h0m0s
  timeout: 1s
  keys:
    - card_id
  dataSource: fraud.transactions
  builder:
    kind: wasm
    module: spend.wasm
    aggr:
      - sum
      - avg
    aggrGranularity: 1m0s
    config:
      a: "1"
      b: "2"
  middlewares:
    - name: clip
      stages:
        - preSet
      priority: 5
      config:
        max: "100"
  dependencies:
    - fraud.count
`},
		{"data source", roundTripInputs[15].src, `apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata:
  name: card_tx
  namespace: my_ns
spec:
  kind: streaming
  config:
    empty: ""
    nothing: ""
    topic: tx
  keyFields:
    - card_id
  timestampField: ts
`},
		{"egress", `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata: {name: Alerts, namespace: fraud}
spec:
  config: {url: "https://h.example.com/x", timeout: 5s, maxLen: 10, headers: {X-B: 2, X-A: "a"}, addrs: [b, a]}
  type: webhook
`, `apiVersion: osprey.dev/v1alpha1
kind: Egress
metadata:
  name: alerts
  namespace: fraud
spec:
  type: webhook
  config:
    addrs:
      - b
      - a
    headers:
      X-A: a
      X-B: "2"
    maxLen: "10"
    timeout: 5s
    url: https://h.example.com/x
`},
		{"feature with messages", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: f, namespace: ns}
spec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], builder: {module: m.wasm, messages: '[]String'}}
`, `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata:
  name: f
  namespace: ns
spec:
  primitive: int
  freshness: 1m0s
  staleness: 1h0m0s
  timeout: 1s
  keys:
    - id
  builder:
    kind: wasm
    module: m.wasm
    messages: '[]string'
`},
		{"plugin", `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata: {name: Mask, namespace: pii, labels: {team: privacy, tier: "1"}}
spec:
  limits: {outputBytes: 65536, timeout: 0.2s, memoryPages: 64}
  allowedHosts: ["*.geo.example.net", api.example.com]
  config: {width: 2, mask_char: "*"}
  functions: [{role: Encoder, name: encode}, {name: handle, role: middleware}]
  module: mask.wasm
`, `apiVersion: osprey.dev/v1alpha1
kind: Plugin
metadata:
  name: mask
  namespace: pii
  labels:
    team: privacy
    tier: "1"
spec:
  module: mask.wasm
  functions:
    - name: encode
      role: encoder
    - name: handle
      role: middleware
  config:
    mask_char: '*'
    width: "2"
  allowedHosts:
    - '*.geo.example.net'
    - api.example.com
  limits:
    timeout: 200ms
    memoryPages: 64
    outputBytes: 65536
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse([]byte(tt.src), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got, err := Marshal(ms[0])
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestMarshalNothing(t *testing.T) {
	_, err := Marshal(Manifest{Kind: KindFeature, Pos: Position{Source: "x.yaml", Document: 1}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "x.yaml: document 1: no Feature, DataSource, Plugin or Egress to write") {
		t.Errorf("error = %v", err)
	}
}

// TestReaderReadsOnlyTheSchema: the reader asking for a field the schema lacks is a bug,
// caught by the first test that reaches it.
func TestReaderReadsOnlyTheSchema(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "spec.colour, which is not in the schema") {
			t.Errorf("recovered %v", r)
		}
	}()
	d := &decoder{lines: map[string]int{}}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("primitive: int\n"), &n); err != nil {
		t.Fatal(err)
	}
	m, _ := d.mapping(n.Content[0], "spec", "")
	d.allow(&m, featureFields)
	m.get("colour")
}

// TestFieldLists pins the lists the reader accepts, derived from the wire structs.
func TestFieldLists(t *testing.T) {
	tests := []struct {
		name         string
		fs           fieldSet
		osprey, more string // more: what a RaptorML manifest may have besides
		with         string
	}{
		{"top", topFields, "apiVersion kind metadata spec", "status", " with apiVersion, kind, metadata and spec"},
		{"metadata", metadataFields, "name namespace labels", "annotations uid resourceVersion generation creationTimestamp managedFields finalizers ownerReferences selfLink generateName deletionTimestamp deletionGracePeriodSeconds", " with name, namespace and labels"},
		{"feature", featureFields, "primitive freshness staleness timeout keepPrevious keys dataSource builder middlewares dependencies", "", " with primitive, freshness, staleness, timeout, keepPrevious, keys, dataSource, builder, middlewares and dependencies"},
		{"keepPrevious", keepPreviousFields, "versions over", "", " with versions and over"},
		{"builder", builderFields, "kind module plugin function aggr aggrGranularity config storage messages code", "runtime packages", " with kind, module, plugin, function, aggr, aggrGranularity, config, storage and messages"},
		{"storage", storageFields, "name type expireAfterWrite expireAfterCall", "", " with name, type, expireAfterWrite and expireAfterCall"},
		{"middleware", middlewareFields, "name module plugin function stages priority config", "", " with name, module, plugin, function, stages, priority and config"},
		{"data source", dataSourceFields, "kind config keyFields timestampField schema", "replicas resources", " with kind, config, keyFields, timestampField and schema"},
		{"plugin", pluginFields, "module functions config allowedHosts limits", "", " with module, functions, config, allowedHosts and limits"},
		{"plugin function", pluginFunctionFields, "name role", "", " with name and role"},
		{"egress", egressFields, "type config", "", " with type and config"},
		{"plugin limits", pluginLimitsFields, "timeout memoryPages httpResponseBytes outputBytes", "", " with timeout, memoryPages, httpResponseBytes and outputBytes"},
		{"data source reference", dataSourceRefFields, "name namespace", "", " with name and namespace"},
		{"RaptorML config entry", raptorConfigFields, "name value secretKeyRef", "", " with name and value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.fs.osprey, " "); got != tt.osprey {
				t.Errorf("osprey = %s, want %s", got, tt.osprey)
			}
			if got := strings.Join(tt.fs.raptor, " "); got != strings.TrimSpace(tt.osprey+" "+tt.more) {
				t.Errorf("raptor = %s, want %s %s", got, tt.osprey, tt.more)
			}
			if got := tt.fs.with(); got != tt.with {
				t.Errorf("with() = %q, want %q", got, tt.with)
			}
		})
	}
}

// FuzzRoundTrip: whatever Parse accepts round-trips (parse → write → parse gives the same
// objects, write → parse → write the same bytes).
func FuzzRoundTrip(f *testing.F) {
	addSeeds(f)
	for _, tt := range roundTripInputs {
		f.Add([]byte(tt.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		roundTrip(t, ms)
	})
}

// addSeeds adds the test fixtures to a fuzz corpus.
func addSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/manifests/*.y*ml")
	more, _ := filepath.Glob("testdata/manifests/invalid/*.yaml")
	for _, file := range append(files, more...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(manifestDoc("Feature", manifestMinimal)))
	f.Add([]byte("a: &a [*a]\n"))
}
