package alerting

import (
	"errors"
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// Sentinel errors the API maps to statuses.
var (
	// ErrNotFound: no alarm has that id (404).
	ErrNotFound = errors.New("alerting: no such alarm")
	// ErrNotAckable: the alarm is not in a state an acknowledgement
	// applies to (409).
	ErrNotAckable = errors.New("alerting: alarm is not in an ackable state")
	// ErrInvalid: the action itself is malformed, e.g. no user (400).
	ErrInvalid = errors.New("alerting: invalid action")
	// ErrStopped: the Manager is not running (503).
	ErrStopped = errors.New("alerting: manager stopped")
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
	numOps
)

var opNames = [numOps]string{"", "raise", "level_change", "return", "ack"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Name is what an event did, as pushed to clients (SPEC §3 WebSocket
// "event"): the outcome, not the input. An acknowledgement that ends the
// alarm is "cleared"; so is a return that ends it.
type Name uint8

const (
	NameNone Name = iota
	Raised
	LevelChanged
	Returned
	Acknowledged
	Cleared
	numNames
)

var nameNames = [numNames]string{"", "raised", "level_changed", "returned", "acknowledged", "cleared"}

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
}

// Change is what Next did.
type Change struct {
	// Name is the event to record and push; NameNone when nothing changed
	// (a duplicate raise, a return of an alarm that is not active) or the
	// action was refused.
	Name     Name
	From, To model.AlarmState
	// Ring: annunciate (sound, banner, start escalation). Never for late
	// data, never for a level going down, acknowledgement or return.
	Ring bool
	// Err is set when an operator action is refused: ErrNotAckable or
	// ErrInvalid, wrapped.
	Err error
}

// Next is the alarm state machine: the alarm a after event ev at now under
// pol, and what changed. It is pure: same inputs, same result. Rule events
// take their time from ev.TS (the reading's), operator actions from now.
// Next does not touch History; the Manager appends the event once it is
// durable.
//
// a is the alarm's latest occurrence, in state normal when there is none
// open; a raise of a normal alarm opens a new occurrence with a new ID.
func Next(a Alarm, ev Event, now time.Time, pol Policy) (Alarm, Change) {
	ch := Change{From: a.State, To: a.State}
	at := ev.TS
	if at.IsZero() {
		at = now
	}
	switch ev.Op {
	case OpRaise, OpLevelChange:
		switch {
		case a.State == model.StateNormal:
			// A level change that finds no open alarm is a raise: the
			// condition holds, and dropping it would hide it.
			a = open(a, ev, at, pol)
			ch.Name, ch.Ring = Raised, !ev.Late
		case !a.Active:
			// unack_rtn, or a latched alarm waiting for its reset: the
			// same occurrence alarms again and must be acknowledged again.
			a.State, a.Active, a.Late = model.StateUnackActive, true, ev.Late
			a.AckedAt, a.AckedBy = time.Time{}, ""
			a.ReturnedAt = time.Time{}
			setCondition(&a, ev, pol)
			ch.Name, ch.Ring = Raised, !ev.Late
		case ev.Level == a.Level && ev.Limit == a.Limit:
			return a, ch // already known
		default:
			up := ev.Level > a.Level
			setCondition(&a, ev, pol)
			if up && a.State == model.StateAckActive {
				// An acknowledged L1 that reaches L2 is a new situation
				// for the operator: it needs a new acknowledgement.
				a.State = model.StateUnackActive
				a.AckedAt, a.AckedBy = time.Time{}, ""
			}
			ch.Name, ch.Ring = LevelChanged, up && !ev.Late
		}
	case OpReturn:
		if a.State == model.StateNormal || !a.Active {
			return a, ch
		}
		a.Active, a.ReturnedAt, a.Value = false, at, ev.Value
		switch {
		case a.State == model.StateUnackActive:
			a.State, ch.Name = model.StateUnackRTN, Returned
		case pol.Latch:
			ch.Name = Returned // ack_active: latched, waits for its reset
		default:
			a.State, a.ClearedAt, ch.Name = model.StateNormal, at, Cleared
		}
	case OpAck:
		if ev.User == "" {
			ch.Err = fmt.Errorf("%w: an acknowledgement needs a user", ErrInvalid)
			return a, ch
		}
		switch {
		case a.State == model.StateUnackActive:
			a.State, a.AckedAt, a.AckedBy = model.StateAckActive, now, ev.User
			ch.Name = Acknowledged
		case a.State == model.StateUnackRTN:
			a.State, a.AckedAt, a.AckedBy = model.StateNormal, now, ev.User
			a.ClearedAt, a.ClearedBy = now, ev.User
			ch.Name = Cleared
		case a.State == model.StateAckActive && !a.Active:
			// The reset of a latched alarm whose condition has ended.
			a.State, a.ClearedAt, a.ClearedBy = model.StateNormal, now, ev.User
			ch.Name = Cleared
		default:
			ch.Err = fmt.Errorf("%w: %s is %s", ErrNotAckable, a.ID, describe(a))
			return a, ch
		}
	default:
		ch.Err = fmt.Errorf("%w: unknown op %s", ErrInvalid, ev.Op)
		return a, ch
	}
	ch.To = a.State
	return a, ch
}

func describe(a Alarm) string {
	if a.State == model.StateAckActive {
		return "acknowledged and still active"
	}
	return a.State.String()
}

// open starts a new occurrence of the condition that a was the last of.
func open(a Alarm, ev Event, at time.Time, pol Policy) Alarm {
	a.Occurrence++
	a.ID = alarmID(a.Source.Sensor, a.Rule, a.Occurrence)
	a.State, a.Active, a.Latch, a.Late = model.StateUnackActive, true, pol.Latch, ev.Late
	a.RaisedAt = at
	a.AckedAt, a.ReturnedAt, a.ClearedAt = time.Time{}, time.Time{}, time.Time{}
	a.AckedBy, a.ClearedBy = "", ""
	a.History = nil
	setCondition(&a, ev, pol)
	return a
}

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
