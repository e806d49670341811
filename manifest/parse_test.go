package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// manifestDoc builds a one-document Osprey manifest of kind with body (metadata and spec, indented
// by the caller as top-level YAML).
func manifestDoc(kind, body string) string {
	return "apiVersion: osprey.dev/v1alpha1\nkind: " + kind + "\n" + body
}

// manifestMinimal is the smallest valid Feature body; tests append spec fields to it.
const manifestMinimal = `metadata:
  name: f
  namespace: ns
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [id]
`

// pluginMinimal is the smallest valid Plugin body; tests append spec fields to it.
const pluginMinimal = `metadata:
  name: p
  namespace: ns
spec:
  module: p.wasm
  functions: [{name: handle, role: middleware}]
`

// egressMinimal is the smallest valid Egress body; tests append spec fields to it.
const egressMinimal = `metadata:
  name: e
  namespace: ns
spec:
  type: webhook
`

func mustParse(t *testing.T, src string) []Manifest {
	t.Helper()
	ms, err := Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, src)
	}
	return ms
}

func TestParseFeature(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *engine.Feature
	}{
		{
			name: "manifestMinimal gets defaults",
			src:  manifestDoc("Feature", "metadata:\n  name: clicks\nspec:\n  primitive: int\n  freshness: 1m\n  staleness: 1h\n  keys: [user_id]\n"),
			want: &engine.Feature{FQN: "default.clicks", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"user_id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		},
		{
			name: "names are lower-cased, keys are not",
			src:  manifestDoc("Feature", "metadata:\n  name: Clicks\n  namespace: Web\nspec:\n  primitive: '[]String'\n  freshness: 1m\n  staleness: 1h\n  keys: [UserID]\n"),
			want: &engine.Feature{FQN: "web.clicks", Primitive: engine.PrimitiveStringList, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"UserID"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		},
		{
			name: "everything",
			src: manifestDoc("Feature", `metadata:
  name: spend
  namespace: fraud
  labels: {team: risk, tier: 1}
spec:
  primitive: float
  freshness: 30s
  staleness: 2h
  timeout: 150ms
  keys: [card_id, merchant_id]
  dataSource: fraud.transactions
  builder:
    kind: wasm
    module: m.wasm
    aggr: [SUM, mean, count]
    aggrGranularity: 5m
    config: {field: amount, scale: 2}
  middlewares:
    - name: clamp
      stages: [pre-set, PostGet]
      priority: 0x10
      config: {max: "100"}
    - name: audit
      module: audit.wasm
      stages: [postSet]
  dependencies: [other, geo.city]
`),
			want: &engine.Feature{FQN: "fraud.spend", Primitive: engine.PrimitiveFloat, Freshness: 30 * time.Second, Staleness: 2 * time.Hour,
				Timeout: 150 * time.Millisecond, Keys: []string{"card_id", "merchant_id"}, DataSource: "fraud.transactions",
				Aggrs: engine.AggrSet(0).With(engine.AggrSum).With(engine.AggrAvg).With(engine.AggrCount), Granularity: 5 * time.Minute,
				Builder: engine.Builder{Kind: "wasm", Module: "m.wasm", Config: map[string]string{"field": "amount", "scale": "2"}},
				Middlewares: []engine.MiddlewareRef{
					{Name: "clamp", Stages: []engine.Stage{engine.StagePreSet, engine.StagePostGet}, Priority: 16, Config: map[string]string{"max": "100"}},
					{Name: "audit", Module: "audit.wasm", Stages: []engine.Stage{engine.StagePostSet}},
				},
				Dependencies: []string{"fraud.other", "geo.city"},
				Labels:       map[string]string{"team": "risk", "tier": "1"}},
		},
		{
			name: "module without kind is wasm; bare dataSource is in the feature's namespace",
			src:  manifestDoc("Feature", manifestMinimal+"  dataSource: rows\n  builder: {module: x.wasm}\n"),
			want: &engine.Feature{FQN: "ns.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"id"}, DataSource: "ns.rows", Builder: engine.Builder{Kind: "wasm", Module: "x.wasm"}},
		},
		{
			name: "dataSource as a mapping; plugin builder kind kept",
			src:  manifestDoc("Feature", manifestMinimal+"  dataSource: {name: Rows, namespace: src}\n  builder: {kind: streaming}\n"),
			want: &engine.Feature{FQN: "ns.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"id"}, DataSource: "src.rows", Builder: engine.Builder{Kind: "streaming"}},
		},
		{
			name: "keepPrevious, and null fields are absent",
			src:  manifestDoc("Feature", manifestMinimal+"  keepPrevious: {versions: 2, over: 24h}\n  timeout: ~\n  builder:\n  dataSource: null\n"),
			want: &engine.Feature{FQN: "ns.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"id"}, KeepPrevious: &engine.KeepPrevious{Versions: 2, Over: 24 * time.Hour},
				Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		},
		{
			name: "anchors, aliases and merge keys",
			src: `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: f, namespace: ns}
spec:
  <<: &times {freshness: 1m, staleness: 1h, primitive: float}
  primitive: int
  keys: &keys [id]
  builder:
    config:
      <<: [{a: "1"}, {a: "2", b: "2"}]
      c: "3"
`,
			want: &engine.Feature{FQN: "ns.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
				Timeout: engine.DefaultTimeout, Keys: []string{"id"},
				Builder: engine.Builder{Kind: engine.BuilderSourceless, Config: map[string]string{"a": "1", "b": "2", "c": "3"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := mustParse(t, tt.src)
			if len(ms) != 1 {
				t.Fatalf("got %d manifests, want 1", len(ms))
			}
			m := ms[0]
			if m.Kind != KindFeature || m.DataSource != nil || m.APIVersion != APIVersion {
				t.Fatalf("got kind %q, apiVersion %q, data source %v", m.Kind, m.APIVersion, m.DataSource)
			}
			if !reflect.DeepEqual(m.Feature, tt.want) {
				t.Errorf("feature:\n got %+v\nwant %+v", m.Feature, tt.want)
			}
			if m.FQN() != tt.want.FQN {
				t.Errorf("FQN() = %q, want %q", m.FQN(), tt.want.FQN)
			}
		})
	}
}

func TestParseDataSource(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *engine.DataSource
	}{
		{
			name: "map config, string schema",
			src: manifestDoc("DataSource", `metadata: {name: tx, namespace: fraud, labels: {team: risk}}
spec:
  kind: streaming
  config: {topic: tx, partitions: 3}
  keyFields: [card_id]
  timestampField: ts
  schema: proto://tx.v1.Transaction
`),
			want: &engine.DataSource{FQN: "fraud.tx", Kind: "streaming", Config: map[string]string{"topic": "tx", "partitions": "3"},
				KeyFields: []string{"card_id"}, TimestampField: "ts", Schema: "proto://tx.v1.Transaction", Labels: map[string]string{"team": "risk"}},
		},
		{
			name: "mapping schema becomes JSON",
			src:  manifestDoc("DataSource", "metadata: {name: tx}\nspec:\n  kind: rest\n  schema:\n    type: object\n    required: [id]\n"),
			want: &engine.DataSource{FQN: "default.tx", Kind: "rest", Schema: `{"required":["id"],"type":"object"}`},
		},
		{
			name: "RaptorML list config and Kubernetes fields",
			src: `apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata:
  name: card-tx
  namespace: my-ns
  uid: 0a1b
  annotations: {a: b}
spec:
  kind: streaming
  replicas: 3
  resources: {limits: {cpu: "1"}}
  config:
    - {name: topic, value: tx}
    - {name: empty, value: ""}
    - {name: nothing, value: ~}
status: {ready: true}
`,
			want: &engine.DataSource{FQN: "my_ns.card_tx", Kind: "streaming", Config: map[string]string{"topic": "tx", "empty": "", "nothing": ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := mustParse(t, tt.src)
			if len(ms) != 1 || ms[0].Kind != KindDataSource || ms[0].Feature != nil {
				t.Fatalf("got %+v, want one DataSource", ms)
			}
			if !reflect.DeepEqual(ms[0].DataSource, tt.want) {
				t.Errorf("data source:\n got %+v\nwant %+v", ms[0].DataSource, tt.want)
			}
		})
	}
}

func TestParsePlugin(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *Plugin
	}{
		{
			name: "everything",
			src: manifestDoc("Plugin", `metadata: {name: Mask, namespace: PII, labels: {team: privacy}}
spec:
  module: mask.wasm
  functions:
    - {name: encode, role: encoder}
    - {name: handle, role: middleware}
    - {name: compute, role: connector}
  config: {mask_char: "*", width: 2}
  allowedHosts: [api.example.com, "*.geo.example.net"]
  limits: {timeout: 200ms, memoryPages: 64, httpResponseBytes: 1048576, outputBytes: 65536}
`),
			want: &Plugin{FQN: "pii.mask", Labels: map[string]string{"team": "privacy"}, Module: "mask.wasm",
				Functions: []PluginFunction{{"encode", PluginRoleEncoder}, {"handle", PluginRoleMiddleware}, {"compute", PluginRoleConnector}},
				Config:    map[string]string{"mask_char": "*", "width": "2"}, AllowedHosts: []string{"api.example.com", "*.geo.example.net"},
				Limits: PluginLimits{Timeout: 200 * time.Millisecond, MemoryPages: 64, HTTPResponseBytes: 1 << 20, OutputBytes: 64 << 10}},
		},
		{
			name: "minimal gets the default namespace and no limits",
			src:  manifestDoc("Plugin", "metadata: {name: p}\nspec: {module: \"sha256:"+strings.Repeat("ab", 32)+"\", functions: [{name: handle, role: middleware}]}\n"),
			want: &Plugin{FQN: "default.p", Module: "sha256:" + strings.Repeat("ab", 32), Functions: []PluginFunction{{"handle", PluginRoleMiddleware}}},
		},
		{
			name: "roles are case-insensitive, strings trimmed, empty collections and nulls absent",
			src: manifestDoc("Plugin", `metadata: {name: p, namespace: ns, labels: {}}
spec:
  module: " modules/p.wasm "
  functions:
    - {name: " _encode2 ", role: " Encoder"}
  config: {}
  allowedHosts: [" api.example.com "]
  limits: {timeout: ~, memoryPages: 0, outputBytes: 1_024}
`),
			want: &Plugin{FQN: "ns.p", Module: "modules/p.wasm", Functions: []PluginFunction{{"_encode2", PluginRoleEncoder}},
				AllowedHosts: []string{"api.example.com"}, Limits: PluginLimits{OutputBytes: 1024}},
		},
		{
			name: "limits {} and allowedHosts [] are none",
			src:  manifestDoc("Plugin", pluginMinimal+"  allowedHosts: []\n  limits: {}\n  config: ~\n"),
			want: &Plugin{FQN: "ns.p", Module: "p.wasm", Functions: []PluginFunction{{"handle", PluginRoleMiddleware}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := mustParse(t, tt.src)
			if len(ms) != 1 {
				t.Fatalf("got %d manifests, want 1", len(ms))
			}
			m := ms[0]
			if m.Kind != KindPlugin || m.Feature != nil || m.DataSource != nil || m.APIVersion != APIVersion {
				t.Fatalf("got kind %q, apiVersion %q, feature %v, data source %v", m.Kind, m.APIVersion, m.Feature, m.DataSource)
			}
			if !reflect.DeepEqual(m.Plugin, tt.want) {
				t.Errorf("plugin:\n got %+v\nwant %+v", m.Plugin, tt.want)
			}
			if m.FQN() != tt.want.FQN {
				t.Errorf("FQN() = %q, want %q", m.FQN(), tt.want.FQN)
			}
		})
	}
}

// TestParseFeatureAndPlugin: one input holds a Feature and a Plugin, which may share a name.
func TestParseFeatureAndPlugin(t *testing.T) {
	src := manifestDoc("Feature", strings.Replace(manifestMinimal, "name: f", "name: p", 1)) + "---\n" + manifestDoc("Plugin", pluginMinimal)
	ms := mustParse(t, src)
	if len(ms) != 2 {
		t.Fatalf("got %d manifests, want 2", len(ms))
	}
	if m := ms[0]; m.Kind != KindFeature || m.Feature == nil || m.Plugin != nil || m.FQN() != "ns.p" || m.Pos != (Position{"t.yaml", 1, 1}) {
		t.Errorf("document 1 = %+v", m)
	}
	if m := ms[1]; m.Kind != KindPlugin || m.Plugin == nil || m.Feature != nil || m.FQN() != "ns.p" || m.Pos != (Position{"t.yaml", 2, 12}) {
		t.Errorf("document 2 = %+v", m)
	}
}

func TestParseEgress(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *Egress
	}{
		{
			name: "webhook, every kind of value",
			src: manifestDoc("Egress", `metadata: {name: Alerts, namespace: Fraud, labels: {team: risk}}
spec:
  type: " webhook "
  config:
    url: https://hooks.example.com/fraud
    headers: {Authorization: "Bearer t0k3n", X-Count: 3}
    timeout: 5s
    maxLen: 1_000
    flag: yes
    spaced: "  kept  "
    addrs: [a:6379, " b:6379 ", 7]
    none: []
    nothing: {}
`),
			want: &Egress{FQN: "fraud.alerts", Labels: map[string]string{"team": "risk"}, Type: "webhook", Config: map[string]any{
				"url":     "https://hooks.example.com/fraud",
				"headers": map[string]string{"Authorization": "Bearer t0k3n", "X-Count": "3"},
				"timeout": "5s", "maxLen": "1_000", "flag": "yes", "spaced": "  kept  ",
				"addrs": []string{"a:6379", " b:6379 ", "7"}, "none": []string{}, "nothing": map[string]string{},
			}},
		},
		{
			name: "minimal gets the default namespace and no config",
			src:  manifestDoc("Egress", "metadata: {name: out}\nspec: {type: redis-stream, config: {}}\n"),
			want: &Egress{FQN: "default.out", Type: "redis-stream"},
		},
		{
			name: "null config is none; merges",
			src: manifestDoc("Egress", `metadata: {name: e, namespace: ns}
spec:
  type: webhook
  config:
    <<: {url: "http://a.example.com", timeout: 1s}
    timeout: 2s
`),
			want: &Egress{FQN: "ns.e", Type: "webhook", Config: map[string]any{"url": "http://a.example.com", "timeout": "2s"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := mustParse(t, tt.src)
			if len(ms) != 1 {
				t.Fatalf("got %d manifests, want 1", len(ms))
			}
			m := ms[0]
			if m.Kind != KindEgress || m.Feature != nil || m.DataSource != nil || m.Plugin != nil || m.APIVersion != APIVersion {
				t.Fatalf("got kind %q, apiVersion %q, %+v", m.Kind, m.APIVersion, m)
			}
			if !reflect.DeepEqual(m.Egress, tt.want) {
				t.Errorf("egress:\n got %#v\nwant %#v", m.Egress, tt.want)
			}
			if m.FQN() != tt.want.FQN {
				t.Errorf("FQN() = %q, want %q", m.FQN(), tt.want.FQN)
			}
			if c := m.Egress.Clone(); !reflect.DeepEqual(c, m.Egress) {
				t.Errorf("Clone = %#v, want %#v", c, m.Egress)
			}
		})
	}
}

// TestParseFeatureMessages: spec.builder.messages is the feature's Messages.
func TestParseFeatureMessages(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want engine.Primitive
	}{
		{"  builder: {module: m.wasm, messages: string}\n", engine.PrimitiveString},
		{"  builder: {module: m.wasm, messages: ' []Float '}\n", engine.PrimitiveFloatList},
		{"  builder: {module: m.wasm, messages: ~}\n", engine.PrimitiveUnknown},
		{"  builder: {module: m.wasm}\n", engine.PrimitiveUnknown},
	} {
		ms := mustParse(t, manifestDoc("Feature", manifestMinimal+tt.src))
		if got := ms[0].Feature.Messages; got != tt.want {
			t.Errorf("%q: Messages = %v, want %v", tt.src, got, tt.want)
		}
	}
}

// TestEgressValidate checks Validate on egresses built in Go, including config values the
// decoder never produces.
func TestEgressValidate(t *testing.T) {
	valid := func(edit func(e *Egress)) *Egress {
		e := &Egress{FQN: "ns.e", Type: "webhook", Config: map[string]any{"url": "https://x", "addrs": []string{"a"}, "headers": map[string]string{"A": "b"}}}
		if edit != nil {
			edit(e)
		}
		return e
	}
	tests := []struct {
		name     string
		e        *Egress
		path     string // "" for a valid egress
		contains string
	}{
		{"valid", valid(nil), "", ""},
		{"no config", valid(func(e *Egress) { e.Config = nil }), "", ""},
		{"bad FQN", valid(func(e *Egress) { e.FQN = "e" }), "metadata.name", ""},
		{"no type", valid(func(e *Egress) { e.Type = "" }), "spec.type", "missing"},
		{"type with a newline", valid(func(e *Egress) { e.Type = "web\nhook" }), "spec.type", "white space or a control character at offset 3"},
		{"empty config name", valid(func(e *Egress) { e.Config[""] = "x" }), `spec.config[""]`, "empty name"},
		{"empty header name", valid(func(e *Egress) { e.Config["headers"] = map[string]string{"": "x"} }), `spec.config.headers[""]`, "empty name"},
		{"an int", valid(func(e *Egress) { e.Config["maxLen"] = 10 }), "spec.config.maxLen", "a int: want a string, a list of strings or a mapping of names to strings"},
		{"a nested map", valid(func(e *Egress) { e.Config["h"] = map[string]any{"a": "b"} }), "spec.config.h", "want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *engine.FieldError
			if !errors.Is(err, ErrInvalidEgress) || !errors.As(err, &fe) || fe.Path != tt.path || !strings.Contains(fe.Msg, tt.contains) {
				t.Fatalf("Validate = %v (%+v), want ErrInvalidEgress and a *engine.FieldError at %s containing %q", err, fe, tt.path, tt.contains)
			}
			if !strings.HasPrefix(err.Error(), "invalid egress "+tt.e.FQN+": "+tt.path+": ") {
				t.Errorf("error %q does not name the egress and the path", err)
			}
		})
	}
}

// TestPluginValidate checks Validate on plugins built in Go, including what the decoder
// never produces (a negative timeout, more memory pages than a memory has).
func TestPluginValidate(t *testing.T) {
	valid := func(edit func(p *Plugin)) *Plugin {
		p := &Plugin{FQN: "ns.p", Module: "p.wasm", Functions: []PluginFunction{{"encode", PluginRoleEncoder}, {"handle", PluginRoleMiddleware}},
			Config: map[string]string{"a": ""}, AllowedHosts: []string{"api.example.com", "*.example.net", "*"},
			Limits: PluginLimits{Timeout: time.Second, MemoryPages: 65536, HTTPResponseBytes: 1, OutputBytes: 1}}
		if edit != nil {
			edit(p)
		}
		return p
	}
	tests := []struct {
		name     string
		p        *Plugin
		path     string // "" for a valid plugin
		contains string
	}{
		{"valid", valid(nil), "", ""},
		{"zero limits", valid(func(p *Plugin) { p.Limits = PluginLimits{} }), "", ""},
		{"name of 128 characters", valid(func(p *Plugin) { p.Functions[0].Name = strings.Repeat("x", 128) }), "", ""},
		{"bad FQN", valid(func(p *Plugin) { p.FQN = "p" }), "metadata.name", ""},
		{"no module", valid(func(p *Plugin) { p.Module = "" }), "spec.module", "missing"},
		{"no functions", valid(func(p *Plugin) { p.Functions = nil }), "spec.functions", "at least one function is required"},
		{"empty function name", valid(func(p *Plugin) { p.Functions[1].Name = "" }), "spec.functions[1].name", "missing"},
		{"function name with a dot", valid(func(p *Plugin) { p.Functions[0].Name = "a.b" }), "spec.functions[0].name", `"a.b" has '.' at offset 1`},
		{"duplicate function", valid(func(p *Plugin) { p.Functions[1].Name = "encode" }), "spec.functions[1].name", `duplicate function "encode" (also spec.functions[0])`},
		{"role not lower-case", valid(func(p *Plugin) { p.Functions[0].Role = "Encoder" }), "spec.functions[0].role", `unknown role "Encoder" (did you mean encoder?)`},
		{"no role", valid(func(p *Plugin) { p.Functions[0].Role = "" }), "spec.functions[0].role", "missing"},
		{"empty config name", valid(func(p *Plugin) { p.Config[""] = "x" }), `spec.config[""]`, "empty name"},
		{"host with a path", valid(func(p *Plugin) { p.AllowedHosts[1] = "example.net/api" }), "spec.allowedHosts[1]", "(did you mean example.net?)"},
		{"host with credentials", valid(func(p *Plugin) { p.AllowedHosts[0] = "user@api.example.com" }), "spec.allowedHosts[0]", "(did you mean api.example.com?)"},
		{"IPv6 literal", valid(func(p *Plugin) { p.AllowedHosts[0] = "[::1]" }), "spec.allowedHosts[0]", "want a host name, without scheme, port or path"},
		{"empty host", valid(func(p *Plugin) { p.AllowedHosts[2] = "" }), "spec.allowedHosts[2]", "empty"},
		{"duplicate host", valid(func(p *Plugin) { p.AllowedHosts[2] = "API.EXAMPLE.COM" }), "spec.allowedHosts[2]", "(also spec.allowedHosts[0])"},
		{"negative timeout", valid(func(p *Plugin) { p.Limits.Timeout = -time.Second }), "spec.limits.timeout", "must be a positive duration"},
		{"too many pages", valid(func(p *Plugin) { p.Limits.MemoryPages = 65537 }), "spec.limits.memoryPages", "65537 is more than 65536"},
		{"negative httpResponseBytes", valid(func(p *Plugin) { p.Limits.HTTPResponseBytes = -1 }), "spec.limits.httpResponseBytes", "not -1"},
		{"negative outputBytes", valid(func(p *Plugin) { p.Limits.OutputBytes = -2 }), "spec.limits.outputBytes", "not -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *engine.FieldError
			if !errors.Is(err, ErrInvalidPlugin) || !errors.As(err, &fe) || fe.Path != tt.path || !strings.Contains(fe.Msg, tt.contains) {
				t.Fatalf("Validate = %v (%+v), want ErrInvalidPlugin and a *engine.FieldError at %s containing %q", err, fe, tt.path, tt.contains)
			}
			if !strings.HasPrefix(err.Error(), "invalid plugin "+tt.p.FQN+": "+tt.path+": ") {
				t.Errorf("error %q does not name the plugin and the path", err)
			}
		})
	}
}

func TestParseRaptor(t *testing.T) {
	const raptor = `apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: card-spend
  namespace: fraud-v1
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  timeout: 200ms
  keys: [card_id]
  dataSource: {name: card-transactions, namespace: fraud-v1}
  builder:
    kind: %KIND%
    aggrGranularity: 1m
    aggr: [sum, count, avg, max]
    runtime: python3.11
    packages: [numpy]
%EXTRA%`
	mk := func(kind, extra string) string {
		return strings.NewReplacer("%KIND%", kind, "%EXTRA%", extra).Replace(raptor)
	}
	tests := []struct {
		name     string
		src      string
		wantKind string
		wantErr  string
	}{
		{name: "streaming with a module", src: mk("streaming", "    module: card_spend.wasm\n"), wantKind: "streaming"},
		{name: "rest keeps its kind", src: mk("rest", ""), wantKind: "rest"},
		{name: "headless is sourceless", src: mk("headless", ""), wantKind: engine.BuilderSourceless},
		{name: "blank code is no code", src: mk("streaming", "    code: \"  \"\n"), wantKind: "streaming"},
		{name: "python code", src: mk("streaming", "    code: |\n      def handler(row, ctx):\n          return row['amount']\n"),
			wantErr: "t.yaml: document 1 (line 19): spec.builder.code: RaptorML Python programs cannot run in Osprey; compile the handler to a Wasm module and set spec.builder.module (see docs/migrating-from-raptor.md)"},
		{name: "model builder", src: mk("model", ""), wantErr: "document 1 (line 14): spec.builder.kind: builder kind model is not supported yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse([]byte(tt.src), "t.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := ms[0].Feature
			if ms[0].APIVersion != RaptorAPIVersion || f.FQN != "fraud_v1.card_spend" || f.DataSource != "fraud_v1.card_transactions" ||
				f.Builder.Kind != tt.wantKind || f.Aggrs != engine.AggrSet(0).With(engine.AggrSum).With(engine.AggrCount).With(engine.AggrAvg).With(engine.AggrMax) {
				t.Errorf("got %+v (apiVersion %s)", f, ms[0].APIVersion)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	feature := func(spec string) string { return manifestDoc("Feature", manifestMinimal+spec) }
	// plugin's spec starts at line 4, its module is line 5 and spec begins at line 6;
	// pluginFn's functions are line 6 and spec begins at line 7.
	plugin := func(spec string) string {
		return manifestDoc("Plugin", "metadata: {name: p, namespace: ns}\nspec:\n  module: p.wasm\n"+spec)
	}
	pluginFn := func(spec string) string { return plugin("  functions: [{name: handle, role: middleware}]\n" + spec) }
	egress := func(spec string) string {
		return manifestDoc("Egress", "metadata: {name: e, namespace: ns}\nspec:\n"+spec)
	}
	tests := []struct {
		name string
		src  string
		want []string // each must appear in the error, in this order
	}{
		// Documents and top-level fields.
		{"not a mapping", "[1, 2]\n", []string{"t.yaml: document 1 (line 1): must be a mapping with apiVersion, kind, metadata and spec, not a list"}},
		{"scalar document", "hello\n", []string{"document 1 (line 1): must be a mapping"}},
		{"apiVersion missing", "kind: Feature\n", []string{"document 1 (line 1): apiVersion: missing (want osprey.dev/v1alpha1)"}},
		{"apiVersion unknown", "apiVersion: v1\nkind: Feature\n", []string{`apiVersion: unsupported apiVersion "v1" (want osprey.dev/v1alpha1, or k8s.raptor.ml/v1alpha1 for a RaptorML manifest)`}},
		{"kind missing", "apiVersion: osprey.dev/v1alpha1\n", []string{"kind: missing (want Feature, DataSource, Plugin or Egress)"}},
		{"kind misspelt", manifestDoc("feature", manifestMinimal), []string{`(line 2): kind: unknown kind "feature" (did you mean Feature?)`}},
		{"kind Plugin misspelt", manifestDoc("plugins", pluginMinimal), []string{`(line 2): kind: unknown kind "plugins" (did you mean Plugin?)`}},
		{"kind unknown", manifestDoc("Pod", manifestMinimal), []string{`kind: unknown kind "Pod" (want Feature, DataSource, Plugin or Egress)`}},
		{"kind Egress misspelt", manifestDoc("Egres", egressMinimal), []string{`(line 2): kind: unknown kind "Egres" (did you mean Egress?)`}},
		{"kind Model", manifestDoc("Model", manifestMinimal), []string{"(line 2): kind: Model is not supported yet (want Feature, DataSource, Plugin or Egress)"}},
		{"RaptorML kind missing", "apiVersion: k8s.raptor.ml/v1alpha1\n", []string{"kind: missing (want Feature or DataSource)"}},
		{"RaptorML kind unknown", "apiVersion: k8s.raptor.ml/v1alpha1\nkind: Pod\n" + manifestMinimal, []string{`kind: unknown kind "Pod" (want Feature or DataSource)`}},
		{"RaptorML Plugin", "apiVersion: k8s.raptor.ml/v1alpha1\nkind: Plugin\n" + pluginMinimal, []string{
			"t.yaml: document 1 (line 2): kind: RaptorML has no Plugin kind: a Plugin manifest is an Osprey one (apiVersion: osprey.dev/v1alpha1)"}},
		{"RaptorML Egress", "apiVersion: k8s.raptor.ml/v1alpha1\nkind: Egress\n" + egressMinimal, []string{
			"t.yaml: document 1 (line 2): kind: RaptorML has no Egress kind: an Egress manifest is an Osprey one (apiVersion: osprey.dev/v1alpha1)"}},
		{"unknown top field", manifestDoc("Feature", manifestMinimal+"status: {}\n"), []string{"(line 11): status: unknown field"}},
		{"metadata missing", manifestDoc("Feature", "spec: {}\n"), []string{"metadata: missing"}},
		{"spec missing", manifestDoc("Feature", "metadata: {name: f}\n"), []string{"spec: missing"}},
		{"spec not a mapping", manifestDoc("Feature", "metadata: {name: f}\nspec: [a]\n"), []string{"(line 4): spec: must be a mapping, not a list"}},
		{"duplicate field", manifestDoc("Feature", manifestMinimal+"  primitive: float\n"), []string{"(line 11): spec.primitive: duplicate field (first at line 7)"}},
		{"non-string field name", manifestDoc("Feature", manifestMinimal+"  [a]: b\n"), []string{"(line 11): spec: field names must be strings, not a list"}},
		{"bad merge", manifestDoc("Feature", manifestMinimal+"  <<: [1]\n"), []string{"spec: a merge (<<) must name a mapping or a list of mappings"}},

		// metadata
		{"name missing", manifestDoc("Feature", "metadata: {namespace: x}\nspec: {}\n"), []string{"(line 3): metadata.name: missing"}},
		{"name with dash", manifestDoc("Feature", "metadata: {name: card-spend}\nspec: {}\n"), []string{`metadata.name: "card-spend" has '-' at offset 4 (want letters, digits and '_'); use '_' instead of '-'`}},
		{"name with underscore at end", manifestDoc("Feature", "metadata: {name: f_}\nspec: {}\n"), []string{`metadata.name: "f_" starts or ends with '_'`}},
		{"namespace invalid", manifestDoc("Feature", "metadata: {name: f, namespace: 'a.b'}\nspec: {}\n"), []string{`metadata.namespace: "a.b" has '.'`}},
		{"bad namespace is reported once", manifestDoc("Feature", "metadata: {name: f, namespace: -x}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: [id], dataSource: rows, dependencies: [g]}\n"), []string{
			`metadata.namespace: "-x" has '-' at offset 0 (want letters, digits and '_'); use '_' instead of '-'`}},
		{"name not a string", manifestDoc("Feature", "metadata: {name: [f]}\nspec: {}\n"), []string{"metadata.name: must be a string, not a list"}},
		{"unknown metadata field", manifestDoc("Feature", "metadata: {name: f, annotations: {}}\nspec: {}\n"), []string{"metadata.annotations: unknown field"}},
		{"label not a string", manifestDoc("Feature", "metadata: {name: f, labels: {a: {b: c}}}\nspec: {}\n"), []string{"metadata.labels.a: must be a string, not a mapping"}},
		{"odd label name", manifestDoc("Feature", "metadata: {name: f, labels: {app.kubernetes.io/name: ~}}\nspec: {}\n"), []string{`metadata.labels["app.kubernetes.io/name"]: must be a string, not null`}},

		// Feature spec: decoding.
		{"unknown spec field", feature("  freshnes: 1m\n"), []string{"(line 11): spec.freshnes: unknown field (did you mean freshness?)"}},
		{"unknown field, no suggestion", feature("  colour: blue\n"), []string{"spec.colour: unknown field"}},
		{"required fields", manifestDoc("Feature", "metadata: {name: f}\nspec: {timeout: 1s}\n"), []string{
			"(line 4): spec.primitive: missing", "(line 4): spec.freshness: missing", "(line 4): spec.staleness: missing", "(line 4): spec.keys: missing"}},
		{"bad primitive", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: decimal, freshness: 1m, staleness: 1h, keys: [id]}\n"), []string{`spec.primitive: unknown primitive "decimal"`}},
		{"bad duration", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 10, staleness: 1h, keys: [id]}\n"), []string{`spec.freshness: invalid duration "10" (want a Go duration such as 500ms, 10s, 1m or 720h)`}},
		{"duration not a string", feature("  timeout: {a: 1}\n"), []string{"spec.timeout: must be a string, not a mapping"}},
		{"keys not a list", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: id}\n"), []string{`spec.keys: must be a list, not "id"`}},
		{"key not a string", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: [a, [b]]}\n"), []string{"spec.keys[1]: must be a string, not a list"}},
		{"keepPrevious fields", feature("  keepPrevious: {versions: many, count: 1}\n"), []string{
			"spec.keepPrevious.count: unknown field", `spec.keepPrevious.versions: must be an integer, not "many"`, "spec.keepPrevious.over: missing"}},
		{"keepPrevious versions out of range", feature("  keepPrevious: {versions: 99999999999, over: 1h}\n"), []string{"spec.keepPrevious.versions: 99999999999 is out of range"}},
		{"dataSource with two dots", feature("  dataSource: a.b.c\n"), []string{`spec.dataSource: "a.b.c" has more than one '.'`}},
		{"dataSource bad namespace", feature("  dataSource: _a.b\n"), []string{`spec.dataSource: namespace of "_a.b": "_a" starts or ends with '_'`}},
		{"dataSource bad name", feature("  dataSource: 'a.b c'\n"), []string{`spec.dataSource: name of "a.b c": "b c" has ' '`}},
		{"dataSource mapping without name", feature("  dataSource: {namespace: x}\n"), []string{"spec.dataSource.name: missing"}},
		{"dataSource mapping bad field", feature("  dataSource: {name: x, kind: y}\n"), []string{"spec.dataSource.kind: unknown field"}},
		{"dataSource with dash in osprey", feature("  dataSource: {name: card-tx}\n"), []string{"spec.dataSource.name: \"card-tx\" has '-'"}},
		{"builder not a mapping", feature("  builder: wasm\n"), []string{`spec.builder: must be a mapping with kind, module, plugin, function, aggr, aggrGranularity, config, storage and messages, not "wasm"`}},
		{"builder unknown field", feature("  builder: {runtime: python}\n"), []string{"spec.builder.runtime: unknown field"}},
		{"builder code in an osprey manifest", feature("  builder: {code: 'def handler(row, ctx): pass'}\n"), []string{"(line 11): spec.builder.code: RaptorML Python programs cannot run in Osprey"}},
		{"builder kind empty", feature("  builder: {kind: ''}\n"), []string{"spec.builder.kind: empty"}},
		{"wasm without module", feature("  builder: {kind: wasm}\n"), []string{"(line 11): spec.builder.module: missing: builder kind wasm needs the module to run"}},
		{"sourceless with module", feature("  builder: {kind: sourceless, module: m.wasm}\n"), []string{"spec.builder.module: set with builder kind sourceless, which runs no program"}},
		{"empty module", feature("  builder: {module: ''}\n"), []string{"spec.builder.module: empty"}},
		{"unknown aggregation", feature("  builder: {aggr: [sum, median]}\n"), []string{`spec.builder.aggr[1]: unknown aggregation "median"`}},
		{"duplicate aggregation", feature("  builder: {aggr: [avg, sum, mean]}\n"), []string{"spec.builder.aggr[2]: duplicate aggregation avg (also spec.builder.aggr[0]; mean is an alias of avg)"}},
		{"aggr not a list", feature("  builder: {aggr: sum}\n"), []string{`spec.builder.aggr: must be a list, not "sum"`}},
		{"config not a map", feature("  builder: {config: [a]}\n"), []string{"spec.builder.config: must be a mapping of names to strings, not a list"}},
		{"plugin builder without function", feature("  builder: {plugin: geo.ip}\n"), []string{"spec.builder.function: missing: the plugin's connector function"}},
		{"plugin builder function without plugin", feature("  builder: {function: lookup}\n"), []string{"spec.builder.function: set without spec.builder.plugin"}},
		{"plugin builder with module", feature("  builder: {plugin: geo.ip, function: lookup, module: m.wasm}\n"), []string{"spec.builder.plugin: set with spec.builder.module"}},
		{"plugin builder with another kind", feature("  builder: {kind: wasm, plugin: geo.ip, function: lookup}\n"), []string{`spec.builder.kind: "wasm" with spec.builder.plugin`}},
		{"plugin kind without plugin", feature("  builder: {kind: plugin}\n"), []string{"spec.builder.plugin: missing: builder kind plugin needs the plugin"}},
		{"plugin builder bad names", feature("  builder: {plugin: a.b.c, function: 9x}\n"), []string{`spec.builder.plugin: "a.b.c" has more than one '.'`, `spec.builder.function: "9x" starts with a digit`}},
		{"plugin middleware without function", feature("  middlewares: [{plugin: pii.validate, stages: [preSet]}]\n"), []string{"spec.middlewares[0].function: missing: the plugin's middleware function"}},
		{"plugin middleware with a name", feature("  middlewares: [{name: v, plugin: pii.validate, function: handle, stages: [preSet]}]\n"), []string{"spec.middlewares[0].plugin: set with spec.middlewares[0].name or spec.middlewares[0].module"}},
		{"middleware function without plugin", feature("  middlewares: [{name: v, function: handle, stages: [preSet]}]\n"), []string{"spec.middlewares[0].function: set without spec.middlewares[0].plugin"}},
		{"storage not a list", feature("  builder: {module: m.wasm, storage: {name: x}}\n"), []string{"spec.builder.storage: must be a list, not a mapping"}},
		{"storage entry fields", feature("  builder: {module: m.wasm, storage: [{type: int}, {name: a, type: decimal}, {name: b, type: int, expireAfterWrite: soon, ttl: 1}]}\n"), []string{
			"spec.builder.storage[0].name: missing", `spec.builder.storage[1].type: unknown primitive "decimal"`, "spec.builder.storage[2].ttl: unknown field", `spec.builder.storage[2].expireAfterWrite: invalid duration "soon"`}},
		{"storage negative expiry", feature("  builder: {module: m.wasm, storage: [{name: a, type: int, expireAfterCall: -1m}]}\n"), []string{"spec.builder.storage[0].expireAfterCall: must be a positive duration"}},
		{"storage both expiries", feature("  builder: {module: m.wasm, storage: [{name: a, type: int, expireAfterCall: 1m, expireAfterWrite: 1m}]}\n"), []string{"spec.builder.storage[0].expireAfterCall: set with expireAfterWrite"}},
		{"storage duplicate", feature("  builder: {module: m.wasm, storage: [{name: a, type: int}, {name: a, type: float}]}\n"), []string{`spec.builder.storage[1].name: duplicate storage "a"`}},
		{"storage without a program", feature("  builder: {storage: [{name: a, type: int}]}\n"), []string{"spec.builder.storage: storage is a program's"}},
		{"middlewares not a list", feature("  middlewares: {name: x}\n"), []string{"spec.middlewares: must be a list, not a mapping"}},
		{"middleware fields", feature("  middlewares:\n    - name: x\n      stages: [preGet, during, preget]\n      priority: high\n      order: 1\n"), []string{
			"(line 13): spec.middlewares[0].stages[1]: unknown stage \"during\"",
			"(line 13): spec.middlewares[0].stages[2]: duplicate stage preGet",
			"(line 14): spec.middlewares[0].priority: must be an integer, not \"high\"",
			"(line 15): spec.middlewares[0].order: unknown field"}},
		{"middleware not a mapping", feature("  middlewares: [x]\n"), []string{"spec.middlewares[0]: must be a mapping"}},
		{"dependency invalid", feature("  dependencies: [a+b]\n"), []string{`spec.dependencies[0]: name of "a+b"`}},
		{"dependency duplicate", feature("  dependencies: [x, ns.x]\n"), []string{"spec.dependencies[1]: duplicate dependency ns.x"}},

		// Feature spec: Validate's errors keep their field path and get a line.
		{"staleness < freshness", manifestDoc("Feature", "metadata: {name: f}\nspec:\n  primitive: int\n  keys: [id]\n  freshness: 1h\n  staleness: 1m\n"), []string{
			"t.yaml: document 1 (line 8): spec.staleness: must be ≥ spec.freshness (1m0s < 1h0m0s)"}},
		{"negative freshness", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: -1m, staleness: 1h, keys: [id]}\n"), []string{"(line 4): spec.freshness: must be a positive duration, e.g. 1m"}},
		{"zero timeout", feature("  timeout: 0s\n"), []string{"(line 11): spec.timeout: must be a positive duration"}},
		{"empty keys", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: []}\n"), []string{"(line 4): spec.keys: at least one key is required"}},
		{"duplicate keys", manifestDoc("Feature", "metadata: {name: f}\nspec:\n  primitive: int\n  freshness: 1m\n  staleness: 1h\n  keys:\n    - a\n    - b\n    - a\n"), []string{
			`(line 11): spec.keys[2]: duplicate key "a"`}},
		{"invalid key", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: [a-b]}\n"), []string{`spec.keys[0]: "a-b" has '-'`}},
		{"aggr on a string", manifestDoc("Feature", "metadata: {name: f}\nspec:\n  primitive: string\n  freshness: 1m\n  staleness: 1h\n  keys: [id]\n  builder:\n    aggr: [count]\n    aggrGranularity: 1m\n"), []string{
			"(line 10): spec.builder.aggr: window aggregations need an int or float primitive, not string"}},
		{"aggr without granularity", feature("  builder: {aggr: [sum]}\n"), []string{"spec.builder.aggrGranularity: required with spec.builder.aggr"}},
		{"granularity without aggr", feature("  builder: {aggrGranularity: 1m}\n"), []string{"spec.builder.aggrGranularity: set without spec.builder.aggr"}},
		{"keepPrevious on a window", feature("  keepPrevious: {versions: 1, over: 1h}\n  builder: {aggr: [sum], aggrGranularity: 1m}\n"), []string{"(line 11): spec.keepPrevious: not supported on a windowed feature"}},
		{"keepPrevious versions", feature("  keepPrevious:\n    versions: 0\n    over: 1h\n"), []string{"(line 12): spec.keepPrevious.versions: must be between 1 and 65536"}},
		{"self dependency", feature("  dependencies: [f]\n"), []string{"spec.dependencies[0]: a feature cannot depend on itself"}},
		{"middleware without name", feature("  middlewares:\n    - stages: [preGet]\n"), []string{"(line 12): spec.middlewares[0].name: missing"}},
		{"middleware without stages", feature("  middlewares:\n    - name: x\n"), []string{"(line 12): spec.middlewares[0].stages: at least one of preGet"}},

		// DataSource spec.
		{"data source kind missing", manifestDoc("DataSource", "metadata: {name: s}\nspec: {keyFields: [a]}\n"), []string{"(line 4): spec.kind: missing"}},
		{"data source kind blank", manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: ' '}\n"), []string{"(line 4): spec.kind: missing"}},
		{"data source unknown field", manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: rest, replicas: 2}\n"), []string{"spec.replicas: unknown field"}},
		{"data source key field duplicate", manifestDoc("DataSource", "metadata: {name: s}\nspec:\n  kind: rest\n  keyFields: [a, b, a]\n"), []string{
			`(line 6): spec.keyFields[2]: duplicate key field "a" (also spec.keyFields[0])`}},
		{"data source key field empty", manifestDoc("DataSource", "metadata: {name: s}\nspec:\n  kind: rest\n  keyFields: ['']\n"), []string{"spec.keyFields[0]: empty field name"}},
		{"data source schema list", manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: rest, schema: [a]}\n"), []string{"spec.schema: must be a string or a mapping, not a list"}},
		{"data source config entry", manifestDoc("DataSource", "metadata: {name: s}\nspec:\n  kind: rest\n  config:\n    - {value: x}\n    - {name: a}\n    - {name: b, value: 1, from: env}\n    - {name: b, value: 2}\n    - x\n"), []string{
			"(line 7): spec.config[0].name: missing",
			"(line 8): spec.config[1].value: missing",
			"(line 9): spec.config[2].from: unknown field",
			`(line 10): spec.config[3].name: duplicate config entry "b" (also spec.config[2])`,
			"(line 11): spec.config[4]: must be a mapping with name and value"}},
		{"data source secret", "apiVersion: k8s.raptor.ml/v1alpha1\nkind: DataSource\nmetadata: {name: s}\nspec:\n  kind: rest\n  config:\n    - name: token\n      secretKeyRef: {name: s, key: k}\n", []string{
			"(line 8): spec.config[0].secretKeyRef: Kubernetes secret references are not supported"}},

		// Plugin spec: decoding.
		{"plugin module missing", manifestDoc("Plugin", "metadata: {name: p}\nspec:\n  functions: [{name: f, role: encoder}]\n"), []string{
			"t.yaml: document 1 (line 4): spec.module: missing (the Wasm module: its path, relative to the manifest, or its sha256: reference)"}},
		{"plugin module empty", manifestDoc("Plugin", "metadata: {name: p}\nspec:\n  module: ' '\n  functions: [{name: f, role: encoder}]\n"), []string{
			"(line 5): spec.module: empty (a Wasm module's path or digest)"}},
		{"plugin module not a string", manifestDoc("Plugin", "metadata: {name: p}\nspec:\n  module: [a]\n  functions: [{name: f, role: encoder}]\n"), []string{
			"(line 5): spec.module: must be a string, not a list"}},
		{"plugin functions missing", plugin(""), []string{"(line 4): spec.functions: missing (the functions the module exports, e.g. [{name: handle, role: middleware}])"}},
		{"plugin functions not a list", plugin("  functions: {name: f}\n"), []string{"(line 6): spec.functions: must be a list, not a mapping"}},
		{"plugin function not a mapping", plugin("  functions: [handle]\n"), []string{`(line 6): spec.functions[0]: must be a mapping with name and role, not "handle"`}},
		{"plugin function unknown field", plugin("  functions:\n    - {name: f, role: encoder, export: g}\n"), []string{"(line 7): spec.functions[0].export: unknown field"}},
		{"plugin function name not a string", plugin("  functions:\n    - {name: [f], role: encoder}\n"), []string{"(line 7): spec.functions[0].name: must be a string, not a list"}},
		{"plugin unknown field", pluginFn("  alowedHosts: [api.example.com]\n"), []string{"t.yaml: document 1 (line 7): spec.alowedHosts: unknown field (did you mean allowedHosts?)"}},
		{"plugin unknown field, no suggestion", pluginFn("  sandbox: strict\n"), []string{"(line 7): spec.sandbox: unknown field"}},
		{"plugin host not a string", pluginFn("  allowedHosts: [{a: b}]\n"), []string{"(line 7): spec.allowedHosts[0]: must be a string, not a mapping"}},
		{"plugin config not a map", pluginFn("  config: [a]\n"), []string{"(line 7): spec.config: must be a mapping of names to strings, not a list"}},
		{"plugin config value", pluginFn("  config: {a: [1]}\n"), []string{"(line 7): spec.config.a: must be a string, not a list"}},
		{"plugin limits not a mapping", pluginFn("  limits: 5\n"), []string{`(line 7): spec.limits: must be a mapping with timeout, memoryPages, httpResponseBytes and outputBytes, not "5"`}},
		{"plugin limits unknown field", pluginFn("  limits: {memoryPage: 1}\n"), []string{"(line 7): spec.limits.memoryPage: unknown field (did you mean memoryPages?)"}},
		{"plugin timeout zero", pluginFn("  limits:\n    timeout: 0s\n"), []string{
			"(line 8): spec.limits.timeout: must be a positive duration, e.g. 200ms (omit it for the host's default)"}},
		{"plugin timeout negative", pluginFn("  limits:\n    timeout: -1s\n"), []string{"(line 8): spec.limits.timeout: must be a positive duration"}},
		{"plugin timeout invalid", pluginFn("  limits:\n    timeout: soon\n"), []string{`(line 8): spec.limits.timeout: invalid duration "soon"`}},
		{"plugin memoryPages too many", pluginFn("  limits:\n    memoryPages: 65537\n"), []string{
			"(line 8): spec.limits.memoryPages: 65537 is more than 65536 (64 KiB pages: 4 GiB, the most a memory can have)"}},
		{"plugin memoryPages negative", pluginFn("  limits:\n    memoryPages: -1\n"), []string{"(line 8): spec.limits.memoryPages: must be ≥ 0 (omit it for the host's default), not -1"}},
		{"plugin memoryPages beyond 32 bits", pluginFn("  limits:\n    memoryPages: 9999999999\n"), []string{"(line 8): spec.limits.memoryPages: 9999999999 is more than 65536"}},
		{"plugin httpResponseBytes out of range", pluginFn("  limits:\n    httpResponseBytes: 18446744073709551615\n"), []string{
			"(line 8): spec.limits.httpResponseBytes: 18446744073709551615 is out of range"}},
		{"plugin outputBytes not an integer", pluginFn("  limits:\n    outputBytes: 1.5\n"), []string{`(line 8): spec.limits.outputBytes: must be an integer, not "1.5"`}},
		{"plugin name with dash", manifestDoc("Plugin", "metadata: {name: geo-ip}\nspec: {module: m.wasm, functions: [{name: f, role: connector}]}\n"), []string{
			`(line 3): metadata.name: "geo-ip" has '-' at offset 3 (want letters, digits and '_'); use '_' instead of '-'`}},

		// Plugin spec: Validate's errors keep their field path and get a line.
		{"plugin functions empty", plugin("  functions: []\n"), []string{
			"t.yaml: document 1 (line 6): spec.functions: at least one function is required (e.g. [{name: handle, role: middleware}])"}},
		{"plugin function name missing", plugin("  functions:\n    - {role: encoder}\n"), []string{
			"(line 7): spec.functions[0].name: missing (the name of a function the module exports)"}},
		{"plugin function name blank", plugin("  functions:\n    - name: ' '\n      role: encoder\n"), []string{"(line 7): spec.functions[0].name: missing"}},
		{"plugin function name invalid", plugin("  functions:\n    - {name: encode, role: encoder}\n    - {name: mask-value, role: encoder}\n"), []string{
			`(line 8): spec.functions[1].name: "mask-value" has '-' at offset 4 (want letters, digits and '_')`}},
		{"plugin function name starts with a digit", plugin("  functions:\n    - {name: 1st, role: encoder}\n"), []string{
			`(line 7): spec.functions[0].name: "1st" starts with a digit (want a letter or '_')`}},
		{"plugin function name too long", plugin("  functions:\n    - {name: " + strings.Repeat("f", 129) + ", role: encoder}\n"), []string{
			"(line 7): spec.functions[0].name: 129 characters, more than 128"}},
		{"plugin function duplicate", plugin("  functions:\n    - {name: encode, role: encoder}\n    - {name: encode, role: middleware}\n"), []string{
			`(line 8): spec.functions[1].name: duplicate function "encode" (also spec.functions[0])`}},
		{"plugin role missing", plugin("  functions:\n    - {name: f}\n"), []string{"(line 7): spec.functions[0].role: missing (want middleware, encoder or connector)"}},
		{"plugin role misspelt", plugin("  functions:\n    - {name: f, role: encoder}\n    - {name: g, role: Encodr}\n"), []string{
			`(line 8): spec.functions[1].role: unknown role "Encodr" (did you mean encoder?)`}},
		{"plugin role unknown", plugin("  functions:\n    - {name: f, role: filter}\n"), []string{
			`(line 7): spec.functions[0].role: unknown role "filter" (want middleware, encoder or connector)`}},
		{"plugin host with a port", pluginFn("  allowedHosts: [api.example.com:443]\n"), []string{
			`t.yaml: document 1 (line 7): spec.allowedHosts[0]: "api.example.com:443": want a host name, without scheme, port or path (did you mean api.example.com?)`}},
		{"plugin host as a URL", pluginFn("  allowedHosts:\n    - ok.example.com\n    - https://api.example.com/v1\n"), []string{
			`(line 9): spec.allowedHosts[1]: "https://api.example.com/v1": want a host name, without scheme, port or path (did you mean api.example.com?)`}},
		{"plugin host with a space", pluginFn("  allowedHosts: ['api example.com']\n"), []string{
			`(line 7): spec.allowedHosts[0]: "api example.com": want a host name, without scheme, port or path (e.g. api.example.com or *.example.com)`}},
		{"plugin host empty", pluginFn("  allowedHosts: [' ']\n"), []string{"(line 7): spec.allowedHosts[0]: empty (a host name, e.g. api.example.com)"}},
		{"plugin host duplicate", pluginFn("  allowedHosts:\n    - api.example.com\n    - API.example.com\n"), []string{
			`(line 9): spec.allowedHosts[1]: duplicate host "API.example.com" (also spec.allowedHosts[0])`}},
		{"plugin config empty name", pluginFn("  config:\n    \"\": x\n"), []string{`(line 8): spec.config[""]: empty name`}},
		{"plugin httpResponseBytes negative", pluginFn("  limits:\n    httpResponseBytes: -1\n"), []string{
			"(line 8): spec.limits.httpResponseBytes: must be ≥ 0 (omit it for the host's default), not -1"}},
		{"plugin outputBytes negative", pluginFn("  limits: {timeout: 1s, outputBytes: -5}\n"), []string{
			"(line 7): spec.limits.outputBytes: must be ≥ 0 (omit it for the host's default), not -5"}},

		// Egress spec. egress's spec starts at line 4 and its fields at line 5.
		{"egress type missing", egress("  config: {}\n"), []string{"(line 4): spec.type: missing (the egress type, e.g. webhook or redis-stream)"}},
		{"egress type blank", egress("  type: ' '\n"), []string{"(line 5): spec.type: empty (the egress type, e.g. webhook or redis-stream)"}},
		{"egress type not a string", egress("  type: [webhook]\n"), []string{"(line 5): spec.type: must be a string, not a list"}},
		{"egress type with a space", egress("  type: web hook\n"), []string{`(line 5): spec.type: "web hook" has white space or a control character at offset 3`}},
		{"egress type too long", egress("  type: " + strings.Repeat("w", 65) + "\n"), []string{"(line 5): spec.type: 65 characters, more than 64"}},
		{"egress unknown field", egress("  type: webhook\n  url: https://x.example.com\n"), []string{"(line 6): spec.url: unknown field"}},
		{"egress field misspelt", egress("  type: webhook\n  confg: {}\n"), []string{"(line 6): spec.confg: unknown field (did you mean config?)"}},
		{"egress config not a mapping", egress("  type: webhook\n  config: [url]\n"), []string{
			"(line 6): spec.config: must be a mapping of names to a string, a list of strings or a mapping of names to strings, not a list"}},
		{"egress config null value", egress("  type: webhook\n  config:\n    url: ~\n"), []string{
			"(line 7): spec.config.url: must be a string, a list of strings or a mapping of names to strings, not null"}},
		{"egress config nested too deep", egress("  type: webhook\n  config:\n    headers: {a: {b: c}}\n    addrs: [[a]]\n"), []string{
			"(line 7): spec.config.headers.a: must be a string, not a mapping", "(line 8): spec.config.addrs[0]: must be a string, not a list"}},
		{"egress config odd key", egress("  type: webhook\n  config:\n    \"a b\": [~]\n"), []string{`(line 7): spec.config["a b"][0]: must be a string, not null`}},
		{"egress config empty name", egress("  type: webhook\n  config:\n    \"\": x\n"), []string{`(line 7): spec.config[""]: empty name`}},
		{"egress config empty header name", egress("  type: webhook\n  config:\n    headers: {\"\": x}\n"), []string{`(line 7): spec.config.headers[""]: empty name`}},
		{"egress config duplicate key", egress("  type: webhook\n  config:\n    url: a\n    url: b\n"), []string{"(line 8): spec.config.url: duplicate field (first at line 7)"}},
		{"egress name with dash", manifestDoc("Egress", "metadata: {name: fraud-alerts}\nspec: {type: webhook}\n"), []string{
			`(line 3): metadata.name: "fraud-alerts" has '-' at offset 5 (want letters, digits and '_'); use '_' instead of '-'`}},
		{"duplicate egress", manifestDoc("Egress", egressMinimal) + "---\n" + manifestDoc("Egress", strings.Replace(egressMinimal, "name: e", "name: E", 1)), []string{
			"document 2 (line 9): metadata.name: Egress ns.e is defined twice (first at t.yaml: document 1 (line 1))"}},

		// spec.builder.messages
		{"messages unknown type", feature("  builder: {module: m.wasm, messages: decimal}\n"), []string{`(line 11): spec.builder.messages: unknown primitive "decimal"`}},
		{"messages not a string", feature("  builder: {module: m.wasm, messages: [int]}\n"), []string{"(line 11): spec.builder.messages: must be a string, not a list"}},
		{"messages without a program", feature("  builder: {messages: int}\n"), []string{"spec.builder.messages: messages are a program's: builder kind sourceless runs none"}},
		{"messages of a plugin connector", feature("  builder: {plugin: geo, function: lookup, messages: int}\n"), []string{"spec.builder.messages: messages are a program's: builder kind plugin runs none"}},

		// Several documents: every document's errors are reported.
		{"errors in two documents", manifestDoc("Feature", "metadata: {name: a}\nspec: {}\n") + "---\n---\n" + manifestDoc("DataSource", "metadata: {name: b}\nspec: {}\n"), []string{
			"document 1 (line 4): spec.primitive: missing", "document 3 (line 10): spec.kind: missing"}},
		{"duplicate feature", manifestDoc("Feature", manifestMinimal) + "---\n" + manifestDoc("Feature", strings.Replace(manifestMinimal, "name: f", "name: F", 1)), []string{
			"document 2 (line 12): metadata.name: Feature ns.f is defined twice (first at t.yaml: document 1 (line 1))"}},
		{"duplicate plugin", manifestDoc("Plugin", pluginMinimal) + "---\n" + manifestDoc("Plugin", strings.Replace(pluginMinimal, "name: p", "name: P", 1)), []string{
			"document 2 (line 10): metadata.name: Plugin ns.p is defined twice (first at t.yaml: document 1 (line 1))"}},
		{"errors in a feature and a plugin", manifestDoc("Feature", "metadata: {name: a}\nspec: {}\n") + "---\n" + manifestDoc("Plugin", "metadata: {name: b}\nspec: {module: b.wasm}\n"), []string{
			"document 1 (line 4): spec.primitive: missing", "document 2 (line 9): spec.functions: missing"}},
		{"feature and data source may share a name", manifestDoc("Feature", manifestMinimal) + "---\n" + manifestDoc("DataSource", "metadata: {name: f, namespace: ns}\nspec: {kind: rest}\n") + "---\n[]\n", []string{
			"document 3 (line 17): must be a mapping"}},
		{"syntax error", manifestDoc("Feature", manifestMinimal) + "---\nkind: [\n", []string{"t.yaml: document 2 (line 12): invalid YAML: did not find expected node content"}},
		{"merge-key bomb", `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata:
  name: f
  labels:
    m0: &m0 {x: "1"}
    m1: &m1 {<<: [*m0,*m0,*m0,*m0,*m0,*m0,*m0,*m0,*m0,*m0]}
    m2: &m2 {<<: [*m1,*m1,*m1,*m1,*m1,*m1,*m1,*m1,*m1,*m1]}
    m3: &m3 {<<: [*m2,*m2,*m2,*m2,*m2,*m2,*m2,*m2,*m2,*m2]}
    m4: &m4 {<<: [*m3,*m3,*m3,*m3,*m3,*m3,*m3,*m3,*m3,*m3]}
    m5: &m5 {<<: [*m4,*m4,*m4,*m4,*m4,*m4,*m4,*m4,*m4,*m4]}
spec:
  <<: *m5
`, []string{"document 1 (line 1): too large: more than 100000 YAML nodes, counting each use of an alias"}},
		{"self merge", manifestDoc("Feature", "metadata: {name: f}\nspec: &s {<<: *s, primitive: int}\n"), []string{"(line 4): spec: merges (<<) nest more than 32 deep (does an anchor merge itself?)"}},
		{"schema alias bomb", manifestDoc("DataSource", `metadata: {name: s}
spec:
  kind: rest
  schema:
    a: &a [x,x,x,x,x,x,x,x,x,x]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
`), []string{"(line 7): spec.schema: invalid inline schema: document contains excessive aliasing"}},
		{"huge list", manifestDoc("Feature", "metadata: {name: f}\nspec: {primitive: int, freshness: 1m, staleness: 1h, keys: ["+strings.Repeat("a,", 100_001)+"]}\n"), []string{
			"document 1 (line 1): too large: more than 100000 YAML nodes"}},
		{"schema not JSON", manifestDoc("DataSource", "metadata: {name: s}\nspec:\n  kind: rest\n  schema: {max: .inf}\n"), []string{"(line 6): spec.schema: an inline schema must be representable as JSON"}},
		{"aliases into unknown structure are not expanded", `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: f}
spec: {keys: *c, primitive: int, freshness: 1m, staleness: 1h}
`, []string{"(line 1): a: unknown field", "(line 2): b: unknown field", "(line 2): spec.keys[0]: must be a string, not a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse([]byte(tt.src), "t.yaml")
			if err == nil {
				t.Fatalf("no error, want %q; got %d manifests", tt.want, len(ms))
			}
			if ms != nil {
				t.Errorf("got %d manifests with an error, want none", len(ms))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Errorf("error %v is not a *Error", err)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error:\n%s\nwant (in order):\n%s", msg, strings.Join(tt.want, "\n"))
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestErrorWrapsFieldError(t *testing.T) {
	_, err := Parse([]byte(manifestDoc("Feature", manifestMinimal+"  timeout: 0s\n")), "x.yaml")
	var fe *engine.FieldError
	if !errors.As(err, &fe) || fe.Path != "spec.timeout" {
		t.Fatalf("error %v: want a *engine.FieldError for spec.timeout, got %v", err, fe)
	}
	if !errors.Is(err, engine.ErrInvalidFeature) || !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v should wrap engine.ErrInvalidFeature and ErrInvalid", err)
	}
	var me *Error
	if !errors.As(err, &me) || me.Path != "spec.timeout" || me.Pos != (Position{Source: "x.yaml", Document: 1, Line: 11}) {
		t.Errorf("Error = %+v", me)
	}

	_, err = Parse([]byte(manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: rest, keyFields: [a, a]}\n")), "x.yaml")
	if !errors.Is(err, engine.ErrInvalidDataSource) || !errors.As(err, &fe) || fe.Path != "spec.keyFields[1]" {
		t.Errorf("error %v: want engine.ErrInvalidDataSource and a *engine.FieldError for spec.keyFields[1]", err)
	}

	_, err = Parse([]byte(manifestDoc("Plugin", pluginMinimal+"  allowedHosts: [a.example.com, b.example.com:80]\n")), "x.yaml")
	if !errors.Is(err, ErrInvalidPlugin) || !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Path != "spec.allowedHosts[1]" {
		t.Errorf("error %v: want ErrInvalidPlugin, ErrInvalid and a *engine.FieldError for spec.allowedHosts[1]", err)
	}
	if !errors.As(err, &me) || me.Path != "spec.allowedHosts[1]" || me.Pos != (Position{Source: "x.yaml", Document: 1, Line: 9}) {
		t.Errorf("Error = %+v", me)
	}

	_, err = Parse([]byte(manifestDoc("Egress", egressMinimal+"  config:\n    \"\": x\n")), "x.yaml")
	if !errors.Is(err, ErrInvalidEgress) || !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Path != `spec.config[""]` {
		t.Errorf("error %v: want ErrInvalidEgress, ErrInvalid and a *engine.FieldError for spec.config[\"\"]", err)
	}
	if !errors.As(err, &me) || me.Pos != (Position{Source: "x.yaml", Document: 1, Line: 9}) {
		t.Errorf("Error = %+v", me)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n", "# comment only\n", "---\n", "---\n---\n...\n", "~\n", "null\n---\n# x\n"} {
		ms, err := Parse([]byte(src), "empty.yaml")
		if err != nil || len(ms) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want nothing", src, ms, err)
		}
	}
}

func TestParsePositions(t *testing.T) {
	src := "# header\n---\n" + manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: rest}\n") + "---\n---\n" + manifestDoc("Feature", manifestMinimal)
	ms := mustParse(t, src)
	want := []Position{{"p.yaml", 1, 3}, {"p.yaml", 3, 9}}
	if len(ms) != 2 {
		t.Fatalf("got %d manifests", len(ms))
	}
	for i, m := range ms {
		m.Pos.Source = "p.yaml"
		if m.Pos != want[i] {
			t.Errorf("manifest %d at %+v, want %+v", i, m.Pos, want[i])
		}
	}
	if got := (Position{"a.yaml", 2, 14}).String(); got != "a.yaml: document 2 (line 14)" {
		t.Errorf("String() = %q", got)
	}
	for _, tt := range []struct {
		p    Position
		want string
	}{
		{Position{"a.yaml", 0, 0}, "a.yaml"},
		{Position{"a.yaml", 0, 3}, "a.yaml: line 3"},
		{Position{"", 1, 0}, "document 1"},
		{Position{}, ""},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
	e := &Error{Msg: "boom"}
	if e.Error() != "boom" || !errors.Is(e, ErrInvalid) {
		t.Errorf("Error{Msg} = %q", e.Error())
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, MaxSize+1)
	_, err := Parse(data, "big.yaml")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "big.yaml: larger than") {
		t.Errorf("error = %v", err)
	}
}

func TestParseManyErrors(t *testing.T) {
	var b strings.Builder
	for range 150 {
		b.WriteString("---\n[]\n")
	}
	_, err := Parse([]byte(b.String()), "many.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	if n := strings.Count(err.Error(), "\n"); n != maxErrors {
		t.Errorf("%d lines, want %d", n+1, maxErrors+1)
	}
	if !strings.HasSuffix(err.Error(), "… and 50 more errors") {
		t.Errorf("error ends %q", err.Error()[len(err.Error())-40:])
	}
}

func TestLoad(t *testing.T) {
	ms, err := Load("testdata/manifests")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, filepath.Base(m.Pos.Source)+":"+string(m.Kind)+":"+m.FQN())
	}
	want := []string{
		"derived.yml:Feature:fraud.spend_ratio",
		"derived.yml:Feature:default.clicks",
		"egress.yaml:Egress:fraud.alerts",
		"egress.yaml:Egress:fraud.events",
		"fraud.yaml:DataSource:fraud.transactions",
		"fraud.yaml:Feature:fraud.card_spend",
		"fraud.yaml:Feature:fraud.last_country",
		"plugin.yaml:Plugin:pii.mask",
		"plugin.yaml:Feature:pii.mask",
		"raptor.yaml:DataSource:legacy_fraud.card_transactions",
		"raptor.yaml:Feature:legacy_fraud.card_spend",
		"raptor.yaml:Feature:legacy_fraud.card_label",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mask := ms[7].Plugin
	if mask.Module != "modules/mask.wasm" || len(mask.Functions) != 3 || mask.Functions[2] != (PluginFunction{"compute", PluginRoleConnector}) ||
		mask.Limits.Timeout != 200*time.Millisecond || mask.Config["mask_char"] != "*" || mask.Labels["team"] != "privacy" {
		t.Errorf("pii.mask = %+v", mask)
	}
	spend := ms[5].Feature
	if spend.Builder.Kind != "wasm" || spend.Aggrs.String() != "sum,count,max,avg" || spend.DataSource != "fraud.transactions" {
		t.Errorf("fraud.card_spend = %+v", spend)
	}
	if ds := ms[4].DataSource; ds.Config["brokers"] != "kafka-1:9092,kafka-2:9092" || ds.Config["partitions"] != "12" || ds.Schema != "{\"type\": \"object\"}\n" {
		t.Errorf("fraud.transactions = %+v", ds)
	}
	if f := ms[11].Feature; f.Builder.Kind != engine.BuilderSourceless {
		t.Errorf("headless feature = %+v", f)
	}
	if e := ms[3].Egress; e.Type != "redis-stream" || e.Config["stream"] != "fraud:events" || !reflect.DeepEqual(e.Config["addrs"], []string{"redis-1:6379", "redis-2:6379"}) {
		t.Errorf("fraud.events = %+v", e)
	}

	// A file is loaded whatever its extension; paths keep their order.
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.manifest", manifestDoc("Feature", manifestMinimal))
	b := write("b.YML", manifestDoc("DataSource", "metadata: {name: s}\nspec: {kind: rest}\n"))
	write(".hidden.yaml", "garbage: [")
	write("readme.md", "# not yaml")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	ms, err = Load(b, a)
	if err != nil || len(ms) != 2 || ms[0].Kind != KindDataSource || ms[1].Kind != KindFeature {
		t.Errorf("Load(b, a) = %+v, %v", ms, err)
	}
	ms, err = Load(dir) // only b.YML: a.manifest has another extension
	if err != nil || len(ms) != 1 || ms[0].Pos.Source != b {
		t.Errorf("Load(dir) = %+v, %v", ms, err)
	}

	// Duplicates across files.
	_, err = Load(a, a)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Feature ns.f is defined twice (first at "+a+": document 1 (line 1))") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	missing := filepath.Join(empty, "missing.yaml")
	_, err := Load(missing, empty, "testdata/manifests/invalid/staleness.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v should wrap ErrInvalid and fs.ErrNotExist", err)
	}
	for _, want := range []string{
		missing + ": no such file or directory",
		empty + ": directory has no *.yaml or *.yml files",
		"testdata/manifests/invalid/staleness.yaml: document 2 (line 21): spec.staleness",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error:\n%v\nwant %q", err, want)
		}
	}
}

// TestManifestFixtures checks each file in testdata/manifests/invalid against its "# want:"
// comments: each must appear in the error.
func TestManifestFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/manifests/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("fixture has no '# want:' line")
			}
			_, err = Parse(data, filepath.Base(file))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant %q", err, w)
				}
			}
		})
	}
}

func TestManifestSuggest(t *testing.T) {
	known := []string{"freshness", "staleness", "keys", "primitive", "dataSource"}
	for _, tt := range []struct{ in, want string }{
		{"freshnes", "freshness"},
		{"Staleness", "staleness"},
		{"datasource", "dataSource"},
		{"key", "keys"},
		{"k", ""},
		{"colour", ""},
		{strings.Repeat("x", 100), ""},
	} {
		if got := suggest(tt.in, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if ms != nil {
				t.Fatalf("manifests returned with an error")
			}
			return
		}
		for _, m := range ms {
			set := 0
			for _, p := range []bool{m.Feature != nil, m.DataSource != nil, m.Plugin != nil, m.Egress != nil} {
				if p {
					set++
				}
			}
			if set != 1 {
				t.Fatalf("inconsistent manifest %+v", m)
			}
			switch {
			case m.Kind == KindFeature && m.Feature != nil:
				if err := m.Feature.Validate(); err != nil {
					t.Fatalf("accepted an invalid feature: %v", err)
				}
			case m.Kind == KindDataSource && m.DataSource != nil:
				if err := m.DataSource.Validate(); err != nil {
					t.Fatalf("accepted an invalid data source: %v", err)
				}
			case m.Kind == KindPlugin && m.Plugin != nil:
				if err := m.Plugin.Validate(); err != nil {
					t.Fatalf("accepted an invalid plugin: %v", err)
				}
			case m.Kind == KindEgress && m.Egress != nil:
				if err := m.Egress.Validate(); err != nil {
					t.Fatalf("accepted an invalid egress: %v", err)
				}
			default:
				t.Fatalf("inconsistent manifest %+v", m)
			}
		}
	})
}
