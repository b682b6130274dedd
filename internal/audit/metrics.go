package audit

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records prometheus.Counter
	errors  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hw_audit_records_total",
			Help: "Audit records this process appended (durable).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_audit_errors_total",
			Help: "Audit log failures by op: write (a record not stored), head (the head file not written), torn (an incomplete last line cut at start), mismatch (the head file disagreed with the log at Open), prune.",
		}, []string{"op"}),
	}
	for _, op := range []string{"write", "head", "torn", "mismatch", "prune"} {
		m.errors.WithLabelValues(op)
	}
	return m
}

// Collector is the Log's metrics, hw_audit_records_total and
// hw_audit_errors_total{op}; register it once.
func (l *Log) Collector() prometheus.Collector { return auditCollector{l.met} }

type auditCollector struct{ m *metrics }

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) {
	c.m.records.Describe(ch)
	c.m.errors.Describe(ch)
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.records.Collect(ch)
	c.m.errors.Collect(ch)
}
