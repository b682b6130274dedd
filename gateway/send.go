package gateway

import (
	"context"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/gateway/queue"
	"hazardwatch/internal/telemetry"
)

// freshFor is how old a message that waited for the connection may be and
// still go out as live rather than as a replay: a start's first cycles
// wait for the connect, and a replay mark would make them late at the
// centre for no reason.
const freshFor = 10 * time.Second

// maxReadings bounds the readings of one message, far below the centre's
// 256 KiB content limit (a reading takes about 60 bytes).
const maxReadings = 1000

// collector gathers the devices' readings between messages.
type collector struct {
	mu       sync.Mutex
	pending  []telemetry.Out // readings not yet in a message
	spare    []telemetry.Out // the other buffer, swapped with pending
	inflight int             // polls handed out and not yet added
	first    time.Time       // when pending got its first reading
	ready    chan struct{}   // capacity 1: something was added
}

func (c *collector) started() {
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
}

func (c *collector) add(outs []telemetry.Out) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.first = time.Now()
	}
	c.pending = append(c.pending, outs...)
	c.inflight--
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// take returns the pending readings when no poll is under way, or when
// force is set; otherwise nil and when the window for the pending readings
// ends. The slice returned is valid until the next take.
func (c *collector) take(force bool, window time.Duration) ([]telemetry.Out, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil, time.Time{}
	}
	if c.inflight > 0 && !force && time.Since(c.first) < window {
		return nil, c.first.Add(window)
	}
	out := c.pending
	c.pending, c.spare = c.spare[:0], out
	return out, time.Time{}
}

// collect makes messages of the devices' readings and keeps them in the
// queue until polled is closed, then keeps what is left and closes fresh.
// A message is made as soon as every poll under way has ended, so one
// message holds one cycle of every device polled together; a slow device
// holds the others back at most one window (half the gateway's period, at
// most 250 ms), and its readings go in a later message.
func (g *Gateway) collect(polled <-chan struct{}, fresh chan<- queue.Message) {
	defer close(fresh)
	window := min(g.period/2, 250*time.Millisecond)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		force := false
		select {
		case <-polled:
			if outs, _ := g.col.take(true, window); len(outs) > 0 {
				g.store(outs, fresh)
			}
			return
		case <-g.col.ready:
		case <-timer.C:
			force = true
		}
		outs, until := g.col.take(force, window)
		if len(outs) == 0 {
			if !until.IsZero() {
				timer.Reset(time.Until(until))
			}
			continue
		}
		g.store(outs, fresh)
	}
}

// store makes messages of readings (maxReadings each) durable in the queue
// and hands them to the sender: each message's seq is taken from the queue
// (kept on disk, SPEC §2) with the message, before it is handed on.
func (g *Gateway) store(readings []telemetry.Out, fresh chan<- queue.Message) {
	now := g.o.Clock()
	g.mu.Lock()
	g.lastCycle = now
	g.mu.Unlock()
	g.m.lastCycle.Set(float64(now.UnixMilli()) / 1000)
	for len(readings) > 0 {
		n := min(len(readings), maxReadings)
		m, ok := g.keep(readings[:n])
		if !ok {
			readings = readings[n:]
			continue
		}
		g.log.Debug("poll cycle kept", "boot", g.boot, "seq", m.MsgSeq, "readings", n)
		readings = readings[n:]
		select {
		case fresh <- m:
		default:
			// The sender is behind (a slow uplink): the message waits in
			// the queue and goes out as a replay.
		}
	}
}

// keep makes one message of readings in the queue: the seq and the
// message reach the disk together. When the disk fails the readings are
// lost (a seq not kept on disk could be handed out twice): counted and
// logged.
func (g *Gateway) keep(readings []telemetry.Out) (queue.Message, bool) {
	m, err := g.q.AppendNew(g.boot, time.Time{}, func(seq uint64) []byte {
		return telemetry.AppendTelemetry(nil, g.o.Gateway, g.boot, seq, false, readings)
	})
	if err != nil {
		g.m.lost.Add(float64(len(readings)))
		g.log.Error("store-and-forward queue: append failed; these readings are lost", "err", err, "readings", len(readings))
		return queue.Message{}, false
	}
	return m, true
}

// sendLoop publishes each fresh message as it comes, then up to
// ReplayPerCycle queued ones, oldest first and marked replay; each leaves
// the queue only after its PUBACK. A message not acknowledged in time stays
// queued (the centre drops the copy if it did arrive) and the connection is
// renewed (SPEC §2). It also republishes the retained status every
// StatusEvery. It returns when ctx ends or fresh is closed.
func (g *Gateway) sendLoop(ctx context.Context, c mqtt.Client, statusTopic string, fresh <-chan queue.Message, wake <-chan struct{}) {
	topic := telemetry.TelemetryTopic(g.ent, g.o.Gateway)
	status := time.NewTicker(g.o.StatusEvery)
	defer status.Stop()
	var live, held []queue.Message
	var lastFresh uint64 // the newest queue seq handed over
	backlog := g.q.Len() // said when it has drained
	since := time.Now()
	for {
		live = live[:0]
		select {
		case <-ctx.Done():
			return
		case <-status.C:
			// Only on an open connection: paho keeps what is published
			// while it reconnects and sends it late, and a status carrying
			// an old clock would skew the centre's measure. Each connect
			// publishes a fresh one anyway.
			if c.IsConnectionOpen() {
				c.Publish(statusTopic, 1, true, g.status("online"))
			}
			continue
		case <-wake:
		case m, ok := <-fresh:
			if !ok {
				return
			}
			live = append(live, m)
		}
	drain:
		for {
			select {
			case m, ok := <-fresh:
				if !ok {
					break drain
				}
				live = append(live, m)
			default:
				break drain
			}
		}
		for _, m := range live {
			lastFresh = max(lastFresh, m.Seq)
		}
		if !c.IsConnectionOpen() {
			if backlog == 0 {
				since = time.Now()
			}
			backlog = g.q.Len()
			// All of it is queued. The newest few are held to go out as
			// live when the connection opens within freshFor (the first
			// cycles of a start come before the connect); the rest go
			// out as replays.
			held = append(held, live...)
			if n := len(held) - g.o.ReplayPerCycle; n > 0 {
				held = append(held[:0], held[n:]...)
			}
			continue
		}
		if len(held) > 0 {
			live = slices.DeleteFunc(append(held, live...), func(m queue.Message) bool { return time.Since(m.Created) > freshFor })
			held = nil
		}
		if !g.sendAll(ctx, c, topic, live, lastFresh) {
			if ctx.Err() != nil {
				return // stopping: what is left stays queued
			}
			g.renew(c)
			continue
		}
		if backlog > 0 && g.q.Len() == 0 {
			// A backlog of one or two messages is the connect at start.
			if backlog > g.o.ReplayPerCycle {
				g.log.Info("store-and-forward queue drained: every queued poll cycle reached the centre", "messages", backlog, "since", since.Format(time.RFC3339))
			}
			backlog = 0
		}
	}
}

// sendAll publishes live, then replays the backlog: queued messages up to
// lastFresh (newer ones are on their way as fresh). It reports false when a
// PUBACK did not come in time.
func (g *Gateway) sendAll(ctx context.Context, c mqtt.Client, topic string, live []queue.Message, lastFresh uint64) bool {
	for _, m := range live {
		if !g.publish(ctx, c, topic, m.Payload) {
			return false
		}
		g.ack(m.Seq)
	}
	backlog, err := g.q.Oldest(g.o.ReplayPerCycle)
	if err != nil {
		g.log.Error("store-and-forward queue: read failed", "err", err)
		return true
	}
	for _, m := range backlog {
		if m.Seq > lastFresh || ctx.Err() != nil {
			break
		}
		if !g.publish(ctx, c, topic, replayed(m.Payload)) {
			return false
		}
		g.ack(m.Seq)
	}
	return true
}

// renew drops a connection on which a PUBACK did not come in time and
// connects again (in the background): the broker may have lost the packet
// or stopped reading, and a fresh session resends from the queue.
func (g *Gateway) renew(c mqtt.Client) {
	if !c.IsConnectionOpen() {
		return // already reconnecting
	}
	g.log.Warn("no PUBACK in time; reconnecting", "timeout", g.o.PublishTimeout, "queued", g.q.Len())
	g.setUplink(false)
	c.Disconnect(0)
	c.Connect()
}

// replayed marks a stored message as sent from the queue: `"replay":true`
// goes first in the object (the stored message never carries it).
func replayed(payload []byte) []byte {
	if len(payload) < 2 || payload[0] != '{' {
		return payload
	}
	out := make([]byte, 0, len(payload)+15)
	out = append(out, `{"replay":true,`...)
	return append(out, payload[1:]...)
}

func (g *Gateway) publish(ctx context.Context, c mqtt.Client, topic string, payload []byte) bool {
	start := time.Now()
	t := c.Publish(topic, 1, false, payload)
	timer := time.NewTimer(g.o.PublishTimeout)
	defer timer.Stop()
	select {
	case <-t.Done():
	case <-timer.C:
	case <-ctx.Done():
		return false
	}
	if err := t.Error(); err != nil || !isDone(t) {
		g.log.Warn("publish not acknowledged; the message stays queued", "err", err, "queued", g.q.Len())
		return false
	}
	g.m.publish.Observe(time.Since(start).Seconds())
	g.published.Add(1)
	return true
}

func isDone(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

func (g *Gateway) ack(seq uint64) {
	if seq == 0 {
		return
	}
	if err := g.q.Ack(seq); err != nil {
		// Sent again later: the centre drops the duplicate.
		g.log.Error("store-and-forward queue: ack failed", "err", err)
	}
}
