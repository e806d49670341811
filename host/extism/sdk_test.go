package extism_test

import (
	"bytes"
	"strings"
	"testing"

	sdk "github.com/extism/go-sdk"

	"github.com/osprey-ml/osprey/host/extism"
)

// TestMatchesSDK: the host's kernel ABI gives the plugins the outputs and errors the Extism
// SDK (go-sdk v1.7.1, a test-only dependency) gives them, call by call.
func TestMatchesSDK(t *testing.T) {
	validateIn := func(v string) string {
		return `{"version":1,"feature":"payments.amount","keys":{"account_id":"a1"},"op":"set","stage":"preSet","value":` + v +
			`,"timestamp":"2026-12-01T10:00:00Z","config":{"max":"10000"}}`
	}
	tests := []struct {
		file, fn string
		config   map[string]string
		inputs   []string
	}{
		{"testdata/echo.wasm", "echo", nil, []string{"", "x", "12345678", `{"a":"` + strings.Repeat("é", 100) + `"}`}},
		{"testdata/fail.wasm", "fail", nil, []string{"", "{}"}},
		{"../../examples/plugins/mask/mask.wasm", "encode", map[string]string{"mask_char": "#"}, []string{
			`{"version":1,"feature":"user.email","primitive":"string","value":"alice@example.com","config":{}}`,
			`{"version":1,"primitive":"string","value":"bob@example.org","config":{"mask_char":"*"}}`,
			`{"version":2,"primitive":"string","value":"x"}`,
			`not json`,
		}},
		{"../../examples/plugins/validate/validate.wasm", "handle", nil, []string{validateIn("-5"), validateIn("25000"), validateIn("2500"), validateIn(`"text"`), `[]`}},
	}
	for _, tc := range tests {
		wasm := module(t, tc.file)
		ref, err := sdk.NewPlugin(ctx, sdk.Manifest{Wasm: []sdk.Wasm{sdk.WasmData{Data: wasm}}, Config: tc.config, Timeout: 1000}, sdk.PluginConfig{EnableWasi: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ref.Close(ctx)
		pl := load(t, extism.DefaultPolicy, extism.Spec{Name: "p", Module: wasm, Config: tc.config})
		for _, in := range tc.inputs {
			rc, want, wantErr := ref.CallWithContext(ctx, tc.fn, []byte(in))
			got, err := pl.Call(ctx, tc.fn, []byte(in))
			switch {
			case wantErr == nil && rc == 0:
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s(%q) = %q, %v; the SDK: %q", tc.fn, in, got, err, want)
				}
			case err == nil:
				t.Errorf("%s(%q) = %q; the SDK: rc %d, %v", tc.fn, in, got, rc, wantErr)
			case wantErr != nil && !strings.Contains(err.Error(), firstLine(wantErr.Error())):
				t.Errorf("%s(%q): %v; the SDK: rc %d, %v", tc.fn, in, err, rc, wantErr)
			default:
				t.Logf("%s(%q): %v; the SDK: rc %d, %v", tc.fn, in, err, rc, firstLine(wantErr.Error()))
			}
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSuffix(s, " (recovered by wazero)")
}
