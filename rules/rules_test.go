package rules

import (
	"testing"
	"time"

	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

func loadDemo(tb testing.TB) *config.Config {
	tb.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// normalValue is a value inside every limit of rs, or the middle of the
// instrument's range when it has none.
func normalValue(s *model.Sensor, rs *model.SensorRules) float64 {
	lo, hi := s.RangeMin, s.RangeMax
	if l := rs.Limits[model.L]; l.Set {
		lo = l.Value
	} else if l := rs.Limits[model.LL]; l.Set {
		lo = l.Value
	}
	if h := rs.Limits[model.H]; h.Set {
		hi = h.Value
	} else if h := rs.Limits[model.HH]; h.Set {
		hi = h.Value
	}
	return (lo + hi) / 2
}

func oneSensor(rs model.SensorRules) (*model.Plant, []model.SensorRules) {
	p := &model.Plant{
		Gateways: []model.Gateway{{ID: "gw", PollPeriodMS: 1000, Devices: []model.Device{{ID: "d", PollPeriodMS: 1000}}}},
		Sensors:  []model.Sensor{{ID: "s1", Gateway: 0, Device: 0, HazardSource: -1}},
	}
	p.Index()
	return p, []model.SensorRules{rs}
}

var gasRules = model.SensorRules{
	Limits: [model.NumLimits]model.Limit{
		model.H:  {Set: true, Value: 25, Level: model.L1},
		model.HH: {Set: true, Value: 50, Level: model.L2},
	},
	Deadband: 2, OnDelayMS: 2000, Latch: true, SilentPeriods: 5,
}

// TestEvalAllocations: the hot path allocates nothing, whether a reading
// changes nothing or causes a transition into a slice with room for it.
func TestEvalAllocations(t *testing.T) {
	p, rs := oneSensor(gasRules)
	e := New(p, rs)
	out := make([]model.Transition, 0, 4)
	ts := int64(0)
	quiet := testing.AllocsPerRun(1000, func() {
		ts += 1000
		out = e.Eval(model.Reading{SensorIdx: 0, TS: ts, Value: 10, HasValue: true}, out[:0])
	})
	if quiet != 0 || len(out) != 0 {
		t.Errorf("a reading inside the limits: %v allocations, %d transitions; want 0, 0", quiet, len(out))
	}

	rs[0].OnDelayMS = 0
	e = New(p, rs)
	n, v := 0, 10.0
	busy := testing.AllocsPerRun(1000, func() {
		ts += 1000
		v = 40 - v // 30, 10, 30 …: every reading raises or returns
		out = e.Eval(model.Reading{SensorIdx: 0, TS: ts, Value: v, HasValue: true}, out[:0])
		n += len(out)
	})
	if busy != 0 {
		t.Errorf("a reading that causes a transition: %v allocations, want 0", busy)
	}
	if n < 1000 {
		t.Errorf("%d transitions over 1001 alternating readings, want one each", n)
	}

	tick := testing.AllocsPerRun(100, func() { out = e.Tick(time.UnixMilli(ts), out[:0]) })
	if tick != 0 {
		t.Errorf("Tick: %v allocations, want 0", tick)
	}
}

// TestDemoPlant: every demo sensor with an H limit raises once, at the
// end of its on-delay, at its HH level when the value is past HH; the
// silence window is 5 periods of its device.
func TestDemoPlant(t *testing.T) {
	cfg := loadDemo(t)
	p := cfg.Plant
	if n := len(p.Sensors); n != 63 {
		t.Fatalf("the demo plant has %d sensors, the benchmark says 63", n)
	}
	e := New(p, cfg.Rules)
	checked := 0
	for i := range p.Sensors {
		rs := cfg.Rules[i]
		hh := rs.Limits[model.HH]
		if !rs.Limits[model.H].Set || !hh.Set {
			continue
		}
		checked++
		si := int32(i)
		var out []model.Transition
		out = e.Eval(model.Reading{SensorIdx: si, TS: 1000, Value: normalValue(&p.Sensors[i], &rs), HasValue: true}, out)
		for ts := int64(2000); ts <= 2000+rs.OnDelayMS; ts += 500 {
			out = e.Eval(model.Reading{SensorIdx: si, TS: ts, Value: hh.Value + rs.Deadband + 1, HasValue: true}, out)
		}
		if len(out) != 1 {
			t.Errorf("%s: %d transitions, want 1: %+v", p.Sensors[i].ID, len(out), out)
			continue
		}
		if got := out[0]; !got.Active || got.Level != hh.Level || got.Limit != hh.Value || got.TS != 2000+rs.OnDelayMS {
			t.Errorf("%s: %+v, want active at %s, limit %g, TS %d", p.Sensors[i].ID, got, hh.Level, hh.Value, 2000+rs.OnDelayMS)
		}
		if w := e.SilentWindow(si); w != 5*time.Second {
			t.Errorf("%s: silent after %s, want 5 × 1 s", p.Sensors[i].ID, w)
		}
	}
	if checked < 20 {
		t.Errorf("only %d demo sensors have H and HH", checked)
	}
}

// TestAssume: an engine seeded with an active condition returns it on the
// first reading inside the limits (after a restart the alarm log holds
// alarms that the fresh engine would otherwise never return).
func TestAssume(t *testing.T) {
	p, rs := oneSensor(gasRules)
	rs[0].OnDelayMS = 0
	e := New(p, rs)
	for _, tr := range []model.Transition{
		{Sensor: 0, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Active: true, Level: model.L2, Limit: 50},
		{Sensor: 0, Rule: model.Silent, Class: model.ClassOffline, Active: true},
	} {
		if !e.Assume(tr) {
			t.Fatalf("Assume(%+v) = false", tr)
		}
	}
	if e.Assume(model.Transition{Sensor: 0, Rule: model.ThresholdLow, Active: true, Level: model.L1, Limit: 3}) {
		t.Error("assumed a low condition the sensor has no limit for")
	}
	if e.Assume(model.Transition{Sensor: 7, Rule: model.ThresholdHigh, Active: true}) {
		t.Error("assumed a condition of an unknown sensor")
	}
	out := e.Eval(model.Reading{SensorIdx: 0, TS: 1000, Value: 30, HasValue: true}, nil)
	if len(out) != 2 || out[0].Rule != model.Silent || out[0].Active ||
		out[1].Rule != model.ThresholdHigh || !out[1].Active || out[1].Level != model.L1 {
		t.Fatalf("after assuming HH and offline, 30 %%LEL gave %+v; want offline returned and a level change to L1", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 0, TS: 2000, Value: 5, HasValue: true}, out[:0])
	if len(out) != 1 || out[0].Active {
		t.Fatalf("5 %%LEL gave %+v, want the return", out)
	}
}

func TestUnknownSensorAndNaN(t *testing.T) {
	p, rs := oneSensor(gasRules)
	rs[0].OnDelayMS = 0
	e := New(p, rs)
	if out := e.Eval(model.Reading{SensorIdx: 3, TS: 1, Value: 99, HasValue: true}, nil); len(out) != 0 {
		t.Errorf("unknown sensor gave %+v", out)
	}
	if out := e.Eval(model.Reading{SensorIdx: -1, TS: 1, Value: 99, HasValue: true}, nil); len(out) != 0 {
		t.Errorf("negative sensor index gave %+v", out)
	}
	if n := e.Unknown(); n != 2 {
		t.Errorf("Unknown() = %d, want 2", n)
	}
	e.Eval(model.Reading{SensorIdx: 0, TS: 1000, Value: 30, HasValue: true}, nil)
	nan := 0.0
	nan /= nan
	if out := e.Eval(model.Reading{SensorIdx: 0, TS: 2000, Value: nan, HasValue: true}, nil); len(out) != 0 {
		t.Errorf("NaN gave %+v, want nothing (certainly no return)", out)
	}
}

// TestNoSilenceWithoutPollPeriod: a sensor whose device has no poll period
// (or rules without silent periods) is never raised offline.
func TestNoSilenceWithoutPollPeriod(t *testing.T) {
	p, rs := oneSensor(model.SensorRules{})
	e := New(p, rs)
	e.Tick(time.UnixMilli(0), nil)
	if out := e.Tick(time.UnixMilli(1e9), nil); len(out) != 0 {
		t.Errorf("SilentPeriods 0 raised %+v", out)
	}
	p.Gateways[0].PollPeriodMS, p.Gateways[0].Devices[0].PollPeriodMS = 0, 0
	e = New(p, []model.SensorRules{{SilentPeriods: 5}})
	e.Tick(time.UnixMilli(0), nil)
	if out := e.Tick(time.UnixMilli(1e9), nil); len(out) != 0 {
		t.Errorf("no poll period raised %+v", out)
	}
}

// BenchmarkEval: one reading of each of the demo plant's 63 sensors per
// cycle, every value inside its limits (the common case) or alternating
// across H every reading (the worst case: a transition each).
func BenchmarkEval(b *testing.B) {
	cfg := loadDemo(b)
	p := cfg.Plant
	n := len(p.Sensors)
	steady := make([]model.Reading, n)
	crossing := make([]model.Reading, n)
	for i := range p.Sensors {
		rs := &cfg.Rules[i]
		v := normalValue(&p.Sensors[i], rs)
		steady[i] = model.Reading{SensorIdx: int32(i), Value: v, HasValue: true}
		crossing[i] = steady[i]
		if h := rs.Limits[model.H]; h.Set {
			crossing[i].Value = h.Value + rs.Deadband + 1
		}
	}
	for _, bc := range []struct {
		name  string
		flip  bool
		rules []model.SensorRules
	}{
		{"steady", false, cfg.Rules},
		{"crossing", true, noDelays(cfg.Rules)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := New(p, bc.rules)
			out := make([]model.Transition, 0, 4)
			ts, cycle, transitions := int64(1), 0, 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := steady[i]
				if bc.flip && cycle%2 == 1 {
					r = crossing[i]
				}
				r.TS = ts
				out = e.Eval(r, out[:0])
				transitions += len(out)
				if i++; i == n {
					i, ts, cycle = 0, ts+1000, cycle+1
				}
			}
			b.ReportMetric(float64(transitions)/float64(b.N), "transitions/op")
		})
	}
}

func noDelays(rs []model.SensorRules) []model.SensorRules {
	out := append([]model.SensorRules(nil), rs...)
	for i := range out {
		out[i].OnDelayMS, out[i].OffDelayMS = 0, 0
	}
	return out
}
