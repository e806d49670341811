package encoder_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/encoder"
	_ "github.com/osprey-ml/osprey/plugins/state/memory"
)

func encoders(t *testing.T, cfg map[string]plugins.Config) engine.EncoderResolver {
	t.Helper()
	r, err := plugins.NewEncoders(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func encode(t *testing.T, r engine.EncoderResolver, name string, v engine.Value) (string, error) {
	t.Helper()
	enc, err := r.Encoder(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := enc(context.Background(), v)
	return out.Str(), err
}

const key = "0123456789abcdef-test-key"

func TestHash(t *testing.T) {
	r := encoders(t, map[string]plugins.Config{"hash": {"key": key}})
	other := encoders(t, map[string]plugins.Config{"hash": {"key": key + "2"}})
	short := encoders(t, map[string]plugins.Config{"hash": {"key": key, "bytes": "8"}})
	ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	values := []engine.Value{
		engine.Int(1), engine.String("1"), engine.Float(1), engine.Bool(true), engine.Timestamp(ts),
		engine.String("a@example.com"), engine.String(""), engine.StringList([]string{"a", "b"}),
		engine.StringList([]string{"ab"}), engine.StringList([]string{"a", ""}), engine.IntList([]int64{1, 2}),
		engine.Int(math.MaxInt64), engine.Int(math.MinInt64),
	}
	seen := map[string]int{}
	for i, v := range values {
		h, err := encode(t, r, "hash", v)
		if err != nil || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Fatalf("hash(%v) = %q, %v; want 64 hex digits", v, h, err)
		}
		if j, dup := seen[h]; dup {
			t.Fatalf("hash(%v) = hash(%v)", v, values[j])
		}
		seen[h] = i
		if again, _ := encode(t, r, "hash", v); again != h {
			t.Fatalf("hash(%v) is not deterministic", v)
		}
		if o, _ := encode(t, other, "hash", v); o == h {
			t.Fatalf("hash(%v) does not depend on the key", v)
		}
		if s, _ := encode(t, short, "hash", v); s != h[:16] {
			t.Fatalf("hash(%v) with bytes=8 = %q; want %q", v, s, h[:16])
		}
	}
}

func TestHashConfig(t *testing.T) {
	t.Setenv("OSPREY_TEST_HASH_KEY", key)
	for _, tc := range []struct {
		name string
		cfg  plugins.Config
		want string // an error of NewEncoders, or "" for none
	}{
		{"key", plugins.Config{"key": key}, ""},
		{"key-env", plugins.Config{"key-env": "OSPREY_TEST_HASH_KEY"}, ""},
		{"key-env unset", plugins.Config{"key-env": "OSPREY_TEST_NO_SUCH_VAR"}, "OSPREY_TEST_NO_SUCH_VAR is empty or unset"},
		{"both", plugins.Config{"key": key, "key-env": "OSPREY_TEST_HASH_KEY"}, "set one"},
		{"short key", plugins.Config{"key": "short"}, "a key needs 16 at least"},
		{"bytes", plugins.Config{"key": key, "bytes": "4"}, "outside 8 to 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugins.NewEncoders(map[string]plugins.Config{"hash": tc.cfg})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
	// Without a key the encoding exists and says how to configure it.
	r := encoders(t, nil)
	if _, err := encode(t, r, "hash", engine.String("x")); !errors.Is(err, encoder.ErrNoKey) || !strings.Contains(err.Error(), "key") {
		t.Fatalf("err = %v; want ErrNoKey", err)
	}
	if _, err := plugins.NewEncoders(map[string]plugins.Config{"nope": {}}); !errors.Is(err, plugins.ErrNotRegistered) {
		t.Fatalf("unknown section: %v", err)
	}
	if _, err := r.Encoder("rot13"); !errors.Is(err, plugins.ErrNotRegistered) || !strings.Contains(err.Error(), "hash, json") {
		t.Fatalf("unknown encoding: %v", err)
	}
}

func TestJSON(t *testing.T) {
	r := encoders(t, nil)
	ts := time.Date(2026, 12, 1, 10, 0, 0, 5, time.UTC)
	for _, tc := range []struct {
		v    engine.Value
		want string
	}{
		{engine.Int(math.MaxInt64), "9223372036854775807"},
		{engine.Int(1<<53 + 1), "9007199254740993"},
		{engine.Float(0.1), "0.1"},
		{engine.String(`a"b`), `"a\"b"`},
		{engine.Bool(false), "false"},
		{engine.Timestamp(ts), `"2026-12-01T10:00:00.000000005Z"`},
		{engine.IntList([]int64{-1 << 63, 2}), "[-9223372036854775808,2]"},
		{engine.StringList([]string{"x"}), `["x"]`},
	} {
		got, err := encode(t, r, "json", tc.v)
		if err != nil || got != tc.want {
			t.Errorf("json(%v) = %s, %v; want %s", tc.v, got, err, tc.want)
		}
	}
}

// TestSelector: an engine with the encodings serves `fqn[hash]` and `fqn[json]`.
func TestSelector(t *testing.T) {
	ctx := context.Background()
	st, err := plugins.NewState(ctx, "memory", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng := engine.New(st, engine.WithEncoderResolver(encoders(t, map[string]plugins.Config{"hash": {"key": key}})))
	defer eng.Close()
	f := &engine.Feature{FQN: "user.email", Primitive: engine.PrimitiveString, Freshness: time.Hour, Staleness: 24 * time.Hour,
		Timeout: time.Second, Keys: []string{"user_id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	if err := eng.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	keys := engine.Keys{"user_id": "u1"}
	if _, err := eng.Set(ctx, "user.email", keys, "a@example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	want, _ := encode(t, encoders(t, map[string]plugins.Config{"hash": {"key": key}}), "hash", engine.String("a@example.com"))
	for sel, want := range map[string]string{"user.email[hash]": want, "user.email[json]": `"a@example.com"`} {
		res, err := eng.Get(ctx, sel, keys)
		if err != nil || res.Value.Str() != want {
			t.Fatalf("Get %s = %v, %v; want %s", sel, res.Value, err, want)
		}
	}
	if _, err := eng.Get(ctx, "user.email[rot13]", keys); err == nil || !strings.Contains(err.Error(), "rot13") {
		t.Fatalf("unknown encoding: %v", err)
	}
}
