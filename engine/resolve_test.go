package engine

import (
	"strings"
	"testing"
)

// TestResolveFQN: a bare name is in the engine's default namespace, whatever it is.
func TestResolveFQN(t *testing.T) {
	for _, tc := range []struct {
		ns, name, want, err string
	}{
		{DefaultNamespace, "x", DefaultNamespace + ".x", ""},
		{"fraud", "amount", "fraud.amount", ""},
		{"fraud", "Geo.City", "geo.city", ""},
		{"fraud", "amount+avg", "", "invalid selector"},
	} {
		e := New(nil, WithDefaultNamespace(tc.ns))
		got, err := e.ResolveFQN(tc.name)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ns %q: ResolveFQN(%q) = %q, %v; want %q, %q", tc.ns, tc.name, got, err, tc.want, tc.err)
		}
	}
}
