package config

import (
	"slices"
	"time"

	"hazardwatch/internal/model"
)

// Defaults of the violation rules (docs/CONFIG.md). DOMAIN.md names no
// figures: 20 % above idle is well clear of an idle plant's noise (lighting,
// ventilation, CCTV) and far below production draw; 5 min ignores a pump
// or a compressor started for maintenance.
const (
	defaultStopMarginPct = 20
	defaultStopDelay     = 5 * time.Minute
	defaultStopLearn     = time.Hour
	defaultBypassDelay   = 5 * time.Second
)

// compileViolations gives the stop-order power rule to every power sensor
// of a stop_ordered enterprise and the SIS bypass rule to every sis sensor
// of a level 1 or 2 hazard source, with the defaults, then the kind's
// entry, then the sensor's own. An entry elsewhere is refused (another
// kind) or warned about (a sensor it does not apply to).
func (l *loader) compileViolations(p *model.Plant, out []model.SensorRules, kinds map[model.Kind]*ruleDoc, sensors map[int32]*ruleDoc) {
	for _, k := range model.Kinds() {
		d := kinds[k]
		if d == nil {
			continue
		}
		if d.StopOrder != nil && k != model.Power {
			l.errorf(d.StopOrder, "stop_order applies to power sensors, not %s", k)
		}
		if d.SISBypass != nil && k != model.SIS {
			l.errorf(d.SISBypass, "sis_bypass applies to sis sensors, not %s", k)
		}
		// The kind's settings are checked even when no sensor of the kind
		// uses them yet (the errors of each sensor's use are the same ones,
		// and the loader reports each once).
		switch {
		case k == model.Power && d.StopOrder != nil:
			l.stopOrder(p, &model.Sensor{Kind: k, Enterprise: -1, HazardSource: -1}, d)
		case k == model.SIS && d.SISBypass != nil:
			l.sisBypass(p, &model.Sensor{Kind: k, Enterprise: -1, HazardSource: -1}, d)
		}
	}
	for si := range p.Sensors {
		s := &p.Sensors[si]
		own := sensors[int32(si)]
		switch s.Kind {
		case model.Power:
			out[si].StopOrder = l.stopOrder(p, s, kinds[s.Kind], own)
		case model.SIS:
			out[si].SISBypass = l.sisBypass(p, s, kinds[s.Kind], own)
		}
		if own == nil {
			continue
		}
		if own.StopOrder != nil && s.Kind != model.Power {
			l.errorf(own.StopOrder, "stop_order applies to power sensors; %s is %s", s.ID, s.Kind)
		}
		if own.SISBypass != nil && s.Kind != model.SIS {
			l.errorf(own.SISBypass, "sis_bypass applies to sis sensors; %s is %s", s.ID, s.Kind)
		}
	}
}

func (l *loader) stopOrder(p *model.Plant, s *model.Sensor, layers ...*ruleDoc) model.StopOrderRule {
	r := model.StopOrderRule{MarginPct: defaultStopMarginPct, DelayMS: defaultStopDelay.Milliseconds(), LearnMS: defaultStopLearn.Milliseconds()}
	var e *model.Enterprise
	if s.Enterprise >= 0 && int(s.Enterprise) < len(p.Enterprises) {
		e = &p.Enterprises[s.Enterprise]
	}
	applies := e != nil && e.Status == model.StopOrdered
	removed := false
	for i, d := range layers {
		if d == nil || d.StopOrder == nil {
			continue
		}
		so := d.StopOrder
		if so.Removed {
			removed = true
			continue
		}
		removed = false
		if i == 1 && !applies {
			l.warnf(so, "sensor %s's enterprise is not stop_ordered: stop_order has nothing to watch", s.ID)
		}
		if so.MarginPct != nil {
			if *so.MarginPct <= 0 {
				l.errorf(so.MarginPct, "must be more than 0 (per cent above the idle baseline)")
			} else {
				r.MarginPct = *so.MarginPct
			}
		}
		if so.Delay != nil {
			if *so.Delay < 0 {
				l.errorf(so.Delay, "must not be negative")
			} else {
				r.DelayMS = so.Delay.Milliseconds()
			}
		}
		if so.Learn != nil {
			if *so.Learn <= 0 {
				l.errorf(so.Learn, "must be more than 0s")
			} else {
				r.LearnMS = so.Learn.Milliseconds()
			}
		}
	}
	if e == nil {
		return model.StopOrderRule{}
	}
	// The settings are kept when the rule is off: an admin's stop order
	// (PUT /enterprises/{id}/status) turns it on at run time (WithStatus).
	r.On, r.Removed, r.BaselineKW = applies && !removed, removed, e.IdlePowerKW
	return r
}

// WithStatus returns rs with every power sensor's stop-order rule on
// exactly when status says its enterprise is stop_ordered, unless the
// rule files removed the rule; rs itself is not changed. The plant files
// give each enterprise's status at start; an admin changes it at run time.
func WithStatus(p *model.Plant, rs []model.SensorRules, status func(e int32) model.EnterpriseStatus) []model.SensorRules {
	out := slices.Clone(rs)
	for si := range out {
		s := &p.Sensors[si]
		so := &out[si].StopOrder
		if s.Kind != model.Power || s.Enterprise < 0 || so.Removed || (so.MarginPct == 0 && !so.On) {
			continue
		}
		so.On = status(s.Enterprise) == model.StopOrdered
	}
	return out
}

func (l *loader) sisBypass(p *model.Plant, s *model.Sensor, layers ...*ruleDoc) model.SISBypassRule {
	r := model.SISBypassRule{OnDelayMS: defaultBypassDelay.Milliseconds()}
	level := 0
	if s.HazardSource >= 0 && int(s.HazardSource) < len(p.HazardSources) {
		level = p.HazardSources[s.HazardSource].Level
	}
	applies := level == 1 || level == 2
	on := applies
	for i, d := range layers {
		if d == nil || d.SISBypass == nil {
			continue
		}
		sb := d.SISBypass
		if sb.Removed {
			on = false
			continue
		}
		on = applies
		if i == 1 && !applies {
			l.warnf(sb, "sensor %s is not on a level 1 or 2 hazard source: sis_bypass has nothing to watch", s.ID)
		}
		if sb.OnDelay != nil {
			if *sb.OnDelay < 0 {
				l.errorf(sb.OnDelay, "must not be negative")
			} else {
				r.OnDelayMS = sb.OnDelay.Milliseconds()
			}
		}
	}
	if !on {
		return model.SISBypassRule{}
	}
	r.On, r.SourceLevel = true, level
	return r
}
