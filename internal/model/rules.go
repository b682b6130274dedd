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

	// The rules that judge a sensor from its own readings besides its
	// limits. Each is off at its zero value.
	Rate       RateRule
	Prediction PredictionRule
	Frozen     FrozenRule
	// OutOfRange raises a `fault` on a reading outside the instrument's
	// range, or one the gateway marked bad out_of_range or device_fault.
	OutOfRange bool
	// BadQuality raises a `fault` after this many bad readings in a row;
	// 0 turns it off.
	BadQuality int
	// Vote makes the sensor a member of a k-out-of-n voting group of gas
	// detectors; off at its zero value.
	Vote VoteRule
	// StopOrder and SISBypass raise a `violation` (rules/power.go,
	// rules/sis.go); each is off at its zero value.
	StopOrder StopOrderRule
	SISBypass SISBypassRule
}

// GatewayRules are the rules of one gateway, by gateway index
// (config.Config.Gateways).
type GatewayRules struct {
	// SilentPeriods: no reading from any of the gateway's sensors for this
	// many poll periods raises the gateway's `offline` (GatewaySilent)
	// instead of one per sensor; 0 leaves the gateway unchecked.
	SilentPeriods int
}

// StopOrderRule watches a power sensor of a stop-ordered enterprise: power
// above the idle baseline × (1 + MarginPct/100) for DelayMS raises a
// violation, which returns once power is below baseline × (1 +
// MarginPct/200) (half the margin: the hysteresis).
type StopOrderRule struct {
	On bool
	// Removed: the rule files turned the rule off for this sensor, so no
	// stop order turns it on. An off rule keeps its settings otherwise.
	Removed bool
	// BaselineKW is the enterprise's configured idle power; 0: learn it
	// from the sensor's own readings over LearnMS (rules/power.go).
	BaselineKW float64
	MarginPct  float64
	DelayMS    int64
	LearnMS    int64
}

// SISBypassRule watches an SIS or emergency shut-off state sensor (0
// normal, 1 bypassed, 2 tripped) of a level 1-2 hazard source: 1 for
// OnDelayMS raises a violation, 0 or 2 returns it.
type SISBypassRule struct {
	On        bool
	OnDelayMS int64
	// SourceLevel is the hazard source's level (1 or 2), for the message.
	SourceLevel int
}

// VoteRule is a voting group (表决, k-out-of-n) of gas detectors in one
// area: when K members have their high alarm (H or HH) raised and no
// sensor fault, the group raises one confirmed alarm (rule Voted, class
// alarm, level L2) on its first member. Every member's rules carry the
// same group.
type VoteRule struct {
	// Name is the group's name in the rule files.
	Name string
	// K is how many members must agree, 1 ≤ K ≤ len(Members).
	K int
	// Members are the sensor indexes of the group, in the file's order;
	// Members[0] carries the group's alarm.
	Members []int32
}

// On reports whether the sensor is in a voting group.
func (v VoteRule) On() bool { return len(v.Members) > 0 }

// RateRule raises a `prewarning` when the value changes faster than a rate:
// the change between the newest reading and the newest one at least
// WindowMS older, per minute.
type RateRule struct {
	// Rise and Fall are rates in the sensor's unit per minute; 0 leaves
	// that direction unchecked.
	Rise, Fall float64
	WindowMS   int64
	// Deadband, per minute: a raised rate returns once it is below its
	// limit by at least this much.
	Deadband float64
	// OnDelayMS: the rate must stay at or past its limit this long.
	OnDelayMS int64
}

// On reports whether the rule checks either direction.
func (r RateRule) On() bool { return r.Rise > 0 || r.Fall > 0 }

// PredictionRule raises a `prewarning` with an ETA when the trend of the
// last Window readings reaches the sensor's next limit within HorizonMS.
type PredictionRule struct {
	// Window is the number of readings in the trend; 0 turns it off.
	Window    int
	HorizonMS int64
}

// On reports whether the rule is configured.
func (r PredictionRule) On() bool { return r.Window > 0 && r.HorizonMS > 0 }

// FrozenRule raises a `fault` when the value stays within Epsilon of one
// value for DurationMS: a transmitter stuck on its last value.
type FrozenRule struct {
	// DurationMS: 0 turns it off.
	DurationMS int64
	Epsilon    float64
}

// On reports whether the rule is configured.
func (r FrozenRule) On() bool { return r.DurationMS > 0 }

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
	Silent      // no reading for SilentPeriods poll periods (class offline)
	RateRise    // rising faster than RateRule.Rise (prewarning)
	RateFall    // falling faster than RateRule.Fall (prewarning)
	PredictHigh // the trend reaches H or HH within the horizon (prewarning)
	PredictLow  // the trend reaches L or LL within the horizon (prewarning)
	Frozen      // the same value for too long (fault)
	OutOfRange  // outside the instrument's range, or marked so (fault)
	BadQuality  // bad readings in a row (fault)
	Voted       // K detectors of a voting group in alarm (alarm, L2; on the group's first sensor)
	StopOrder   // a stop-ordered enterprise drawing power above its idle baseline (violation)
	SISBypass   // an SIS or emergency shut-off bypassed on a level 1-2 hazard source (violation)
	// GatewaySilent: none of a gateway's sensors heard for the gateway's
	// SilentPeriods poll periods (offline). A gateway's condition, not a
	// sensor's: its transitions have Sensor -1 and Gateway set.
	GatewaySilent
	NumRuleKinds
)

var ruleNames = [NumRuleKinds]string{
	"threshold_high", "threshold_low", "silent", "rate_rise", "rate_fall",
	"predict_high", "predict_low", "frozen", "out_of_range", "bad_quality", "voted",
	"stop_order_power", "sis_bypass", "gateway_silent",
}

func (r RuleKind) String() string {
	if r < NumRuleKinds {
		return ruleNames[r]
	}
	return fmt.Sprintf("rule(%d)", uint8(r))
}

// High reports whether the rule watches the value going up: the threshold,
// rate and prediction rules come in a high and a low direction.
func (r RuleKind) High() bool { return r == ThresholdHigh || r == RateRise || r == PredictHigh }

// Transition is a rule's verdict on one sensor or gateway, emitted only
// when it changes: a condition starts (Active), changes level, or ends.
// Storage, alarms and push all consume the same transitions.
type Transition struct {
	// Sensor is the sensor's index, or -1 for a gateway's condition
	// (GatewaySilent), whose gateway's index is Gateway. Gateway is 0 and
	// means nothing on a sensor's transition: consumers look a sensor's
	// gateway up in the plant.
	Sensor  int32
	Gateway int32
	Rule    RuleKind
	Class   AlarmClass
	// Level is the alarm level while Active (L1/L2 for ClassAlarm).
	Level  AlarmLevel
	Active bool
	// Limit is the limit crossed (or returned inside of); Value the reading
	// that decided it. Other rules fill them in their own terms:
	//   rate            the rate and its limit, in the sensor's unit per minute
	//   prediction      the reading and the limit the trend reaches
	//   frozen          the reading and the duration, in seconds
	//   out_of_range    the reading (0 without one) and the range end it passed
	//   bad_quality     the bad readings in a row and the configured count
	//   silent          the seconds of silence and the window, in seconds
	//   gateway_silent  the same for the gateway; a return: how long it was silent
	//   voted           the members voting and the group's K
	//   stop_order      the power drawn and the idle baseline, in kW
	//   sis_bypass      the SIS state (1 bypassed) and the hazard source's level
	Value, Limit float64
	// TS is when the condition started or ended: the reading's time, or for
	// Silent and GatewaySilent the time the silence was noticed. Unix
	// milliseconds.
	TS int64
	// Late marks a verdict found in late data (SPEC §2): recorded with its
	// own times, never rung as new.
	Late bool
	// ETA is when a prediction expects the limit to be crossed, Unix
	// milliseconds; 0 for every other transition.
	ETA int64
	// Reason is the quality reason of the reading behind a fault
	// (out_of_range, device_fault, timeout …); ReasonNone otherwise.
	Reason QualityReason
}
