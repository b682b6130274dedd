// Package influx writes the centre's history to InfluxDB, the measurements
// of SPEC §3 that parks' engineers build their Grafana panels on:
// reading (one point per reading) and alarm_event (one per alarm event).
// It talks to the /api/v2 write endpoint through influxdb-client-go/v2, so
// the same calls serve InfluxDB 2.x (bucket and org) and 1.8, whose
// compatibility endpoint takes the bucket as "database/retention-policy"
// and a token "user:password" (or none).
//
//	feeder ── AddReadings / AddAlarmEvents: encode, never wait (ErrFull at MaxPending)
//	            │
//	            ▼
//	          current batch (line protocol) ── BatchSize points or FlushInterval ──► queue
//	                                                                                  │
//	          senders (Concurrency) ── HTTP write, retried with backoff ──► InfluxDB ◄┘
//	            │
//	            └─► each Add's done callback, once all its points are written
//
// The feeder acknowledges its source in the done callback (internal/centre
// acks the READINGS JetStream message there), so points that were never
// written are never acknowledged and come again after a restart. Writes
// are idempotent: a point's identity is its measurement, tag set and
// timestamp; the tags come from the plant, never from how a reading
// arrived, so a replayed reading overwrites its own point.
package influx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
	"unsafe"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/internal/model"
)

// Defaults of Options.
const (
	DefaultBucket         = "hazardwatch/autogen"
	DefaultBatchSize      = 5000
	DefaultFlushInterval  = time.Second
	DefaultMaxPending     = 200_000
	DefaultConcurrency    = 2
	DefaultRequestTimeout = 30 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// Errors of AddReadings and AddAlarmEvents.
var (
	// ErrFull: the writer holds MaxPending points; wait on Room and add
	// again.
	ErrFull = errors.New("influx: writer full")
	// ErrStopped: Run has returned.
	ErrStopped = errors.New("influx: writer stopped")
)

// Options configure a Writer. Zero fields take the defaults above.
type Options struct {
	// URL of the InfluxDB server, e.g. http://127.0.0.1:8086 (required).
	URL string
	// Token: an InfluxDB 2.x API token; for 1.8 "user:password", or empty
	// when authentication is off.
	Token string
	// Org is the 2.x organisation; 1.8 ignores it.
	Org string
	// Bucket: a 2.x bucket, or for 1.8 "database/retention-policy"
	// (default hazardwatch/autogen). The writer retries until it exists;
	// on 1.x EnsureBucket creates it.
	Bucket string
	// Retention is the duration of the retention policy EnsureBucket
	// creates on 1.x (default DefaultRetention, 30 days); the writer
	// ignores it.
	Retention time.Duration
	// AlterRetention makes EnsureBucket set Retention on a policy that
	// exists already (1.x's autogen keeps data for ever).
	AlterRetention bool
	// Plant names the sensors of readings (required for AddReadings).
	Plant *model.Plant
	// BatchSize is the number of points a write aims at; a batch holds
	// whole Adds, so it may run over by one Add.
	BatchSize int
	// FlushInterval is the longest a point waits for its batch to fill.
	FlushInterval time.Duration
	// MaxPending bounds the points held (encoded, queued or being
	// written): about 200 bytes each.
	MaxPending int
	// Concurrency is the number of writes in flight.
	Concurrency int
	// RequestTimeout bounds one write request.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between the attempts of a
	// failing write, which doubles from the one to the other (with jitter).
	MinBackoff, MaxBackoff time.Duration
	// Registerer, when set, gets the writer's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock stamps the writer's own times (when it started failing).
	Clock func() time.Time
}

// Writer batches points and writes them to InfluxDB. Adding never waits;
// it is safe for concurrent use.
type Writer struct {
	o      Options
	log    *slog.Logger
	client influxdb2.Client
	api    api.WriteAPIBlocking
	tags   readingTags
	m      *metrics

	mu              sync.Mutex
	cur             *batch
	queue           []*batch // sealed, waiting for a sender
	pending         int      // points added and not yet written or rejected
	pendingReadings int
	stopped         bool
	room            chan struct{} // closed (and replaced) whenever pending goes down
	stats           Stats
	// failing: the first failure of the current run of failed writes,
	// and when it was last logged.
	failingSince, failLogged time.Time
	failAttempts             int

	wake chan struct{} // cap 1: a batch is waiting, or the current one started
}

// Stats is what the writer has done so far.
type Stats struct {
	// Pending points: added, not yet written or rejected; PendingReadings
	// those of them that are readings.
	Pending, PendingReadings int
	// Readings and AlarmEvents written; Rejected points InfluxDB refused
	// for good (malformed, or older than the retention policy).
	Readings, AlarmEvents, Rejected uint64
	// NewestReading is the newest timestamp (Unix ms) of the live readings
	// written, 0 before the first; late readings (replays) do not count.
	NewestReading int64
	// FailingSince is when writes started failing, zero while they succeed.
	FailingSince time.Time
}

type batch struct {
	buf              []byte
	readings, events int
	dones            []func()
	started          time.Time // when its first point came
	newest           int64     // newest live reading, Unix ms
}

func (b *batch) points() int { return b.readings + b.events }

// New checks o and makes a Writer; Run writes.
func New(o Options) (*Writer, error) {
	if o.URL == "" {
		return nil, errors.New("influx: Options.URL is required")
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	o.BatchSize = orInt(o.BatchSize, DefaultBatchSize)
	o.MaxPending = orInt(o.MaxPending, DefaultMaxPending)
	o.Concurrency = orInt(o.Concurrency, DefaultConcurrency)
	o.FlushInterval = orDur(o.FlushInterval, DefaultFlushInterval)
	o.RequestTimeout = orDur(o.RequestTimeout, DefaultRequestTimeout)
	o.MinBackoff = orDur(o.MinBackoff, DefaultMinBackoff)
	o.MaxBackoff = max(orDur(o.MaxBackoff, DefaultMaxBackoff), o.MinBackoff)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Writer{o: o, log: o.Logger, m: m, room: make(chan struct{}), wake: make(chan struct{}, 1)}
	if o.Plant != nil {
		w.tags = newReadingTags(o.Plant)
	}
	// Timestamps in nanoseconds: readings carry milliseconds, alarm events
	// the centre's clock. The request timeout is ours (a context per
	// write); the client's own, in whole seconds, is a backstop above it.
	copts := influxdb2.DefaultOptions().
		SetApplicationName("hazardwatch").
		SetPrecision(time.Nanosecond).
		SetHTTPRequestTimeout(uint(o.RequestTimeout/time.Second) + 5)
	w.client = influxdb2.NewClientWithOptions(o.URL, o.Token, copts)
	w.api = w.client.WriteAPIBlocking(o.Org, o.Bucket)
	m.pendingFn = func() float64 { return float64(w.Stats().Pending) }
	return w, nil
}

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// AddReadings encodes rs as points of the reading measurement. done, when
// not nil, is called once all of them are written (or InfluxDB refused them
// for good), from one of the writer's goroutines; it is never called for
// points the writer still held when Run returned. A reading of a sensor
// the plant does not have is skipped. It never waits: when the writer holds
// MaxPending points it returns ErrFull and takes nothing.
func (w *Writer) AddReadings(rs []model.Reading, done func()) error {
	if w.tags == nil {
		return errors.New("influx: AddReadings needs Options.Plant")
	}
	n := len(rs)
	w.mu.Lock()
	b, err := w.admit(n)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	for i := range rs {
		r := &rs[i]
		if r.SensorIdx < 0 || int(r.SensorIdx) >= len(w.tags) {
			n--
			continue
		}
		b.buf = appendReading(b.buf, w.tags, r)
		if !r.Late {
			b.newest = max(b.newest, r.TS)
		}
	}
	b.readings += n
	w.pendingReadings += n
	w.added(b, n, done)
	w.mu.Unlock()
	return nil
}

// AddAlarmEvents encodes evs as points of the alarm_event measurement; done,
// the errors and the waiting are as for AddReadings.
func (w *Writer) AddAlarmEvents(evs []AlarmEvent, done func()) error {
	w.mu.Lock()
	b, err := w.admit(len(evs))
	if err != nil {
		w.mu.Unlock()
		return err
	}
	for i := range evs {
		b.buf = appendAlarmEvent(b.buf, &evs[i])
	}
	b.events += len(evs)
	w.added(b, len(evs), done)
	w.mu.Unlock()
	return nil
}

// admit returns the batch that takes n more points. Called with w.mu held.
func (w *Writer) admit(n int) (*batch, error) {
	if w.stopped {
		return nil, ErrStopped
	}
	// An empty writer takes any Add, so that one larger than MaxPending
	// cannot stall its feeder for ever.
	if w.pending > 0 && w.pending+n > w.o.MaxPending {
		return nil, ErrFull
	}
	if w.cur == nil {
		w.cur = &batch{buf: make([]byte, 0, 64<<10), started: time.Now()}
		w.signal()
	}
	return w.cur, nil
}

// added accounts for n points added to b with done. Called with w.mu held.
func (w *Writer) added(b *batch, n int, done func()) {
	w.pending += n
	if done != nil {
		b.dones = append(b.dones, done)
	}
	if b.points() >= w.o.BatchSize {
		w.queue = append(w.queue, b)
		w.cur = nil
		w.signal()
	}
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Room returns a channel that is closed the next time points are written
// or refused, making room. A feeder takes it before an Add and, on
// ErrFull, waits for it.
func (w *Writer) Room() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.room
}

// Stats returns what the writer has done so far.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending, s.PendingReadings = w.pending, w.pendingReadings
	s.FailingSince = w.failingSince
	return s
}

// Run writes batches until ctx ends, then closes the client. Points still
// held are dropped from memory and their done callbacks never called: the
// feeder's source holds them and delivers them again.
func (w *Writer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range w.o.Concurrency {
		wg.Go(func() { w.sender(ctx) })
	}
	wg.Wait()
	w.mu.Lock()
	w.stopped = true
	close(w.room)
	w.mu.Unlock()
	w.client.Close()
	return nil
}

func (w *Writer) sender(ctx context.Context) {
	for {
		b := w.next(ctx)
		if b == nil {
			return
		}
		w.send(ctx, b)
	}
}

// next returns the next batch to write: a full one, or the current one
// once it is FlushInterval old; nil when ctx ends.
func (w *Writer) next(ctx context.Context) *batch {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			b := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			if len(w.queue) > 0 {
				w.signal() // another sender may take the next one
			}
			w.mu.Unlock()
			return b
		}
		wait := time.Duration(-1)
		if w.cur != nil {
			age := time.Since(w.cur.started)
			if age >= w.o.FlushInterval {
				b := w.cur
				w.cur = nil
				w.mu.Unlock()
				return b
			}
			wait = w.o.FlushInterval - age
		}
		w.mu.Unlock()
		var tc <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		case <-tc:
		}
	}
}

// send writes b until InfluxDB takes it, refuses it for good, or ctx ends.
func (w *Writer) send(ctx context.Context, b *batch) {
	if len(b.buf) == 0 { // every reading of it named an unknown sensor
		w.finish(b, false)
		return
	}
	// The buffer is never written again once sealed, so the body shares
	// it instead of copying a megabyte per batch.
	body := unsafe.String(unsafe.SliceData(b.buf), len(b.buf))
	backoff := w.o.MinBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, w.o.RequestTimeout)
		err := w.api.WriteRecord(rctx, body)
		cancel()
		w.m.writeSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			w.m.writes.ok.Inc()
			w.finish(b, false)
			return
		}
		if ctx.Err() != nil {
			return
		}
		var he *http2.Error
		if errors.As(err, &he) && refused(he.StatusCode) {
			w.m.writes.rejected.Inc()
			w.m.rejected.Add(float64(b.points()))
			w.log.Error("InfluxDB refused a batch for good; its points are not written",
				"points", b.points(), "status", he.StatusCode, "err", err)
			w.finish(b, true)
			return
		}
		w.m.writes.failed.Inc()
		w.m.storeErrors.Inc()
		w.failed(err, b.points())
		wait := backoff
		if he != nil && he.RetryAfter > 0 {
			wait = max(wait, time.Duration(he.RetryAfter)*time.Second)
		}
		// Jitter: writers of several centres do not retry in step.
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, w.o.MaxBackoff)
	}
}

// refused reports whether a write answered with status will never succeed:
// malformed line protocol, a field of another type than the series has,
// points outside the retention policy (InfluxDB 1.8 answers 400 "partial
// write" and keeps the other points; 2.x 400 or 422). Anything else
// (unreachable, 401/403 until the token is fixed, 404 until the bucket
// exists, 429, 5xx) is retried.
func refused(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusUnprocessableEntity || status == http.StatusRequestEntityTooLarge
}

// failed logs a failed write: the first of a run at once, then once a
// minute while they go on failing.
func (w *Writer) failed(err error, points int) {
	now := w.o.Clock()
	w.mu.Lock()
	first := w.failingSince.IsZero()
	if first {
		w.failingSince, w.failAttempts = now, 0
	}
	w.failAttempts++
	logIt := first || now.Sub(w.failLogged) >= time.Minute
	if logIt {
		w.failLogged = now
	}
	since, attempts, pending := w.failingSince, w.failAttempts, w.pending
	w.mu.Unlock()
	if !logIt {
		return
	}
	if first {
		w.log.Warn("writing to InfluxDB failed; retrying with backoff (nothing is lost: the stream keeps what is not written)",
			"url", w.o.URL, "bucket", w.o.Bucket, "err", err, "batch_points", points, "pending_points", pending)
		return
	}
	w.log.Warn("InfluxDB still not writable", "failing_for", now.Sub(since).Round(time.Second),
		"failed_writes", attempts, "pending_points", pending, "err", err)
}

// finish accounts for a batch written (or refused), wakes feeders waiting
// for room and calls the batch's done callbacks.
func (w *Writer) finish(b *batch, rejected bool) {
	w.mu.Lock()
	w.pending -= b.points()
	w.pendingReadings -= b.readings
	if rejected {
		w.stats.Rejected += uint64(b.points())
	} else {
		w.stats.Readings += uint64(b.readings)
		w.stats.AlarmEvents += uint64(b.events)
		w.stats.NewestReading = max(w.stats.NewestReading, b.newest)
	}
	var recovered time.Duration
	var attempts int
	if !rejected && !w.failingSince.IsZero() {
		recovered, attempts = w.o.Clock().Sub(w.failingSince), w.failAttempts
		w.failingSince, w.failAttempts = time.Time{}, 0
	}
	close(w.room)
	w.room = make(chan struct{})
	pending := w.pending
	w.mu.Unlock()
	if !rejected {
		w.m.readings.Add(float64(b.readings))
		w.m.events.Add(float64(b.events))
	}
	if recovered > 0 {
		w.log.Info("InfluxDB writable again", "failed_for", recovered.Round(time.Millisecond),
			"failed_writes", attempts, "pending_points", pending)
	}
	for _, done := range b.dones {
		done()
	}
}

// helpStoreWriteErrors must equal the help of every other store's
// hw_store_write_errors_total (ingest.HelpStoreWriteErrors): a Prometheus
// registry refuses one name with two help strings. Copied, not imported,
// so that this package does not depend on ingest.
const helpStoreWriteErrors = "Writes to a store that failed."

type metrics struct {
	readings, events prometheus.Counter
	rejected         prometheus.Counter
	writes           struct{ ok, failed, rejected prometheus.Counter }
	storeErrors      prometheus.Counter
	writeSeconds     prometheus.Histogram
	pendingFn        func() float64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	points := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_influx_points_written_total",
		Help: "Points written to InfluxDB, by measurement.",
	}, []string{"measurement"})
	m.readings = points.WithLabelValues(MeasurementReading)
	m.events = points.WithLabelValues(MeasurementAlarmEvent)
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hw_influx_writes_total",
		Help: "Write requests to InfluxDB by result: ok, failed (retried with backoff), rejected (refused for good: malformed or outside the retention policy).",
	}, []string{"result"})
	m.writes.ok, m.writes.failed, m.writes.rejected = writes.WithLabelValues("ok"), writes.WithLabelValues("failed"), writes.WithLabelValues("rejected")
	m.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hw_influx_points_rejected_total",
		Help: "Points in write requests InfluxDB refused for good; some of them may have been written (a partial write).",
	})
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "hw_store_write_errors_total",
		Help:        helpStoreWriteErrors,
		ConstLabels: prometheus.Labels{"store": "influxdb"},
	})
	m.writeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hw_influx_write_seconds",
		Help:    "Duration of one write request to InfluxDB.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hw_influx_pending_points",
		Help: "Points the InfluxDB writer holds in memory: encoded, queued or being written.",
	}, func() float64 { return m.pendingFn() })
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{points, writes, m.rejected, m.storeErrors, m.writeSeconds, pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("influx: metrics: %w", err)
		}
	}
	return m, nil
}
