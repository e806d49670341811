package redis

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
)

func storageFeature(fqn string, p engine.Primitive) *engine.Feature {
	return &engine.Feature{FQN: fqn, Primitive: p, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

// TestStorageTTL checks the storage hash's expiry: the latest value's Expires (rounded up to
// the millisecond) when every value expires, none while one never does, updated by every
// commit (Set, Clear, Touch); expired values are deleted from the hash, and a hash left
// without live values is deleted, its version reading "" again.
func TestStorageTTL(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}))
	defer s.Close()
	ctx := t.Context()
	f := storageFeature("st.ttl", engine.PrimitiveInt)
	key := entityTag(f.FQN, "a") + sufStorage
	now := time.Now()
	expiresAt := func() time.Duration {
		t.Helper()
		at, err := s.c.PExpireTime(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	wantAt := func(want time.Time) {
		t.Helper()
		at := expiresAt()
		if at < 0 {
			t.Fatalf("%s has no expiry (%v), want %v", key, at, want)
		}
		got := time.UnixMilli(int64(at / time.Millisecond))
		if d := got.Sub(want); d <= 0 || d > time.Millisecond {
			t.Fatalf("%s expires at %v, want the millisecond after %v", key, got, want)
		}
	}
	commit := func(c engine.StorageCommit) string {
		t.Helper()
		v, _, err := s.CommitStorage(ctx, f, "a", c)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	in := func(d time.Duration) time.Time { return now.Add(d).Add(123456 * time.Nanosecond) }

	v := commit(engine.StorageCommit{Set: map[string]engine.StoredValue{
		"a": {Value: engine.Int(1), Expires: in(time.Hour)}, "b": {Value: engine.Int(2), Expires: in(2 * time.Hour)}}})
	wantAt(in(2 * time.Hour))
	// A value that never expires: no TTL.
	v = commit(engine.StorageCommit{Version: v, Set: map[string]engine.StoredValue{"c": {Value: engine.String("forever")}}})
	if at := expiresAt(); at != -1 {
		t.Fatalf("with a value that never expires, %s expires at %v, want none (-1)", key, at)
	}
	// Cleared again: the TTL is back, and Touch moves it, down too.
	v = commit(engine.StorageCommit{Version: v, Clear: []string{"c"}})
	wantAt(in(2 * time.Hour))
	v = commit(engine.StorageCommit{Version: v, Touch: map[string]time.Time{"b": in(30 * time.Minute), "c": in(5 * time.Hour)}})
	wantAt(in(time.Hour))
	// A value already expired is deleted from the hash, not only left out by LoadStorage.
	v = commit(engine.StorageCommit{Version: v, Set: map[string]engine.StoredValue{"old": {Value: engine.Int(3), Expires: now.Add(-time.Second)}}})
	if n, err := s.c.HLen(ctx, key).Result(); err != nil || n != 3 {
		t.Fatalf("the hash holds %d fields (%v), want a, b and the version", n, err)
	}
	snap, err := s.LoadStorage(ctx, f, "a", now)
	if err != nil || snap.Version != v || len(snap.Values) != 2 {
		t.Fatalf("LoadStorage = %+v, %v; want a and b at version %q", snap, err, v)
	}
	// Nothing live left: the key is gone and the version "" — a commit based on "" applies.
	if v = commit(engine.StorageCommit{Version: v, Clear: []string{"a", "b"}}); v != "" {
		t.Fatalf("the version after clearing everything is %q, want \"\"", v)
	}
	if n, err := s.c.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("%s exists (%d, %v) with no value left", key, n, err)
	}
	if v = commit(engine.StorageCommit{Version: "", Set: map[string]engine.StoredValue{"a": {Value: engine.Int(4)}}}); v == "" {
		t.Fatal("the version after a commit is \"\"")
	}
	if at := expiresAt(); at != -1 {
		t.Fatalf("%s expires at %v, want none", key, at)
	}
}

// TestStorageRefused checks that a commit whose write the script refuses (a window add that
// would overflow) or that Go refuses before it (out of window, wrong kind, conflict) applies
// neither the value nor the storage, and that errors name the call and the feature.
func TestStorageRefused(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}))
	defer s.Close()
	ctx := t.Context()
	f := storageFeature("st.win", engine.PrimitiveFloat)
	f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
	now := time.Now()
	v, _, err := s.CommitStorage(ctx, f, "a", engine.StorageCommit{Set: map[string]engine.StoredValue{"n": {Value: engine.Int(1)}},
		Write: &engine.StorageWrite{Value: engine.Float(math.MaxFloat64), Timestamp: now}})
	if err != nil {
		t.Fatal(err)
	}
	two := map[string]engine.StoredValue{"n": {Value: engine.Int(2)}}
	for _, tc := range []struct {
		name string
		c    engine.StorageCommit
		want error
	}{
		{"overflow", engine.StorageCommit{Version: v, Set: two, Write: &engine.StorageWrite{Value: engine.Float(math.MaxFloat64), Timestamp: now}}, engine.ErrOverflow},
		{"out of window", engine.StorageCommit{Version: v, Set: two, Write: &engine.StorageWrite{Value: engine.Float(1), Timestamp: now.Add(-3 * time.Hour)}}, engine.ErrOutOfWindow},
		{"not a number", engine.StorageCommit{Version: v, Set: two, Write: &engine.StorageWrite{Value: engine.String("x"), Timestamp: now}}, engine.ErrTypeMismatch},
		{"not finite", engine.StorageCommit{Version: v, Set: two, Write: &engine.StorageWrite{Value: engine.Float(math.Inf(1)), Timestamp: now}}, engine.ErrTypeMismatch},
		{"conflict", engine.StorageCommit{Version: "other", Set: two, Write: &engine.StorageWrite{Value: engine.Float(1), Timestamp: now}}, engine.ErrConflict},
		{"null value", engine.StorageCommit{Version: v, Set: map[string]engine.StoredValue{"n": {Value: engine.Null}}}, engine.ErrStorage},
	} {
		_, _, err := s.CommitStorage(ctx, f, "a", tc.c)
		if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "redis: commit storage st.win: ") {
			t.Errorf("%s: %v, want redis: commit storage st.win: …%v", tc.name, err, tc.want)
		}
	}
	snap, err := s.LoadStorage(ctx, f, "a", now)
	if err != nil || snap.Version != v || !snap.Values["n"].Value.Equal(engine.Int(1)) {
		t.Fatalf("after refused commits: %+v, %v; want n = 1 at version %q", snap, err, v)
	}
	span := engine.AliveSpan(time.Now(), f.Staleness, f.Granularity)
	if b, err := s.WindowAggregate(ctx, f, "a", span); err != nil || b.Count != 1 || b.Sum != math.MaxFloat64 {
		t.Fatalf("the window after refused commits: %+v, %v; want the first add alone", b, err)
	}
	// A corrupt field fails the load, with the call and the name.
	if err := s.c.HSet(ctx, entityTag(f.FQN, "a")+sufStorage, "bad", "z").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadStorage(ctx, f, "a", now); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), `load storage st.win: storage "bad"`) {
		t.Fatalf("LoadStorage of a corrupt field: %v", err)
	}
}

// TestStoredCodec checks packStored's round trip, expiries at the ends of the int64 range
// included, and that a field is laid out as the commit script reads it.
func TestStoredCodec(t *testing.T) {
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in, want engine.StoredValue
	}{
		{engine.StoredValue{Value: engine.Int(-7)}, engine.StoredValue{Value: engine.Int(-7)}},
		{engine.StoredValue{Value: engine.StringList([]string{"a", ""}), Expires: time.Unix(0, 1)}, engine.StoredValue{Value: engine.StringList([]string{"a", ""}), Expires: time.Unix(0, 1)}},
		{engine.StoredValue{Value: engine.Bool(true), Expires: time.Unix(-5, 3)}, engine.StoredValue{Value: engine.Bool(true), Expires: time.Unix(-5, 3)}},
		{engine.StoredValue{Value: engine.Float(0.5), Expires: far}, engine.StoredValue{Value: engine.Float(0.5)}}, // past int64 ns: never
		{engine.StoredValue{Value: engine.Float(0.5), Expires: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}, engine.StoredValue{Value: engine.Float(0.5), Expires: time.Unix(0, math.MinInt64)}},
	} {
		packed, err := packStored(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if packed[0] != kindByte(engine.Primitive(tc.in.Value.Kind()))[0] || (tc.want.Expires.IsZero()) != (packed[1:17] == neverHex) {
			t.Errorf("%+v packed as %q", tc.in, packed)
		}
		got, err := unpackStored(packed)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Value.Equal(tc.want.Value) || !got.Expires.Equal(tc.want.Expires) {
			t.Errorf("%+v: round trip %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if expiryHex(time.Unix(0, 1)) <= expiryHex(time.Unix(0, 0)) || expiryHex(time.Unix(0, 0)) <= expiryHex(time.Unix(-1, 0)) {
		t.Error("expiries do not sort as the times do")
	}
	for _, bad := range []string{"", "a", "`0000000000000000", "a000000000000000g1", "a0000000000000000x"} {
		if _, err := unpackStored(bad); !errors.Is(err, errCorrupt) {
			t.Errorf("unpackStored(%q): %v, want errCorrupt", bad, err)
		}
	}
}
