package model

import "fmt"

// LimitKind is one of the four limits of a measured value.
type LimitKind uint8

const (
	HH LimitKind = iota
	H
	L
	LL
	NumLimits
)

func (k LimitKind) String() string { return [...]string{"HH", "H", "L", "LL"}[k] }

// High reports whether the limit is crossed upwards.
func (k LimitKind) High() bool { return k == HH || k == H }

// DefaultLevel is the GB/T 50493 level a limit maps to unless a rule says
// otherwise (SPEC §4): H and L → L1, HH and LL → L2.
func (k LimitKind) DefaultLevel() AlarmLevel {
	if k == HH || k == LL {
		return L2
	}
	return L1
}

// AlarmLevel is the level of an `alarm`-class alarm: L1 (一级) or L2 (二级, higher).
type AlarmLevel uint8

const (
	NoLevel AlarmLevel = iota
	L1
	L2
)

func (l AlarmLevel) String() string {
	switch l {
	case L1:
		return "L1"
	case L2:
		return "L2"
	}
	return ""
}

// Limit is one configured limit, resolved to the sensor's unit.
type Limit struct {
	Set   bool
	Value float64
	Level AlarmLevel
}

// SensorRules are the rules of one sensor after kind defaults and
// per-sensor overrides were merged and gas limits resolved (%LEL, %OEL).
type SensorRules struct {
	Limits [NumLimits]Limit
	// Deadband, in the sensor's unit: an alarm returns only when the value
	// is back inside the limit by at least this much.
	Deadband float64
	// OnDelayMS: the condition must hold this long before the alarm is
	// raised; OffDelayMS: the return must hold this long before it clears.
	OnDelayMS, OffDelayMS int64
	// Latch keeps an alarm until acknowledged even after the value returns
	// (gas alarms: on by default).
	Latch bool
	// SilentPeriods: no reading for this many poll periods raises `offline`.
	SilentPeriods int
}

// AlarmClass is what kind of condition an alarm reports (SPEC §4).
type AlarmClass uint8

const (
	ClassAlarm AlarmClass = iota
	ClassPrewarning
	ClassFault
	ClassOffline
	ClassViolation
)

func (c AlarmClass) String() string {
	switch c {
	case ClassAlarm:
		return "alarm"
	case ClassPrewarning:
		return "prewarning"
	case ClassFault:
		return "fault"
	case ClassOffline:
		return "offline"
	case ClassViolation:
		return "violation"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// AlarmState is an alarm's ISA-18.2 state (SPEC §4).
type AlarmState uint8

const (
	StateNormal AlarmState = iota
	StateUnackActive
	StateAckActive
	StateUnackRTN
	StateShelved
	StateSuppressed
	StateOutOfService
)

func (s AlarmState) String() string {
	return [...]string{"normal", "unack_active", "ack_active", "unack_rtn", "shelved", "suppressed", "out_of_service"}[s]
}

// RuleKind names which rule of a sensor a transition comes from. There is
// one alarm per (sensor, rule kind): H and HH share ThresholdHigh, so a
// crossing of HH after H changes that alarm's level (SPEC §4).
type RuleKind uint8

const (
	ThresholdHigh RuleKind = iota
	ThresholdLow
	Silent // no reading for SilentPeriods poll periods (class offline)
	NumRuleKinds
)

func (r RuleKind) String() string {
	return [...]string{"threshold_high", "threshold_low", "silent"}[r]
}

// Transition is a rule's verdict on one sensor, emitted only when it
// changes: a condition starts (Active), changes level, or ends. Storage,
// alarms and push all consume the same transitions.
type Transition struct {
	Sensor int32
	Rule   RuleKind
	Class  AlarmClass
	// Level is the alarm level while Active (L1/L2 for ClassAlarm).
	Level  AlarmLevel
	Active bool
	// Limit is the limit crossed (or returned inside of); Value the reading
	// that decided it.
	Value, Limit float64
	// TS is when the condition started or ended: the reading's time, or for
	// Silent the time the silence was noticed. Unix milliseconds.
	TS int64
	// Late marks a verdict found in late data (SPEC §2): recorded with its
	// own times, never rung as new.
	Late bool
}
