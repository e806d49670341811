package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// rpcMetrics are the RPC series: osprey_rpc_duration_seconds{procedure, code}, whose
// _count is the calls.
type rpcMetrics struct {
	duration *prometheus.HistogramVec

	mu    sync.Mutex                             // serialises adding procedures
	procs atomic.Pointer[map[string]*procSeries] // copy-on-write: read without a lock
}

// procSeries are one procedure's histograms, by code (0: ok), resolved on first use.
type procSeries struct {
	name  string
	codes [maxCode + 1]atomic.Pointer[prometheus.Observer]
}

// maxCode is the largest connect.Code.
const maxCode = connect.CodeUnauthenticated

func newRPCMetrics(reg *prometheus.Registry) *rpcMetrics {
	r := &rpcMetrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "rpc_duration_seconds",
		Help:    "RPCs handled, by procedure and code (ok, or a Connect error code); for a server stream (Watch) the stream's whole life.",
		Buckets: latencyBuckets}, []string{"procedure", "code"})}
	empty := map[string]*procSeries{}
	r.procs.Store(&empty)
	reg.MustRegister(r.duration)
	return r
}

// series returns the procedure's series, adding them the first time.
func (r *rpcMetrics) series(procedure string) *procSeries {
	if p := (*r.procs.Load())[procedure]; p != nil {
		return p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.procs.Load()
	if p := cur[procedure]; p != nil {
		return p
	}
	p := &procSeries{name: procedure}
	next := make(map[string]*procSeries, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[procedure] = p
	r.procs.Store(&next)
	return p
}

// observe records one call.
func (r *rpcMetrics) observe(procedure string, d time.Duration, err error) {
	p := r.series(procedure)
	code := connect.Code(0)
	if err != nil {
		code = connect.CodeOf(err)
	}
	if code > maxCode {
		code = connect.CodeUnknown
	}
	o := p.codes[code].Load()
	if o == nil {
		name := "ok"
		if code != 0 {
			name = code.String()
		}
		h := r.duration.WithLabelValues(procedure, name)
		p.codes[code].CompareAndSwap(nil, &h)
		o = p.codes[code].Load()
	}
	(*o).Observe(d.Seconds())
}

// RPC returns the interceptor that records every RPC the server handles (add it with
// connect.WithInterceptors). The procedure label takes the procedures of the handlers it
// wraps: a bounded set.
func (m *Metrics) RPC() connect.Interceptor { return rpcInterceptor{m.rpc} }

type rpcInterceptor struct{ r *rpcMetrics }

func (i rpcInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		i.r.observe(req.Spec().Procedure, time.Since(start), err)
		return res, err
	}
}

func (i rpcInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rpcInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.r.observe(conn.Spec().Procedure, time.Since(start), err)
		return err
	}
}
