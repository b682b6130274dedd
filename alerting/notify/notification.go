package notify

import (
	"errors"
	"fmt"
	"time"
)

// Notification is one message about one alarm event for the persons of one
// escalation step: the input of the chain. It is plain data, filled by the
// caller from an alarm event, so that this package does not depend on
// package alerting.
type Notification struct {
	// Key is the dedup identity: a Key delivered once is not delivered
	// again within Options.DedupTTL, across restarts with a FileStore.
	// Empty: "<AlarmID>/<Seq>/<Step>".
	Key string
	// AlarmID is the alarm's stable id (SPEC §3).
	AlarmID string
	// Event is the alarm event the notice is about: one of the Event*
	// constants ("raised", "level_changed", "escalated", "reminded",
	// "feedback_overdue", "unshelved", "unsuppressed", "in_service", …);
	// another name gets a generic text.
	Event string
	// Seq is the event's global sequence number.
	Seq uint64
	// At is when the centre made the event durable; the texts count "for
	// how long" up to it, so a notice redelivered later reads the same.
	At time.Time
	// Due is, for escalated, reminded and feedback_overdue, when the step
	// was due; earlier than At when it fell due while the centre was down.
	Due time.Time
	// RaisedAt is when the alarm was raised: the texts' "since when".
	RaisedAt time.Time
	// Priority is 1 (highest) to 4.
	Priority int
	// Class is alarm, prewarning, fault, offline or violation.
	Class string
	// Level is L1, L2 or "" (classes other than alarm).
	Level string
	// State is the alarm's ISA-18.2 state after the event (unack_active,
	// ack_active, unack_rtn, normal, shelved, suppressed, out_of_service).
	State string
	// The holds on the alarm after the event: a shelved alarm is dropped
	// by the shelve stage, a suppressed or out-of-service one by the
	// suppress stage.
	Shelved, Suppressed, OutOfService bool

	// Where the alarm is: ids and the names people know. Park and County
	// are ids. Sensor is empty for an alarm on a gateway or an enterprise.
	Enterprise, EnterpriseName     string
	Park, County                   string
	HazardSource, HazardSourceName string
	Sensor, SensorName             string
	Gateway                        string
	// Kind is the sensor's kind (gas_toxic, level, pressure, …, SPEC §1);
	// the texts name what is measured by it when Gas is empty.
	Kind string
	// Gas names the gas of a gas detector, in Chinese and in English
	// (e.g. "氯气", "chlorine"), from the plant's chemical tables.
	Gas, GasEN string

	// Step is the escalation step the notice is for: StepEnterprise,
	// StepPark or StepCounty.
	Step int
	// Reminder is 0 for the step's first notice and n for its n-th
	// reminder.
	Reminder int
	// Recipients are the persons of the step; those with a phone number
	// get an SMS or a call, every webhook message carries all of them.
	Recipients []Recipient

	// Message is the alarm's own text, "中文 / English".
	Message string
	// Value and Limit are the reading that decided and the limit in force,
	// in Unit.
	Value, Limit float64
	Unit         string
}

// Recipient is a person to notify.
type Recipient struct {
	Name  string
	Phone string
	// Role is what the person is in the chain, e.g. "操作负责人",
	// "技术负责人", "主要负责人", "园区值班", "县应急值班".
	Role string
}

// The escalation steps (包保责任 / 源长制 chain, SPEC §4).
const (
	StepEnterprise = 0 // the hazard source's responsible persons
	StepPark       = 1 // the park control room
	StepCounty     = 2 // the county duty officer
)

// stepNames name the steps in the webhook's JSON.
var stepNames = [...]string{"enterprise", "park", "county"}

// The events the texts know. Other names are delivered with a generic text.
const (
	EventRaised          = "raised"
	EventLevelChanged    = "level_changed"
	EventEscalated       = "escalated"
	EventReminded        = "reminded"
	EventFeedbackOverdue = "feedback_overdue"
	EventUnshelved       = "unshelved"
	EventUnsuppressed    = "unsuppressed"
	EventInService       = "in_service"
)

// Events lists the events with texts of their own, in the order of the
// docs.
func Events() []string {
	return []string{EventRaised, EventLevelChanged, EventEscalated, EventReminded,
		EventFeedbackOverdue, EventUnshelved, EventUnsuppressed, EventInService}
}

// ErrInvalid is returned by Handle for a notification that can never be
// delivered (no event, no identity, an unknown step): acknowledge it, a
// redelivery cannot fix it.
var ErrInvalid = errors.New("notify: invalid notification")

// check fills the default Key and refuses what cannot be delivered.
func (n *Notification) check() error {
	switch {
	case n.Event == "":
		return fmt.Errorf("%w: no event", ErrInvalid)
	case n.Key == "" && n.AlarmID == "":
		return fmt.Errorf("%w: neither key nor alarm id", ErrInvalid)
	case n.Step < StepEnterprise || n.Step > StepCounty:
		return fmt.Errorf("%w: step %d (0 enterprise, 1 park, 2 county)", ErrInvalid, n.Step)
	}
	if n.Key == "" {
		n.Key = fmt.Sprintf("%s/%d/%d", n.AlarmID, n.Seq, n.Step)
	}
	return nil
}

// Message is what one notifier delivers: one per recipient and channel
// (SMS, voice), or one per notification (a webhook).
type Message struct {
	// ID is "<Key>/<notifier>/<phone>", or "<Key>/<notifier>" for a
	// message to a system: the dedup store remembers delivered messages by
	// it, so a notification redelivered after a partial failure sends only
	// what was not delivered; the webhook sends it as Idempotency-Key.
	ID string
	// Notifier is the Name of the notifier it is for.
	Notifier string
	// To is the person, for SMS and voice; zero for a webhook.
	To Recipient
	// Text is the short Chinese text (one SMS segment where possible);
	// TextEN the same in English.
	Text, TextEN string
	// Notification is what the message is about; shared by the messages
	// of one notification, not to be modified.
	Notification *Notification
}

// firstOf returns the first of ss that is not empty.
func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
