package gateway

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/goburrow/modbus"

	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
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
	// Neighbouring registers merge: far fewer reads than sensors.
	if requests >= len(p.Sensors)/2 {
		t.Errorf("%d requests for %d sensors: neighbours were not merged", requests, len(p.Sensors))
	}
	t.Logf("%d sensors in %d requests", len(p.Sensors), requests)
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

// fakeDevice answers reads from a register image, or with an error.
type fakeDevice struct {
	regs   map[uint16]uint16
	err    error
	closed int
}

func (f *fakeDevice) words(addr, n uint16) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	b := make([]byte, 2*n)
	for i := range n {
		v := f.regs[addr+i]
		b[2*i], b[2*i+1] = byte(v>>8), byte(v)
	}
	return b, nil
}
func (f *fakeDevice) ReadHoldingRegisters(a, n uint16) ([]byte, error) { return f.words(a, n) }
func (f *fakeDevice) ReadInputRegisters(a, n uint16) ([]byte, error)   { return f.words(a, n) }
func (f *fakeDevice) ReadCoils(a, n uint16) ([]byte, error)            { return f.words(a, (n+15)/16) }
func (f *fakeDevice) ReadDiscreteInputs(a, n uint16) ([]byte, error)   { return f.words(a, (n+15)/16) }
func (f *fakeDevice) Close() error                                     { f.closed++; return nil }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestPollQuality: a failed read gives q bad with its reason for every
// sensor of the request, never a value; a timeout drops the connection, an
// exception keeps it; a value outside the range is marked out_of_range.
func TestPollQuality(t *testing.T) {
	p := &model.Plant{
		Enterprises: []model.Enterprise{{ID: "e"}},
		Gateways:    []model.Gateway{{ID: "g", Devices: []model.Device{{ID: "d", MaxRegisters: 125}}}},
		Sensors: []model.Sensor{
			{ID: "a", RangeMin: 0, RangeMax: 100, Register: model.Register{Area: model.Holding, Address: 0, Type: model.Uint16, Bit: -1, Scale: 1}},
			{ID: "b", RangeMin: 0, RangeMax: 100, Register: model.Register{Area: model.Holding, Address: 1, Type: model.Uint16, Bit: -1, Scale: 1}},
		},
	}
	p.Index()
	plan := planDevice(p, 0, 0)
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	tests := []struct {
		name      string
		dev       *fakeDevice
		wantQ     []model.Quality
		wantR     []model.QualityReason
		wantClose int
	}{
		{"good and out of range", &fakeDevice{regs: map[uint16]uint16{0: 42, 1: 500}}, []model.Quality{model.Good, model.Bad}, []model.QualityReason{model.ReasonNone, model.ReasonOutOfRange}, 0},
		{"exception 02", &fakeDevice{err: &modbus.ModbusError{FunctionCode: 3, ExceptionCode: 2}}, []model.Quality{model.Bad, model.Bad}, []model.QualityReason{model.ModbusException(2), model.ModbusException(2)}, 0},
		{"timeout", &fakeDevice{err: fmt.Errorf("read: %w", timeoutErr{})}, []model.Quality{model.Bad, model.Bad}, []model.QualityReason{model.ReasonTimeout, model.ReasonTimeout}, 1},
		{"deadline", &fakeDevice{err: os.ErrDeadlineExceeded}, []model.Quality{model.Bad, model.Bad}, []model.QualityReason{model.ReasonTimeout, model.ReasonTimeout}, 1},
		{"transaction id mismatch", &fakeDevice{err: errors.New("modbus: response transaction id '7' does not match request '8'")}, []model.Quality{model.Bad, model.Bad}, []model.QualityReason{model.ReasonMalformedResponse, model.ReasonMalformedResponse}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := pollDevice(tt.dev, &plan, now, nil)
			if len(out) != 2 {
				t.Fatalf("%d readings, want 2", len(out))
			}
			for i, o := range out {
				if o.Quality != tt.wantQ[i] || o.Reason != tt.wantR[i] {
					t.Errorf("%s: q %s r %s, want %s %s", o.Sensor, o.Quality, o.Reason, tt.wantQ[i], tt.wantR[i])
				}
				if o.Quality == model.Bad && o.Reason != model.ReasonOutOfRange && o.HasValue {
					t.Errorf("%s: a failed read carries a value %v", o.Sensor, o.Value)
				}
			}
			if out[0].Quality == model.Good && out[0].Value != 42 {
				t.Errorf("a = %v, want 42", out[0].Value)
			}
			if tt.dev.closed != tt.wantClose {
				t.Errorf("connection closed %d times, want %d", tt.dev.closed, tt.wantClose)
			}
		})
	}
}
