package alerting

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"hazardwatch/internal/model"
)

// Alarm is one occurrence of a condition on a sensor (SPEC §3's alarm
// object). Values are snapshots: the Manager replaces an alarm on every
// event and never changes one it has handed out.
type Alarm struct {
	// ID is stable for the occurrence: sensor.rule.occurrence, e.g.
	// e01-V101-LT.threshold_high.3.
	ID         string
	Occurrence int
	Class      model.AlarmClass
	Priority   int
	Level      model.AlarmLevel
	// State is what the operator sees: the hold's state while one is on
	// (out_of_service over suppressed over shelved), otherwise the
	// ISA-18.2 alarm state.
	State model.AlarmState
	// Base is the alarm state underneath a hold (normal, unack_active,
	// ack_active or unack_rtn), kept up to date by the rule events so that
	// the end of the hold shows the true state; normal when no hold is on.
	Base model.AlarmState
	// Shelf, Suppression and OutOfService are the holds on the alarm;
	// each may be on alone or with the others.
	Shelf, Suppression, OutOfService Hold
	// Unshown marks an episode that began while the alarm was suppressed
	// or out of service: if it also ends before they do, nobody is owed an
	// acknowledgement for it.
	Unshown bool
	// Active reports whether the condition holds now (the rules' last
	// word), apart from the acknowledgement.
	Active bool
	// Latch is fixed when the occurrence starts, from the sensor's rules.
	Latch bool
	// Late marks an occurrence found in late data (SPEC §2).
	Late       bool
	Source     Source
	SensorName string
	Kind       model.Kind
	Rule       model.RuleKind
	// LimitKind is the limit crossed, or predicted to be: "HH", "H", "L"
	// or "LL"; empty for the other rules.
	LimitKind string
	// Value is the reading that decided the last change and Limit the
	// limit, in the terms of model.Transition: for offline the seconds of
	// silence and the window, for a rate the rate and its limit per minute,
	// for bad quality the bad readings in a row and their limit.
	Value, Limit float64
	Unit         string
	// ETA is when a prediction (class prewarning) expects its limit to be
	// crossed, as of its last raise; zero otherwise.
	ETA time.Time
	// Reason is the quality reason behind a fault (out_of_range,
	// device_fault, timeout …); empty otherwise.
	Reason string
	// Message is Chinese first, English second.
	Message string
	// RaisedAt and ReturnedAt are reading times (the data's own, also for
	// late data); AckedAt and a ClearedAt by acknowledgement are the
	// centre's clock.
	RaisedAt, AckedAt, ReturnedAt, ClearedAt time.Time
	AckedBy, ClearedBy                       string
	// Escalation is where the occurrence stands on its escalation ladder.
	Escalation Escalation
	// Feedback is the enterprise's handling report (处置反馈), once given;
	// FeedbackDue is when it is due (zero when none is owed), and
	// FeedbackOverdue is set once that time passed without one.
	Feedback        Feedback
	FeedbackDue     time.Time
	FeedbackOverdue bool
	// Count is how many times the condition was raised in this occurrence;
	// Chattering is set when it was raised Policy.Chatter.Count times
	// within its window: its raises are grouped here, returns wait for a
	// reset as a latched alarm's do, and a raise again does not ring.
	Count      int
	Chattering bool
	// Raises are the reading times of the condition's latest raises,
	// newest first, across occurrences: what chattering is judged on.
	Raises [maxRaises]time.Time
	// History holds the occurrence's events, oldest first. Shared between
	// snapshots: do not modify.
	History []Entry
}

// maxRaises is how many raises an alarm remembers: chattering can be set
// to at most maxRaises+1 raises in its window.
const maxRaises = 9

// Escalation is an occurrence's place on the escalation ladder (包保责任 /
// 源长制): enterprise, park control room, county duty officer. The ladder
// runs while the alarm is shown unacknowledged and stops when someone
// acknowledges it (or it is held); it starts again, from the step reached,
// when the alarm is unacknowledged again.
type Escalation struct {
	// Step is the highest step notified in this occurrence.
	Step model.EscalationStep
	// Started is when the alarm was first shown unacknowledged: the start
	// of the ladder and of the feedback limit. Zero: never shown.
	Started time.Time
	// Since is when the ladder's current run started, at step From; zero
	// while it is stopped.
	Since time.Time
	From  model.EscalationStep
	// Reminders counts the reminders sent at the current step.
	Reminders int
	// DueAt is when the next step or reminder is due; zero when none is.
	DueAt time.Time
	// Notified are the people the current step notified.
	Notified []Contact
}

// Running reports whether the ladder runs: the alarm waits to be
// acknowledged.
func (e Escalation) Running() bool { return !e.Since.IsZero() }

// Contact is a person an escalation step notifies.
type Contact struct {
	Name  string `json:"name"`
	Phone string `json:"phone"`
	// Role says why: 主要负责人, 技术负责人, 操作负责人 (the hazard
	// source's responsible persons), 企业值班, 园区值班, 县应急值班.
	Role string `json:"role"`
}

// Feedback is an enterprise's handling report of an alarm (处置反馈).
type Feedback struct {
	At            time.Time
	By            string
	Cause, Action string
}

// Given reports whether the feedback has been given.
func (f Feedback) Given() bool { return !f.At.IsZero() }

// Hold is a shelf, a suppression or an out-of-service period: since when,
// by whom, why, and for a shelf until when. The zero Hold is off.
type Hold struct {
	At, Until time.Time
	By        string
	Reason    string
}

// On reports whether the hold is on.
func (h Hold) On() bool { return !h.At.IsZero() }

// Held reports whether any hold is on: the alarm is not shown as an
// ordinary alarm, does not ring and cannot be acknowledged.
func (a *Alarm) Held() bool {
	return a.Shelf.On() || a.Suppression.On() || a.OutOfService.On()
}

// byDesign reports whether a suppression or out of service is on: the
// holds that are planned, not an operator's.
func (a *Alarm) byDesign() bool { return a.Suppression.On() || a.OutOfService.On() }

// base is the ISA-18.2 state underneath any hold.
func (a *Alarm) base() model.AlarmState {
	if a.Held() {
		return a.Base
	}
	return a.State
}

// show puts the strongest hold's state on top of the ISA-18.2 state, which
// Next leaves in State: out of service, then suppressed, then shelved.
func (a *Alarm) show() {
	a.Base = model.StateNormal
	if !a.Held() {
		return
	}
	a.Base = a.State
	switch {
	case a.OutOfService.On():
		a.State = model.StateOutOfService
	case a.Suppression.On():
		a.State = model.StateSuppressed
	default:
		a.State = model.StateShelved
	}
}

// Source names where an alarm comes from, by id.
type Source struct {
	County       string `json:"county"`
	Park         string `json:"park"`
	Enterprise   string `json:"enterprise"`
	HazardSource string `json:"hazard_source"`
	Sensor       string `json:"sensor"`
	Gateway      string `json:"gateway"`
}

// Entry is one event in an alarm's history.
type Entry struct {
	Seq   uint64
	Event Name
	// At is the centre's clock; TS the reading time of a rule event.
	At, TS  time.Time
	State   model.AlarmState
	Level   model.AlarmLevel
	Value   float64
	User    string
	Comment string
	// Reason: why it was shelved, suppressed or taken out of service; a
	// fault's quality reason.
	Reason string
	// Due: a shelf's end, on the event that shelved it and on the one its
	// timer made; when an escalation step, a reminder or the feedback fell
	// due, on theirs.
	Due  time.Time
	Late bool
	// Notified are the people the event notifies (a ring, an escalation
	// step, a reminder, overdue feedback).
	Notified []Contact
}

// Priority is 1 (highest) to 4 from the alarm's class, its level and the
// GB 18218 level of its hazard source (1–4; 0 when it has none). See the
// package documentation for the table and its reasons.
func Priority(c model.AlarmClass, l model.AlarmLevel, sourceLevel int) int {
	major := sourceLevel == 1 || sourceLevel == 2
	switch {
	case c == model.ClassViolation, c == model.ClassAlarm && l == model.L2:
		return 1
	case c == model.ClassAlarm && major:
		return 2
	case c == model.ClassAlarm, major:
		return 3
	}
	return 4
}

func alarmID(sensor string, r model.RuleKind, occurrence int) string {
	return sensor + "." + r.String() + "." + strconv.Itoa(occurrence)
}

// limitKindOf names the limit of a threshold alarm when the transition did
// not say which one (it carries only the level): H/L at L1, HH/LL at L2.
func limitKindOf(r model.RuleKind, l model.AlarmLevel) string {
	switch {
	case r == model.ThresholdHigh && l == model.L2:
		return "HH"
	case r == model.ThresholdHigh:
		return "H"
	case r == model.ThresholdLow && l == model.L2:
		return "LL"
	case r == model.ThresholdLow:
		return "L"
	}
	return ""
}

// message builds the alarm's text, Chinese first and English second, from
// the sensor's name and id, the limit and the value, e.g.
//
//	V101 液氯储罐液位高高报警 (HH)：2.45 m，报警值 2.4 m / e01-V101-LT level HH alarm: 2.45 m, limit 2.4 m
//
// at is the time of the reading that raised it (a prediction's text says
// how far ahead its ETA is).
func message(a *Alarm, at time.Time) string {
	name, id := a.SensorName, a.Source.Sensor
	if name == "" {
		name = id
	}
	v, lim := num(a.Value)+unit(a.Unit), num(a.Limit)+unit(a.Unit)
	switch a.Rule {
	case model.GatewaySilent:
		gw := a.Source.Gateway
		return fmt.Sprintf("网关 %s 离线：%s s 无数据（限值 %s s） / gateway %s offline: no data for %s s (limit %s s)",
			gw, num(a.Value), num(a.Limit), gw, num(a.Value), num(a.Limit))
	case model.Silent:
		return fmt.Sprintf("%s离线：%s s 无数据（限值 %s s） / %s offline: no data for %s s (limit %s s)",
			name, num(a.Value), num(a.Limit), id, num(a.Value), num(a.Limit))
	case model.RateRise, model.RateFall:
		zh, en := "上升过快", "rising too fast"
		if a.Rule == model.RateFall {
			zh, en = "下降过快", "falling too fast"
		}
		return fmt.Sprintf("%s%s预警：%s，限值 %s / %s %s: %s, limit %s", name, zh, v, lim, id, en, v, lim)
	case model.PredictHigh, model.PredictLow:
		zh := map[string]string{"HH": "高高报警值", "H": "高报警值", "L": "低报警值", "LL": "低低报警值"}[a.LimitKind]
		if zh == "" {
			zh = "报警值"
		}
		lk := a.LimitKind
		if lk == "" {
			lk = "limit"
		}
		inZh, inEn := "", ""
		if !a.ETA.IsZero() && !at.IsZero() {
			inZh, inEn = ahead(a.ETA.Sub(at))
		}
		return fmt.Sprintf("%s趋势预警：预计%s达到%s (%s) %s，当前 %s / %s trend prewarning: expected to reach %s %s%s, now %s",
			name, inZh, zh, a.LimitKind, lim, v, id, lk, lim, inEn, v)
	case model.Voted:
		return fmt.Sprintf("%s所在区域表决确认报警：%s 台检测器报警（表决 %s 台） / gas alarm confirmed by vote at %s: %s detectors in alarm (vote %s)",
			name, num(a.Value), num(a.Limit), id, num(a.Value), num(a.Limit))
	case model.StopOrder:
		ent := a.Source.Enterprise
		if ent == "" {
			ent = id
		}
		return fmt.Sprintf("停产整顿企业 %s 用电异常：%s，基线 %s（%s） / stop-ordered enterprise %s drawing power: %s, idle baseline %s (%s)",
			ent, v, lim, name, ent, v, lim, id)
	case model.SISBypass:
		lvl := map[float64]string{1: "一级", 2: "二级"}[a.Limit]
		return fmt.Sprintf("%s旁路违规：安全仪表系统或紧急切断被旁路（%s重大危险源） / %s SIS or emergency shut-off bypassed on a level %s major hazard source",
			name, lvl, id, num(a.Limit))
	case model.Frozen:
		return fmt.Sprintf("%s数值冻结故障：%s 已 %s s 未变化 / %s frozen value: %s unchanged for %s s",
			name, v, num(a.Limit), id, v, num(a.Limit))
	case model.OutOfRange:
		if a.Reason == model.ReasonDeviceFault.String() {
			return fmt.Sprintf("%s仪表故障（设备故障位）：%s / %s device fault (the device's fault bit): %s", name, v, id, v)
		}
		return fmt.Sprintf("%s超量程故障：%s，量程限 %s / %s out of range: %s, range limit %s", name, v, lim, id, v, lim)
	case model.BadQuality:
		why := a.Reason
		if why == "" {
			why = "bad"
		}
		return fmt.Sprintf("%s数据质量故障：连续 %s 次坏值（%s） / %s bad quality: %s bad readings in a row (%s)",
			name, num(a.Value), why, id, num(a.Value), why)
	}
	lk := a.LimitKind
	if lk == "" {
		lk = limitKindOf(a.Rule, a.Level)
	}
	var zh, en string
	process := false
	switch {
	case a.Kind == model.GasOxygen && a.Rule == model.ThresholdLow:
		zh, en = "欠氧报警", "oxygen deficiency alarm"
	case a.Kind == model.GasOxygen:
		zh, en = "富氧报警", "oxygen enrichment alarm"
	case a.Kind == model.GasCombustible || a.Kind == model.GasToxic:
		gas := "combustible"
		if a.Kind == model.GasToxic {
			gas = "toxic"
		}
		zh, en = "一级报警", gas+" gas L1 alarm"
		if a.Level == model.L2 {
			zh, en = "二级报警", gas+" gas L2 alarm"
		}
	default:
		process = true
		zh = map[string]string{"HH": "高高报警", "H": "高报警", "L": "低报警", "LL": "低低报警"}[lk]
		if zh == "" {
			zh = "报警"
		}
		en = strings.TrimSpace(strings.ReplaceAll(a.Kind.String(), "_", " ") + " " + lk + " alarm")
	}
	if lk != "" {
		zh += " (" + lk + ")"
		if !process {
			en += " (" + lk + ")"
		}
	}
	return fmt.Sprintf("%s%s：%s，报警值 %s / %s %s: %s, limit %s", name, zh, v, lim, id, en, v, lim)
}

// ahead says how far ahead a predicted crossing is, for people: seconds
// under two minutes, else minutes to a tenth.
func ahead(d time.Duration) (zh, en string) {
	if d < 0 {
		d = 0
	}
	if d < 2*time.Minute {
		s := num(math.Round(d.Seconds()))
		return "约 " + s + " s 后", " in about " + s + " s"
	}
	m := num(math.Round(d.Minutes()*10) / 10)
	return "约 " + m + " 分钟后", " in about " + m + " min"
}

func unit(u string) string {
	if u == "" || u == "state" {
		return ""
	}
	return " " + u
}

// num formats a value for people: four significant digits, no exponent,
// no float noise (0.30000000000000004 → 0.3).
func num(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	const digits = 4
	e := int(math.Ceil(math.Log10(math.Abs(v))))
	if e >= digits {
		p := math.Pow(10, float64(e-digits))
		v = math.Round(v/p) * p
	} else {
		p := math.Pow(10, float64(digits-e))
		v = math.Round(v*p) / p
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
