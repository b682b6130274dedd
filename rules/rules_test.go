package rules

import (
	"fmt"
	"math"
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
	e := New(p, rs, nil)
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
	e = New(p, rs, nil)
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

	// Every rule at once, over a cycle of readings in which each raises
	// and returns (see trip): no allocation for any of them.
	p, rs = oneSensor(allRules)
	p.Sensors[0].RangeMin, p.Sensors[0].RangeMax = 0, 25
	// A voting group of one (1oo1; the rule files want two or more), so
	// that the group's alarm raises and returns with the sensor's.
	rs[0].Vote = model.VoteRule{Name: "g", K: 1, Members: []int32{0}}
	e = New(p, rs, nil)
	cycle := trip()
	var raised, returned [model.NumRuleKinds]int
	k := 0
	every := testing.AllocsPerRun(2000, func() {
		r := cycle[k%len(cycle)]
		r.TS = ts + int64(k)*1000
		k++
		out = e.Eval(r, out[:0])
		for _, tr := range out {
			if tr.Active {
				raised[tr.Rule]++
			} else {
				returned[tr.Rule]++
			}
		}
	})
	if every != 0 {
		t.Errorf("every rule: %v allocations, want 0", every)
	}
	for _, r := range []model.RuleKind{model.ThresholdHigh, model.RateRise, model.RateFall, model.PredictHigh,
		model.Frozen, model.OutOfRange, model.BadQuality, model.Voted} {
		if raised[r] == 0 || returned[r] == 0 {
			t.Errorf("%s: %d raised, %d returned over %d cycles: the measure missed it", r, raised[r], returned[r], k/len(cycle))
		}
	}

	// The violations: one sensor with both (the config gives each to its
	// own kind), no delays; 1 bypasses the SIS, 860 kW is production, 62
	// kW idle, so each raises and returns once a cycle.
	p, rs = oneSensor(model.SensorRules{
		StopOrder: model.StopOrderRule{On: true, BaselineKW: 80, MarginPct: 20, LearnMS: 1},
		SISBypass: model.SISBypassRule{On: true, SourceLevel: 1},
	})
	e = New(p, rs, nil)
	raised, returned = [model.NumRuleKinds]int{}, [model.NumRuleKinds]int{}
	vals := [...]float64{1, 860, 62}
	k = 0
	viol := testing.AllocsPerRun(999, func() {
		out = e.Eval(model.Reading{SensorIdx: 0, TS: ts + int64(k)*1000, Value: vals[k%len(vals)], HasValue: true}, out[:0])
		k++
		for _, tr := range out {
			if tr.Active {
				raised[tr.Rule]++
			} else {
				returned[tr.Rule]++
			}
		}
	})
	if viol != 0 {
		t.Errorf("stop-order power and SIS bypass: %v allocations, want 0", viol)
	}
	for _, r := range []model.RuleKind{model.StopOrder, model.SISBypass} {
		if raised[r] == 0 || returned[r] == 0 {
			t.Errorf("%s: %d raised, %d returned: the measure missed it", r, raised[r], returned[r])
		}
	}
}

// allRules has every rule of one sensor (with a range of 0–25 on the
// sensor), the way trip exercises them.
var allRules = model.SensorRules{
	Limits: [model.NumLimits]model.Limit{
		model.HH: {Set: true, Value: 22, Level: model.L2}, model.H: {Set: true, Value: 20, Level: model.L1},
		model.L: {Set: true, Value: 3, Level: model.L1}, model.LL: {Set: true, Value: 1, Level: model.L2},
	},
	Deadband: 0.5, SilentPeriods: 5,
	Rate:       model.RateRule{Rise: 5, Fall: 5, WindowMS: 5000, Deadband: 1},
	Prediction: model.PredictionRule{Window: 10, HorizonMS: 120_000},
	Frozen:     model.FrozenRule{DurationMS: 5000, Epsilon: 0.01},
	OutOfRange: true, BadQuality: 2,
}

// trip is a cycle of readings, one a second (TS left to the caller), in
// which every rule of allRules raises and returns: a steady value with
// noise, a rise through H and HH (rate, prediction, thresholds), a reading
// above the range, bad readings, a fall back (rate), a value that stands
// still (frozen), and noise again.
func trip() []model.Reading {
	var rs []model.Reading
	add := func(v float64, q model.Quality, reason model.QualityReason, has bool) {
		rs = append(rs, model.Reading{Value: v, Quality: q, Reason: reason, HasValue: has})
	}
	for i := range 15 {
		add(10+0.05*float64(i%3-1), model.Good, model.ReasonNone, true)
	}
	for v := 10.5; v <= 24; v += 0.5 {
		add(v, model.Good, model.ReasonNone, true)
	}
	add(30, model.Good, model.ReasonNone, true)
	add(30, model.Bad, model.ReasonOutOfRange, true)
	for range 3 {
		add(0, model.Bad, model.ReasonTimeout, false)
	}
	for range 8 {
		add(10, model.Good, model.ReasonNone, true)
	}
	for i := range 12 {
		add(10+0.05*float64(i%3-1), model.Good, model.ReasonNone, true)
	}
	return rs
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
	e := New(p, cfg.Rules, cfg.Gateways)
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
		// Past HH, inside the instrument's range (beyond it is a fault).
		v := hh.Value + rs.Deadband + 1
		if s := &p.Sensors[i]; v > s.RangeMax {
			v = (hh.Value + s.RangeMax) / 2
		}
		for ts := int64(2000); ts <= 2000+rs.OnDelayMS; ts += 500 {
			out = e.Eval(model.Reading{SensorIdx: si, TS: ts, Value: v, HasValue: true}, out)
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
	e := New(p, rs, nil)
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

// TestAssumeTrendsAndFaults: the new rules' conditions seeded from the
// alarm log end as their rules say, and cannot be seeded on a sensor
// without the rule.
func TestAssumeTrendsAndFaults(t *testing.T) {
	p, rs := oneSensor(allRules)
	p.Sensors[0].RangeMin, p.Sensors[0].RangeMax = 0, 25
	e := New(p, rs, nil)
	for _, tr := range []model.Transition{
		{Rule: model.RateRise, Active: true}, {Rule: model.PredictHigh, Active: true, Limit: 20},
		{Rule: model.Frozen, Active: true}, {Rule: model.OutOfRange, Active: true}, {Rule: model.BadQuality, Active: true},
	} {
		if !e.Assume(tr) {
			t.Errorf("Assume(%s) = false", tr.Rule)
		}
	}
	if e.Assume(model.Transition{Rule: model.PredictHigh, Active: true, Limit: 7}) {
		t.Error("assumed a prediction of a limit the sensor does not have")
	}
	var got []string
	for k := range 12 {
		// Steady about 10: the quality faults end at once, frozen at the
		// first change, the rate when its window (5 s) has a reading to
		// compare with, the prediction when its window is full and flat.
		v := 10 + 0.02*float64(k%2)
		for _, tr := range e.Eval(model.Reading{TS: int64(k+1) * 1000, Value: v, HasValue: true}, nil) {
			got = append(got, fmt.Sprintf("%d %s %v", k+1, tr.Rule, tr.Active))
		}
	}
	want := []string{"1 out_of_range false", "1 bad_quality false", "2 frozen false", "6 rate_rise false", "10 predict_high false"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after seeding, steady readings gave\n%v\nwant\n%v", got, want)
	}

	p, rs = oneSensor(gasRules)
	e = New(p, rs, nil)
	for _, r := range []model.RuleKind{model.RateRise, model.PredictHigh, model.Frozen} {
		if e.Assume(model.Transition{Rule: r, Active: true, Limit: 25}) {
			t.Errorf("assumed %s on a sensor without the rule", r)
		}
	}
}

func TestUnknownSensorAndNaN(t *testing.T) {
	p, rs := oneSensor(gasRules)
	rs[0].OnDelayMS = 0
	e := New(p, rs, nil)
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
	e := New(p, rs, nil)
	e.Tick(time.UnixMilli(0), nil)
	if out := e.Tick(time.UnixMilli(1e9), nil); len(out) != 0 {
		t.Errorf("SilentPeriods 0 raised %+v", out)
	}
	p.Gateways[0].PollPeriodMS, p.Gateways[0].Devices[0].PollPeriodMS = 0, 0
	e = New(p, []model.SensorRules{{SilentPeriods: 5}}, nil)
	e.Tick(time.UnixMilli(0), nil)
	if out := e.Tick(time.UnixMilli(1e9), nil); len(out) != 0 {
		t.Errorf("no poll period raised %+v", out)
	}
}

// BenchmarkEval: one reading of each of the demo plant's 63 sensors per
// cycle, every value inside its limits (the common case) or alternating
// across H every reading (the worst case: a transition each); then each
// rule type on its own (rule/…, see benchEvalRules); then the realistic mix
// of 100 000 sensors beside the naive baseline (mix/…, see benchEvalMix).
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
			e := New(p, bc.rules, cfg.Gateways)
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
	b.Run("rule", benchEvalRules)
	b.Run("mix", benchEvalMix)
}

func noDelays(rs []model.SensorRules) []model.SensorRules {
	out := append([]model.SensorRules(nil), rs...)
	for i := range out {
		out[i].OnDelayMS, out[i].OffDelayMS = 0, 0
	}
	return out
}

// benchEvalRules (BenchmarkEval/rule/…): the cost of each rule type on its own, per reading,
// over 1 000 sensors that all have it, polled once a second in plant order.
// Each sensor's value wanders (noise, a slow swing) inside its limits, so
// trends are fitted but rarely raise, as in a plant that runs normally;
// bad_quality sees one bad reading in four. "threshold" is a sensor with
// its limits only, "defaults" adds what every sensor has unless its rules
// say otherwise (out_of_range, bad_quality), "all" is every rule of a
// sensor's own value at once; "voted", "stop_order" and "sis_bypass" add
// one rule each to the limits.
func benchEvalRules(b *testing.B) {
	const sensors, period = 1000, 600 // readings per sensor in one pass of its pattern
	limits := [model.NumLimits]model.Limit{
		model.HH: {Set: true, Value: 95, Level: model.L2}, model.H: {Set: true, Value: 90, Level: model.L1},
		model.L: {Set: true, Value: 10, Level: model.L1}, model.LL: {Set: true, Value: 5, Level: model.L2},
	}
	base := model.SensorRules{Limits: limits, Deadband: 1, OnDelayMS: 2000, SilentPeriods: 5}
	with := func(f func(*model.SensorRules)) model.SensorRules { r := base; f(&r); return r }
	rate := model.RateRule{Rise: 20, Fall: 20, WindowMS: 60_000, Deadband: 2, OnDelayMS: 2000}
	pred := model.PredictionRule{Window: 60, HorizonMS: 600_000}
	frozen := model.FrozenRule{DurationMS: 120_000, Epsilon: 0.01}
	kinds := []struct {
		name  string
		rules model.SensorRules
		bad   bool
	}{
		{"threshold", base, false},
		{"rate", with(func(r *model.SensorRules) { r.Rate = rate }), false},
		{"prediction", with(func(r *model.SensorRules) { r.Prediction = pred }), false},
		{"frozen", with(func(r *model.SensorRules) { r.Frozen = frozen }), false},
		{"out_of_range", with(func(r *model.SensorRules) { r.OutOfRange = true }), false},
		{"bad_quality", with(func(r *model.SensorRules) { r.BadQuality = 3 }), true},
		{"defaults", with(func(r *model.SensorRules) { r.OutOfRange, r.BadQuality = true, 3 }), false},
		{"all", with(func(r *model.SensorRules) {
			r.Rate, r.Prediction, r.Frozen, r.OutOfRange, r.BadQuality = rate, pred, frozen, true, 3
		}), false},
		// Voting: groups of three neighbours, 2oo3 (the members are set
		// below); stop-order power and SIS bypass on values that stay idle
		// and not bypassed, as nearly always.
		{"voted", base, false},
		{"stop_order", with(func(r *model.SensorRules) {
			r.StopOrder = model.StopOrderRule{On: true, BaselineKW: 60, MarginPct: 20, DelayMS: 300_000}
		}), false},
		{"sis_bypass", with(func(r *model.SensorRules) {
			r.SISBypass = model.SISBypassRule{On: true, OnDelayMS: 5000, SourceLevel: 1}
		}), false},
	}
	p := &model.Plant{Gateways: []model.Gateway{{ID: "gw", PollPeriodMS: 1000, Devices: []model.Device{{ID: "d", PollPeriodMS: 1000}}}}}
	for i := range sensors {
		p.Sensors = append(p.Sensors, model.Sensor{ID: fmt.Sprint("s", i), Gateway: 0, Device: 0, HazardSource: -1, RangeMin: 0, RangeMax: 100})
	}
	p.Index()
	// values[k*sensors+i]: sensor i's k-th reading.
	values := make([]float64, period*sensors)
	for k := range period {
		for i := range sensors {
			swing := 15 * math.Sin(2*math.Pi*float64(k)/period+float64(i))
			noise := 0.3 * math.Sin(float64(k*7+i*13))
			values[k*sensors+i] = 50 + swing + noise
		}
	}
	for _, kc := range kinds {
		b.Run(kc.name, func(b *testing.B) {
			rs := make([]model.SensorRules, sensors)
			for i := range rs {
				rs[i] = kc.rules
				if kc.name == "voted" && i%3 == 0 && i+3 <= sensors {
					g := model.VoteRule{Name: fmt.Sprint("g", i), K: 2, Members: []int32{int32(i), int32(i + 1), int32(i + 2)}}
					rs[i].Vote, rs[i+1].Vote, rs[i+2].Vote = g, g, g
				}
			}
			e := New(p, rs, nil)
			out := make([]model.Transition, 0, 8)
			transitions, n := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				i, k := n%sensors, (n/sensors)%period
				r := model.Reading{SensorIdx: int32(i), TS: int64(n/sensors) * 1000, Value: values[k*sensors+i], HasValue: true}
				if kc.bad && (n/sensors)%4 == 3 {
					r.Quality, r.Reason, r.HasValue = model.Bad, model.ReasonTimeout, false
				}
				out = e.Eval(r, out[:0])
				transitions += len(out)
				n++
			}
			b.ReportMetric(float64(transitions)/float64(b.N), "transitions/op")
		})
	}
}

// TestAssumeVoted: a group's alarm seeded at start returns at the first
// reading of a member once fewer than K vote, and stays when they still do.
func TestAssumeVoted(t *testing.T) {
	p := &model.Plant{Gateways: []model.Gateway{{ID: "gw", PollPeriodMS: 1000}}}
	for _, id := range []string{"a", "b", "c"} {
		p.Sensors = append(p.Sensors, model.Sensor{ID: id, Gateway: 0, Device: -1, HazardSource: -1})
	}
	p.Index()
	g := model.VoteRule{Name: "g", K: 2, Members: []int32{0, 1, 2}}
	rs := []model.SensorRules{gasRules, gasRules, gasRules}
	for i := range rs {
		rs[i].Vote, rs[i].OnDelayMS = g, 0
	}
	seed := func(e *Engine) {
		for _, tr := range []model.Transition{
			{Sensor: 0, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1, Active: true, Limit: 25},
			{Sensor: 1, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1, Active: true, Limit: 25},
			{Sensor: 0, Rule: model.Voted, Class: model.ClassAlarm, Level: model.L2, Active: true, Limit: 2},
		} {
			if !e.Assume(tr) {
				t.Fatalf("Assume(%+v) = false", tr)
			}
		}
	}
	e := New(p, rs, nil)
	if e.Assume(model.Transition{Sensor: 1, Rule: model.Voted, Active: true}) {
		t.Error("a group's alarm seeded on a member that does not carry it was accepted")
	}
	seed(e)
	out := e.Eval(model.Reading{SensorIdx: 1, TS: 1000, Value: 30, HasValue: true}, nil)
	if len(out) != 0 {
		t.Errorf("still two votes: %+v, want nothing", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 1, TS: 2000, Value: 5, HasValue: true}, nil)
	if len(out) != 2 || out[1].Rule != model.Voted || out[1].Active || out[1].Sensor != 0 {
		t.Errorf("b returned: %+v, want b's return and the group's on a", out)
	}
}
