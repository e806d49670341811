package plugins

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

var ctx = context.Background()

// mustPanic runs fn and returns its panic message, failing the test if it does not panic.
func mustPanic(t *testing.T, fn func()) (msg string) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("did not panic")
		}
		msg, _ = r.(string)
	}()
	fn()
	return ""
}

func TestRegistryRegister(t *testing.T) {
	tests := []struct {
		name    string
		names   []string
		wantMsg string // the panic of the last registration; "" for none
	}{
		{"distinct", []string{"b", "a", "c.d"}, ""},
		{"duplicate", []string{"a", "b", "a"}, `"a" registered twice`},
		{"empty", []string{""}, "empty name"},
		{"space", []string{"a b"}, "white space"},
		{"newline", []string{"a\n"}, "white space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry[int]("thing")
			last := len(tt.names) - 1
			for i, n := range tt.names[:last] {
				r.register(n, i)
			}
			if tt.wantMsg == "" {
				r.register(tt.names[last], last)
				return
			}
			msg := mustPanic(t, func() { r.register(tt.names[last], last) })
			if !strings.Contains(msg, tt.wantMsg) || !strings.Contains(msg, "thing") {
				t.Fatalf("panic %q, want it to mention %q and the kind", msg, tt.wantMsg)
			}
		})
	}
}

func TestRegistryLookup(t *testing.T) {
	r := newRegistry[int]("thing")
	if _, err := r.lookup("x"); !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "registered: none") {
		t.Fatalf("lookup in empty registry: %v", err)
	}
	for i, n := range []string{"zeta", "alpha", "mid"} {
		r.register(n, i)
	}
	if got := r.names(); !slices.Equal(got, []string{"alpha", "mid", "zeta"}) {
		t.Fatalf("names = %v, want sorted", got)
	}
	if v, err := r.lookup("mid"); err != nil || v != 2 {
		t.Fatalf("lookup(mid) = %v, %v", v, err)
	}
	_, err := r.lookup("nope")
	if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), `thing "nope"`) || !strings.Contains(err.Error(), "alpha, mid, zeta") {
		t.Fatalf("lookup(nope) err = %v, want the name and the registered ones", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := newRegistry[int]("thing")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r.register(string(rune('a'+i)), i)
			_, _ = r.lookup("a")
			_ = r.names()
		})
	}
	wg.Wait()
	if n := len(r.names()); n != 8 {
		t.Fatalf("%d names, want 8", n)
	}
}

type fakeState struct {
	engine.State
	cfg Config
}

type fakeNotifier struct{ engine.Notifier }

// The test registrations happen once per process (go test -count=N runs tests N times).
func init() {
	RegisterState("test-state", func(_ context.Context, cfg Config) (engine.State, error) {
		return fakeState{cfg: cfg}, nil
	})
	RegisterState("test-state-failing", func(context.Context, Config) (engine.State, error) {
		return nil, errors.New("cannot dial")
	})
	RegisterState("test-state-nil", func(context.Context, Config) (engine.State, error) { return nil, nil })
	RegisterNotifier("test-notifier", func(context.Context, Config) (engine.Notifier, error) { return fakeNotifier{}, nil })
	RegisterMiddleware("test-double", func(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		if err := Config(ref.Config).Check(); err != nil {
			return nil, err
		}
		return func(_ context.Context, _ *engine.Call, v engine.Value) (engine.Value, error) {
			return engine.Int(2 * v.Int()), nil
		}, nil
	})
}

func TestStates(t *testing.T) {
	mustPanic(t, func() {
		RegisterState("test-state", func(context.Context, Config) (engine.State, error) { return nil, nil })
	})
	mustPanic(t, func() { RegisterState("test-state-nil-factory", nil) })

	st, err := NewState(ctx, "test-state", Config{"addr": "x"})
	if fs, ok := st.(fakeState); err != nil || !ok || fs.cfg["addr"] != "x" {
		t.Fatalf("NewState = %v, %v", st, err)
	}
	if _, err := NewState(ctx, "test-state-failing", nil); err == nil || !strings.Contains(err.Error(), `state provider "test-state-failing": cannot dial`) {
		t.Fatalf("failing factory: err = %v", err)
	}
	if _, err := NewState(ctx, "test-state-nil", nil); err == nil {
		t.Fatal("a factory returning no State succeeded")
	}
	_, err = NewState(ctx, "nope", nil)
	if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "test-state, test-state-failing, test-state-nil") {
		t.Fatalf("unknown state: err = %v", err)
	}
	if names := StateNames(); !slices.IsSorted(names) || !slices.Contains(names, "test-state") {
		t.Fatalf("StateNames = %v", names)
	}
}

func TestNotifiers(t *testing.T) {
	mustPanic(t, func() {
		RegisterNotifier("test-notifier", func(context.Context, Config) (engine.Notifier, error) { return nil, nil })
	})
	if n, err := NewNotifier(ctx, "test-notifier", nil); err != nil || n == nil {
		t.Fatalf("NewNotifier = %v, %v", n, err)
	}
	if _, err := NewNotifier(ctx, "nope", nil); !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "test-notifier") {
		t.Fatalf("unknown notifier: err = %v", err)
	}
	if names := NotifierNames(); !slices.IsSorted(names) || !slices.Contains(names, "test-notifier") {
		t.Fatalf("NotifierNames = %v", names)
	}
}

func TestMiddlewares(t *testing.T) {
	mustPanic(t, func() {
		RegisterMiddleware("test-double", func(context.Context, *engine.Feature, engine.MiddlewareRef) (engine.Middleware, error) {
			return nil, nil
		})
	})
	f := &engine.Feature{FQN: "t.f", Primitive: engine.PrimitiveInt}
	mw, err := Middlewares.ResolveMiddleware(ctx, f, engine.MiddlewareRef{Name: "test-double"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := mw(ctx, &engine.Call{}, engine.Int(21)); err != nil || v.Int() != 42 {
		t.Fatalf("middleware = %v, %v", v, err)
	}
	tests := []struct {
		name string
		ref  engine.MiddlewareRef
		want []string
	}{
		{"unknown", engine.MiddlewareRef{Name: "nope"}, []string{`"nope"`, "test-double", "t.f"}},
		{"wasm", engine.MiddlewareRef{Name: "test-double", Module: "sha256:abc"}, []string{"Wasm module", "sha256:abc"}},
		{"factory error", engine.MiddlewareRef{Name: "test-double", Config: map[string]string{"x": "1"}}, []string{`unknown key "x"`, "t.f", "test-double"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ResolveMiddleware(ctx, f, tt.ref)
			if err == nil {
				t.Fatal("resolved")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := ResolveMiddleware(ctx, f, engine.MiddlewareRef{Name: "nope"}); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("unknown middleware error does not wrap ErrNotRegistered: %v", err)
	}
	if names := MiddlewareNames(); !slices.IsSorted(names) || !slices.Contains(names, "test-double") {
		t.Fatalf("MiddlewareNames = %v", names)
	}
}

func TestConfig(t *testing.T) {
	c := Config{
		"s": " text ", "empty": "  ", "d": "1m30s", "bad_d": "soon", "i": "-42", "bad_i": "4.2",
		"f": "2.5e3", "bad_f": "x", "nan": "NaN", "b": "TRUE", "bad_b": "yes",
	}
	if got := c.String("s", "def"); got != "text" {
		t.Errorf("String(s) = %q", got)
	}
	if got := c.String("empty", "def"); got != "def" {
		t.Errorf("String(empty) = %q, want the default", got)
	}
	if got := c.String("missing", "def"); got != "def" {
		t.Errorf("String(missing) = %q", got)
	}
	if c.Has("empty") || !c.Has("s") || c.Has("missing") {
		t.Error("Has")
	}
	tests := []struct {
		name string
		get  func() (any, error)
		want any
	}{
		{"duration", func() (any, error) { return c.Duration("d", 0) }, 90 * time.Second},
		{"duration default", func() (any, error) { return c.Duration("missing", time.Second) }, time.Second},
		{"int", func() (any, error) { return c.Int("i", 0) }, -42},
		{"int default", func() (any, error) { return c.Int("empty", 7) }, 7},
		{"float", func() (any, error) { return c.Float("f", 0) }, 2500.0},
		{"float default", func() (any, error) { return c.Float("missing", 0.5) }, 0.5},
		{"bool", func() (any, error) { return c.Bool("b", false) }, true},
		{"bool default", func() (any, error) { return c.Bool("missing", true) }, true},
	}
	for _, tt := range tests {
		got, err := tt.get()
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	bad := []struct {
		key string
		get func() error
	}{
		{"bad_d", func() error { _, err := c.Duration("bad_d", 0); return err }},
		{"bad_i", func() error { _, err := c.Int("bad_i", 0); return err }},
		{"bad_f", func() error { _, err := c.Float("bad_f", 0); return err }},
		{"nan", func() error { _, err := c.Float("nan", 0); return err }},
		{"bad_b", func() error { _, err := c.Bool("bad_b", false); return err }},
	}
	for _, b := range bad {
		err := b.get()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `"`+b.key+`"`) || !strings.Contains(err.Error(), c[b.key]) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming the key and value", b.key, err)
		}
	}
	var nilCfg Config
	if nilCfg.String("x", "d") != "d" || nilCfg.Check() != nil {
		t.Error("nil Config")
	}
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		cfg   Config
		known []string
		want  string // "" for no error
	}{
		{Config{"a": "1"}, []string{"a", "b"}, ""},
		{Config{}, nil, ""},
		{Config{"c": "1"}, []string{"a", "b"}, `unknown key "c" (known: a, b)`},
		{Config{"z": "1", "y": "1"}, []string{"a"}, `unknown keys "y", "z"`},
		{Config{"a": "1"}, nil, "(known: none)"},
	}
	for _, tt := range tests {
		err := tt.cfg.Check(tt.known...)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Check(%v, %v) = %v", tt.cfg, tt.known, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%v, %v) = %v, want %q", tt.cfg, tt.known, err, tt.want)
		}
	}
}
