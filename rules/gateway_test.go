package rules

import (
	"fmt"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// gatewayPlant is one gateway of n sensors polled every second, its
// silence checked after 5 periods, and the sensors' after 5 too.
func gatewayPlant(n int) (*model.Plant, []model.SensorRules, []model.GatewayRules) {
	p := &model.Plant{Gateways: []model.Gateway{{ID: "gw-e01-1", PollPeriodMS: 1000, Devices: []model.Device{{ID: "d", PollPeriodMS: 1000}}}}}
	rs := make([]model.SensorRules, n)
	for i := range n {
		p.Sensors = append(p.Sensors, model.Sensor{ID: fmt.Sprintf("e01-GT-%03d", i), Gateway: 0, Device: 0, HazardSource: -1})
		rs[i] = model.SensorRules{SilentPeriods: 5}
	}
	p.Index()
	return p, rs, []model.GatewayRules{{SilentPeriods: 5}}
}

// TestGatewayCutOf16: a gateway of 16 detectors whose uplink is cut
// raises one transition, not 16, with Sensor -1; its return is one too.
func TestGatewayCutOf16(t *testing.T) {
	p, rs, gs := gatewayPlant(16)
	e := New(p, rs, gs)
	if w := e.GatewaySilentWindow(0); w != 5*time.Second {
		t.Fatalf("gateway window %s, want 5 × 1 s", w)
	}
	var out []model.Transition
	out = e.Tick(time.UnixMilli(0), out)
	for i := range p.Sensors {
		out = e.Eval(model.Reading{SensorIdx: int32(i), TS: 1000, Value: 0, HasValue: true}, out)
	}
	for ms := int64(2000); ms <= 60_000; ms += 1000 {
		out = e.Tick(time.UnixMilli(ms), out)
	}
	if len(out) != 1 || out[0].Sensor != -1 || out[0].Gateway != 0 || out[0].Rule != model.GatewaySilent ||
		out[0].Class != model.ClassOffline || !out[0].Active || out[0].TS != 6000 {
		t.Fatalf("a minute after the cut: %+v, want one gateway_silent of gateway 0 at 6000", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 7, TS: 61_000, HasValue: true}, out[:0])
	if len(out) != 1 || out[0].Sensor != -1 || out[0].Active || out[0].Value != 60 {
		t.Fatalf("the first live reading: %+v, want the gateway's return after 60 s", out)
	}
}

// TestAssumeGateway: a gateway's silence seeded at start keeps its sensors
// from raising their own and ends at the first live reading; one that the
// engine cannot place is refused.
func TestAssumeGateway(t *testing.T) {
	p, rs, gs := gatewayPlant(3)
	e := New(p, rs, gs)
	seed := model.Transition{Sensor: -1, Gateway: 0, Rule: model.GatewaySilent, Class: model.ClassOffline, Active: true, Value: 5, Limit: 5, TS: 100_000}
	if !e.Assume(seed) {
		t.Fatal("Assume(gateway silent) = false")
	}
	for _, bad := range []model.Transition{
		{Sensor: -1, Gateway: 1, Rule: model.GatewaySilent, Active: true},
		{Sensor: -1, Gateway: -1, Rule: model.GatewaySilent, Active: true},
	} {
		if e.Assume(bad) {
			t.Errorf("Assume(%+v) = true for a gateway that is not in the plant", bad)
		}
	}
	if New(p, rs, nil).Assume(seed) {
		t.Error("Assume(gateway silent) = true for a gateway without the check")
	}
	var out []model.Transition
	for ms := int64(200_000); ms <= 300_000; ms += 1000 {
		out = e.Tick(time.UnixMilli(ms), out)
	}
	if len(out) != 0 {
		t.Fatalf("ticks while the seeded gateway is silent: %+v, want nothing", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 1, TS: 301_000, HasValue: true, Late: true}, out)
	if len(out) != 0 {
		t.Fatalf("a replayed reading: %+v, want nothing", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 1, TS: 302_000, HasValue: true}, out)
	if len(out) != 1 || out[0].Rule != model.GatewaySilent || out[0].Active || out[0].Value != 207 {
		t.Fatalf("the first live reading: %+v, want the gateway's return, silent since 95 000 (207 s)", out)
	}
}

// TestReloadGateway: a silent gateway stays silent across a reload that
// keeps its check, and returns at one that removes it.
func TestReloadGateway(t *testing.T) {
	p, rs, gs := gatewayPlant(2)
	e := New(p, rs, gs)
	var out []model.Transition
	out = e.Tick(time.UnixMilli(0), out)
	out = e.Tick(time.UnixMilli(5000), out)
	if len(out) != 1 || out[0].Rule != model.GatewaySilent {
		t.Fatalf("never heard for 5 s: %+v, want the gateway's silence", out)
	}
	out, err := e.Reload(p, rs, []model.GatewayRules{{SilentPeriods: 8}}, time.UnixMilli(6000), out[:0])
	if err != nil || len(out) != 0 {
		t.Fatalf("check kept: %+v, %v; want nothing", out, err)
	}
	if out = e.Tick(time.UnixMilli(7000), out); len(out) != 0 {
		t.Fatalf("tick after the reload: %+v, want nothing (still silent)", out)
	}
	out, err = e.Reload(p, rs, nil, time.UnixMilli(8000), out[:0])
	if err != nil || len(out) != 1 || out[0].Rule != model.GatewaySilent || out[0].Active || out[0].TS != 8000 {
		t.Fatalf("check removed: %+v, %v; want the gateway's return at 8000", out, err)
	}
	// Its sensors are no longer covered: they raise their own.
	if out = e.Tick(time.UnixMilli(9000), out[:0]); len(out) != 2 || out[0].Rule != model.Silent || out[1].Rule != model.Silent {
		t.Fatalf("tick without the gateway check: %+v, want each sensor's own offline", out)
	}
	if _, err := e.Reload(&model.Plant{Sensors: p.Sensors}, rs, nil, time.UnixMilli(10_000), nil); err == nil {
		t.Error("a reload for a plant without the gateway was accepted")
	}
}

// TestGatewayAllocations: cutting and restoring a gateway of 50 sensors,
// over and over, allocates nothing in Tick or Eval.
func TestGatewayAllocations(t *testing.T) {
	p, rs, gs := gatewayPlant(50)
	e := New(p, rs, gs)
	out := make([]model.Transition, 0, 64)
	ms, n := int64(0), 0
	allocs := testing.AllocsPerRun(200, func() {
		// 10 s of silence, then one live reading of each sensor.
		for range 10 {
			ms += 1000
			out = e.Tick(time.UnixMilli(ms), out[:0])
			n += len(out)
		}
		for i := range p.Sensors {
			out = e.Eval(model.Reading{SensorIdx: int32(i), TS: ms, HasValue: true}, out[:0])
			n += len(out)
		}
	})
	if allocs != 0 {
		t.Errorf("a gateway cut and return: %v allocations, want 0", allocs)
	}
	if n != 2*201 { // AllocsPerRun runs it once more to warm up
		t.Errorf("%d transitions over 201 cuts, want the gateway's raise and return each, no sensor's", n)
	}
}

// BenchmarkTick: one Tick over the 100 000 sensors on 862 gateways of the
// mix, every sensor heard a second ago (what nearly every Tick finds),
// with the sensors' and the gateways' silence checked; ns/sensor is the
// cost per sensor of one Tick, which the pipeline calls once a second.
func BenchmarkTick(b *testing.B) {
	m := benchMix()
	e := New(m.plant, m.rules, m.gateways)
	const ts = int64(1_700_000_000_000)
	out := make([]model.Transition, 0, 16)
	for i := range m.plant.Sensors {
		out = e.Eval(model.Reading{SensorIdx: int32(i), TS: ts, Value: 1, HasValue: true}, out[:0])
	}
	now := time.UnixMilli(ts + 1000)
	b.ReportAllocs()
	for b.Loop() {
		out = e.Tick(now, out[:0])
	}
	if len(out) != 0 {
		b.Fatalf("Tick raised %d", len(out))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(m.plant.Sensors)), "ns/sensor")
}
