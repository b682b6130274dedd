package rules

import (
	"math"

	"hazardwatch/internal/model"
)

// naiveEngine is the baseline that BenchmarkEval/mix compares the engine
// with: the same rules written the way they are often written first.
// Sensors are found by their id string in a map of pointers, one lookup a
// reading with all of a sensor's state in one struct; windows are slices
// appended to at the end and sliced off at the front; the prediction fits
// its least-squares line from scratch over the whole window at every
// reading; a threshold direction waits for its delays with one pending
// stage and the time it became pending; a voting group, found by its name
// in a map, counts its members' votes afresh at each member's reading; a
// learned stop-order baseline is the mean of the readings of the learning
// period, kept in a slice.
//
// It has every rule of the engine, with the same limits, deadbands, delays
// and defaults, and raises and returns each of them on the mix
// (TestEvalMix). It does not match the engine transition for transition:
// its prediction has one fit, not two, and no rest after a cancel, and a
// pending threshold restarts its delay when the stage it waits for
// changes; its learned baseline is a plain mean. What it measures is the
// same work done without dense indexes, fixed rings and incremental sums.
type naiveEngine struct {
	sensors map[string]*naiveSensor
	groups  map[string]*naiveGroup
}

// naiveGroup is a voting group: its members, and what its last transition
// said.
type naiveGroup struct {
	members   []*naiveSensor
	k         int
	confirmed bool
}

type naiveSensor struct {
	idx              int32
	rules            model.SensorRules
	checkRange       bool
	rangeLo, rangeHi float64
	lastTS, qualTS   int64

	hi, lo naiveCond

	window     []point // rate of change
	rise, fall naiveRate

	trend          []point // prediction
	predHi, predLo naivePred

	frozenRef     float64
	frozenSince   int64
	frozenStarted bool
	frozen        bool

	outOfRange bool
	badRun     int
	badActive  bool

	learned              []float64 // stop-order: the readings of the learning period
	learnEnd, powerSince int64
	baseline             float64
	learning, power      bool

	sisSince int64
	sis      bool
}

func newNaive(p *model.Plant, rs []model.SensorRules) *naiveEngine {
	e := &naiveEngine{sensors: make(map[string]*naiveSensor, len(p.Sensors)), groups: map[string]*naiveGroup{}}
	for i := range p.Sensors {
		s := &p.Sensors[i]
		ns := &naiveSensor{
			idx: int32(i), rules: rs[i],
			checkRange: s.RangeMax > s.RangeMin, rangeLo: s.RangeMin, rangeHi: s.RangeMax,
			lastTS: math.MinInt64, qualTS: math.MinInt64, sisSince: math.MinInt64, powerSince: math.MinInt64,
			baseline: rs[i].StopOrder.BaselineKW, learning: rs[i].StopOrder.BaselineKW <= 0, learnEnd: math.MinInt64,
		}
		e.sensors[s.ID] = ns
		if v := rs[i].Vote; v.On() {
			g := e.groups[v.Name]
			if g == nil {
				g = &naiveGroup{k: v.K}
				e.groups[v.Name] = g
			}
			g.members = append(g.members, ns)
		}
	}
	return e
}

// Eval applies a reading of the sensor with that id, as Engine.Eval does.
func (e *naiveEngine) Eval(id string, r model.Reading, out []model.Transition) []model.Transition {
	s, ok := e.sensors[id]
	if !ok {
		return out
	}
	if r.TS > s.qualTS {
		s.qualTS = r.TS
		out = s.qualityFaults(r, out)
	}
	if r.Quality == model.Bad || !r.HasValue || math.IsNaN(r.Value) || r.TS <= s.lastTS {
		return e.vote(s, r, out)
	}
	s.lastTS = r.TS
	rs := &s.rules
	out = s.hi.eval(s.idx, rs, true, r, out)
	out = s.lo.eval(s.idx, rs, false, r, out)
	if rs.Rate.On() {
		out = s.rate(r, out)
	}
	if rs.Prediction.On() {
		out = s.predict(r, out)
	}
	if rs.Frozen.On() {
		out = s.checkFrozen(r, out)
	}
	if rs.StopOrder.On {
		out = s.stopOrder(r, out)
	}
	if rs.SISBypass.On {
		out = s.bypass(r, out)
	}
	return e.vote(s, r, out)
}

// vote counts the votes of s's group, if it has one.
func (e *naiveEngine) vote(s *naiveSensor, r model.Reading, out []model.Transition) []model.Transition {
	if !s.rules.Vote.On() {
		return out
	}
	g := e.groups[s.rules.Vote.Name]
	votes := 0
	for _, m := range g.members {
		if m.hi.stage >= 1 && !m.outOfRange && !m.badActive {
			votes++
		}
	}
	if confirmed := votes >= g.k; confirmed != g.confirmed {
		g.confirmed = confirmed
		out = append(out, model.Transition{Sensor: g.members[0].idx, Rule: model.Voted, Class: model.ClassAlarm, Level: model.L2,
			Active: confirmed, Value: float64(votes), Limit: float64(g.k), TS: r.TS, Late: r.Late})
	}
	return out
}

func (s *naiveSensor) stopOrder(r model.Reading, out []model.Transition) []model.Transition {
	so := &s.rules.StopOrder
	if s.learning {
		if s.learnEnd == math.MinInt64 {
			s.learnEnd = r.TS + so.LearnMS
		}
		if r.TS < s.learnEnd {
			s.learned = append(s.learned, r.Value)
			return out
		}
		sum := 0.0
		for _, v := range s.learned {
			sum += v
		}
		s.baseline, s.learning, s.learned = sum/float64(max(len(s.learned), 1)), false, nil
	}
	margin := so.MarginPct / 100
	switch {
	case !s.power && r.Value <= s.baseline*(1+margin):
		s.powerSince = math.MinInt64
		return out
	case !s.power:
		if s.powerSince == math.MinInt64 {
			s.powerSince = r.TS
		}
		if r.TS-s.powerSince < so.DelayMS {
			return out
		}
		s.power = true
	case r.Value >= s.baseline*(1+margin/2):
		return out
	default:
		s.power, s.powerSince = false, math.MinInt64
	}
	return append(out, s.transition(model.StopOrder, model.ClassViolation, s.power, r.Value, s.baseline, r))
}

func (s *naiveSensor) bypass(r model.Reading, out []model.Transition) []model.Transition {
	if math.Round(r.Value) != 1 {
		s.sisSince = math.MinInt64
		if !s.sis {
			return out
		}
		s.sis = false
	} else {
		if s.sis {
			return out
		}
		if s.sisSince == math.MinInt64 {
			s.sisSince = r.TS
		}
		if r.TS-s.sisSince < s.rules.SISBypass.OnDelayMS {
			return out
		}
		s.sis = true
	}
	return append(out, s.transition(model.SISBypass, model.ClassViolation, s.sis, r.Value, float64(s.rules.SISBypass.SourceLevel), r))
}

func (s *naiveSensor) transition(rule model.RuleKind, class model.AlarmClass, active bool, value, limit float64, r model.Reading) model.Transition {
	return model.Transition{Sensor: s.idx, Rule: rule, Class: class, Active: active, Value: value, Limit: limit, TS: r.TS, Late: r.Late}
}

func (s *naiveSensor) qualityFaults(r model.Reading, out []model.Transition) []model.Transition {
	covered := r.Quality == model.Bad && (r.Reason == model.ReasonOutOfRange || r.Reason == model.ReasonDeviceFault)
	if s.rules.OutOfRange {
		valued := r.HasValue && !math.IsNaN(r.Value)
		outside := valued && s.checkRange && (r.Value < s.rangeLo || r.Value > s.rangeHi)
		limit := s.rangeHi
		if outside && r.Value < s.rangeLo {
			limit = s.rangeLo
		}
		switch {
		case !s.outOfRange && (covered || outside && r.Quality != model.Bad):
			s.outOfRange = true
			t := s.transition(model.OutOfRange, model.ClassFault, true, r.Value, limit, r)
			t.Reason = model.ReasonOutOfRange
			if covered {
				t.Reason = r.Reason
			}
			out = append(out, t)
		case s.outOfRange && valued && !outside && r.Quality != model.Bad:
			s.outOfRange = false
			out = append(out, s.transition(model.OutOfRange, model.ClassFault, false, r.Value, limit, r))
		}
	}
	if n := s.rules.BadQuality; n > 0 {
		switch {
		case r.Quality != model.Bad:
			s.badRun = 0
			if s.badActive {
				s.badActive = false
				out = append(out, s.transition(model.BadQuality, model.ClassFault, false, r.Value, float64(n), r))
			}
		case s.rules.OutOfRange && covered:
		default:
			s.badRun++
			if !s.badActive && s.badRun >= n {
				s.badActive = true
				t := s.transition(model.BadQuality, model.ClassFault, true, float64(s.badRun), float64(n), r)
				t.Reason = r.Reason
				out = append(out, t)
			}
		}
	}
	return out
}

// naiveCond is one threshold direction: the stage raised (0 none, 1 H or
// L, 2 HH or LL) and the stage waiting for its delay, since when.
type naiveCond struct {
	stage, pending int
	since          int64
}

func (c *naiveCond) eval(idx int32, rs *model.SensorRules, high bool, r model.Reading, out []model.Transition) []model.Transition {
	kinds, rule := [3]model.LimitKind{0, model.H, model.HH}, model.ThresholdHigh
	if !high {
		kinds, rule = [3]model.LimitKind{0, model.L, model.LL}, model.ThresholdLow
	}
	// The stage the value stands at; a raised stage is left only past its
	// limit by the deadband.
	target := 0
	for st := 2; st >= 1; st-- {
		l := rs.Limits[kinds[st]]
		if !l.Set {
			continue
		}
		thr, db := l.Value, 0.0
		if c.stage >= st {
			db = rs.Deadband
		}
		if high && r.Value >= thr-db || !high && r.Value <= thr+db {
			target = st
			break
		}
	}
	if target == c.stage {
		c.pending = target
		return out
	}
	if target != c.pending {
		c.pending, c.since = target, r.TS
	}
	delay := rs.OnDelayMS
	if target < c.stage {
		delay = rs.OffDelayMS
	}
	if r.TS-c.since < delay {
		return out
	}
	t := model.Transition{Sensor: idx, Rule: rule, Class: model.ClassAlarm, Value: r.Value, TS: r.TS, Late: r.Late}
	if target > 0 {
		l := rs.Limits[kinds[target]]
		t.Active, t.Level, t.Limit = true, levelOf(l, kinds[target]), l.Value
	} else {
		t.Level = levelOf(rs.Limits[kinds[c.stage]], kinds[c.stage])
		for st := 1; st <= 2; st++ {
			if l := rs.Limits[kinds[st]]; l.Set {
				t.Limit = l.Value
				break
			}
		}
	}
	c.stage = target
	return append(out, t)
}

// naiveRate is one direction of a rate of change.
type naiveRate struct {
	active  bool
	pending bool
	since   int64
}

func (s *naiveSensor) rate(r model.Reading, out []model.Transition) []model.Transition {
	rr := &s.rules.Rate
	s.window = append(s.window, point{r.TS, r.Value})
	// Keep the newest reading at or before the window's start.
	start, k := r.TS-rr.WindowMS, 0
	for k+1 < len(s.window) && s.window[k+1].ts <= start {
		k++
	}
	s.window = s.window[k:]
	ref := s.window[0]
	if len(s.window) < 2 || ref.ts > start {
		return out
	}
	rate := (r.Value - ref.v) / float64(r.TS-ref.ts) * 60_000
	out = s.rise.eval(s, rr.Rise, rate, model.RateRise, r, out)
	return s.fall.eval(s, rr.Fall, -rate, model.RateFall, r, out)
}

func (c *naiveRate) eval(s *naiveSensor, limit, rate float64, rule model.RuleKind, r model.Reading, out []model.Transition) []model.Transition {
	rr := &s.rules.Rate
	switch {
	case limit <= 0:
	case c.active && rate < limit-rr.Deadband:
		c.active, c.pending = false, false
		out = append(out, s.transition(rule, model.ClassPrewarning, false, rate, limit, r))
	case c.active:
	case rate < limit:
		c.pending = false
	case !c.pending:
		c.pending, c.since = true, r.TS
		fallthrough
	default:
		if r.TS-c.since >= rr.OnDelayMS {
			c.active = true
			out = append(out, s.transition(rule, model.ClassPrewarning, true, rate, limit, r))
		}
	}
	return out
}

// naivePred is one direction of a prediction: raised, and the limit named.
type naivePred struct {
	active bool
	limit  float64
}

func (s *naiveSensor) predict(r model.Reading, out []model.Transition) []model.Transition {
	pr := &s.rules.Prediction
	s.trend = append(s.trend, point{r.TS, r.Value})
	if len(s.trend) > pr.Window {
		s.trend = s.trend[1:]
	}
	if len(s.trend) < pr.Window {
		return out
	}
	// The least-squares line through the window, from scratch.
	t0 := s.trend[0].ts
	var sx, sy, sxx, sxy, syy float64
	for _, p := range s.trend {
		x := float64(p.ts-t0) / 1000
		sx, sy, sxx, sxy, syy = sx+x, sy+p.v, sxx+x*x, sxy+x*p.v, syy+p.v*p.v
	}
	n := float64(len(s.trend))
	vx := sxx - sx*sx/n
	if !(vx > 0) {
		return out
	}
	cxy := sxy - sx*sy/n
	slope := cxy / vx
	at := sy/n + slope*(float64(r.TS-t0)/1000-sx/n)
	sse := max(syy-sy*sy/n-slope*cxy, 0)
	sig := slope*slope*vx*(n-2) >= significance*significance*sse
	out = s.predHi.eval(s, true, slope, at, sig, r, out)
	return s.predLo.eval(s, false, slope, at, sig, r, out)
}

func (c *naivePred) eval(s *naiveSensor, high bool, slope, at float64, sig bool, r model.Reading, out []model.Transition) []model.Transition {
	rs := &s.rules
	rule, first, second := model.PredictHigh, rs.Limits[model.H], rs.Limits[model.HH]
	if !high {
		rule, first, second = model.PredictLow, rs.Limits[model.L], rs.Limits[model.LL]
		slope, at = -slope, -at
	}
	// The next limit the value has not reached, and its distance.
	var target model.Limit
	for _, l := range []model.Limit{first, second} {
		if l.Set && (high && r.Value < l.Value || !high && r.Value > l.Value) {
			target = l
			break
		}
	}
	lim := target.Value
	if !high {
		lim = -lim
	}
	horizon := float64(rs.Prediction.HorizonMS)
	if c.active {
		if !target.Set || target.Value != c.limit || slope <= 0 || (lim-at)/slope*1000 > clearHorizon*horizon {
			c.active = false
			t := s.transition(rule, model.ClassPrewarning, false, r.Value, c.limit, r)
			out = append(out, t)
		}
		return out
	}
	if !sig || !target.Set || slope <= 0 {
		return out
	}
	eta := max(lim-at, 0) / slope * 1000
	if eta > horizon {
		return out
	}
	c.active, c.limit = true, target.Value
	t := s.transition(rule, model.ClassPrewarning, true, r.Value, target.Value, r)
	t.ETA = r.TS + int64(eta)
	return append(out, t)
}

func (s *naiveSensor) checkFrozen(r model.Reading, out []model.Transition) []model.Transition {
	fr := &s.rules.Frozen
	if !s.frozenStarted {
		s.frozenStarted, s.frozenRef, s.frozenSince = true, r.Value, r.TS
		return out
	}
	if math.Abs(r.Value-s.frozenRef) <= fr.Epsilon {
		if !s.frozen && r.TS-s.frozenSince >= fr.DurationMS {
			s.frozen = true
			out = append(out, s.transition(model.Frozen, model.ClassFault, true, r.Value, float64(fr.DurationMS)/1000, r))
		}
		return out
	}
	s.frozenRef, s.frozenSince = r.Value, r.TS
	if s.frozen {
		s.frozen = false
		out = append(out, s.transition(model.Frozen, model.ClassFault, false, r.Value, float64(fr.DurationMS)/1000, r))
	}
	return out
}
