package alerting

import (
	"encoding/json"
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// Event is one thing that happened to one alarm. The input half (Op and
// what came with it) is what Next takes; the Manager fills the outcome half
// and the sequence numbers and makes it durable. The log, the push to
// subscribers and an alarm's history are all made of Events.
type Event struct {
	Op Op
	// From a rule transition: the level and limit now in force, the value
	// that decided, the reading's time and its late mark; a prediction's
	// ETA, a fault's quality reason.
	Level        model.AlarmLevel
	Value, Limit float64
	LimitKind    string
	TS           time.Time
	Late         bool
	ETA          time.Time
	// Reason: a fault's quality reason (from a rule); why an alarm is
	// shelved, suppressed (SuppressSuspended, SuppressMaintenance) or
	// taken out of service (from those actions).
	Reason string
	// From an operator (or, for a suppression, the system when empty).
	User, Comment string
	// Cause and Action: an enterprise's feedback (处置反馈).
	Cause, Action string
	// Duration: how long a shelf is to last.
	Duration time.Duration
	// Due: the end of a shelf: set by the Manager on the event that
	// shelves, and on the shelf timer's event, the time it was due (which
	// is earlier than At when it fell due while the centre was down); the
	// same for the escalation's and the feedback's timers.
	Due time.Time
	// Notified are the people the event notifies (Change.Notified).
	Notified []Contact

	// Name is what the event did; At when the centre handled it.
	Name Name
	At   time.Time
	// Ring: annunciate it (see Change.Ring).
	Ring bool
	// Alarm is the alarm after the event, without its history.
	Alarm Alarm
	// Seq is assigned by the Manager when the event is made durable.
	Seq Seqs
	// LogSeq is the event's position in the Log (the JetStream stream
	// sequence); set by Append and Replay, not stored in the event.
	LogSeq uint64
}

// Seqs are an event's sequence numbers: overall and within its scopes
// (SPEC §3 WebSocket). Each counts the events in its scope from 1, without
// gaps, across restarts.
type Seqs struct {
	Global, Enterprise, Park, County uint64
}

// eventVersion is the layout of an event in the log; a reader refuses a
// newer one rather than misread it.
const eventVersion = 1

type eventJSON struct {
	V             int        `json:"v"`
	Seq           uint64     `json:"seq"`
	SeqEnterprise uint64     `json:"seq_enterprise"`
	SeqPark       uint64     `json:"seq_park"`
	SeqCounty     uint64     `json:"seq_county"`
	Event         string     `json:"event"`
	Op            string     `json:"op"`
	At            time.Time  `json:"at"`
	TS            *time.Time `json:"ts,omitempty"`
	Level         string     `json:"level,omitempty"`
	Value         float64    `json:"value"`
	Limit         float64    `json:"limit"`
	LimitKind     string     `json:"limit_kind,omitempty"`
	Late          bool       `json:"late,omitempty"`
	ETA           *time.Time `json:"eta,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	Ring          bool       `json:"ring,omitempty"`
	User          string     `json:"user,omitempty"`
	Comment       string     `json:"comment,omitempty"`
	Duration      string     `json:"duration,omitempty"`
	Due           *time.Time `json:"due_at,omitempty"`
	Cause         string     `json:"cause,omitempty"`
	Action        string     `json:"action,omitempty"`
	Notified      []Contact  `json:"notified,omitempty"`
	Alarm         alarmJSON  `json:"alarm"`
}

// MarshalJSON writes the event as the ALARMS stream stores it.
func (e Event) MarshalJSON() ([]byte, error) { return json.Marshal(e.wire()) }

// wire is the event as written: one plain struct, so that encoding it is
// one pass (a nested MarshalJSON would make encoding/json check and copy
// the alarm's bytes again: the log's hot spot).
func (e Event) wire() eventJSON {
	return eventJSON{
		V: eventVersion, Seq: e.Seq.Global, SeqEnterprise: e.Seq.Enterprise, SeqPark: e.Seq.Park, SeqCounty: e.Seq.County,
		Event: e.Name.String(), Op: e.Op.String(), At: e.At, TS: timePtr(e.TS),
		Level: e.Level.String(), Value: e.Value, Limit: e.Limit, LimitKind: e.LimitKind,
		Late: e.Late, ETA: timePtr(e.ETA), Reason: e.Reason, Ring: e.Ring, User: e.User, Comment: e.Comment,
		Duration: durationString(e.Duration), Due: timePtr(e.Due), Cause: e.Cause, Action: e.Action,
		Notified: e.Notified, Alarm: e.Alarm.wire(),
	}
}

// UnmarshalJSON reads an event written by MarshalJSON.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w eventJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.V != eventVersion {
		return fmt.Errorf("alarm event version %d, this build reads %d", w.V, eventVersion)
	}
	var ok [3]bool
	*e = Event{
		Seq:   Seqs{Global: w.Seq, Enterprise: w.SeqEnterprise, Park: w.SeqPark, County: w.SeqCounty},
		At:    w.At,
		TS:    timeOf(w.TS),
		Value: w.Value, Limit: w.Limit, LimitKind: w.LimitKind,
		Late: w.Late, ETA: timeOf(w.ETA), Reason: w.Reason, Ring: w.Ring, User: w.User, Comment: w.Comment,
		Due: timeOf(w.Due), Cause: w.Cause, Action: w.Action, Notified: w.Notified,
	}
	if err := e.Alarm.fromWire(&w.Alarm); err != nil {
		return err
	}
	if w.Duration != "" {
		d, err := time.ParseDuration(w.Duration)
		if err != nil {
			return fmt.Errorf("alarm event %d: duration: %w", w.Seq, err)
		}
		e.Duration = d
	}
	e.Name, ok[0] = parseEnum(w.Event, numNames, Name.String)
	e.Op, ok[1] = parseEnum(w.Op, numOps, Op.String)
	e.Level, ok[2] = parseLevel(w.Level)
	for i, what := range []string{"event " + w.Event, "op " + w.Op, "level " + w.Level} {
		if !ok[i] {
			return fmt.Errorf("alarm event %d: unknown %s", w.Seq, what)
		}
	}
	return nil
}

type alarmJSON struct {
	ID         string     `json:"id"`
	Occurrence int        `json:"occurrence"`
	Class      string     `json:"class"`
	Priority   int        `json:"priority"`
	Level      string     `json:"level,omitempty"`
	State      string     `json:"state"`
	Base       string     `json:"base_state,omitempty"`
	Shelf      *holdJSON  `json:"shelf,omitempty"`
	Suppressed *holdJSON  `json:"suppression,omitempty"`
	OOS        *holdJSON  `json:"out_of_service,omitempty"`
	Unshown    bool       `json:"unshown,omitempty"`
	Active     bool       `json:"active"`
	Latch      bool       `json:"latch"`
	Late       bool       `json:"late"`
	Source     Source     `json:"source"`
	SensorName string     `json:"sensor_name"`
	Kind       string     `json:"kind"`
	Rule       string     `json:"rule"`
	LimitKind  string     `json:"limit_kind,omitempty"`
	Value      float64    `json:"value"`
	Limit      float64    `json:"limit"`
	Unit       string     `json:"unit"`
	ETA        *time.Time `json:"eta"`
	Reason     string     `json:"reason,omitempty"`
	Message    string     `json:"message"`
	RaisedAt   *time.Time `json:"raised_at"`
	AckedAt    *time.Time `json:"acked_at"`
	AckedBy    string     `json:"acked_by"`
	ReturnedAt *time.Time `json:"returned_at"`
	ClearedAt  *time.Time `json:"cleared_at"`
	ClearedBy  string     `json:"cleared_by,omitempty"`
	// SPEC §3's escalation {step, due_at, notified}, with the ladder's
	// run (since, from, reminders) for a restart to rebuild it.
	Escalation      *escalationJSON `json:"escalation"`
	Feedback        *feedbackJSON   `json:"feedback"`
	FeedbackDue     *time.Time      `json:"feedback_due,omitempty"`
	FeedbackOverdue bool            `json:"feedback_overdue,omitempty"`
	Count           int             `json:"count,omitempty"`
	Chattering      bool            `json:"chattering,omitempty"`
	Raises          []time.Time     `json:"raises,omitempty"`
	History         []entryJSON     `json:"history,omitempty"`
}

type escalationJSON struct {
	Step      string     `json:"step"`
	DueAt     *time.Time `json:"due_at"`
	Notified  []Contact  `json:"notified"`
	Started   time.Time  `json:"started"`
	Since     *time.Time `json:"since,omitempty"`
	From      string     `json:"from,omitempty"`
	Reminders int        `json:"reminders,omitempty"`
}

type feedbackJSON struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Cause  string    `json:"cause"`
	Action string    `json:"action"`
}

type entryJSON struct {
	Seq      uint64     `json:"seq"`
	Event    string     `json:"event"`
	At       time.Time  `json:"at"`
	TS       *time.Time `json:"ts,omitempty"`
	State    string     `json:"state"`
	Level    string     `json:"level,omitempty"`
	Value    float64    `json:"value"`
	User     string     `json:"user,omitempty"`
	Comment  string     `json:"comment,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Due      *time.Time `json:"due_at,omitempty"`
	Late     bool       `json:"late,omitempty"`
	Notified []Contact  `json:"notified,omitempty"`
}

// holdJSON is a Hold that is on; an off one is left out of the alarm.
type holdJSON struct {
	At     time.Time  `json:"at"`
	Until  *time.Time `json:"until,omitempty"`
	By     string     `json:"by"`
	Reason string     `json:"reason"`
}

func holdPtr(h Hold) *holdJSON {
	if !h.On() {
		return nil
	}
	return &holdJSON{At: h.At, Until: timePtr(h.Until), By: h.By, Reason: h.Reason}
}

func holdOf(p *holdJSON) Hold {
	if p == nil {
		return Hold{}
	}
	return Hold{At: p.At, Until: timeOf(p.Until), By: p.By, Reason: p.Reason}
}

// MarshalJSON writes SPEC §3's alarm object (with a few more fields);
// times are RFC 3339, null when not reached or, for eta, when the alarm is
// not a prediction.
func (a Alarm) MarshalJSON() ([]byte, error) { return json.Marshal(a.wire()) }

func (a Alarm) wire() alarmJSON {
	w := alarmJSON{
		ID: a.ID, Occurrence: a.Occurrence, Class: a.Class.String(), Priority: a.Priority,
		Level: a.Level.String(), State: a.State.String(), Active: a.Active, Latch: a.Latch, Late: a.Late,
		Shelf: holdPtr(a.Shelf), Suppressed: holdPtr(a.Suppression), OOS: holdPtr(a.OutOfService), Unshown: a.Unshown,
		Source: a.Source, SensorName: a.SensorName, Kind: a.Kind.String(), Rule: a.Rule.String(),
		LimitKind: a.LimitKind, Value: a.Value, Limit: a.Limit, Unit: a.Unit, ETA: timePtr(a.ETA), Reason: a.Reason,
		Message: a.Message, RaisedAt: timePtr(a.RaisedAt), AckedAt: timePtr(a.AckedAt), AckedBy: a.AckedBy,
		ReturnedAt: timePtr(a.ReturnedAt), ClearedAt: timePtr(a.ClearedAt), ClearedBy: a.ClearedBy,
	}
	if a.Held() {
		w.Base = a.Base.String()
	}
	if e := a.Escalation; !e.Started.IsZero() {
		w.Escalation = &escalationJSON{Step: e.Step.String(), DueAt: timePtr(e.DueAt), Notified: e.Notified,
			Started: e.Started, Since: timePtr(e.Since), Reminders: e.Reminders}
		if e.Running() {
			w.Escalation.From = e.From.String()
		}
	}
	if f := a.Feedback; f.Given() {
		w.Feedback = &feedbackJSON{At: f.At, By: f.By, Cause: f.Cause, Action: f.Action}
	}
	w.FeedbackDue, w.FeedbackOverdue = timePtr(a.FeedbackDue), a.FeedbackOverdue
	w.Count, w.Chattering = a.Count, a.Chattering
	for i, r := range a.Raises {
		if r.IsZero() {
			w.Raises = a.Raises[:i:i]
			break
		}
		w.Raises = a.Raises[: i+1 : i+1]
	}
	for _, h := range a.History {
		w.History = append(w.History, entryJSON{
			Seq: h.Seq, Event: h.Event.String(), At: h.At, TS: timePtr(h.TS), State: h.State.String(),
			Level: h.Level.String(), Value: h.Value, User: h.User, Comment: h.Comment, Reason: h.Reason,
			Due: timePtr(h.Due), Late: h.Late, Notified: h.Notified,
		})
	}
	return w
}

// UnmarshalJSON reads an alarm written by MarshalJSON.
func (a *Alarm) UnmarshalJSON(b []byte) error {
	var w alarmJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return a.fromWire(&w)
}

func (a *Alarm) fromWire(w *alarmJSON) error {
	*a = Alarm{
		ID: w.ID, Occurrence: w.Occurrence, Priority: w.Priority, Active: w.Active, Latch: w.Latch, Late: w.Late,
		Source: w.Source, SensorName: w.SensorName, LimitKind: w.LimitKind, Value: w.Value, Limit: w.Limit,
		Unit: w.Unit, ETA: timeOf(w.ETA), Reason: w.Reason, Message: w.Message, RaisedAt: timeOf(w.RaisedAt), AckedAt: timeOf(w.AckedAt), AckedBy: w.AckedBy,
		ReturnedAt: timeOf(w.ReturnedAt), ClearedAt: timeOf(w.ClearedAt), ClearedBy: w.ClearedBy,
		Shelf: holdOf(w.Shelf), Suppression: holdOf(w.Suppressed), OutOfService: holdOf(w.OOS), Unshown: w.Unshown,
		FeedbackDue: timeOf(w.FeedbackDue), FeedbackOverdue: w.FeedbackOverdue, Count: w.Count, Chattering: w.Chattering,
	}
	if len(w.Raises) > maxRaises {
		return fmt.Errorf("alarm %s: %d raises, at most %d", w.ID, len(w.Raises), maxRaises)
	}
	copy(a.Raises[:], w.Raises)
	if f := w.Feedback; f != nil {
		a.Feedback = Feedback{At: f.At, By: f.By, Cause: f.Cause, Action: f.Action}
	}
	if e := w.Escalation; e != nil {
		a.Escalation = Escalation{DueAt: timeOf(e.DueAt), Notified: e.Notified, Started: e.Started,
			Since: timeOf(e.Since), Reminders: e.Reminders}
		var ok1, ok2 bool
		a.Escalation.Step, ok1 = parseEnum(e.Step, int(model.NumEscalationSteps), model.EscalationStep.String)
		a.Escalation.From, ok2 = parseEnum(e.From, int(model.NumEscalationSteps), model.EscalationStep.String)
		if !ok1 || (!ok2 && e.From != "") {
			return fmt.Errorf("alarm %s: unknown escalation step %q or %q", w.ID, e.Step, e.From)
		}
	}
	var ok [6]bool
	a.Class, ok[0] = parseEnum(w.Class, int(model.ClassViolation)+1, model.AlarmClass.String)
	a.Level, ok[1] = parseLevel(w.Level)
	a.State, ok[2] = parseEnum(w.State, int(model.StateOutOfService)+1, model.AlarmState.String)
	a.Rule, ok[3] = parseEnum(w.Rule, int(model.NumRuleKinds), model.RuleKind.String)
	a.Kind, ok[4] = model.ParseKind(w.Kind)
	if w.Kind == model.KindUnknown.String() {
		a.Kind, ok[4] = model.KindUnknown, true
	}
	ok[5] = true
	if a.Held() {
		a.Base, ok[5] = parseEnum(w.Base, int(model.StateUnackRTN)+1, model.AlarmState.String)
	}
	for i, what := range []string{"class " + w.Class, "level " + w.Level, "state " + w.State, "rule " + w.Rule, "kind " + w.Kind, "base state " + w.Base} {
		if !ok[i] {
			return fmt.Errorf("alarm %s: unknown %s", w.ID, what)
		}
	}
	for _, h := range w.History {
		e := Entry{Seq: h.Seq, At: h.At, TS: timeOf(h.TS), Value: h.Value, User: h.User, Comment: h.Comment,
			Reason: h.Reason, Due: timeOf(h.Due), Late: h.Late, Notified: h.Notified}
		var ok [3]bool
		e.Event, ok[0] = parseEnum(h.Event, numNames, Name.String)
		e.State, ok[1] = parseEnum(h.State, int(model.StateOutOfService)+1, model.AlarmState.String)
		e.Level, ok[2] = parseLevel(h.Level)
		if !ok[0] || !ok[1] || !ok[2] {
			return fmt.Errorf("alarm %s: history entry %d: unknown event, state or level", w.ID, h.Seq)
		}
		a.History = append(a.History, e)
	}
	return nil
}

// parseEnum finds the value of T named s among the first n; the empty name
// is the zero value.
func parseEnum[T ~uint8, N ~uint8 | ~int](s string, n N, name func(T) string) (T, bool) {
	for i := range int(n) {
		if name(T(i)) == s {
			return T(i), true
		}
	}
	return 0, false
}

func parseLevel(s string) (model.AlarmLevel, bool) {
	return parseEnum(s, int(model.L2)+1, model.AlarmLevel.String)
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOf(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return *p
}
