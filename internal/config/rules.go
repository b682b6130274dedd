package config

import (
	"fmt"

	"hazardwatch/internal/model"
)

const defaultSilentPeriods = 5

// GB/T 50493-2019 §5.5 maxima for gas alarm set points, by level.
var gasMax = map[model.Kind][3]float64{
	model.GasCombustible: {model.L1: 25, model.L2: 50},   // %LEL
	model.GasToxic:       {model.L1: 100, model.L2: 200}, // %OEL
}

// compileRules merges built-in defaults, kind rules and sensor rules into
// one model.SensorRules per sensor, resolving %LEL and %OEL.
func (l *loader) compileRules(p *model.Plant) []model.SensorRules {
	kindRules := map[model.Kind]*ruleDoc{}
	sensorRules := map[int32]*ruleDoc{}
	for _, d := range l.rules {
		for i := range d.Kinds {
			r := &d.Kinds[i]
			k, ok := model.ParseKind(r.Key)
			if !ok {
				names := make([]string, 0)
				for _, k := range model.Kinds() {
					names = append(names, k.String())
				}
				l.errorf(&r.Key, "unknown sensor kind %q (known: %s)", r.Key, quoteAll(names))
				continue
			}
			if first, dup := kindRules[k]; dup {
				l.errorf(&r.Key, "rules for kind %s are already given at %s", k, where(l.at(&first.Key)))
				continue
			}
			kindRules[k] = r
		}
		for i := range d.Sensors {
			r := &d.Sensors[i]
			si, ok := p.SensorIndex(r.Key)
			if !ok {
				ids := make([]string, len(p.Sensors))
				for i, s := range p.Sensors {
					ids[i] = s.ID
				}
				if s := Suggest(r.Key, ids); s != "" {
					l.errorf(&r.Key, "no sensor %q (did you mean %s?)", r.Key, s)
				} else {
					l.errorf(&r.Key, "no sensor %q in the plant files", r.Key)
				}
				continue
			}
			if first, dup := sensorRules[si]; dup {
				l.errorf(&r.Key, "rules for sensor %s are already given at %s", r.Key, where(l.at(&first.Key)))
				continue
			}
			sensorRules[si] = r
		}
	}
	out := make([]model.SensorRules, len(p.Sensors))
	for si := range p.Sensors {
		out[si] = l.sensorRules(&p.Sensors[si], &l.sensorDocs[si].ID, kindRules[p.Sensors[si].Kind], sensorRules[int32(si)])
	}
	return out
}

func (l *loader) sensorRules(s *model.Sensor, at *string, layers ...*ruleDoc) model.SensorRules {
	rs := model.SensorRules{Latch: s.Kind.IsGas(), SilentPeriods: defaultSilentPeriods}
	var src [model.NumLimits]*limitSpec
	for _, r := range layers {
		if r == nil {
			continue
		}
		// A kind rule's error names the sensor it was applied to.
		who := ""
		if r.Key != s.ID {
			who = " (for sensor " + s.ID + ")"
		}
		if r.Limits != nil {
			for k, spec := range r.Limits.specs() {
				if !spec.Given {
					continue
				}
				if spec.Removed {
					rs.Limits[k], src[k] = model.Limit{}, nil
					continue
				}
				v, ok := l.resolve(spec, spec.Value, s, who)
				if !ok {
					continue
				}
				lvl := k.DefaultLevel()
				if spec.Level == "L1" {
					lvl = model.L1
				} else if spec.Level == "L2" {
					lvl = model.L2
				}
				rs.Limits[k], src[k] = model.Limit{Set: true, Value: v, Level: lvl}, spec
			}
		}
		if r.Deadband != nil {
			if v, ok := l.resolve(r.Deadband, *r.Deadband, s, who); ok {
				if v < 0 {
					l.errorf(r.Deadband, "must not be negative%s", who)
				}
				rs.Deadband = v
			}
		}
		if r.OnDelay != nil {
			rs.OnDelayMS = r.OnDelay.Milliseconds()
		}
		if r.OffDelay != nil {
			rs.OffDelayMS = r.OffDelay.Milliseconds()
		}
		if r.Latch != nil {
			rs.Latch = *r.Latch
		}
		if r.SilentPeriods != nil {
			if *r.SilentPeriods < 1 {
				l.errorf(r.SilentPeriods, "must be at least 1")
			} else {
				rs.SilentPeriods = *r.SilentPeriods
			}
		}
	}
	l.checkLimits(s, at, &rs, src)
	return rs
}

func (d *limitsDoc) specs() map[model.LimitKind]*limitSpec {
	return map[model.LimitKind]*limitSpec{model.HH: &d.HH, model.H: &d.H, model.L: &d.L, model.LL: &d.LL}
}

// resolve turns a quantity into the sensor's unit. at is where it was written.
func (l *loader) resolve(at any, q Quantity, s *model.Sensor, who string) (float64, bool) {
	switch q.Of {
	case "":
		return q.Value, true
	case "%LEL":
		if s.Kind != model.GasCombustible {
			l.errorf(at, "%%LEL applies to gas_combustible sensors, not %s%s", s.Kind, who)
			return 0, false
		}
		if s.Gas == nil {
			return 0, false // the sensor's gas error is reported already
		}
		return q.Value, true // combustible detectors report in %LEL
	case "%OEL":
		if s.Kind != model.GasToxic {
			l.errorf(at, "%%OEL applies to gas_toxic sensors, not %s%s", s.Kind, who)
			return 0, false
		}
		if s.Gas == nil {
			return 0, false
		}
		mg := q.Value / 100 * s.Gas.OELMgM3
		if s.Unit == "ppm" {
			return mg * s.Gas.PPMPerMgM3, true
		}
		return mg, true
	}
	return 0, false
}

// gasShare expresses v (in the sensor's unit) as %LEL or %OEL.
func gasShare(s *model.Sensor, v float64) float64 {
	if s.Kind == model.GasCombustible {
		return v
	}
	mg := v
	if s.Unit == "ppm" {
		mg = v / s.Gas.PPMPerMgM3
	}
	return mg / s.Gas.OELMgM3 * 100
}

func (l *loader) checkLimits(s *model.Sensor, at *string, rs *model.SensorRules, src [model.NumLimits]*limitSpec) {
	lim := &rs.Limits
	order := func(hi, lo model.LimitKind) {
		if lim[hi].Set && lim[lo].Set && lim[hi].Value <= lim[lo].Value {
			l.errorf(src[hi], "%s (%g) must be above %s (%g) for sensor %s", hi, lim[hi].Value, lo, lim[lo].Value, s.ID)
		}
	}
	order(model.HH, model.H)
	order(model.L, model.LL)
	order(model.H, model.L)
	order(model.HH, model.LL)
	maxima, isGas := gasMax[s.Kind]
	hasLimit := false
	for k := range model.NumLimits {
		if !lim[k].Set {
			continue
		}
		hasLimit = true
		if v := lim[k].Value; v < s.RangeMin || v > s.RangeMax {
			l.warnf(src[k], "%s %g %s lies outside the instrument range %g-%g of sensor %s: it can never be crossed", k, v, s.Unit, s.RangeMin, s.RangeMax, s.ID)
		}
		if !isGas || s.Gas == nil || !k.High() {
			continue
		}
		share := gasShare(s, lim[k].Value)
		unit := "%LEL"
		basis := fmt.Sprintf("LEL %g %%vol, %s", s.Gas.LELPctVol, s.Gas.LELBasis)
		if s.Kind == model.GasToxic {
			unit = "%OEL"
			basis = fmt.Sprintf("%s %g mg/m³", s.Gas.OELKind, s.Gas.OELMgM3)
		}
		if lvl := lim[k].Level; share > maxima[lvl]*(1+1e-9) {
			l.errorf(src[k], "%s = %.4g %s (%s of %s) is above GB/T 50493-2019 §5.5's %s maximum of %g %s for sensor %s",
				k, share, unit, basis, s.Gas.CAS, lvl, maxima[lvl], unit, s.ID)
		}
	}
	if s.Kind.IsGas() && !hasLimit {
		l.warnf(at, "gas detector %s has no alarm limits", s.ID)
	}
}
