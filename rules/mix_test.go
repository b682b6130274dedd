package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"hazardwatch/internal/model"
)

// A mix is a synthetic park for BenchmarkEval/mix and TestEvalMix: many
// sensors on many gateways with the rules a real park gives them, and
// mixCycles poll cycles of their readings, one a second, in two delivery
// orders.
//
// Rules. Every measuring sensor has its limits with a deadband and delays,
// and the defaults every sensor gets from the rule files (out_of_range on,
// bad_quality after 3, silent after 5 periods); 60 % have nothing more
// ("thresholds only"), the other 40 % add rate of change (60 s window),
// prediction (60 readings, 10 min horizon), frozen (process values only),
// or two or three of them. Every gas detector votes in a group of its
// controller's neighbouring channels, three to a group (four or five for
// the last of a controller), 2-out-of-n. SIS state sensors have the SIS
// bypass rule, power meters the stop-order rule of a stop-ordered
// enterprise (a configured idle baseline for two in three, a learned one
// for the rest).
//
// Sensors sit on devices by kind, as on a real gateway: a gas controller's
// channels are combustible detectors (H 25, HH 50 %LEL), a PLC's process
// values (L/LL/H/HH, or H/HH only), an analyser's oxygen (two one-sided L1
// alarms at 19.5 and 23.5 %VOL), an SIS's states (0 normal, 1 bypassed, 2
// tripped), a power meter's feeders (kW); 40 %, 41 %, 10 %, 6 % and 3 % of
// devices, the last two with 2–8 and 1–4 channels. Dense indexes follow the
// plant file, which lists sensors gateway by gateway and device by device.
//
// Values mostly stay normal: noise with some memory around a set point and
// a slow drift. A few things happen, each at a random time: excursions past
// H, some past HH, or under L (0.4 % of sensors); gas leaks that the
// detectors of one voting group see together, each a little later and
// weaker than the first (1 % of groups); process values run close to H
// whose noise carries them across (1 in 1 000); transmitters stuck on one
// value (2 % of those with the frozen rule); devices that stop answering
// for a few cycles (2 % of devices); detectors that report their own fault;
// spikes above the instrument's range; an SIS bypassed for a while (5 % of
// them, some then tripped); production restarted under a stop order for
// six minutes (a quarter of the power meters: the stop-order rule's delay
// is five); a lone timeout in 10 000 readings.
type mix struct {
	plant    *model.Plant
	rules    []model.SensorRules
	gateways []model.GatewayRules // the rule files' default: silent after 5 periods
	groups   int                  // voting groups
	// ids are the sensors' ids, which the naive baseline looks state up by.
	ids []string
	// ordered: each cycle the gateways' messages come in an order of their
	// own (gateways are not synchronised), every message with its
	// sensors device by device. shuffled: each cycle in a random order
	// of all sensors, the worst case for memory.
	ordered, shuffled mixStream
}

// mixStream is mixCycles cycles of readings in one delivery order: the
// j-th reading of cycle k is of sensor order[k%mixOrders][j], with raw
// value vals[k*n+j]. The values are laid out in delivery order, as the
// decoded batches that feed the rules stage are, so that replaying them
// reads memory in sequence and leaves the engine's state the only memory
// touched at random.
type mixStream struct {
	order [mixOrders][]int32
	vals  []int16
}

const (
	// mixCycles: the readings repeat after 10 minutes at one a second. The
	// drift is periodic over it, so the repetition makes no jump.
	mixCycles = 600
	// mixOrders delivery orders take turns, one a cycle; divides mixCycles.
	mixOrders = 4
	// Raw values are hundredths of the sensor's unit (a transmitter's 14
	// bits, more or less); two raw values mark bad readings without value.
	mixScale   = 0.01
	rawTimeout = math.MinInt16     // bad, timeout: the device did not answer
	rawFault   = math.MinInt16 + 1 // bad, device_fault: the detector's own fault bit
)

type mixKind uint8

const (
	mixGas mixKind = iota
	mixProcess
	mixOxygen
	mixSIS
	mixPower
)

// mixLearnMS is how long a power meter without an idle baseline learns
// it: a minute of the 10-minute mix (the rule files' default is an hour).
const mixLearnMS = 60_000

// episode is one excursion of a series: from start the value moves by up
// to peak over up cycles, stands for hold and comes back over down.
type episode struct {
	start, up, hold, down int
	peak                  float64 // the change at the top, added to the series
}

// newMix builds a mix of n sensors from seed.
func newMix(n int, seed uint64) *mix {
	rng := rand.New(rand.NewPCG(seed, 0x6d6978))
	m := &mix{plant: &model.Plant{}, rules: make([]model.SensorRules, 0, n), ids: make([]string, 0, n)}
	p := m.plant
	var kinds []mixKind
	var gwStart []int32 // gateway g's sensors are gwStart[g]:gwStart[g+1]
	var devOf []int32   // the plant-wide device number of each sensor
	var leaks []episode // a voting group's leak as each member sees it; zero: none
	devices := 0
	for len(p.Sensors) < n {
		g := int32(len(p.Gateways))
		gw := model.Gateway{ID: fmt.Sprintf("gw%04d", g), PollPeriodMS: 1000}
		gwStart = append(gwStart, int32(len(p.Sensors)))
		for d := range 2 + rng.IntN(5) {
			if len(p.Sensors) == n {
				break
			}
			gw.Devices = append(gw.Devices, model.Device{ID: fmt.Sprint("d", d), PollPeriodMS: 1000})
			kind, channels := mixProcess, 8+rng.IntN(48)
			switch u := rng.Float64(); {
			case u < 0.40:
				kind = mixGas
			case u < 0.50:
				kind = mixOxygen
			case u < 0.56:
				kind, channels = mixSIS, 2+rng.IntN(7)
			case u < 0.59:
				kind, channels = mixPower, 1+rng.IntN(4)
			}
			onDelay := []int64{0, 2000, 5000}[rng.IntN(3)]
			offDelay := []int64{0, 2000}[rng.IntN(2)]
			first := len(p.Sensors)
			for c := range channels {
				if len(p.Sensors) == n {
					break
				}
				s, rs := mixSensor(rng, kind, onDelay, offDelay)
				s.ID, s.Gateway, s.Device = fmt.Sprintf("%s-%s-%02d", gw.ID, gw.Devices[d].ID, c), g, int32(d)
				p.Sensors = append(p.Sensors, s)
				m.rules = append(m.rules, rs)
				m.ids = append(m.ids, s.ID)
				kinds = append(kinds, kind)
				devOf = append(devOf, int32(devices))
				leaks = append(leaks, episode{})
			}
			if kind == mixGas {
				m.groups += mixGroups(rng, gw.Devices[d].ID, m.rules, leaks, first, len(p.Sensors))
			}
			devices++
		}
		p.Gateways = append(p.Gateways, gw)
	}
	gwStart = append(gwStart, int32(n))
	p.Index()
	m.gateways = make([]model.GatewayRules, len(p.Gateways))
	for g := range m.gateways {
		m.gateways[g].SilentPeriods = 5
	}

	// The delivery orders, and where each sensor stands in them.
	var ordPos, shufPos [mixOrders][]int32
	for o := range mixOrders {
		gws := rng.Perm(len(p.Gateways))
		ord := make([]int32, 0, n)
		for _, g := range gws {
			for i := gwStart[g]; i < gwStart[g+1]; i++ {
				ord = append(ord, i)
			}
		}
		shuf := make([]int32, n)
		for j, i := range rng.Perm(n) {
			shuf[j] = int32(i)
		}
		m.ordered.order[o], m.shuffled.order[o] = ord, shuf
		ordPos[o], shufPos[o] = inverse(ord), inverse(shuf)
	}
	m.ordered.vals = make([]int16, mixCycles*n)
	m.shuffled.vals = make([]int16, mixCycles*n)

	// Device outages: a few cycles without an answer, all sensors at once.
	outage := make([][2]int, devices)
	for d := range outage {
		if rng.Float64() < 0.02 {
			start := rng.IntN(mixCycles - 10)
			outage[d] = [2]int{start, start + 2 + rng.IntN(7)}
		}
	}
	series := make([]float64, mixCycles)
	for i := range n {
		mixSeries(rng, series, kinds[i], &p.Sensors[i], &m.rules[i])
		if leaks[i].up > 0 {
			add(series, leaks[i])
		}
		out := outage[devOf[i]]
		for k, v := range series {
			raw := int16(max(min(math.Round(v/mixScale), math.MaxInt16), rawFault+1))
			switch {
			case v != v: // how mixSeries marks the detector's fault bit
				raw = rawFault
			case k >= out[0] && k < out[1], rng.Float64() < 1e-4:
				raw = rawTimeout
			}
			o := k % mixOrders
			m.ordered.vals[k*n+int(ordPos[o][i])] = raw
			m.shuffled.vals[k*n+int(shufPos[o][i])] = raw
		}
	}
	return m
}

func inverse(order []int32) []int32 {
	pos := make([]int32, len(order))
	for j, i := range order {
		pos[i] = int32(j)
	}
	return pos
}

// mixSensor is one sensor of a kind and its rules: limits, the defaults,
// and for 40 % of measuring sensors trend or frozen rules; the SIS bypass
// or stop-order rule for a state or a power meter.
func mixSensor(rng *rand.Rand, kind mixKind, onDelay, offDelay int64) (model.Sensor, model.SensorRules) {
	s := model.Sensor{HazardSource: -1, RangeMin: 0, RangeMax: 100}
	rs := model.SensorRules{SilentPeriods: 5, OutOfRange: true, BadQuality: 3, OnDelayMS: onDelay, OffDelayMS: offDelay}
	lim := func(k model.LimitKind, v float64) {
		rs.Limits[k] = model.Limit{Set: true, Value: v, Level: k.DefaultLevel()}
	}
	rate := model.RateRule{Rise: 10, Fall: 10, WindowMS: 60_000, Deadband: 2, OnDelayMS: 2000}
	switch kind {
	case mixGas:
		s.Kind = model.GasCombustible
		lim(model.H, 25)
		lim(model.HH, 50)
		rs.Deadband, rs.Latch, rs.OffDelayMS = 2, true, 0
		rate.Fall = 0
	case mixProcess:
		s.Kind = model.Pressure
		if rng.Float64() < 0.7 {
			lim(model.LL, 10)
			lim(model.L, 20)
			lim(model.H, 80)
			lim(model.HH, 90)
		} else {
			lim(model.H, 85)
			lim(model.HH, 95)
		}
		rs.Deadband = 1
	case mixOxygen:
		s.Kind, s.RangeMax = model.GasOxygen, 30
		lim(model.L, 19.5)
		lim(model.H, 23.5)
		rs.Deadband = 0.2
		rate = model.RateRule{Rise: 1, Fall: 1, WindowMS: 60_000, Deadband: 0.2, OnDelayMS: 2000}
	case mixSIS:
		// A state: no limits and no trends, only the bypass of a level 1
		// or 2 source's SIS.
		s.Kind, s.RangeMax = model.SIS, 2
		rs.SISBypass = model.SISBypassRule{On: true, OnDelayMS: 5000, SourceLevel: 1 + rng.IntN(2)}
		return s, rs
	case mixPower:
		// A feeder of a stop-ordered enterprise, in kW: idle it draws
		// 15–60, producing 150–300.
		s.Kind, s.RangeMax = model.Power, 320
		rs.OnDelayMS, rs.OffDelayMS = 0, 0
		rs.StopOrder = model.StopOrderRule{On: true, MarginPct: 20, DelayMS: 300_000, LearnMS: mixLearnMS}
		if rng.IntN(3) > 0 {
			rs.StopOrder.BaselineKW = math.Round(15 + 45*rng.Float64())
		}
		return s, rs
	}
	pred := model.PredictionRule{Window: 60, HorizonMS: 600_000}
	frozen := model.FrozenRule{DurationMS: 120_000, Epsilon: 0.005}
	switch u := rng.Float64(); {
	case u < 0.60: // thresholds only
	case u < 0.70:
		rs.Rate = rate
	case u < 0.80:
		rs.Prediction = pred
	case u < 0.88:
		rs.Frozen = frozen
	case u < 0.94:
		rs.Rate, rs.Prediction = rate, pred
	default:
		rs.Rate, rs.Prediction, rs.Frozen = rate, pred, frozen
	}
	if kind == mixGas && rs.Frozen.On() {
		// A healthy gas detector reads 0 for days: frozen is for values
		// that should move.
		rs.Frozen, rs.Rate = model.FrozenRule{}, rate
	}
	return s, rs
}

// mixGroups makes voting groups of the gas detectors first:end of one
// controller, three neighbouring channels to a group and the last one or
// two in the last group, 2-out-of-n, and gives 1 % of the groups a leak
// that every member sees: the first as it is, each other a few seconds
// later and at 50–110 % of its size. It returns the number of groups.
func mixGroups(rng *rand.Rand, dev string, rules []model.SensorRules, leaks []episode, first, end int) int {
	groups := 0
	for start := first; end-start >= 3; groups++ {
		stop := start + 3
		if end-stop < 3 {
			stop = end
		}
		v := model.VoteRule{Name: fmt.Sprintf("%s-%d-g%d", dev, first, groups), K: 2}
		for i := start; i < stop; i++ {
			v.Members = append(v.Members, int32(i))
		}
		for _, i := range v.Members {
			rules[i].Vote = v
		}
		if rng.Float64() < 0.01 {
			ep := episode{up: 10 + rng.IntN(50), hold: 20 + rng.IntN(40), down: 20 + rng.IntN(40), peak: 30 + 30*rng.Float64()}
			ep.start = rng.IntN(mixCycles - ep.up - ep.hold - ep.down - 12)
			for k, i := range v.Members {
				e := ep
				if k > 0 {
					e.start += 1 + rng.IntN(10)
					e.peak *= 0.5 + 0.6*rng.Float64()
				}
				leaks[i] = e
			}
		}
		start = stop
	}
	return groups
}

// add adds an episode to v.
func add(v []float64, ep episode) {
	for k := range ep.up + ep.hold + ep.down {
		f := 1.0
		switch {
		case k < ep.up:
			f = float64(k) / float64(ep.up)
		case k >= ep.up+ep.hold:
			f = 1 - float64(k-ep.up-ep.hold)/float64(ep.down)
		}
		v[ep.start+k] += ep.peak * f
	}
}

// mixSeries fills v with one sensor's values over mixCycles cycles; NaN
// marks a reading the detector flags with its own fault bit.
func mixSeries(rng *rand.Rand, v []float64, kind mixKind, s *model.Sensor, rs *model.SensorRules) {
	switch kind {
	case mixSIS:
		sisSeries(rng, v)
		return
	case mixPower:
		powerSeries(rng, v, rs)
		return
	}
	g := newMixNoise(rng, kind, rs)
	for k := range v {
		v[k] = g.next(rng, k)
	}
	if rng.Float64() < 0.004 {
		excursion(rng, v, kind, rs)
	}
	if rs.Frozen.On() && rng.Float64() < 0.02 {
		start := rng.IntN(mixCycles - 300)
		for k := start + 1; k < start+150+rng.IntN(150); k++ {
			v[k] = v[start]
		}
	}
	if rng.Float64() < 0.0005 {
		k := rng.IntN(mixCycles - 3)
		for k2 := k; k2 < k+1+rng.IntN(3); k2++ {
			v[k2] = s.RangeMax + 3 // above the range, the gateway not saying so
		}
	}
	if kind == mixGas && rng.Float64() < 0.0005 {
		k := rng.IntN(mixCycles - 30)
		for k2 := k; k2 < k+10+rng.IntN(20); k2++ {
			v[k2] = math.NaN()
		}
	}
}

// mixNoise is the normal life of a measured value: noise with some memory
// (as a transmitter's damping gives it: AR(1), lag-1 autocorrelation 0.6)
// around a set point, and a slow drift over mixCycles.
type mixNoise struct {
	mean, noise, drift, phase, ar float64
	gas                           bool // clipped at 0: a detector in clean air reads 0, not less
}

func newMixNoise(rng *rand.Rand, kind mixKind, rs *model.SensorRules) *mixNoise {
	g := &mixNoise{gas: kind == mixGas}
	switch kind {
	case mixGas:
		g.mean, g.noise, g.drift = 0.3+1.7*rng.Float64(), 0.2+0.3*rng.Float64(), 0.5*rng.Float64()
	case mixProcess:
		g.mean, g.noise, g.drift = 40+20*rng.Float64(), 0.1+0.9*rng.Float64(), 0.5*rng.Float64()
		if rng.Float64() < 0.001 {
			// A value run close to its H limit: the noise carries it across.
			g.mean, g.noise = rs.Limits[model.H].Value-1.5*rng.Float64(), 0.8
		}
	case mixOxygen:
		g.mean, g.noise, g.drift = 20.9, 0.03, 0.1*rng.Float64()
	}
	g.phase = 2 * math.Pi * rng.Float64()
	return g
}

// next is the value of cycle k.
func (g *mixNoise) next(rng *rand.Rand, k int) float64 {
	g.ar = 0.6*g.ar + 0.8*g.noise*rng.NormFloat64()
	v := g.mean + g.drift*math.Sin(2*math.Pi*float64(k)/mixCycles+g.phase) + g.ar
	if g.gas {
		v = max(v, 0)
	}
	return v
}

// excursion adds one episode to v: the value leaves its normal band,
// stands and comes back. Gas leaks rise fast; process values drift over a
// minute or two past H (some past HH) or, with low limits, under L;
// oxygen falls under L (displaced by an inert gas).
func excursion(rng *rand.Rand, v []float64, kind mixKind, rs *model.SensorRules) {
	var peak float64
	up, hold, down := 40+rng.IntN(80), 20+rng.IntN(40), 40+rng.IntN(80)
	switch kind {
	case mixGas:
		peak, up, down = 15+45*rng.Float64(), 10+rng.IntN(50), 20+rng.IntN(40)
	case mixProcess:
		if l := rs.Limits[model.L]; l.Set && rng.Float64() < 0.25 {
			peak = l.Value + 2 - 14*rng.Float64()
		} else {
			peak = rs.Limits[model.H].Value - 2 + 14*rng.Float64()
		}
	case mixOxygen:
		peak = 18.5 + 1.3*rng.Float64()
	}
	start := rng.IntN(mixCycles - up - hold - down)
	add(v, episode{start: start, up: up, hold: hold, down: down, peak: peak - v[start]})
}

// sisSeries is an SIS state: normal (0), and for 5 % of them bypassed (1)
// for 20 s to 2 min at a random time, a third of those then tripped (2)
// for a while.
func sisSeries(rng *rand.Rand, v []float64) {
	clear(v)
	if rng.Float64() >= 0.05 {
		return
	}
	start := rng.IntN(mixCycles - 200)
	end := start + 20 + rng.IntN(100)
	for k := start; k < end; k++ {
		v[k] = 1
	}
	if rng.IntN(3) == 0 {
		for k := end; k < end+10+rng.IntN(60); k++ {
			v[k] = 2
		}
	}
}

// powerSeries is a feeder of a stop-ordered enterprise: its idle draw
// (the configured baseline, or 15–60 kW) with 3 % noise, and for a
// quarter of them production restarted after the learning minute, at
// 150–300 kW for six minutes: past the rule's five-minute delay.
func powerSeries(rng *rand.Rand, v []float64, rs *model.SensorRules) {
	idle := rs.StopOrder.BaselineKW
	if idle == 0 {
		idle = 15 + 45*rng.Float64()
	}
	for k := range v {
		v[k] = idle * (1 + 0.03*rng.NormFloat64())
	}
	if rng.Float64() < 0.25 {
		ep := episode{start: mixLearnMS/1000 + 10 + rng.IntN(100), up: 5 + rng.IntN(20), hold: 360, down: 5 + rng.IntN(10)}
		ep.peak = 150 + 150*rng.Float64() - idle
		add(v, ep)
	}
}

// mixPlayer replays a stream, cycle after cycle, with the time advancing
// one poll period (1 s) a cycle. advance sets r to the next reading field
// by field: a Reading built whole and returned costs the replay a stall
// (its bytes stored one by one, then loaded 16 at a time) that a decoded
// batch, written long before the rules stage reads it, does not have.
type mixPlayer struct {
	r     model.Reading
	s     *mixStream
	n     int
	j     int // the next reading of the cycle
	cycle int
	order []int32
	vals  []int16
	ts    int64
}

func newMixPlayer(s *mixStream, n int) *mixPlayer {
	return &mixPlayer{s: s, n: n, cycle: -1, j: n, ts: 1_700_000_000_000}
}

func (p *mixPlayer) advance() {
	if p.j == p.n {
		p.cycle++
		p.j, p.ts = 0, p.ts+1000
		k := p.cycle % mixCycles
		p.order, p.vals = p.s.order[k%mixOrders], p.s.vals[k*p.n:(k+1)*p.n]
	}
	raw := p.vals[p.j]
	p.r.SensorIdx, p.r.TS = p.order[p.j], p.ts
	p.j++
	if raw > rawFault {
		p.r.Value, p.r.HasValue, p.r.Quality, p.r.Reason = float64(raw)*mixScale, true, model.Good, model.ReasonNone
		return
	}
	p.r.Value, p.r.HasValue, p.r.Quality, p.r.Reason = 0, false, model.Bad, model.ReasonTimeout
	if raw == rawFault {
		p.r.Reason = model.ReasonDeviceFault
	}
}

var (
	mixSink      float64
	benchMixOnce sync.Once
	benchMixData *mix
)

// benchMixSensors is the size of the park the issue asks the figures for.
const benchMixSensors = 100_000

// benchMix is the 100 000-sensor mix, built once for every benchmark of a
// run (a few seconds, 120 MB a stream).
func benchMix() *mix {
	benchMixOnce.Do(func() { benchMixData = newMix(benchMixSensors, 5) })
	return benchMixData
}

// benchEvalMix (BenchmarkEval/mix/…): the mix of 100 000 sensors, one
// reading an op, through the engine (impl=rules) and through the naive
// baseline (impl=naive), in the order gateways deliver them
// (order=gateway) and shuffled (order=shuffled); order=…/impl=replay is
// the replaying alone, the harness's own share of each figure. Each
// starts with a fresh engine and 120 cycles (two prediction windows) of
// warm-up outside the timer.
func benchEvalMix(b *testing.B) {
	m := benchMix()
	n := len(m.plant.Sensors)
	for _, order := range []struct {
		name string
		s    *mixStream
	}{{"gateway", &m.ordered}, {"shuffled", &m.shuffled}} {
		for _, impl := range []string{"rules", "naive", "replay"} {
			b.Run("order="+order.name+"/impl="+impl, func(b *testing.B) {
				pl := newMixPlayer(order.s, n)
				out := make([]model.Transition, 0, 16)
				transitions := 0
				switch impl {
				case "rules":
					e := New(m.plant, m.rules, m.gateways)
					for range 120 * n {
						pl.advance()
						out = e.Eval(pl.r, out[:0])
					}
					b.ReportAllocs()
					for b.Loop() {
						pl.advance()
						out = e.Eval(pl.r, out[:0])
						transitions += len(out)
					}
				case "naive":
					e := newNaive(m.plant, m.rules)
					for range 120 * n {
						pl.advance()
						out = e.Eval(m.ids[pl.r.SensorIdx], pl.r, out[:0])
					}
					b.ReportAllocs()
					for b.Loop() {
						pl.advance()
						out = e.Eval(m.ids[pl.r.SensorIdx], pl.r, out[:0])
						transitions += len(out)
					}
				case "replay":
					var sum float64
					b.ReportAllocs()
					for b.Loop() {
						pl.advance()
						sum += pl.r.Value
					}
					mixSink = sum // keeps the replay from being optimised away
				}
				b.ReportMetric(float64(transitions)/float64(b.N), "transitions/op")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/reading")
			})
		}
	}
}

// ruleCounts counts raises and returns per rule.
type ruleCounts struct {
	raised, returned [model.NumRuleKinds]int
	total            int
}

func (c *ruleCounts) add(out []model.Transition) {
	for _, tr := range out {
		if tr.Active {
			c.raised[tr.Rule]++
		} else {
			c.returned[tr.Rule]++
		}
	}
	c.total += len(out)
}

// mixRules are the rules the mix exercises: all but silence, which only
// Tick raises.
var mixRules = []model.RuleKind{
	model.ThresholdHigh, model.ThresholdLow, model.RateRise, model.RateFall, model.PredictHigh,
	model.PredictLow, model.Frozen, model.OutOfRange, model.BadQuality, model.Voted,
	model.StopOrder, model.SISBypass,
}

// TestEvalMix: the realistic mix of BenchmarkEval/mix, at 10 000 sensors
// over its 600 cycles in the gateways' order. The engine allocates nothing
// for a whole cycle of readings, transitions included (the race detector
// too); every rule of the mix raises and returns in it, so the measure
// covers each; transitions are rare, the values mostly normal; and the
// naive baseline that the benchmark compares with raises and returns
// every rule as well, so it does the engine's work.
func TestEvalMix(t *testing.T) {
	m := newMix(10_000, 7)
	n := len(m.plant.Sensors)
	e := New(m.plant, m.rules, m.gateways)
	pl := newMixPlayer(&m.ordered, n)
	out := make([]model.Transition, 0, 16)
	var rules ruleCounts
	allocs := testing.AllocsPerRun(mixCycles-1, func() {
		for range n {
			pl.advance()
			out = e.Eval(pl.r, out[:0])
			rules.add(out)
		}
	})
	if allocs != 0 {
		t.Errorf("a cycle of %d readings of the mix: %v allocations, want 0", n, allocs)
	}
	if pl.cycle != mixCycles-1 || pl.j != n {
		t.Fatalf("replayed to cycle %d reading %d, want every reading of the %d cycles once", pl.cycle, pl.j, mixCycles)
	}

	ne := newNaive(m.plant, m.rules)
	pl = newMixPlayer(&m.ordered, n)
	var naive ruleCounts
	for range mixCycles * n {
		pl.advance()
		out = ne.Eval(m.ids[pl.r.SensorIdx], pl.r, out[:0])
		naive.add(out)
	}
	readings := float64(mixCycles * n)
	for _, c := range []struct {
		name string
		c    *ruleCounts
	}{{"engine", &rules}, {"naive", &naive}} {
		t.Logf("%s: %d transitions in %.0f readings (%.2g a reading)", c.name, c.c.total, readings, float64(c.c.total)/readings)
		for _, r := range mixRules {
			t.Logf("  %-15s %5d raised %5d returned", r, c.c.raised[r], c.c.returned[r])
			if c.c.raised[r] == 0 || c.c.returned[r] == 0 {
				t.Errorf("%s: %s raised %d, returned %d times in the mix; want both", c.name, r, c.c.raised[r], c.c.returned[r])
			}
		}
		if share := float64(c.c.total) / readings; share > 0.001 {
			t.Errorf("%s: %.2g transitions a reading; the mix is to be mostly normal", c.name, share)
		}
	}
}
