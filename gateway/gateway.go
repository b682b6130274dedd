package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/gateway/queue"
	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// Options configure a gateway.
type Options struct {
	Plant *model.Plant
	// Gateway is the id of the gateway this process is.
	Gateway string
	// Broker is the MQTT broker's URL, e.g. tcp://127.0.0.1:1883.
	Broker             string
	Username, Password string
	// DeviceAddr overrides device addresses by device id (the demo and
	// tests point devices at a simulator on free ports).
	DeviceAddr map[string]string
	// PublishTimeout is how long to wait for a PUBACK before the message is
	// kept for a later try (default 5 s).
	PublishTimeout time.Duration
	// StatusEvery is how often the retained status with the gateway's clock
	// is republished (default 60 s, SPEC §2).
	StatusEvery time.Duration
	// QueuePath is the store-and-forward queue's file (required): every
	// poll cycle is durable there before it is published, and leaves only
	// after its PUBACK.
	QueuePath string
	// QueueMaxBytes and QueueMaxAge bound the queue; defaults 1 GiB and
	// 7 days. When full, the oldest messages go first, counted in the
	// status message.
	QueueMaxBytes int64
	QueueMaxAge   time.Duration
	// ReplayPerCycle bounds how many queued messages are sent, marked
	// replay, after each live one (default 10): a backlog drains while live
	// data keeps flowing.
	ReplayPerCycle int
	Clock          func() time.Time
	Logger         *slog.Logger
}

// Gateway polls its devices every poll period and publishes one telemetry
// message per cycle.
type Gateway struct {
	o       Options
	gw      int32
	ent     string
	boot    string
	plans   []devicePlan
	clients []ModbusClient
	period  time.Duration
	log     *slog.Logger

	published atomic.Uint64     // messages the broker acknowledged
	outs      [][]telemetry.Out // per device, reused every cycle
	all       []telemetry.Out   // the cycle's readings, reused: valid until the next cycle
	m         *metrics

	q *queue.Queue

	// mu guards what /healthz reads while Run changes it.
	mu        sync.Mutex
	lastCycle time.Time
	uplinkUp  bool
}

// New plans the gateway's polls; nothing connects until Run.
func New(o Options) (*Gateway, error) {
	if o.Plant == nil {
		return nil, errors.New("gateway: Options.Plant is required")
	}
	gw, ok := o.Plant.GatewayIndex(o.Gateway)
	if !ok {
		return nil, fmt.Errorf("gateway: %q is not a gateway of the plant", o.Gateway)
	}
	if o.Broker == "" {
		return nil, errors.New("gateway: Options.Broker is required")
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.StatusEvery == 0 {
		o.StatusEvery = time.Minute
	}
	if o.QueuePath == "" {
		return nil, errors.New("gateway: Options.QueuePath is required")
	}
	if o.ReplayPerCycle == 0 {
		o.ReplayPerCycle = 10
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{o: o, gw: gw, log: o.Logger.With("gateway", o.Gateway), m: newMetrics(o.Gateway)}
	def := o.Plant.Gateways[gw]
	g.ent = o.Plant.Enterprises[def.Enterprise].ID
	g.period = time.Duration(def.PollPeriodMS) * time.Millisecond
	for di := range def.Devices {
		plan := planDevice(o.Plant, gw, int32(di))
		if a, ok := o.DeviceAddr[plan.device.ID]; ok {
			plan.device.Address = a
		}
		c, err := NewModbusClient(plan.device)
		if err != nil {
			return nil, err
		}
		// One cycle polls its devices together; the slowest device sets the
		// cycle's pace, so the gateway polls at its fastest device period.
		g.period = min(g.period, time.Duration(plan.device.PollPeriodMS)*time.Millisecond)
		g.plans = append(g.plans, plan)
		g.clients = append(g.clients, c)
	}
	g.outs = make([][]telemetry.Out, len(g.plans))
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("gateway: boot id: %w", err)
	}
	g.boot = hex.EncodeToString(b[:])
	q, err := queue.Open(queue.Options{Path: o.QueuePath, MaxBytes: o.QueueMaxBytes, MaxAge: o.QueueMaxAge, Clock: o.Clock})
	if err != nil {
		return nil, fmt.Errorf("gateway: store-and-forward queue: %w", err)
	}
	g.q = q
	g.m.watchQueue(q)
	if n := q.Len(); n > 0 {
		g.log.Info("store-and-forward queue holds messages from before; they are sent as replays", "messages", n, "oldest_age", q.OldestAge())
	}
	return g, nil
}

// Close closes the queue and the device connections; call it after Run.
func (g *Gateway) Close() error {
	for _, c := range g.clients {
		_ = c.Close()
	}
	return g.q.Close()
}

// Published is how many messages the broker has acknowledged.
func (g *Gateway) Published() uint64 { return g.published.Load() }

// Boot is this process's boot id (SPEC §2).
func (g *Gateway) Boot() string { return g.boot }

func (g *Gateway) status(state string) []byte {
	return telemetry.AppendStatus(nil, telemetry.Status{State: state, Boot: g.boot, TS: g.o.Clock().UnixMilli(), Dropped: g.q.Dropped()})
}

// Run polls and publishes until ctx ends, then sets its status offline and
// disconnects.
func (g *Gateway) Run(ctx context.Context) error {
	statusTopic := telemetry.StatusTopic(g.ent, g.o.Gateway)
	opts := mqtt.NewClientOptions().
		AddBroker(g.o.Broker).
		SetClientID(g.o.Gateway).
		SetUsername(g.o.Username).
		SetPassword(g.o.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10*time.Second).
		SetKeepAlive(15*time.Second).
		SetOrderMatters(false).
		SetWill(statusTopic, string(g.status("offline")), 1, true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Fresh on every (re)connect: the centre measures clock skew from it.
		c.Publish(statusTopic, 1, true, g.status("online"))
		g.setUplink(true)
		g.log.Info("uplink connected", "broker", g.o.Broker)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		g.setUplink(false)
		g.log.Warn("uplink lost", "err", err)
	})
	client := mqtt.NewClient(opts)
	client.Connect() // retries in the background until it succeeds
	defer func() {
		t := client.Publish(statusTopic, 1, true, g.status("offline"))
		t.WaitTimeout(time.Second)
		client.Disconnect(250)
	}()
	g.log.Info("gateway started", "boot", g.boot, "devices", len(g.plans), "period", g.period)

	tick := time.NewTicker(g.period)
	defer tick.Stop()
	status := time.NewTicker(g.o.StatusEvery)
	defer status.Stop()
	topic := telemetry.TelemetryTopic(g.ent, g.o.Gateway)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-status.C:
			client.Publish(statusTopic, 1, true, g.status("online"))
		case <-tick.C:
			live, ok := g.store(g.cycle())
			g.send(ctx, client, topic, live, ok)
		}
	}
}

// cycle polls every device at once and returns the message of this cycle.
func (g *Gateway) cycle() []telemetry.Out {
	var wg sync.WaitGroup
	for i := range g.plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			g.outs[i], err = pollDevice(g.clients[i], &g.plans[i], g.o.Clock, g.outs[i][:0])
			if err != nil {
				g.log.Debug("poll failed", "err", err)
			}
			g.m.count(g.plans[i].device.ID, g.outs[i])
		}()
	}
	wg.Wait()
	g.all = g.all[:0]
	for _, o := range g.outs {
		g.all = append(g.all, o...)
	}
	now := g.o.Clock()
	g.mu.Lock()
	g.lastCycle = now
	g.mu.Unlock()
	g.m.lastCycle.Set(float64(now.UnixMilli()) / 1000)
	return g.all
}

func (g *Gateway) setUplink(up bool) {
	g.mu.Lock()
	g.uplinkUp = up
	g.mu.Unlock()
	if up {
		g.m.uplink.Set(1)
	} else {
		g.m.uplink.Set(0)
	}
}

// store makes a cycle's message durable in the queue before it is sent:
// its seq is taken from the queue (kept on disk, SPEC §2) and the message is
// on disk when store returns. ok is false when the disk failed: the message
// is then sent once without a store behind it, and the failure logged.
func (g *Gateway) store(readings []telemetry.Out) (queue.Message, bool) {
	seq, err := g.q.NextSeq(g.boot)
	if err != nil {
		g.log.Error("store-and-forward queue: no seq; this cycle is not kept", "err", err)
		return queue.Message{}, false
	}
	ms := []queue.Message{{Boot: g.boot, MsgSeq: seq, Payload: telemetry.AppendTelemetry(nil, g.o.Gateway, g.boot, seq, false, readings)}}
	if err := g.q.AppendBatch(ms); err != nil {
		g.log.Error("store-and-forward queue: append failed; sending without a copy on disk", "err", err, "seq", seq)
		return ms[0], false
	}
	return ms[0], true
}

// send publishes the live message, then up to ReplayPerCycle queued ones,
// oldest first and marked replay; each leaves the queue only after its
// PUBACK. It stops at the first message not acknowledged in time: it stays
// queued (the centre drops the copy if it did arrive).
func (g *Gateway) send(ctx context.Context, c mqtt.Client, topic string, live queue.Message, stored bool) {
	if !c.IsConnectionOpen() {
		return
	}
	if live.Payload != nil {
		if !g.publish(c, topic, live.Payload) {
			return
		}
		if stored {
			g.ack(live.Seq)
		}
	}
	backlog, err := g.q.Oldest(g.o.ReplayPerCycle + 1)
	if err != nil {
		g.log.Error("store-and-forward queue: read failed", "err", err)
		return
	}
	sent := 0
	for _, m := range backlog {
		if m.Seq == live.Seq || sent == g.o.ReplayPerCycle || ctx.Err() != nil {
			continue
		}
		sent++
		if !g.publish(c, topic, replayed(m.Payload)) {
			return
		}
		g.ack(m.Seq)
	}
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

func (g *Gateway) publish(c mqtt.Client, topic string, payload []byte) bool {
	start := time.Now()
	t := c.Publish(topic, 1, false, payload)
	if !t.WaitTimeout(g.o.PublishTimeout) || t.Error() != nil {
		g.log.Warn("publish not acknowledged; the message stays queued", "err", t.Error(), "queued", g.q.Len())
		return false
	}
	g.m.publish.Observe(time.Since(start).Seconds())
	g.published.Add(1)
	return true
}

func (g *Gateway) ack(seq uint64) {
	if err := g.q.Ack(seq); err != nil {
		// Sent again later: the centre drops the duplicate.
		g.log.Error("store-and-forward queue: ack failed", "err", err)
	}
}
