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
	// MaxPending bounds the messages kept in memory while the uplink is
	// down (default 3600: an hour of 1 s cycles); the oldest go first.
	// Issue #4 replaces this with a disk queue.
	MaxPending int
	Clock      func() time.Time
	Logger     *slog.Logger
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

	seq       uint64
	published atomic.Uint64     // messages the broker acknowledged
	outs      [][]telemetry.Out // per device, reused every cycle
	m         *metrics

	// mu guards what /healthz reads while Run changes it.
	mu        sync.Mutex
	pending   []pendingMsg // messages not yet acknowledged, oldest first
	dropped   int
	lastCycle time.Time
	uplinkUp  bool
}

type pendingMsg struct {
	payload []byte
	created time.Time
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
	if o.MaxPending == 0 {
		o.MaxPending = 3600
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
	return g, nil
}

// Published is how many messages the broker has acknowledged.
func (g *Gateway) Published() uint64 { return g.published.Load() }

// Boot is this process's boot id (SPEC §2).
func (g *Gateway) Boot() string { return g.boot }

func (g *Gateway) status(state string) []byte {
	return telemetry.AppendStatus(nil, telemetry.Status{State: state, Boot: g.boot, TS: g.o.Clock().UnixMilli()})
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
		for _, c := range g.clients {
			_ = c.Close()
		}
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
			g.enqueue(g.cycle())
			g.flush(ctx, client, topic)
		}
	}
}

// cycle polls every device at once and returns the message of this cycle.
func (g *Gateway) cycle() []byte {
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
	var all []telemetry.Out
	for _, o := range g.outs {
		all = append(all, o...)
	}
	g.seq++
	now := g.o.Clock()
	g.mu.Lock()
	g.lastCycle = now
	g.mu.Unlock()
	g.m.lastCycle.Set(float64(now.UnixMilli()) / 1000)
	return telemetry.AppendTelemetry(nil, g.o.Gateway, g.boot, g.seq, false, all)
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

func (g *Gateway) enqueue(msg []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) >= g.o.MaxPending {
		g.pending = g.pending[1:]
		g.dropped++
		g.m.dropped.Inc()
		g.log.Warn("uplink backlog full: oldest message dropped", "dropped_total", g.dropped)
	}
	g.pending = append(g.pending, pendingMsg{payload: msg, created: g.o.Clock()})
	g.m.setQueue(len(g.pending), g.pending[0].created, g.o.Clock())
}

// oldest returns the oldest waiting message.
func (g *Gateway) oldest() (pendingMsg, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) == 0 {
		return pendingMsg{}, false
	}
	return g.pending[0], true
}

// acked drops the oldest message once the broker acknowledged it.
func (g *Gateway) acked() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending[0] = pendingMsg{}
	g.pending = g.pending[1:]
	if len(g.pending) > 0 {
		g.m.setQueue(len(g.pending), g.pending[0].created, g.o.Clock())
	} else {
		g.m.setQueue(0, time.Time{}, time.Time{})
	}
}

// flush publishes what is pending, oldest first, each waiting for its
// PUBACK; it stops at the first that is not acknowledged in time and keeps
// it (the centre drops the duplicate if it did arrive).
func (g *Gateway) flush(ctx context.Context, c mqtt.Client, topic string) {
	for ctx.Err() == nil {
		msg, ok := g.oldest()
		if !ok || !c.IsConnectionOpen() {
			return
		}
		sent := time.Now()
		t := c.Publish(topic, 1, false, msg.payload)
		if !t.WaitTimeout(g.o.PublishTimeout) || t.Error() != nil {
			g.log.Warn("publish not acknowledged; kept for the next try", "err", t.Error())
			return
		}
		g.m.publish.Observe(time.Since(sent).Seconds())
		g.acked()
		g.published.Add(1)
	}
}
