package memory

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/statetest"
)

const benchEntities = 10_000

func benchKeys() []string {
	keys := make([]string, benchEntities)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	return keys
}

func BenchmarkGet(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.score", engine.PrimitiveFloat)
	keys := benchKeys()
	now := time.Now()
	for i, k := range keys {
		if _, err := s.Set(ctx, f, k, engine.Float(float64(i)), now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, found, _ := s.Get(ctx, f, keys[i%benchEntities], 0); !found {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.score", engine.PrimitiveFloat)
	keys := benchKeys()
	now := time.Now()
	for i, k := range keys {
		if _, err := s.Set(ctx, f, k, engine.Float(float64(i)), now); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			if _, _, found, _ := s.Get(ctx, f, keys[i%benchEntities], 0); !found {
				b.Error("not found")
				return
			}
			i++
		}
	})
}

func BenchmarkSet(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.score", engine.PrimitiveFloat)
	keys := benchKeys()
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Set(ctx, f, keys[i%benchEntities], engine.Float(1), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkSetKeepPrevious(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.city", engine.PrimitiveString)
	f.KeepPrevious = &engine.KeepPrevious{Versions: 5, Over: time.Hour}
	keys := benchKeys()
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Set(ctx, f, keys[i%benchEntities], engine.String("Lisbon"), now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkIncrParallel increments 64 hot counters from every P.
func BenchmarkIncrParallel(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.clicks", engine.PrimitiveInt)
	keys := benchKeys()[:64]
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1))
		for pb.Next() {
			if _, err := s.Incr(ctx, f, keys[i%len(keys)], engine.Int(1), time.Now()); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("bench.events", engine.PrimitiveStringList)
	keys := benchKeys()[:100]
	add := engine.StringList([]string{"click"})
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Append(ctx, f, keys[i%len(keys)], add, now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkWindowAdd(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := windowedFeature("bench.amount")
	keys := benchKeys()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.WindowAdd(ctx, f, keys[i%benchEntities], 12.5, time.Now()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkWindowBuckets60 reads a full one-hour window of one-minute buckets.
func BenchmarkWindowBuckets60(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := windowedFeature("bench.amount") // staleness 1h, granularity 1m
	now := time.Now()
	for i := range 60 {
		if err := s.WindowAdd(ctx, f, "card", float64(i), now.Add(-time.Duration(i)*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	span := engine.AliveSpan(now, f.Staleness, f.Granularity)
	if bs, _ := s.WindowBuckets(ctx, f, "card", span); len(bs) != 60 {
		b.Fatalf("%d buckets, want 60", len(bs))
	}
	b.ReportAllocs()
	for b.Loop() {
		if bs, err := s.WindowBuckets(ctx, f, "card", span); err != nil || len(bs) != 60 {
			b.Fatal(len(bs), err)
		}
	}
}

func BenchmarkDeadWindowBuckets(b *testing.B) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := windowedFeature("bench.amount")
	now := time.Now()
	alive := engine.AliveSpan(now, f.Staleness, f.Granularity)
	dead := engine.WindowSpan{First: engine.KeptSpan(now, f.Staleness, f.Granularity).First, Last: alive.First - 1}
	old := engine.BucketStart(alive.First-1, f.Granularity)
	for _, k := range benchKeys() {
		if err := s.WindowAdd(ctx, f, k, 1, old); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if bs, err := s.DeadWindowBuckets(ctx, f, dead); err != nil || len(bs) != benchEntities {
			b.Fatal(len(bs), err)
		}
	}
}

// BenchmarkMessages: sends between two features and timers fired, through an engine on the
// in-process state (statetest.BenchMessages).
func BenchmarkMessages(b *testing.B) {
	statetest.BenchMessages(b, func(*testing.B) engine.State { return New() })
}
