package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/statetest"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins"
)

func TestConformanceStandalone(t *testing.T) {
	srv := redistest.Standalone(t)
	statetest.Run(t, func(*testing.T) engine.State {
		return New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true}))
	})
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Cluster")
	}
	c := redistest.NewCluster(t, 3)
	statetest.Run(t, func(*testing.T) engine.State {
		return New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true}))
	})
}

// TestClusterSlots checks that every key of one entity hashes to one slot, whatever the
// encoded keys contain.
func TestClusterSlots(t *testing.T) {
	for _, keys := range []string{"a", "}", "x}y", "{z}", `a\;b;c`, ""} {
		tag := entityTag("ns.f", keys)
		want := slotOf(tag + sufValue)
		for _, suf := range []string{sufPrev, sufWindow, sufScratch, sufStorage} {
			if got := slotOf(tag + suf); got != want {
				t.Errorf("keys %q: %s under tag %q, %s under %q", keys, sufValue, want, suf, got)
			}
		}
	}
}

// slotOf is the Cluster hash tag rule: the text between the first '{' and the next '}',
// when non-empty, else the whole key (the slot number itself is CRC16 of that text).
func slotOf(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestClusterDrop checks that Drop reaches keys on every master, storage hashes (:s)
// included, and removes only its feature's.
func TestClusterDrop(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Cluster")
	}
	c := redistest.NewCluster(t, 3)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs()}))
	defer s.Close()
	ctx := t.Context()
	f := &engine.Feature{FQN: "drop.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	other := *f
	other.FQN = "drop.f2"
	const n = 300
	for i := range n {
		k := "e" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if _, err := s.Set(ctx, f, k, engine.Int(int64(i)), time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Set(ctx, &other, k, engine.Int(int64(i)), time.Now()); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // and storage, beside the value (one more key) or with it
			c := engine.StorageCommit{Set: map[string]engine.StoredValue{"n": {Value: engine.Int(int64(i))}}}
			if i%2 == 0 {
				c.Write = &engine.StorageWrite{Value: engine.Int(int64(i)), Timestamp: time.Now()}
			}
			if _, _, err := s.CommitStorage(ctx, f, k, c); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.CommitStorage(ctx, &other, k, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	const stored = (n + 2) / 3
	perNode := map[string]int64{}
	count := func() int64 {
		var total int64
		for _, node := range c.Nodes {
			out, err := node.CLI("dbsize")
			if err != nil {
				t.Fatal(err)
			}
			k, err := strconv.ParseInt(out, 10, 64)
			if err != nil {
				t.Fatalf("dbsize: %q", out)
			}
			perNode[node.Addr()] = k
			total += k
		}
		return total
	}
	if got := count(); got != 2*(n+stored) {
		t.Fatalf("%d keys before Drop, want %d", got, 2*(n+stored))
	}
	for addr, k := range perNode {
		if k == 0 {
			t.Errorf("master %s holds no key: the test does not reach every master", addr)
		}
	}
	if err := s.Drop(ctx, f); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != n+stored {
		t.Fatalf("%d keys after Drop, want the other feature's %d", got, n+stored)
	}
}

// TestSentinel connects through the Sentinels by master name, as master-name configures.
func TestSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no Sentinel")
	}
	st := redistest.NewSentinel(t)
	s, err := newFromConfig(t.Context(), plugins.Config{"addrs": strings.Join(st.SentinelAddrs(), ";"), "master-name": redistest.MasterName})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := &engine.Feature{FQN: "sentinel.f", Primitive: engine.PrimitiveString, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	ts := time.Now()
	if _, err := s.Set(t.Context(), f, "a", engine.String("x"), ts); err != nil {
		t.Fatal(err)
	}
	if out, err := st.Master.CLI("get", entityTag(f.FQN, "a")+sufValue); err != nil || !strings.HasSuffix(out, "x") {
		t.Fatalf("the master holds %q (%v), want the value written", out, err)
	}
	v, got, found, err := s.Get(t.Context(), f, "a", 0)
	if err != nil || !found || v.Str() != "x" || !got.Equal(ts) {
		t.Fatalf("Get = %v at %v, found %v, %v", v, got, found, err)
	}
}

// TestUnavailable stops the server and checks that calls fail fast with an error the
// server maps to Unavailable (a net.Error or ECONNREFUSED, as server/errors.go checks),
// and that the State serves again once the server is back.
func TestUnavailable(t *testing.T) {
	srv := redistest.Standalone(t)
	st, err := newFromConfig(t.Context(), plugins.Config{"addrs": srv.Addr()}) // the defaults osprey serve runs with
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*State)
	defer s.Close()
	f := &engine.Feature{FQN: "down.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	kept := &engine.Feature{FQN: "down.kept", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		KeepPrevious: &engine.KeepPrevious{Versions: 2, Over: time.Hour}}
	ctx := t.Context()
	if _, err := s.Set(ctx, f, "a", engine.Int(1), time.Now()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	calls := []struct {
		name    string
		timeout time.Duration
		fn      func(context.Context) error
	}{
		{"Get", 2 * time.Second, func(ctx context.Context) error { _, _, _, err := s.Get(ctx, f, "a", 0); return err }},
		// A deadline shorter than go-redis's dial retries still ends with the dial's error.
		{"Get within 50ms", 50 * time.Millisecond, func(ctx context.Context) error { _, _, _, err := s.Get(ctx, f, "a", 0); return err }},
		{"Set", 2 * time.Second, func(ctx context.Context) error { _, err := s.Set(ctx, f, "a", engine.Int(2), time.Now()); return err }},
		{"Incr", 2 * time.Second, func(ctx context.Context) error { _, err := s.Incr(ctx, f, "a", engine.Int(2), time.Now()); return err }},
		{"Ping", 2 * time.Second, s.Ping},
		{"Drop", 2 * time.Second, func(ctx context.Context) error { return s.Drop(ctx, f) }},
		// A batch of current values is one MGET; with a previous version it is a pipeline.
		{"ReadBatch MGET", 2 * time.Second, func(ctx context.Context) error {
			return batchErr(s.ReadBatch(ctx, []engine.Read{{Feature: f, Keys: "a"}, {Feature: f, Keys: "b"}}))
		}},
		{"ReadBatch pipeline", 2 * time.Second, func(ctx context.Context) error {
			return batchErr(s.ReadBatch(ctx, []engine.Read{{Feature: f, Keys: "a"}, {Feature: kept, Keys: "a", Version: 1}}))
		}},
		{"WriteBatch", 2 * time.Second, func(ctx context.Context) error {
			w := engine.Write{Op: engine.OpSet, Feature: f, Keys: "a", Value: engine.Int(3), Timestamp: time.Now()}
			out := s.WriteBatch(ctx, []engine.Write{w, w, w})
			for i, r := range out {
				if r.Err == nil {
					return fmt.Errorf("write %d of %d succeeded with the server stopped", i, len(out))
				}
			}
			return out[len(out)-1].Err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			start := time.Now()
			err := c.fn(ctx)
			if err == nil {
				t.Fatal("succeeded with the server stopped")
			}
			t.Logf("%v", err)
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("took %v to fail", d)
			}
			// context.DeadlineExceeded is a net.Error too, but the server answers it as
			// DeadlineExceeded: a stopped server must be reported as such, not as a timeout.
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
				(!errors.As(err, &ne) && !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET)) {
				t.Errorf("err = %v, want a net.Error or ECONNREFUSED and no context error (Unavailable)", err)
			}
		})
	}
	srv.Start()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, _, _, err := s.Get(ctx, f, "a", 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving 2 s after the server came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWriteBatchAfterScriptFlush: a server that lost its scripts (SCRIPT FLUSH, a restart)
// answers a batch's EVALSHAs with NOSCRIPT, runs none of them, and the batch sends them again
// with EVAL, in order: every write is made once.
func TestWriteBatchAfterScriptFlush(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}))
	defer s.Close()
	ctx := t.Context()
	f := &engine.Feature{FQN: "flush.n", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	incr := engine.Write{Op: engine.OpIncr, Feature: f, Keys: "a", Value: engine.Int(1), Timestamp: time.Now()}
	for round := range 2 {
		if err := s.c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for i, r := range s.WriteBatch(ctx, []engine.Write{incr, incr, incr}) {
			if want := int64(3*round + i + 1); r.Err != nil || r.Written.Value.Int() != want {
				t.Errorf("round %d, incr %d = %v, %v; want %d", round, i, r.Written.Value, r.Err, want)
			}
		}
	}

	// Only the set script loaded again (by another client, say): the batch's incr of b
	// answers NOSCRIPT, its later set of b runs. Sent again, the incr would land after the
	// set; it fails instead, and b holds what the set wrote.
	if err := s.c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ts := time.Now()
	if _, err := s.Set(ctx, f, "other", engine.Int(0), ts); err != nil {
		t.Fatal(err)
	}
	out := s.WriteBatch(ctx, []engine.Write{
		{Op: engine.OpIncr, Feature: f, Keys: "b", Value: engine.Int(1), Timestamp: ts},
		{Op: engine.OpSet, Feature: f, Keys: "b", Value: engine.Int(5), Timestamp: ts},
		{Op: engine.OpIncr, Feature: f, Keys: "c", Value: engine.Int(1), Timestamp: ts}, // no later write: sent again
	})
	if out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "lost its scripts") {
		t.Errorf("incr of b before a set that ran: %v, %v; want refused", out[0].Written.Value, out[0].Err)
	}
	if out[1].Err != nil || out[2].Err != nil || out[2].Written.Value.Int() != 1 {
		t.Errorf("set of b: %v; incr of c: %v, %v", out[1].Err, out[2].Written.Value, out[2].Err)
	}
	if v, _, _, err := s.Get(ctx, f, "b", 0); err != nil || v.Int() != 5 {
		t.Errorf("b = %v, %v; want 5, the set's alone", v, err)
	}
}

// batchErr returns the last cell's error of a ReadBatch, after checking that every cell
// failed (a failed round trip fails every cell it carried).
func batchErr(out []engine.ReadResult) error {
	if len(out) == 0 {
		return errors.New("no results")
	}
	for i, r := range out {
		if r.Err == nil {
			return fmt.Errorf("cell %d of %d read %+v with the server stopped", i, len(out), r)
		}
	}
	return out[len(out)-1].Err
}

// TestDeadline checks that a call honours its context's deadline even when the server
// does not answer (a paused server: CLIENT PAUSE).
func TestDeadline(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true}))
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI("client", "pause", "2000", "all"); err != nil {
		t.Fatalf("client pause: %v %s", err, out)
	}
	f := &engine.Feature{FQN: "slow.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err := s.Get(ctx, f, "a", 0)
	if err == nil {
		t.Fatal("Get succeeded against a paused server")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Get took %v with a 100 ms deadline", d)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		cfg     plugins.Config
		check   func(*goredis.UniversalOptions) bool
		wantErr bool
	}{
		{"default", nil, func(o *goredis.UniversalOptions) bool {
			return len(o.Addrs) == 1 && o.Addrs[0] == "127.0.0.1:6379" && o.ContextTimeoutEnabled && o.MaxRetries == -1 && o.DialerRetries == 1
		}, false},
		{"retries", plugins.Config{"max-retries": "2"}, func(o *goredis.UniversalOptions) bool { return o.MaxRetries == 2 }, false},
		{"negative retries", plugins.Config{"max-retries": "-1"}, nil, true},
		{"addrs", plugins.Config{"addrs": "a:1, b:2;c:3"}, func(o *goredis.UniversalOptions) bool {
			return len(o.Addrs) == 3 && o.Addrs[1] == "b:2"
		}, false},
		{"url", plugins.Config{"url": "rediss://u:p@h:7000/3"}, func(o *goredis.UniversalOptions) bool {
			return o.Addrs[0] == "h:7000" && o.Username == "u" && o.Password == "p" && o.DB == 3 && o.TLSConfig != nil
		}, false},
		{"url overridden", plugins.Config{"url": "redis://h:7000/3", "db": "5", "password": "q"}, func(o *goredis.UniversalOptions) bool {
			return o.DB == 5 && o.Password == "q" && o.TLSConfig == nil
		}, false},
		{"sentinel", plugins.Config{"addrs": "s1:26379,s2:26379", "master-name": "m"}, func(o *goredis.UniversalOptions) bool {
			return o.MasterName == "m"
		}, false},
		{"timeouts", plugins.Config{"dial-timeout": "1s", "read-timeout": "250ms", "write-timeout": "2s", "pool-size": "7", "tls": "true", "cluster": "true"},
			func(o *goredis.UniversalOptions) bool {
				return o.DialTimeout == time.Second && o.ReadTimeout == 250*time.Millisecond && o.WriteTimeout == 2*time.Second &&
					o.PoolSize == 7 && o.TLSConfig != nil && o.IsClusterMode
			}, false},
		{"unknown key", plugins.Config{"adrs": "x"}, nil, true},
		{"bad duration", plugins.Config{"read-timeout": "soon"}, nil, true},
		{"negative db", plugins.Config{"db": "-1"}, nil, true},
		{"bad url", plugins.Config{"url": "http://x"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Options(tc.cfg)
			if tc.wantErr {
				if !errors.Is(err, plugins.ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(o) {
				t.Errorf("options = %+v", o)
			}
		})
	}
}

// TestRegistered creates the State through the registry, as osprey serve does.
func TestRegistered(t *testing.T) {
	srv := redistest.Standalone(t)
	st, err := plugins.NewState(t.Context(), "redis", plugins.Config{"addrs": srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(engine.Blocker); ok {
		t.Error("the Redis State claims engine.Blocker: it does I/O")
	}
	if _, ok := st.(engine.WindowAggregator); !ok {
		t.Error("the Redis State does not push windowed reads down")
	}
	if _, err := plugins.NewState(t.Context(), "redis", plugins.Config{"addrs": "127.0.0.1:1", "dial-timeout": "100ms"}); err == nil {
		t.Error("NewState succeeded with nothing listening")
	}
}

// TestTTL checks that keys carry the expiries the package doc describes.
func TestTTL(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}))
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	f := &engine.Feature{FQN: "ttl.f", Primitive: engine.PrimitiveInt, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		KeepPrevious: &engine.KeepPrevious{Versions: 2, Over: 3 * time.Hour}}
	w := &engine.Feature{FQN: "ttl.w", Primitive: engine.PrimitiveFloat, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		Aggrs: engine.AllAggrs, Granularity: time.Minute}
	for i := range 2 {
		if _, err := s.Set(ctx, f, "a", engine.Int(int64(i)), now.Add(time.Duration(i-1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WindowAdd(ctx, w, "a", 1, now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want time.Time
	}{
		{entityTag(f.FQN, "a") + sufValue, now.Add(3 * time.Hour)},                                                          // max(staleness, Over)
		{entityTag(f.FQN, "a") + sufPrev, now.Add(-time.Minute + 3*time.Hour)},                                              // newest previous + Over
		{entityTag(w.FQN, "a") + sufWindow, engine.BucketExpiry(engine.BucketID(now, time.Minute), time.Hour, time.Minute)}, // BucketExpiry
	}
	for _, tc := range tests {
		at, err := s.c.PExpireTime(ctx, tc.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		got := time.UnixMilli(int64(at / time.Millisecond))
		if d := got.Sub(tc.want); d < 0 || d > 5*time.Millisecond {
			t.Errorf("%s expires at %v, want %v (+ at most a few ms)", tc.key, got, tc.want)
		}
	}
	if _, err := s.c.TTL(ctx, entityTag(f.FQN, "a")+sufScratch).Result(); err != nil {
		t.Fatal(err)
	}
}

// TestWindowRecords writes buckets out of order (appends, in-place updates, inserts in the
// middle) and checks that the records stay sorted and that both aggregations — decoded in
// Go and merged by the Lua script — agree with a merge of WindowBuckets.
func TestWindowRecords(t *testing.T) {
	srv := redistest.Standalone(t)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}))
	defer s.Close()
	ctx := t.Context()
	f := &engine.Feature{FQN: "rec.w", Primitive: engine.PrimitiveFloat, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless},
		Aggrs: engine.AllAggrs, Granularity: time.Minute}
	now := time.Now()
	// Minutes ago, in write order: newest first, then older ones into the middle and repeats.
	ago := []int{0, 5, 2, 9, 5, 1, 0, 30, 7, 2}
	for i, m := range ago {
		if err := s.WindowAdd(ctx, f, "e", float64(i)-2.5, now.Add(-time.Duration(m)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	spans := []struct {
		name string
		span engine.WindowSpan
	}{
		{"alive", engine.AliveSpan(now, f.Staleness, f.Granularity)},
		{"last 6 minutes", engine.AliveSpan(now, 6*time.Minute, f.Granularity)},
		{"one bucket", engine.AliveSpan(now.Add(-5*time.Minute), time.Minute, f.Granularity)},
		{"empty", engine.AliveSpan(now.Add(-20*time.Minute), time.Minute, f.Granularity)},
	}
	for _, tc := range spans {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := s.WindowBuckets(ctx, f, "e", tc.span)
			if err != nil {
				t.Fatal(err)
			}
			var want engine.Bucket
			for i, b := range bs {
				if i > 0 && bs[i-1].ID >= b.ID {
					t.Fatalf("buckets not sorted: %+v", bs)
				}
				want.Merge(b)
			}
			got, err := s.WindowAggregate(ctx, f, "e", tc.span)
			if err != nil {
				t.Fatal(err)
			}
			lua, err := s.windowAggregateInRedis(ctx, f, "e", tc.span)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || lua != want {
				t.Errorf("WindowAggregate = %+v, in Redis = %+v, want %+v", got, lua, want)
			}
		})
	}
	if bs, _ := s.WindowBuckets(ctx, f, "e", engine.KeptSpan(now, f.Staleness, f.Granularity)); len(bs) != 7 {
		t.Errorf("%d buckets, want 7 distinct minutes", len(bs))
	}
}
