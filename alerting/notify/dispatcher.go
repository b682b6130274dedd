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

// Dispatcher runs notifications through the chain:
//
//	shelve → suppress → dedup → rate limit → escalation → retry
//
// Handle runs one in the caller's goroutine and returns when it is
// delivered or has finally failed: what a durable consumer calls before it
// acknowledges (several at once if it wants; Handle is safe for concurrent
// use). Run does the chain's housekeeping.
type Dispatcher struct {
	o        Options
	log      *slog.Logger
	pipeline pipeline
	rate     *rateStage
	mem      *memory
	met      *metrics

	running atomic.Bool
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
	d := &Dispatcher{o: o, log: log}
	d.met = newMetrics(names)
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

// Run, until ctx ends, once a minute logs what the rate limits dropped
// and expires old dedup keys. Handle does the delivering.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	d.expire()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.rate.flush()
			return nil
		case <-tick.C:
			d.rate.flush()
			d.expire()
		}
	}
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
