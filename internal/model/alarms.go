package model

import "time"

// AlarmRules are the rule files' settings of the alarm lifecycle (the
// `alarms:` section, docs/CONFIG.md): shelving, noise control and the
// escalation ladder. One set holds for the whole plant.
type AlarmRules struct {
	// MaxShelve is the longest an operator may shelve an alarm.
	MaxShelve time.Duration
	// Chatter: the same condition raised Count times within Window is
	// chattering; its raises are grouped into one alarm with a count.
	Chatter Window
	// Flood: more than Count new alarms within Window in one operator's
	// scope (an enterprise, a park) is a flood.
	Flood Window
	// RateLimit bounds the notifications of new alarms (not escalations,
	// reminders or overdue feedback: those are the closed loop) per sensor
	// and per enterprise.
	RateLimit struct{ Sensor, Enterprise Window }
	// Escalation holds the limits of each priority, indexed 1-4 (0 unused).
	Escalation [5]EscalationLimits
}

// Window is Count events within Window (a rate, a threshold).
type Window struct {
	Count  int
	Window time.Duration
}

// EscalationLimits are the limits of the escalation ladder (包保责任 /
// 源长制) for one priority, each measured from the moment the alarm is
// shown unacknowledged; zero turns that step off.
type EscalationLimits struct {
	// Park: not acknowledged within this, the park control room is
	// notified; County: within this, the county duty officer.
	Park, County time.Duration
	// Remind repeats the notice to the step reached while the alarm stays
	// unacknowledged.
	Remind time.Duration
	// Feedback is how long the enterprise has, from the alarm being shown,
	// to report its handling (处置反馈: cause and action).
	Feedback time.Duration
}

// EscalationStep is a rung of the escalation ladder.
type EscalationStep uint8

const (
	StepEnterprise EscalationStep = iota // the enterprise: the hazard source's responsible persons
	StepPark                             // the park's control room (园区值班)
	StepCounty                           // the county's duty officer (县应急管理局值班员)
	NumEscalationSteps
)

func (s EscalationStep) String() string {
	if s < NumEscalationSteps {
		return [...]string{"enterprise", "park", "county"}[s]
	}
	return "step(?)"
}

// DefaultAlarmRules are the settings when the rule files give none (no
// standard fixes the escalation limits: these are starting points a park
// tunes, docs/ARCHITECTURE.md says why each).
func DefaultAlarmRules() AlarmRules {
	r := AlarmRules{
		MaxShelve: 8 * time.Hour,
		Chatter:   Window{Count: 3, Window: time.Minute},
		Flood:     Window{Count: 10, Window: 10 * time.Minute},
	}
	r.RateLimit.Sensor = Window{Count: 6, Window: time.Hour}
	r.RateLimit.Enterprise = Window{Count: 60, Window: time.Hour}
	r.Escalation = [5]EscalationLimits{
		1: {Park: 5 * time.Minute, County: 15 * time.Minute, Remind: 5 * time.Minute, Feedback: 2 * time.Hour},
		2: {Park: 10 * time.Minute, County: 30 * time.Minute, Remind: 10 * time.Minute, Feedback: 8 * time.Hour},
		3: {Park: 30 * time.Minute, County: 2 * time.Hour, Remind: 30 * time.Minute, Feedback: 24 * time.Hour},
		4: {Park: time.Hour, Remind: time.Hour, Feedback: 72 * time.Hour},
	}
	return r
}
