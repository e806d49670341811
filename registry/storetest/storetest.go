// Package storetest is the conformance suite of registry.Store implementations: every
// store passes the same table of cases (Run), and a registry.SharedStore also the cases of
// its versions and change notifications.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/registry"
)

// Harness makes and inspects the Store under test.
type Harness struct {
	// New returns an empty Store for t (closed by t's cleanup, if it needs closing).
	New func(t *testing.T) registry.Store
	// Modules counts the module blobs the Store holds.
	Modules func(t *testing.T, s registry.Store) int
	// Corrupt overwrites the stored bytes of the module ref.
	Corrupt func(t *testing.T, s registry.Store, ref string)
}

var (
	modA  = []byte("\x00asm module a")
	modB  = []byte("\x00asm module b")
	docF  = []byte("apiVersion: osprey.dev/v1alpha1\nkind: Feature\n")
	docDS = []byte("apiVersion: osprey.dev/v1alpha1\nkind: DataSource\n")
	docP  = []byte("apiVersion: osprey.dev/v1alpha1\nkind: Plugin\n")
	docE  = []byte("apiVersion: osprey.dev/v1alpha1\nkind: Egress\n")
)

func ref(b []byte) string { return moduleref.Of(b) }

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	t.Run("save load replace delete", func(t *testing.T) {
		s := h.New(t)
		for _, o := range []struct {
			kind, fqn string
			doc       []byte
			mods      map[string][]byte
		}{
			{"Feature", "ns.f", docF, map[string][]byte{ref(modA): modA, ref(modB): modB}},
			{"Egress", "ns.out", docE, nil},
			{"DataSource", "ns.src", docDS, nil},
			{"Feature", "ns.g", docF, map[string][]byte{ref(modA): modA}},
			{"Plugin", "ns.p", docP, map[string][]byte{ref(modB): modB}},
		} {
			if err := s.Save(ctx, o.kind, o.fqn, o.doc, o.mods); err != nil {
				t.Fatal(err)
			}
		}
		objs, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, o := range objs {
			order = append(order, o.Kind+" "+o.FQN)
			if o.Err != nil {
				t.Errorf("%s %s: %v", o.Kind, o.FQN, o.Err)
			}
		}
		// In the order of registry.Kinds: data sources, plugins, egresses, features.
		if !reflect.DeepEqual(order, []string{"DataSource ns.src", "Plugin ns.p", "Egress ns.out", "Feature ns.f", "Feature ns.g"}) {
			t.Fatalf("Load order = %v", order)
		}
		if e := objs[2]; !bytes.HasSuffix(e.Manifest, docE) || len(e.Modules) != 0 {
			t.Fatalf("Load = %+v", e)
		}
		if err := s.Delete(ctx, "Plugin", "ns.p"); err != nil {
			t.Fatal(err)
		}
		f := objs[3]
		if !bytes.HasSuffix(f.Manifest, docF) || len(f.Modules) != 2 || !bytes.Equal(f.Modules[ref(modB)], modB) {
			t.Fatalf("Load = %+v", f)
		}
		if n := h.Modules(t, s); n != 2 {
			t.Fatalf("%d modules stored, want 2 (each once)", n)
		}
		// Replacing f drops module b, which no object names any more.
		if err := s.Save(ctx, "Feature", "ns.f", docF, map[string][]byte{ref(modA): modA}); err != nil {
			t.Fatal(err)
		}
		if n := h.Modules(t, s); n != 1 {
			t.Fatalf("%d modules after the replace, want 1", n)
		}
		// Deleting both users drops module a; deleting twice is fine.
		for _, fqn := range []string{"ns.f", "ns.g", "ns.g"} {
			if err := s.Delete(ctx, "Feature", fqn); err != nil {
				t.Fatal(err)
			}
		}
		if n := h.Modules(t, s); n != 0 {
			t.Fatalf("%d modules after the deletes, want 0", n)
		}
		if objs, err := s.Load(ctx); err != nil || len(objs) != 2 {
			t.Fatalf("Load after deletes = %d objects, %v", len(objs), err)
		}
	})
	t.Run("rejects", func(t *testing.T) {
		s := h.New(t)
		mod := []byte("module")
		tests := []struct {
			name string
			call func() error
		}{
			{"bad kind", func() error { return s.Save(ctx, "Model", "ns.f", nil, nil) }},
			{"path traversal", func() error { return s.Save(ctx, "Feature", "../../etc", nil, nil) }},
			{"upper case", func() error { return s.Save(ctx, "Feature", "NS.f", nil, nil) }},
			{"bad reference", func() error { return s.Save(ctx, "Feature", "ns.f", nil, map[string][]byte{"mod.wasm": mod}) }},
			{"digest mismatch", func() error { return s.Save(ctx, "Feature", "ns.f", nil, map[string][]byte{ref([]byte("other")): mod}) }},
			{"delete bad kind", func() error { return s.Delete(ctx, "Model", "ns.f") }},
		}
		for _, tc := range tests {
			if err := tc.call(); err == nil {
				t.Errorf("%s: accepted", tc.name)
			}
		}
		if objs, err := s.Load(ctx); err != nil || len(objs) != 0 {
			t.Errorf("rejected saves stored %d objects (%v)", len(objs), err)
		}
	})
	t.Run("corrupt module", func(t *testing.T) {
		s := h.New(t)
		mod := []byte("module")
		if err := s.Save(ctx, "Feature", "ns.f", []byte("x: 1\n"), map[string][]byte{ref(mod): mod}); err != nil {
			t.Fatal(err)
		}
		h.Corrupt(t, s, ref(mod))
		objs, err := s.Load(ctx)
		if err != nil || len(objs) != 1 || objs[0].Err == nil || !bytes.Contains([]byte(objs[0].Err.Error()), []byte("corrupt")) {
			t.Fatalf("Load of a corrupt module: %v, %+v", err, objs)
		}
	})
	t.Run("shared", func(t *testing.T) {
		s, ok := h.New(t).(registry.SharedStore)
		if !ok {
			t.Skip("not a registry.SharedStore")
		}
		runShared(t, s)
	})
}

func runShared(t *testing.T, s registry.SharedStore) {
	ctx := context.Background()
	key := registry.Key{Kind: "Feature", FQN: "ns.f"}
	v1, err := s.SaveVersion(ctx, key.Kind, key.FQN, docF, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	// Conditions that do not hold change nothing.
	tests := []struct {
		name string
		call func() error
	}{
		{"create over a stored object", func() error { _, err := s.SaveVersion(ctx, key.Kind, key.FQN, docDS, nil, ""); return err }},
		{"save at a stale version", func() error { _, err := s.SaveVersion(ctx, key.Kind, key.FQN, docDS, nil, v1+"0"); return err }},
		{"delete at a stale version", func() error { return s.DeleteVersion(ctx, key.Kind, key.FQN, v1+"0") }},
		{"delete a missing object at a version", func() error { return s.DeleteVersion(ctx, "Feature", "ns.none", v1) }},
	}
	for _, tc := range tests {
		if err := tc.call(); !errors.Is(err, registry.ErrConflict) {
			t.Errorf("%s: %v, want ErrConflict", tc.name, err)
		}
	}
	o, ok, err := s.LoadObject(ctx, key.Kind, key.FQN)
	if err != nil || !ok || !bytes.Equal(o.Manifest, docF) || o.Version != v1 {
		t.Fatalf("LoadObject = %+v, %v, %v; want the first save at %s", o, ok, err, v1)
	}
	v2, err := s.SaveVersion(ctx, key.Kind, key.FQN, docDS, nil, v1)
	if err != nil || v2 == v1 {
		t.Fatalf("SaveVersion at the current version: %q, %v", v2, err)
	}
	if vs, err := s.Versions(ctx); err != nil || !reflect.DeepEqual(vs, map[registry.Key]string{key: v2}) {
		t.Fatalf("Versions = %v, %v", vs, err)
	}
	if err := s.DeleteVersion(ctx, key.Kind, key.FQN, v2); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LoadObject(ctx, key.Kind, key.FQN); ok || err != nil {
		t.Fatalf("LoadObject after delete: %v, %v", ok, err)
	}
	// A re-created object gets a version never used before: a replica holding v1 or v2
	// cannot overwrite it.
	if v3, err := s.SaveVersion(ctx, key.Kind, key.FQN, docF, nil, ""); err != nil || v3 == v1 || v3 == v2 {
		t.Fatalf("re-create: %q, %v", v3, err)
	}

	// Concurrent saves of one object at one version: exactly one wins.
	const n = 8
	cur, _, _ := s.LoadObject(ctx, key.Kind, key.FQN)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			doc := append(bytes.Clone(docF), byte('a'+i))
			_, errs[i] = s.SaveVersion(ctx, key.Kind, key.FQN, doc, nil, cur.Version)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, registry.ErrConflict):
			t.Errorf("a concurrent save: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent saves won, want 1", won)
	}

	// Every write is announced (a hint: wait for it with a generous bound).
	notified := registry.Key{Kind: "DataSource", FQN: "ns.notified"}
	if err := s.Save(ctx, notified.Kind, notified.FQN, docDS, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case k, ok := <-s.Changes():
			if !ok {
				t.Fatal("Changes closed")
			}
			if k == notified {
				return
			}
		case <-deadline:
			t.Fatal("no change notification within 10 s")
		}
	}
}
