package alerting

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

var (
	t0     = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	tRead  = t0.Add(-3 * time.Second) // the reading's own time
	tNow   = t0                       // the centre's clock
	gasSrc = Source{County: "c01", Park: "p01", Enterprise: "e01", HazardSource: "e01-hs1", Sensor: "e01-GT-101", Gateway: "gw-e01-1"}

	// The holds of the table's starting points. The shelf falls due now.
	shelf       = Hold{At: tNow.Add(-30 * time.Minute), Until: tNow, By: "李明远", Reason: "联锁调试，误报频繁"}
	suppression = Hold{At: tNow.Add(-time.Hour), Reason: SuppressMaintenance}
	outOfServ   = Hold{At: tNow.Add(-2 * time.Hour), By: "王工", Reason: "探头标定"}
	tablePolicy = Policy{SourceLevel: 1, MaxShelve: 8 * time.Hour, Escalation: tableLimits, Contacts: tableContacts}
	// Every priority escalates alike in the table: the park 10 min after
	// the ladder starts, the county after 30, reminders every 10 min, the
	// feedback due 10 min after the alarm was first shown.
	tableLimits = [5]model.EscalationLimits{
		1: {Park: 10 * time.Minute, County: 30 * time.Minute, Remind: 10 * time.Minute, Feedback: 10 * time.Minute},
		2: {Park: 10 * time.Minute, County: 30 * time.Minute, Remind: 10 * time.Minute, Feedback: 10 * time.Minute},
		3: {Park: 10 * time.Minute, County: 30 * time.Minute, Remind: 10 * time.Minute, Feedback: 10 * time.Minute},
		4: {Park: 10 * time.Minute, County: 30 * time.Minute, Remind: 10 * time.Minute, Feedback: 10 * time.Minute},
	}
	tableContacts = [model.NumEscalationSteps][]Contact{
		{{Name: "张伟", Phone: "13800001003", Role: "操作负责人"}, {Name: "吴中控", Phone: "13800001099", Role: "企业值班"}},
		{{Name: "周园区", Phone: "13900008001", Role: "园区值班"}},
		{{Name: "赵应急", Phone: "13900009001", Role: "县应急值班"}},
	}
)

// startAlarm builds a starting point from spec, "[HOLDS/]BASE[/unshown]":
// HOLDS is shelved, suppressed, out_of_service or several joined by "+";
// BASE is the ISA-18.2 state underneath (the state itself without holds):
// normal, unack_active, ack_active, unack_rtn, or ack_active_rtn, which is
// ack_active whose condition has ended (only a latched alarm is there).
// Under a hold, normal is an episode that ended underneath; without one,
// an occurrence that has ended.
func startAlarm(spec string, level model.AlarmLevel, latch bool) Alarm {
	a := Alarm{
		ID: "e01-GT-101.threshold_high.1", Occurrence: 1, Class: model.ClassAlarm, Source: gasSrc,
		SensorName: "液氯储罐区东侧氯气检测器", Kind: model.GasToxic, Rule: model.ThresholdHigh,
		Unit: "ppm", Latch: latch, Level: level, Value: 1.2, Limit: 1, LimitKind: "H",
		RaisedAt: tRead.Add(-time.Hour),
	}
	if level == model.L2 {
		a.Limit, a.LimitKind = 2, "HH"
	}
	a.Priority = Priority(a.Class, a.Level, tablePolicy.SourceLevel)
	parts := strings.Split(spec, "/")
	if parts[len(parts)-1] == "unshown" {
		a.Unshown = true
		parts = parts[:len(parts)-1]
	}
	base := parts[len(parts)-1]
	if len(parts) == 2 {
		for _, h := range strings.Split(parts[0], "+") {
			switch h {
			case "shelved":
				a.Shelf = shelf
			case "suppressed":
				a.Suppression = suppression
			case "out_of_service":
				a.OutOfService = outOfServ
			default:
				panic(spec)
			}
		}
	}
	switch base {
	case "normal":
		a.State = model.StateNormal
	case "unack_active":
		a.State, a.Active = model.StateUnackActive, true
	case "ack_active":
		a.State, a.Active, a.AckedBy, a.AckedAt = model.StateAckActive, true, "张伟", tNow.Add(-time.Minute)
	case "ack_active_rtn":
		a.State, a.AckedBy, a.AckedAt = model.StateAckActive, "张伟", tNow.Add(-time.Minute)
	case "unack_rtn":
		a.State = model.StateUnackRTN
	default:
		panic(spec)
	}
	a.show()
	// It was shown 10 minutes ago: its feedback is due now, and while it
	// is shown unacknowledged its ladder's park step is due now.
	a.Escalation.Started, a.FeedbackDue = tNow.Add(-10*time.Minute), tNow
	if !a.Held() && (a.State == model.StateUnackActive || a.State == model.StateUnackRTN) {
		a.Escalation.Since, a.Escalation.DueAt = a.Escalation.Started, tNow
	}
	return a
}

// specOf is the spec of a, in startAlarm's grammar (ack_active whatever
// its condition: the table checks Active apart).
func specOf(a Alarm) string {
	var hs []string
	for _, h := range []struct {
		on   bool
		name string
	}{{a.Shelf.On(), "shelved"}, {a.Suppression.On(), "suppressed"}, {a.OutOfService.On(), "out_of_service"}} {
		if h.on {
			hs = append(hs, h.name)
		}
	}
	s := a.State.String()
	if len(hs) > 0 {
		s = strings.Join(hs, "+") + "/" + a.Base.String()
	}
	if a.Unshown {
		s += "/unshown"
	}
	return s
}

// event builds the input of op, "NAME[:VARIANT]": raise (at L1, or
// raise:L2), level_change (to L2, or level_change:L1), return, ack, shelve
// (30 min; shelve:9h, shelve:no_reason), unshelve (unshelve:no_user),
// shelf_expired (due when the table's shelf is; shelf_expired:stale for an
// earlier shelf's timer), suppress (maintenance; suppress:suspended,
// suppress:bad_reason), unsuppress, out_of_service (out_of_service:no_reason),
// in_service (in_service:no_user), feedback (feedback:no_cause), escalate
// (due now, as startAlarm's ladder is; escalate:stale an hour earlier),
// feedback_due (due now).
func event(op string) Event {
	name, variant, _ := strings.Cut(op, ":")
	lvl := func(def model.AlarmLevel) Event {
		l := def
		if variant == "L1" {
			l = model.L1
		} else if variant == "L2" {
			l = model.L2
		}
		if l == model.L2 {
			return Event{TS: tRead, Level: l, Value: 2.5, Limit: 2}
		}
		return Event{TS: tRead, Level: l, Value: 1.5, Limit: 1}
	}
	var ev Event
	switch name {
	case "raise":
		ev = lvl(model.L1)
		ev.Op = OpRaise
	case "level_change":
		ev = lvl(model.L2)
		ev.Op = OpLevelChange
	case "return":
		ev = Event{Op: OpReturn, TS: tRead, Value: 0.1}
	case "ack":
		ev = Event{Op: OpAck, User: "李明远", Comment: "现场确认"}
	case "shelve":
		ev = Event{Op: OpShelve, User: "李明远", Reason: "探头受潮，待更换", Duration: 30 * time.Minute}
		switch variant {
		case "9h":
			ev.Duration = 9 * time.Hour
		case "no_reason":
			ev.Reason = " "
		}
	case "unshelve":
		ev = Event{Op: OpUnshelve, User: "李明远"}
		if variant == "no_user" {
			ev.User = ""
		}
	case "shelf_expired":
		ev = Event{Op: OpShelfExpired, Due: shelf.Until}
		if variant == "stale" {
			ev.Due = shelf.Until.Add(-time.Hour)
		}
	case "suppress":
		ev = Event{Op: OpSuppress, Reason: SuppressMaintenance}
		switch variant {
		case "suspended":
			ev.Reason = SuppressSuspended
		case "bad_reason":
			ev.Reason = "holiday"
		}
	case "unsuppress":
		ev = Event{Op: OpUnsuppress}
	case "out_of_service":
		ev = Event{Op: OpRemoveFromService, User: "王工", Reason: "探头标定"}
		if variant == "no_reason" {
			ev.Reason = ""
		}
	case "in_service":
		ev = Event{Op: OpReturnToService, User: "王工"}
		if variant == "no_user" {
			ev.User = ""
		}
	case "feedback":
		ev = Event{Op: OpFeedback, User: "张伟", Cause: "阀门法兰垫片老化，微量泄漏", Action: "关阀更换垫片，复测合格"}
		if variant == "no_cause" {
			ev.Cause = ""
		}
	case "escalate":
		ev = Event{Op: OpEscalate, Due: tNow}
		if variant == "stale" {
			ev.Due = tNow.Add(-time.Hour)
		}
	case "feedback_due":
		ev = Event{Op: OpFeedbackDue, Due: tNow}
	default:
		panic(op)
	}
	return ev
}

// Which latching a row of the table runs with.
type latching uint8

const (
	both    latching = iota // the row holds for latched and non-latched alarms
	plain                   // non-latched only
	latched                 // latched (gas) only
)

// TestNext: every (state, event) pair, for non-latched and latched alarms,
// the refusals with their errors included. A row names its starting point
// and result in startAlarm's grammar; the policy is tablePolicy (shelves
// of at most 8 h), with the row's by-design holds for a new occurrence.
func TestNext(t *testing.T) {
	type want struct {
		spec   string
		active bool
		name   Name
		ring   bool
		err    error
		occ    int // occurrence after the event
	}
	const (
		L1 = model.L1
		L2 = model.L2
	)
	tests := []struct {
		latch latching
		from  string
		level model.AlarmLevel // of the alarm before
		op    string
		want  want
		pol   string // "suppressed" or "out_of_service": that hold is on the condition
	}{
		// normal: an ended occurrence. A raise (or a level change that
		// finds nothing open) opens occurrence 2; what acts on an open
		// alarm is refused.
		{both, "normal", L1, "raise", want{"unack_active", true, Raised, true, nil, 2}, ""},
		{both, "normal", L1, "level_change", want{"unack_active", true, Raised, true, nil, 2}, ""},
		{both, "normal", L1, "raise", want{"suppressed/unack_active/unshown", true, Raised, false, nil, 2}, "suppressed"},
		{both, "normal", L1, "raise", want{"out_of_service/unack_active/unshown", true, Raised, false, nil, 2}, "out_of_service"},
		{both, "normal", L1, "return", want{"normal", false, NameNone, false, nil, 1}, ""},
		{both, "normal", L1, "ack", want{"normal", false, NameNone, false, ErrNotAckable, 1}, ""},
		{both, "normal", L1, "shelve", want{"normal", false, NameNone, false, ErrNotShelvable, 1}, ""},
		{both, "normal", L1, "unshelve", want{"normal", false, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "normal", L1, "shelf_expired", want{"normal", false, NameNone, false, nil, 1}, ""},
		{both, "normal", L1, "suppress", want{"normal", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "normal", L1, "unsuppress", want{"normal", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "normal", L1, "out_of_service", want{"normal", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "normal", L1, "in_service", want{"normal", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "normal", L1, "feedback", want{"normal", false, FeedbackGiven, false, nil, 1}, ""},
		{both, "normal", L1, "escalate", want{"normal", false, NameNone, false, nil, 1}, ""},
		{both, "normal", L1, "feedback_due", want{"normal", false, FeedbackOverdue, false, nil, 1}, ""},

		// unack_active
		{both, "unack_active", L1, "raise", want{"unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "unack_active", L1, "level_change", want{"unack_active", true, LevelChanged, true, nil, 1}, ""},
		{plain, "unack_active", L2, "level_change:L1", want{"unack_active", true, LevelChanged, false, nil, 1}, ""},
		{both, "unack_active", L1, "return", want{"unack_rtn", false, Returned, false, nil, 1}, ""},
		{both, "unack_active", L1, "ack", want{"ack_active", true, Acknowledged, false, nil, 1}, ""},
		{both, "unack_active", L1, "shelve", want{"shelved/unack_active", true, Shelved, false, nil, 1}, ""},
		{both, "unack_active", L1, "shelve:9h", want{"unack_active", true, NameNone, false, ErrShelveTooLong, 1}, ""},
		{plain, "unack_active", L1, "shelve:no_reason", want{"unack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "unack_active", L1, "unshelve", want{"unack_active", true, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "unack_active", L1, "shelf_expired", want{"unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "unack_active", L1, "suppress", want{"suppressed/unack_active", true, Suppressed, false, nil, 1}, ""},
		{plain, "unack_active", L1, "suppress:suspended", want{"suppressed/unack_active", true, Suppressed, false, nil, 1}, ""},
		{plain, "unack_active", L1, "suppress:bad_reason", want{"unack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "unack_active", L1, "unsuppress", want{"unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_active", L1, "out_of_service", want{"out_of_service/unack_active", true, RemovedFromService, false, nil, 1}, ""},
		{plain, "unack_active", L1, "out_of_service:no_reason", want{"unack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "unack_active", L1, "in_service", want{"unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_active", L1, "feedback", want{"unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_active", L1, "escalate", want{"unack_active", true, Escalated, false, nil, 1}, ""},
		{plain, "unack_active", L1, "escalate:stale", want{"unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "unack_active", L1, "feedback_due", want{"unack_active", true, FeedbackOverdue, false, nil, 1}, ""},

		// ack_active, condition holding
		{both, "ack_active", L1, "raise", want{"ack_active", true, NameNone, false, nil, 1}, ""},
		{plain, "ack_active", L1, "raise:L2", want{"unack_active", true, LevelChanged, true, nil, 1}, ""},
		{both, "ack_active", L1, "level_change", want{"unack_active", true, LevelChanged, true, nil, 1}, ""},
		{latched, "ack_active", L2, "level_change:L1", want{"ack_active", true, LevelChanged, false, nil, 1}, ""},
		{plain, "ack_active", L1, "return", want{"normal", false, Cleared, false, nil, 1}, ""},
		{latched, "ack_active", L1, "return", want{"ack_active", false, Returned, false, nil, 1}, ""},
		{both, "ack_active", L1, "ack", want{"ack_active", true, NameNone, false, ErrNotAckable, 1}, ""},
		{both, "ack_active", L1, "shelve", want{"shelved/ack_active", true, Shelved, false, nil, 1}, ""},
		{both, "ack_active", L1, "unshelve", want{"ack_active", true, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "ack_active", L1, "shelf_expired", want{"ack_active", true, NameNone, false, nil, 1}, ""},
		{both, "ack_active", L1, "suppress", want{"suppressed/ack_active", true, Suppressed, false, nil, 1}, ""},
		{both, "ack_active", L1, "unsuppress", want{"ack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "ack_active", L1, "out_of_service", want{"out_of_service/ack_active", true, RemovedFromService, false, nil, 1}, ""},
		{both, "ack_active", L1, "in_service", want{"ack_active", true, NameNone, false, ErrWrongState, 1}, ""},

		// ack_active whose condition ended: a latched alarm waiting for its reset.
		{latched, "ack_active_rtn", L1, "raise", want{"unack_active", true, Raised, true, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "level_change", want{"unack_active", true, Raised, true, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "return", want{"ack_active", false, NameNone, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "ack", want{"normal", false, Cleared, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "shelve", want{"shelved/ack_active", false, Shelved, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "unshelve", want{"ack_active", false, NameNone, false, ErrNotShelved, 1}, ""},
		{latched, "ack_active_rtn", L1, "shelf_expired", want{"ack_active", false, NameNone, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "suppress", want{"suppressed/ack_active", false, Suppressed, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "unsuppress", want{"ack_active", false, NameNone, false, ErrWrongState, 1}, ""},
		{latched, "ack_active_rtn", L1, "out_of_service", want{"out_of_service/ack_active", false, RemovedFromService, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "in_service", want{"ack_active", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "ack_active", L1, "feedback", want{"ack_active", true, FeedbackGiven, false, nil, 1}, ""},
		{plain, "ack_active", L1, "feedback:no_cause", want{"ack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "ack_active", L1, "escalate", want{"ack_active", true, NameNone, false, nil, 1}, ""},
		{both, "ack_active", L1, "feedback_due", want{"ack_active", true, FeedbackOverdue, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "feedback", want{"ack_active", false, FeedbackGiven, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "escalate", want{"ack_active", false, NameNone, false, nil, 1}, ""},
		{latched, "ack_active_rtn", L1, "feedback_due", want{"ack_active", false, FeedbackOverdue, false, nil, 1}, ""},

		// unack_rtn: alarming again is the same occurrence.
		{both, "unack_rtn", L1, "raise", want{"unack_active", true, Raised, true, nil, 1}, ""},
		{both, "unack_rtn", L1, "level_change", want{"unack_active", true, Raised, true, nil, 1}, ""},
		{both, "unack_rtn", L1, "return", want{"unack_rtn", false, NameNone, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "ack", want{"normal", false, Cleared, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "shelve", want{"shelved/unack_rtn", false, Shelved, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "unshelve", want{"unack_rtn", false, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "unack_rtn", L1, "shelf_expired", want{"unack_rtn", false, NameNone, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "suppress", want{"suppressed/unack_rtn", false, Suppressed, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "unsuppress", want{"unack_rtn", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_rtn", L1, "out_of_service", want{"out_of_service/unack_rtn", false, RemovedFromService, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "in_service", want{"unack_rtn", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_rtn", L1, "feedback", want{"unack_rtn", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "unack_rtn", L1, "escalate", want{"unack_rtn", false, Escalated, false, nil, 1}, ""},
		{both, "unack_rtn", L1, "feedback_due", want{"unack_rtn", false, FeedbackOverdue, false, nil, 1}, ""},

		// shelved: rule events move the state underneath and never ring;
		// by hand it comes back acknowledged, by its timer unacknowledged.
		{both, "shelved/unack_active", L1, "raise", want{"shelved/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "shelved/unack_rtn", L1, "raise", want{"shelved/unack_active", true, Raised, false, nil, 1}, ""},
		{plain, "shelved/normal", L1, "raise", want{"shelved/unack_active", true, Raised, false, nil, 1}, ""},
		{both, "shelved/ack_active", L1, "level_change", want{"shelved/unack_active", true, LevelChanged, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "return", want{"shelved/unack_rtn", false, Returned, false, nil, 1}, ""},
		{plain, "shelved/ack_active", L1, "return", want{"shelved/normal", false, Returned, false, nil, 1}, ""},
		{latched, "shelved/ack_active", L1, "return", want{"shelved/ack_active", false, Returned, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "ack", want{"shelved/unack_active", true, NameNone, false, ErrNotAckable, 1}, ""},
		{both, "shelved/unack_active", L1, "shelve", want{"shelved/unack_active", true, NameNone, false, ErrNotShelvable, 1}, ""},
		{both, "shelved/unack_active", L1, "unshelve", want{"ack_active", true, Unshelved, false, nil, 1}, ""},
		{both, "shelved/ack_active", L1, "unshelve", want{"ack_active", true, Unshelved, false, nil, 1}, ""},
		{both, "shelved/unack_rtn", L1, "unshelve", want{"normal", false, Cleared, false, nil, 1}, ""},
		{plain, "shelved/normal", L1, "unshelve", want{"normal", false, Cleared, false, nil, 1}, ""},
		{latched, "shelved/ack_active_rtn", L1, "unshelve", want{"ack_active", false, Unshelved, false, nil, 1}, ""},
		{plain, "shelved/unack_active", L1, "unshelve:no_user", want{"shelved/unack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "shelved/ack_active", L1, "shelf_expired", want{"unack_active", true, Unshelved, true, nil, 1}, ""},
		{both, "shelved/unack_rtn", L1, "shelf_expired", want{"unack_rtn", false, Unshelved, false, nil, 1}, ""},
		{plain, "shelved/normal", L1, "shelf_expired", want{"unack_rtn", false, Unshelved, false, nil, 1}, ""},
		{latched, "shelved/ack_active_rtn", L1, "shelf_expired", want{"unack_rtn", false, Unshelved, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "shelf_expired:stale", want{"shelved/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "suppress", want{"shelved+suppressed/unack_active", true, Suppressed, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "unsuppress", want{"shelved/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "shelved/unack_active", L1, "out_of_service", want{"shelved+out_of_service/unack_active", true, RemovedFromService, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "in_service", want{"shelved/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "shelved/ack_active", L1, "feedback", want{"shelved/ack_active", true, FeedbackGiven, false, nil, 1}, ""},
		{both, "shelved/unack_active", L1, "feedback", want{"shelved/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "shelved/unack_active", L1, "escalate", want{"shelved/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "shelved/unack_rtn", L1, "feedback_due", want{"shelved/unack_rtn", false, FeedbackOverdue, false, nil, 1}, ""},

		// suppressed by design: the same underneath; its end shows the true
		// state, except that an episode wholly inside it is owed nothing.
		{both, "suppressed/unack_active", L1, "raise", want{"suppressed/unack_active", true, NameNone, false, nil, 1}, ""},
		{plain, "suppressed/normal", L1, "raise", want{"suppressed/unack_active/unshown", true, Raised, false, nil, 1}, ""},
		{both, "suppressed/unack_rtn", L1, "raise", want{"suppressed/unack_active", true, Raised, false, nil, 1}, ""},
		{both, "suppressed/ack_active", L1, "level_change", want{"suppressed/unack_active", true, LevelChanged, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "return", want{"suppressed/unack_rtn", false, Returned, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "ack", want{"suppressed/unack_active", true, NameNone, false, ErrNotAckable, 1}, ""},
		{both, "suppressed/unack_active", L1, "shelve", want{"suppressed/unack_active", true, NameNone, false, ErrNotShelvable, 1}, ""},
		{both, "suppressed/unack_active", L1, "unshelve", want{"suppressed/unack_active", true, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "shelved+suppressed/unack_active", L1, "unshelve", want{"suppressed/unack_active", true, Unshelved, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "shelf_expired", want{"suppressed/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "shelved+suppressed/ack_active", L1, "shelf_expired", want{"suppressed/ack_active", true, Unshelved, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "suppress", want{"suppressed/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "suppressed/unack_active", L1, "unsuppress", want{"unack_active", true, Unsuppressed, true, nil, 1}, ""},
		{both, "suppressed/unack_active/unshown", L1, "unsuppress", want{"unack_active", true, Unsuppressed, true, nil, 1}, ""},
		{both, "suppressed/ack_active", L1, "unsuppress", want{"ack_active", true, Unsuppressed, false, nil, 1}, ""},
		{both, "suppressed/unack_rtn", L1, "unsuppress", want{"unack_rtn", false, Unsuppressed, false, nil, 1}, ""},
		{both, "suppressed/unack_rtn/unshown", L1, "unsuppress", want{"normal", false, Cleared, false, nil, 1}, ""},
		{plain, "suppressed/normal", L1, "unsuppress", want{"normal", false, Cleared, false, nil, 1}, ""},
		{both, "shelved+suppressed/unack_rtn/unshown", L1, "unsuppress", want{"shelved/normal", false, Unsuppressed, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "out_of_service", want{"suppressed+out_of_service/unack_active", true, RemovedFromService, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "in_service", want{"suppressed/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "suppressed/ack_active", L1, "feedback", want{"suppressed/ack_active", true, FeedbackGiven, false, nil, 1}, ""},
		{both, "suppressed/unack_rtn", L1, "feedback", want{"suppressed/unack_rtn", false, NameNone, false, ErrWrongState, 1}, ""},
		{both, "suppressed/unack_active", L1, "escalate", want{"suppressed/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "suppressed/unack_active", L1, "feedback_due", want{"suppressed/unack_active", true, FeedbackOverdue, false, nil, 1}, ""},

		// out of service: as suppressed, by an admin's hand and with a reason.
		{both, "out_of_service/unack_active", L1, "raise", want{"out_of_service/unack_active", true, NameNone, false, nil, 1}, ""},
		{plain, "out_of_service/normal", L1, "raise", want{"out_of_service/unack_active/unshown", true, Raised, false, nil, 1}, ""},
		{both, "out_of_service/ack_active", L1, "level_change", want{"out_of_service/unack_active", true, LevelChanged, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "return", want{"out_of_service/unack_rtn", false, Returned, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "ack", want{"out_of_service/unack_active", true, NameNone, false, ErrNotAckable, 1}, ""},
		{both, "out_of_service/unack_active", L1, "shelve", want{"out_of_service/unack_active", true, NameNone, false, ErrNotShelvable, 1}, ""},
		{both, "out_of_service/unack_active", L1, "unshelve", want{"out_of_service/unack_active", true, NameNone, false, ErrNotShelved, 1}, ""},
		{both, "out_of_service/unack_active", L1, "shelf_expired", want{"out_of_service/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "suppress", want{"suppressed+out_of_service/unack_active", true, Suppressed, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "unsuppress", want{"out_of_service/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "out_of_service/unack_active", L1, "out_of_service", want{"out_of_service/unack_active", true, NameNone, false, ErrWrongState, 1}, ""},
		{both, "out_of_service/unack_active", L1, "in_service", want{"unack_active", true, ReturnedToService, true, nil, 1}, ""},
		{both, "out_of_service/unack_rtn", L1, "in_service", want{"unack_rtn", false, ReturnedToService, false, nil, 1}, ""},
		{both, "out_of_service/unack_rtn/unshown", L1, "in_service", want{"normal", false, Cleared, false, nil, 1}, ""},
		{both, "suppressed+out_of_service/unack_rtn/unshown", L1, "in_service", want{"suppressed/unack_rtn/unshown", false, ReturnedToService, false, nil, 1}, ""},
		{plain, "out_of_service/unack_active", L1, "in_service:no_user", want{"out_of_service/unack_active", true, NameNone, false, ErrInvalid, 1}, ""},
		{both, "out_of_service/ack_active", L1, "feedback", want{"out_of_service/ack_active", true, FeedbackGiven, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "escalate", want{"out_of_service/unack_active", true, NameNone, false, nil, 1}, ""},
		{both, "out_of_service/unack_active", L1, "feedback_due", want{"out_of_service/unack_active", true, FeedbackOverdue, false, nil, 1}, ""},
	}
	covered := map[string]bool{}
	runs := 0
	for _, tc := range tests {
		for _, latch := range []bool{false, true} {
			if tc.latch == plain && latch || tc.latch == latched && !latch {
				continue
			}
			a := startAlarm(tc.from, tc.level, latch)
			op, _, _ := strings.Cut(tc.op, ":")
			covered[fmt.Sprintf("%v %v %v", latch, a.State, op)] = true
			runs++
			name := fmt.Sprintf("latch=%v/%s_%s/%s", latch, tc.from, tc.level, tc.op)
			t.Run(name, func(t *testing.T) {
				pol := tablePolicy
				pol.Latch = latch
				switch tc.pol {
				case "suppressed":
					pol.Suppression = suppression
				case "out_of_service":
					pol.OutOfService = outOfServ
				}
				got, ch := Next(a, event(tc.op), tNow, pol)
				if !errors.Is(ch.Err, tc.want.err) || (tc.want.err == nil) != (ch.Err == nil) {
					t.Fatalf("err = %v, want %v", ch.Err, tc.want.err)
				}
				if s := specOf(got); s != tc.want.spec || got.Active != tc.want.active || ch.Name != tc.want.name || ch.Ring != tc.want.ring {
					t.Errorf("→ %s active=%v %q ring=%v; want %s active=%v %q ring=%v",
						s, got.Active, ch.Name, ch.Ring, tc.want.spec, tc.want.active, tc.want.name, tc.want.ring)
				}
				if got.Occurrence != tc.want.occ {
					t.Errorf("occurrence %d, want %d", got.Occurrence, tc.want.occ)
				}
				if ch.From != a.State || ch.To != got.State {
					t.Errorf("change says %s → %s, the alarm went %s → %s", ch.From, ch.To, a.State, got.State)
				}
				if ch.Name == NameNone && !reflect.DeepEqual(got, a) {
					t.Errorf("nothing happened, but the alarm changed:\n%+v\n%+v", a, got)
				}
				// The state shown is the strongest hold's, and Base is
				// only kept under one.
				shown := got
				shown.State = got.base()
				shown.show()
				if shown.State != got.State || shown.Base != got.Base {
					t.Errorf("state %s base %s, but the holds say %s base %s", got.State, got.Base, shown.State, shown.Base)
				}
				if ch.Ring && got.Held() {
					t.Error("a held alarm rings")
				}
			})
		}
	}
	states := []model.AlarmState{model.StateNormal, model.StateUnackActive, model.StateAckActive, model.StateUnackRTN,
		model.StateShelved, model.StateSuppressed, model.StateOutOfService}
	for _, latch := range []bool{false, true} {
		for _, st := range states {
			for op := OpRaise; op < numOps; op++ {
				if !covered[fmt.Sprintf("%v %v %v", latch, st, op)] {
					t.Errorf("no case for latch=%v %s + %s", latch, st, op)
				}
			}
		}
	}
	t.Logf("%d rows, %d runs, %d (latch, state, event) triples", len(tests), runs, len(covered))
}

// TestNextFields: the times, the acknowledger and the new occurrence's
// fields that the table does not look at.
func TestNextFields(t *testing.T) {
	pol := Policy{Latch: true, SourceLevel: 1}
	a := startAlarm("normal", model.L1, true)
	a.AckedBy, a.ClearedBy = "old", "old"

	a, _ = Next(a, event("raise"), tNow, pol)
	if a.ID != "e01-GT-101.threshold_high.2" || !a.RaisedAt.Equal(tRead) || a.AckedBy != "" || a.ClearedBy != "" {
		t.Errorf("raise: id %s raised %v acked_by %q cleared_by %q", a.ID, a.RaisedAt, a.AckedBy, a.ClearedBy)
	}
	if a.Priority != 2 || a.LimitKind != "H" || !a.Latch {
		t.Errorf("raise: priority %d limit %s latch %v; want 2, H, true", a.Priority, a.LimitKind, a.Latch)
	}
	if want := "液氯储罐区东侧氯气检测器一级报警 (H)：1.5 ppm，报警值 1 ppm / e01-GT-101 toxic gas L1 alarm (H): 1.5 ppm, limit 1 ppm"; a.Message != want {
		t.Errorf("message\n got %s\nwant %s", a.Message, want)
	}
	a, _ = Next(a, Event{Op: OpLevelChange, TS: tRead, Level: model.L2, Value: 2.5, Limit: 2, LimitKind: "HH"}, tNow, pol)
	if a.Priority != 1 || !strings.Contains(a.Message, "二级报警 (HH)：2.5 ppm") {
		t.Errorf("level change: priority %d, message %s", a.Priority, a.Message)
	}
	a, _ = Next(a, event("ack"), tNow, pol)
	if !a.AckedAt.Equal(tNow) || a.AckedBy != "李明远" {
		t.Errorf("ack: acked %v by %q", a.AckedAt, a.AckedBy)
	}
	ret := tRead.Add(10 * time.Second)
	a, _ = Next(a, Event{Op: OpReturn, TS: ret, Value: 0.1}, tNow, pol)
	if !a.ReturnedAt.Equal(ret) || !a.ClearedAt.IsZero() || a.Value != 0.1 || a.Level != model.L2 {
		t.Errorf("return: returned %v cleared %v value %g level %s", a.ReturnedAt, a.ClearedAt, a.Value, a.Level)
	}
	later := tNow.Add(time.Minute)
	a, ch := Next(a, Event{Op: OpAck, User: "王建国"}, later, pol)
	if ch.Name != Cleared || !a.ClearedAt.Equal(later) || a.ClearedBy != "王建国" || a.AckedBy != "李明远" {
		t.Errorf("reset: %s cleared %v by %q, acked by %q", ch.Name, a.ClearedAt, a.ClearedBy, a.AckedBy)
	}
}

// TestNextLate: a crossing found in late data that also returns in it ends
// in unack_rtn with a late mark, and neither event rings (SPEC §2).
func TestNextLate(t *testing.T) {
	for _, latch := range []bool{false, true} {
		pol := Policy{Latch: latch}
		a := startAlarm("normal", model.L1, latch)
		raise := event("raise")
		raise.Late = true
		a, ch1 := Next(a, raise, tNow, pol)
		ret := event("return")
		ret.Late, ret.TS = true, tRead.Add(time.Second)
		a, ch2 := Next(a, ret, tNow, pol)
		if a.State != model.StateUnackRTN || !a.Late || ch1.Ring || ch2.Ring || ch1.Name != Raised || ch2.Name != Returned {
			t.Errorf("latch=%v: %s late=%v, rings %v %v, events %s %s; want unack_rtn, late, no ring",
				latch, a.State, a.Late, ch1.Ring, ch2.Ring, ch1.Name, ch2.Name)
		}
		if !a.RaisedAt.Equal(tRead) {
			t.Errorf("late raise recorded at %v, want its own time %v", a.RaisedAt, tRead)
		}
		// A late level change up does not ring either.
		b := startAlarm("ack_active", model.L1, latch)
		up := event("level_change")
		up.Late = true
		b, ch := Next(b, up, tNow, pol)
		if ch.Ring || b.State != model.StateUnackActive {
			t.Errorf("late level up: ring %v state %s", ch.Ring, b.State)
		}
	}
}

func TestNextInvalid(t *testing.T) {
	a := startAlarm("unack_active", model.L1, true)
	if _, ch := Next(a, Event{Op: OpAck}, tNow, Policy{}); !errors.Is(ch.Err, ErrInvalid) {
		t.Errorf("ack without a user: %v", ch.Err)
	}
	if _, ch := Next(a, Event{Op: Op(99)}, tNow, Policy{}); !errors.Is(ch.Err, ErrInvalid) {
		t.Errorf("unknown op: %v", ch.Err)
	}
}

// TestNextHolds: the fields the table does not look at: a shelf's times
// and who set it, who an unshelve acknowledges for, a timer that comes
// early, what a refusal says.
func TestNextHolds(t *testing.T) {
	pol := tablePolicy
	a := startAlarm("unack_active", model.L1, true)
	sh := event("shelve")
	a, ch := Next(a, sh, tNow, pol)
	want := Hold{At: tNow, Until: tNow.Add(30 * time.Minute), By: "李明远", Reason: "探头受潮，待更换"}
	if ch.Name != Shelved || a.Shelf != want || a.State != model.StateShelved || a.Base != model.StateUnackActive {
		t.Fatalf("shelve: %s %s base %s shelf %+v", ch.Name, a.State, a.Base, a.Shelf)
	}

	// The timer: early does nothing; at its due time the alarm comes back
	// unacknowledged, and a stale acknowledgement is forgotten.
	a.Base, a.AckedBy, a.AckedAt = model.StateAckActive, "张伟", tNow
	exp := Event{Op: OpShelfExpired, Due: a.Shelf.Until}
	if b, ch := Next(a, exp, a.Shelf.Until.Add(-time.Millisecond), pol); ch.Name != NameNone || ch.Err != nil || !reflect.DeepEqual(b, a) {
		t.Errorf("early timer: %s %v", ch.Name, ch.Err)
	}
	b, ch := Next(a, exp, a.Shelf.Until.Add(time.Hour), pol) // fell due while the centre was down
	if ch.Name != Unshelved || !ch.Ring || b.State != model.StateUnackActive || b.AckedBy != "" || !b.AckedAt.IsZero() || b.Shelf.On() {
		t.Errorf("timer: %s ring=%v %s acked by %q at %v, shelf %+v", ch.Name, ch.Ring, b.State, b.AckedBy, b.AckedAt, b.Shelf)
	}

	// By hand, a returned alarm comes back acknowledged, hence ended, by
	// whoever unshelved it.
	c := startAlarm("shelved/unack_rtn", model.L1, true)
	later := tNow.Add(10 * time.Minute)
	c, ch = Next(c, Event{Op: OpUnshelve, User: "王建国"}, later, pol)
	if ch.Name != Cleared || c.AckedBy != "王建国" || !c.AckedAt.Equal(later) || c.ClearedBy != "王建国" || !c.ClearedAt.Equal(later) {
		t.Errorf("unshelve of a returned alarm: %s acked %q %v cleared %q %v", ch.Name, c.AckedBy, c.AckedAt, c.ClearedBy, c.ClearedAt)
	}

	// An episode wholly inside a suppression ends with it, by the system.
	d := startAlarm("suppressed/unack_rtn/unshown", model.L1, true)
	d, ch = Next(d, event("unsuppress"), later, pol)
	if ch.Name != Cleared || !d.ClearedAt.Equal(later) || d.ClearedBy != "" || d.AckedBy != "" || d.Unshown {
		t.Errorf("unsuppress of an unseen episode: %s cleared %v by %q unshown=%v", ch.Name, d.ClearedAt, d.ClearedBy, d.Unshown)
	}

	// A return under a hold ends the episode underneath, not the alarm.
	e := startAlarm("out_of_service/ack_active", model.L1, false)
	e, _ = Next(e, event("return"), tNow, Policy{})
	if !e.ClearedAt.IsZero() || !e.ReturnedAt.Equal(tRead) || e.Base != model.StateNormal {
		t.Errorf("return out of service: base %s cleared %v returned %v", e.Base, e.ClearedAt, e.ReturnedAt)
	}

	for _, c := range []struct {
		a    Alarm
		ev   Event
		pol  Policy
		want string
	}{
		{startAlarm("unack_active", model.L1, true), event("shelve:9h"), pol,
			"alerting: shelving longer than the limit: 9h0m0s asked, at most 8h0m0s"},
		{startAlarm("unack_active", model.L1, true), event("shelve"), Policy{},
			"alerting: shelving longer than the limit: 30m0s asked, at most 0s"},
		{startAlarm("unack_active", model.L1, true), Event{Op: OpShelve, User: "李明远", Reason: "x", Duration: -time.Minute}, pol,
			"alerting: invalid action: shelving needs a positive duration, not -1m0s"},
		{startAlarm("suppressed/unack_active", model.L1, true), event("ack"), pol,
			"alerting: alarm is not in an ackable state: e01-GT-101.threshold_high.1 is suppressed"},
		{startAlarm("shelved/unack_active", model.L1, true), event("shelve"), pol,
			"alerting: alarm is not in a state that can be shelved: e01-GT-101.threshold_high.1 is shelved"},
		{startAlarm("normal", model.L1, true), event("shelve"), pol,
			"alerting: alarm is not in a state that can be shelved: e01-GT-101.threshold_high.1 is normal (ended)"},
		{startAlarm("unack_active", model.L1, true), event("unshelve"), pol,
			"alerting: alarm is not shelved: e01-GT-101.threshold_high.1 is unack_active"},
		{startAlarm("suppressed/unack_active", model.L1, true), event("suppress"), pol,
			"alerting: the action does not apply to the alarm's state: e01-GT-101.threshold_high.1 is suppressed already"},
		{startAlarm("unack_active", model.L1, true), event("suppress:bad_reason"), pol,
			`alerting: invalid action: suppression by design is for "suspended" or "maintenance", not "holiday"`},
	} {
		if _, ch := Next(c.a, c.ev, tNow, c.pol); ch.Err == nil || ch.Err.Error() != c.want {
			t.Errorf("%s on %s:\n got %v\nwant %s", c.ev.Op, specOf(c.a), ch.Err, c.want)
		}
	}
}
