package alerting

import (
	"errors"
	"slices"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// step applies ev at now and fails on a refusal.
func step(t *testing.T, a Alarm, ev Event, now time.Time, pol Policy) (Alarm, Change) {
	t.Helper()
	a, ch := Next(a, ev, now, pol)
	if ch.Err != nil {
		t.Fatalf("%s at %s: %v", ev.Op, now.Sub(t0), ch.Err)
	}
	return a, ch
}

func names(cs []Contact) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestNextEscalationLadder walks one unacknowledged alarm up the ladder:
// the raise notifies the enterprise, the park is due after 10 min, then
// reminders every 10 min, the county after 30; an acknowledgement stops
// it, a level going up starts it again from the step reached.
func TestNextEscalationLadder(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("normal", model.L1, false)
	a.Escalation, a.FeedbackDue = Escalation{}, time.Time{}

	a, ch := step(t, a, event("raise"), tNow, pol)
	if !ch.Ring || !slices.Equal(names(ch.Notified), []string{"张伟", "吴中控"}) {
		t.Fatalf("raise: ring=%v notified %v; want the enterprise", ch.Ring, names(ch.Notified))
	}
	e := a.Escalation
	if !e.Started.Equal(tNow) || !e.Since.Equal(tNow) || e.Step != model.StepEnterprise || !e.DueAt.Equal(tNow.Add(10*time.Minute)) {
		t.Fatalf("raise: escalation %+v", e)
	}
	if !a.FeedbackDue.Equal(tNow.Add(10 * time.Minute)) {
		t.Errorf("feedback due %v", a.FeedbackDue)
	}

	// The timers, each at its due time: park, reminder, reminder, county.
	want := []struct {
		at       time.Duration
		name     Name
		step     model.EscalationStep
		notified string
		next     time.Duration
	}{
		{10 * time.Minute, Escalated, model.StepPark, "周园区", 20 * time.Minute},
		{20 * time.Minute, Reminded, model.StepPark, "周园区", 30 * time.Minute},
		{30 * time.Minute, Escalated, model.StepCounty, "赵应急", 40 * time.Minute},
		{40 * time.Minute, Reminded, model.StepCounty, "赵应急", 50 * time.Minute},
	}
	for _, w := range want {
		due := a.Escalation.DueAt
		if !due.Equal(tNow.Add(w.at)) {
			t.Fatalf("due %v, want +%s", due.Sub(tNow), w.at)
		}
		// Early does nothing.
		if _, ch := Next(a, Event{Op: OpEscalate, Due: due}, due.Add(-time.Second), pol); ch.Name != NameNone {
			t.Fatalf("early timer: %s", ch.Name)
		}
		a, ch = step(t, a, Event{Op: OpEscalate, Due: due}, due, pol)
		if ch.Name != w.name || a.Escalation.Step != w.step || !slices.Equal(names(ch.Notified), []string{w.notified}) ||
			!a.Escalation.DueAt.Equal(tNow.Add(w.next)) {
			t.Fatalf("+%s: %s step %s notified %v next +%s; want %s %s %s +%s", w.at, ch.Name, a.Escalation.Step,
				names(ch.Notified), a.Escalation.DueAt.Sub(tNow), w.name, w.step, w.notified, w.next)
		}
	}

	// An acknowledgement stops the ladder; the step reached stays.
	ackAt := tNow.Add(45 * time.Minute)
	a, _ = step(t, a, event("ack"), ackAt, pol)
	if a.Escalation.Running() || !a.Escalation.DueAt.IsZero() || a.Escalation.Step != model.StepCounty {
		t.Fatalf("ack: %+v", a.Escalation)
	}
	if _, ch := Next(a, Event{Op: OpEscalate, Due: tNow.Add(50 * time.Minute)}, tNow.Add(50*time.Minute), pol); ch.Name != NameNone {
		t.Fatalf("a timer after the ack: %s", ch.Name)
	}
}

// TestNextEscalationRestartsFromStep: acknowledged at the park step, the
// alarm goes up to L2 and rings: the ladder runs again from the park, the
// county as far after it as the limits say (20 min), and the park is
// notified again.
func TestNextEscalationRestartsFromStep(t *testing.T) {
	pol := tablePolicy
	pol.Escalation[1].Remind = 0 // L2: priority 1, no reminders, to see the step alone
	a := startAlarm("unack_active", model.L1, false)
	a, _ = step(t, a, Event{Op: OpEscalate, Due: tNow}, tNow, pol)
	a, _ = step(t, a, event("ack"), tNow.Add(time.Minute), pol)
	up := tNow.Add(5 * time.Minute)
	a, ch := step(t, a, event("level_change"), up, pol)
	if !ch.Ring || a.State != model.StateUnackActive || !slices.Equal(names(ch.Notified), []string{"周园区"}) {
		t.Fatalf("level up: ring=%v %s notified %v", ch.Ring, a.State, names(ch.Notified))
	}
	if e := a.Escalation; e.From != model.StepPark || !e.Since.Equal(up) || !e.DueAt.Equal(up.Add(20*time.Minute)) {
		t.Fatalf("run again: from %s since %v due %v", e.From, e.Since.Sub(tNow), e.DueAt.Sub(tNow))
	}
}

// TestNextEscalationAfterDowntime: a centre down for an hour fires the
// overdue steps one by one with their own due times; the reminders it
// missed are not made up (the step's own notice has just gone out): the
// next is the first after now.
func TestNextEscalationAfterDowntime(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("unack_active", model.L1, false) // park due at tNow
	back := tNow.Add(time.Hour)
	var got []string
	for a.Escalation.DueAt.Before(back) || a.Escalation.DueAt.Equal(back) {
		due := a.Escalation.DueAt
		var ch Change
		a, ch = step(t, a, Event{Op: OpEscalate, Due: due}, back, pol)
		got = append(got, ch.Name.String()+"@+"+due.Sub(tNow).String())
	}
	// Park at +0 (its ladder started 10 min before tNow); the county at
	// +20m; its reminders at +30m … +60m are not made up: the next is +70m.
	want := []string{"escalated@+0s", "escalated@+20m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("fired %v, want %v", got, want)
	}
	if next := a.Escalation.DueAt.Sub(tNow); next != 70*time.Minute {
		t.Errorf("next reminder at +%s, want +1h10m0s", next)
	}
}

// TestNextEscalationHeld: a shelf stops the ladder; the shelf's timer
// shows the alarm unacknowledged again and the ladder runs from the step
// reached; a hand unshelve acknowledges, so it does not.
func TestNextEscalationHeld(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("unack_active", model.L1, false)
	a, _ = step(t, a, event("shelve"), tNow, pol)
	if a.Escalation.Running() {
		t.Fatal("a shelved alarm escalates")
	}
	end := a.Shelf.Until
	b, ch := step(t, a, Event{Op: OpShelfExpired, Due: end}, end, pol)
	if !ch.Ring || !b.Escalation.Since.Equal(end) || !b.Escalation.DueAt.Equal(end.Add(10*time.Minute)) ||
		!slices.Equal(names(ch.Notified), []string{"张伟", "吴中控"}) {
		t.Errorf("shelf timer: ring=%v since %v due %v notified %v", ch.Ring, b.Escalation.Since, b.Escalation.DueAt, names(ch.Notified))
	}
	c, _ := step(t, a, Event{Op: OpUnshelve, User: "李明远"}, end, pol)
	if c.Escalation.Running() {
		t.Error("unshelved by hand (acknowledged), the ladder runs")
	}
}

// TestNextLateStartsNoTimerInThePast: late data never rings and its
// ladder starts at the centre's clock, not the reading's time.
func TestNextLateStartsNoTimerInThePast(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("normal", model.L1, true)
	a.Escalation, a.FeedbackDue = Escalation{}, time.Time{}
	ev := event("raise")
	ev.Late, ev.TS = true, tNow.Add(-2*time.Hour)
	a, ch := step(t, a, ev, tNow, pol)
	if ch.Ring || ch.Notified != nil || !a.Escalation.Since.Equal(tNow) || !a.Escalation.DueAt.Equal(tNow.Add(10*time.Minute)) ||
		!a.FeedbackDue.Equal(tNow.Add(10*time.Minute)) {
		t.Errorf("late raise: ring=%v notified %v since %v due %v feedback %v", ch.Ring, names(ch.Notified),
			a.Escalation.Since.Sub(tNow), a.Escalation.DueAt.Sub(tNow), a.FeedbackDue.Sub(tNow))
	}
}

// TestNextFeedback: feedback after the acknowledgement closes the loop
// once; overdue, the park and the county are told, once.
func TestNextFeedback(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("ack_active", model.L1, false)
	b, ch := step(t, a, event("feedback"), tNow.Add(-time.Minute), pol)
	if ch.Name != FeedbackGiven || b.Feedback.By != "张伟" || b.Feedback.Cause == "" || !b.Feedback.At.Equal(tNow.Add(-time.Minute)) {
		t.Fatalf("feedback: %s %+v", ch.Name, b.Feedback)
	}
	if _, ch := Next(b, event("feedback"), tNow, pol); !errors.Is(ch.Err, ErrFeedbackGiven) || !errors.Is(ch.Err, ErrWrongState) {
		t.Errorf("feedback twice: %v", ch.Err)
	}
	if _, ch := Next(b, event("feedback_due"), tNow, pol); ch.Name != NameNone {
		t.Errorf("feedback due after it was given: %s", ch.Name)
	}
	c, ch := step(t, a, event("feedback_due"), tNow, pol)
	if ch.Name != FeedbackOverdue || !c.FeedbackOverdue || !slices.Equal(names(ch.Notified), []string{"周园区", "赵应急"}) {
		t.Fatalf("overdue: %s %v notified %v", ch.Name, c.FeedbackOverdue, names(ch.Notified))
	}
	if _, ch := Next(c, event("feedback_due"), tNow, pol); ch.Name != NameNone {
		t.Errorf("overdue twice: %s", ch.Name)
	}
	// Late feedback is still taken.
	if _, ch := step(t, c, event("feedback"), tNow.Add(time.Hour), pol); ch.Name != FeedbackGiven {
		t.Errorf("late feedback: %s", ch.Name)
	}
}

// TestNextChattering: the third raise within a minute marks the alarm
// chattering; from then on its returns wait for a reset, and its raises
// count without ringing or asking for a new acknowledgement.
func TestNextChattering(t *testing.T) {
	pol := tablePolicy
	pol.Chatter = model.Window{Count: 3, Window: time.Minute}
	a := startAlarm("normal", model.L1, false)
	a.Escalation, a.FeedbackDue = Escalation{}, time.Time{}
	at := func(d time.Duration) Event {
		ev := event("raise")
		ev.TS = tRead.Add(d)
		return ev
	}
	ret := func(d time.Duration) Event {
		ev := event("return")
		ev.TS = tRead.Add(d)
		return ev
	}
	// Raised, acknowledged, back to normal: a non-latched alarm clears.
	a, ch := step(t, a, at(0), tNow, pol)
	occ1 := a.ID
	a, _ = step(t, a, event("ack"), tNow, pol)
	a, _ = step(t, a, ret(10*time.Second), tNow, pol)
	// The second raise is a new occurrence, and rings.
	a, ch = step(t, a, at(20*time.Second), tNow, pol)
	if a.ID == occ1 || !ch.Ring || a.Chattering {
		t.Fatalf("second raise: %s ring=%v chattering=%v", a.ID, ch.Ring, a.Chattering)
	}
	a, _ = step(t, a, event("ack"), tNow, pol)
	a, _ = step(t, a, ret(30*time.Second), tNow, pol)
	// The third within the minute: chattering, a new occurrence that rings once.
	a, ch = step(t, a, at(40*time.Second), tNow, pol)
	occ3 := a.ID
	if !a.Chattering || !ch.Ring || a.Count != 3 {
		t.Fatalf("third raise: chattering=%v ring=%v count %d", a.Chattering, ch.Ring, a.Count)
	}
	a, _ = step(t, a, event("ack"), tNow, pol)
	// Now it is grouped: a return waits for the reset, a raise counts.
	for i := range 5 {
		a, ch = step(t, a, ret(time.Duration(45+10*i)*time.Second), tNow, pol)
		if ch.Name != Returned || a.State != model.StateAckActive {
			t.Fatalf("grouped return %d: %s %s", i, ch.Name, a.State)
		}
		a, ch = step(t, a, at(time.Duration(50+10*i)*time.Second), tNow, pol)
		if ch.Name != Raised || ch.Ring || a.State != model.StateAckActive || a.ID != occ3 {
			t.Fatalf("grouped raise %d: %s ring=%v %s %s", i, ch.Name, ch.Ring, a.State, a.ID)
		}
	}
	if a.Count != 8 {
		t.Errorf("count %d, want 8 raises grouped", a.Count)
	}
	// Unacknowledged, a grouped raise does not ring either.
	b := a
	b.State, b.AckedBy, b.AckedAt = model.StateUnackRTN, "", time.Time{}
	b.Active = false
	if _, ch := step(t, b, at(2*time.Minute), tNow, pol); ch.Ring {
		t.Error("an unacknowledged chattering alarm rings again")
	}
}
