package sim

import (
	"math"
)

// Values are a pure function of (sensor, seconds since the epoch): baseline
// or followed value, then the episode active at that point of the cycle,
// then noise, then the instrument's range. Nothing is stored between
// requests, so an injected clock gives exact, repeatable values and a
// device nobody polls costs nothing.

// knot is the spacing of the noise's random points, in seconds. Between
// knots the noise is interpolated smoothly, so that 1 s polls see a signal
// that wanders, as a real transmitter's does, rather than white jitter.
const knot = 2.0

// noise returns a value in [-1, 1], smooth in t, fixed by seed and sensor.
func noise(seed int64, sensor int32, t float64) float64 {
	k := math.Floor(t / knot)
	f := t/knot - k
	a := hashUnit(seed, sensor, int64(k))
	b := hashUnit(seed, sensor, int64(k)+1)
	w := (1 - math.Cos(math.Pi*f)) / 2
	return a + (b-a)*w
}

// hashUnit maps (seed, sensor, k) to [-1, 1] with splitmix64: no state,
// no lock, no allocation, the same answer for the same question.
func hashUnit(seed int64, sensor int32, k int64) float64 {
	x := uint64(seed) ^ uint64(sensor)*0x9E3779B97F4A7C15 ^ uint64(k)*0xC2B2AE3D27D4EB4F
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11)/(1<<53)*2 - 1
}

// phase is where t (seconds since the epoch) falls in the cycle.
func (sc *Scenario) phase(t float64) float64 {
	if sc == nil || sc.cycle <= 0 {
		return t
	}
	p := math.Mod(t, sc.cycle)
	if p < 0 {
		p += sc.cycle
	}
	return p
}

// rampFrac is how far a ramp is from the value beneath it (0) to its peak
// (1), x seconds after its start.
func (e *episode) rampFrac(x float64) float64 {
	switch {
	case x < 0:
		return 0
	case x < e.rise:
		return x / e.rise
	case x < e.rise+e.hold:
		return 1
	case x < e.rise+e.hold+e.fall:
		return 1 - (x-e.rise-e.hold)/e.fall
	}
	return 0
}

// rampArea is ∫₀ˣ rampFrac, in seconds: the closed form lets an energy
// counter integrate its power meter exactly at any instant.
func (e *episode) rampArea(x float64) float64 {
	r, h, f := e.rise, e.hold, e.fall
	switch {
	case x <= 0:
		return 0
	case x < r:
		return x * x / (2 * r)
	case x < r+h:
		return r/2 + (x - r)
	case x < r+h+f:
		y := x - r - h
		return r/2 + h + y - y*y/(2*f)
	}
	return r/2 + h + f/2
}

// active returns the episode of plan in force at phase p, or nil.
func (plan *sensorPlan) active(p float64) *episode {
	for i := range plan.episodes {
		e := &plan.episodes[i]
		if p >= e.start && p < e.end {
			return e
		}
		if e.start > p {
			break
		}
	}
	return nil
}

// value is what the scenario says sensor i reads t seconds after the
// epoch, before its own pin. A followed sensor's pin counts, so that a test
// that pins a power meter sees its current follow.
func (s *Simulator) value(i int32, t float64) float64 {
	return s.valueAt(i, t, s.sc.phase(t), true)
}

// valueAt is the value at t, whose place in the cycle is p. With holds
// false, hold episodes are ignored: a hold without a value freezes what
// the sensor showed when it began, computed that way, so the recursion is
// one level deep whatever the episodes (and p is passed, not recomputed,
// so rounding cannot land in a neighbouring episode).
func (s *Simulator) valueAt(i int32, t, p float64, holds bool) float64 {
	plan := &s.plans[i]
	sen := &s.plant.Sensors[i]
	u := plan.baseline
	switch {
	case plan.follows >= 0:
		if v, ok := s.pinned(plan.follows); ok {
			u = plan.gain * v
		} else {
			u = plan.gain * s.underlying(plan.follows, p)
		}
	case plan.integrates >= 0:
		u = plan.baseline + s.integral(plan.integrates, t)/3600 // kW·s → kWh
	}
	if e := plan.active(p); e != nil {
		switch {
		case e.typ == epHold && holds && e.hasValue:
			return e.value // a fault value may lie outside the range: no clamp
		case e.typ == epHold && holds:
			return s.valueAt(i, t-(p-e.start), e.start, false)
		case e.typ == epRamp:
			u += (e.peak - u) * e.rampFrac(p-e.start)
		}
	}
	if plan.noise > 0 {
		u += plan.noise * noise(s.seed, i, t)
	}
	return math.Max(sen.RangeMin, math.Min(sen.RangeMax, u))
}

// underlying is sensor i's noise-free value at phase p: what a follower
// scales and a counter integrates. Only plain sensors are followed (the
// loader refuses chains), so this does not recurse.
func (s *Simulator) underlying(i int32, p float64) float64 {
	plan := &s.plans[i]
	u := plan.baseline
	if e := plan.active(p); e != nil {
		switch e.typ {
		case epHold:
			if e.hasValue {
				return e.value
			}
		case epRamp:
			u += (e.peak - u) * e.rampFrac(p-e.start)
		}
	}
	return u
}

// integral is ∫₀ᵗ underlying(i) dτ in unit·s, exact for the piecewise
// linear profile: whole cycles, then the part of the last one. A hold
// without a value counts as the baseline (its stuck value is noise-level
// off the baseline). Before the epoch the counter has not moved.
func (s *Simulator) integral(i int32, t float64) float64 {
	if t <= 0 {
		return 0
	}
	plan := &s.plans[i]
	if s.sc == nil || s.sc.cycle <= 0 {
		return plan.baseline * t
	}
	cycles := math.Floor(t / s.sc.cycle)
	part := t - cycles*s.sc.cycle
	sum := plan.baseline * t
	for j := range plan.episodes {
		e := &plan.episodes[j]
		switch e.typ {
		case epRamp:
			d := e.peak - plan.baseline
			sum += d * (cycles*e.rampArea(e.end-e.start) + e.rampArea(part-e.start))
		case epHold:
			if e.hasValue {
				d := e.value - plan.baseline
				sum += d * (cycles*(e.end-e.start) + math.Max(0, math.Min(part, e.end)-e.start))
			}
		}
	}
	return sum
}
