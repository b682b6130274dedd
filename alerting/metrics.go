package alerting

import (
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/internal/model"
)

// The alarm metrics of SPEC §5: hw_alarm_events_total{event}, counted as
// each durable event is applied live (not when the log is replayed at
// start), and hw_alarms{state}, read from the alarms when scraped.
var (
	alarmsDesc = prometheus.NewDesc("hw_alarms", "Alarms by ISA-18.2 state (normal alarms, ended, are not counted).", []string{"state"}, nil)
)

type metrics struct {
	events *prometheus.CounterVec
}

// Collector is the Manager's metrics; register it once.
func (m *Manager) Collector() prometheus.Collector { return managerCollector{m} }

type managerCollector struct{ m *Manager }

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- alarmsDesc
	c.m.met.events.Describe(ch)
}

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	var n [model.StateOutOfService + 1]int
	c.m.mu.Lock()
	for _, a := range c.m.alarms {
		if int(a.State) < len(n) {
			n[a.State]++
		}
	}
	c.m.mu.Unlock()
	for s := model.StateUnackActive; s <= model.StateOutOfService; s++ {
		ch <- prometheus.MustNewConstMetric(alarmsDesc, prometheus.GaugeValue, float64(n[s]), s.String())
	}
	c.m.met.events.Collect(ch)
}

func newMetrics() metrics {
	return metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_alarm_events_total",
		Help: "Durable alarm events by name (raised, acknowledged, shelved, returned, cleared, …) since the centre started.",
	}, []string{"event"})}
}
