package rules

import "hazardwatch/internal/model"

// SIS bypass (旁路): an SIS or emergency shut-off state sensor (kind sis:
// 0 normal, 1 bypassed, 2 tripped) of a level 1 or 2 hazard source raises
// a `violation` (rule sis_bypass) when it reads 1 for the on-delay, and
// returns it at the first reading of 0 or 2: a tripped SIS is doing its
// job, and its own consequences are the process alarms'. Value is the
// state, Limit the hazard source's level. The config decides which
// sensors have the rule (internal/config, SISBypassRule).

type sisState struct {
	active bool
	since  int64 // first reading of the current bypass; never otherwise
}

// bypassed reports whether a state reading means bypassed; the states are
// small integers, the tolerance covers a scaled register.
func bypassed(v float64) bool { return v > 0.5 && v < 1.5 }

func evalSIS(ss *sisState, rule *model.SISBypassRule, r model.Reading, out []model.Transition) []model.Transition {
	if !bypassed(r.Value) {
		ss.since = never
		if !ss.active {
			return out
		}
		ss.active = false
	} else {
		if ss.active {
			return out
		}
		if ss.since == never {
			ss.since = r.TS
		}
		if r.TS-ss.since < rule.OnDelayMS {
			return out
		}
		ss.active = true
	}
	return append(out, model.Transition{
		Sensor: r.SensorIdx, Rule: model.SISBypass, Class: model.ClassViolation, Active: ss.active,
		Value: r.Value, Limit: float64(rule.SourceLevel), TS: r.TS, Late: r.Late,
	})
}

// initViolations gives every sensor with a stop-order or SIS bypass rule
// its state in the side tables.
func (e *Engine) initViolations() {
	for i := range e.rules {
		rs, st := &e.rules[i], &e.st[i]
		if rs.StopOrder.On {
			st.power = int32(len(e.powers))
			e.powers = append(e.powers, newPowerState(&rs.StopOrder))
		}
		if rs.SISBypass.On {
			st.sis = int32(len(e.sises))
			e.sises = append(e.sises, sisState{since: never})
		}
	}
}

// violations applies a good reading of a value to the sensor's stop-order
// and SIS bypass rules.
func (e *Engine) violations(st *sensorState, rs *model.SensorRules, r model.Reading, out []model.Transition) []model.Transition {
	if st.power >= 0 {
		out = evalPower(&e.powers[st.power], &rs.StopOrder, r, out)
	}
	if st.sis >= 0 {
		out = evalSIS(&e.sises[st.sis], &rs.SISBypass, r, out)
	}
	return out
}

// assumeViolation seeds a stop-order or SIS bypass violation.
func (e *Engine) assumeViolation(st *sensorState, t model.Transition) bool {
	switch {
	case t.Rule == model.StopOrder && st.power >= 0:
		return assumePower(&e.powers[st.power], t)
	case t.Rule == model.SISBypass && st.sis >= 0:
		e.sises[st.sis] = sisState{active: t.Active, since: never}
		return true
	}
	return !t.Active
}
