package ingest

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/internal/telemetry"
)

// Help texts of the metrics other packages register too, under another
// label value: Prometheus refuses two collectors of one name whose help
// differs, so those packages must use these texts word for word.
const (
	HelpPipelineLag      = "Seconds from a reading's timestamp (skew-corrected) to the stage handling it."
	HelpStoreWriteErrors = "Writes to a store that failed."
)

// metrics are ingest's Prometheus metrics. Counters the hot path touches are
// resolved to their label values once, so counting costs no map lookup.
type metrics struct {
	msgAccepted, msgRejected, msgDuplicate prometheus.Counter
	msgReplayed                            prometheus.Counter
	rdAccepted, rdRejected                 prometheus.Counter
	// rejected is indexed by telemetry.Reason.
	rejected []prometheus.Counter

	status         *prometheus.CounterVec
	connectRefused *prometheus.CounterVec
	storeErrors    prometheus.Counter
	online         prometheus.Gauge
	skew           *prometheus.GaugeVec
	lag            prometheus.Gauge
	batchMessages  prometheus.Histogram
	writeSeconds   prometheus.Histogram
	dedupBoots     prometheus.Gauge
	rebuildSecs    prometheus.Gauge
	dropped        *droppedCollector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_ingest_messages_total",
		Help: "Telemetry MQTT messages by result: accepted (stored, even when some or all readings were rejected), rejected (content refused as a whole), duplicate (already stored).",
	}, []string{"result"})
	readings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_ingest_readings_total",
		Help: "Readings of stored telemetry messages by result.",
	}, []string{"result"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_ingest_rejected_total",
		Help: "Rejected telemetry messages and readings by reason.",
	}, []string{"reason"})
	m := &metrics{
		msgAccepted:  messages.WithLabelValues("accepted"),
		msgRejected:  messages.WithLabelValues("rejected"),
		msgDuplicate: messages.WithLabelValues("duplicate"),
		msgReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hw_ingest_replayed_messages_total",
			Help: "Stored telemetry messages a gateway sent from its store-and-forward queue (marked replay): their readings are late.",
		}),
		rdAccepted: readings.WithLabelValues("accepted"),
		rdRejected: readings.WithLabelValues("rejected"),
		status: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_ingest_status_total",
			Help: "Gateway status messages by result (accepted, rejected).",
		}, []string{"result"}),
		connectRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_ingest_connect_refused_total",
			Help: "MQTT connections the embedded broker refused, by reason (no_credentials, bad_credentials, wrong_gateway, bad_certificate, will_not_authorized, tls_handshake).",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "hw_store_write_errors_total",
			Help:        HelpStoreWriteErrors,
			ConstLabels: prometheus.Labels{"store": "jetstream"},
		}),
		online: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hw_gateways_online",
			Help: "Gateways whose last status message said online.",
		}),
		skew: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hw_gateway_clock_skew_seconds",
			Help: "Gateway clock minus centre clock, measured from the gateway's last fresh online status message.",
		}, []string{"gateway"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "hw_pipeline_lag_seconds",
			Help:        HelpPipelineLag,
			ConstLabels: prometheus.Labels{"stage": "ingest"},
		}),
		batchMessages: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hw_ingest_batch_messages",
			Help:    "Telemetry messages per JetStream write (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hw_ingest_store_write_seconds",
			Help:    "Duration of one JetStream write of a batch, until its ack.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		dedupBoots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hw_ingest_dedup_boots",
			Help: "Gateway boots whose seen seqs the centre remembers.",
		}),
		rebuildSecs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hw_ingest_dedup_rebuild_seconds",
			Help: "Time the last start took to rebuild the dedup state from the READINGS stream.",
		}),
		dropped: &droppedCollector{desc: prometheus.NewDesc("hw_broker_dropped_total",
			"Messages the embedded broker dropped instead of delivering, by reason.", []string{"reason"}, nil)},
	}
	for _, r := range telemetry.Reasons() {
		for int(r) >= len(m.rejected) {
			m.rejected = append(m.rejected, nil)
		}
		m.rejected[r] = rejected.WithLabelValues(r.String())
	}
	m.status.WithLabelValues("accepted")
	m.status.WithLabelValues("rejected")
	for _, r := range refusedReasons {
		m.connectRefused.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{messages, m.msgReplayed, readings, rejected, m.status, m.connectRefused, m.storeErrors, m.online, m.skew,
		m.lag, m.batchMessages, m.writeSeconds, m.dedupBoots, m.rebuildSecs, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) reject(r telemetry.Reason) {
	if int(r) < len(m.rejected) && m.rejected[r] != nil {
		m.rejected[r].Inc()
	}
}

// droppedCollector reports hw_broker_dropped_total from the embedded
// broker's own counters and the drop hooks. mochi drops silently in three
// places: a client's outbound queue is full (OnPublishDropped), its inflight
// window is full or its packet ids are exhausted (counted in
// Info.InflightDropped only), and an inflight message expires
// (OnQosDropped).
type droppedCollector struct {
	desc *prometheus.Desc
	// info is the broker's, set once the broker exists.
	info            atomic.Pointer[mqtt.Server]
	queueFull       atomic.Uint64
	inflightExpired atomic.Uint64
}

func (d *droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *droppedCollector) Collect(ch chan<- prometheus.Metric) {
	var inflightFull int64
	if s := d.info.Load(); s != nil {
		inflightFull = atomic.LoadInt64(&s.Info.InflightDropped)
	}
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.queueFull.Load()), "queue_full")
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(inflightFull), "inflight_full")
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.inflightExpired.Load()), "inflight_expired")
}
