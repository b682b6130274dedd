package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure New: what a deployment gives, with a default for every
// zero field except Routes.
type Options struct {
	// Routes say which notifier gets which notices; at least one. Two
	// routes may share a notifier (e.g. SMS to steps 0–1 and, with a
	// MaxPriority, to step 2).
	Routes []Route
	// Store remembers what was delivered; default a MemStore of
	// DefaultMemStoreMax keys. A FileStore makes it survive a restart; the
	// caller opens and closes it.
	Store Store
	// DedupTTL is how long a delivered key is remembered; default
	// DefaultDedupTTL (7 days).
	DedupTTL time.Duration
	// SensorRate and EnterpriseRate limit first notices; defaults
	// DefaultSensorRate and DefaultEnterpriseRate; Every < 0 turns one off.
	SensorRate, EnterpriseRate Rate
	// Backoff is the retry policy; zero fields take DefaultBackoff's.
	Backoff Backoff
	// Texts writes the texts; zero fields take the defaults.
	Texts Texts
	// Queue is how many notifications Enqueue may hold; default 1024.
	// Workers is how many Run delivers at once; default 4.
	Queue, Workers int
	// Clock is the time of dedup records, rate limits and deadlines;
	// default time.Now. Sleep waits between retries; default a timer on
	// the real clock, which testing/synctest fakes. Jitter returns a number
	// in [0, 1); default math/rand/v2. Tests set them together.
	Clock  func() time.Time
	Sleep  func(context.Context, time.Duration) error
	Jitter func() float64
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// Registerer takes the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultQueue and DefaultWorkers are Options.Queue's and Workers' defaults.
const (
	DefaultQueue   = 1024
	DefaultWorkers = 4
)

// ErrStopped is returned by Enqueue once Run has returned.
var ErrStopped = errors.New("notify: dispatcher stopped")

// Dispatcher runs notifications through the chain:
//
//	shelve → suppress → dedup → rate limit → escalation → retry
//
// Handle runs one in the caller's goroutine and returns when it is
// delivered or has finally failed: what a durable consumer calls before it
// acknowledges (several at once if it wants; Handle is safe for concurrent
// use). Enqueue and TryEnqueue hand one to Run's workers instead.
type Dispatcher struct {
	o        Options
	log      *slog.Logger
	pipeline pipeline
	rate     *rateStage
	mem      *memory
	met      *metrics

	queue   chan Notification
	running atomic.Bool
	stopped chan struct{}
}

// New builds a Dispatcher and registers its metrics.
func New(o Options) (*Dispatcher, error) {
	if len(o.Routes) == 0 {
		return nil, errors.New("notify: Options.Routes: no route, nothing would be delivered")
	}
	notifiers := make(map[string]Notifier)
	var names []string
	for i, r := range o.Routes {
		if r.Notifier == nil {
			return nil, fmt.Errorf("notify: Options.Routes[%d]: no notifier", i)
		}
		name := r.Notifier.Name()
		if prev, ok := notifiers[name]; ok && prev != r.Notifier {
			return nil, fmt.Errorf("notify: Options.Routes[%d]: two notifiers named %q", i, name)
		}
		if _, ok := notifiers[name]; !ok {
			names = append(names, name)
		}
		notifiers[name] = r.Notifier
	}
	if o.Store == nil {
		o.Store = NewMemStore(0)
	}
	if o.DedupTTL <= 0 {
		o.DedupTTL = DefaultDedupTTL
	}
	o.SensorRate = o.SensorRate.orDefault(DefaultSensorRate)
	o.EnterpriseRate = o.EnterpriseRate.orDefault(DefaultEnterpriseRate)
	o.Backoff = o.Backoff.withDefaults()
	o.Texts = o.Texts.withDefaults()
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{o: o, log: log, queue: make(chan Notification, o.Queue), stopped: make(chan struct{})}
	d.met = newMetrics(names, func() int { return len(d.queue) })
	if o.Registerer != nil {
		if err := d.met.register(o.Registerer); err != nil {
			return nil, fmt.Errorf("notify: metrics: %w", err)
		}
	}
	d.mem = &memory{store: o.Store, ttl: o.DedupTTL, clock: o.Clock, log: log}
	d.rate = newRateStage(o.SensorRate, o.EnterpriseRate, o.Clock, log, d.met)
	d.pipeline = pipeline{
		shelveStage{},
		suppressStage{},
		newDedupStage(d.mem),
		d.rate,
		&escalationStage{routes: o.Routes, texts: o.Texts},
		&retryStage{notifiers: notifiers, backoff: o.Backoff, mem: d.mem, clock: o.Clock,
			sleep: o.Sleep, jitter: o.Jitter, log: log, met: d.met},
	}
	return d, nil
}

// Handle runs n through the chain and returns when every message is
// delivered, or finally failed, or n was dropped on purpose (shelved,
// suppressed, a duplicate, rate limited): nil then. Otherwise it returns
//
//   - an error wrapping ErrInvalid: n can never be delivered; acknowledge it;
//   - a *FailedError: errors.Is(err, ErrGaveUp) when a message may still go
//     through later (redeliver n after a while: only what is missing is
//     sent), else ErrRefused: acknowledge it, it is counted and logged;
//   - the context's error: n is not done with; it is not counted.
func (d *Dispatcher) Handle(ctx context.Context, n Notification) error {
	_, err := d.handle(ctx, n)
	return err
}

func (d *Dispatcher) handle(ctx context.Context, n Notification) (outcome, error) {
	if err := n.check(); err != nil {
		d.met.outcome(outInvalid)
		d.log.Error("notify: invalid notification", "alarm", n.AlarmID, "event", n.Event, "seq", n.Seq, "err", err)
		return outInvalid, err
	}
	dl := &delivery{N: n}
	o, err := d.pipeline.Exec(ctx, dl)
	if o == outPending {
		return o, err
	}
	d.met.outcome(o)
	log := d.log.With("alarm", n.AlarmID, "event", n.Event, "seq", n.Seq, "step", n.Step, "key", n.Key)
	switch o {
	case outSent:
		log.Info("notify: notification delivered", "messages", len(dl.Messages))
	case outUnrouted:
		log.Warn("notify: no route for this notification (no notifier for its step, or no recipient with a phone number)",
			"recipients", len(n.Recipients))
	case outFailed:
		log.Error("notify: notification not wholly delivered", "messages", len(dl.Messages), "err", err)
	case outShelved, outSuppressed, outDuplicate:
		log.Debug("notify: notification dropped", "result", o.String())
	}
	if o == outFailed {
		return o, err
	}
	return o, nil
}

// Enqueue hands n to Run's workers, waiting while the queue is full until
// ctx ends. It returns ErrStopped once Run has returned. Errors of the
// delivery itself are counted and logged, not returned: a caller that
// must know (a durable consumer, before its ack) uses Handle.
func (d *Dispatcher) Enqueue(ctx context.Context, n Notification) error {
	select {
	case <-d.stopped:
		return ErrStopped
	default:
	}
	select {
	case d.queue <- n:
		return nil
	case <-d.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryEnqueue is Enqueue for a caller that must never wait (the alarm
// Manager's own goroutine): when the queue is full it drops n, counts it
// (queue_full) and returns false; once Run has returned too
// (dropped_shutdown).
func (d *Dispatcher) TryEnqueue(n Notification) bool {
	select {
	case <-d.stopped:
		d.met.outcome(outShutdown)
		d.log.Warn("notify: dispatcher stopped, notification dropped", "alarm", n.AlarmID, "event", n.Event, "seq", n.Seq, "step", n.Step)
		return false
	default:
	}
	select {
	case d.queue <- n:
		return true
	default:
	}
	d.met.outcome(outQueueFull)
	d.log.Warn("notify: queue full, notification dropped", "alarm", n.AlarmID, "event", n.Event, "seq", n.Seq, "step", n.Step)
	return false
}

// Run delivers what Enqueue queues with Options.Workers workers, and once
// a minute logs what the rate limits dropped and expires old dedup keys.
// It returns nil when ctx ends, after the workers have stopped; what was
// still queued then, or cut short, is counted (dropped_shutdown) and
// logged.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	defer close(d.stopped)
	d.expire()
	done := make(chan struct{})
	for range d.o.Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				select {
				case n := <-d.queue:
					// Counted and logged by handle, unless the shutdown
					// cut it short: nobody will hand it in again.
					if o, _ := d.handle(ctx, n); o == outPending && ctx.Err() != nil {
						d.met.outcome(outShutdown)
						d.log.Warn("notify: delivery cut short by the shutdown", "alarm", n.AlarmID, "event", n.Event, "seq", n.Seq, "step", n.Step)
					}
				case <-ctx.Done():
				}
			}
		}()
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for running := d.o.Workers; running > 0; {
		select {
		case <-done:
			running--
		case <-tick.C:
			d.rate.flush()
			d.expire()
		}
	}
	d.rate.flush()
	if left := len(d.queue); left > 0 {
		for range left {
			<-d.queue
			d.met.outcome(outShutdown)
		}
		d.log.Warn("notify: notifications still queued at shutdown were dropped", "count", left)
	}
	return nil
}

func (d *Dispatcher) expire() {
	n, err := d.o.Store.Expire(d.o.Clock().Add(-d.o.DedupTTL))
	if err != nil {
		d.log.Error("notify: expiring dedup keys", "err", err)
	} else if n > 0 {
		d.log.Debug("notify: dedup keys expired", "count", n)
	}
}

// Texts returns the Texts in use, with their defaults: the API can show a
// notice's text as it was sent.
func (d *Dispatcher) Texts() Texts { return d.o.Texts }
