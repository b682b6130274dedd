package rules

import "hazardwatch/internal/model"

// The sensor faults (class `fault`): a reading out of the instrument's
// range, bad readings in a row, a value frozen. Each ends when good
// readings return. They raise without delay and return on the first
// reading that shows the sensor healthy: a fault says that the sensor's
// readings cannot be trusted, and an operator should know it from the
// first reading that shows it.

// outOfRange judges a reading for the out_of_range fault: raised by a
// reading the gateway marked bad out_of_range or device_fault (the
// detector's own fault bit), or by one whose value lies outside the
// instrument's range although the gateway did not say so (a third-party
// gateway need not check ranges). It returns on a reading that is not bad
// and has a value inside the range; other bad readings (a timeout) change
// nothing.
func outOfRange(st *sensorState, r model.Reading, out []model.Transition) []model.Transition {
	marked := r.Quality == model.Bad && (r.Reason == model.ReasonOutOfRange || r.Reason == model.ReasonDeviceFault)
	valued := r.HasValue && r.Value == r.Value // not NaN
	outside := valued && st.checkRange && (r.Value < st.rangeLo || r.Value > st.rangeHi)
	switch {
	case !st.outOfRange && (marked || outside && r.Quality != model.Bad):
		st.outOfRange = true
		t := model.Transition{
			Sensor: r.SensorIdx, Rule: model.OutOfRange, Class: model.ClassFault, Active: true,
			TS: r.TS, Late: r.Late, Reason: model.ReasonOutOfRange,
		}
		if marked {
			t.Reason = r.Reason
		}
		if valued {
			t.Value = r.Value
			t.Limit = st.bound(r.Value)
		}
		return append(out, t)
	case st.outOfRange && valued && !outside && r.Quality != model.Bad:
		st.outOfRange = false
		return append(out, model.Transition{
			Sensor: r.SensorIdx, Rule: model.OutOfRange, Class: model.ClassFault,
			Value: r.Value, Limit: st.bound(r.Value), TS: r.TS, Late: r.Late,
		})
	}
	return out
}

// bound is the end of the range a value passed: the low end below it,
// else the high end (also for a value inside, which a fault bit marked or
// which returned).
func (st *sensorState) bound(v float64) float64 {
	if st.checkRange && v < st.rangeLo {
		return st.rangeLo
	}
	return st.rangeHi
}

// badQuality counts bad readings in a row and raises the bad_quality fault
// at st.badLimit (the rules' BadQuality) of them; a reading that is not bad ends the run and
// returns the fault. When the out_of_range rule is on, the readings it
// covers (bad out_of_range or device_fault) neither count nor end a run:
// that rule already raises their more precise fault, and one broken
// detector should not stand twice in the alarm list.
func badQuality(st *sensorState, r model.Reading, out []model.Transition) []model.Transition {
	if r.Quality != model.Bad {
		st.badRun = 0
		if !st.badActive {
			return out
		}
		st.badActive = false
		return append(out, model.Transition{
			Sensor: r.SensorIdx, Rule: model.BadQuality, Class: model.ClassFault,
			Value: r.Value, Limit: float64(st.badLimit), TS: r.TS, Late: r.Late,
		})
	}
	if st.oorOn && (r.Reason == model.ReasonOutOfRange || r.Reason == model.ReasonDeviceFault) {
		return out
	}
	if st.badRun < 1<<30 {
		st.badRun++
	}
	if st.badActive || st.badRun < st.badLimit {
		return out
	}
	st.badActive = true
	return append(out, model.Transition{
		Sensor: r.SensorIdx, Rule: model.BadQuality, Class: model.ClassFault, Active: true,
		Value: float64(st.badRun), Limit: float64(st.badLimit), TS: r.TS, Late: r.Late, Reason: r.Reason,
	})
}

// frozenState is one sensor's frozen check: the value of the current run
// and when the run began.
type frozenState struct {
	ref    float64
	since  int64 // never before the first reading
	active bool
}

// evalFrozen judges a reading with a value for the frozen fault: raised
// when every reading for fr.DurationMS has stayed within fr.Epsilon of the
// first of them, returned by the first reading that leaves it. Comparing
// with the run's first value, not the previous reading, means a slow drift
// is movement too once it adds up to more than epsilon.
func evalFrozen(s *frozenState, fr *model.FrozenRule, r model.Reading, out []model.Transition) []model.Transition {
	if s.since == never {
		// The first reading (or the first since Assume seeded a raised
		// fault, which the next change of value returns) starts a run.
		s.ref, s.since = r.Value, r.TS
		return out
	}
	if d := r.Value - s.ref; d <= fr.Epsilon && d >= -fr.Epsilon {
		if s.active || r.TS-s.since < fr.DurationMS {
			return out
		}
		s.active = true
		return append(out, model.Transition{
			Sensor: r.SensorIdx, Rule: model.Frozen, Class: model.ClassFault, Active: true,
			Value: r.Value, Limit: float64(fr.DurationMS) / 1000, TS: r.TS, Late: r.Late,
		})
	}
	s.ref, s.since = r.Value, r.TS
	if !s.active {
		return out
	}
	s.active = false
	return append(out, model.Transition{
		Sensor: r.SensorIdx, Rule: model.Frozen, Class: model.ClassFault,
		Value: r.Value, Limit: float64(fr.DurationMS) / 1000, TS: r.TS, Late: r.Late,
	})
}
