package config

import (
	"time"

	"hazardwatch/internal/model"
)

// maxChatterCount bounds alarms.chattering.count: an alarm keeps the times
// of that many raises of its condition.
const maxChatterCount = 10

// compileAlarms reads the alarms section (at most one over all rule files)
// over the defaults, checking each value where it stands. It warns when an
// escalation step has nobody to notify.
func (l *loader) compileAlarms() model.AlarmRules {
	r := model.DefaultAlarmRules()
	var doc *alarmsDoc
	for _, d := range l.rules {
		if d.Alarms == nil {
			continue
		}
		if doc != nil {
			l.errorf(d.Alarms, "the alarms section is already given at %s: give it once", where(l.at(doc)))
			continue
		}
		doc = d.Alarms
	}
	if doc != nil {
		if doc.MaxShelve != nil && !l.reported(doc.MaxShelve) {
			if *doc.MaxShelve <= 0 {
				l.errorf(doc.MaxShelve, "must be positive, not %s", *doc.MaxShelve)
			} else {
				r.MaxShelve = *doc.MaxShelve
			}
		}
		l.window(doc.Chattering, &r.Chatter, 2, maxChatterCount)
		l.window(doc.Flood, &r.Flood, 1, 1<<20)
		if doc.RateLimit != nil {
			l.window(doc.RateLimit.Sensor, &r.RateLimit.Sensor, 0, 1<<20)
			l.window(doc.RateLimit.Enterprise, &r.RateLimit.Enterprise, 0, 1<<20)
		}
		if e := doc.Escalation; e != nil {
			for prio, ld := range [...]*escalationLimitsDoc{1: e.P1, 2: e.P2, 3: e.P3, 4: e.P4} {
				if ld != nil {
					l.escalationLimits(ld, &r.Escalation[prio])
				}
			}
		}
	}
	l.warnNobodyOnDuty(&r)
	return r
}

// window overrides w with what d gives; a count of 0 turns the check off
// where min allows it.
func (l *loader) window(d *windowDoc, w *model.Window, min, max int) {
	if d == nil {
		return
	}
	if d.Count != nil {
		if *d.Count < min || *d.Count > max {
			l.errorf(d.Count, "must be from %d to %d, not %d", min, max, *d.Count)
		} else {
			w.Count = *d.Count
		}
	}
	if d.Window != nil && !l.reported(d.Window) {
		if *d.Window <= 0 {
			l.errorf(d.Window, "must be positive, not %s", *d.Window)
		} else {
			w.Window = *d.Window
		}
	}
}

func (l *loader) escalationLimits(d *escalationLimitsDoc, lim *model.EscalationLimits) {
	for _, f := range []struct {
		from *time.Duration
		to   *time.Duration
	}{{d.Park, &lim.Park}, {d.County, &lim.County}, {d.Remind, &lim.Remind}, {d.Feedback, &lim.Feedback}} {
		if f.from == nil || l.reported(f.from) {
			continue
		}
		if *f.from < 0 {
			l.errorf(f.from, "must not be negative (0s turns it off), not %s", *f.from)
			continue
		}
		*f.to = *f.from
	}
	if lim.Park > 0 && lim.County > 0 && lim.County <= lim.Park {
		at := any(d.County)
		if d.County == nil {
			at = d.Park
		}
		l.errorf(at, "the county is notified after the park: county (%s) must be longer than park (%s)", lim.County, lim.Park)
	}
}

// warnNobodyOnDuty warns, at the park or county in the plant files, about
// one that an escalation would reach with nobody to notify.
func (l *loader) warnNobodyOnDuty(r *model.AlarmRules) {
	var park, county bool
	for _, lim := range r.Escalation[1:] {
		park = park || lim.Park > 0
		county = county || lim.County > 0
	}
	for _, d := range l.plants {
		for i := range d.Parks {
			if pk := &d.Parks[i]; park && len(pk.Duty) == 0 {
				l.warnf(&pk.ID, "park %s has nobody on duty (duty:): escalations to its control room would notify nobody", pk.ID)
			}
		}
		for i := range d.Counties {
			if c := &d.Counties[i]; county && len(c.Duty) == 0 {
				l.warnf(&c.ID, "county %s has nobody on duty (duty:): escalations to its duty officer would notify nobody", c.ID)
			}
		}
	}
}
