package main

// osprey bench against a host on Redis (issue 10): a baseline that reads its answer from
// Redis (one go-redis GET per call, what a hand-written service would do), the issue's
// targets, and a bounded Ingest load generator (--ingest FILE).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// The targets on Redis.
const (
	targetRedisGetThroughput = 0.85 // Get throughput ≥ 85 % of the Redis baseline's, closed loop
	targetRedisGetP99        = 1.3  // Get p99 ≤ 1.3× the Redis baseline's, open loop
	targetRedisManyP99       = 2.0  // GetMany 50×1 p99 ≤ 2× the host's own single Get p99
)

// The baseline's keys: they hold the host's Get and GetMany responses.
const (
	benchRedisGetKey  = "osprey-bench:baseline:get"
	benchRedisManyKey = "osprey-bench:baseline:many"
)

// redisEngine is the Redis baseline: a bare connect-go EngineService whose Get (and
// GetMany) does one GET and decodes the stored response bytes.
type redisEngine struct {
	ospreyv1connect.UnimplementedEngineServiceHandler
	rdb *goredis.Client
}

func (r *redisEngine) Get(ctx context.Context, _ *connect.Request[ospreyv1.GetRequest]) (*connect.Response[ospreyv1.GetResponse], error) {
	b, err := r.rdb.Get(ctx, benchRedisGetKey).Bytes()
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	m := new(ospreyv1.GetResponse)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(m), nil
}

func (r *redisEngine) GetMany(ctx context.Context, _ *connect.Request[ospreyv1.GetManyRequest]) (*connect.Response[ospreyv1.GetManyResponse], error) {
	b, err := r.rdb.Get(ctx, benchRedisManyKey).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("no GetMany response stored"))
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	m := new(ospreyv1.GetManyResponse)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(m), nil
}

// startRedisBaseline stores c's responses in the Redis at addr and serves a redisEngine
// reading them on 127.0.0.1.
func startRedisBaseline(ctx context.Context, c *constEngine, addr string) (string, func(), error) {
	addr = strings.TrimPrefix(addr, "redis://")
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	pipe := rdb.Pipeline()
	for key, m := range map[string]proto.Message{benchRedisGetKey: c.get, benchRedisManyKey: c.many} {
		if !m.ProtoReflect().IsValid() {
			pipe.Del(ctx, key)
			continue
		}
		b, err := proto.Marshal(m)
		if err != nil {
			rdb.Close()
			return "", nil, err
		}
		pipe.Set(ctx, key, b, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		rdb.Close()
		return "", nil, fmt.Errorf("baseline Redis %s: %w", addr, err)
	}
	base, stop, err := startBaselineAt(&redisEngine{rdb: rdb}, "127.0.0.1:0")
	if err != nil {
		rdb.Close()
		return "", nil, err
	}
	return base, func() {
		stop()
		rdb.Del(context.Background(), benchRedisGetKey, benchRedisManyKey)
		rdb.Close()
	}, nil
}

// redisTargets are issue 10's verdicts: Get against the Redis baseline, GetMany against the
// host's own single Get.
func redisTargets(o *benchOptions, closed, open, many runPair, mixed [2]runPair, rate float64) []benchVerdict {
	b, t := closed[0], closed[1]
	v := []benchVerdict{verdict(
		fmt.Sprintf("Get throughput ≥ %.0f %% of the Redis baseline (closed loop, concurrency %d)", 100*targetRedisGetThroughput, o.concurrency),
		t.throughput()/b.throughput(), targetRedisGetThroughput, true)}
	b, t = open[0], open[1]
	v = append(v, verdict(fmt.Sprintf("Get p99 ≤ %g× the Redis baseline (open loop, %g/s)", targetRedisGetP99, rate),
		float64(t.lat.quantile(0.99))/float64(b.lat.quantile(0.99)), targetRedisGetP99, false))
	if o.many > 0 {
		// The verdict compares the two latencies measured in blocks of one loop; the
		// ratio of the separate loops (a minute apart) is printed for reference.
		ref := verdict(fmt.Sprintf("GetMany %d×1 p99 against osprey's Get p99 in separate loops (open loop, %g/s)", o.many, rate),
			float64(many[1].lat.quantile(0.99))/float64(t.lat.quantile(0.99)), targetRedisManyP99, false)
		ref.Reference = true
		v = append(v, verdict(
			fmt.Sprintf("GetMany %d×1 p99 ≤ %g× osprey's own Get p99 (open loop, %g/s, in blocks of one loop)", o.many, targetRedisManyP99, rate),
			float64(mixed[1][1].lat.quantile(0.99))/float64(mixed[0][1].lat.quantile(0.99)), targetRedisManyP99, false), ref)
	}
	return v
}

// The Ingest load generator.

const targetIngestRows = 50_000 // rows/s through the Wasm program into the store

type ingestBenchOptions struct {
	file        string
	source      string
	batch       int
	concurrency int
	entities    int
	rows        int64 // bound: at most this many rows in all
}

func (o *ingestBenchOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.file, "ingest", "", "instead of the read loops, Ingest the rows of this JSON Lines file (cycled) into --ingest-source for --duration or --ingest-rows, and report rows/s")
	fs.StringVar(&o.source, "ingest-source", "fraud.transactions", "--ingest: the data source")
	fs.IntVar(&o.batch, "ingest-batch", 500, "--ingest: rows per Ingest call (osprey ingest sends 500)")
	fs.IntVar(&o.concurrency, "ingest-concurrency", 2, "--ingest: Ingest calls in flight")
	fs.IntVar(&o.entities, "ingest-entities", 1000, "--ingest: spread the rows over this many entities (each key field gets a suffix -0 … -N-1); 0 keeps the file's keys")
	fs.Int64Var(&o.rows, "ingest-rows", 5_000_000, "--ingest: stop after this many rows")
}

// runIngestBench sends batches of rows, closed loop, and reports the rows/s acknowledged.
func runIngestBench(ctx context.Context, o *benchOptions, out, log io.Writer) error {
	ib := &o.ingest
	if ib.batch < 1 || ib.concurrency < 1 || ib.rows < 1 || ib.entities < 0 {
		return errors.New("--ingest-batch, --ingest-concurrency, --ingest-rows: want at least 1")
	}
	rows, _, err := readRowLines(nil, ib.file)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no rows", ib.file)
	}
	// The batches, built once: the file's rows cycled, their string fields named in
	// keyFields spread over --ingest-entities entities.
	keyField := "card_id"
	nb := max(1, min(64, int(ib.rows)/ib.batch))
	batches := make([][]*ospreyv1.Row, nb)
	n := 0
	for b := range batches {
		for range ib.batch {
			r := proto.Clone(rows[n%len(rows)]).(*ospreyv1.Row)
			if ib.entities > 0 {
				if v, ok := r.GetFields()[keyField]; ok && v.GetStringValue() != "" {
					r.Fields[keyField] = rowString(fmt.Sprintf("%s-%d", v.GetStringValue(), n%ib.entities))
				}
			}
			batches[b] = append(batches[b], r)
			n++
		}
	}
	ingest, err := newIngestClients(o)
	if err != nil {
		return err
	}
	defer ingest.close()

	var sent, written, calls, failed atomic.Int64
	var firstErr atomic.Value
	lat := newHistogram()
	start := time.Now()
	end := start.Add(o.duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range ib.concurrency {
		c := ingest.clients[w%len(ingest.clients)]
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				i := next.Add(1) - 1
				if i*int64(ib.batch) >= ib.rows {
					return
				}
				t0 := time.Now()
				res, err := c.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: ib.source, TypedRows: batches[i%int64(nb)]}))
				lat.record(time.Since(t0))
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, serverError(err).Error())
					continue
				}
				sent.Add(res.Msg.Rows)
				written.Add(res.Msg.Written)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	rate := float64(sent.Load()) / el.Seconds()
	fmt.Fprintf(log, "bench: ingest %s: batch %d, concurrency %d, %d entities\n", ib.source, ib.batch, ib.concurrency, ib.entities)
	fmt.Fprintf(out, "ingest %s into %s: batch %d rows, %d calls in flight, %d connection(s)\n", ib.file, ib.source, ib.batch, ib.concurrency, o.connections)
	fmt.Fprintf(out, "%d rows (%d values written) in %.2fs: %.0f rows/s; %d calls, %d failed; per call p50 %s p99 %s\n",
		sent.Load(), written.Load(), el.Seconds(), rate, calls.Load(), failed.Load(),
		fmtDur(us(lat.quantile(0.5))), fmtDur(us(lat.quantile(0.99))))
	pass := "FAIL"
	if rate >= targetIngestRows {
		pass = "PASS"
	}
	fmt.Fprintf(out, "target: ≥ %d rows/s: %s\n", targetIngestRows, pass)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d Ingest calls failed; the first: %v", f, calls.Load(), firstErr.Load())
	}
	if math.IsNaN(rate) || rate < targetIngestRows {
		return fmt.Errorf("ingest: %.0f rows/s, below the target of %d", rate, targetIngestRows)
	}
	return nil
}

func rowString(s string) *ospreyv1.Value {
	return &ospreyv1.Value{Kind: &ospreyv1.Value_StringValue{StringValue: s}}
}

// ingestClients are IngestService clients over --connections HTTP/2 connections.
type ingestClients struct {
	target  *benchTarget
	clients []ospreyv1connect.IngestServiceClient
}

func newIngestClients(o *benchOptions) (*ingestClients, error) {
	t, err := newBenchTarget("osprey", o.addr, o)
	if err != nil {
		return nil, err
	}
	addr := o.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	var opts []connect.ClientOption
	if popt, _ := benchProtocol(o.protocol); popt != nil {
		opts = append(opts, popt)
	}
	if o.token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(o.token)))
	}
	c := &ingestClients{target: t}
	for _, tr := range t.transports {
		c.clients = append(c.clients, ospreyv1connect.NewIngestServiceClient(&http.Client{Transport: tr}, addr, opts...))
	}
	return c, nil
}

func (c *ingestClients) close() { c.target.close() }
