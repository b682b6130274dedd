package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
	"hazardwatch/internal/testnet"
)

// broker starts a plain MQTT broker on a free loopback port.
func broker(t *testing.T) string {
	t.Helper()
	return brokerAt(t, "127.0.0.1:0")
}

// brokerAt starts a plain MQTT broker listening on addr.
func brokerAt(t *testing.T, addr string) string {
	t.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: addr})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Close() })
	return "tcp://" + l.Address()
}

// collector subscribes to a gateway's topics and decodes what arrives.
type collector struct {
	mu       sync.Mutex
	dec      *telemetry.Decoder
	messages []telemetry.Message
	status   []telemetry.Status
}

func collect(t *testing.T, url string, p *model.Plant) *collector {
	t.Helper()
	c := &collector{dec: telemetry.NewDecoder(p, telemetry.Options{})}
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("collector"))
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("collector connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	tok := cl.Subscribe("hw/v1/+/+/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		c.mu.Lock()
		defer c.mu.Unlock()
		tp, err := telemetry.ParseTopic(m.Topic())
		if err != nil {
			t.Errorf("topic %q: %v", m.Topic(), err)
			return
		}
		if tp.Kind == telemetry.TopicStatus {
			st, err := telemetry.DecodeStatus(m.Payload())
			if err != nil {
				t.Errorf("status: %v", err)
			}
			c.status = append(c.status, st)
			return
		}
		var msg telemetry.Message
		if err := c.dec.Decode(m.Topic(), m.Payload(), time.Now(), 0, &msg); err != nil {
			t.Errorf("telemetry rejected: %v", err)
			return
		}
		if len(msg.Rejected) > 0 {
			t.Errorf("readings rejected: %+v", msg.Rejected)
		}
		c.messages = append(c.messages, msg)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return c
}

// freeAddr is a loopback address nobody listens on (until a test does).

// latest is each sensor's newest reading from messages of boot.
func (c *collector) latest(boot string) map[int32]model.Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int32]model.Reading{}
	for _, m := range c.messages {
		if m.Boot != boot {
			continue
		}
		for _, r := range m.Readings {
			if old, ok := out[r.SensorIdx]; !ok || r.TS >= old.TS {
				out[r.SensorIdx] = r
			}
		}
	}
	return out
}

// simulated serves the demo plant's devices on free ports (baselines
// only) and returns the plant, the simulator and the addresses of one
// gateway's devices. Every device gets a free port, not only that
// gateway's: the configured ports may be taken by another test binary.
func simulated(t *testing.T, gateway string, seed int64) (*model.Plant, *sim.Simulator, map[string]string) {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	gi, ok := p.GatewayIndex(gateway)
	if !ok {
		t.Fatalf("no gateway %s", gateway)
	}
	s, err := sim.New(p, nil, sim.Options{Listen: sim.Loopback(p), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.Close() })
	addrs := map[string]string{}
	for _, d := range p.Gateways[gi].Devices {
		addrs[d.ID] = s.Addr(gateway, d.ID)
	}
	return p, s, addrs
}

// TestGatewayEndToEnd polls the simulated devices of gw-e01-1 over real
// Modbus TCP and publishes over real MQTT: every sensor arrives each cycle
// with the value the device holds; an exception and a silent device give
// q bad with their reason, never a value; the retained status says online,
// then offline when the gateway stops.
func TestGatewayEndToEnd(t *testing.T) {
	p, s, addrs := simulated(t, "gw-e01-1", 1)
	gi, _ := p.GatewayIndex("gw-e01-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := broker(t)
	col := collect(t, url, p)

	var mine []string
	for _, sn := range p.Sensors {
		if sn.Gateway == gi {
			mine = append(mine, sn.ID)
		}
	}
	pinned := mine[0]
	if err := s.Set(pinned, 1.25); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Plant: p, Gateway: "gw-e01-1", Broker: url, DeviceAddr: addrs, PublishTimeout: 2 * time.Second, QueuePath: filepath.Join(t.TempDir(), "queue")})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gctx, gstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()

	last := func() (telemetry.Message, int) {
		col.mu.Lock()
		defer col.mu.Unlock()
		if len(col.messages) == 0 {
			return telemetry.Message{}, 0
		}
		return col.messages[len(col.messages)-1], len(col.messages)
	}
	// A device slower than the collector's window (its first connection,
	// under the race detector) sends its readings in a later message, so
	// wait for a message of a cycle in which every device answered in time.
	var m telemetry.Message
	poll.Until(t, "a second message with every sensor", 15*time.Second, func() bool {
		var n int
		m, n = last()
		return n >= 2 && len(m.Readings) == len(mine)
	})
	if len(m.Readings) != len(mine) || m.Boot != g.Boot() || m.Seq < 2 {
		t.Fatalf("message: %d readings (want %d), boot %q seq %d", len(m.Readings), len(mine), m.Boot, m.Seq)
	}
	pi, _ := p.SensorIndex(pinned)
	for _, r := range m.Readings {
		if r.Quality != model.Good {
			t.Errorf("%s: quality %s %s", p.Sensors[r.SensorIdx].ID, r.Quality, r.Reason)
		}
		if want, _ := s.Value(p.Sensors[r.SensorIdx].ID); r.SensorIdx == pi && r.Value != want {
			t.Errorf("%s = %v, device holds %v", pinned, r.Value, want)
		}
	}

	// A Modbus exception on the pinned sensor's device: q bad exception_04
	// for its sensors, no value.
	dev := p.Gateways[gi].Devices[p.Sensors[pi].Device].ID
	s.SetException("gw-e01-1", dev, 4)
	poll.Until(t, "exception readings", 15*time.Second, func() bool {
		m, _ := last()
		for _, r := range m.Readings {
			if r.SensorIdx == pi {
				return r.Quality == model.Bad && r.Reason == model.ModbusException(4) && !r.HasValue
			}
		}
		return false
	})
	s.SetException("gw-e01-1", dev, 0)

	// The gateway's own /healthz and /metrics tell a plant network engineer
	// the same: polling, uplink up, read errors by device and code.
	hs := httptest.NewServer(g.Handler())
	defer hs.Close()
	res, err := http.Get(hs.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health struct {
		OK, Polling, Uplink bool
		Boot                string
	}
	_ = json.NewDecoder(res.Body).Decode(&health)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !health.OK || !health.Uplink || health.Boot != g.Boot() {
		t.Errorf("/healthz: %d %+v", res.StatusCode, health)
	}
	metrics := func() string {
		res, err := http.Get(hs.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	errLine := fmt.Sprintf(`hw_gateway_read_errors_total{device=%q,gateway="gw-e01-1",reason="exception_04"}`, dev)
	if m := metrics(); !strings.Contains(m, errLine) || !strings.Contains(m, `hw_gateway_uplink_up{gateway="gw-e01-1"} 1`) {
		t.Errorf("/metrics lacks %s or the uplink:\n%s", errLine, m)
	}

	s.SetSilent("gw-e01-1", dev, true)
	poll.Until(t, "timeout readings", 20*time.Second, func() bool {
		m, _ := last()
		for _, r := range m.Readings {
			if r.SensorIdx == pi {
				return r.Quality == model.Bad && r.Reason == model.ReasonTimeout && !r.HasValue
			}
		}
		return false
	})
	s.SetSilent("gw-e01-1", dev, false)
	poll.Until(t, "good readings again", 20*time.Second, func() bool {
		m, _ := last()
		for _, r := range m.Readings {
			if r.SensorIdx == pi {
				return r.Quality == model.Good && r.Value == 1.25
			}
		}
		return false
	})

	gstop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "offline status", 5*time.Second, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		n := len(col.status)
		return n > 0 && col.status[n-1].State == telemetry.StateOffline && col.status[0].State == telemetry.StateOnline
	})
}

// TestDeviceFaultEndToEnd polls gw-e02-1's simulated gas-detection
// controller over real Modbus TCP and publishes over real MQTT: while the
// controller sets e02-GT-402's fault bit in its status word, the
// detector's readings arrive q bad device_fault with the value it shows,
// its neighbours in the same status word stay good, and the gateway counts
// each such reading in hw_gateway_read_errors_total{reason="device_fault"};
// once the bit is cleared the readings are good again and the count stops.
func TestDeviceFaultEndToEnd(t *testing.T) {
	const gw, detector, neighbour = "gw-e02-1", "e02-GT-402", "e02-GT-401"
	p, s, addrs := simulated(t, gw, 11)
	gi, _ := p.GatewayIndex(gw)
	p.Gateways[gi].PollPeriodMS = 100
	for di := range p.Gateways[gi].Devices {
		p.Gateways[gi].Devices[di].PollPeriodMS = 100
	}
	di, ok1 := p.SensorIndex(detector)
	ni, ok2 := p.SensorIndex(neighbour)
	if !ok1 || !ok2 {
		t.Fatalf("no sensor %s or %s in the demo", detector, neighbour)
	}
	dev := p.Gateways[gi].Devices[p.Sensors[di].Device].ID
	if err := s.Set(detector, 12.5); err != nil {
		t.Fatal(err)
	}
	url := broker(t)
	col := collect(t, url, p)
	g := running(t, gateway.Options{Plant: p, Gateway: gw, Broker: url, DeviceAddr: addrs, PublishTimeout: 2 * time.Second, QueuePath: filepath.Join(t.TempDir(), "queue")})

	// reading waits until the detector's newest reading is what want says,
	// and checks its neighbour on the same status word is good meanwhile.
	reading := func(what string, want func(r model.Reading) bool) {
		t.Helper()
		poll.Until(t, what, 15*time.Second, func() bool {
			latest := col.latest(g.Boot())
			r, ok := latest[di]
			if n, ok := latest[ni]; ok && n.Quality != model.Good {
				t.Fatalf("%s, sharing the status word: %s %s", neighbour, n.Quality, n.Reason)
			}
			return ok && want(r)
		})
	}
	errorsLine := fmt.Sprintf(`hw_gateway_read_errors_total{device=%q,gateway=%q,reason="device_fault"}`, dev, gw)
	faultCount := func() float64 {
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for line := range strings.SplitSeq(rec.Body.String(), "\n") {
			if v, ok := strings.CutPrefix(line, errorsLine+" "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				return n
			}
		}
		return 0
	}
	// published counts the messages of this boot, and the detector's
	// device_fault readings in them.
	published := func() (messages, faults int) {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, m := range col.messages {
			if m.Boot != g.Boot() {
				continue
			}
			messages++
			for _, r := range m.Readings {
				if r.SensorIdx == di && r.Reason == model.ReasonDeviceFault {
					faults++
				}
			}
		}
		return messages, faults
	}

	reading("a good reading of 12.5", func(r model.Reading) bool { return r.Quality == model.Good && r.HasValue && r.Value == 12.5 })
	if n := faultCount(); n != 0 {
		t.Fatalf("device_fault counted %v times before any fault", n)
	}
	if err := s.SetFault(detector, true); err != nil {
		t.Fatal(err)
	}
	reading("bad device_fault with the value 12.5", func(r model.Reading) bool {
		return r.Quality == model.Bad && r.Reason == model.ReasonDeviceFault && r.HasValue && r.Value == 12.5
	})
	if err := s.SetFault(detector, false); err != nil {
		t.Fatal(err)
	}
	reading("good again", func(r model.Reading) bool { return r.Quality == model.Good && r.HasValue && r.Value == 12.5 })

	// Every device_fault reading published was counted, and nothing more
	// is counted once the bit is clear.
	seen, sent := published()
	counted := faultCount()
	if sent == 0 || counted < float64(sent) {
		t.Errorf("%s: %v, but %d device_fault readings arrived", errorsLine, counted, sent)
	}
	poll.Until(t, "three more messages", 15*time.Second, func() bool { n, _ := published(); return n >= seen+3 })
	if n := faultCount(); n != counted {
		t.Errorf("device_fault counted %v times after the bit was cleared, %v before", n, counted)
	}
}

// running starts a gateway with opts and stops it when the test ends,
// before the broker and the simulator it talks to.
func running(t *testing.T, opts gateway.Options) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("gateway run: %v", err)
		}
		if err := g.Close(); err != nil {
			t.Errorf("gateway close: %v", err)
		}
	})
	return g
}

// TestStoreAndForward: while the uplink is down the gateway keeps every
// cycle in its disk queue; it is restarted (a new boot) before the broker
// comes back; then every queued message arrives once, marked replay, in
// order, and live messages of the new boot flow meanwhile.
func TestStoreAndForward(t *testing.T) {
	p, _, addrs := simulated(t, "gw-e01-1", 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	brokerAddr := testnet.FreeAddr(t) // nobody listens there yet: the uplink is down
	qpath := filepath.Join(t.TempDir(), "queue")
	opts := gateway.Options{Plant: p, Gateway: "gw-e01-1", Broker: "tcp://" + brokerAddr, DeviceAddr: addrs, PublishTimeout: 2 * time.Second, QueuePath: qpath}

	first, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(first.Handler())
	pending := func() int {
		res, err := http.Get(hs.URL + "/healthz")
		if err != nil {
			return 0
		}
		defer res.Body.Close()
		var h struct{ Pending int }
		_ = json.NewDecoder(res.Body).Decode(&h)
		return h.Pending
	}
	fctx, fstop := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() { fdone <- first.Run(fctx) }()
	poll.Until(t, "five queued cycles", 20*time.Second, func() bool { return pending() >= 5 })
	// The failed connects are counted (and logged once).
	mfs, err := first.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	failures := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "hw_gateway_connect_failures_total" {
			failures = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if failures < 1 {
		t.Errorf("hw_gateway_connect_failures_total = %v while the broker is unreachable", failures)
	}
	fstop()
	if err := <-fdone; err != nil {
		t.Fatal(err)
	}
	hs.Close()
	oldBoot := first.Boot()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// The uplink comes back; the gateway restarts with the same queue.
	url := brokerAt(t, brokerAddr)
	col := collect(t, url, p)
	second, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	sctx, sstop := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- second.Run(sctx) }()
	defer func() { sstop(); <-sdone }()

	var oldSeqs []uint64
	poll.Until(t, "the queued messages replayed and live ones flowing", 30*time.Second, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		oldSeqs = oldSeqs[:0]
		live := 0
		for _, m := range col.messages {
			switch m.Boot {
			case oldBoot:
				if !m.Replay {
					t.Errorf("queued message %d arrived without the replay mark", m.Seq)
				}
				oldSeqs = append(oldSeqs, m.Seq)
			case second.Boot():
				if !m.Replay {
					live++
				}
			}
		}
		return len(oldSeqs) >= 5 && live >= 2
	})
	for i, seq := range oldSeqs {
		if seq != uint64(i+1) {
			t.Fatalf("replayed seqs %v: want 1, 2, 3, … once each, in order", oldSeqs)
		}
	}
}
