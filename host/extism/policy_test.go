package extism_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/host/extism"
)

func TestPolicyCheck(t *testing.T) {
	p := extism.DefaultPolicy
	p.AllowedHosts = []string{"api.example.com", "*.geo.example.net"}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	tests := []struct {
		name    string
		spec    extism.Spec
		wantErr string // "" for none
		denied  bool
	}{
		{"defaults", extism.Spec{Name: "p", Module: mod}, "", false},
		{"exact host", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"api.example.com"}}, "", false},
		{"host under a policy glob", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"eu.geo.example.net"}}, "", false},
		{"the policy glob itself", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"*.geo.example.net"}}, "", false},
		{"a wider glob than allowed", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"*.example.net"}}, "spec.allowedHosts[0]", true},
		{"a host not allowed", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"api.example.com", "evil.test"}}, "spec.allowedHosts[1]", true},
		{"everything", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"*"}}, "spec.allowedHosts[0]", true},
		{"a URL, not a host", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"http://api.example.com"}}, "not a host name", false},
		{"a host with a port", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"api.example.com:443"}}, "not a host name", false},
		{"a bad pattern", extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"[a-"}}, "not a valid pattern", false},
		{"timeout beyond the ceiling", extism.Spec{Name: "p", Module: mod, Limits: extism.Limits{Timeout: time.Minute}}, "spec.limits.timeout", true},
		{"memory beyond the ceiling", extism.Spec{Name: "p", Module: mod, Limits: extism.Limits{MemoryPages: 1 << 16}}, "spec.limits.memoryPages", true},
		{"responses beyond the ceiling", extism.Spec{Name: "p", Module: mod, Limits: extism.Limits{MaxHTTPResponseBytes: 1 << 30}}, "spec.limits.httpResponseBytes", true},
		{"output beyond the ceiling", extism.Spec{Name: "p", Module: mod, Limits: extism.Limits{MaxOutputBytes: 1 << 30}}, "spec.limits.outputBytes", true},
		{"negative", extism.Spec{Name: "p", Module: mod, Limits: extism.Limits{Timeout: -time.Second}}, "negative", false},
		{"no module", extism.Spec{Name: "p"}, "spec.module", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check = %v, want an error naming %q", err, tc.wantErr)
			}
			if errors.Is(err, extism.ErrDenied) != tc.denied {
				t.Fatalf("Check = %v: ErrDenied %v, want %v", err, errors.Is(err, extism.ErrDenied), tc.denied)
			}
		})
	}
	none := extism.DefaultPolicy
	if err := none.Check(extism.Spec{Name: "p", Module: mod, AllowedHosts: []string{"api.example.com"}}); !errors.Is(err, extism.ErrDenied) ||
		!strings.Contains(err.Error(), "--plugin-allowed-hosts") {
		t.Fatalf("with no hosts allowed: %v", err)
	}
}
