package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins/state/memory"
	redisstate "github.com/osprey-ml/osprey/plugins/state/redis"
)

// counting is a program that, with storage, reads its entity's count and writes it back
// plus one (one storage get and one set per invocation), and writes the count; without
// storage, it writes the row's count field.
type counting struct{ storage bool }

func (c counting) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	if !c.storage {
		return engine.ProgramResult{Value: engine.Float(call.Row["n"].Float())}, nil
	}
	in := call.Invocation
	n, _, err := in.Storage(ctx, "count")
	if err != nil {
		return engine.ProgramResult{}, err
	}
	if err := in.SetStorage(ctx, "count", engine.Int(n.Int()+1)); err != nil {
		return engine.ProgramResult{}, err
	}
	return engine.ProgramResult{Value: engine.Float(float64(n.Int() + 1))}, nil
}

type countingLoader struct{ p counting }

func (l countingLoader) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return l.p, nil
}

// BenchmarkStorageIngest ingests one row per call, for 1,000 entities in turn, through a
// program with one storage get and set per invocation, against the same program without
// storage (the baseline), on the in-process state and on Redis (a redis-server on loopback
// started for the benchmark):
//
//	go test -run '^$' -bench StorageIngest -benchmem -count 3 ./engine/
func BenchmarkStorageIngest(b *testing.B) {
	states := []struct {
		name string
		new  func(b *testing.B) engine.State
	}{
		{"memory", func(*testing.B) engine.State { return memory.New() }},
		{"redis", func(b *testing.B) engine.State {
			srv := redistest.Standalone(b)
			return redisstate.New(goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true}))
		}},
	}
	for _, st := range states {
		for _, withStorage := range []bool{false, true} {
			name := st.name + "/plain"
			if withStorage {
				name = st.name + "/storage"
			}
			b.Run(name, func(b *testing.B) {
				s := st.new(b)
				if _, ok := s.(engine.StorageState); withStorage && !ok {
					b.Skip("this state keeps no program storage")
				}
				defer s.Close()
				ctx := context.Background()
				e := engine.New(s, engine.WithPrograms(countingLoader{counting{withStorage}}), engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
				defer e.Close()
				if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "bench.rows", Kind: "rest", KeyFields: []string{"card"}}); err != nil {
					b.Fatal(err)
				}
				f := &engine.Feature{FQN: "bench.count", Primitive: engine.PrimitiveFloat, Keys: []string{"card"}, Freshness: time.Hour,
					Staleness: 24 * time.Hour, Timeout: time.Second, DataSource: "bench.rows", Builder: engine.Builder{Kind: "wasm", Module: "x"}}
				if withStorage {
					f.Storage = []engine.StorageSpec{{Name: "count", Primitive: engine.PrimitiveInt, ExpireAfterCall: time.Hour}}
				}
				if err := e.Apply(ctx, f); err != nil {
					b.Fatal(err)
				}
				rows := make([][]engine.Row, 1000)
				for i := range rows {
					rows[i] = []engine.Row{{"card": engine.String(fmt.Sprint("c", i)), "n": engine.Float(float64(i))}}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := e.Ingest(ctx, "bench.rows", rows[i%len(rows)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
