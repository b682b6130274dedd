package sim_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goburrow/modbus"

	"hazardwatch/configs"
	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/config"
	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
	"hazardwatch/internal/testclock"
)

// TestMain fails the run when goroutines outlive the tests: every
// simulator is closed by its test, and what it started must be gone. The
// Modbus library's goroutines end asynchronously on closed sockets, so the
// check polls for a while instead of counting once.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// The fuzzing engine keeps goroutines of its own (its coordinator and
	// worker pipes); the check is for what the tests start.
	if code == 0 && !fuzzing() {
		if n, ok := settle(before, 5*time.Second); !ok {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutines leaked: %d before the tests, %d after\n%s\n", before, n, buf)
			code = 1
		}
	}
	os.Exit(code)
}

func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// settle waits until at most want goroutines run, polling until the deadline.
func settle(want int, within time.Duration) (int, bool) {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return n, true
		}
		if time.Now().After(deadline) {
			return n, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, within, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var demo = sync.OnceValues(func() (*config.Config, error) {
	return config.LoadDemo()
})

func loadDemo(t testing.TB) (*config.Config, *sim.Scenario) {
	t.Helper()
	cfg, err := demo()
	if err != nil {
		t.Fatalf("demo plant: %v", err)
	}
	sc, err := sim.LoadScenario(configs.Demo(), "scenario.yaml", "configs/demo", cfg.Plant)
	if err != nil {
		t.Fatalf("demo scenario: %v", err)
	}
	return cfg, sc
}

// fakeClock is the injected clock: tests move it, values follow exactly.
type fakeClock struct {
	*testclock.Clock
	epoch time.Time
}

func newFakeClock() *fakeClock {
	t0 := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	return &fakeClock{testclock.New(t0), t0}
}

// At sets the clock to offset after the simulator's epoch (its creation).
func (c *fakeClock) At(offset time.Duration) { c.Set(c.epoch.Add(offset)) }

// startDemo runs the demo plant with every device on a free loopback port.
func startDemo(t *testing.T, clock *fakeClock) (*sim.Simulator, *config.Config) {
	t.Helper()
	cfg, sc := loadDemo(t)
	opts := sim.Options{Seed: 7}
	if clock != nil {
		opts.Clock = clock.Now
	}
	return startSim(t, cfg.Plant, sc, opts), cfg
}

// newSim builds a simulator of plant p following sc with every device on a
// free loopback port, and closes it when the test ends.
func newSim(t *testing.T, p *model.Plant, sc *sim.Scenario, opts sim.Options) *sim.Simulator {
	t.Helper()
	opts.Listen = sim.Loopback(p)
	s, err := sim.New(p, sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// startSim is newSim, started.
func startSim(t *testing.T, p *model.Plant, sc *sim.Scenario, opts sim.Options) *sim.Simulator {
	t.Helper()
	s := newSim(t, p, sc, opts)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// client connects the real gateway client to a simulated device.
func client(t *testing.T, s *sim.Simulator, p *model.Plant, gw, dev string, timeout time.Duration) gateway.ModbusClient {
	t.Helper()
	g, ok := p.GatewayIndex(gw)
	if !ok {
		t.Fatalf("no gateway %s", gw)
	}
	var d model.Device
	for _, x := range p.Gateways[g].Devices {
		if x.ID == dev {
			d = x
		}
	}
	d.Address = s.Addr(gw, dev)
	d.TimeoutMS = timeout.Milliseconds()
	c, err := gateway.NewModbusClient(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sensorOf(t *testing.T, p *model.Plant, id string) *model.Sensor {
	t.Helper()
	i, ok := p.SensorIndex(id)
	if !ok {
		t.Fatalf("no sensor %s", id)
	}
	return &p.Sensors[i]
}

func deviceOf(p *model.Plant, s *model.Sensor) (string, string) {
	g := &p.Gateways[s.Gateway]
	return g.ID, g.Devices[s.Device].ID
}

// readRaw reads the sensor's own registers or bit the way a poll would.
func readRaw(c gateway.ModbusClient, r model.Register) ([]byte, error) {
	n := uint16(r.Type.Words())
	switch r.Area {
	case model.Holding:
		return c.ReadHoldingRegisters(r.Address, n)
	case model.Input:
		return c.ReadInputRegisters(r.Address, n)
	case model.Coil:
		return c.ReadCoils(r.Address, 1)
	case model.DiscreteInput:
		return c.ReadDiscreteInputs(r.Address, 1)
	}
	return nil, fmt.Errorf("area %v", r.Area)
}

func readSensor(t *testing.T, c gateway.ModbusClient, s *model.Sensor) float64 {
	t.Helper()
	b, err := readRaw(c, s.Register)
	if err != nil {
		t.Fatalf("read %s: %v", s.ID, err)
	}
	v, err := gateway.NewConverter(s.Register).Decode(b, 0)
	if err != nil {
		t.Fatalf("decode %s: %v", s.ID, err)
	}
	return v
}

// resolution is how far a served value may be from the one pinned: half a
// step of an integer register, float32 rounding, or nothing.
func resolution(s *model.Sensor, v float64) float64 {
	switch s.Register.Type {
	case model.Float32:
		return math.Abs(v)*1e-7 + 1e-12
	case model.Float64, model.Bit:
		return 1e-12
	}
	return s.Register.Scale/2 + 1e-9
}

func TestDemoScenarioLoads(t *testing.T) {
	cfg, sc := loadDemo(t)
	if sc.Cycle() != 10*time.Minute {
		t.Errorf("cycle = %s, want 10m", sc.Cycle())
	}
	if sc.File() != "configs/demo/scenario.yaml" {
		t.Errorf("file = %q", sc.File())
	}
	if n := len(cfg.Plant.Sensors); n != 63 {
		t.Errorf("demo plant has %d sensors, want 63", n)
	}
}

// TestReadBackTypes pins a value per register type and reads it back over
// Modbus TCP with the gateway's client and converter.
func TestReadBackTypes(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	tests := []struct {
		name   string
		sensor string
		set    float64
		want   float64
	}{
		{"float32 holding", "e01-V101-LT", 2.345, float64(float32(2.345))},
		{"float64 holding", "e02-T301-LT", 15.123456789, 15.123456789},
		{"float32 negative", "e01-V101-TT", -12.5, -12.5},
		{"uint16 scale 0.01 input", "e01-GT-101", 0.47, 0.47},
		{"uint16 scale 0.1 input", "e02-GT-201", 23.4, 23.4},
		{"uint16 rounds to the step", "e01-GT-102", 0.123, 0.12},
		{"uint16 clamps below zero", "e01-GT-103", -1, 0},
		{"int16 scale 0.1 negative", "e03-TT-601", -12.3, -12.3},
		{"int32 scale 0.01", "e02-FT-301", 123.45, 123.45},
		{"uint32 word order little scale 0.1", "e03-PM-001-E", 1284031.7, 1284031.7},
		{"uint16 state", "e01-SIS-101", 2, 2},
		{"coil on", "e02-XV201", 1, 1},
		{"coil off", "e02-XV202", 0, 0},
		{"discrete input on", "e02-XV203", 1, 1},
		{"discrete input off", "e02-XV203", 0, 0},
		{"bit of a holding register", "e02-XV401", 1, 1},
		{"fault code out of range", "e02-GT-402", 6553.5, 6553.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sen := sensorOf(t, p, tt.sensor)
			gw, dev := deviceOf(p, sen)
			c := client(t, s, p, gw, dev, 2*time.Second)
			if err := s.Set(tt.sensor, tt.set); err != nil {
				t.Fatal(err)
			}
			defer s.Release(tt.sensor)
			got := readSensor(t, c, sen)
			if math.Abs(got-tt.want) > resolution(sen, tt.want) {
				t.Errorf("read %s = %v, want %v", tt.sensor, got, tt.want)
			}
			if v, ok := s.Value(tt.sensor); !ok || v != got {
				t.Errorf("Value(%s) = %v, %v; the client read %v", tt.sensor, v, ok, got)
			}
		})
	}
}

// TestUint32WordOrder checks the words on the wire, not only the round
// trip: the energy meter puts the low word first (CDAB).
func TestUint32WordOrder(t *testing.T) {
	s, cfg := startDemo(t, nil)
	c := client(t, s, cfg.Plant, "gw-e03-1", "pm1", 2*time.Second)
	if err := s.Set("e03-PM-001-E", 6553.8); err != nil { // raw 65538 = 0x0001_0002
		t.Fatal(err)
	}
	b, err := c.ReadHoldingRegisters(3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x00, 0x02, 0x00, 0x01}; string(b) != string(want) {
		t.Errorf("registers 3-4 = % x, want % x (low word first)", b, want)
	}
}

// TestEverySensorReadsBack pins each of the demo's sensors to a value
// inside its range and reads it back with its own register description.
func TestEverySensorReadsBack(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	clients := map[string]gateway.ModbusClient{}
	for i := range p.Sensors {
		sen := &p.Sensors[i]
		gw, dev := deviceOf(p, sen)
		c, ok := clients[gw+"/"+dev]
		if !ok {
			c = client(t, s, p, gw, dev, 2*time.Second)
			clients[gw+"/"+dev] = c
		}
		v := sen.RangeMin + 0.37*(sen.RangeMax-sen.RangeMin)
		if sen.Kind.Discrete() {
			v = sen.RangeMax
		}
		if err := s.Set(sen.ID, v); err != nil {
			t.Fatal(err)
		}
		if got := readSensor(t, c, sen); math.Abs(got-v) > resolution(sen, v) {
			t.Errorf("%s (%s %s): read %v, pinned %v", sen.ID, sen.Register.Area, sen.Register.Type, got, v)
		}
		if err := s.Release(sen.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStatusWordBits sets three valves that share holding register 16 one
// at a time: each bit changes alone.
func TestStatusWordBits(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	c := client(t, s, p, "gw-e01-1", "plc1", 2*time.Second)
	steps := []struct {
		sensor string
		v      float64
		word   uint16
	}{
		{"e01-XV101", 1, 0b011}, // scenario: XV101, XV102 open, XV103 closed
		{"e01-XV102", 0, 0b001},
		{"e01-XV103", 1, 0b101},
		{"e01-XV102", 1, 0b111},
		{"e01-XV101", 0, 0b110},
	}
	for _, st := range steps {
		if err := s.Set(st.sensor, st.v); err != nil {
			t.Fatal(err)
		}
		b, err := c.ReadHoldingRegisters(16, 1)
		if err != nil {
			t.Fatal(err)
		}
		if w := uint16(b[0])<<8 | uint16(b[1]); w != st.word {
			t.Errorf("after %s=%v: word %03b, want %03b", st.sensor, st.v, w, st.word)
		}
		for _, id := range []string{"e01-XV101", "e01-XV102", "e01-XV103"} {
			sen := sensorOf(t, p, id)
			got, _ := gateway.NewConverter(sen.Register).Decode(b, 0)
			want := float64(st.word >> uint(sen.Register.Bit) & 1)
			if got != want {
				t.Errorf("after %s=%v: %s decodes %v, want %v", st.sensor, st.v, id, got, want)
			}
		}
	}
}

func exceptionCode(err error) (byte, bool) {
	var me *modbus.ModbusError
	if errors.As(err, &me) {
		return me.ExceptionCode, true
	}
	return 0, false
}

func TestUnmappedAddress(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	tests := []struct {
		name    string
		gw, dev string
		read    func(c gateway.ModbusClient) ([]byte, error)
		want    byte // 0: answered
	}{
		{"holding past the map", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadHoldingRegisters(18, 1) }, 2},
		{"holding running past the map", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadHoldingRegisters(16, 3) }, 2},
		{"whole holding map", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadHoldingRegisters(0, 18) }, 0},
		{"second word of a float", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadHoldingRegisters(1, 1) }, 0},
		{"input registers of a PLC that has none", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadInputRegisters(0, 1) }, 2},
		{"GDS values and fault status word", "gw-e01-1", "gds1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadInputRegisters(0, 4) }, 0},
		{"input past the GDS map", "gw-e01-1", "gds1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadInputRegisters(0, 5) }, 2},
		{"coils where there are none", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadCoils(0, 1) }, 2},
		{"coils 0-1", "gw-e02-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadCoils(0, 2) }, 0},
		{"coils 0-2", "gw-e02-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadCoils(0, 3) }, 2},
		{"discrete input 1", "gw-e02-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.ReadDiscreteInputs(1, 1) }, 2},
		{"write refused", "gw-e01-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.WriteSingleRegister(0, 1) }, 1},
		{"coil write refused", "gw-e02-1", "plc1", func(c gateway.ModbusClient) ([]byte, error) { return c.WriteSingleCoil(0, 0xFF00) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, s, p, tt.gw, tt.dev, 2*time.Second)
			_, err := tt.read(c)
			code, isEx := exceptionCode(err)
			switch {
			case tt.want == 0 && err != nil:
				t.Errorf("err = %v, want an answer", err)
			case tt.want != 0 && (!isEx || code != tt.want):
				t.Errorf("err = %v, want exception %02X", err, tt.want)
			}
		})
	}
}

func TestWrongUnitID(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	g, _ := p.GatewayIndex("gw-e01-2")
	d := p.Gateways[g].Devices[1] // pm1, unit 2
	d.Address, d.UnitID, d.TimeoutMS = s.Addr("gw-e01-2", "pm1"), 1, 2000
	c, err := gateway.NewModbusClient(d)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ReadHoldingRegisters(0, 2)
	if code, ok := exceptionCode(err); !ok || code != 0x0A {
		t.Errorf("unit 1 at a unit-2 device: err = %v, want exception 0A (gateway path unavailable)", err)
	}
	good := client(t, s, p, "gw-e01-2", "pm1", 2*time.Second)
	if _, err := good.ReadHoldingRegisters(0, 2); err != nil {
		t.Errorf("unit 2: %v", err)
	}
}

func TestSetException(t *testing.T) {
	s, cfg := startDemo(t, nil)
	c := client(t, s, cfg.Plant, "gw-e02-1", "gds1", 2*time.Second)
	for _, code := range []byte{0x04, 0x06, 0x0B, 0x02, 0x0A} {
		s.SetException("gw-e02-1", "gds1", code)
		_, err := c.ReadInputRegisters(0, 7)
		if got, ok := exceptionCode(err); !ok || got != code {
			t.Errorf("SetException(%02X): err = %v", code, err)
		}
	}
	other := client(t, s, cfg.Plant, "gw-e02-1", "plc1", 2*time.Second)
	if _, err := other.ReadHoldingRegisters(0, 11); err != nil {
		t.Errorf("another device of the gateway: %v", err)
	}
	s.SetException("gw-e02-1", "gds1", 0)
	if _, err := c.ReadInputRegisters(0, 7); err != nil {
		t.Errorf("after SetException(0): %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readUntil polls a device until its answer satisfies ok, closing the
// client after each failure as the gateway does.
func readUntil(t *testing.T, c gateway.ModbusClient, what string, ok func(error) bool) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() (bool, string) {
		_, err := c.ReadHoldingRegisters(0, 2)
		if err != nil {
			c.Close()
		}
		return ok(err), fmt.Sprint(err)
	})
}

func TestSetSilent(t *testing.T) {
	s, cfg := startDemo(t, nil)
	p := cfg.Plant
	c := client(t, s, p, "gw-e03-1", "pm1", 150*time.Millisecond)
	other := client(t, s, p, "gw-e03-1", "plc1", 2*time.Second)
	readUntil(t, c, "pm1 answers", func(err error) bool { return err == nil })
	s.SetSilent("gw-e03-1", "pm1", true)
	readUntil(t, c, "silent device times out", isTimeout)
	// The next request times out too: silence is not a one-off.
	if _, err := c.ReadHoldingRegisters(0, 2); !isTimeout(err) {
		t.Errorf("second request to the silent device: %v, want a timeout", err)
	}
	c.Close()
	if _, err := other.ReadHoldingRegisters(0, 8); err != nil {
		t.Errorf("another device while pm1 is silent: %v", err)
	}
	if v, ok := s.Value("e03-PM-001"); !ok || v <= 0 {
		t.Errorf("Value of a silent device's sensor = %v, %v; want its value", v, ok)
	}
	s.SetSilent("gw-e03-1", "pm1", false)
	readUntil(t, c, "device answers again", func(err error) bool { return err == nil })
}

// TestScenarioEpisodes moves an injected clock through the demo cycle and
// reads the sensors over Modbus, comparing with the compiled rules.
func TestScenarioEpisodes(t *testing.T) {
	clock := newFakeClock()
	s, cfg := startDemo(t, clock)
	p := cfg.Plant
	lim := func(id string, k model.LimitKind) (float64, float64) {
		r := cfg.Rules[mustIndex(t, p, id)]
		if !r.Limits[k].Set {
			t.Fatalf("%s has no %s limit", id, k)
		}
		return r.Limits[k].Value, r.Deadband
	}
	above := func(k model.LimitKind) func(string, float64) (bool, string) {
		return func(id string, v float64) (bool, string) {
			l, _ := lim(id, k)
			return v > l, fmt.Sprintf("above %s %.4g", k, l)
		}
	}
	// back inside a high limit by its deadband: the alarm returns.
	inside := func(k model.LimitKind) func(string, float64) (bool, string) {
		return func(id string, v float64) (bool, string) {
			l, db := lim(id, k)
			return v < l-db, fmt.Sprintf("below %s − deadband %.4g", k, l-db)
		}
	}
	between := func(lo, hi float64) func(string, float64) (bool, string) {
		return func(_ string, v float64) (bool, string) {
			return v >= lo && v <= hi, fmt.Sprintf("within %g-%g", lo, hi)
		}
	}
	equal := func(want float64) func(string, float64) (bool, string) {
		return between(want, want)
	}
	idle := p.Enterprises[mustEnterprise(t, p, "e03")].IdlePowerKW
	tests := []struct {
		at     time.Duration
		sensor string
		ok     func(string, float64) (bool, string)
	}{
		{0, "e01-GT-101", inside(model.H)},
		{30 * time.Second, "e01-GT-101", inside(model.H)},
		{50 * time.Second, "e01-GT-101", above(model.H)},
		{50 * time.Second, "e01-GT-101", inside(model.HH)},
		{90 * time.Second, "e01-GT-101", above(model.HH)},
		{150 * time.Second, "e01-GT-101", between(0.98, 1.02)}, // the peak, 1.0 ppm ± noise
		{300 * time.Second, "e01-GT-101", inside(model.H)},
		{150 * time.Second, "e01-GT-103", inside(model.H)}, // downwind: a trend, no alarm
		{180 * time.Second, "e01-GT-103", between(0.2, 0.3)},
		// stop-order violation: e03 draws far more than its idle power
		{60 * time.Second, "e03-PM-001", between(0, idle)},
		{200 * time.Second, "e03-PM-001", between(5*idle, 900)},
		{200 * time.Second, "e03-PM-001-I", between(50, 60)},
		{200 * time.Second, "e03-XV501", equal(1)},
		{200 * time.Second, "e03-FT-501", between(250, 270)},
		{250 * time.Second, "e03-R501-TT", between(100, 115)},
		{250 * time.Second, "e03-R501-TT", inside(model.H)},
		{450 * time.Second, "e03-PM-001", between(0, idle)},
		// overfill
		{240 * time.Second, "e02-V201-LT", inside(model.H)},
		{260 * time.Second, "e02-V201-LT", above(model.H)},
		{310 * time.Second, "e02-V201-LT", above(model.HH)},
		{400 * time.Second, "e02-V201-LT", inside(model.H)},
		{500 * time.Second, "e02-V202-LT", inside(model.H)},
		// surge
		{320 * time.Second, "e02-R401-PT", inside(model.H)},
		{335 * time.Second, "e02-R401-PT", above(model.HH)},
		{370 * time.Second, "e02-R401-PT", inside(model.H)},
		{340 * time.Second, "e02-SIS-401", equal(2)},
		{340 * time.Second, "e02-XV401", equal(0)},
		{400 * time.Second, "e02-FT-401", between(0, 300)},
		{460 * time.Second, "e02-SIS-401", equal(0)},
		{460 * time.Second, "e02-XV401", equal(1)},
		// detector fault: frozen, then out of range, then normal
		{210 * time.Second, "e02-GT-402", equal(4)},
		{340 * time.Second, "e02-GT-402", equal(4)},
		{360 * time.Second, "e02-GT-402", equal(6553.5)},
		{450 * time.Second, "e02-GT-402", between(0, 0.5)},
		// the cycle repeats
		{10*time.Minute + 90*time.Second, "e01-GT-101", above(model.HH)},
		{10*time.Minute + 360*time.Second, "e02-GT-402", equal(6553.5)},
	}
	for _, tt := range tests {
		sen := sensorOf(t, p, tt.sensor)
		gw, dev := deviceOf(p, sen)
		c := client(t, s, p, gw, dev, 2*time.Second)
		clock.At(tt.at)
		v := readSensor(t, c, sen)
		if ok, want := tt.ok(tt.sensor, v); !ok {
			t.Errorf("at %s: %s = %v, want %s", tt.at, tt.sensor, v, want)
		}
		c.Close()
	}
}

func mustIndex(t *testing.T, p *model.Plant, id string) int32 {
	t.Helper()
	i, ok := p.SensorIndex(id)
	if !ok {
		t.Fatalf("no sensor %s", id)
	}
	return i
}

func mustEnterprise(t *testing.T, p *model.Plant, id string) int32 {
	t.Helper()
	i, ok := p.EnterpriseIndex(id)
	if !ok {
		t.Fatalf("no enterprise %s", id)
	}
	return i
}

// TestSilentEpisode: the methanol tank PLC stops answering 470-530 s into
// the cycle, and only it.
func TestSilentEpisode(t *testing.T) {
	clock := newFakeClock()
	s, cfg := startDemo(t, clock)
	p := cfg.Plant
	c := client(t, s, p, "gw-e02-1", "plc2", 150*time.Millisecond)
	other := client(t, s, p, "gw-e02-1", "plc3", 2*time.Second)
	clock.At(460 * time.Second)
	readUntil(t, c, "plc2 answers before the cut", func(err error) bool { return err == nil })
	clock.At(480 * time.Second)
	readUntil(t, c, "plc2 silent at 480 s", isTimeout)
	if _, err := other.ReadHoldingRegisters(0, 10); err != nil {
		t.Errorf("plc3 during plc2's silence: %v", err)
	}
	clock.At(540 * time.Second)
	readUntil(t, c, "plc2 answers at 540 s", func(err error) bool { return err == nil })
}

// TestFirstAlarmWithin60s: a new user sees an alarm quickly. A crossing
// counts once it has held for the rule's on-delay.
func TestFirstAlarmWithin60s(t *testing.T) {
	cfg, sc := loadDemo(t)
	p := cfg.Plant
	clock := newFakeClock()
	s, err := sim.New(p, sc, sim.Options{Clock: clock.Now, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const step = 500 * time.Millisecond
	since := make([]time.Duration, len(p.Sensors))
	for i := range since {
		since[i] = -1
	}
	for at := time.Duration(0); at <= 60*time.Second; at += step {
		clock.At(at)
		for i := range p.Sensors {
			r := cfg.Rules[i]
			v, _ := s.Value(p.Sensors[i].ID)
			crossed := false
			for k, l := range r.Limits {
				if l.Set && ((model.LimitKind(k).High() && v > l.Value) || (!model.LimitKind(k).High() && v < l.Value)) {
					crossed = true
				}
			}
			switch {
			case !crossed:
				since[i] = -1
			case since[i] < 0:
				since[i] = at
			}
			if crossed && at-since[i] >= time.Duration(r.OnDelayMS)*time.Millisecond {
				t.Logf("first alarm: %s = %v at %s", p.Sensors[i].ID, v, at)
				return
			}
		}
	}
	t.Error("no alarm within 60 s of the start")
}

// TestEnergyCounter: the kWh counter never runs backwards, across cycles,
// and rises by the energy its power meter drew.
func TestEnergyCounter(t *testing.T) {
	cfg, sc := loadDemo(t)
	clock := newFakeClock()
	s, err := sim.New(cfg.Plant, sc, sim.Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prev := math.Inf(-1)
	var atCycle []float64
	for sec := 0; sec <= 1200; sec++ {
		clock.At(time.Duration(sec) * time.Second)
		v, _ := s.Value("e03-PM-001-E")
		if v < prev {
			t.Fatalf("counter ran backwards at %d s: %v after %v", sec, v, prev)
		}
		prev = v
		if sec%600 == 0 {
			atCycle = append(atCycle, v)
		}
	}
	// 62 kW for 600 s, plus (860-62) kW over a trapezoid of 30+200+30 s: 67.97 kWh.
	want := (62*600 + (860-62)*(30+200+30)) / 3600.0
	for i := 1; i < len(atCycle); i++ {
		if got := atCycle[i] - atCycle[i-1]; math.Abs(got-want) > 0.15 {
			t.Errorf("cycle %d: counter rose %.2f kWh, want %.2f", i, got, want)
		}
	}
}

// TestBaselinesOnly: without a scenario every sensor sits at its default.
func TestBaselinesOnly(t *testing.T) {
	cfg, _ := loadDemo(t)
	s, err := sim.New(cfg.Plant, nil, sim.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		sensor string
		lo, hi float64
	}{
		{"e03-AT-501", 20.8, 21.0},  // oxygen 20.9 %VOL
		{"e01-V101-LT", 1.19, 1.21}, // level at 40 % of 0-3 m
		{"e01-V101-TT", -0.3, 0.3},  // 40 % of -40..60 °C
		{"e01-GT-101", 0, 0.02},     // clean air, noise above zero only
		{"e02-GT-201", 0, 0.5},      // combustible
		{"e03-PM-001", 58, 70},      // stopped: 80 % of idle 80 kW, ± 6 kW
		{"e02-PM-001", 5980, 6020},  // operating: 40 % of 15000 kW
		{"e01-XV101", 0, 0},         // valves closed
		{"e01-SIS-101", 0, 0},       // SIS normal
		{"e03-PM-001-E", 0, 0},      // a counter without a power meter to follow
	}
	for _, tt := range tests {
		v, ok := s.Value(tt.sensor)
		if !ok || v < tt.lo || v > tt.hi {
			t.Errorf("%s = %v, %v; want %g-%g", tt.sensor, v, ok, tt.lo, tt.hi)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	cfg, sc := loadDemo(t)
	p := cfg.Plant
	if _, err := sim.New(p, sc, sim.Options{Listen: map[string]string{"gw-e01-1/plc9": "127.0.0.1:0"}}); err == nil || !strings.Contains(err.Error(), "gw-e01-1/plc9") {
		t.Errorf("Listen with an unknown device: err = %v", err)
	}
	other, err := demoCopy()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.New(other.Plant, sc, sim.Options{}); err == nil {
		t.Error("a scenario checked against another plant was accepted")
	}
	s, err := sim.New(p, sc, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Set("no-such-sensor", 1); err == nil {
		t.Error("Set of an unknown sensor")
	}
	if err := s.Set("e01-V101-LT", math.NaN()); err == nil {
		t.Error("Set to NaN")
	}
	if err := s.Release("no-such-sensor"); err == nil {
		t.Error("Release of an unknown sensor")
	}
	if _, ok := s.Value("no-such-sensor"); ok {
		t.Error("Value of an unknown sensor")
	}
	if a := s.Addr("gw-e01-1", "nope"); a != "" {
		t.Errorf("Addr of an unknown device = %q", a)
	}
	if a := s.Addr("gw-e01-1", "plc1"); a != "127.0.0.1:15021" {
		t.Errorf("Addr before Start = %q, want the configured address", a)
	}
	s.SetException("gw-e01-1", "nope", 4) // logged, not a panic
	s.SetSilent("gw-e01-1", "nope", true)
}

func demoCopy() (*config.Config, error) {
	return config.LoadDemo()
}

// TestLifecycle: Start listens, a cancelled context stops the servers,
// Close is idempotent and nothing the simulator started is left running.
func TestLifecycle(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg, sc := loadDemo(t)
	listen := sim.Loopback(cfg.Plant)
	s, err := sim.New(cfg.Plant, sc, sim.Options{Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}
	addr := s.Addr("gw-e01-1", "plc1")
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr did not resolve :0: %q", addr)
	}
	c := client(t, s, cfg.Plant, "gw-e01-1", "plc1", 2*time.Second)
	if _, err := c.ReadHoldingRegisters(0, 18); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel()
	eventually(t, 5*time.Second, "servers stop when the context ends", func() (bool, string) {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil, fmt.Sprint(err)
	})
	if err := s.Close(); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	if n, ok := settle(before, 5*time.Second); !ok {
		t.Errorf("goroutines: %d before, %d after Close", before, n)
	}
}

// TestStartFailsCleanly: a device whose port is taken fails Start, and
// the devices started before it are closed again.
func TestStartFailsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg, sc := loadDemo(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	listen := sim.Loopback(cfg.Plant)
	listen["gw-e03-1/pm1"] = taken.Addr().String() // the last device
	s, err := sim.New(cfg.Plant, sc, sim.Options{Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gw-e03-1/pm1") {
		t.Errorf("Start with a taken port: err = %v", err)
	}
	first := s.Addr("gw-e01-1", "plc1")
	if conn, err := net.Dial("tcp", first); err == nil {
		conn.Close()
		t.Errorf("the first device still listens on %s after the failed Start", first)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if n, ok := settle(before, 5*time.Second); !ok {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
}

// TestBrokenScenarios compares each broken scenario's errors with its
// golden file (go test -update rewrites them).
func TestBrokenScenarios(t *testing.T) {
	cfg, _ := loadDemo(t)
	files, err := filepath.Glob(filepath.Join("testdata", "broken", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			_, err := sim.LoadScenario(os.DirFS(filepath.Join("testdata", "broken")), name, "testdata/broken", cfg.Plant)
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, e := range errs {
				if e.File != "testdata/broken/"+name || e.Line < 1 || e.Col < 1 {
					t.Errorf("error without a place: %q", e.Error())
				}
			}
			got := errs.Error() + "\n"
			golden.Check(t, strings.TrimSuffix(f, ".yaml")+".golden", got)
		})
	}
}

func TestLoadScenarioMissingFile(t *testing.T) {
	cfg, _ := loadDemo(t)
	_, err := sim.LoadScenario(configs.Demo(), "nope.yaml", "configs/demo", cfg.Plant)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want one wrapping fs.ErrNotExist", err)
	}
}
