package alerting

import (
	"context"
	"fmt"
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

// dueService is an instrument's out-of-service period ending (id is the
// sensor): its alarms return to service.
const dueService dueKind = numOps + 2

// holdOf is the suppression by design that holds for an alarm of src at
// now, or the zero Hold. An admin's status (the Manager's Design) wins
// over the plant file's while it is in force.
func (m *Manager) holdOf(src Source, now time.Time) Hold {
	p := m.o.Plant
	ei, ok := p.EnterpriseIndex(src.Enterprise)
	if !ok {
		return Hold{}
	}
	e := &p.Enterprises[ei]
	if st, set := m.design.StatusOf(p, ei, now); st.Status == model.Suspended {
		if set {
			return Hold{At: st.At, Until: st.Until, Reason: SuppressSuspended}
		}
		return Hold{At: m.started, Reason: SuppressSuspended}
	}
	for _, w := range e.Maintenance {
		if !now.Before(w.From) && now.Before(w.To) {
			return Hold{At: w.From, Until: w.To, Reason: SuppressMaintenance}
		}
	}
	return Hold{}
}

// serviceOf is the out-of-service hold of an alarm of src at now: its
// sensor is out of service by the Manager's Design.
func (m *Manager) serviceOf(src Source, now time.Time) Hold {
	if src.Sensor == "" {
		return Hold{}
	}
	h, ok := m.design.OutOfServiceAt(src.Sensor, now)
	if !ok {
		return Hold{}
	}
	return Hold{At: h.Since, Until: h.Until, By: h.By, Reason: h.Reason}
}

// armHolds sets a timer at every maintenance window's start and end still
// to come, and at the end of every status and out-of-service period of
// the Design.
func (m *Manager) armHolds(now time.Time) {
	m.armDesign(now)
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

// armDesign sets a timer at the end of every status and out-of-service
// period of the Design.
func (m *Manager) armDesign(now time.Time) {
	for _, s := range m.design.Status {
		if s.Until.After(now) {
			m.timers.push(s.Until, "", dueHolds)
		}
	}
	for id, h := range m.design.OutOfService {
		if h.Until.After(now) {
			m.timers.push(h.Until, id, dueService)
		}
	}
}

// syncHolds stages a suppression for every open alarm a suppression by
// design now covers, and its end for every one it no longer does. The
// alarms of the sensors in service (a set, nil for none) are taken out of
// service or returned to it by the Design as well, returned by user: only
// those, so that an alarm taken out of service by other means stays so.
func (m *Manager) syncHolds(now time.Time, service map[string]bool, user string) {
	// In id order, so that the events come in the same order every time.
	for _, id := range slices.Sorted(maps.Keys(m.alarms)) {
		a, _ := m.alarm(id)
		if a.State == model.StateNormal && !a.Held() {
			continue
		}
		var evs []Event
		if a.State != model.StateNormal {
			want := m.holdOf(a.Source, now)
			switch {
			case want.On() && !a.Suppression.On():
				evs = append(evs, Event{Op: OpSuppress, Reason: want.Reason})
			case !want.On() && a.Suppression.On() && a.Suppression.By == "":
				evs = append(evs, Event{Op: OpUnsuppress})
			}
		}
		if service[a.Source.Sensor] {
			want := m.serviceOf(a.Source, now)
			switch {
			case want.On() && !a.OutOfService.On() && a.State != model.StateNormal:
				evs = append(evs, Event{Op: OpRemoveFromService, User: want.By, Reason: want.Reason})
			case !want.On() && a.OutOfService.On():
				evs = append(evs, Event{Op: OpReturnToService, User: user})
			}
		}
		for _, ev := range evs {
			a, _ := m.alarm(id) // as the previous event left it
			if err := m.stage(a, ev, m.policyOf(a)); err != nil {
				m.log.Error("hold by design not applied", "alarm", id, "op", ev.Op, "err", err)
			}
		}
	}
}

// designReq is an admin's new Design, answered once its events are
// durable.
type designReq struct {
	ctx   context.Context
	d     model.Design
	user  string
	reply chan error
}

// SetDesign makes d the Manager's Design: enterprises suspended by it have
// their open alarms suppressed and new ones start so; alarms of sensors
// out of service by it are taken out of service (by the hold's By, with
// its reason) and new ones start so; what d no longer says is released,
// alarms returned to service recorded as by user. It returns once those
// events are durable. The caller keeps d durable itself (the Manager's
// log holds alarm events only) and hands it to New as Options.Design at
// the next start.
func (m *Manager) SetDesign(ctx context.Context, d model.Design, user string) error {
	if err := d.Check(m.o.Plant); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r := designReq{ctx: ctx, d: d.Clone(), user: user, reply: make(chan error, 1)}
	return ask(ctx, m, m.designs, r, r.reply)
}

// onDesign applies a new Design on the Run goroutine.
func (m *Manager) onDesign(r designReq) {
	if err := r.ctx.Err(); err != nil {
		m.b.replies = append(m.b.replies, reply{ch: r.reply, err: err})
		return
	}
	changed := map[string]bool{}
	for id, h := range m.design.OutOfService {
		if r.d.OutOfService[id] != h {
			changed[id] = true
		}
	}
	for id, h := range r.d.OutOfService {
		if m.design.OutOfService[id] != h {
			changed[id] = true
		}
	}
	now := m.clock()
	m.design = r.d
	m.armDesign(now)
	m.syncHolds(now, changed, r.user)
	m.b.replies = append(m.b.replies, reply{ch: r.reply})
}

// serviceSet is the sensors the Design has out of service.
func (m *Manager) serviceSet() map[string]bool {
	out := make(map[string]bool, len(m.design.OutOfService))
	for id := range m.design.OutOfService {
		out[id] = true
	}
	return out
}
