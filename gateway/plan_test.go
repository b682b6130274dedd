package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/goburrow/modbus"

	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

func demoPlant(t testing.TB) *model.Plant {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Plant
}

// TestPlanDemo: every sensor of every demo device is bound exactly once,
// inside its request, and no request exceeds the device's limit.
func TestPlanDemo(t *testing.T) {
	p := demoPlant(t)
	bound := map[int32]int{}
	requests := 0
	for gi, g := range p.Gateways {
		for di, d := range g.Devices {
			plan := planDevice(p, int32(gi), int32(di))
			requests += len(plan.requests)
			for _, r := range plan.requests {
				limit := uint16(d.MaxRegisters)
				if r.area == model.Coil || r.area == model.DiscreteInput {
					limit = maxBits
				}
				if r.quantity == 0 || r.quantity > limit {
					t.Errorf("%s/%s: request %s %d+%d over the limit %d", g.ID, d.ID, r.area, r.start, r.quantity, limit)
				}
				for _, b := range r.bindings {
					bound[b.sensor]++
					s := p.Sensors[b.sensor]
					if s.Register.Area != r.area || s.Register.Address < r.start {
						t.Errorf("%s bound to the wrong request", s.ID)
					}
					if b.offset+b.conv.Bytes() > responseBytes(&r) {
						t.Errorf("%s: value at byte %d+%d lies past the response (%d bytes)", s.ID, b.offset, b.conv.Bytes(), responseBytes(&r))
					}
				}
			}
		}
	}
	for i, s := range p.Sensors {
		if bound[int32(i)] != 1 {
			t.Errorf("sensor %s bound %d times", s.ID, bound[int32(i)])
		}
	}
	// Every fault bit is read once, inside its request, and points at its
	// own sensor's reading.
	faults, placed := 0, map[int32]int{}
	for gi, g := range p.Gateways {
		for di := range g.Devices {
			plan := planDevice(p, int32(gi), int32(di))
			var order []int32 // the sensors' readings, in the order a poll appends them
			for _, r := range plan.requests {
				for _, b := range r.bindings {
					order = append(order, b.sensor)
				}
			}
			for _, r := range plan.requests {
				for _, f := range r.faults {
					placed[f.sensor]++
					s := p.Sensors[f.sensor]
					if fr := s.Fault; fr == nil || fr.Area != r.area || fr.Address < r.start || fr.Address >= r.start+r.quantity {
						t.Errorf("%s: fault bit placed in request %s %d+%d", s.ID, r.area, r.start, r.quantity)
					}
					if f.offset+f.conv.Bytes() > responseBytes(&r) {
						t.Errorf("%s: fault bit at byte %d lies past the response (%d bytes)", s.ID, f.offset, responseBytes(&r))
					}
					if f.out >= len(order) || order[f.out] != f.sensor {
						t.Errorf("%s: fault bit applies to reading %d, not the sensor's", s.ID, f.out)
					}
				}
			}
		}
	}
	for i, s := range p.Sensors {
		if s.Fault != nil {
			faults++
		}
		if want := map[bool]int{true: 1}[s.Fault != nil]; placed[int32(i)] != want {
			t.Errorf("sensor %s: fault bit placed %d times, want %d", s.ID, placed[int32(i)], want)
		}
	}
	if faults == 0 {
		t.Error("no demo sensor has a fault bit")
	}
	// A controller's status word right after its detectors' values is
	// read in the same request as the values.
	for _, dev := range []struct{ gw, dev string }{{"gw-e01-1", "gds1"}, {"gw-e02-1", "gds1"}} {
		gi, _ := p.GatewayIndex(dev.gw)
		for di, d := range p.Gateways[gi].Devices {
			if plan := planDevice(p, gi, int32(di)); d.ID == dev.dev && (len(plan.requests) != 1 || len(plan.requests[0].faults) != plan.sensors) {
				t.Errorf("%s/%s: %d requests, %d fault bits for %d detectors; want one request with a fault bit each", dev.gw, dev.dev, len(plan.requests), len(plan.requests[0].faults), plan.sensors)
			}
		}
	}
	// Neighbouring registers merge: far fewer reads than sensors.
	if requests >= len(p.Sensors)/2 {
		t.Errorf("%d requests for %d sensors: neighbours were not merged", requests, len(p.Sensors))
	}
	t.Logf("%d sensors (%d with a fault bit) in %d requests", len(p.Sensors), faults, requests)
}

func TestPlanSplitsAtLimit(t *testing.T) {
	p := &model.Plant{
		Enterprises: []model.Enterprise{{ID: "e"}},
		Gateways:    []model.Gateway{{ID: "g", Devices: []model.Device{{ID: "d", MaxRegisters: 4}}}},
	}
	for i := range 5 { // five float32 at 0, 2, 4, 6, 8: two fit in 4 registers
		p.Sensors = append(p.Sensors, model.Sensor{ID: fmt.Sprint("s", i), Register: model.Register{Area: model.Holding, Address: uint16(2 * i), Type: model.Float32, Bit: -1, Scale: 1}})
	}
	p.Sensors = append(p.Sensors, model.Sensor{ID: "far", Register: model.Register{Area: model.Input, Address: 100, Type: model.Uint16, Bit: -1, Scale: 1}})
	p.Index()
	plan := planDevice(p, 0, 0)
	var got []string
	for _, r := range plan.requests {
		got = append(got, fmt.Sprintf("%s %d+%d", r.area, r.start, r.quantity))
	}
	want := []string{"holding 0+4", "holding 4+4", "holding 8+2", "input 100+1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

// TestPlanGaps: a read never spans more unmapped registers (or bits) than
// the device's MaxGap: a strict device answers exception 02 to those.
func TestPlanGaps(t *testing.T) {
	regs := func(addrs ...uint16) []model.Sensor {
		var out []model.Sensor
		for _, a := range addrs {
			out = append(out, model.Sensor{ID: fmt.Sprint("h", a), Register: model.Register{Area: model.Holding, Address: a, Type: model.Uint16, Bit: -1, Scale: 1}})
		}
		return out
	}
	coils := func(addrs ...uint16) []model.Sensor {
		var out []model.Sensor
		for _, a := range addrs {
			out = append(out, model.Sensor{ID: fmt.Sprint("c", a), Register: model.Register{Area: model.Coil, Address: a, Bit: -1, Scale: 1}})
		}
		return out
	}
	tests := []struct {
		name    string
		maxGap  int
		sensors []model.Sensor
		want    []string
	}{
		{"neighbours merge", 0, regs(0, 1, 2), []string{"holding 0+3"}},
		{"a gap splits", 0, regs(0, 1, 5), []string{"holding 0+2", "holding 5+1"}},
		{"a gap within max_gap is read", 3, regs(0, 1, 5), []string{"holding 0+6"}},
		{"a gap beyond max_gap splits", 2, regs(0, 1, 5), []string{"holding 0+2", "holding 5+1"}},
		{"bits of one word stay together", 0, append(regs(0), model.Sensor{ID: "b", Register: model.Register{Area: model.Holding, Address: 0, Type: model.Bit, Bit: 3, Scale: 1}}), []string{"holding 0+1"}},
		{"coils: a gap splits", 0, coils(0, 1, 9), []string{"coil 0+2", "coil 9+1"}},
		{"coils: within max_gap", 8, coils(0, 1, 9), []string{"coil 0+10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &model.Plant{
				Enterprises: []model.Enterprise{{ID: "e"}},
				Gateways:    []model.Gateway{{ID: "g", Devices: []model.Device{{ID: "d", MaxRegisters: 125, MaxGap: tt.maxGap}}}},
				Sensors:     tt.sensors,
			}
			p.Index()
			plan := planDevice(p, 0, 0)
			var got []string
			for _, r := range plan.requests {
				got = append(got, fmt.Sprintf("%s %d+%d", r.area, r.start, r.quantity))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("requests %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeDevice answers reads from a register image (coils and discrete
// inputs from the high byte of the register at their address), or with an
// error: err for every read, failed[area] for the reads of one area.
type fakeDevice struct {
	regs   map[uint16]uint16
	err    error
	failed map[model.Area]error
	closed int
}

func (f *fakeDevice) words(area model.Area, addr, n uint16) ([]byte, error) {
	if err := cmp.Or(f.err, f.failed[area]); err != nil {
		return nil, err
	}
	b := make([]byte, 2*n)
	for i := range n {
		v := f.regs[addr+i]
		b[2*i], b[2*i+1] = byte(v>>8), byte(v)
	}
	return b, nil
}
func (f *fakeDevice) ReadHoldingRegisters(a, n uint16) ([]byte, error) {
	return f.words(model.Holding, a, n)
}
func (f *fakeDevice) ReadInputRegisters(a, n uint16) ([]byte, error) {
	return f.words(model.Input, a, n)
}
func (f *fakeDevice) ReadCoils(a, n uint16) ([]byte, error) {
	return f.words(model.Coil, a, (n+15)/16)
}
func (f *fakeDevice) ReadDiscreteInputs(a, n uint16) ([]byte, error) {
	return f.words(model.DiscreteInput, a, (n+15)/16)
}
func (f *fakeDevice) Close() error { f.closed++; return nil }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// qualityPlant is one device whose sensors cover each way a value and its
// fault bit can be laid out: a and b without fault bits; c with its fault
// bit in a status word beside it; d with its fault bit in a request before
// its value's, e in one after; f a coil with a discrete input.
func qualityPlant() *model.Plant {
	reg := func(a model.Area, addr uint16) model.Register {
		return model.Register{Area: a, Address: addr, Type: model.Uint16, Bit: -1, Scale: 1}
	}
	bit := func(a model.Area, addr uint16, b int8) *model.Register {
		return &model.Register{Area: a, Address: addr, Type: model.Bit, Bit: b, Scale: 1}
	}
	p := &model.Plant{
		Enterprises: []model.Enterprise{{ID: "e"}},
		Gateways:    []model.Gateway{{ID: "g", Devices: []model.Device{{ID: "d", MaxRegisters: 125}}}},
		Sensors: []model.Sensor{
			{ID: "a", RangeMax: 100, Register: reg(model.Holding, 0)},
			{ID: "b", RangeMax: 100, Register: reg(model.Holding, 1)},
			{ID: "c", RangeMax: 100, Register: reg(model.Holding, 2), Fault: bit(model.Holding, 3, 0)},
			{ID: "d", RangeMax: 100, Register: reg(model.Input, 100), Fault: bit(model.Holding, 3, 1)},
			{ID: "e", RangeMax: 100, Register: reg(model.Holding, 5), Fault: bit(model.Input, 101, 0)},
			{ID: "f", RangeMax: 1, Register: model.Register{Area: model.Coil, Address: 200, Type: model.Bit, Bit: -1, Scale: 1}, Fault: bit(model.DiscreteInput, 201, -1)},
		},
	}
	p.Index()
	return p
}

// TestPollQuality: a failed read gives q bad with its reason for every
// sensor of the request, never a value; a timeout drops the connection, an
// exception keeps it; a value outside the range is marked out_of_range; a
// fault bit that reads 1 marks its sensor's value bad device_fault, kept as
// read, wherever the bit lies, unless the value could not be read; a fault
// bit that could not be read changes nothing.
func TestPollQuality(t *testing.T) {
	p := qualityPlant()
	plan := planDevice(p, 0, 0)
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	type reading struct {
		q model.Quality
		r model.QualityReason
		v float64 // with a value; NaN: none
	}
	none := math.NaN()
	good := func(v float64) reading { return reading{model.Good, model.ReasonNone, v} }
	faulty := func(v float64) reading { return reading{model.Bad, model.ReasonDeviceFault, v} }
	every := func(r model.QualityReason) map[string]reading {
		m := map[string]reading{}
		for _, s := range p.Sensors {
			m[s.ID] = reading{model.Bad, r, none}
		}
		return m
	}
	quiet := map[uint16]uint16{0: 42, 1: 500, 2: 7, 3: 0b100, 5: 9, 100: 11, 101: 0xFFFE, 200: 0x0100, 201: 0x0200}
	faults := map[uint16]uint16{0: 42, 1: 50, 2: 500, 3: 0b011, 5: 9, 100: 11, 101: 1, 200: 0x0100, 201: 0x0100}
	exc2 := &modbus.ModbusError{FunctionCode: 4, ExceptionCode: 2}
	tests := []struct {
		name      string
		dev       *fakeDevice
		want      map[string]reading
		wantClose int
	}{
		{"good and out of range, fault bits off", &fakeDevice{regs: quiet}, map[string]reading{
			"a": good(42), "b": {model.Bad, model.ReasonOutOfRange, 500}, "c": good(7), "d": good(11), "e": good(9), "f": good(1),
		}, 0},
		{"fault bits on: values kept, marked device_fault, also out of range", &fakeDevice{regs: faults}, map[string]reading{
			"a": good(42), "b": good(50), "c": faulty(500), "d": faulty(11), "e": faulty(9), "f": faulty(1),
		}, 0},
		{"input registers fail: d keeps its read's reason, e's fault bit is unknown", &fakeDevice{regs: faults, failed: map[model.Area]error{model.Input: exc2}}, map[string]reading{
			"a": good(42), "b": good(50), "c": faulty(500), "d": {model.Bad, model.ModbusException(2), none}, "e": good(9), "f": faulty(1),
		}, 0},
		{"discrete inputs fail: f as read", &fakeDevice{regs: faults, failed: map[model.Area]error{model.DiscreteInput: exc2}}, map[string]reading{
			"a": good(42), "b": good(50), "c": faulty(500), "d": faulty(11), "e": faulty(9), "f": good(1),
		}, 0},
		{"exception 02", &fakeDevice{err: &modbus.ModbusError{FunctionCode: 3, ExceptionCode: 2}}, every(model.ModbusException(2)), 0},
		{"timeout", &fakeDevice{regs: faults, err: fmt.Errorf("read: %w", timeoutErr{})}, every(model.ReasonTimeout), 1},
		{"deadline", &fakeDevice{err: os.ErrDeadlineExceeded}, every(model.ReasonTimeout), 1},
		{"transaction id mismatch", &fakeDevice{err: errors.New("modbus: response transaction id '7' does not match request '8'")}, every(model.ReasonMalformedResponse), 5}, // one close per request: holding 0+4 and 5+1 (a gap at 4), input, coil, discrete input
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := pollDevice(tt.dev, &plan, now, nil)
			if len(out) != len(p.Sensors) {
				t.Fatalf("%d readings, want %d", len(out), len(p.Sensors))
			}
			for _, o := range out {
				w := tt.want[o.Sensor]
				if o.Quality != w.q || o.Reason != w.r {
					t.Errorf("%s: q %s r %s, want %s %s", o.Sensor, o.Quality, o.Reason, w.q, w.r)
				}
				switch {
				case math.IsNaN(w.v) && o.HasValue:
					t.Errorf("%s: a failed read carries a value %v", o.Sensor, o.Value)
				case !math.IsNaN(w.v) && (!o.HasValue || o.Value != w.v):
					t.Errorf("%s: value %v (has %v), want %v", o.Sensor, o.Value, o.HasValue, w.v)
				}
			}
			if tt.dev.closed != tt.wantClose {
				t.Errorf("connection closed %d times, want %d", tt.dev.closed, tt.wantClose)
			}
		})
	}
}

// TestPollAllocs: a poll with fault bits allocates nothing of its own; the
// only allocations are the fake device's responses, one per request.
func TestPollAllocs(t *testing.T) {
	p := qualityPlant()
	plan := planDevice(p, 0, 0)
	dev := &fakeDevice{regs: map[uint16]uint16{3: 0b11, 101: 1, 201: 0x0100}}
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	out := make([]telemetry.Out, 0, len(p.Sensors))
	n := testing.AllocsPerRun(100, func() { out, _ = pollDevice(dev, &plan, now, out[:0]) })
	if n != float64(len(plan.requests)) {
		t.Errorf("%v allocations per poll of %d requests, want one per request (the fake's response)", n, len(plan.requests))
	}
	if out[2].Reason != model.ReasonDeviceFault {
		t.Errorf("c: %s %s, want bad device_fault", out[2].Quality, out[2].Reason)
	}
}
