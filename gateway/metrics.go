package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hazardwatch/gateway/queue"
	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// metrics are what a plant network engineer reads on the gateway's own
// /metrics: polls, read errors by device and code, the uplink backlog and
// the publish latency.
type metrics struct {
	reg       *prometheus.Registry
	polls     *prometheus.CounterVec // device
	readings  *prometheus.CounterVec // device, quality
	errors    *prometheus.CounterVec // device, reason
	publish   prometheus.Histogram   // Publish → PUBACK
	uplink    prometheus.Gauge       // 1 while the MQTT connection is open
	lastCycle prometheus.Gauge       // Unix time of the last poll cycle
	overruns  *prometheus.CounterVec // device: slots missed
	backoff   *prometheus.GaugeVec   // device: the current back-off wait
	lost      prometheus.Counter     // readings the queue could not keep

	connectFailures prometheus.Counter // connects to the broker that failed

	constLabels prometheus.Labels
}

func newMetrics(gateway string) *metrics {
	c := prometheus.Labels{"gateway": gateway}
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		polls:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hw_gateway_polls_total", Help: "Poll cycles of a device.", ConstLabels: c}, []string{"device"}),
		readings:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hw_gateway_readings_total", Help: "Readings by device and quality.", ConstLabels: c}, []string{"device", "quality"}),
		errors:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hw_gateway_read_errors_total", Help: "Readings that could not be read or are not trustworthy, by device and reason (timeout, exception_02, out_of_range, …).", ConstLabels: c}, []string{"device", "reason"}),
		publish:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hw_gateway_publish_seconds", Help: "Time from publishing a message to its PUBACK.", ConstLabels: c, Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		uplink:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw_gateway_uplink_up", Help: "1 while the MQTT connection to the centre is open.", ConstLabels: c}),
		lastCycle: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw_gateway_last_cycle_timestamp_seconds", Help: "When the last poll cycle's message was made.", ConstLabels: c}),
		overruns:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hw_gateway_poll_overruns_total", Help: "Poll slots a device missed because its previous poll had not ended (a slow device, or one timing out).", ConstLabels: c}, []string{"device"}),
		backoff:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hw_gateway_backoff_seconds", Help: "How long the gateway waits before asking a device that did not answer (or said it is busy) again; 0 while it answers.", ConstLabels: c}, []string{"device"}),
		lost:      prometheus.NewCounter(prometheus.CounterOpts{Name: "hw_gateway_lost_readings_total", Help: "Readings lost because the store-and-forward queue could not write them to disk (see the log).", ConstLabels: c}),
	}
	m.connectFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "hw_gateway_connect_failures_total", Help: "Connects to the MQTT broker that failed (refused, unreachable, bad credentials; the log says why).", ConstLabels: c})
	m.reg.MustRegister(m.polls, m.readings, m.errors, m.publish, m.uplink, m.lastCycle, m.overruns, m.backoff, m.lost, m.connectFailures)
	m.constLabels = c
	return m
}

// watchQueue exports the store-and-forward queue's depth, age and drops,
// read from the queue when scraped.
func (m *metrics) watchQueue(q *queue.Queue) {
	c := m.constLabels
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hw_gateway_queue_messages", Help: "Messages in the store-and-forward queue, waiting for the broker's acknowledgement.", ConstLabels: c}, func() float64 { return float64(q.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hw_gateway_queue_bytes", Help: "Bytes in the store-and-forward queue.", ConstLabels: c}, func() float64 { return float64(q.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hw_gateway_queue_age_seconds", Help: "How long the oldest queued message has waited.", ConstLabels: c}, func() float64 { return q.OldestAge().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hw_gateway_dropped_total", Help: "Oldest messages dropped because the queue was full (by size or age).", ConstLabels: c}, func() float64 { return float64(q.Dropped()) }),
	)
}

// deviceCounters are one device's counters, resolved from their label
// values once (errors by reason on first use), so that counting a reading
// costs no label lookup. A device's goroutine alone uses them.
type deviceCounters struct {
	device   string
	polls    prometheus.Counter
	readings [model.Bad + 1]prometheus.Counter
	errors   []prometheus.Counter // by model.QualityReason
}

func (m *metrics) forDevice(device string) *deviceCounters {
	d := &deviceCounters{device: device, polls: m.polls.WithLabelValues(device)}
	for q := range d.readings {
		d.readings[q] = m.readings.WithLabelValues(device, model.Quality(q).String())
	}
	return d
}

// count records one device's readings; polled is false for a slot of a
// device in back-off, which was not asked.
func (m *metrics) count(d *deviceCounters, outs []telemetry.Out, polled bool) {
	if polled {
		d.polls.Inc()
	}
	for _, o := range outs {
		if int(o.Quality) < len(d.readings) {
			d.readings[o.Quality].Inc()
		}
		if o.Reason == model.ReasonNone {
			continue
		}
		for int(o.Reason) >= len(d.errors) {
			d.errors = append(d.errors, nil)
		}
		if d.errors[o.Reason] == nil {
			d.errors[o.Reason] = m.errors.WithLabelValues(d.device, o.Reason.String())
		}
		d.errors[o.Reason].Inc()
	}
}

// Gatherer is the gateway's metrics, for a process that serves several
// gateways' metrics on one port (the demo).
func (g *Gateway) Gatherer() prometheus.Gatherer { return g.m.reg }

// Handler serves /healthz and /metrics on the gateway's local port.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := g.health()
		w.Header().Set("Content-Type", "application/json")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	return mux
}

// healthReport is the body of /healthz.
type healthReport struct {
	OK bool `json:"ok"`
	// Polling: a poll cycle ended within three poll periods.
	Polling bool `json:"polling"`
	// Uplink: the MQTT connection is open.
	Uplink  bool   `json:"uplink"`
	Pending int    `json:"pending"`
	Boot    string `json:"boot"`
}

// health is healthy while the gateway polls: an uplink that is down is
// reported, but the gateway keeps readings and is doing its job.
func (g *Gateway) health() healthReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	polling := !g.lastCycle.IsZero() && g.o.Clock().Sub(g.lastCycle) < 3*g.period
	return healthReport{OK: polling, Polling: polling, Uplink: g.uplinkUp, Pending: g.q.Len(), Boot: g.boot}
}
