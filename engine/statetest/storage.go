package statetest

import (
	"errors"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// storageState returns the State as an engine.StorageState, skipping the subtest when it
// keeps no program storage.
func (e *env) storageState() engine.StorageState {
	s, ok := e.st.(engine.StorageState)
	if !ok {
		e.Skip("the State keeps no program storage (engine.StorageState)")
	}
	return s
}

func (e *env) load(s engine.StorageState, f *engine.Feature, keys string, now time.Time) engine.StorageSnapshot {
	e.Helper()
	snap, err := s.LoadStorage(e.ctx, f, keys, now)
	if err != nil {
		e.Fatalf("LoadStorage(%s, %q): %v", f.FQN, keys, err)
	}
	return snap
}

func (e *env) commit(s engine.StorageState, f *engine.Feature, keys string, c engine.StorageCommit) (string, engine.Written) {
	e.Helper()
	v, w, err := s.CommitStorage(e.ctx, f, keys, c)
	if err != nil {
		e.Fatalf("CommitStorage(%s, %q): %v", f.FQN, keys, err)
	}
	return v, w
}

// wantStorage checks an address's values as loaded.
func (e *env) wantStorage(snap engine.StorageSnapshot, want map[string]engine.Value) {
	e.Helper()
	if len(snap.Values) != len(want) {
		e.Fatalf("storage holds %d values (%v), want %d (%v)", len(snap.Values), snap.Values, len(want), want)
	}
	for name, v := range want {
		got, ok := snap.Values[name]
		if !ok || !got.Value.Equal(v) {
			e.Fatalf("storage %q = %v (%v), want %v", name, got.Value, ok, v)
		}
	}
}

// testStorage: an address starts empty with version ""; a commit sets, clears and re-times
// values and moves the version; a commit based on an older version is ErrConflict and
// applies nothing; values are typed round trips; expired values are left out; addresses
// (features, entities) are independent; Drop removes a feature's storage.
func testStorage(e *env) {
	s := e.storageState()
	f := e.feature("storage", engine.PrimitiveInt)
	g := e.feature("storage_other", engine.PrimitiveInt)
	k, k2 := e.keys(f, "a"), e.keys(f, "b")
	now := time.Now()

	snap := e.load(s, f, k, now)
	if snap.Version != "" || len(snap.Values) != 0 {
		e.Fatalf("a new address: %+v, want no values and version \"\"", snap)
	}
	values := map[string]engine.Value{
		"n": engine.Int(-1 << 62), "x": engine.Float(2.5), "s": engine.String("a\x00b\u00e9"), "b": engine.Bool(true),
		"t": engine.Timestamp(now.Add(-time.Hour).Round(0)), "l": engine.StringList([]string{"x", "", "y"}),
	}
	set := map[string]engine.StoredValue{}
	for name, v := range values {
		set[name] = engine.StoredValue{Value: v}
	}
	set["soon"] = engine.StoredValue{Value: engine.Int(7), Expires: now.Add(time.Hour)}
	v1, _ := e.commit(s, f, k, engine.StorageCommit{Version: "", Set: set})
	if v1 == "" {
		e.Fatal("the version after a commit is \"\"")
	}
	snap = e.load(s, f, k, now)
	if snap.Version != v1 {
		e.Fatalf("version %q, want %q", snap.Version, v1)
	}
	want := map[string]engine.Value{"soon": engine.Int(7)}
	for name, v := range values {
		want[name] = v
	}
	e.wantStorage(snap, want)
	if exp := snap.Values["soon"].Expires; !exp.Equal(now.Add(time.Hour)) {
		e.Fatalf("soon expires %v, want %v", exp, now.Add(time.Hour))
	}
	// Past its expiry, a value is left out.
	e.wantStorage(e.load(s, f, k, now.Add(2*time.Hour)), values)

	// Other addresses are untouched.
	e.wantStorage(e.load(s, f, k2, now), nil)
	e.wantStorage(e.load(s, g, k, now), nil)

	// A stale version: ErrConflict, nothing applied.
	_, _, err := s.CommitStorage(e.ctx, f, k, engine.StorageCommit{Version: "", Clear: []string{"n"}})
	if !errors.Is(err, engine.ErrConflict) {
		e.Fatalf("a commit on an old version: %v, want ErrConflict", err)
	}
	e.wantStorage(e.load(s, f, k, now), want)

	// Clear and Touch.
	v2, _ := e.commit(s, f, k, engine.StorageCommit{Version: v1, Clear: []string{"n", "x", "s", "b", "l"},
		Touch: map[string]time.Time{"soon": now.Add(3 * time.Hour), "t": now.Add(time.Minute), "gone": now.Add(time.Hour)}})
	if v2 == v1 || v2 == "" {
		e.Fatalf("version after a second commit %q (first %q)", v2, v1)
	}
	snap = e.load(s, f, k, now.Add(2*time.Hour))
	e.wantStorage(snap, map[string]engine.Value{"soon": engine.Int(7)}) // t expired after a minute; "gone" was never set
	if exp := snap.Values["soon"].Expires; !exp.Equal(now.Add(3 * time.Hour)) {
		e.Fatalf("soon expires %v after Touch, want %v", exp, now.Add(3*time.Hour))
	}

	// Drop removes the storage.
	if err := e.st.Drop(e.ctx, f); err != nil {
		e.Fatal(err)
	}
	snap = e.load(s, f, k, now)
	if len(snap.Values) != 0 {
		e.Fatalf("after Drop: %v", snap.Values)
	}
}

// testStorageWrite: a commit's value write applies as Update does — a scalar Set (and its
// event-time order), a list Append, a window add — in the same step as the storage; a write
// the State refuses applies neither.
func testStorageWrite(e *env) {
	s := e.storageState()
	ts := e.now.Add(-time.Minute)
	scalar := e.feature("storage_scalar", engine.PrimitiveFloat)
	list := e.feature("storage_list", engine.PrimitiveIntList)
	win := e.feature("storage_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour))
	k := e.keys(scalar, "a")
	one := map[string]engine.StoredValue{"c": {Value: engine.Int(1)}}

	v, w := e.commit(s, scalar, k, engine.StorageCommit{Set: one, Write: &engine.StorageWrite{Value: engine.Float(1.5), Timestamp: ts}})
	if w.Superseded || !w.Value.Equal(engine.Float(1.5)) {
		e.Fatalf("the write's report: %+v", w)
	}
	e.wantGet(scalar, k, 0, engine.Float(1.5), ts)
	// A late write is superseded, and the storage still committed.
	v, w = e.commit(s, scalar, k, engine.StorageCommit{Version: v, Set: map[string]engine.StoredValue{"c": {Value: engine.Int(2)}},
		Write: &engine.StorageWrite{Value: engine.Float(0.5), Timestamp: ts.Add(-time.Second)}})
	if !w.Superseded {
		e.Fatalf("a late write: %+v, want superseded", w)
	}
	e.wantGet(scalar, k, 0, engine.Float(1.5), ts)
	e.wantStorage(e.load(s, scalar, k, time.Now()), map[string]engine.Value{"c": engine.Int(2)})
	// A write the State refuses (the wrong type): neither the value nor the storage.
	if _, _, err := s.CommitStorage(e.ctx, scalar, k, engine.StorageCommit{Version: v, Set: map[string]engine.StoredValue{"c": {Value: engine.Int(3)}},
		Write: &engine.StorageWrite{Value: engine.String("no"), Timestamp: ts.Add(time.Second)}}); err == nil {
		e.Fatal("a write of the wrong type committed")
	}
	e.wantGet(scalar, k, 0, engine.Float(1.5), ts)
	e.wantStorage(e.load(s, scalar, k, time.Now()), map[string]engine.Value{"c": engine.Int(2)})

	kl := e.keys(list, "a")
	lv, _ := e.commit(s, list, kl, engine.StorageCommit{Set: one, Write: &engine.StorageWrite{Value: engine.IntList([]int64{1, 2}), Timestamp: ts}})
	_, w = e.commit(s, list, kl, engine.StorageCommit{Version: lv, Write: &engine.StorageWrite{Value: engine.IntList([]int64{3}), Timestamp: ts}})
	if !w.Value.Equal(engine.IntList([]int64{1, 2, 3})) {
		e.Fatalf("the list after two committed appends: %v", w.Value)
	}

	kw := e.keys(win, "a")
	wv, _ := e.commit(s, win, kw, engine.StorageCommit{Set: one, Write: &engine.StorageWrite{Value: engine.Float(2), Timestamp: ts}})
	e.commit(s, win, kw, engine.StorageCommit{Version: wv, Write: &engine.StorageWrite{Value: engine.Float(3), Timestamp: ts}})
	span := engine.AliveSpan(time.Now(), win.Staleness, win.Granularity)
	if b := engine.MergeBuckets(e.buckets(win, kw, span), span); b.Count != 2 || b.Sum != 5 {
		e.Fatalf("the window after two committed adds: %+v", b)
	}
}

// testStorageConcurrentCommits: of commits racing on one version, exactly one applies; the
// others are ErrConflict.
func testStorageConcurrentCommits(e *env) {
	s := e.storageState()
	f := e.feature("storage_race", engine.PrimitiveInt)
	k := e.keys(f, "a")
	base, _ := e.commit(s, f, k, engine.StorageCommit{Set: map[string]engine.StoredValue{"n": {Value: engine.Int(0)}}})
	const n = 8
	var mu sync.Mutex
	won, conflicts := 0, 0
	parallel(func(w int) {
		if w >= n {
			return
		}
		_, _, err := s.CommitStorage(e.ctx, f, k, engine.StorageCommit{Version: base, Set: map[string]engine.StoredValue{"n": {Value: engine.Int(int64(w + 1))}},
			Write: &engine.StorageWrite{Value: engine.Int(int64(w + 1)), Timestamp: e.now}})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			won++
		case errors.Is(err, engine.ErrConflict):
			conflicts++
		default:
			e.Errorf("commit %d: %v", w, err)
		}
	})
	if won != 1 {
		e.Fatalf("%d of the racing commits applied (%d conflicts), want exactly 1", won, conflicts)
	}
	snap := e.load(s, f, k, time.Now())
	got := snap.Values["n"].Value
	e.wantGet(f, k, 0, got, e.now) // the winner's value and its storage, together
}
