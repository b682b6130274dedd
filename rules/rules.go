// Package rules is the hot path of hazardwatch: it applies each sensor's
// compiled rules (model.SensorRules, built by internal/config) to every
// reading and emits a model.Transition only when a condition starts,
// changes level or ends. Everything downstream (alarms, history, push)
// consumes those transitions, never the readings' verdicts one by one.
//
// Per-sensor state lives in slices indexed by the sensor's dense index, so
// Eval does no map lookup, takes no lock, logs nothing and allocates
// nothing. An Engine belongs to one goroutine (the rules stage); only its
// counters may be read from others.
//
// Time is the readings' own: delays are measured between reading
// timestamps (Unix ms), so a replayed or late series evaluates exactly as it
// did live. Only silence (Tick) looks at the centre's clock, given by the
// caller.
//
// # The rules of one sensor
//
//	threshold_high/low  alarm       H/HH, L/LL with deadband and on/off delays (rules.go)
//	rate_rise/fall      prewarning  change per minute over a time window (trend.go)
//	predict_high/low    prewarning  the trend reaches the next limit within a horizon (trend.go)
//	frozen              fault       the same value for too long (fault.go)
//	out_of_range        fault       outside the instrument's range, or marked so (fault.go)
//	bad_quality         fault       N bad readings in a row (fault.go)
//	silent              offline     no reading for N poll periods (Tick)
//	gateway_silent      offline     none of a gateway's sensors heard: one alarm, not one a sensor (gateway.go)
//	voted               alarm (L2)  k of a voting group's n detectors in alarm (vote.go)
//	stop_order_power    violation   a stop-ordered enterprise drawing power above idle (power.go)
//	sis_bypass          violation   an SIS of a level 1-2 hazard source bypassed (sis.go)
//
// Thresholds, silence and the two quality faults are evaluated for every
// sensor; rate, prediction and frozen only for sensors that configure them,
// whose state (and the rings of readings the trends need) sits in side
// tables sized at New, so a sensor without them pays one comparison each.
//
// # Prediction: least squares, updated per reading
//
// A prediction fits a straight line to the last N readings (N = 60 by
// default) by ordinary least squares and extrapolates it to the next limit.
// The five sums the fit needs are updated incrementally as a reading enters
// the ring and the oldest leaves, and recomputed exactly from the ring each
// time it wraps (every N readings, so O(1) per reading amortised) against a
// new origin, which keeps rounding from building up. A second set of sums
// covers the newest quarter of the ring (at least 5 readings): where the
// value heads now, which the whole window, lagging a change of trend by
// half its length, cannot say (trend.go, type fit).
//
// We chose it over Theil–Sen recomputed every N readings because a
// prediction must react to the reading that makes it true: the demo's LPG
// sphere reaches H 100 s after its level starts to rise, and a slope
// refreshed once a minute could come after the alarm it was to announce,
// while Theil–Sen on every reading costs O(N²) (1 770 slopes for N = 60)
// against the handful of additions here. Least squares is sensitive to
// outliers, but bad readings never enter the ring, the line is read at its
// fitted value rather than the last reading (one spike moves it by 1/N of
// its size), and its slope is only believed when it is at least three
// times its standard error, which a spike on a flat signal is not.
package rules

import (
	"math"
	"sync/atomic"
	"time"

	"hazardwatch/internal/model"
)

// never marks a "since" that is not running, and a sensor never heard from.
const never = math.MinInt64

// Stages of a one-sided condition: 0 normal, 1 the outer limit (H or L),
// 2 the inner one (HH or LL). One condition per direction carries both
// limits, so HH after H is a level change of the same alarm (SPEC §4).
const numStages = 3

var (
	highLimits = [numStages]model.LimitKind{1: model.H, 2: model.HH}
	lowLimits  = [numStages]model.LimitKind{1: model.L, 2: model.LL}
)

// cond is the state of one direction (high or low) of one sensor.
type cond struct {
	stage int8 // committed: what the last transition said
	// above[s] is the TS of the first reading of the current run at or past
	// stage s, below[s] of the current run short of it; never when the
	// latest reading is on the other side. Delays are measured from them.
	above, below [numStages]int64
}

func newCond() cond {
	c := cond{}
	for s := range numStages {
		c.above[s], c.below[s] = never, never
	}
	return c
}

type sensorState struct {
	// lastTS is the newest reading evaluated for its value (thresholds,
	// rate, prediction, frozen); an older one is out of order and skipped.
	lastTS int64
	// qualTS is the newest reading evaluated for its quality (out of
	// range, bad quality), whatever its quality.
	qualTS int64
	// heard is the newest reading of any quality, for silence; offline
	// says which silences are raised (sensorOffline, gatewayOffline).
	heard   int64
	offline uint8
	// The quality faults: whether each is on (from the rules, copied here
	// so that a reading touches one struct), raised, and the bad readings
	// in a row so far. checkRange: the instrument has a range to check
	// values against.
	oorOn, outOfRange, checkRange, badActive bool
	badLimit, badRun                         int32
	rangeLo, rangeHi                         float64
	hi, lo                                   cond
	// Indexes into the engine's side tables; -1 when the rule is off.
	rate, pred, frozen int32
	power, sis         int32
	// group is the sensor's voting group (-1: none) and vote whether the
	// group counts it now (vote.go).
	group int32
	vote  bool
}

// Engine evaluates the rules of every sensor of one plant.
type Engine struct {
	rules []model.SensorRules
	// silentMS is each sensor's silence window (SilentPeriods × its
	// device's poll period); 0 disables the check.
	silentMS []int64
	st       []sensorState

	// The gateways (gateway.go): each sensor's gateway (-1: none) and poll
	// period, each gateway's silence window and state, and its sensors,
	// gwMembers[gwStart[g]:gwStart[g+1]].
	gwOf       []int32
	pollMS     []int64
	gwSilentMS []int64
	gws        []gatewayState
	gwMembers  []int32
	gwStart    []int32

	// Side tables of the rules only some sensors have, and the readings
	// their windows hold (each rate and prediction has a ring in pts,
	// laid out by time: see ring).
	rates  []rateState
	preds  []predState
	frozen []frozenState
	pts    []point
	groups []voteGroup
	powers []powerState
	sises  []sisState

	outOfOrder, unknown atomic.Uint64
}

// New builds an engine for plant p with rs[i] the rules of sensor i and
// gs[g] those of gateway g (as config.Config.Rules and Gateways hold
// them). A sensor beyond the end of rs has no limits and no silence check;
// a gateway beyond the end of gs has no silence check of its own.
func New(p *model.Plant, rs []model.SensorRules, gs []model.GatewayRules) *Engine {
	n := len(p.Sensors)
	e := &Engine{
		rules:    make([]model.SensorRules, n),
		silentMS: make([]int64, n),
		st:       make([]sensorState, n),
		gwOf:     make([]int32, n),
		pollMS:   make([]int64, n),
	}
	copy(e.rules, rs)
	for i := range p.Sensors {
		s, rs := &p.Sensors[i], &e.rules[i]
		poll := pollPeriod(p, s)
		e.pollMS[i] = poll
		e.gwOf[i] = -1
		if s.Gateway >= 0 && int(s.Gateway) < len(p.Gateways) {
			e.gwOf[i] = s.Gateway
		}
		e.silentMS[i] = silentWindow(poll, rs.SilentPeriods)
		st := sensorState{
			lastTS: never, qualTS: never, heard: never, hi: newCond(), lo: newCond(),
			oorOn: rs.OutOfRange, badLimit: int32(min(max(rs.BadQuality, 0), 1<<30)),
			checkRange: s.RangeMax > s.RangeMin, rangeLo: s.RangeMin, rangeHi: s.RangeMax,
			rate: -1, pred: -1, frozen: -1, group: -1, power: -1, sis: -1,
		}
		if rs.Rate.On() {
			st.rate = int32(len(e.rates))
			e.rates = append(e.rates, newRateState(rateCap(rs.Rate.WindowMS, poll)))
		}
		if rs.Prediction.On() {
			st.pred = int32(len(e.preds))
			e.preds = append(e.preds, newPredState(rs.Prediction.Window))
		}
		if rs.Frozen.On() {
			st.frozen = int32(len(e.frozen))
			e.frozen = append(e.frozen, frozenState{since: never})
		}
		e.st[i] = st
	}
	var rings []*ring // in sensor order
	for i := range e.st {
		if st := &e.st[i]; st.rate >= 0 {
			rings = append(rings, &e.rates[st.rate].pts)
		}
		if st := &e.st[i]; st.pred >= 0 {
			rings = append(rings, &e.preds[st.pred].pts)
		}
	}
	e.pts = make([]point, layoutRings(rings))
	e.initGateways(p, gs)
	e.initGroups()
	e.initViolations()
	return e
}

// pollPeriod is how often the sensor's device is polled, in ms; 0 when the
// plant does not say.
func pollPeriod(p *model.Plant, s *model.Sensor) int64 {
	if s.Gateway < 0 || int(s.Gateway) >= len(p.Gateways) {
		return 0
	}
	g := &p.Gateways[s.Gateway]
	if s.Device >= 0 && int(s.Device) < len(g.Devices) && g.Devices[s.Device].PollPeriodMS > 0 {
		return g.Devices[s.Device].PollPeriodMS
	}
	return max(g.PollPeriodMS, 0)
}

func silentWindow(poll int64, periods int) int64 {
	if periods <= 0 || poll <= 0 {
		return 0
	}
	return int64(periods) * poll
}

// OutOfOrder counts readings skipped for thresholds because they were not
// newer than the last one evaluated for their sensor.
func (e *Engine) OutOfOrder() uint64 { return e.outOfOrder.Load() }

// Unknown counts readings whose sensor index is outside the plant.
func (e *Engine) Unknown() uint64 { return e.unknown.Load() }

// SilentWindow returns sensor i's silence window; 0 when it is not checked.
func (e *Engine) SilentWindow(i int32) time.Duration {
	return time.Duration(e.silentMS[i]) * time.Millisecond
}

// Eval applies reading r to its sensor's rules and appends the transitions
// it causes to out, usually none.
//
//   - Any reading, whatever its quality, shows that the sensor is heard
//     from; a live one ends its `offline` condition and its gateway's. A
//     late (replayed) reading does not: it says the sensor was alive then,
//     not that it is now, and ending offline on it would let the next Tick
//     raise it again in the middle of a replay.
//   - Every reading newer than the last one judged for its quality goes to
//     the quality faults (out of range, bad quality), bad ones included:
//     they are what those rules are about.
//   - A bad reading, or one without a value, neither raises nor returns a
//     condition on the value (threshold, rate, prediction, frozen) and
//     enters no window: a detector fault must not clear a gas alarm, and a
//     single gap must not restart an on-delay. Uncertain readings with a
//     value are evaluated: a detector saturated above its range is exactly
//     when the alarm matters.
//   - A reading not newer than the last one evaluated for its value is out
//     of order: skipped for the value's rules and counted (OutOfOrder).
//     Gateways send their backlog oldest first, so this is rare; a
//     reordering buffer can come when a gateway needs it.
//   - Transitions carry the reading's TS and its Late mark, whatever the
//     rule: late data evaluates like live data and downstream decides not
//     to ring it (SPEC §2). A raise comes with the reading that completes
//     the on-delay (when the alarm became due), not the one that started
//     the crossing.
func (e *Engine) Eval(r model.Reading, out []model.Transition) []model.Transition {
	i := r.SensorIdx
	if i < 0 || int(i) >= len(e.st) {
		e.unknown.Add(1)
		return out
	}
	st := &e.st[i]
	prev := st.heard
	if r.TS > st.heard {
		st.heard = r.TS
	}
	if st.offline != 0 && !r.Late {
		out = e.heardAgain(st, r, prev, out)
	}
	if r.TS > st.qualTS {
		st.qualTS = r.TS
		// The common case, a good reading inside the range with no fault
		// raised, decides nothing here and skips the calls.
		if st.oorOn && (st.outOfRange || r.Quality == model.Bad || st.checkRange && (r.Value < st.rangeLo || r.Value > st.rangeHi)) {
			out = outOfRange(st, r, out)
		}
		if st.badLimit > 0 && (r.Quality == model.Bad || st.badRun > 0 || st.badActive) {
			out = badQuality(st, r, out)
		}
	}
	// v != v is NaN: telemetry rejects non-finite values, but a NaN here
	// would compare as "inside every limit" and return alarms.
	if r.Quality == model.Bad || !r.HasValue || r.Value != r.Value {
		return e.voted(st, r, out)
	}
	if r.TS <= st.lastTS {
		e.outOfOrder.Add(1)
		return e.voted(st, r, out)
	}
	st.lastTS = r.TS
	rs := &e.rules[i]
	out = step(&st.hi, rs, &highLimits, true, r, out)
	out = step(&st.lo, rs, &lowLimits, false, r, out)
	if st.rate >= 0 {
		out = e.evalRate(&e.rates[st.rate], &rs.Rate, r, out)
	}
	if st.pred >= 0 {
		out = e.evalPrediction(&e.preds[st.pred], rs, r, out)
	}
	if st.frozen >= 0 {
		out = evalFrozen(&e.frozen[st.frozen], &rs.Frozen, r, out)
	}
	if st.power >= 0 || st.sis >= 0 {
		out = e.violations(st, rs, r, out)
	}
	return e.voted(st, r, out)
}

// Tick raises `offline` for every gateway none of whose sensors was heard
// from for its silence window, as of now, then for every sensor not heard
// from for its own, except those of a silent gateway (gateway.go), and
// appends those transitions to out. Silence of a sensor never heard from
// counts from its first Tick, so a restart does not raise every sensor at
// once. Call it about once a poll period from the goroutine that calls
// Eval.
func (e *Engine) Tick(now time.Time, out []model.Transition) []model.Transition {
	ms := now.UnixMilli()
	for g := range e.gws {
		out = e.tickGateway(int32(g), ms, out)
	}
	for i := range e.st {
		st := &e.st[i]
		w := e.silentMS[i]
		if w <= 0 || st.offline != 0 {
			continue
		}
		if st.heard == never {
			st.heard = ms
			continue
		}
		if silent := ms - st.heard; silent >= w && !e.waitsForGateway(i, ms) {
			st.offline |= sensorOffline
			out = append(out, model.Transition{
				Sensor: int32(i), Rule: model.Silent, Class: model.ClassOffline, Active: true,
				Value: float64(silent) / 1000, Limit: float64(w) / 1000, TS: ms,
			})
		}
	}
	return out
}

// Assume sets a sensor's condition as if t had been emitted, without
// emitting anything. At start the wiring seeds the engine with the
// conditions that the alarm log says are active, so that a value that
// returned while the centre was down produces its return on the first
// reading instead of leaving the alarm active for ever. Transitions it
// cannot place (unknown sensor, a level or limit no configured limit has,
// a rule the sensor does not have) are ignored and reported false. A
// seeded rate or prediction returns once its window shows it over; a
// seeded frozen fault at the first change of value after the first
// reading; the quality faults on the first good reading; a voting group's
// alarm (on its first member) at the first reading of a member once fewer
// than K members vote; a gateway's silence (Sensor -1, Gateway set) at the
// first live reading of any of its sensors.
func (e *Engine) Assume(t model.Transition) bool {
	if t.Rule == model.GatewaySilent {
		return e.assumeGateway(t)
	}
	if t.Sensor < 0 || int(t.Sensor) >= len(e.st) {
		return false
	}
	ok := e.assume(t)
	e.recount(&e.st[t.Sensor])
	return ok
}

func (e *Engine) assume(t model.Transition) bool {
	st := &e.st[t.Sensor]
	rs := &e.rules[t.Sensor]
	switch t.Rule {
	case model.Silent:
		st.offline &^= sensorOffline
		if t.Active {
			st.offline |= sensorOffline
		}
		return true
	case model.ThresholdHigh:
		return assume(&st.hi, rs, &highLimits, t)
	case model.ThresholdLow:
		return assume(&st.lo, rs, &lowLimits, t)
	case model.RateRise, model.RateFall:
		if st.rate < 0 {
			return !t.Active
		}
		c := &e.rates[st.rate].fall
		if t.Rule == model.RateRise {
			c = &e.rates[st.rate].rise
		}
		*c = rateCond{active: t.Active, since: never}
		return true
	case model.PredictHigh, model.PredictLow:
		if st.pred < 0 {
			return !t.Active
		}
		return assumePrediction(&e.preds[st.pred], rs, t)
	case model.Frozen:
		if st.frozen < 0 {
			return !t.Active
		}
		e.frozen[st.frozen] = frozenState{active: t.Active, since: never}
		return true
	case model.OutOfRange:
		if !st.oorOn {
			return !t.Active
		}
		st.outOfRange = t.Active
		return true
	case model.BadQuality:
		if st.badLimit == 0 {
			return !t.Active
		}
		st.badActive, st.badRun = t.Active, 0
		if t.Active {
			st.badRun = st.badLimit
		}
		return true
	case model.Voted:
		return e.assumeVoted(st, t)
	case model.StopOrder, model.SISBypass:
		return e.assumeViolation(st, t)
	}
	return false
}

func assume(c *cond, rs *model.SensorRules, kinds *[numStages]model.LimitKind, t model.Transition) bool {
	if !t.Active {
		*c = newCond()
		return true
	}
	// The limit's value names the stage exactly; the level is the fallback
	// when the limit was edited since.
	for _, exact := range []bool{true, false} {
		for s := int8(numStages - 1); s >= 1; s-- {
			l := rs.Limits[kinds[s]]
			if !l.Set {
				continue
			}
			if (exact && l.Value == t.Limit) || (!exact && levelOf(l, kinds[s]) == t.Level) {
				*c = newCond()
				c.stage = s
				return true
			}
		}
	}
	return false
}

func levelOf(l model.Limit, k model.LimitKind) model.AlarmLevel {
	if l.Level != model.NoLevel {
		return l.Level
	}
	return k.DefaultLevel()
}

// raw is the stage the value stands at, with hysteresis: a stage at or
// below the committed one (stage) is left only when the value is past its
// limit by the deadband (below limit − deadband for high, above limit +
// deadband for low). A limit is crossed when the value reaches it (GB/T
// 50493: 达到报警设定值).
func raw(stage int8, rs *model.SensorRules, kinds *[numStages]model.LimitKind, high bool, v float64) int8 {
	for s := int8(numStages - 1); s >= 1; s-- {
		l := rs.Limits[kinds[s]]
		if !l.Set {
			continue
		}
		thr := l.Value
		if high {
			if stage >= s {
				thr -= rs.Deadband
			}
			if v >= thr {
				return s
			}
		} else {
			if stage >= s {
				thr += rs.Deadband
			}
			if v <= thr {
				return s
			}
		}
	}
	return 0
}

// step advances one direction of one sensor by one reading.
//
// A rise (to a higher stage) waits for the on-delay: the reading's TS minus
// the start of the run at or past that stage. A fall (a return, or HH back
// to H) waits for the off-delay the same way. The highest stage whose delay
// has passed wins, so a sustained jump straight past HH raises once at L2.
func step(c *cond, rs *model.SensorRules, kinds *[numStages]model.LimitKind, high bool, r model.Reading, out []model.Transition) []model.Transition {
	now := raw(c.stage, rs, kinds, high, r.Value)
	ts := r.TS
	for s := int8(1); s < numStages; s++ {
		if now >= s {
			c.below[s] = never
			if c.above[s] == never {
				c.above[s] = ts
			}
		} else {
			c.above[s] = never
			if c.below[s] == never {
				c.below[s] = ts
			}
		}
	}
	next := c.stage
	for s := int8(numStages - 1); s > c.stage; s-- {
		if rs.Limits[kinds[s]].Set && c.above[s] != never && ts-c.above[s] >= rs.OnDelayMS {
			next = s
			break
		}
	}
	if next == c.stage && now < c.stage {
		for s := c.stage; s >= 1; s-- {
			if !rs.Limits[kinds[s]].Set || (c.below[s] != never && ts-c.below[s] >= rs.OffDelayMS) {
				next = s - 1
				continue
			}
			break
		}
	}
	if next == c.stage {
		return out
	}
	rule := model.ThresholdHigh
	if !high {
		rule = model.ThresholdLow
	}
	t := model.Transition{Sensor: r.SensorIdx, Rule: rule, Class: model.ClassAlarm, Value: r.Value, TS: ts, Late: r.Late}
	if next > 0 {
		l := rs.Limits[kinds[next]]
		t.Active, t.Level, t.Limit = true, levelOf(l, kinds[next]), l.Value
	} else {
		// A return names the level that ended and the outermost limit,
		// the one the value is now back inside of.
		t.Level = levelOf(rs.Limits[kinds[c.stage]], kinds[c.stage])
		for s := int8(1); s < numStages; s++ {
			if l := rs.Limits[kinds[s]]; l.Set {
				t.Limit = l.Value
				break
			}
		}
	}
	c.stage = next
	return append(out, t)
}
