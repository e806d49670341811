package redis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// hideBatch hides the State's BatchReader, so that the engine reads cell by cell.
type hideBatch struct{ engine.State }

// BenchmarkGetMany reads a feature vector of 50 features (40 float scalars and 10 windows
// of 60 one-minute buckets) for 1 and for 10 entities through the engine, as the server's
// GetMany does: "batch" is one Prefetch (one pipeline) and the cells served from it;
// "cells" reads cell by cell, the entities in parallel (the server's workers) and each
// entity's cells one after another. "get" is a single Get, for the p99 ratio.
//
//	go test -run '^$' -bench GetMany -benchtime 2s ./plugins/state/redis/
func BenchmarkGetMany(b *testing.B) {
	s := benchState(b)
	ctx := context.Background()
	var sels []string
	var feats []*engine.Feature
	for i := range 50 {
		f := benchFeature(fmt.Sprintf("bench.gm%d", i), engine.PrimitiveFloat)
		if i%5 == 4 {
			f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
		}
		feats, sels = append(feats, f), append(sels, f.FQN)
	}
	now := time.Now()
	ents := make([]engine.Keys, 10)
	for e := range ents {
		ents[e] = engine.Keys{"id": fmt.Sprint("e", e)}
		for _, f := range feats {
			if !f.Windowed() {
				if _, err := s.Set(ctx, f, fmt.Sprint("e", e), engine.Float(float64(e)), now); err != nil {
					b.Fatal(err)
				}
				continue
			}
			for m := range 60 {
				if err := s.WindowAdd(ctx, f, fmt.Sprint("e", e), float64(m), now.Add(-time.Duration(m)*time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	quiet := engine.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	batched, cells := engine.New(s, quiet), engine.New(hideBatch{s}, quiet)
	for _, eng := range []*engine.Engine{batched, cells} {
		for _, f := range feats {
			if err := eng.Apply(ctx, f); err != nil {
				b.Fatal(err)
			}
		}
	}
	check := func(b *testing.B, r engine.Result, err error) {
		if err != nil || !r.Found() {
			b.Fatalf("cell: %+v, %v", r, err)
		}
	}
	modes := map[string]func(b *testing.B, ents []engine.Keys){
		"batch": func(b *testing.B, ents []engine.Keys) {
			pf := batched.Prefetch(ctx, sels, ents)
			for i := range ents {
				for j := range sels {
					r, ok, err := pf.Get(ctx, i, j)
					if !ok {
						b.Fatal("cell not prefetched")
					}
					check(b, r, err)
				}
			}
		},
		"cells": func(b *testing.B, ents []engine.Keys) {
			workers := min(len(ents), 4*runtime.GOMAXPROCS(0), 64)
			next := make(chan int, len(ents))
			for i := range ents {
				next <- i
			}
			close(next)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for i := range next {
						for _, sel := range sels {
							r, err := cells.Get(ctx, sel, ents[i])
							check(b, r, err)
						}
					}
				})
			}
			wg.Wait()
		},
		"get": func(b *testing.B, ents []engine.Keys) {
			r, err := batched.Get(ctx, sels[0], ents[0])
			check(b, r, err)
		},
	}
	for _, n := range []int{1, 10} {
		for _, mode := range []string{"get", "cells", "batch"} {
			if mode == "get" && n > 1 {
				continue
			}
			b.Run(fmt.Sprintf("%dx%d/%s", len(sels), n, mode), func(b *testing.B) {
				var lat []time.Duration
				for b.Loop() {
					start := time.Now()
					modes[mode](b, ents[:n])
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
