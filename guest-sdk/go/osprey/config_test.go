//go:build !wasip1

package osprey

import (
	"errors"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/abi"
)

// configure delivers cfg as the host would and restores an empty configuration (and no
// hook) when the test ends. It returns the response.
func configure(t *testing.T, cfg map[string]string) abi.Response {
	t.Helper()
	t.Cleanup(func() {
		OnConfig(nil)
		Configure([]byte{abi.CallConfigure, 0})
	})
	b := abi.AppendConfigureCall(nil, &abi.ConfigureCall{Config: abi.SortedConfig(cfg)})
	r, d := abi.DecodeResponse(Configure(b))
	if err := d.Done(); err != nil {
		t.Fatalf("configure response: %v", err)
	}
	return r
}

func TestConfigLookup(t *testing.T) {
	cfg := map[string]string{"max": "10000", "ratio": "0.25", "neg": "-7", "name": "é", "empty": "", "big": "1e400", "nan": "NaN", "hex": "0x10"}
	if r := configure(t, cfg); r.Status != abi.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Message)
	}
	ctx, _, end := decode(t, nil, nil)
	defer end()
	for k, want := range cfg {
		if got, ok := ctx.Config(k); !ok || got != want {
			t.Errorf("Config(%q) = %q, %v; want %q", k, got, ok, want)
		}
	}
	for _, k := range []string{"", "a", "zzz", "maxx", "Max"} {
		if got, ok := ctx.Config(k); ok {
			t.Errorf("Config(%q) = %q, want absent", k, got)
		}
	}
	ints := []struct {
		key     string
		want    int64
		wantErr string
	}{
		{"max", 10000, ""},
		{"neg", -7, ""},
		{"absent", 5, ""},
		{"ratio", 5, `config ratio: "0.25" is not an integer`},
		{"hex", 5, `config hex: "0x10" is not an integer`},
		{"empty", 5, `config empty: "" is not an integer`},
	}
	for _, tt := range ints {
		got, err := ctx.ConfigInt(tt.key, 5)
		if got != tt.want || errString(err) != tt.wantErr {
			t.Errorf("ConfigInt(%q) = %d, %v; want %d, %q", tt.key, got, err, tt.want, tt.wantErr)
		}
	}
	floats := []struct {
		key     string
		want    float64
		wantErr string
	}{
		{"ratio", 0.25, ""},
		{"max", 10000, ""},
		{"absent", 1.5, ""},
		{"big", 1.5, `config big: "1e400" is not a finite number`},
		{"nan", 1.5, `config nan: "NaN" is not a finite number`},
		{"name", 1.5, `config name: "é" is not a finite number`},
	}
	for _, tt := range floats {
		got, err := ctx.ConfigFloat(tt.key, 1.5)
		if got != tt.want || errString(err) != tt.wantErr {
			t.Errorf("ConfigFloat(%q) = %v, %v; want %v, %q", tt.key, got, err, tt.want, tt.wantErr)
		}
	}
	var ce *ConfigError
	if _, err := ctx.ConfigInt("ratio", 0); !errors.As(err, &ce) || ce.Key != "ratio" {
		t.Errorf("ConfigInt error %v is not a *ConfigError for ratio", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		ctx.Config("max")
		ctx.Config("absent")
		ctx.ConfigInt("max", 0)
		ctx.ConfigFloat("ratio", 0)
	}); n != 0 {
		t.Errorf("%v allocations per lookup, want 0", n)
	}
}

func TestOnConfig(t *testing.T) {
	tests := []struct {
		name    string
		hook    func(Config) error
		cfg     map[string]string
		wantMsg string // "" for accepted
	}{
		{"no hook", nil, map[string]string{"k": "v"}, ""},
		{"accepts", func(c Config) error { _, err := c.Int("n", 0); return err }, map[string]string{"n": "3"}, ""},
		{"refuses", func(c Config) error { _, err := c.Int("n", 0); return err }, map[string]string{"n": "x"}, `config n: "x" is not an integer`},
		{"panics", func(Config) error { panic("no way") }, map[string]string{"n": "1"}, "panic: no way"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configure(t, map[string]string{"previous": "yes"})
			OnConfig(tt.hook)
			r := configure(t, tt.cfg)
			if tt.wantMsg == "" {
				if r.Status != abi.StatusOK {
					t.Fatalf("status %d: %s", r.Status, r.Message)
				}
				if CurrentConfig().Len() != len(tt.cfg) {
					t.Errorf("current config has %d keys, want %d", CurrentConfig().Len(), len(tt.cfg))
				}
				return
			}
			if r.Status != abi.StatusError || !strings.Contains(r.Message, tt.wantMsg) {
				t.Fatalf("response %d %q, want an error saying %q", r.Status, r.Message, tt.wantMsg)
			}
			if v, ok := CurrentConfig().Lookup("previous"); !ok || v != "yes" {
				t.Error("a refused configuration replaced the current one")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
