package main

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/metrics"
	notifierredis "github.com/osprey-ml/osprey/plugins/notifier/redis"
	"github.com/osprey-ml/osprey/tracing"
)

// observability is what a serving stack exports about itself: Prometheus metrics at
// /metrics (unless --metrics=false) and OpenTelemetry traces (when the OTEL_* environment
// configures an exporter).
type observability struct {
	metrics *metrics.Metrics // nil: off
	tracing *tracing.Tracing // nil: off
}

// newObservability sets up what c and the environment ask for.
func newObservability(ctx context.Context, c *serveConfig) (*observability, error) {
	o := &observability{}
	if !c.NoMetrics {
		o.metrics = metrics.New()
	}
	t, err := tracing.FromEnv(ctx, "osprey", buildVersion())
	if err != nil {
		return nil, err
	}
	o.tracing = t
	return o, nil
}

// engineOptions are the engine's observer and tracer.
func (o *observability) engineOptions() []engine.Option {
	var opts []engine.Option
	if o.metrics != nil {
		opts = append(opts, engine.WithObserver(o.metrics.Observer()))
	}
	if o.tracing != nil {
		opts = append(opts, engine.WithTracer(o.tracing.Tracer()))
	}
	return opts
}

// watch registers the series read when scraped: the Wasm host's, and the notifier's
// backlog when it can report one.
func (o *observability) watch(h *host.Host, n engine.Notifier) {
	if o.metrics == nil {
		return
	}
	o.metrics.Host(h)
	if rn, ok := n.(*notifierredis.Notifier); ok {
		o.metrics.Notifier(redisBacklog{rn})
	}
}

// interceptors wrap the API's procedures: the RPC's span first, then its metrics.
func (o *observability) interceptors() ([]connect.Interceptor, error) {
	var out []connect.Interceptor
	if o.tracing != nil {
		i, err := o.tracing.Interceptor()
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	if o.metrics != nil {
		out = append(out, o.metrics.RPC())
	}
	return out, nil
}

// handlers are the endpoints it serves: GET /metrics.
func (o *observability) handlers(into map[string]http.Handler) {
	if o.metrics != nil {
		into["GET /metrics"] = o.metrics.Handler()
	}
}

// tracingShutdownTimeout bounds flushing the last spans on the way out.
const tracingShutdownTimeout = 5 * time.Second

// close flushes the spans not exported yet.
func (o *observability) close() {
	if o == nil || o.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	o.tracing.Shutdown(ctx)
}

// redisBacklog reports the redis notifier's backlog to the metrics.
type redisBacklog struct{ n *notifierredis.Notifier }

func (b redisBacklog) Backlog(ctx context.Context) ([]metrics.GroupBacklog, error) {
	gs, err := b.n.Backlog(ctx)
	out := make([]metrics.GroupBacklog, len(gs))
	for i, g := range gs {
		out[i] = metrics.GroupBacklog{Group: g.Group, Lag: g.Lag, Pending: g.Pending}
	}
	return out, err
}
