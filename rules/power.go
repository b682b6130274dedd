package rules

import "hazardwatch/internal/model"

// Stop-order power (停产整顿电力监测): a power sensor of an enterprise whose
// status is stop_ordered raises a `violation` (rule stop_order_power) when
// its reading stays above the idle baseline × (1 + margin) for the delay,
// and returns it once a reading is below baseline × (1 + margin/2): half
// the margin is the hysteresis, so power hovering at the limit does not
// chatter. Value is the power drawn, Limit the baseline, both in kW.
//
// # The baseline
//
// The enterprise's idle_power_kw when the plant file gives it. Otherwise it
// is learned from the sensor's own readings during the first `learn` of
// readings (1 h by default), while nothing is raised: the mean of the
// readings admitted so far for the first 20 of them, then an exponentially
// weighted mean with weight 1/20. A reading is admitted only when it is at
// or below the current baseline × (1 + margin), so once the idle draw is
// known a burst of production during the learning period does not enter
// it; a reading below baseline / (1 + margin) starts the mean again from
// itself, so readings taken while the plant was still running down (or a
// first reading that was high) are dropped as soon as it idles. The result
// leans to the low end of what was seen, which is what an idle baseline
// is. After the learning period the
// baseline is frozen: a baseline that kept learning from readings under its
// own cap could creep up by up to the margin at a time, which is exactly
// how a plant restarting slowly would hide. Two numbers of state and no
// window, so it costs nothing to keep for every power sensor. What it
// cannot see is a plant that produces for the whole learning period; the
// configured idle_power_kw is the answer to that. A learned baseline is not
// kept across a restart of the centre, except through an active violation
// seeded by Assume, whose Limit carries it.

// learnWeight is the weight of a new reading in the learned baseline once
// 1/learnWeight readings have been admitted.
const learnWeight = 1.0 / 20

type powerState struct {
	baseline float64 // kW; configured, or learned so far
	admitted int32   // readings admitted into a learned baseline
	learning bool
	learnEnd int64 // when learning stops; never until the first reading
	active   bool
	since    int64 // first reading of the current run above the limit; never otherwise
}

func newPowerState(r *model.StopOrderRule) powerState {
	return powerState{baseline: r.BaselineKW, learning: r.BaselineKW <= 0, learnEnd: never, since: never}
}

// learn admits v into a learned baseline when it is at or below its cap.
func (ps *powerState) learn(v, margin float64) {
	if ps.admitted == 0 {
		ps.baseline, ps.admitted = v, 1
		return
	}
	if v > ps.baseline*(1+margin) {
		return
	}
	if v*(1+margin) < ps.baseline {
		// Far below: the readings so far were not idle. Start again here.
		ps.baseline, ps.admitted = v, 1
		return
	}
	if ps.admitted < 1<<30 {
		ps.admitted++
	}
	w := max(1/float64(ps.admitted), learnWeight)
	ps.baseline += w * (v - ps.baseline)
}

func evalPower(ps *powerState, rule *model.StopOrderRule, r model.Reading, out []model.Transition) []model.Transition {
	v, ts, margin := r.Value, r.TS, rule.MarginPct/100
	if ps.learning {
		if ps.learnEnd == never {
			ps.learnEnd = ts + rule.LearnMS
		}
		if ts < ps.learnEnd {
			ps.learn(v, margin)
			return out
		}
		ps.learning = false
	}
	if !ps.active {
		if v <= ps.baseline*(1+margin) {
			ps.since = never
			return out
		}
		if ps.since == never {
			ps.since = ts
		}
		if ts-ps.since < rule.DelayMS {
			return out
		}
		ps.active = true
	} else {
		if v >= ps.baseline*(1+margin/2) {
			return out
		}
		ps.active, ps.since = false, never
	}
	return append(out, model.Transition{
		Sensor: r.SensorIdx, Rule: model.StopOrder, Class: model.ClassViolation, Active: ps.active,
		Value: v, Limit: ps.baseline, TS: ts, Late: r.Late,
	})
}

// assumePower seeds the violation. A raised one whose baseline was being
// learned takes the baseline it was raised against (its Limit) and stops
// learning, so that it can return.
func assumePower(ps *powerState, t model.Transition) bool {
	ps.active, ps.since = t.Active, never
	if t.Active && ps.learning && t.Limit > 0 {
		ps.baseline, ps.learning = t.Limit, false
	}
	return true
}
