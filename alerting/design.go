package alerting

import (
	"maps"
	"slices"
	"time"

	"hazardwatch/internal/model"
)

// Suppression by design (ISA-18.2): an enterprise whose status is
// suspended (停产/检修), or inside one of its planned maintenance windows
// (the plant files' enterprises[].maintenance), has its alarms suppressed:
// still recorded, never rung nor escalated, and what an episode that began
// and ended wholly inside is owed ends with it (see the package doc).
// Open alarms are suppressed when it starts and released when it ends, a
// new occurrence starts under it, and the Manager arms a timer for every
// window's start and end. Suppressions by design are the system's (no
// user); the Manager releases only those, never one an admin set by hand.

// dueHolds is a maintenance window's start or end: look at every open
// alarm's suppression again.
const dueHolds dueKind = numOps + 1

// holdOf is the suppression by design that holds for an alarm of src at
// now, or the zero Hold.
func (m *Manager) holdOf(src Source, now time.Time) Hold {
	p := m.o.Plant
	ei, ok := p.EnterpriseIndex(src.Enterprise)
	if !ok {
		return Hold{}
	}
	e := &p.Enterprises[ei]
	if e.Status == model.Suspended {
		return Hold{At: m.started, Reason: SuppressSuspended}
	}
	for _, w := range e.Maintenance {
		if !now.Before(w.From) && now.Before(w.To) {
			return Hold{At: w.From, Until: w.To, Reason: SuppressMaintenance}
		}
	}
	return Hold{}
}

// armHolds sets a timer at every maintenance window's start and end still
// to come.
func (m *Manager) armHolds(now time.Time) {
	for _, e := range m.o.Plant.Enterprises {
		for _, w := range e.Maintenance {
			for _, t := range []time.Time{w.From, w.To} {
				if t.After(now) {
					m.timers.push(t, "", dueHolds)
				}
			}
		}
	}
}

// syncHolds stages a suppression for every open alarm a suppression by
// design now covers, and its end for every one it no longer does.
func (m *Manager) syncHolds(now time.Time) {
	// In id order, so that the events come in the same order every time.
	for _, id := range slices.Sorted(maps.Keys(m.alarms)) {
		a, _ := m.alarm(id)
		if a.State == model.StateNormal {
			continue
		}
		want := m.holdOf(a.Source, now)
		var ev Event
		switch {
		case want.On() && !a.Suppression.On():
			ev = Event{Op: OpSuppress, Reason: want.Reason}
		case !want.On() && a.Suppression.On() && a.Suppression.By == "":
			ev = Event{Op: OpUnsuppress}
		default:
			continue
		}
		if err := m.stage(a, ev, m.policyOf(a)); err != nil {
			m.log.Error("suppression by design not applied", "alarm", id, "op", ev.Op, "err", err)
		}
	}
}
