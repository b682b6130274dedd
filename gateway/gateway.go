package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
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
	// TLS, when set, secures the uplink (a tls:// or ssl:// Broker URL):
	// the centre's CA and, for client-certificate authentication, the
	// gateway's certificate.
	TLS *tls.Config
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
	// MaxBackoff bounds the wait between tries at a device that does not
	// answer or says it is busy (default 30 s). The first failure is
	// retried at the next poll slot; each further one doubles the wait,
	// from one poll period up to MaxBackoff.
	MaxBackoff time.Duration
	// Clock stamps the readings (default time.Now). Poll slots follow the
	// monotonic clock.
	Clock  func() time.Time
	Logger *slog.Logger
}

// Gateway polls each of its devices on the device's own schedule and
// publishes what the polls read, one message per poll cycle.
//
// Goroutines, all owned by Run and ended before it returns:
//   - Run itself is the scheduler: it wakes at each device's poll slots
//     (start + k × period, so there is no drift) and hands the slot to the
//     device's goroutine; a device still busy with its last poll misses
//     the slot (counted), and nobody else waits for it.
//   - one goroutine per device polls it and hands its readings to the
//     collector;
//   - the collector makes a message of what the devices read as soon as
//     every poll started has ended (or a short window after the first
//     readings, when a slow device is still at it) and makes it durable in
//     the queue;
//   - the sender publishes those messages, then replays the backlog, and
//     republishes the retained status.
type Gateway struct {
	o      Options
	gw     int32
	ent    string
	boot   string
	devs   []*device
	period time.Duration // the gateway's fastest poll period
	log    *slog.Logger

	published atomic.Uint64 // messages the broker acknowledged
	m         *metrics
	col       collector

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
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
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
		p := time.Duration(plan.device.PollPeriodMS) * time.Millisecond
		if p <= 0 {
			p = g.period
		}
		g.period = min(g.period, p)
		g.devs = append(g.devs, &device{plan: plan, client: c, period: p, slot: make(chan time.Time, 1), count: g.m.forDevice(plan.device.ID)})
	}
	g.col.ready = make(chan struct{}, 1)
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
	for _, d := range g.devs {
		_ = d.client.Close()
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
// disconnects. Readings polled before the end are in the queue when Run
// returns; what was not yet sent goes out, marked replay, after the next
// start.
func (g *Gateway) Run(ctx context.Context) error {
	statusTopic := telemetry.StatusTopic(g.ent, g.o.Gateway)
	wake := make(chan struct{}, 1)
	opts := mqtt.NewClientOptions().
		AddBroker(g.o.Broker).
		SetClientID(g.o.Gateway).
		// MQTT 3.1.1 only: paho would retry a refused connect as 3.1,
		// and the centre would count each refusal twice.
		SetProtocolVersion(4).
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
	if g.o.TLS != nil {
		opts.SetTLSConfig(g.o.TLS)
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Fresh on every (re)connect: the centre measures clock skew from it.
		c.Publish(statusTopic, 1, true, g.status("online"))
		g.setUplink(true)
		g.log.Info("uplink connected", "broker", g.o.Broker, "queued", g.q.Len())
		select {
		case wake <- struct{}{}: // replay the backlog now
		default:
		}
	})
	// A failed connect is said at once, then at most once a minute until
	// a connect succeeds: paho retries every few seconds.
	var refusalMu sync.Mutex
	var saidAt time.Time
	opts.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		refusalMu.Lock()
		defer refusalMu.Unlock()
		switch n := n.(type) {
		case mqtt.ConnectionNotificationFailed: // a refused CONNACK, or no connection at all
			g.m.connectFailures.Inc()
			if time.Since(saidAt) >= time.Minute {
				saidAt = time.Now()
				g.log.Warn("uplink: cannot connect to the broker; retrying, poll cycles are kept in the queue", "broker", g.o.Broker, "err", n.Reason, "queued", g.q.Len())
			}
		case mqtt.ConnectionNotificationConnected:
			saidAt = time.Time{}
		}
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		g.setUplink(false)
		g.log.Warn("uplink lost; poll cycles are kept in the queue", "err", err)
	})
	client := mqtt.NewClient(opts)
	client.Connect() // retries in the background until it succeeds
	g.log.Info("gateway started", "boot", g.boot, "devices", len(g.devs), "period", g.period)

	var devices, rest sync.WaitGroup
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	for _, d := range g.devs {
		devices.Go(func() { g.pollLoop(pollCtx, d) })
	}
	fresh := make(chan queue.Message, 64)
	polled := make(chan struct{})
	rest.Go(func() { g.collect(polled, fresh) })
	sendCtx, stopSend := context.WithCancel(context.Background())
	rest.Go(func() { g.sendLoop(sendCtx, client, statusTopic, fresh, wake) })

	g.schedule(ctx)

	// Shutdown: the polls end (each within its timeout), the collector keeps
	// what they read and closes fresh, the sender publishes what it still
	// holds (for at most PublishTimeout: the rest stays queued for the next
	// start), then the status goes offline.
	stopPolls()
	devices.Wait()
	close(polled)
	sent := make(chan struct{})
	go func() { rest.Wait(); close(sent) }()
	last := time.NewTimer(g.o.PublishTimeout)
	select {
	case <-sent:
	case <-last.C:
	}
	last.Stop()
	stopSend()
	<-sent
	t := client.Publish(statusTopic, 1, true, g.status("offline"))
	t.WaitTimeout(time.Second)
	client.Disconnect(250)
	return nil
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
