package rules

import (
	"testing"

	"hazardwatch/internal/model"
)

// readingsOf turns fuzz bytes into readings of one sensor, three bytes a
// reading: the step in time (0–1.75 s; 0 repeats a time, so out-of-order
// readings come too), the value (−2 to 28 around a range of 0–25), and
// flags: quality, late, no value, reason.
func readingsOf(data []byte) []model.Reading {
	var rs []model.Reading
	ts := int64(1_000_000)
	reasons := [4]model.QualityReason{model.ReasonNone, model.ReasonOutOfRange, model.ReasonDeviceFault, model.ReasonTimeout}
	for i := 0; i+2 < len(data); i += 3 {
		ts += int64(data[i]%8) * 250
		flags := data[i+2]
		r := model.Reading{
			TS: ts, Value: float64(data[i+1])/255*30 - 2, HasValue: flags&8 == 0,
			Quality: [4]model.Quality{model.Good, model.Uncertain, model.Bad, model.Good}[flags&3],
			Late:    flags&4 != 0, Reason: reasons[flags>>4&3],
		}
		if !r.HasValue {
			r.Value = 0
		}
		rs = append(rs, r)
	}
	return rs
}

// bytesOf is readingsOf backwards, for seeds.
func bytesOf(rs []model.Reading) []byte {
	var b []byte
	for _, r := range rs {
		v := (r.Value + 2) / 30 * 255
		b = append(b, 4, byte(min(max(v+0.5, 0), 255)), byte(r.Quality)|map[bool]byte{true: 8}[!r.HasValue]|
			map[model.QualityReason]byte{model.ReasonOutOfRange: 1 << 4, model.ReasonDeviceFault: 2 << 4, model.ReasonTimeout: 3 << 4}[r.Reason])
	}
	return b
}

// FuzzEval: for any sequence of readings of a sensor with every rule, the
// transitions of each rule alternate raise and return (a threshold may
// change level while raised); a threshold is never raised short of its
// limit nor returned inside the deadband; a rate, never raised under its
// limit nor returned inside its deadband; a transition carries its
// reading's time and late mark, an ETA only when it raises a prediction,
// and the class of its rule; the value's rules never act on a bad reading.
func FuzzEval(f *testing.F) {
	f.Add(bytesOf(trip()))
	f.Add(bytesOf(append(trip(), trip()...)))
	f.Add([]byte{0, 200, 0, 0, 10, 0, 4, 250, 2, 4, 250, 18, 0, 100, 12, 4, 120, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, rs := oneSensor(allRules)
		p.Sensors[0].RangeMin, p.Sensors[0].RangeMax = 0, 25
		rules := &rs[0]
		e := New(p, rs, nil)
		var last [model.NumRuleKinds]model.Transition
		var seen [model.NumRuleKinds]bool
		var out []model.Transition
		for _, r := range readingsOf(data) {
			out = e.Eval(r, out[:0])
			for i := range out {
				tr := out[i]
				bad := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("reading %+v gave %+v: "+format, append([]any{r, tr}, args...)...)
				}
				if tr.TS != r.TS || tr.Late != r.Late || tr.Sensor != 0 {
					bad("not the reading's time, late mark or sensor")
				}
				if (tr.ETA != 0) != (tr.Active && (tr.Rule == model.PredictHigh || tr.Rule == model.PredictLow)) || tr.ETA != 0 && tr.ETA < tr.TS {
					bad("ETA")
				}
				want := map[model.RuleKind]model.AlarmClass{
					model.ThresholdHigh: model.ClassAlarm, model.ThresholdLow: model.ClassAlarm,
					model.RateRise: model.ClassPrewarning, model.RateFall: model.ClassPrewarning,
					model.PredictHigh: model.ClassPrewarning, model.PredictLow: model.ClassPrewarning,
					model.Frozen: model.ClassFault, model.OutOfRange: model.ClassFault, model.BadQuality: model.ClassFault,
				}[tr.Rule]
				if tr.Class != want {
					bad("class %s, want %s", tr.Class, want)
				}
				raised, prev := seen[tr.Rule] && last[tr.Rule].Active, last[tr.Rule]
				switch {
				case tr.Active && raised && !(tr.Rule <= model.ThresholdLow && tr.Level != prev.Level):
					bad("raised twice: %+v before", prev)
				case !tr.Active && !raised:
					bad("a return of what was not raised")
				}
				last[tr.Rule], seen[tr.Rule] = tr, true
				valueRule := tr.Rule != model.OutOfRange && tr.Rule != model.BadQuality
				if valueRule && (r.Quality == model.Bad || !r.HasValue) {
					bad("a rule of the value acted on a bad reading")
				}
				v, h, hh, l, ll, db := r.Value, rules.Limits[model.H].Value, rules.Limits[model.HH].Value,
					rules.Limits[model.L].Value, rules.Limits[model.LL].Value, rules.Deadband
				switch tr.Rule {
				case model.ThresholdHigh:
					switch {
					case tr.Active && tr.Level == model.L1 && !(!raised && v >= h || raised && v >= h-db && v < hh-db):
						bad("H raised, or HH left, at %g", v)
					case tr.Active && tr.Level == model.L2 && v < hh:
						bad("HH raised at %g", v)
					case !tr.Active && v >= h-db:
						bad("returned inside the deadband at %g", v)
					}
				case model.ThresholdLow:
					switch {
					case tr.Active && tr.Level == model.L1 && !(!raised && v <= l || raised && v <= l+db && v > ll+db):
						bad("L raised, or LL left, at %g", v)
					case tr.Active && tr.Level == model.L2 && v > ll:
						bad("LL raised at %g", v)
					case !tr.Active && v <= l+db:
						bad("returned inside the deadband at %g", v)
					}
				case model.RateRise, model.RateFall:
					if tr.Active && tr.Value < tr.Limit || !tr.Active && tr.Value >= tr.Limit-rules.Rate.Deadband {
						bad("rate %g against its limit %g", tr.Value, tr.Limit)
					}
				case model.PredictHigh:
					if tr.Active && v >= tr.Limit {
						bad("predicted a limit already reached")
					}
				case model.PredictLow:
					if tr.Active && v <= tr.Limit {
						bad("predicted a limit already reached")
					}
				case model.OutOfRange:
					marked := r.Quality == model.Bad && (r.Reason == model.ReasonOutOfRange || r.Reason == model.ReasonDeviceFault)
					outside := r.HasValue && (v < 0 || v > 25)
					if tr.Active && !marked && !(outside && r.Quality != model.Bad) || !tr.Active && (outside || r.Quality == model.Bad) {
						bad("out of range")
					}
				case model.BadQuality:
					if tr.Active != (r.Quality == model.Bad) {
						bad("bad quality")
					}
				}
			}
		}
	})
}
