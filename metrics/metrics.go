// Package metrics exports what an Osprey server does in the Prometheus format: RPCs by
// procedure and code, with latency histograms (RPC, a connect interceptor); per feature,
// reads by outcome, writes, middleware and program durations and their failures by kind
// (Observer, an engine.Observer); State calls' latency and errors; and, read when scraped,
// the Wasm host's instance pools, memory and compiles and the notifier's backlog
// (Host, Notifier). docs/observability.md lists every series with the question it answers.
//
// Names and labels follow Prometheus conventions: osprey_ prefixed, units in the names
// (_seconds, _bytes, _total), and bounded label sets: procedures, codes, features (as many
// as are applied), middleware labels, outcomes — never entity keys or values.
//
// The hot path takes no lock and allocates nothing for metrics: the series of a feature are
// resolved once, when it is applied (Observer.Feature), those of an RPC procedure and code
// once, on first use, and recording is an atomic add. A Metrics is safe for concurrent use.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every series.
const namespace = "osprey"

// Metrics holds the series of one server, in a registry of its own (with the Go runtime's
// and the process's collectors).
type Metrics struct {
	reg *prometheus.Registry

	rpc *rpcMetrics

	reads            *prometheus.CounterVec
	writes           *prometheus.CounterVec
	middleware       *prometheus.HistogramVec
	middlewareErrors *prometheus.CounterVec
	program          *prometheus.HistogramVec
	programErrors    *prometheus.CounterVec
	state            *prometheus.HistogramVec
	stateErrors      *prometheus.CounterVec
	stateSeries      []stateSeries // by engine.StateOp
	messages         *messageMetrics
}

// latencyBuckets are the histograms' buckets, in seconds: 50 µs to 10 s, for calls that
// take from a map lookup to a remote round trip or a slow plugin.
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

// New returns the metrics of one server.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.rpc = newRPCMetrics(m.reg)
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "feature_reads_total",
		Help: "Reads of a feature (a Get, or a cell of a GetMany), by outcome: fresh, stale (served, older than the freshness), absent (nothing servable), error."},
		[]string{"feature", "outcome"})
	m.writes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "feature_writes_total",
		Help: "Writes of a feature (Set, Append, Incr, Update, ingested rows, on-request computations), by operation and outcome: applied, superseded (older than the current value), rejected (by a middleware), error."},
		[]string{"feature", "op", "outcome"})
	m.middleware = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "middleware_duration_seconds",
		Help: "One run of a feature's middleware at a stage.", Buckets: latencyBuckets},
		[]string{"feature", "middleware", "stage"})
	m.middlewareErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "middleware_errors_total",
		Help: "Middleware runs that failed, by kind: rejected (the middleware refused the value), timeout, trap (the guest or plugin crashed), error."},
		[]string{"feature", "middleware", "kind"})
	m.program = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "program_duration_seconds",
		Help: "One run of a feature's program (a Wasm program or a plugin connector).", Buckets: latencyBuckets},
		[]string{"feature"})
	m.programErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "program_errors_total",
		Help: "Program runs that failed, by kind: timeout, trap, error."},
		[]string{"feature", "kind"})
	m.state = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "state_call_duration_seconds",
		Help: "One call of the state provider, by call.", Buckets: latencyBuckets},
		[]string{"call"})
	m.stateErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "state_call_errors_total",
		Help: "State provider calls that failed, by call."},
		[]string{"call"})
	m.reg.MustRegister(m.reads, m.writes, m.middleware, m.middlewareErrors, m.program, m.programErrors, m.state, m.stateErrors)
	m.stateSeries = newStateSeries(m)
	m.messages = newMessageMetrics(m.reg)
	return m
}

// Registry returns the registry the series are in, for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the series in the Prometheus text format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
