package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/statetest"
	"github.com/osprey-ml/osprey/internal/redistest"
)

// Benchmarks against a real standalone redis-server on loopback (see BENCHMARKS.md):
//
//	go test -run '^$' -bench . -benchtime 2s ./plugins/state/redis/

func benchState(b *testing.B) *State {
	b.Helper()
	srv := redistest.Standalone(b)
	s := New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true}))
	b.Cleanup(func() { s.Close() })
	return s
}

func benchFeature(fqn string, p engine.Primitive) *engine.Feature {
	return &engine.Feature{FQN: fqn, Primitive: p, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

// BenchmarkGet is one GET of a float's current value, serially and from parallel callers.
func BenchmarkGet(b *testing.B) {
	s := benchState(b)
	ctx := context.Background()
	f := benchFeature("bench.scalar", engine.PrimitiveFloat)
	if _, err := s.Set(ctx, f, "e", engine.Float(1.5), time.Now()); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B) {
		if _, _, found, err := s.Get(ctx, f, "e", 0); err != nil || !found {
			b.Fatalf("Get: found %v, %v", found, err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			run(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b)
			}
		})
	})
}

// BenchmarkWindowGet reads a window of 60 one-minute buckets: WindowAggregate (one GET,
// merged while decoding), the same merge in a Lua script inside Redis, and WindowBuckets
// (a slice of buckets, merged by engine.Aggregate).
func BenchmarkWindowGet(b *testing.B) {
	s := benchState(b)
	ctx := context.Background()
	f := benchFeature("bench.window", engine.PrimitiveFloat)
	f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
	now := time.Now()
	for i := range 60 {
		if err := s.WindowAdd(ctx, f, "e", float64(i), now.Add(-time.Duration(i)*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	span := engine.AliveSpan(now, f.Staleness, f.Granularity)
	b.Run("aggregate", func(b *testing.B) {
		for b.Loop() {
			acc, err := s.WindowAggregate(ctx, f, "e", span)
			if err != nil || acc.Count != 60 {
				b.Fatalf("WindowAggregate: %+v, %v", acc, err)
			}
		}
	})
	b.Run("aggregate-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.WindowAggregate(ctx, f, "e", span); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("in-redis", func(b *testing.B) {
		for b.Loop() {
			acc, err := s.windowAggregateInRedis(ctx, f, "e", span)
			if err != nil || acc.Count != 60 {
				b.Fatalf("windowAggregateInRedis: %+v, %v", acc, err)
			}
		}
	})
	b.Run("buckets", func(b *testing.B) {
		for b.Loop() {
			bs, err := s.WindowBuckets(ctx, f, "e", span)
			if err != nil || len(bs) != 60 {
				b.Fatalf("WindowBuckets: %d, %v", len(bs), err)
			}
			_, _, _ = engine.Aggregate(bs, span, f.Aggrs)
		}
	})
}

// BenchmarkWrite compares the event-time Set as a script (what Set does) with the same
// decision made by WATCH, GET, MULTI/EXEC (optimistic locking: two round trips, and a retry
// when another writer got in between), serially and under contention on one entity.
func BenchmarkWrite(b *testing.B) {
	s := benchState(b)
	ctx := context.Background()
	f := benchFeature("bench.write", engine.PrimitiveInt)
	f.KeepPrevious = &engine.KeepPrevious{Versions: 3, Over: time.Hour}
	b.Run("script", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i++
			if _, err := s.Set(ctx, f, "e", engine.Int(i), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("watch-multi", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i++
			if err := setWatchMulti(ctx, s.c, f, "e2", engine.Int(i), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("script-contended", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Set(ctx, f, "hot", engine.Int(1), time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("watch-multi-contended", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := setWatchMulti(ctx, s.c, f, "hot2", engine.Int(1), time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("incr", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Incr(ctx, f, "n", engine.Int(1), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// setWatchMulti is the MULTI alternative to setScript, for the benchmark only: the
// applied path of an event-time Set with KeepPrevious (the superseded path would need an
// LRANGE and a rebuild on top), retried while another client changes the key meanwhile.
func setWatchMulti(ctx context.Context, c goredis.UniversalClient, f *engine.Feature, keys string, v engine.Value, ts time.Time) error {
	tag := entityTag(f.FQN, keys)
	vk, pk := tag+sufValue, tag+sufPrev
	el := kindByte(f.Primitive) + tsHex(ts.UnixNano()) + encodeValue(v)
	for {
		err := c.Watch(ctx, func(tx *goredis.Tx) error {
			cur, err := tx.Get(ctx, vk).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
			if cur != "" && cur[1:17] > el[1:17] {
				return nil // superseded
			}
			_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				if cur != "" {
					p.LPush(ctx, pk, cur)
					p.LTrim(ctx, pk, 0, int64(f.KeepPrevious.Versions-1))
					p.PExpire(ctx, pk, f.KeepPrevious.Over)
				}
				p.Set(ctx, vk, el, f.Staleness)
				return nil
			})
			return err
		}, vk)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
	}
}

// BenchmarkCommitStorage compares CommitStorage (one script: the version check, the value
// write and the storage) with the same commit done by WATCH on the storage hash, HGETALL and
// MULTI/EXEC around the Set script (commitWatchMulti), serially (each commit based on the
// last one's version) and with 2×GOMAXPROCS invocations racing on one address (load,
// commit, and load again on a conflict, as the engine runs an invocation again); "set" is
// the Set alone, what a write without storage costs.
func BenchmarkCommitStorage(b *testing.B) {
	s := benchState(b)
	ctx := context.Background()
	f := benchFeature("bench.storage", engine.PrimitiveInt)
	f.KeepPrevious = &engine.KeepPrevious{Versions: 3, Over: time.Hour}
	if err := setScript.Load(ctx, s.c).Err(); err != nil { // loaded for EVALSHA inside MULTI
		b.Fatal(err)
	}
	commit := func(i int64, version string) engine.StorageCommit {
		now := time.Now()
		return engine.StorageCommit{Version: version,
			Set: map[string]engine.StoredValue{"count": {Value: engine.Int(i), Expires: now.Add(time.Hour)},
				"last": {Value: engine.Timestamp(now), Expires: now.Add(time.Hour)}},
			Write: &engine.StorageWrite{Value: engine.Int(i), Timestamp: now}}
	}
	b.Run("set", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i++
			if _, err := s.Set(ctx, f, "e0", engine.Int(i), time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	serial := func(b *testing.B, keys string, fn func(engine.StorageCommit) (string, error)) {
		snap, err := s.LoadStorage(ctx, f, keys, time.Now()) // -count runs again on the same address
		if err != nil {
			b.Fatal(err)
		}
		v, i := snap.Version, int64(0)
		for b.Loop() {
			i++
			var err error
			if v, err = fn(commit(i, v)); err != nil {
				b.Fatal(err)
			}
		}
	}
	contended := func(b *testing.B, keys string, fn func(engine.StorageCommit) (string, error)) {
		var conflicts atomic.Int64
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for {
					snap, err := s.LoadStorage(ctx, f, keys, time.Now())
					if err != nil {
						b.Fatal(err)
					}
					if _, err = fn(commit(1, snap.Version)); err == nil {
						break
					}
					if !errors.Is(err, engine.ErrConflict) {
						b.Fatal(err)
					}
					conflicts.Add(1)
				}
			}
		})
		b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
	}
	script := func(keys string) func(engine.StorageCommit) (string, error) {
		return func(c engine.StorageCommit) (string, error) {
			v, _, err := s.CommitStorage(ctx, f, keys, c)
			return v, err
		}
	}
	watch := func(keys string) func(engine.StorageCommit) (string, error) {
		return func(c engine.StorageCommit) (string, error) { return commitWatchMulti(ctx, s, f, keys, c) }
	}
	b.Run("script", func(b *testing.B) { serial(b, "e1", script("e1")) })
	b.Run("watch-multi", func(b *testing.B) { serial(b, "e2", watch("e2")) })
	b.Run("script-contended", func(b *testing.B) { contended(b, "hot1", script("hot1")) })
	b.Run("watch-multi-contended", func(b *testing.B) { contended(b, "hot2", watch("hot2")) })
}

// commitWatchMulti is the WATCH/MULTI alternative to commitStorageScript, for the benchmark
// only: WATCH the storage hash, read it (the version to compare, and the expiries the TTL
// needs), then queue the Set script (EVALSHA, atomic inside MULTI), the storage's HSET and
// the TTL in MULTI/EXEC; a watched hash that changed meanwhile fails EXEC, a conflict. It
// does Set writes and storage sets only (no Clear, Touch or pruning) and could not do
// everything CommitStorage must: EXEC runs every queued command whatever the script
// replied, so a write the script refuses (a window add's overflow) would still commit the
// storage.
func commitWatchMulti(ctx context.Context, s *State, f *engine.Feature, keys string, c engine.StorageCommit) (string, error) {
	tag := entityTag(f.FQN, keys)
	sk := tag + sufStorage
	next := newVersion(c.Version)
	err := s.c.Watch(ctx, func(tx *goredis.Tx) error {
		all, err := tx.HGetAll(ctx, sk).Result()
		if err != nil {
			return err
		}
		if all[storageVersion] != c.Version {
			return engine.ErrConflict
		}
		top := ""
		for name, raw := range all {
			if name != storageVersion && raw[1:17] > top {
				top = raw[1:17]
			}
		}
		fields := []any{storageVersion, next}
		for name, sv := range c.Set {
			packed, err := packStored(sv)
			if err != nil {
				return err
			}
			fields = append(fields, name, packed)
			top = max(top, packed[1:17])
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if c.Write != nil {
				setScript.EvalSha(ctx, p, []string{tag + sufValue, tag + sufPrev}, setArgs(f, c.Write.Value, c.Write.Timestamp, time.Now())...)
			}
			p.HSet(ctx, sk, fields...)
			if top == neverHex {
				p.Persist(ctx, sk)
			} else {
				ns, err := parseTsHex(top)
				if err != nil {
					return err
				}
				p.PExpireAt(ctx, sk, time.Unix(0, ns).Add(time.Millisecond))
			}
			return nil
		})
		return err
	}, sk)
	if errors.Is(err, goredis.TxFailedErr) {
		return "", fmt.Errorf("%w: %w", engine.ErrConflict, err)
	}
	return next, err
}

// BenchmarkMessages: sends between two features and timers fired, through an engine on
// Redis (statetest.BenchMessages), one server for all sub-benchmarks.
func BenchmarkMessages(b *testing.B) {
	srv := redistest.Standalone(b)
	statetest.BenchMessages(b, func(*testing.B) engine.State {
		return New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true}))
	})
}
