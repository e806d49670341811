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

// TestDescriptorsAreCopies: what Features, FeatureDescriptor and DataSources return belongs
// to the caller: changing it changes nothing applied.
func TestDescriptorsAreCopies(t *testing.T) {
	e := New(nil)
	f := &Feature{FQN: "t.x", Primitive: PrimitiveInt, Freshness: 1, Staleness: 2, Timeout: 3,
		Keys: []string{"id"}, Builder: Builder{Kind: BuilderSourceless}}
	if err := e.Apply(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	e.Features()[0].Keys[0] = "changed"
	d, err := e.FeatureDescriptor(t.Context(), "t.x")
	if err != nil || d.Keys[0] != "id" {
		t.Fatalf("after changing a copy: %v, %v", d, err)
	}
	d.Keys[0] = "changed"
	if fqn, timeout, err := e.Resolve("t.x"); err != nil || fqn != "t.x" || timeout != 3 {
		t.Fatalf("Resolve = %s, %v, %v", fqn, timeout, err)
	}
	if e.Features()[0].Keys[0] != "id" {
		t.Fatal("a FeatureDescriptor copy changed the applied feature")
	}
}
