package egress_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
)

// fake is the "test-fake" egress type: it records what it emits and whether it is closed,
// and, with block set, holds every Emit until release is closed.
type fake struct {
	cfg     egress.Config
	mu      sync.Mutex
	emitted []engine.EgressMessage
	closed  int
	block   bool
	started chan struct{}
	release chan struct{}
}

var (
	fakesMu sync.Mutex
	fakes   = map[string]*fake{} // by FQN, the latest made
)

func init() {
	egress.Register("test-fake", func(_ context.Context, cfg egress.Config) (egress.Egress, error) {
		if err := cfg.Check("block", "url"); err != nil {
			return nil, err
		}
		block, err := cfg.Bool("block", false)
		if err != nil {
			return nil, err
		}
		if u, err := cfg.String("url", ""); err != nil {
			return nil, err
		} else if u != "" {
			if err := cfg.CheckHost("url", u); err != nil {
				return nil, err
			}
		}
		f := &fake{cfg: cfg, block: block, started: make(chan struct{}, 16), release: make(chan struct{})}
		fakesMu.Lock()
		fakes[cfg.FQN] = f
		fakesMu.Unlock()
		return f, nil
	})
}

func (f *fake) Emit(ctx context.Context, m engine.EgressMessage) error {
	if f.block {
		f.started <- struct{}{}
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed > 0 {
		return errors.New("emit after close")
	}
	f.emitted = append(f.emitted, m)
	return nil
}

func (f *fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fake) closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func fakeOf(t *testing.T, fqn string) *fake {
	t.Helper()
	fakesMu.Lock()
	defer fakesMu.Unlock()
	f := fakes[fqn]
	if f == nil {
		t.Fatalf("no fake egress %s was made", fqn)
	}
	return f
}

func TestRegisterPanics(t *testing.T) {
	factory := func(context.Context, egress.Config) (egress.Egress, error) { return nil, nil }
	for _, tt := range []struct {
		name string
		f    egress.Factory
		want string
	}{
		{"test-fake", factory, `type "test-fake" registered twice`},
		{"", factory, "want a name without white space"},
		{"a b", factory, "want a name without white space"},
		{"test-nil", nil, "nil factory"},
	} {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Errorf("Register(%q) panicked with %v, want %q", tt.name, r, tt.want)
				}
			}()
			egress.Register(tt.name, tt.f)
		}()
	}
	egress.Register("test-nothing", factory)
	if got := egress.Types(); !reflect.DeepEqual(got, []string{"test-fake", "test-nothing"}) {
		t.Errorf("Types() = %v", got)
	}
	_, err := egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "test-nothing"}, egress.Policy{})
	if err == nil || !strings.Contains(err.Error(), "egress ns.e (test-nothing): the factory returned no Egress") {
		t.Errorf("a factory returning nil: %v", err)
	}
}

func TestNewUnknownType(t *testing.T) {
	_, err := egress.New(context.Background(), &manifest.Egress{FQN: "fraud.alerts", Type: "test-fak"}, egress.Policy{})
	if !errors.Is(err, plugins.ErrNotRegistered) {
		t.Fatalf("error %v does not wrap plugins.ErrNotRegistered", err)
	}
	want := `egress fraud.alerts: spec.type: unknown egress type "test-fak" (did you mean test-fake?): not registered (registered: test-fake`
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
}

func TestConfigGetters(t *testing.T) {
	cfg := egress.Config{FQN: "ns.e", Values: map[string]any{
		"s": "  text ", "blank": " ", "d": "1m30s", "zero": "0s", "n": "1_000", "neg": "-3", "b": "Yes",
		"list": []string{" a ", "", "b"}, "csv": "a:1, b:2;c:3", "m": map[string]string{"A": "1"}, "bad": "soon",
		"odd key": "x",
	}}
	if s, err := cfg.String("s", "def"); s != "text" || err != nil {
		t.Errorf("String(s) = %q, %v", s, err)
	}
	if s, err := cfg.String("blank", "def"); s != "def" || err != nil {
		t.Errorf("String(blank) = %q, %v", s, err)
	}
	if s, err := cfg.String("missing", "def"); s != "def" || err != nil {
		t.Errorf("String(missing) = %q, %v", s, err)
	}
	if d, err := cfg.Duration("d", time.Second); d != 90*time.Second || err != nil {
		t.Errorf("Duration(d) = %v, %v", d, err)
	}
	if n, err := cfg.Int("n", 0); n != 1000 || err != nil {
		t.Errorf("Int(n) = %v, %v", n, err)
	}
	if n, err := cfg.Int("neg", 0); n != -3 || err != nil {
		t.Errorf("Int(neg) = %v, %v", n, err)
	}
	if b, err := cfg.Bool("b", false); !b || err != nil {
		t.Errorf("Bool(b) = %v, %v", b, err)
	}
	if l, err := cfg.Strings("list"); !reflect.DeepEqual(l, []string{"a", "b"}) || err != nil {
		t.Errorf("Strings(list) = %q, %v", l, err)
	}
	if l, err := cfg.Strings("csv"); !reflect.DeepEqual(l, []string{"a:1", "b:2", "c:3"}) || err != nil {
		t.Errorf("Strings(csv) = %q, %v", l, err)
	}
	if m, err := cfg.Map("m"); !reflect.DeepEqual(m, map[string]string{"A": "1"}) || err != nil {
		t.Errorf("Map(m) = %v, %v", m, err)
	}
	if !cfg.Has("s") || cfg.Has("blank") || cfg.Has("missing") || !cfg.Has("list") {
		t.Error("Has is wrong")
	}
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"a duration that is not", func() error { _, err := cfg.Duration("bad", 0); return err }, `spec.config.bad: "soon" is not a duration`},
		{"a zero duration", func() error { _, err := cfg.Duration("zero", 0); return err }, `spec.config.zero: "0s": must be a positive duration`},
		{"an integer that is not", func() error { _, err := cfg.Int("d", 0); return err }, `spec.config.d: "1m30s" is not an integer`},
		{"a bool that is not", func() error { _, err := cfg.Bool("bad", false); return err }, `spec.config.bad: "soon" is not true or false`},
		{"a list for a string", func() error { _, err := cfg.String("list", ""); return err }, "spec.config.list: a list: want a single value"},
		{"a mapping for a string", func() error { _, err := cfg.Duration("m", 0); return err }, "spec.config.m: a mapping: want a single value"},
		{"a string for a mapping", func() error { _, err := cfg.Map("s"); return err }, "spec.config.s: a string: want a mapping of names to strings"},
		{"a mapping for a list", func() error { _, err := cfg.Strings("m"); return err }, "spec.config.m: a mapping: want a list"},
		{"unknown keys", func() error { return cfg.Check("s", "blank", "d", "zero", "n", "neg", "b", "list", "csv", "bads") }, `spec.config.bad: unknown key (did you mean bads?); spec.config.m: unknown key; spec.config["odd key"]: unknown key (known: s, blank,`},
	} {
		err := tt.call()
		if !errors.Is(err, plugins.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want ErrInvalidConfig and %q", tt.name, err, tt.want)
		}
	}
	if err := (egress.Config{}).Check(); err != nil {
		t.Errorf("Check of no config: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	p := egress.Policy{AllowedHosts: []string{"hooks.example.com", "*.internal.example.net", "10.0.0.1"}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"hooks.example.com": true, "HOOKS.example.com.": true, "a.internal.example.net": true, "a.b.internal.example.net": true,
		"internal.example.net": false, "evil.example.com": false, "10.0.0.1": true, "10.0.0.2": false, "169.254.169.254": false,
	} {
		if got := p.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
	if !(egress.Policy{}).Allows("anything") {
		t.Error("an empty policy refuses a host")
	}
	for _, bad := range []string{"https://x.example.com", "x.example.com:443", "", "[a"} {
		if err := (egress.Policy{AllowedHosts: []string{bad}}).Validate(); err == nil {
			t.Errorf("Validate accepted %q", bad)
		}
	}
	// Through a factory: the fake checks its url as a host.
	_, err := egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "test-fake", Config: map[string]any{"url": "169.254.169.254"}}, p)
	if !errors.Is(err, plugins.ErrInvalidConfig) || !strings.Contains(err.Error(), `egress ns.e (test-fake): invalid plugin config: spec.config.url: host "169.254.169.254" is not allowed by this server's egress policy`) {
		t.Errorf("error = %v", err)
	}
}

func loadInto(t *testing.T, s *egress.Set, fqn string, cfg map[string]any) io.Closer {
	t.Helper()
	l, err := s.Load(context.Background(), &manifest.Egress{FQN: fqn, Type: "test-fake", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSet(t *testing.T) {
	ctx := context.Background()
	s := egress.NewSet(egress.Policy{}, engine.DefaultNamespace, nil)
	if _, err := s.Load(ctx, &manifest.Egress{FQN: "default.alerts", Type: "test-fake", Config: map[string]any{"blok": "true"}}); err == nil ||
		!strings.Contains(err.Error(), "spec.config.blok: unknown key (did you mean block?)") {
		t.Fatalf("Load with a typo: %v", err)
	}
	a1 := loadInto(t, s, "default.alerts", nil)
	if _, err := s.Egress("alerts"); !errors.Is(err, egress.ErrNotApplied) || !strings.Contains(err.Error(), "egress default.alerts is not applied") {
		t.Fatalf("Egress before Swap: %v", err)
	}
	if prev := s.Swap("default.alerts", a1); prev != nil {
		t.Fatalf("Swap into an empty set returned %v", prev)
	}
	// A bare name is in the default namespace; names are case-insensitive.
	for _, name := range []string{"alerts", "default.alerts", "Default.ALERTS"} {
		eg, err := s.Egress(name)
		if err != nil || eg != engine.Egress(a1.(*egress.Loaded)) {
			t.Fatalf("Egress(%q) = %v, %v", name, eg, err)
		}
	}
	if _, err := s.Egress("fraud.alerts"); !errors.Is(err, egress.ErrNotApplied) {
		t.Errorf("Egress(fraud.alerts): %v", err)
	}
	if _, err := s.Egress("a.b.c"); err == nil || errors.Is(err, egress.ErrNotApplied) {
		t.Errorf("Egress(a.b.c) = %v, want a parse error", err)
	}
	eg, _ := s.Egress("alerts")
	if err := eg.Emit(ctx, engine.EgressMessage{ID: "m1"}); err != nil {
		t.Fatal(err)
	}
	first := fakeOf(t, "default.alerts")

	// Replacing returns the previous egress, not closed.
	a2 := loadInto(t, s, "default.alerts", nil)
	second := fakeOf(t, "default.alerts")
	if prev := s.Swap("default.alerts", a2); prev != a1 {
		t.Fatalf("Swap returned %v, want the first egress", prev)
	}
	if first.closes() != 0 {
		t.Fatal("Swap closed the egress it replaced")
	}
	if err := a1.Close(); err != nil || first.closes() != 1 {
		t.Fatalf("Close: %v, %d closes", err, first.closes())
	}
	if err := a1.Close(); err != nil || first.closes() != 1 {
		t.Fatalf("second Close: %v, %d closes", err, first.closes())
	}
	// The name resolved before the swap fails retryably now; resolving again reaches the
	// new egress.
	if err := eg.Emit(ctx, engine.EgressMessage{ID: "m2"}); !errors.Is(err, egress.ErrClosed) || errors.Is(err, engine.ErrPermanent) {
		t.Errorf("Emit on a replaced egress: %v", err)
	}
	eg, _ = s.Egress("alerts")
	if err := eg.Emit(ctx, engine.EgressMessage{ID: "m3"}); err != nil || len(second.emitted) != 1 || second.emitted[0].ID != "m3" {
		t.Errorf("Emit after the swap: %v, %+v", err, second.emitted)
	}
	if got := s.Names(); !reflect.DeepEqual(got, []string{"default.alerts"}) {
		t.Errorf("Names() = %v", got)
	}
	if prev := s.Delete("default.alerts"); prev != a2 {
		t.Errorf("Delete returned %v", prev)
	}
	if prev := s.Delete("default.alerts"); prev != nil {
		t.Errorf("second Delete returned %v", prev)
	}
	if _, err := s.Egress("alerts"); !errors.Is(err, egress.ErrNotApplied) {
		t.Errorf("Egress after Delete: %v", err)
	}

	// Close closes what is applied.
	s.Swap("default.alerts", a2)
	s.Close()
	if second.closes() != 1 || len(s.Names()) != 0 {
		t.Errorf("after Close: %d closes, names %v", second.closes(), s.Names())
	}
}

func TestSwapPanics(t *testing.T) {
	s := egress.NewSet(egress.Policy{}, engine.DefaultNamespace, nil)
	l := loadInto(t, s, "ns.a", nil)
	for name, call := range map[string]func(){
		"another name": func() { s.Swap("ns.b", l) },
		"nil":          func() { s.Swap("ns.a", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Swap of %s did not panic", name)
				}
			}()
			call()
		}()
	}
}

// TestCloseWaitsForEmit: closing an egress with an Emit running closes it once that Emit
// returns, not before.
func TestCloseWaitsForEmit(t *testing.T) {
	s := egress.NewSet(egress.Policy{}, "ns", nil)
	l := loadInto(t, s, "ns.slow", map[string]any{"block": "true"})
	f := fakeOf(t, "ns.slow")
	s.Swap("ns.slow", l)
	eg, err := s.Egress("slow")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- eg.Emit(context.Background(), engine.EgressMessage{ID: "m"}) }()
	<-f.started
	if err := s.Delete("ns.slow").Close(); err != nil {
		t.Fatal(err)
	}
	if n := f.closes(); n != 0 {
		t.Fatalf("closed %d times while an Emit ran", n)
	}
	close(f.release)
	if err := <-done; err != nil {
		t.Fatalf("the running Emit: %v", err)
	}
	if n := f.closes(); n != 1 {
		t.Fatalf("closed %d times after the Emit returned, want 1", n)
	}
	if len(f.emitted) != 1 {
		t.Errorf("emitted %d", len(f.emitted))
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	if err := egress.Check(ctx, &manifest.Egress{FQN: "ns.e", Type: "test-fake"}, egress.Policy{}); err != nil {
		t.Fatal(err)
	}
	if fakeOf(t, "ns.e").closes() != 1 {
		t.Error("Check did not close the egress it made")
	}
	if err := egress.Check(ctx, &manifest.Egress{FQN: "ns.e", Type: "test-fake", Config: map[string]any{"x": "1"}}, egress.Policy{}); !errors.Is(err, plugins.ErrInvalidConfig) {
		t.Errorf("Check with an unknown key: %v", err)
	}
}

func TestJSONAndText(t *testing.T) {
	ts := time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		v    engine.Value
		json string
		text string
	}{
		{engine.Null, "null", ""},
		{engine.Int(math.MaxInt64), "9223372036854775807", "9223372036854775807"},
		{engine.Float(0.5), "0.5", "0.5"},
		{engine.Float(math.NaN()), `"NaN"`, "NaN"},
		{engine.Float(math.Inf(-1)), `"-Inf"`, "-Inf"},
		{engine.String(`a "q"`), `"a \"q\""`, `a "q"`},
		{engine.Bool(true), "true", "true"},
		{engine.Timestamp(ts), `"2026-01-02T14:04:05.123456789Z"`, "2026-01-02T14:04:05.123456789Z"},
		{engine.IntList([]int64{1, -2}), "[1,-2]", "[1,-2]"},
		{engine.FloatList([]float64{1.5, math.Inf(1)}), `[1.5,"+Inf"]`, `[1.5,"+Inf"]`},
		{engine.StringList([]string{"a", "b"}), `["a","b"]`, `["a","b"]`},
		{engine.BoolList([]bool{true, false}), "[true,false]", "[true,false]"},
		{engine.TimestampList([]time.Time{ts}), `["2026-01-02T14:04:05.123456789Z"]`, `["2026-01-02T14:04:05.123456789Z"]`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(egress.JSON(tt.v))
		if err != nil || string(b) != tt.json {
			t.Errorf("JSON(%v) = %s, %v; want %s", tt.v, b, err, tt.json)
		}
		s, ok := egress.Text(tt.v)
		if s != tt.text || ok != !tt.v.IsNull() {
			t.Errorf("Text(%v) = %q, %v; want %q", tt.v, s, ok, tt.text)
		}
	}
}
