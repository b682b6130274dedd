// Package api owns what people and outside systems reach over HTTP (SPEC §3):
// the JSON API under /api/v1, the WebSocket that pushes alarm events and
// live readings, /healthz, /readyz, /metrics, and the control-room page.
//
// Every API request is authenticated by a bearer token (internal/auth) and
// authorised on the object it touches: a token sees the sensors and alarms
// of the enterprises its scope covers, and anything else is 403, never an
// empty list, so that a user cannot mistake "not allowed" for "all quiet".
//
// The WebSocket is fed by one hub goroutine that subscribes once to the
// alarm Manager, keeps the open alarms and a bounded ring of recent events,
// and fans events out to clients through bounded queues without ever
// waiting for one. Each client counts events in its own scope (enterprise,
// park, county or all) with the Manager's per-scope sequence numbers, so it
// can resume after a disconnect from the ring, or is told to reset.
//
// The package reads alarms, history and readings through small interfaces
// declared here; the wiring passes the real alerting.Manager, store.Store
// and the pipeline's latest values and reading feed.
package api

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hazardwatch/alerting"
	"hazardwatch/dashboards"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
)

// Alarms is what the API needs of the alarm Manager.
type Alarms interface {
	// Active returns the open alarms (every state but normal).
	Active() []alerting.Alarm
	// Get returns one alarm of any state, with its history.
	Get(id string) (alerting.Alarm, bool)
	// Select returns the alarms of any state that keep is true of,
	// without their histories.
	Select(keep func(*alerting.Alarm) bool) []alerting.Alarm
	// Ack acknowledges an alarm; it returns once the event is durable.
	Ack(ctx context.Context, id, user, comment string) error
	// Shelve hides an alarm for d with a reason, and Unshelve ends the
	// shelf by hand; both return once the event is durable.
	Shelve(ctx context.Context, id, user, reason string, d time.Duration) error
	Unshelve(ctx context.Context, id, user, comment string) error
	// Feedback records the enterprise's handling report (cause, action);
	// it returns once the event is durable.
	Feedback(ctx context.Context, id, user, cause, action string) error
	// KPIs are the alarm figures of a scope ("" for everything) over a
	// period, for the duty report.
	KPIs(scope, id string, from, to time.Time) alerting.KPIs
	// SubscribeSnapshot returns the open alarms and a channel of every
	// later event, gapless; a subscriber that falls behind is dropped (its
	// channel closed).
	SubscribeSnapshot(buffer int) (alerting.Snapshot, <-chan alerting.Event, func())
	// SubscribeFloods returns a channel of every flood's start and end
	// (alarm floods in an enterprise or a park) and its cancel.
	SubscribeFloods(buffer int) (<-chan alerting.Flood, func())
}

// History answers the history of one sensor: store.Store, or
// influx.History when InfluxDB is configured, with the same answers and
// the same errors (store.ErrBadRange for a bad range).
type History interface {
	History(ctx context.Context, sensor string, from, to time.Time, step time.Duration) ([]store.Bucket, error)
}

// Latest returns the newest reading of a sensor, held in memory.
type Latest interface {
	Latest(sensor int32) (model.Reading, bool)
}

// Readings delivers batches of live readings, for the WebSocket's readings
// frames. The batches are shared: the API never modifies one.
type Readings interface {
	SubscribeReadings(buffer int) (<-chan []model.Reading, func())
}

// Check is one component of /readyz.
type Check struct {
	Name  string
	Ready func(context.Context) error
	// Optional marks a component the centre's core does without for a
	// while, such as InfluxDB (its writes wait in the streams; only the
	// history API answers 503 meanwhile): its failure shows in /readyz's
	// checks and status "degraded", but the answer stays 200, so that a
	// load balancer or orchestrator does not take alarms and ingest away
	// with it.
	Optional bool
}

// Options configure a Server. Plant, Tokens and Alarms are required; a nil
// History answers 503 on history requests, a nil Latest gives sensors
// without values, a nil Readings sends no readings frames.
type Options struct {
	Plant *model.Plant
	// Rules by sensor index, for the limits of sensor objects; may be nil.
	Rules    []model.SensorRules
	Tokens   *auth.Store
	Alarms   Alarms
	History  History
	Latest   Latest
	Readings Readings
	// Design reads and changes the admin's Design (enterprise statuses,
	// instruments out of service); nil answers 503 to changes.
	Design Design
	// Audit records every action that changes something (ack, shelve,
	// feedback, status, out of service); nil records nothing.
	Audit  Auditor
	Checks []Check
	// Registry gets the API's metrics and is what /metrics serves; nil
	// makes a private one.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Clock    func() time.Time
	// MaxBody caps request bodies (413 above it); default 64 KiB.
	MaxBody int64
	// Limits per token and per client address (limits.go).
	Limits Limits

	// Tuning, left unexported: the defaults are the product's, tests shrink
	// them. Zero takes the default.
	ringSize      int           // alarm events kept for resume; 10 000
	clientQueue   int           // frames queued per WebSocket client; 1024
	alarmsBuffer  int           // the hub's subscription buffer at the Manager; 8192
	pingEvery     time.Duration // WebSocket ping period; 15 s
	pongWait      time.Duration // read deadline, extended by every pong; 2 × pingEvery
	writeWait     time.Duration // deadline of one frame's write; 10 s
	subscribeWait time.Duration // how long a new client may take to subscribe; 10 s
	readingsEvery time.Duration // at most one reading per sensor per this; 1 s
	flushEvery    time.Duration // how often held-back readings are looked at; 250 ms
}

// Limits of the API. A list page holds at most maxLimit items; a history at
// most maxBuckets buckets; a raw history spans at most maxRawRange.
const (
	defaultLimit = 100
	maxLimit     = 1000
	maxBuckets   = 10_000
	maxRawRange  = 24 * time.Hour
	ackTimeout   = 30 * time.Second
	checkTimeout = 3 * time.Second
)

// Server serves the API. Its hub runs from New until Close.
type Server struct {
	o       Options
	plant   *model.Plant
	log     *slog.Logger
	clock   func() time.Time
	metrics *metrics
	lim     *limiter
	hub     *hub
	handler http.Handler
	mux     *http.ServeMux
	upg     websocket.Upgrader
	// rules, when set, replaces Options.Rules after a reload (SetRules).
	rules atomic.Pointer[[]model.SensorRules]

	ctx    context.Context // ends at Close: stops the hub and every WebSocket
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  sync.WaitGroup // WebSocket handlers, which outlive the HTTP server's tracking once hijacked
}

// New checks the options, registers the metrics and starts the hub.
func New(o Options) (*Server, error) {
	if o.Plant == nil || o.Tokens == nil || o.Alarms == nil {
		return nil, errors.New("api: Options.Plant, Options.Tokens and Options.Alarms are required")
	}
	if o.Rules != nil && len(o.Rules) != len(o.Plant.Sensors) {
		return nil, fmt.Errorf("api: %d sensor rules for %d sensors", len(o.Rules), len(o.Plant.Sensors))
	}
	for _, c := range o.Checks {
		if c.Name == "" || c.Ready == nil {
			return nil, errors.New("api: a readiness Check needs a Name and a Ready func")
		}
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 64 << 10
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.ringSize, 10_000)
	def(&o.clientQueue, 1024)
	def(&o.alarmsBuffer, 8192)
	defd(&o.pingEvery, 15*time.Second)
	defd(&o.pongWait, 2*o.pingEvery)
	defd(&o.writeWait, 10*time.Second)
	defd(&o.subscribeWait, 10*time.Second)
	defd(&o.readingsEvery, time.Second)
	defd(&o.flushEvery, 250*time.Millisecond)

	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, plant: o.Plant, log: o.Logger, clock: o.Clock, metrics: m, lim: newLimiter(o.Limits, o.Clock)}
	// The default Origin check stays: a page of another site must not open
	// a WebSocket with a token it found in the URL.
	s.upg = websocket.Upgrader{HandshakeTimeout: 10 * time.Second}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hub = newHub(o, m)
	s.routes()
	go s.hub.run(s.ctx)
	return s, nil
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the hub, disconnects every WebSocket client (close 1001) and
// waits for their goroutines. Plain HTTP requests are the http.Server's to
// drain (Shutdown). Calling Close again does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.hub.done
	s.conns.Wait()
	return nil
}

// route is one route of the API: "METHOD /path" and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// apiRoutes are every route with a method, the one list the mux is built
// from and the OpenAPI test checks against openapi.json: a route added
// here and not documented there fails that test.
func (s *Server) apiRoutes() []route {
	return []route{
		{"GET /healthz", http.HandlerFunc(s.healthz)},
		{"GET /readyz", http.HandlerFunc(s.readyz)},
		{"GET /metrics", promhttp.HandlerFor(s.o.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)})},
		{"GET /api/v1/openapi.json", http.HandlerFunc(serveOpenAPI)},

		{"GET /api/v1/sensors", s.authed(s.listSensors)},
		{"GET /api/v1/sensors/{id}/history", s.authed(s.sensorHistory)},
		{"GET /api/v1/alarms", s.authed(s.listAlarms)},
		{"GET /api/v1/alarms/{id}", s.authed(s.getAlarm)},
		{"POST /api/v1/alarms/{id}/ack", s.authed(s.ackAlarm)},
		{"POST /api/v1/alarms/{id}/shelve", s.authed(s.shelveAlarm)},
		{"POST /api/v1/alarms/{id}/unshelve", s.authed(s.unshelveAlarm)},
		{"POST /api/v1/alarms/{id}/feedback", s.authed(s.feedbackAlarm)},
		{"GET /api/v1/reports/alarms", s.authed(s.alarmKPIs)},
		{"GET /api/v1/enterprises/{id}/status", s.authed(s.getEnterpriseStatus)},
		{"PUT /api/v1/enterprises/{id}/status", s.authed(s.putEnterpriseStatus)},
		{"POST /api/v1/sensors/{id}/out_of_service", s.authed(s.outOfService)},
		{"POST /api/v1/sensors/{id}/in_service", s.authed(s.inService)},
		{"GET /api/v1/ws", http.HandlerFunc(s.serveWS)},
	}
}

// openAPI is the API's OpenAPI 3 document (SPEC §3), kept true by
// openapi_test.go.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI needs no token: the document holds no data.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}

// routes builds the mux from apiRoutes. Go 1.22 patterns carry the method;
// the two catch-alls ("/api/" and the page's "/") answer a wrong method
// with a JSON 405 themselves, and serveHTTP turns any other plain-text
// error JSON.
func (s *Server) routes() {
	mux := http.NewServeMux()
	for _, rt := range s.apiRoutes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	// Anything else under /api/ is a JSON 404 (not the page), or a 405
	// when the path exists with another method: this catch-all matches
	// every method, so the mux would never say 405 under /api/ itself.
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := mux.Handler(r2); p != "" && p != "/api/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "方法不允许 / method not allowed")
			return
		}
		writeError(w, http.StatusNotFound, "接口不存在 / no such API route")
	})
	// The control-room page needs no token to load: it asks for one, and
	// every call it makes carries it.
	static := http.FileServerFS(dashboards.Web())
	// "/" rather than "GET /": the two would conflict with "/api/".
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "方法不允许 / method not allowed")
			return
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		static.ServeHTTP(w, r)
	}))
	s.mux = mux
	s.handler = http.HandlerFunc(s.serveHTTP)
}

// serveHTTP counts every request by its route pattern (a bounded label set)
// and makes every error JSON, the mux's and the file server's included.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "unmatched"
	}
	rw := &respWriter{ResponseWriter: w}
	defer func() {
		code := rw.status
		switch {
		case rw.hijacked:
			code = http.StatusSwitchingProtocols
		case code == 0:
			code = http.StatusOK
		case code == http.StatusRequestEntityTooLarge:
			// Only readBody's MaxBody check answers 413.
			s.metrics.limited.WithLabelValues(limitBody).Inc()
		}
		s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
	}()
	s.mux.ServeHTTP(rw, r)
}

// respWriter records the status and replaces a non-JSON error body (from
// http.Error in the mux, the file server or the WebSocket upgrader) with
// {"error": …}.
type respWriter struct {
	http.ResponseWriter
	status   int
	swallow  bool
	hijacked bool
}

func (w *respWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	h := w.Header()
	if code >= 400 && !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		h.Del("Content-Length")
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.ResponseWriter.WriteHeader(code)
		msg := http.StatusText(code)
		if code == http.StatusNotFound {
			msg = "未找到 / not found"
		} else if code == http.StatusMethodNotAllowed {
			msg = "方法不允许 / method not allowed"
		}
		b, _ := json.Marshal(errorBody{Error: msg})
		_, _ = w.ResponseWriter.Write(append(b, '\n'))
		w.swallow = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (which the WebSocket upgrader uses to
// hijack) reach the server's writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is for callers that assert http.Hijacker directly.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}

type errorBody struct {
	Error string `json:"error"`
}

// writeJSON writes v with status; a value that cannot be encoded is a 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "内部错误 / internal error: encoding the answer"})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type checkResult struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Optional bool   `json:"optional,omitempty"`
	Error    string `json:"error,omitempty"`
}

// readyz runs every check at once, each bounded by checkTimeout, and adds
// the hub's own: a centre whose alarm push is down is not ready for a
// control room. Any failing check but an optional one makes it 503,
// "unavailable"; failing optional checks alone leave it 200, "degraded".
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := append([]Check{{Name: "alarm_push", Ready: s.hub.ready}}, s.o.Checks...)
	res := make([]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
			defer cancel()
			// A check that ignores its context must not hold the probe:
			// its goroutine finishes on its own, into a buffered channel.
			done := make(chan error, 1)
			go func() { done <- c.Ready(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				err = fmt.Errorf("no answer within %s", checkTimeout)
			}
			res[i] = checkResult{Name: c.Name, OK: err == nil, Optional: c.Optional}
			if err != nil {
				res[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	status, word := http.StatusOK, "ok"
	var failed []string
	for _, c := range res {
		switch {
		case c.OK:
		case c.Optional:
			if status == http.StatusOK {
				word = "degraded"
			}
		default:
			status, word = http.StatusServiceUnavailable, "unavailable"
			failed = append(failed, c.Name)
		}
	}
	// A 503 carries "error" like every other error answer.
	var msg string
	if failed != nil {
		msg = "未就绪 / not ready: " + strings.Join(failed, ", ")
	}
	writeJSON(w, status, struct {
		Status string        `json:"status"`
		Error  string        `json:"error,omitempty"`
		Checks []checkResult `json:"checks"`
	}{word, msg, res})
}

// timeMS formats a Unix-millisecond time as SPEC §3's RFC 3339 with
// milliseconds, in UTC.
func timeMS(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(timeLayout)
}

// timeLayout is every time the API answers: RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"
