package centre

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/alerting"
	"hazardwatch/ingest"
	"hazardwatch/internal/api"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/model"
)

// influxConsumerName is the durable consumer of READINGS and of ALARMS that
// feeds InfluxDB: independent of the pipeline's, so that an InfluxDB that
// is slow or down never holds up rules, alarms or the embedded history.
// The streams are the buffer of an outage: READINGS keeps 7 days.
const influxConsumerName = "influx"

// influxAckWait is how long JetStream waits for the acknowledgement of a
// message it delivered before it delivers it again. Messages the writer
// holds longer (InfluxDB down) are kept alive with InProgress, so an
// outage does not bring each of them back into memory a second time. It
// is short because it is also how long a restarted centre waits for the
// messages its previous run held unwritten: the embedded server keeps
// them pending across its restart (a Nak at shutdown is not kept).
const influxAckWait = 10 * time.Second

// influxMonitorEvery is how often the backlog and the lag are measured;
// from a lag of influxBehind the log says InfluxDB is behind and then
// logs the catch-up's progress every influxBehind, until the lag is down
// to influxCaughtUp (tests shorten them).
var (
	influxMonitorEvery = 2 * time.Second
	influxBehind       = 30 * time.Second
	influxCaughtUp     = 5 * time.Second
)

// startInflux starts the InfluxDB writer and its two feeds: READINGS into
// the reading measurement, ALARMS into alarm_event.
func (c *Centre) startInflux(ctx context.Context, runCtx context.Context, js jetstream.JetStream) error {
	o := c.o.Influx
	o.Plant, o.Registerer = c.o.Config.Plant, c.reg
	o.Logger = c.log.With("stage", "influx")
	if o.Clock == nil {
		o.Clock = c.o.Clock
	}
	w, err := influx.New(o)
	if err != nil {
		return err
	}
	c.ensureInfluxBucket(ctx, runCtx, o)
	c.goRun("influx writer", func() error { return w.Run(runCtx) })

	plant := c.o.Config.Plant
	var dec ingest.BatchDecoder
	var readings []model.Reading
	rf := &influxFeed{
		stream: ingest.StreamName, subject: ingest.Subject, w: w,
		log: o.Logger, clock: c.o.Clock, inflight: map[jetstream.Msg]struct{}{},
		add: func(data []byte, done func()) (int, error) {
			readings = readings[:0]
			err := dec.Decode(data, func(e *ingest.Entry) error {
				readings, _ = e.AppendModel(readings, plant)
				return nil
			})
			if err != nil {
				return 0, err
			}
			if len(readings) == 0 {
				return 0, nil
			}
			return len(readings), w.AddReadings(readings, done)
		},
	}
	var events []influx.AlarmEvent
	af := &influxFeed{
		stream: alerting.StreamName, w: w,
		log: o.Logger, clock: c.o.Clock, inflight: map[jetstream.Msg]struct{}{},
		add: func(data []byte, done func()) (int, error) {
			// A message of the log holds a batch of events (group commit).
			events = events[:0]
			err := alerting.DecodeMessage(data, func(ev alerting.Event) error {
				events = append(events, alarmPoint(&ev))
				return nil
			})
			if err != nil {
				return 0, err
			}
			return len(events), w.AddAlarmEvents(events, done)
		},
	}
	for _, f := range []*influxFeed{rf, af} {
		if err := f.open(ctx, js); err != nil {
			return err
		}
	}
	if err := rf.registerMetrics(c.reg); err != nil {
		return err
	}
	c.goRun("influx readings", func() error { return rf.run(runCtx) })
	c.goRun("influx alarm events", func() error { return af.run(runCtx) })
	c.goRun("influx monitor", func() error { rf.monitor(runCtx); return nil })
	o.Logger.Info("history written to InfluxDB too", "url", o.URL, "bucket", orString(o.Bucket, influx.DefaultBucket), "org", o.Org)
	return nil
}

// influxEnsureTimeout bounds the first attempt of EnsureBucket at start;
// influxEnsureRetry is the longest wait between the later ones.
const (
	influxEnsureTimeout = 10 * time.Second
	influxEnsureRetry   = 30 * time.Second
)

// ensureInfluxBucket creates the bucket's database and retention policy on
// an InfluxDB 1.x when they are missing (influx.EnsureBucket), once at
// start. When InfluxDB cannot be reached it tries again in the background,
// with a backoff, until it can or the centre stops; nothing of it ever
// stops the centre, and the writer retries its writes meanwhile.
func (c *Centre) ensureInfluxBucket(ctx, runCtx context.Context, o influx.Options) {
	retention := o.Retention
	if retention <= 0 {
		retention = influx.DefaultRetention
	}
	if retention < influx.DefaultRetention {
		o.Logger.Warn("InfluxDB retention shorter than the 30 days DOMAIN.md asks for (electronic records kept at least 30 days)",
			"retention", retention)
	}
	first, cancel := context.WithTimeout(ctx, influxEnsureTimeout)
	err := influx.EnsureBucket(first, o)
	cancel()
	if err == nil {
		return
	}
	o.Logger.Warn("InfluxDB database and retention policy not checked yet; trying again in the background", "err", err)
	c.goRun("influx bucket", func() error {
		wait := time.Second
		for {
			select {
			case <-runCtx.Done():
				return nil
			case <-time.After(wait):
			}
			attempt, cancel := context.WithTimeout(runCtx, influxEnsureTimeout)
			err := influx.EnsureBucket(attempt, o)
			cancel()
			if err == nil || runCtx.Err() != nil {
				return nil
			}
			o.Logger.Debug("InfluxDB database and retention policy still not checked", "err", err)
			wait = min(2*wait, influxEnsureRetry)
		}
	})
}

// influxChecks is /readyz's influxdb check when InfluxDB is configured:
// a ping, optional (api.Check.Optional). The centre without InfluxDB still
// takes readings, raises and pushes alarms and keeps its embedded history,
// and the feeds catch up afterwards; only the API's history, which reads
// InfluxDB, answers 503 meanwhile.
func (c *Centre) influxChecks() []api.Check {
	if c.influxHist == nil {
		return nil
	}
	return []api.Check{{Name: "influxdb", Ready: c.influxHist.Ping, Optional: true}}
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// alarmPoint is an alarm event as the alarm_event measurement stores it.
// Every field comes from the durable event, so writing it again (a
// redelivery) gives the same point. An event a rule decided is stamped
// with its reading's time, so it lines up with the readings on a graph
// (late data included); an operator's with the centre's clock.
func alarmPoint(ev *alerting.Event) influx.AlarmEvent {
	a := &ev.Alarm
	p := influx.AlarmEvent{
		Time: ev.At, Value: a.Value, Limit: a.Limit,
		Enterprise: a.Source.Enterprise, HazardSource: a.Source.HazardSource, Sensor: a.Source.Sensor,
		Class: a.Class.String(), Level: a.Level.String(), Rule: a.Rule.String(), Event: ev.Name.String(),
		Message: a.Message, AlarmID: a.ID,
	}
	if !ev.TS.IsZero() {
		p.Time, p.Value, p.Limit = ev.TS, ev.Value, ev.Limit
	}
	return p
}

// influxFeed is one durable consumer feeding the writer. A message is
// acknowledged only in the writer's done callback, after its points are
// written; while the writer is full the feed waits, and JetStream keeps
// the rest.
type influxFeed struct {
	stream  string
	subject string // of the stream's messages, to find the oldest unwritten (readings feed only)
	w       *influx.Writer
	// add decodes a message and hands its points to the writer with done;
	// it returns how many (0: nothing to write, done is not kept) and the
	// writer's error (influx.ErrFull: done is not kept either).
	add   func(data []byte, done func()) (int, error)
	log   *slog.Logger
	clock func() time.Time

	js   jetstream.JetStream
	cons jetstream.Consumer

	mu       sync.Mutex
	inflight map[jetstream.Msg]struct{} // handed to the writer, not yet acknowledged
	points   int64                      // handed to the writer since start
	msgs     int64                      // messages with points, since start

	// Measured by monitor (readings feed only).
	backlogMsgs, backlogReadings, lagSeconds prometheus.Gauge
}

func (f *influxFeed) open(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, f.stream, jetstream.ConsumerConfig{
		Durable:       influxConsumerName,
		Description:   "hazardwatch: writes the stream to InfluxDB (internal/centre, internal/influx)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       influxAckWait,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("centre: consumer %s on %s: %w", influxConsumerName, f.stream, err)
	}
	f.js, f.cons = js, cons
	return nil
}

// run hands the stream's messages to the writer until ctx ends.
func (f *influxFeed) run(ctx context.Context) error {
	keepAlive := time.NewTicker(influxAckWait / 3)
	defer keepAlive.Stop()
	for ctx.Err() == nil {
		batch, err := f.cons.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.log.Warn("reading the stream for InfluxDB failed; retrying", "stream", f.stream, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			f.handle(ctx, msg, keepAlive.C)
		}
		select {
		case <-keepAlive.C:
			f.keepAlive()
		default:
		}
	}
	return nil
}

// handle gives msg's points to the writer, waiting while it is full.
func (f *influxFeed) handle(ctx context.Context, msg jetstream.Msg, keepAlive <-chan time.Time) {
	done := func() {
		f.mu.Lock()
		delete(f.inflight, msg)
		f.mu.Unlock()
		if err := msg.Ack(); err != nil {
			// Delivered again after AckWait, and written again: the same points.
			f.log.Debug("acknowledging a message written to InfluxDB failed", "stream", f.stream, "err", err)
		}
	}
	f.mu.Lock()
	f.inflight[msg] = struct{}{}
	f.mu.Unlock()
	for {
		room := f.w.Room()
		n, err := f.add(msg.Data(), done)
		switch {
		case err == nil && n > 0:
			f.mu.Lock()
			f.points += int64(n)
			f.msgs++
			f.mu.Unlock()
			return
		case err == nil || !errors.Is(err, influx.ErrFull) && !errors.Is(err, influx.ErrStopped):
			// Nothing to write (no reading of a known sensor), or a message
			// that cannot be decoded and will not become decodable by
			// delivering it again.
			if err != nil {
				f.log.Error("a message InfluxDB cannot be given was skipped", "stream", f.stream, "err", err)
			}
			done()
			return
		case errors.Is(err, influx.ErrStopped):
			return
		}
		// Full: wait for a write to make room. The messages the writer
		// holds are kept alive meanwhile, however long InfluxDB is away.
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case <-room:
				waiting = false
			case <-keepAlive:
				f.keepAlive()
			}
		}
	}
}

// keepAlive tells JetStream that the messages the writer holds are still
// being worked on.
func (f *influxFeed) keepAlive() {
	f.mu.Lock()
	msgs := make([]jetstream.Msg, 0, len(f.inflight))
	for m := range f.inflight {
		msgs = append(msgs, m)
	}
	f.mu.Unlock()
	for _, m := range msgs {
		_ = m.InProgress()
	}
}

func (f *influxFeed) registerMetrics(reg prometheus.Registerer) error {
	f.backlogMsgs = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hw_influx_backlog_messages",
		Help: "READINGS stream messages not yet written to InfluxDB (not yet delivered to its writer, or held by it).",
	})
	f.backlogReadings = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hw_influx_backlog_readings",
		Help: "Readings not yet written to InfluxDB: those its writer holds, plus the other stream messages not yet written times the mean readings per message so far (an estimate while such messages remain, 0 when none do).",
	})
	// SPEC §3's hw_pipeline_lag_seconds with ingest's help text; for
	// stage="influx" it is the age of the oldest READINGS message not yet
	// written, by the time ingest stored it (for live data the reading's
	// skew-corrected time), and 0 when every message is written.
	f.lagSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hw_pipeline_lag_seconds", Help: ingest.HelpPipelineLag, ConstLabels: prometheus.Labels{"stage": "influx"},
	})
	for _, c := range []prometheus.Collector{f.backlogMsgs, f.backlogReadings, f.lagSeconds} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("centre: influx metrics: %w", err)
		}
	}
	return nil
}

// monitor measures the backlog and the lag every influxMonitorEvery and
// logs the progress of a catch-up: every 30 s while InfluxDB is more than
// 30 s behind, and once when it has caught up (influxBehind,
// influxCaughtUp).
func (f *influxFeed) monitor(ctx context.Context) {
	t := time.NewTicker(influxMonitorEvery)
	defer t.Stop()
	var (
		behindSince  time.Time // zero while caught up
		lastLog      time.Time
		writtenAtLog uint64
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		msgs, readings, lag, err := f.measure(ctx)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Debug("measuring the InfluxDB backlog failed", "err", err)
			}
			continue
		}
		f.backlogMsgs.Set(float64(msgs))
		f.backlogReadings.Set(float64(readings))
		f.lagSeconds.Set(lag.Seconds())
		now := f.clock()
		written := f.w.Stats().Readings
		switch {
		case lag > influxBehind && behindSince.IsZero():
			behindSince, lastLog, writtenAtLog = now, now, written
			f.log.Warn("InfluxDB is behind the READINGS stream", "lag", lag.Round(time.Second),
				"backlog_messages", msgs, "backlog_readings", readings)
		case lag > influxBehind && now.Sub(lastLog) >= influxBehind:
			rate := float64(written-writtenAtLog) / now.Sub(lastLog).Seconds()
			f.log.Info("InfluxDB catching up", "lag", lag.Round(time.Second), "backlog_messages", msgs,
				"backlog_readings", readings, "readings_per_s", int64(rate))
			lastLog, writtenAtLog = now, written
		case lag <= influxCaughtUp && !behindSince.IsZero():
			f.log.Info("InfluxDB has caught up with the READINGS stream", "behind_for", now.Sub(behindSince).Round(time.Second),
				"lag", lag.Round(time.Millisecond))
			behindSince = time.Time{}
		}
	}
}

// measure returns the messages not yet written, the readings they hold
// (see hw_influx_backlog_readings) and the age of the oldest of them.
func (f *influxFeed) measure(ctx context.Context) (msgs, readings int64, lag time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := f.cons.Info(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	msgs = int64(info.NumPending) + int64(info.NumAckPending)
	if msgs == 0 {
		return 0, 0, 0, nil
	}
	st := f.w.Stats()
	f.mu.Lock()
	mean := 0.0
	if f.msgs > 0 {
		mean = float64(f.points) / float64(f.msgs)
	}
	held := int64(len(f.inflight))
	f.mu.Unlock()
	// The messages the writer holds are counted exactly; the rest (not yet
	// delivered, or delivered to a previous run and awaiting redelivery)
	// by the mean.
	readings = int64(st.PendingReadings) + int64(float64(max(msgs-held, 0))*mean+0.5)

	s, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		return msgs, readings, 0, err
	}
	// The first message after the ack floor (or the next one the stream
	// still holds) is the oldest not yet written.
	m, err := s.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(f.subject))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return msgs, readings, 0, nil
		}
		return msgs, readings, 0, err
	}
	return msgs, readings, max(f.clock().Sub(m.Time), 0), nil
}
