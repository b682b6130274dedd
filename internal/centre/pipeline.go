package centre

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/alerting"
	"hazardwatch/ingest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
	"hazardwatch/rules"
)

// consumerName is the pipeline's durable consumer on READINGS: after a
// restart it resumes after the last batch it acknowledged.
const consumerName = "pipeline"

// pipeline reads the READINGS stream and drives the rules, the alarms, the
// history and the live values. One goroutine owns the rules engine, which is
// not safe for concurrent use.
//
// A batch is acknowledged to JetStream only after its transitions were
// handed to the alarm manager and its points are durable in history, so a
// crash makes JetStream deliver it again: the rules skip readings they
// have evaluated (out of order), history ignores duplicates, and the
// engine's conditions are re-seeded from the alarms at start.
type pipeline struct {
	plant  *model.Plant
	engine *rules.Engine
	alarms *alerting.Manager
	hist   *store.Store
	latest *latest
	feed   *feed
	log    *slog.Logger
	clock  func() time.Time
	lag    map[string]prometheus.Gauge // by stage
	// reloads brings new rules for the engine (reload.go).
	reloads <-chan ruleSwap

	cons jetstream.Consumer
	dec  ingest.BatchDecoder

	// reused per batch
	msgs     []jetstream.Msg
	readings []model.Reading
	trans    []model.Transition
	points   []store.Point
}

// pipelineAckWait is how long a READINGS message delivered to the
// pipeline and not acknowledged waits to come again: one a previous run
// held when it died, or one delivered to a fetch that had just expired.
// A batch takes milliseconds; one taking longer than this is delivered
// twice, which the rules (out of order) and history (duplicates) shrug off.
const pipelineAckWait = 10 * time.Second

func (p *pipeline) open(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, ingest.StreamName, jetstream.ConsumerConfig{
		Durable:       consumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       pipelineAckWait,
		MaxAckPending: 256,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("centre: consumer %s: %w", consumerName, err)
	}
	p.cons = cons
	return nil
}

// run processes batches and ticks for silence until ctx ends.
//
// It takes what READINGS holds for it, up to 64 messages at once, and
// handles them together: one append to history (one fsync) for all of
// them. Live, that is one gateway message at a time; after an outage, when
// gateways replay their queues, a backlog of small messages is worked off
// 64 at a time instead of an fsync each.
func (p *pipeline) run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		msgs, err := p.fetch()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn("reading the READINGS stream failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if len(msgs) > 0 {
			if err := p.handle(ctx, msgs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Not acknowledged: JetStream delivers them again.
				p.log.Error("processing READINGS batches failed; they will be redelivered", "batches", len(msgs), "err", err)
				for _, m := range msgs {
					_ = m.Nak()
				}
			} else {
				for _, m := range msgs {
					if err := m.Ack(); err != nil {
						p.log.Warn("acknowledging a READINGS batch failed", "err", err)
					}
				}
			}
		}
		select {
		case <-tick.C:
			p.trans = p.engine.Tick(p.clock(), p.trans[:0])
			if err := p.submit(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("submitting offline transitions failed", "err", err)
			}
		case sw := <-p.reloads:
			p.swapRules(ctx, sw)
		default:
		}
	}
	return nil
}

// fetch returns the messages waiting, up to 64, without waiting for more;
// when none is, it waits up to half a second for the next one.
func (p *pipeline) fetch() ([]jetstream.Msg, error) {
	p.msgs = p.msgs[:0]
	batch, err := p.cons.FetchNoWait(64)
	if err != nil {
		return nil, err
	}
	for m := range batch.Messages() {
		p.msgs = append(p.msgs, m)
	}
	if len(p.msgs) > 0 {
		return p.msgs, nil
	}
	if batch, err = p.cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)); err != nil {
		return nil, err
	}
	for m := range batch.Messages() {
		p.msgs = append(p.msgs, m)
	}
	return p.msgs, nil
}

// handle runs the readings of msgs, in order, through the rules (their
// transitions to the alarm manager), then into history in one append, and
// updates the latest values and the live feed.
func (p *pipeline) handle(ctx context.Context, msgs []jetstream.Msg) error {
	p.readings, p.points, p.trans = p.readings[:0], p.points[:0], p.trans[:0]
	var newest int64
	for _, msg := range msgs {
		from := len(p.readings)
		err := p.dec.Decode(msg.Data(), func(e *ingest.Entry) error {
			var unknown int
			p.readings, unknown = e.AppendModel(p.readings, p.plant)
			if unknown > 0 {
				p.log.Warn("readings of sensors no longer in the plant were skipped", "gateway", string(e.Gateway), "count", unknown)
			}
			return nil
		})
		if err != nil {
			// A malformed batch cannot become well formed by redelivery:
			// log it and go on without what it gave.
			p.log.Error("malformed READINGS batch skipped", "err", err)
			p.readings = p.readings[:from]
		}
	}
	for _, r := range p.readings {
		if !r.Late { // a replay's age is not the pipeline's lag
			newest = max(newest, r.TS)
		}
		p.trans = p.engine.Eval(r, p.trans)
		v := r.Value
		if !r.HasValue {
			v = math.NaN()
		}
		p.points = append(p.points, store.Point{Sensor: p.plant.Sensors[r.SensorIdx].ID, TS: r.TS, Value: v, Quality: r.Quality})
	}
	if err := p.submit(ctx); err != nil {
		return err
	}
	if newest > 0 {
		p.lag["rules"].Set(float64(p.clock().UnixMilli()-newest) / 1000)
	}
	if len(p.points) > 0 {
		if err := p.hist.Append(ctx, p.points); err != nil {
			var refused *store.RefusedError
			if !errors.As(err, &refused) {
				return fmt.Errorf("history: %w", err)
			}
			p.log.Warn("history refused some readings", "refused", len(refused.Refused), "err", err)
		}
	}
	p.latest.update(p.readings)
	p.feed.publish(p.readings)
	if newest > 0 {
		p.lag["history"].Set(float64(p.clock().UnixMilli()-newest) / 1000)
	}
	return nil
}

func (p *pipeline) submit(ctx context.Context) error {
	if len(p.trans) == 0 {
		return nil
	}
	return p.alarms.Submit(ctx, p.trans...)
}

// latest keeps the newest reading of each sensor for the API.
type latest struct {
	mu sync.RWMutex
	r  []model.Reading
	ok []bool
}

func newLatest(n int) *latest { return &latest{r: make([]model.Reading, n), ok: make([]bool, n)} }

func (l *latest) update(rs []model.Reading) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rs {
		if !l.ok[r.SensorIdx] || r.TS >= l.r[r.SensorIdx].TS {
			l.r[r.SensorIdx], l.ok[r.SensorIdx] = r, true
		}
	}
}

// Latest returns the newest reading of sensor s.
func (l *latest) Latest(s int32) (model.Reading, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if s < 0 || int(s) >= len(l.r) {
		return model.Reading{}, false
	}
	return l.r[s], l.ok[s]
}

// feed hands live readings to subscribers (the WebSocket's readings frames)
// without ever waiting for one: a full subscriber misses that batch.
type feed struct {
	mu   sync.Mutex
	subs map[chan []model.Reading]struct{}
}

func newFeed() *feed { return &feed{subs: map[chan []model.Reading]struct{}{}} }

func (f *feed) publish(rs []model.Reading) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 || len(rs) == 0 {
		return
	}
	cp := append([]model.Reading(nil), rs...) // shared read-only by all subscribers
	for ch := range f.subs {
		select {
		case ch <- cp:
		default:
		}
	}
}

// SubscribeReadings returns a channel of reading batches and its cancel.
func (f *feed) SubscribeReadings(buffer int) (<-chan []model.Reading, func()) {
	ch := make(chan []model.Reading, max(buffer, 1))
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			close(ch)
			f.mu.Unlock()
		})
	}
}
