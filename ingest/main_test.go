package ingest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/internal/bus"
	"hazardwatch/internal/config"
	"hazardwatch/internal/metrictest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
)

// Deadlines of the tests: generous, because a 2-core machine running the
// race detector is slow, and waits poll rather than sleep, so a fast
// machine never pays them.
const (
	waitLong = 30 * time.Second
	pollStep = 10 * time.Millisecond
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(waitLong); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkLeaks waits until no goroutine of this package, the brokers, the
// MQTT client or NATS is left, and fails with their stacks when some are.
func checkLeaks(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		leaked := leakedGoroutines()
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(pollStep)
	}
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ingest.leakedGoroutines") || strings.Contains(g, "testing.(*M).") {
			continue
		}
		for _, pkg := range []string{"hazardwatch/", "mochi-mqtt", "paho.mqtt", "nats-io/"} {
			if strings.Contains(g, pkg) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return leaked
}

var demoPlant = sync.OnceValues(func() (*model.Plant, error) {
	cfg, err := config.LoadDemo()
	if err != nil {
		return nil, err
	}
	return cfg.Plant, nil
})

func plant(tb testing.TB) *model.Plant {
	tb.Helper()
	p, err := demoPlant()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// harness is a bus and an ingest on a data folder, both real.
type harness struct {
	tb   testing.TB
	dir  string
	opts Options
	reg  *prometheus.Registry
	bus  *bus.Server
	in   *Ingest
}

// start runs a bus and an ingest with an embedded broker on a free port;
// mod adjusts the options. Both stop when the test ends.
func start(tb testing.TB, mod func(*Options)) *harness {
	tb.Helper()
	h := &harness{tb: tb, dir: tb.TempDir()}
	h.opts = Options{Plant: plant(tb), Listen: "127.0.0.1:0"}
	if mod != nil {
		mod(&h.opts)
	}
	h.up()
	tb.Cleanup(h.down)
	return h
}

func (h *harness) up() {
	h.tb.Helper()
	b, err := bus.Start(bus.Options{Dir: h.dir})
	if err != nil {
		h.tb.Fatal(err)
	}
	h.bus = b
	h.reg = prometheus.NewRegistry()
	o := h.opts
	o.Bus, o.Registerer = b, h.reg
	in, err := New(o)
	if err != nil {
		b.Shutdown()
		h.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := in.Start(ctx); err != nil {
		b.Shutdown()
		h.tb.Fatal(err)
	}
	h.in = in
}

func (h *harness) down() {
	if h.in != nil {
		if err := h.in.Close(); err != nil {
			h.tb.Error(err)
		}
		h.in = nil
	}
	if h.bus != nil {
		h.bus.Shutdown()
		h.bus = nil
	}
}

// restart stops the ingest and the bus and starts both again on the same
// folder, as a restart of the centre does. A new embedded broker listens
// on a new port.
func (h *harness) restart() {
	h.tb.Helper()
	h.down()
	h.up()
}

// metric reads one series from the harness's registry by name and labels,
// as a scrape of /metrics would show it; 0 when absent.
func (h *harness) metric(name string, labels ...string) float64 {
	h.tb.Helper()
	return metrictest.Value(h.tb, h.reg, name, labels...)
}

// client connects a gateway-like MQTT 3.1.1 client to the embedded broker.
func (h *harness) client(id string, mod func(*paho.ClientOptions)) paho.Client {
	h.tb.Helper()
	return connect(h.tb, "tcp://"+h.in.Addr(), id, mod)
}

func connect(tb testing.TB, url, id string, mod func(*paho.ClientOptions)) paho.Client {
	tb.Helper()
	c, err := tryConnect(tb, url, id, mod)
	if err != nil {
		tb.Fatalf("connect %s to %s: %v", id, url, err)
	}
	return c
}

// tryConnect is connect for a connection that may be refused.
func tryConnect(tb testing.TB, url, id string, mod func(*paho.ClientOptions)) (paho.Client, error) {
	tb.Helper()
	// MQTT 3.1.1 explicitly: otherwise paho tries again with 3.1 after a
	// refusal, and every refusal would be counted twice.
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetKeepAlive(60 * time.Second).SetConnectTimeout(waitLong).SetWriteTimeout(waitLong)
	if mod != nil {
		mod(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitLong) {
		tb.Fatalf("connect %s to %s: no answer within %s", id, url, waitLong)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// publish sends one QoS 1 message and waits for its PUBACK; the error is
// the token's.
func publish(tb testing.TB, c paho.Client, topic string, payload []byte) error {
	tb.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(waitLong) {
		tb.Fatalf("publish to %s: no PUBACK within %s", topic, waitLong)
	}
	return tok.Error()
}

// lossWatch receives a client's lost connection; its option installs it.
type lossWatch chan error

func newLossWatch() lossWatch { return make(lossWatch, 1) }

func (w lossWatch) option(o *paho.ClientOptions) {
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { w <- err })
}

// refused publishes at QoS 1 what the broker will refuse and checks what
// the client sees: its connection closes (mochi ends an MQTT 3.1.1
// connection on an ACL refusal and on a packet above the cap) and no
// PUBACK comes.
func (w lossWatch) refused(tb testing.TB, c paho.Client, topic string, retain bool, payload []byte) {
	tb.Helper()
	tok := c.Publish(topic, 1, retain, payload)
	select {
	case <-w:
	case <-time.After(waitLong):
		tb.Fatalf("the connection stayed open after a refused publish to %s", topic)
	}
	if tok.WaitTimeout(waitLong) && tok.Error() == nil {
		tb.Errorf("the refused publish to %s was acknowledged", topic)
	}
}

func mustPublish(tb testing.TB, c paho.Client, topic string, payload []byte) {
	tb.Helper()
	if err := publish(tb, c, topic, payload); err != nil {
		tb.Fatalf("publish to %s: %v", topic, err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	poll.Until(tb, what, waitLong, cond)
}

// storedEntry is an Entry copied out of the stream.
type storedEntry struct {
	Gateway, Enterprise, Boot string
	Seq                       uint64
	Replay                    bool
	Received                  int64
	Readings                  []storedReading
}

type storedReading struct {
	Sensor   string
	TS       int64
	Value    float64
	HasValue bool
	Late     bool
	Quality  model.Quality
	Reason   model.QualityReason
}

func copyEntry(e *Entry) storedEntry {
	s := storedEntry{Gateway: string(e.Gateway), Enterprise: string(e.Enterprise), Boot: string(e.Boot),
		Seq: e.Seq, Replay: e.Replay, Received: e.Received}
	for _, r := range e.Readings {
		s.Readings = append(s.Readings, storedReading{string(r.Sensor), r.TS, r.Value, r.HasValue, r.Late, r.Quality, r.Reason})
	}
	return s
}

// stored reads back every entry of the READINGS stream, in order.
func (h *harness) stored() []storedEntry {
	h.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	nc, js, err := h.bus.JetStream("test-reader")
	if err != nil {
		h.tb.Fatal(err)
	}
	defer nc.Close()
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		h.tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		h.tb.Fatal(err)
	}
	var out []storedEntry
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if err != nil {
			h.tb.Fatalf("stream message %d: %v", seq, err)
		}
		if err := DecodeBatch(msg.Data, func(e *Entry) error {
			out = append(out, copyEntry(e))
			return nil
		}); err != nil {
			h.tb.Fatalf("stream message %d: %v", seq, err)
		}
	}
	return out
}

// storedSeqs lists the stored entries of one (gateway, boot) by seq, with
// how often each was stored.
func (h *harness) storedSeqs(gateway, boot string) map[uint64]int {
	h.tb.Helper()
	n := map[uint64]int{}
	for _, e := range h.stored() {
		if e.Gateway == gateway && e.Boot == boot {
			n[e.Seq]++
		}
	}
	return n
}

// A gateway of the demo plant and some of its sensors.
const (
	testEnt  = "e01"
	testGW   = "gw-e01-1"
	sensorLT = "e01-V101-LT"
	sensorPT = "e01-V101-PT"
	sensorXV = "e01-XV101"
	otherEnt = "e02-V201-LT" // a sensor of another enterprise
)

var testTopic = telemetry.TelemetryTopic(testEnt, testGW)

// goodMessage is a well-formed poll cycle of testGW: n readings of its
// sensors at ts (Unix ms).
func goodMessage(boot string, seq uint64, ts int64, n int) []byte {
	sensors := []string{sensorLT, sensorPT, "e01-V101-TT", "e01-V102-LT", "e01-V102-PT", "e01-V102-TT", "e01-V103-LT", "e01-V103-PT"}
	outs := make([]telemetry.Out, 0, n)
	for i := range n {
		outs = append(outs, telemetry.Out{Sensor: sensors[i%len(sensors)], TS: ts - int64(i), Value: 1.5 + float64(i), HasValue: true})
	}
	return telemetry.AppendTelemetry(nil, testGW, boot, seq, false, outs)
}

func nowMS() int64 { return time.Now().UnixMilli() }
