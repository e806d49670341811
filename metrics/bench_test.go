package metrics_test

import (
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/metrics"
)

// BenchmarkObservedGet measures an engine Get and Set (through the feature's middleware) on
// the in-process state without an Observer, the baseline, and with the metrics' Observer:
// what recording costs on the hot path.
//
//	go test -run '^$' -bench ObservedGet -benchmem -count 6 ./metrics/
func BenchmarkObservedGet(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    *metrics.Metrics
	}{{"plain", nil}, {"metrics", metrics.New()}} {
		e := newEngine(b, tc.m)
		k := engine.Keys{"id": "1"}
		if _, err := e.Set(ctx, "t.amount", k, 50.0, time.Time{}); err != nil {
			b.Fatal(err)
		}
		b.Run("get/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Get(ctx, "t.amount", k); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("set/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Set(ctx, "t.amount", k, 60.0, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
