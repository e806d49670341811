package historian_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/internal/miniotest"
	"github.com/osprey-ml/osprey/plugins/historystore/file"
	s3store "github.com/osprey-ml/osprey/plugins/historystore/s3"
	"github.com/osprey-ml/osprey/plugins/notifier/memory"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
)

// benchRecords is how many notifications each run of BenchmarkHistorian writes.
const benchRecords = 1_000_000

// BenchmarkHistorian measures records/s from notification to a flushed Parquet object,
// with the in-process notifier sized as `osprey dev` sizes it, into a local directory and
// into MinIO, and the peak heap in use while writing benchRecords records.
//
//	go test -run '^$' -bench Historian -benchtime 1x ./historian/
func BenchmarkHistorian(b *testing.B) {
	for _, store := range []string{"file", "minio"} {
		b.Run(store, func(b *testing.B) {
			var s historian.Storage
			var err error
			switch store {
			case "file":
				s, err = file.New(b.TempDir())
			case "minio":
				m := miniotest.Start(b)
				s, err = s3store.New(context.Background(), s3store.Options{Endpoint: m.Endpoint(), Bucket: "bench",
					AccessKey: m.AccessKey, SecretKey: m.SecretKey, CreateBucket: true})
			}
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for range b.N {
				benchHistorian(b, s)
			}
		})
	}
}

func benchHistorian(b *testing.B, s historian.Storage) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := memory.New(memory.WithGroups(historian.DefaultGroup))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	st := memstate.New()
	defer st.Close()
	eng := engine.New(st, engine.WithLogger(quiet))
	f := &engine.Feature{FQN: "bench.score", Primitive: engine.PrimitiveFloat, Keys: []string{"user"}, Freshness: time.Hour,
		Staleness: 24 * time.Hour, Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	if err := eng.Apply(context.Background(), f); err != nil {
		b.Fatal(err)
	}
	h, err := historian.New(historian.Config{Engine: eng, Notifier: n, Storage: s, Logger: quiet,
		MaxPending: n.Capacity() * 3 / 4, FlushRecords: n.Capacity() / 8}) // as osprey dev sizes them
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()

	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	now := time.Now()
	start := time.Now()
	for i := range benchRecords {
		note := engine.Notification{Kind: engine.NotifyWrite, Op: engine.OpSet, FQN: f.FQN,
			EncodedKeys: "u" + strconv.Itoa(i%100_000), Value: engine.Float(float64(i)), Timestamp: now, Written: now,
			Outcome: engine.WriteApplied}
		if err := n.Publish(ctx, note); err != nil {
			b.Fatal(err)
		}
	}
	// The last notifications fill no flush: flush them as a shutdown would, rather than
	// measure the flush age (the tail's latency, DefaultFlushAge by design).
	for h.Stats().Records < benchRecords {
		if err := h.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	close(stopSampling)
	cancel()
	<-done
	st2 := h.Stats()
	b.ReportMetric(float64(benchRecords)/took.Seconds(), "records/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(st2.Bytes)/float64(benchRecords), "B/record")
	b.Logf("%d records in %d objects, %.1f MB, %v", st2.Records, st2.Objects, float64(st2.Bytes)/1e6, took.Round(time.Millisecond))
}
