// Package alerting owns alarms: the pure ISA-18.2 state machine (Next),
// the one goroutine that holds every alarm's state (Manager), and the
// durable log of alarm events (Log, with a JetStream implementation).
//
// The flow is one way. Transitions from package rules and operator actions
// from the API reach the Manager over channels; the Manager applies Next,
// gives the resulting event its sequence numbers, writes it to the Log and
// waits until it is durable, and only then changes its state, answers the
// operator and pushes the event to subscribers (WebSocket, history,
// escalation). A restart replays the Log, so every alarm comes back in its
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
// Events found in late data (SPEC §2) go through the same table, keep their
// own timestamps and mark the alarm late, but never ring: Change.Ring is
// false, so nothing sounds and no escalation starts in the past. A late
// raise followed by a late return ends in unack_rtn, late, for an operator
// to acknowledge.
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
package alerting
