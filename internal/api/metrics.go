package api

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of hw_api_auth_failures_total. Every value is created at zero so
// that a dashboard's rate() sees the first failure.
const (
	authMissing   = "missing"
	authMalformed = "malformed"
	authUnknown   = "unknown"
	authRevoked   = "revoked"
	authExpired   = "expired"
	authNotForAPI = "not_for_api" // a valid token of a role the API does not serve (a gateway's): 403
)

// Reasons of hw_ws_dropped_total: why the server ended a WebSocket.
const (
	dropSlow     = "slow_client"  // its send queue was full when an alarm event came
	dropResync   = "resync"       // the hub lost its alarm subscription and took a new one
	dropShutdown = "shutdown"     // the server is closing
	dropToken    = "token"        // the token was revoked or expired while connected
	dropWrite    = "write_error"  // a write failed or timed out (the client went away)
	dropPong     = "read_timeout" // no pong (nor anything else) within the pong deadline
)

// Reasons of hw_api_history_errors_total: history requests the store could
// not answer.
const (
	historyUnavailable = "unavailable" // the store cannot answer for now (InfluxDB down, closing): 503
	historyFailed      = "failed"      // the query failed otherwise: 500
)

// helpPipelineLag must equal the help of every other stage's
// hw_pipeline_lag_seconds (ingest.HelpPipelineLag): a Prometheus registry
// refuses one name with two help strings. Copied, not imported, so that the
// API does not depend on ingest.
const helpPipelineLag = "Seconds from a reading's timestamp (skew-corrected) to the stage handling it."

type metrics struct {
	requests        *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	wsClients       prometheus.Gauge
	wsDropped       *prometheus.CounterVec
	readingsSkipped prometheus.Counter
	pushLag         prometheus.Gauge
	historyErrors   *prometheus.CounterVec
	limited         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_api_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_api_auth_failures_total",
			Help: "Requests refused at authentication, by reason: 401, or 403 for not_for_api (a gateway's token).",
		}, []string{"reason"}),
		wsClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hw_ws_clients",
			Help: "WebSocket clients subscribed to alarm pushes.",
		}),
		wsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_ws_dropped_total",
			Help: "WebSocket connections ended by the server, by reason.",
		}, []string{"reason"}),
		readingsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hw_ws_readings_skipped_total",
			Help: "Readings frames not queued because the client's send queue was half full.",
		}),
		// For stage="push" the lag runs from the alarm event's handling
		// (Event.At) to its write to a WebSocket client.
		pushLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "hw_pipeline_lag_seconds",
			Help:        helpPipelineLag,
			ConstLabels: prometheus.Labels{"stage": "push"},
		}),
		historyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_api_history_errors_total",
			Help: "History requests not answered, by reason: unavailable (503: the store, InfluxDB when configured, cannot answer for now) or failed (500).",
		}, []string{"reason"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hw_api_limited_total",
			Help: "Requests refused by a limit: rate (429, per token), auth_failures (429, per client address), ws_connections (429, per token), body_size (413).",
		}, []string{"limit"}),
	}
	for _, r := range []string{limitRate, limitAuth, limitWS, limitBody} {
		m.limited.WithLabelValues(r)
	}
	for _, r := range []string{authMissing, authMalformed, authUnknown, authRevoked, authExpired, authNotForAPI} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{dropSlow, dropResync, dropShutdown, dropToken, dropWrite, dropPong} {
		m.wsDropped.WithLabelValues(r)
	}
	for _, r := range []string{historyUnavailable, historyFailed} {
		m.historyErrors.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.requests, m.authFailures, m.wsClients, m.wsDropped, m.readingsSkipped, m.pushLag, m.historyErrors, m.limited} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("api: metrics already registered (one Server per registry): %w", err)
			}
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	return m, nil
}
