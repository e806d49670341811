package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/osprey-ml/osprey/engine"
)

var _ engine.MessageObserver = observer{}

// messageMetrics are the series of programs' messages (engine.MessageObserver). Their
// labels are resolved per delivery (a map lookup): deliveries are a background path, not a
// read's.
type messageMetrics struct {
	delivered    *prometheus.CounterVec
	late         *prometheus.HistogramVec
	deadLettered *prometheus.CounterVec
	hopLimit     *prometheus.CounterVec
}

// lateBuckets: how late a delayed message fired, 1 ms to 5 min.
var lateBuckets = []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newMessageMetrics(reg *prometheus.Registry) *messageMetrics {
	m := &messageMetrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_delivered_total",
			Help: "Deliveries of programs' messages, by sending feature, egress (\"\" for a message to a program) and outcome: ok, or error (retried after a back-off, or dead-lettered after the last attempt)."},
			[]string{"feature", "egress", "outcome"}),
		late: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "message_lateness_seconds",
			Help: "How long after its due time a delayed message (SendAfter) was delivered, by sending feature.", Buckets: lateBuckets},
			[]string{"feature"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_dead_lettered_total",
			Help: "Messages dropped undelivered (after their last attempt, or to a target that does not receive messages), by sending feature and egress."},
			[]string{"feature", "egress"}),
		hopLimit: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_hop_limit_total",
			Help: "Sends refused because the chain of sends from one event reached the hop limit, by sending feature."},
			[]string{"feature"}),
	}
	reg.MustRegister(m.delivered, m.late, m.deadLettered, m.hopLimit)
	return m
}

// Delivered records one delivery.
func (o observer) Delivered(fqn, egress string, late time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	o.m.messages.delivered.WithLabelValues(fqn, egress, outcome).Inc()
	if late > 0 && err == nil {
		o.m.messages.late.WithLabelValues(fqn).Observe(late.Seconds())
	}
}

// DeadLettered records a message dropped undelivered.
func (o observer) DeadLettered(fqn, egress string) {
	o.m.messages.deadLettered.WithLabelValues(fqn, egress).Inc()
}

// HopLimit records a send refused at the hop limit.
func (o observer) HopLimit(fqn string) { o.m.messages.hopLimit.WithLabelValues(fqn).Inc() }
