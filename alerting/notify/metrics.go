package notify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the chain's Prometheus metrics. Series of the configured
// notifiers and of every outcome exist from the start, at 0, so that a
// rate() over them works before the first failure.
type metrics struct {
	outcomes    [numOutcomes]prometheus.Counter
	rateLimited [2]prometheus.Counter // sensor, enterprise
	messages    *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	delivery    *prometheus.HistogramVec
	collectors  []prometheus.Collector
}

func newMetrics(notifiers []string) *metrics {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_notifications_total",
		Help: "Alarm notifications by what became of them: sent, dropped_shelved, dropped_suppressed, duplicate, rate_limited, unrouted, failed, invalid.",
	}, []string{"result"})
	rateLimited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_notifications_rate_limited_total",
		Help: "First notices (raised, level_changed) dropped by the rate limit, by the limit that dropped them (sensor, enterprise).",
	}, []string{"scope"})
	m := &metrics{
		rateLimited: [2]prometheus.Counter{rateLimited.WithLabelValues("sensor"), rateLimited.WithLabelValues("enterprise")},
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_notification_messages_total",
			Help: "Messages (one per recipient and channel, or per notification for a webhook) by notifier and result: sent, refused (not worth a retry), gave_up (still failing at the deadline).",
		}, []string{"notifier", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_notification_attempts_total",
			Help: "Attempts to deliver a message, by notifier and result (ok, error).",
		}, []string{"notifier", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_notification_retries_total",
			Help: "Retries of a message after a failure worth retrying, by notifier.",
		}, []string{"notifier"}),
		delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hw_notification_delivery_seconds",
			Help:    "Seconds from an alarm event made durable to its message delivered, by notifier.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600},
		}, []string{"notifier"}),
	}
	for o := outSent; o < numOutcomes; o++ {
		m.outcomes[o] = outcomes.WithLabelValues(o.String())
	}
	for _, n := range notifiers {
		for _, r := range []string{"sent", "refused", "gave_up"} {
			m.messages.WithLabelValues(n, r)
		}
		m.attempts.WithLabelValues(n, "ok")
		m.attempts.WithLabelValues(n, "error")
		m.retries.WithLabelValues(n)
		m.delivery.WithLabelValues(n)
	}
	m.collectors = []prometheus.Collector{outcomes, rateLimited, m.messages, m.attempts, m.retries, m.delivery}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) outcome(o outcome) {
	if o > outPending && o < numOutcomes {
		m.outcomes[o].Inc()
	}
}

func (m *metrics) message(notifier string, r result) {
	label := "sent"
	switch r {
	case resRefused:
		label = "refused"
	case resGaveUp:
		label = "gave_up"
	}
	m.messages.WithLabelValues(notifier, label).Inc()
}

func (m *metrics) attempt(notifier string, err error) {
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.attempts.WithLabelValues(notifier, r).Inc()
}

func (m *metrics) retry(notifier string) { m.retries.WithLabelValues(notifier).Inc() }

func (m *metrics) delivered(notifier string, d time.Duration) {
	m.delivery.WithLabelValues(notifier).Observe(max(d, 0).Seconds())
}
