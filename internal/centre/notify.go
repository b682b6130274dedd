package centre

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/alerting"
	"hazardwatch/alerting/notify"
	"hazardwatch/internal/model"
)

// Notifications (SPEC §4 escalation): a durable consumer "notify" on
// ALARMS turns every event that notifies someone (Event.Notified: a ring,
// an escalation step, a reminder, overdue feedback) into a
// notify.Notification and hands it to the dispatcher, which sends it
// through its chain (shelve, suppress, dedup, rate limit, texts, retry) to
// the webhook and the SMS and voice providers. A message of the log is
// acknowledged only when every notification of it is done with, so a
// crash sends again what was not; the dispatcher's dedup store (a bbolt
// file under the data directory) keeps that to what is still owed.

// NotifyOptions configure the notifications.
type NotifyOptions struct {
	// WebhookURL, when set, posts every notification as JSON there
	// (notify's WebhookVersion 1), with WebhookHeader (an Authorization
	// header, say) and WebhookTimeout per request.
	WebhookURL     string
	WebhookHeader  http.Header
	WebhookTimeout time.Duration
	// Off turns the SMS and voice notices off. Without a provider they go
	// to the log, one line per message with the number masked: what a
	// provider would have been asked to send.
	Off bool
}

// notifyAckWait: while the feed works on a message (retries may take up
// to notify's 10-minute deadline) it says so every third of it; a message
// of a centre that died, or one a stopping centre's last fetch took, comes
// back after it. A variable for the tests.
var notifyAckWait = 30 * time.Second

const (
	notifyConsumerName = "notify"
	// notifyMaxAge: an event older than this when it is first seen (the
	// consumer created on a long log) is news no more, and is not sent.
	notifyMaxAge = time.Hour
	// notifyParallel messages of the log are worked on at once: a slow
	// webhook delays its own, not the others'.
	notifyParallel = 8
)

func (c *Centre) startNotify(ctx, runCtx context.Context, js jetstream.JetStream) error {
	o := c.o.Notify
	var routes []notify.Route
	if o.WebhookURL != "" {
		hook, err := notify.NewWebhook(notify.WebhookOptions{URL: o.WebhookURL, Header: o.WebhookHeader, Timeout: o.WebhookTimeout})
		if err != nil {
			return fmt.Errorf("centre: notification webhook: %w", err)
		}
		routes = append(routes, notify.Route{Notifier: hook})
		c.closers = append(c.closers, func() error { hook.Close(); return nil })
	}
	if !o.Off {
		logp := notify.LogProvider{Logger: c.log.With("stage", "notify")}
		routes = append(routes,
			notify.Route{Notifier: notify.NewSMS(logp), PerRecipient: true},
			notify.Route{Notifier: notify.NewVoice(logp), PerRecipient: true, Steps: []int{notify.StepPark, notify.StepCounty},
				Events: []string{notify.EventEscalated, notify.EventReminded}})
	}
	if len(routes) == 0 {
		c.log.Info("notifications off: no webhook, and SMS and voice turned off")
		return nil
	}
	store, err := notify.OpenFileStore(filepath.Join(c.o.DataDir, "notify.db"))
	if err != nil {
		return fmt.Errorf("centre: notification store: %w", err)
	}
	c.closers = append(c.closers, store.Close)
	rl := c.o.Config.Alarms.RateLimit
	d, err := notify.New(notify.Options{
		Routes: routes, Store: store,
		SensorRate: rate(rl.Sensor), EnterpriseRate: rate(rl.Enterprise),
		Clock: c.o.Clock, Logger: c.log.With("stage", "notify"), Registerer: c.reg,
	})
	if err != nil {
		return fmt.Errorf("centre: notifications: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, alerting.StreamName, jetstream.ConsumerConfig{
		Durable:     notifyConsumerName,
		Description: "hazardwatch: notifications of alarm events (internal/centre, alerting/notify)",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     notifyAckWait,
		// A new consumer starts at the end of the log: what it holds
		// happened before notifications were set up.
		DeliverPolicy: jetstream.DeliverNewPolicy,
		MaxAckPending: 256,
	})
	if err != nil {
		return fmt.Errorf("centre: consumer %s on %s: %w", notifyConsumerName, alerting.StreamName, err)
	}
	f := &notifyFeed{d: d, cons: cons, plant: c.o.Config.Plant, log: c.log.With("stage", "notify"), clock: c.o.Clock}
	f.skipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hw_notifications_skipped_total",
		Help: "Alarm events that would have notified someone but were older than an hour when the notifications first saw them.",
	})
	if err := c.reg.Register(f.skipped); err != nil {
		return fmt.Errorf("centre: notification metrics: %w", err)
	}
	c.goRun("notify dispatcher", func() error { return d.Run(runCtx) })
	c.goRun("notify feed", func() error { return f.run(runCtx) })
	names := make([]string, len(routes))
	for i, r := range routes {
		names[i] = r.Notifier.Name()
	}
	c.log.Info("notifications on", "notifiers", names, "sms_voice", map[bool]string{true: "off", false: "to the log (no provider configured)"}[o.Off])
	return nil
}

// rate turns a rule file's limit (count per window; count 0: none) into
// the dispatcher's token bucket.
func rate(w model.Window) notify.Rate {
	if w.Count <= 0 || w.Window <= 0 {
		return notify.Rate{Every: -1}
	}
	return notify.Rate{Burst: w.Count, Every: w.Window / time.Duration(w.Count)}
}

// notifyFeed reads ALARMS for the dispatcher.
type notifyFeed struct {
	d       *notify.Dispatcher
	cons    jetstream.Consumer
	plant   *model.Plant
	log     *slog.Logger
	clock   func() time.Time
	skipped prometheus.Counter
}

func (f *notifyFeed) run(ctx context.Context) error {
	sem := make(chan struct{}, notifyParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		batch, err := f.cons.Fetch(notifyParallel, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.log.Warn("reading ALARMS for notifications failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				_ = msg.Nak() // stopping: back to the stream at once
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				f.handle(ctx, msg)
			}()
		}
	}
	return nil
}

// handle sends the notifications of one message of the log and
// acknowledges it when they are done with; a notification the dispatcher
// gave up on brings the message back a minute later (what was delivered is
// not sent again).
func (f *notifyFeed) handle(ctx context.Context, msg jetstream.Msg) {
	alive := time.NewTicker(notifyAckWait / 3)
	defer alive.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-alive.C:
				_ = msg.InProgress()
			}
		}
	}()
	var again bool
	err := alerting.DecodeMessage(msg.Data(), func(ev alerting.Event) error {
		n, ok := notification(f.plant, &ev)
		if !ok {
			return nil
		}
		if age := f.clock().Sub(ev.At); age > notifyMaxAge {
			f.skipped.Inc()
			return nil
		}
		switch err := f.d.Handle(ctx, n); {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, notify.ErrGaveUp):
			again = true
		default:
			// Refused or invalid: counted and logged by the dispatcher;
			// sending it again cannot help.
			f.log.Warn("notification not delivered", "alarm", ev.Alarm.ID, "event", ev.Name, "seq", ev.Seq.Global, "err", err)
		}
		return nil
	})
	switch {
	case ctx.Err() != nil:
		// Stopping: back to the stream at once rather than after the ack
		// wait; the dedup store knows what went out already.
		_ = msg.Nak()
		return
	case err != nil:
		f.log.Error("an ALARMS message the notifications cannot read was skipped", "err", err)
	case again:
		_ = msg.NakWithDelay(time.Minute)
		return
	}
	if err := msg.Ack(); err != nil {
		f.log.Debug("acknowledging a notified ALARMS message failed", "err", err)
	}
}

// notification is what the dispatcher needs of an event that notifies
// someone; false for the others.
func notification(p *model.Plant, ev *alerting.Event) (notify.Notification, bool) {
	if len(ev.Notified) == 0 {
		return notify.Notification{}, false
	}
	a := &ev.Alarm
	n := notify.Notification{
		AlarmID: a.ID, Event: ev.Name.String(), Seq: ev.Seq.Global, At: ev.At, Due: ev.Due, RaisedAt: a.RaisedAt,
		Priority: a.Priority, Class: a.Class.String(), Level: a.Level.String(), State: a.State.String(),
		Shelved: a.Shelf.On(), Suppressed: a.Suppression.On(), OutOfService: a.OutOfService.On(),
		Enterprise: a.Source.Enterprise, Park: a.Source.Park, County: a.Source.County,
		HazardSource: a.Source.HazardSource, Sensor: a.Source.Sensor, SensorName: a.SensorName, Gateway: a.Source.Gateway,
		Kind: a.Kind.String(), Step: int(a.Escalation.Step), Message: a.Message,
		Value: a.Value, Limit: a.Limit, Unit: a.Unit,
	}
	switch ev.Name {
	case alerting.Reminded:
		n.Reminder = a.Escalation.Reminders
	case alerting.FeedbackOverdue:
		n.Step = notify.StepPark // told to the park and the county: "the enterprise has not reported"
	}
	for _, c := range ev.Notified {
		n.Recipients = append(n.Recipients, notify.Recipient{Name: c.Name, Phone: c.Phone, Role: c.Role})
	}
	if ei, ok := p.EnterpriseIndex(a.Source.Enterprise); ok {
		n.EnterpriseName = p.Enterprises[ei].Name
	}
	if hi, ok := p.HazardSourceIndex(a.Source.HazardSource); ok {
		n.HazardSourceName = p.HazardSources[hi].Name
	}
	if si, ok := p.SensorIndex(a.Source.Sensor); ok && p.Sensors[si].Gas != nil {
		n.Gas = p.Sensors[si].Gas.Name
	}
	return n, true
}
