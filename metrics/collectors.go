package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/osprey-ml/osprey/host"
)

// Host registers the Wasm host's series, read from h.Stats when scraped: instances (live,
// busy), calls that waited for an instance, module compiles and their time, and guest
// memory in use, reserved and budgeted.
func (m *Metrics) Host(h *host.Host) {
	m.reg.MustRegister(hostCollector{h: h})
}

var (
	hostModules      = desc("wasm_modules", "Compiled Wasm modules (one per module content and memory limit).")
	hostInstances    = desc("wasm_instances", "Live Wasm instances, idle or busy.")
	hostBusy         = desc("wasm_instances_busy", "Wasm instances running a call.")
	hostWaits        = desc("wasm_instance_waits_total", "Calls that waited for a Wasm instance because all of their module's were busy.")
	hostCompiles     = desc("wasm_module_compiles_total", "Wasm module compiles.")
	hostCompileTime  = desc("wasm_module_compile_seconds_total", "Time spent compiling Wasm modules.")
	hostMemInUse     = desc("wasm_memory_in_use_bytes", "Guest memory charged to the budget by live instances.")
	hostMemReserved  = desc("wasm_memory_reserved_bytes", "Guest memory reserved by the loaded modules (one instance each at its ceiling).")
	hostMemBudget    = desc("wasm_memory_budget_bytes", "The guest memory budget (--memory-budget).")
	hostModuleBlobs  = desc("wasm_module_bytes", "Bytes of the Wasm modules the host keeps.")
	notifierLag      = prometheus.NewDesc(namespace+"_notifier_lag_entries", "Notifications not yet delivered to a consumer group; -1 when the notifier cannot tell.", []string{"group"}, nil)
	notifierPending  = prometheus.NewDesc(namespace+"_notifier_pending_entries", "Notifications delivered to a consumer group and not yet acknowledged.", []string{"group"}, nil)
	notifierScrapeOK = desc("notifier_backlog_up", "1 when the last scrape read the notifier's backlog, 0 when it failed.")
)

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, nil, nil)
}

type hostCollector struct{ h *host.Host }

func (c hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hostModules, hostInstances, hostBusy, hostWaits, hostCompiles, hostCompileTime,
		hostMemInUse, hostMemReserved, hostMemBudget, hostModuleBlobs} {
		ch <- d
	}
}

func (c hostCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(hostModules, float64(s.Modules))
	gauge(hostInstances, float64(s.Instances))
	gauge(hostBusy, float64(s.InstancesBusy))
	counter(hostWaits, float64(s.Waits))
	counter(hostCompiles, float64(s.Compiles))
	counter(hostCompileTime, s.CompileTime.Seconds())
	gauge(hostMemInUse, float64(s.MemoryInUse))
	gauge(hostMemReserved, float64(s.MemoryReserved))
	gauge(hostMemBudget, float64(s.MemoryBudget))
	gauge(hostModuleBlobs, float64(s.BlobBytes))
}

// GroupBacklog is one consumer group's backlog, as a notifier that can report it does
// (the redis notifier's Backlog).
type GroupBacklog struct {
	Group        string
	Lag, Pending int64
}

// Backlogger is a notifier that reports its consumer groups' backlog.
type Backlogger interface {
	Backlog(ctx context.Context) ([]GroupBacklog, error)
}

// backlogTimeout bounds reading the backlog at a scrape.
const backlogTimeout = 2 * time.Second

// Notifier registers the notifier's backlog per consumer group, read from b when scraped
// (bounded by backlogTimeout; osprey_notifier_backlog_up says whether it was read).
func (m *Metrics) Notifier(b Backlogger) {
	m.reg.MustRegister(notifierCollector{b: b})
}

type notifierCollector struct{ b Backlogger }

func (c notifierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notifierLag
	ch <- notifierPending
	ch <- notifierScrapeOK
}

func (c notifierCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	gs, err := c.b.Backlog(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(notifierScrapeOK, prometheus.GaugeValue, up)
	for _, g := range gs {
		ch <- prometheus.MustNewConstMetric(notifierLag, prometheus.GaugeValue, float64(g.Lag), g.Group)
		ch <- prometheus.MustNewConstMetric(notifierPending, prometheus.GaugeValue, float64(g.Pending), g.Group)
	}
}
