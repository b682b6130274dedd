package alerting

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"hazardwatch/internal/model"
)

// Sentinel errors the API maps to statuses. The narrower ones also match
// their family with errors.Is: ErrNotAckable, ErrNotShelvable and
// ErrNotShelved are ErrWrongState; ErrShelveTooLong is ErrInvalid.
var (
	// ErrNotFound: no alarm has that id (404).
	ErrNotFound = errors.New("alerting: no such alarm")
	// ErrWrongState: the action does not apply to the alarm in its state,
	// e.g. suppressing an alarm that is suppressed already (409).
	ErrWrongState = errors.New("alerting: the action does not apply to the alarm's state")
	// ErrNotAckable: the alarm is not in a state an acknowledgement
	// applies to (409).
	ErrNotAckable error = &subError{"alerting: alarm is not in an ackable state", ErrWrongState}
	// ErrNotShelvable: only an alarm the operator sees (unack_active,
	// ack_active, unack_rtn) can be shelved (409).
	ErrNotShelvable error = &subError{"alerting: alarm is not in a state that can be shelved", ErrWrongState}
	// ErrNotShelved: an unshelve of an alarm that is not shelved (409).
	ErrNotShelved error = &subError{"alerting: alarm is not shelved", ErrWrongState}
	// ErrFeedbackGiven: feedback for an alarm that has it already (409).
	ErrFeedbackGiven error = &subError{"alerting: feedback already given", ErrWrongState}
	// ErrInvalid: the action itself is malformed, e.g. no user (400).
	ErrInvalid = errors.New("alerting: invalid action")
	// ErrShelveTooLong: a shelf longer than the policy's limit (400).
	ErrShelveTooLong error = &subError{"alerting: shelving longer than the limit", ErrInvalid}
	// ErrStopped: the Manager is not running (503).
	ErrStopped = errors.New("alerting: manager stopped")
)

// subError is a sentinel that also matches its family.
type subError struct {
	msg    string
	family error
}

func (e *subError) Error() string        { return e.msg }
func (e *subError) Is(target error) bool { return target == e.family }

// Why an alarm is suppressed by design (SPEC §4): the enterprise's status
// is suspended (停产/检修), or a planned maintenance window is open.
const (
	SuppressSuspended   = "suspended"
	SuppressMaintenance = "maintenance"
)

// Op is what an event asks of an alarm: the input of Next.
type Op uint8

const (
	OpNone Op = iota
	// OpRaise: the condition holds (a transition with Active set).
	OpRaise
	// OpLevelChange: the condition holds at another level or limit.
	OpLevelChange
	// OpReturn: the condition ended (a transition with Active unset).
	OpReturn
	// OpAck: an operator acknowledges (or resets a latched alarm).
	OpAck
	// OpShelve: an operator hides the alarm for Event.Duration, with
	// Event.Reason.
	OpShelve
	// OpUnshelve: an operator ends the shelf by hand.
	OpUnshelve
	// OpShelfExpired: the shelf's timer, due at Event.Due, has run out.
	OpShelfExpired
	// OpSuppress: suppressed by design, Event.Reason saying why
	// (SuppressSuspended or SuppressMaintenance).
	OpSuppress
	// OpUnsuppress: the suppression ends.
	OpUnsuppress
	// OpRemoveFromService: the alarm is taken out of service (an
	// instrument under maintenance), with Event.Reason.
	OpRemoveFromService
	// OpReturnToService: it is back in service.
	OpReturnToService
	// OpFeedback: the enterprise reports its handling (处置反馈):
	// Event.Cause and Event.Action.
	OpFeedback
	// OpEscalate: the escalation ladder's timer, due at Event.Due: the next
	// step or a reminder.
	OpEscalate
	// OpFeedbackDue: the feedback limit, due at Event.Due, has passed.
	OpFeedbackDue
	numOps
)

var opNames = [numOps]string{"", "raise", "level_change", "return", "ack",
	"shelve", "unshelve", "shelf_expired", "suppress", "unsuppress", "out_of_service", "in_service",
	"feedback", "escalate", "feedback_due"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Name is what an event did, as pushed to clients (SPEC §3 WebSocket
// "event"): the outcome, not the input. Any event that ends the alarm is
// "cleared": an acknowledgement, a return, or the end of a shelf,
// suppression or out-of-service period that finds the condition over.
type Name uint8

const (
	NameNone Name = iota
	Raised
	LevelChanged
	Returned
	Acknowledged
	Cleared
	Shelved
	Unshelved
	Suppressed
	Unsuppressed
	RemovedFromService
	ReturnedToService
	// Escalated: the next step of the ladder was notified.
	Escalated
	// Reminded: the step reached was reminded.
	Reminded
	// FeedbackGiven: the enterprise reported its handling.
	FeedbackGiven
	// FeedbackOverdue: the feedback limit passed without a report; the
	// park and the county are told.
	FeedbackOverdue
	numNames
)

var nameNames = [numNames]string{"", "raised", "level_changed", "returned", "acknowledged", "cleared",
	"shelved", "unshelved", "suppressed", "unsuppressed", "out_of_service", "in_service",
	"escalated", "reminded", "feedback", "feedback_overdue"}

func (n Name) String() string {
	if n < numNames {
		return nameNames[n]
	}
	return fmt.Sprintf("name(%d)", uint8(n))
}

// Policy is what the configuration says about an alarm's behaviour.
type Policy struct {
	// Latch: the alarm never clears without an operator (gas alarms).
	Latch bool
	// SourceLevel is the GB 18218 level (1–4) of the sensor's hazard
	// source, 0 when it has none; it enters the priority.
	SourceLevel int
	// MaxShelve is the longest shelf allowed (0: shelving is refused).
	MaxShelve time.Duration
	// Suppression and OutOfService are the by-design holds on the
	// condition when it is raised: a new occurrence starts under them.
	// An open alarm keeps its own holds.
	Suppression, OutOfService Hold
	// Escalation holds the ladder's limits by priority (1-4); Contacts the
	// people of each step for this alarm's source.
	Escalation [5]model.EscalationLimits
	Contacts   [model.NumEscalationSteps][]Contact
	// Chatter: Count raises of the condition within Window is chattering
	// (off when Count < 2).
	Chatter model.Window
}

// Change is what Next did.
type Change struct {
	// Name is the event to record and push; NameNone when nothing changed
	// (a duplicate raise, a return of an alarm that is not active, a shelf
	// timer that is stale) or the action was refused.
	Name     Name
	From, To model.AlarmState
	// Ring: annunciate (sound, banner). Never for late data, for a level
	// going down, an acknowledgement or a return, nor while the alarm is
	// held (shelved, suppressed, out of service), nor for a chattering
	// alarm raised again; the end of a hold rings when it shows an
	// unacknowledged active alarm.
	Ring bool
	// Notified are the people this event notifies: the step reached when
	// it rings, the next step when it escalates, the step reached when it
	// reminds, the park and the county when feedback is overdue.
	Notified []Contact
	// Err is set when an action is refused: ErrInvalid, ErrShelveTooLong,
	// ErrWrongState, ErrNotAckable, ErrNotShelvable or ErrNotShelved,
	// wrapped.
	Err error
}

// Next is the alarm state machine: the alarm a after event ev at now under
// pol, and what changed. It is pure: same inputs, same result. Rule events
// take their time from ev.TS (the reading's), operator actions from now.
// Next does not touch History; the Manager appends the event once it is
// durable. When nothing changes or the action is refused, a comes back as
// it was.
//
// a is the alarm's latest occurrence, in state normal when there is none
// open; a raise of a normal alarm opens a new occurrence with a new ID.
// Under a hold (shelf, suppression, out of service) the rule events move
// the state underneath (Alarm.Base) and the alarm shows the hold's state;
// see the package documentation for what each hold's end shows.
func Next(a Alarm, ev Event, now time.Time, pol Policy) (Alarm, Change) {
	ch := Change{From: a.State, To: a.State}
	at := ev.TS
	if at.IsZero() {
		at = now
	}
	prev := a
	// Work on the ISA-18.2 state underneath any hold; show() puts the
	// hold's state on top again.
	a.State = a.base()
	var err error
	switch ev.Op {
	case OpRaise, OpLevelChange:
		ch.Name, ch.Ring = onRaise(&a, ev, at, pol)
	case OpReturn:
		ch.Name = onReturn(&a, ev, at, pol)
	case OpAck:
		ch.Name, err = ack(&a, prev, ev, now)
	case OpShelve:
		ch.Name, err = shelve(&a, prev, ev, now, pol)
	case OpUnshelve, OpShelfExpired:
		ch.Name, ch.Ring, err = unshelve(&a, prev, ev, now)
	case OpSuppress, OpRemoveFromService:
		ch.Name, err = hold(&a, prev, ev, now)
	case OpUnsuppress, OpReturnToService:
		ch.Name, ch.Ring, err = release(&a, prev, ev, now)
	case OpFeedback:
		ch.Name, err = feedback(&a, prev, ev, now)
	case OpEscalate:
		ch.Name, ch.Notified = escalate(&a, ev, now, pol)
	case OpFeedbackDue:
		ch.Name, ch.Notified = feedbackDue(&a, ev, now, pol)
	default:
		err = fmt.Errorf("%w: unknown op %s", ErrInvalid, ev.Op)
	}
	if err != nil || ch.Name == NameNone {
		ch.Err = err
		return prev, ch
	}
	a.show()
	ch.Ring = ch.Ring && !a.Held()
	if n := ladder(&a, prev, now, ch.Ring, pol); n != nil {
		ch.Notified = n
	}
	ch.To = a.State
	return a, ch
}

// onRaise handles a raise or a level change: the condition holds.
func onRaise(a *Alarm, ev Event, at time.Time, pol Policy) (Name, bool) {
	switch {
	case a.State == model.StateNormal && !a.Held():
		// A level change that finds no open alarm is a raise: the
		// condition holds, and dropping it would hide it.
		n := noteRaise(a, at, pol.Chatter)
		*a = open(*a, ev, at, pol)
		if chattering(n, pol.Chatter) {
			// The raises that make it chatter are counted in it.
			a.Chattering, a.Count = true, n
		}
		return Raised, !ev.Late
	case !a.Active:
		// unack_rtn, a latched alarm waiting for its reset, or (under a
		// hold) an episode that had ended: the same occurrence alarms
		// again and must be acknowledged again.
		a.Count++
		a.Chattering = chattering(noteRaise(a, at, pol.Chatter), pol.Chatter) || a.Chattering
		a.Active, a.Late, a.ReturnedAt = true, ev.Late, time.Time{}
		setCondition(a, ev, pol)
		if a.Chattering && a.State == model.StateAckActive {
			// Grouped: a chattering alarm someone acknowledged is not
			// owed a new acknowledgement each time it comes back.
			return Raised, false
		}
		if a.State == model.StateNormal && a.byDesign() {
			// A new episode that starts under a suppression or out of
			// service: if it also ends there, nobody owes it an
			// acknowledgement (see release).
			a.Unshown = true
		}
		a.State = model.StateUnackActive
		a.AckedAt, a.AckedBy = time.Time{}, ""
		return Raised, !ev.Late && !a.Chattering
	case ev.Level == a.Level && ev.Limit == a.Limit:
		return NameNone, false // already known
	}
	up := ev.Level > a.Level
	setCondition(a, ev, pol)
	if up && a.State == model.StateAckActive {
		// An acknowledged L1 that reaches L2 is a new situation for the
		// operator: it needs a new acknowledgement.
		a.State = model.StateUnackActive
		a.AckedAt, a.AckedBy = time.Time{}, ""
	}
	return LevelChanged, up && !ev.Late
}

// onReturn handles a return: the condition ended.
func onReturn(a *Alarm, ev Event, at time.Time, pol Policy) Name {
	if a.State == model.StateNormal || !a.Active {
		return NameNone
	}
	a.Active, a.ReturnedAt, a.Value = false, at, ev.Value
	switch {
	case a.State == model.StateUnackActive:
		a.State = model.StateUnackRTN
		return Returned
	case pol.Latch, a.Chattering:
		return Returned // ack_active: latched or grouped, waits for its reset
	case a.Held():
		// Over underneath; the alarm itself ends when its hold does.
		a.State = model.StateNormal
		return Returned
	}
	a.State, a.ClearedAt = model.StateNormal, at
	return Cleared
}

func ack(a *Alarm, prev Alarm, ev Event, now time.Time) (Name, error) {
	if ev.User == "" {
		return NameNone, fmt.Errorf("%w: an acknowledgement needs a user", ErrInvalid)
	}
	switch {
	case a.Held():
		// A held alarm is not shown: what it owes is decided when its
		// hold ends.
	case a.State == model.StateUnackActive:
		a.State, a.AckedAt, a.AckedBy = model.StateAckActive, now, ev.User
		return Acknowledged, nil
	case a.State == model.StateUnackRTN:
		a.State, a.AckedAt, a.AckedBy = model.StateNormal, now, ev.User
		a.ClearedAt, a.ClearedBy = now, ev.User
		return Cleared, nil
	case a.State == model.StateAckActive && !a.Active:
		// The reset of a latched alarm whose condition has ended.
		a.State, a.ClearedAt, a.ClearedBy = model.StateNormal, now, ev.User
		return Cleared, nil
	}
	return NameNone, fmt.Errorf("%w: %s is %s", ErrNotAckable, prev.ID, describe(prev))
}

func shelve(a *Alarm, prev Alarm, ev Event, now time.Time, pol Policy) (Name, error) {
	switch {
	case ev.User == "" || strings.TrimSpace(ev.Reason) == "":
		return NameNone, fmt.Errorf("%w: shelving needs a user and a reason", ErrInvalid)
	case ev.Duration <= 0:
		return NameNone, fmt.Errorf("%w: shelving needs a positive duration, not %s", ErrInvalid, ev.Duration)
	case ev.Duration > pol.MaxShelve:
		return NameNone, fmt.Errorf("%w: %s asked, at most %s", ErrShelveTooLong, ev.Duration, pol.MaxShelve)
	case a.Held(), a.State == model.StateNormal:
		return NameNone, fmt.Errorf("%w: %s is %s", ErrNotShelvable, prev.ID, describe(prev))
	}
	a.Shelf = Hold{At: now, Until: now.Add(ev.Duration), By: ev.User, Reason: ev.Reason}
	return Shelved, nil
}

// unshelve ends a shelf, by hand or by its timer (ISA-18.2 §11.7.3): by
// hand the alarm comes back acknowledged by whoever unshelved it; by the
// timer it comes back unacknowledged. Either applies only when the alarm
// comes back into view: under a suppression or out of service the state
// underneath is left for that hold's end.
func unshelve(a *Alarm, prev Alarm, ev Event, now time.Time) (Name, bool, error) {
	timer := ev.Op == OpShelfExpired
	switch {
	case timer && (!a.Shelf.On() || !a.Shelf.Until.Equal(ev.Due) || now.Before(ev.Due)):
		// A timer of an earlier shelf, or early: nothing to do.
		return NameNone, false, nil
	case !timer && ev.User == "":
		return NameNone, false, fmt.Errorf("%w: unshelving needs a user", ErrInvalid)
	case !a.Shelf.On():
		return NameNone, false, fmt.Errorf("%w: %s is %s", ErrNotShelved, prev.ID, describe(prev))
	}
	a.Shelf = Hold{}
	switch {
	case a.Held():
		return Unshelved, false, nil
	case timer:
		a.State = model.StateUnackRTN
		if a.Active {
			a.State = model.StateUnackActive
		}
		a.AckedAt, a.AckedBy = time.Time{}, ""
		return Unshelved, a.Active, nil
	}
	switch a.State {
	case model.StateUnackActive:
		a.State, a.AckedAt, a.AckedBy = model.StateAckActive, now, ev.User
	case model.StateUnackRTN:
		a.State, a.AckedAt, a.AckedBy = model.StateNormal, now, ev.User
	}
	if a.State == model.StateNormal {
		a.ClearedAt, a.ClearedBy = now, ev.User
		return Cleared, false, nil
	}
	return Unshelved, false, nil
}

// hold starts a suppression or an out-of-service period.
func hold(a *Alarm, prev Alarm, ev Event, now time.Time) (Name, error) {
	h, name, what := &a.Suppression, Suppressed, "suppressed"
	if ev.Op == OpRemoveFromService {
		h, name, what = &a.OutOfService, RemovedFromService, "out of service"
	}
	switch {
	case ev.Op == OpSuppress && ev.Reason != SuppressSuspended && ev.Reason != SuppressMaintenance:
		return NameNone, fmt.Errorf("%w: suppression by design is for %q or %q, not %q",
			ErrInvalid, SuppressSuspended, SuppressMaintenance, ev.Reason)
	case ev.Op == OpRemoveFromService && (ev.User == "" || strings.TrimSpace(ev.Reason) == ""):
		return NameNone, fmt.Errorf("%w: taking an alarm out of service needs a user and a reason", ErrInvalid)
	case h.On():
		return NameNone, fmt.Errorf("%w: %s is %s already", ErrWrongState, prev.ID, what)
	case a.State == model.StateNormal && !a.Held():
		return NameNone, fmt.Errorf("%w: %s has ended", ErrWrongState, prev.ID)
	}
	*h = Hold{At: now, By: ev.User, Reason: ev.Reason}
	return name, nil
}

// release ends a suppression or an out-of-service period. The alarm shows
// the state underneath, which rule events kept up to date, except that an
// episode which began and ended wholly under these holds (Unshown) is not
// owed an acknowledgement: it was expected (a plant stopped, an instrument
// being calibrated), and its events are in the history.
func release(a *Alarm, prev Alarm, ev Event, now time.Time) (Name, bool, error) {
	h, name, what := &a.Suppression, Unsuppressed, "suppressed"
	if ev.Op == OpReturnToService {
		h, name, what = &a.OutOfService, ReturnedToService, "out of service"
		if ev.User == "" {
			return NameNone, false, fmt.Errorf("%w: returning an alarm to service needs a user", ErrInvalid)
		}
	}
	if !h.On() {
		return NameNone, false, fmt.Errorf("%w: %s is not %s", ErrWrongState, prev.ID, what)
	}
	*h = Hold{}
	if !a.byDesign() {
		if a.Unshown && !a.Active {
			a.State = model.StateNormal
		}
		a.Unshown = false
	}
	switch {
	case a.Held():
		return name, false, nil
	case a.State == model.StateNormal:
		a.ClearedAt, a.ClearedBy = now, ev.User
		return Cleared, false, nil
	}
	return name, a.State == model.StateUnackActive, nil
}

func describe(a Alarm) string {
	switch {
	case a.State == model.StateAckActive && a.Active:
		return "acknowledged and still active"
	case a.State == model.StateNormal:
		return "normal (ended)"
	}
	return a.State.String()
}

// open starts a new occurrence of the condition that a was the last of.
func open(a Alarm, ev Event, at time.Time, pol Policy) Alarm {
	a.Occurrence++
	// An occurrence is named after its sensor, a gateway's own condition
	// (silence) after its gateway.
	name := a.Source.Sensor
	if name == "" {
		name = a.Source.Gateway
	}
	a.ID = alarmID(name, a.Rule, a.Occurrence)
	a.State, a.Active, a.Latch, a.Late = model.StateUnackActive, true, pol.Latch, ev.Late
	a.RaisedAt = at
	a.AckedAt, a.ReturnedAt, a.ClearedAt = time.Time{}, time.Time{}, time.Time{}
	a.AckedBy, a.ClearedBy = "", ""
	a.Shelf, a.Suppression, a.OutOfService = Hold{}, pol.Suppression, pol.OutOfService
	a.Unshown = a.byDesign()
	a.Escalation, a.Feedback, a.FeedbackDue, a.FeedbackOverdue = Escalation{}, Feedback{}, time.Time{}, false
	a.Count, a.Chattering = 1, false
	a.History = nil
	setCondition(&a, ev, pol)
	return a
}

// noteRaise records a raise of the condition at its reading time and
// returns how many raises, this one included, fall within w.Window of it.
// Readings come in order per sensor, but late data may interleave, so a
// raise counts when it is within the window either way.
func noteRaise(a *Alarm, at time.Time, w model.Window) int {
	n := 1
	for _, t := range a.Raises[:min(max(w.Count-1, 0), maxRaises)] {
		if d := at.Sub(t); !t.IsZero() && d < w.Window && d > -w.Window {
			n++
		}
	}
	copy(a.Raises[1:], a.Raises[:maxRaises-1])
	a.Raises[0] = at
	return n
}

// chattering says whether n raises within the window are chattering.
func chattering(n int, w model.Window) bool { return w.Count >= 2 && n >= w.Count }

func setCondition(a *Alarm, ev Event, pol Policy) {
	a.Level, a.Value, a.Limit = ev.Level, ev.Value, ev.Limit
	a.ETA, a.Reason = ev.ETA, ev.Reason
	a.LimitKind = ev.LimitKind
	if a.LimitKind == "" {
		a.LimitKind = limitKindOf(a.Rule, a.Level)
	}
	a.Priority = Priority(a.Class, a.Level, pol.SourceLevel)
	a.Message = message(a, ev.TS)
}
