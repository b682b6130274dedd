package alerting

import (
	"fmt"
	"strings"
	"time"

	"hazardwatch/internal/model"
)

// The escalation ladder (包保责任 / 源长制) and the feedback limit, as
// part of the pure state machine: Next keeps Alarm.Escalation and
// Alarm.FeedbackDue up to date after every event, and the Manager's timers
// come back as OpEscalate and OpFeedbackDue events with the time they
// were due.
//
// The ladder runs while the alarm is shown unacknowledged (unack_active or
// unack_rtn, no hold on). The first time in an occurrence it starts at the
// enterprise step, whose people the raise notifies, and the feedback limit
// starts with it. Its steps count from the start of the run: the park at
// Policy.Escalation[priority].Park, the county at .County; between steps
// the step reached is reminded every .Remind. An acknowledgement or a hold
// stops the run; when the alarm is shown unacknowledged again (a level
// going up, a shelf's timer) a new run starts from the step reached, its
// later steps as far apart as the limits say. Times are the centre's
// clock, never a reading's: late data never starts a timer in the past.

// stepOffset is how long after the ladder's start step s falls due, and
// whether it is on.
func stepOffset(l model.EscalationLimits, s model.EscalationStep) (time.Duration, bool) {
	switch s {
	case model.StepEnterprise:
		return 0, true
	case model.StepPark:
		return l.Park, l.Park > 0
	case model.StepCounty:
		return l.County, l.County > 0
	}
	return 0, false
}

// nextStep is the first step above the one reached that is on, and when
// it falls due in the current run.
func nextStep(e Escalation, l model.EscalationLimits) (model.EscalationStep, time.Time, bool) {
	from, _ := stepOffset(l, e.From)
	for s := e.Step + 1; s < model.NumEscalationSteps; s++ {
		if off, on := stepOffset(l, s); on && off > from {
			return s, e.Since.Add(off - from), true
		}
	}
	return 0, time.Time{}, false
}

// nextDue is when the run's next step or reminder falls due: zero when
// nothing is left. Reminders that a stopped centre missed are not made up
// one by one: the next is the first after now.
func nextDue(e Escalation, l model.EscalationLimits, now time.Time) (time.Time, int) {
	_, due, ok := nextStep(e, l)
	if l.Remind <= 0 {
		return due, e.Reminders
	}
	from, _ := stepOffset(l, e.From)
	cur, _ := stepOffset(l, e.Step)
	base := e.Since.Add(max(cur-from, 0))
	n := e.Reminders
	r := base.Add(time.Duration(n+1) * l.Remind)
	if behind := now.Sub(r); behind > 0 {
		skip := int(behind/l.Remind) + 1
		n += skip
		r = r.Add(time.Duration(skip) * l.Remind)
	}
	if !ok || r.Before(due) {
		return r, n
	}
	return due, e.Reminders
}

// ladder starts, stops or re-times the escalation after an event and
// returns the people the event notifies: the step reached when it rings.
func ladder(a *Alarm, prev Alarm, now time.Time, ring bool, pol Policy) []Contact {
	e := &a.Escalation
	owed := !a.Held() && (a.State == model.StateUnackActive || a.State == model.StateUnackRTN)
	lim := pol.Escalation[min(max(a.Priority, 0), 4)]
	switch {
	case owed && !e.Running():
		if e.Started.IsZero() {
			e.Started, e.Step = now, model.StepEnterprise
			if lim.Feedback > 0 && !a.Feedback.Given() {
				a.FeedbackDue = now.Add(lim.Feedback)
			}
		}
		e.Since, e.From, e.Reminders = now, e.Step, 0
		e.DueAt, _ = nextDue(*e, lim, now)
	case !owed && e.Running():
		e.Since, e.DueAt, e.Reminders = time.Time{}, time.Time{}, 0
	case owed && a.Priority != prev.Priority:
		// A higher level: the limits of its priority, from the same start.
		e.DueAt, e.Reminders = nextDue(Escalation{Step: e.Step, From: e.From, Since: e.Since}, lim, now)
		if d := a.FeedbackDue; !d.IsZero() && lim.Feedback > 0 && e.Started.Add(lim.Feedback).Before(d) {
			a.FeedbackDue = e.Started.Add(lim.Feedback)
		}
	}
	if ring && e.Running() {
		e.Notified = pol.Contacts[e.Step]
		return e.Notified
	}
	return nil
}

// escalate handles the ladder's timer, due at ev.Due: the next step when
// it is the one due then, else a reminder of the step reached. A timer
// whose due time is no longer the alarm's (acknowledged since, re-timed)
// or that comes early does nothing.
func escalate(a *Alarm, ev Event, now time.Time, pol Policy) (Name, []Contact) {
	e := &a.Escalation
	if !e.Running() || !e.DueAt.Equal(ev.Due) || now.Before(ev.Due) {
		return NameNone, nil
	}
	lim := pol.Escalation[min(max(a.Priority, 0), 4)]
	name := Reminded
	switch s, due, ok := nextStep(*e, lim); {
	case ok && !due.After(ev.Due):
		e.Step, e.Reminders, name = s, 0, Escalated
	case lim.Remind > 0:
		e.Reminders++
	default:
		return NameNone, nil // the limits were edited since it was timed
	}
	e.Notified = pol.Contacts[e.Step]
	e.DueAt, e.Reminders = nextDue(*e, lim, now)
	if !e.DueAt.After(ev.Due) {
		e.DueAt = time.Time{} // limits edited to nothing later: stop rather than loop
	}
	return name, e.Notified
}

// feedbackDue handles the feedback limit's timer: the park and the county
// are told that the enterprise has not reported its handling.
func feedbackDue(a *Alarm, ev Event, now time.Time, pol Policy) (Name, []Contact) {
	if a.Feedback.Given() || a.FeedbackOverdue || !a.FeedbackDue.Equal(ev.Due) || now.Before(ev.Due) {
		return NameNone, nil
	}
	a.FeedbackOverdue = true
	n := append(append([]Contact(nil), pol.Contacts[model.StepPark]...), pol.Contacts[model.StepCounty]...)
	return FeedbackOverdue, n
}

// feedback records the enterprise's handling report. It needs the alarm
// acknowledged (or ended): feedback is what was done about an alarm
// someone saw. It is given once.
func feedback(a *Alarm, prev Alarm, ev Event, now time.Time) (Name, error) {
	switch {
	case ev.User == "" || strings.TrimSpace(ev.Cause) == "" || strings.TrimSpace(ev.Action) == "":
		return NameNone, fmt.Errorf("%w: feedback needs a user, a cause and an action", ErrInvalid)
	case a.Feedback.Given():
		return NameNone, fmt.Errorf("%w: %s has its feedback already (%s, %s)", ErrFeedbackGiven, prev.ID,
			a.Feedback.By, a.Feedback.At.Format(time.RFC3339))
	case a.State == model.StateUnackActive || a.State == model.StateUnackRTN:
		return NameNone, fmt.Errorf("%w: %s is %s: acknowledge it first", ErrWrongState, prev.ID, describe(prev))
	}
	a.Feedback = Feedback{At: now, By: ev.User, Cause: ev.Cause, Action: ev.Action}
	return FeedbackGiven, nil
}
