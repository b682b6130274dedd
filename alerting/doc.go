// Package alerting owns alarms: the pure ISA-18.2 state machine (Next)
// with the escalation ladder, feedback and chattering in it, the one
// goroutine that holds every alarm's state and timers (Manager), flood
// detection and the duty report's KPIs, and the durable log of alarm
// events (Log, with a JetStream implementation; group commit). Package
// alerting/notify sends what the events notify.
//
// The flow is one way. Transitions from package rules and actions (an
// operator's acknowledgement or shelf, a suppression, out of service) reach
// the Manager over channels; the Manager applies Next, gives the resulting
// event its sequence numbers, writes it to the Log and waits until it is
// durable, and only then changes its state, answers the operator and
// pushes the event to subscribers (WebSocket, history, escalation). A restart replays the Log, so every alarm comes back in its
// state with its history, and the sequence numbers continue.
//
// # States and latching
//
// An alarm is one occurrence of one condition (sensor, rule): it starts
// when a raise finds it normal and ends when it is back to normal; the next
// raise opens a new occurrence with a new id (sensor.rule.n). Apart from its
// ISA-18.2 state an alarm records whether its condition holds now (Active):
// a latched alarm can be acknowledged and still waiting for the operator
// after its condition ended.
//
//	state         event          non-latched          latched (gas)
//	normal        raise          unack_active         unack_active
//	unack_active  return         unack_rtn            unack_rtn
//	unack_active  ack            ack_active           ack_active
//	ack_active    return         normal (cleared)     ack_active, condition ended: waits for reset
//	ack_active*   ack (reset)    —                    normal (cleared)
//	unack_rtn     ack            normal (cleared)     normal (cleared)
//	unack_rtn     raise          unack_active         unack_active (same occurrence)
//	active        level up       unack_active         unack_active (a higher level needs a new ack)
//	active        level down     unchanged            unchanged
//
// (* ack_active whose condition has ended.) Both kinds keep an
// unacknowledged return annunciated as unack_rtn until someone acknowledges
// it (ISA-18.2's "returned to normal unacknowledged"; SPEC §2 shows late
// alarms that way). The difference is what happens after an
// acknowledgement: a non-latched alarm clears by itself when its condition
// ends; a latched one never clears without an operator: acknowledged while
// the gas was there, it waits for a second acknowledgement, the reset of a
// GDS panel (复位), once the gas is gone. So no gas alarm disappears from the
// control room without someone having seen that it ended (DOMAIN.md, gas
// alarms latch). Acknowledging anything else (a normal alarm, an
// acknowledged alarm whose condition still holds) is ErrNotAckable (409).
//
// Beside the table: a chattering alarm (raised Policy.Chatter.Count times
// within its window) returns like a latched one, and raised again while
// acknowledged it stays acknowledged, without ringing (its Count grows).
// Feedback (OpFeedback) is taken once, when the alarm is not waiting for
// an acknowledgement (ErrWrongState otherwise). The escalation and feedback
// timers (OpEscalate, OpFeedbackDue) change no state: they move the ladder
// (escalation.go) and mark feedback overdue.
//
// Events found in late data (SPEC §2) go through the same table, keep their
// own timestamps and mark the alarm late, but never ring: Change.Ring is
// false, so nothing sounds and no escalation starts in the past. A late
// raise followed by a late return ends in unack_rtn, late, for an operator
// to acknowledge.
//
// # Holds: shelved, suppressed, out of service
//
// Three holds take an alarm out of the operator's view (ISA-18.2): a shelf
// (an operator's, timed, with a reason, at most Policy.MaxShelve, 8 h by
// default), a suppression by design (the enterprise's status is suspended,
// or a planned maintenance window: Event.Reason says which) and out of
// service (an instrument under maintenance, with a reason). Each is a Hold
// on the alarm; they may be on together, and the state shown is the
// strongest: out_of_service, then suppressed, then shelved. Underneath,
// Alarm.Base keeps the ISA-18.2 state and Active the condition:
//
//   - Rule events (raise, level change, return) go on underneath by the
//     table above and are recorded with their usual names, so that the end
//     of the hold shows the true state and a restart rebuilds it; they never
//     ring. A return underneath that would clear the alarm leaves the base
//     normal but the alarm open (the hold is on this occurrence, so a raise
//     before the hold ends is the same alarm again, not a new one).
//   - An acknowledgement is refused (ErrNotAckable): the alarm is not shown,
//     and the end of the hold decides what is owed.
//   - Only an alarm that is shown (unack_active, ack_active, unack_rtn) can
//     be shelved (ErrNotShelvable otherwise, also when shelved already: a
//     shelf is not extended, it is ended and set again, each time with its
//     reason); a shelf longer than the limit is ErrShelveTooLong. A
//     suppression or out of service applies to any open alarm, shelved ones
//     too; the same hold twice is ErrWrongState, and so is any hold of an
//     alarm that has ended.
//
// What the end of each hold shows, when no other hold is left on:
//
//	unshelve by hand      acknowledged by whoever unshelved it: unack_active → ack_active;
//	                      unack_rtn, or an episode that ended underneath (non-latched) → normal (cleared);
//	                      a latched alarm whose gas has gone stays ack_active for its reset
//	shelf timer           unacknowledged (ISA-18.2 §11.7.3): unack_active (rings) when the
//	                      condition holds, else unack_rtn, whatever was acknowledged before
//	unsuppress,           the state underneath as it is (unack_active rings); but an episode
//	return to service     that began and ended wholly while suppressed or out of service
//	                      (Alarm.Unshown) is owed nothing: the alarm ends (cleared)
//
// The end of a shelf while a suppression or out of service is still on only
// removes the shelf: the state underneath is left for that hold's end, so
// nobody is taken to have acknowledged what they could not see. An end that
// leaves the alarm normal is pushed as "cleared" (an event's name is its
// outcome); its op says which hold ended.
//
// Why episodes inside a suppression or out of service are owed nothing:
// these holds are planned (a stopped plant, an instrument being calibrated
// with test gas), and after a long one every alarm that came and went would
// otherwise wait for an acknowledgement at once, a flood that hides the
// alarm that matters. What was owed before the hold stays owed, and what
// still holds at its end is shown and rings. Every event underneath is in
// the alarm's history and the log, for the duty report.
//
// A new occurrence opens under the by-design holds its Policy carries
// (Policy.Suppression, Policy.OutOfService): the holds of a scope (an
// enterprise, a sensor) rather than of an open alarm. The Manager passes
// none yet; the API that sets them comes later.
//
// The Manager owns the shelf timers: the end of each shelf, earliest first,
// on its clock. A shelf's event is durable with its due time, so a restart
// rebuilds the timers from the log; one that fell due while the centre was
// down fires before Ready, its event carrying the time it was due (Due)
// beside the time it was handled (At).
//
// # Priority
//
// Priority 1 (highest) to 4, from class, level and the hazard source's
// GB 18218 level (1 most hazardous; 0 when the sensor belongs to no hazard
// source):
//
//	                          source level 1–2    level 3–4 or none
//	alarm L2, violation               1                   1
//	alarm L1                          2                   3
//	prewarning, fault, offline        3                   4
//
// An L2 (second-level) alarm and a violation are top priority wherever they
// are: GB/T 50493's second level means act now. Below that, sources of
// levels 1–2 (重大/较大) rank one step higher. Within a priority, Active
// lists toxic gas before the rest (DOMAIN.md: of two alarms of one level
// the toxic one ranks first), then the newest first.
//
// # Sequence numbers and durability
//
// The Manager assigns every event, in its one goroutine, the next global
// sequence number and the next number in its enterprise, its park and its
// county (SPEC §3: a WebSocket client resumes by them), stores them in the
// event and rebuilds the counters from the Log at start. A number is used
// only once the event is durable, so the counters have no gaps. An event
// that cannot be made durable is retried, with backoff, until it is or the
// Manager stops; nothing after it is processed meanwhile, so no number is
// ever given to two different events.
//
// The Manager also keeps the latest durable events (Options.Recent, 10 000
// by default: a bounded ring, filled from the Log at start and then live)
// and hands them out with the snapshot of SubscribeSnapshot, under the
// lock that takes the snapshot and adds the subscriber: the events before
// the snapshot's seq and those on the channel after it join without a gap
// or a repeat. The WebSocket hub seeds its resume ring with them, so a
// client resumes across a restart of the centre.
package alerting
