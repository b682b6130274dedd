package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Texts writes the short texts of a notification: Chinese for SMS and
// voice, English beside it in the webhook's JSON. The Chinese text names
// the enterprise, the hazard source, what (the measured thing, the class
// and level), since when and, for an escalation, who has not acknowledged
// it for how long and to whom it went, e.g.
//
//	【危险源预警】恒安氯碱 液氯储罐区 氯气二级报警 10:02起 企业、园区已25分钟未确认，已升级至县应急值班。
//
// and fits one SMS segment (70 Chinese characters) where it can: when it
// is longer, the hazard source's and then the enterprise's names are cut
// (to 4 characters at least, marked …) before anything a duty officer acts
// on; what is still longer goes as a long SMS.
type Texts struct {
	// Prefix opens the Chinese text; default DefaultPrefix. PrefixEN opens
	// the English one; default DefaultPrefixEN.
	Prefix, PrefixEN string
	// Location is the zone of the times in the texts; default
	// DefaultLocation.
	Location *time.Location
	// MaxRunes is the length the Chinese text should fit; default
	// DefaultMaxRunes.
	MaxRunes int
}

const (
	DefaultPrefix   = "【危险源预警】"
	DefaultPrefixEN = "[Hazard alert] "
	// DefaultMaxRunes is one SMS segment of Chinese (UCS-2) text.
	DefaultMaxRunes = 70
	// minNameRunes is how short a name may be cut.
	minNameRunes = 4
)

// DefaultLocation is China's one time zone, without daylight saving time
// (a fixed zone needs no tz database on the box).
var DefaultLocation = time.FixedZone("UTC+8", 8*3600)

func (t Texts) withDefaults() Texts {
	if t.Prefix == "" {
		t.Prefix = DefaultPrefix
	}
	if t.PrefixEN == "" {
		t.PrefixEN = DefaultPrefixEN
	}
	if t.Location == nil {
		t.Location = DefaultLocation
	}
	if t.MaxRunes <= 0 {
		t.MaxRunes = DefaultMaxRunes
	}
	return t
}

// Format returns n's Chinese and English texts.
func (t Texts) Format(n *Notification) (zh, en string) {
	t = t.withDefaults()
	p := t.parts(n)
	en = t.PrefixEN + p.english(n)
	zh = t.Prefix + p.chinese(n)
	if over := utf8.RuneCountInString(zh) - t.MaxRunes; over > 0 {
		p.src, over = shorten(p.src, over)
		p.ent, _ = shorten(p.ent, over)
		zh = t.Prefix + p.chinese(n)
	}
	// A provider may refuse a text that is not UTF-8; a plant file's
	// names always are, but a caller's may not be.
	return strings.ToValidUTF8(zh, "\uFFFD"), strings.ToValidUTF8(en, "\uFFFD")
}

// parts are the pieces both languages are made of.
type parts struct {
	ent, src       string
	what, whatEN   string
	since, sinceEN string
	dur, durEN     string
}

func (t Texts) parts(n *Notification) parts {
	p := parts{
		ent: firstOf(n.EnterpriseName, n.Enterprise),
		src: firstOf(n.HazardSourceName, n.HazardSource, n.SensorName, n.Sensor, n.Gateway),
	}
	p.what, p.whatEN = what(n)
	if !n.RaisedAt.IsZero() {
		r := n.RaisedAt.In(t.Location)
		if a := n.At.In(t.Location); n.At.IsZero() || a.YearDay() == r.YearDay() && a.Year() == r.Year() {
			p.since, p.sinceEN = r.Format("15:04")+"起", "since "+r.Format("15:04 MST")
		} else {
			p.since, p.sinceEN = r.Format("1月2日15:04")+"起", "since "+r.Format("2 Jan 15:04 MST")
		}
		if !n.At.IsZero() {
			p.dur, p.durEN = durations(n.At.Sub(n.RaisedAt))
		}
	}
	return p
}

// chinese is the text after the prefix.
func (p parts) chinese(n *Notification) string {
	head := join(" ", p.ent, p.src, p.what, p.since)
	switch n.Event {
	case EventRaised:
		return head + "，请立即确认处置。"
	case EventLevelChanged:
		return join(" ", p.ent, p.src, levelChange(n), p.since) + "，请立即确认处置。"
	case EventEscalated:
		if n.Step == StepEnterprise {
			return head + " " + ago(p.dur) + "未确认，请立即确认处置。"
		}
		return head + " " + whoZh[n.Step] + ago(p.dur) + "未确认，已升级至" + stepZh[n.Step] + "。"
	case EventReminded:
		return reminder(n.Reminder) + head + " " + ago(p.dur) + "无人确认，请立即确认处置。"
	case EventFeedbackOverdue:
		if n.Step == StepEnterprise {
			return head + " " + ago(p.dur) + "未反馈处置情况，请尽快反馈。"
		}
		return head + " 企业" + ago(p.dur) + "未反馈处置情况，请督促。"
	case EventUnshelved:
		return join(" ", p.ent, p.src, p.what) + " 搁置结束，" + stateZh(n.State)
	case EventUnsuppressed:
		return join(" ", p.ent, p.src, p.what) + " 抑制解除，" + stateZh(n.State)
	case EventInService:
		return join(" ", p.ent, p.src, p.what) + " 恢复投用，" + stateZh(n.State)
	}
	return head + "，" + otherZh(n.Event)
}

// english is the English text after its prefix: the same facts, for
// systems and readers without Chinese (names stay as they are).
func (p parts) english(n *Notification) string {
	where := join(" ", p.ent, p.src)
	head := where + ": " + join(" ", p.whatEN, p.sinceEN)
	switch n.Event {
	case EventRaised:
		return head + ". Acknowledge and act now."
	case EventLevelChanged:
		return where + ": " + join(" ", levelChangeEN(n), p.sinceEN) + ". Acknowledge and act now."
	case EventEscalated:
		if n.Step == StepEnterprise {
			return head + ", not acknowledged" + forDur(p.durEN) + ". Acknowledge and act now."
		}
		return head + ", not acknowledged by " + whoEN[n.Step] + forDur(p.durEN) + "; escalated to " + stepEN[n.Step] + "."
	case EventReminded:
		r := "Reminder: "
		if n.Reminder > 0 {
			r = "Reminder " + strconv.Itoa(n.Reminder) + ": "
		}
		return r + head + ", not acknowledged by anyone" + forDur(p.durEN) + ". Acknowledge and act now."
	case EventFeedbackOverdue:
		if n.Step == StepEnterprise {
			return head + ", no handling report (feedback)" + afterDur(p.durEN) + ". Report now."
		}
		return head + ", the enterprise has sent no handling report (feedback)" + afterDur(p.durEN) + ". Follow up."
	case EventUnshelved:
		return where + ": " + p.whatEN + ": shelf ended; " + stateEN(n.State)
	case EventUnsuppressed:
		return where + ": " + p.whatEN + ": suppression ended; " + stateEN(n.State)
	case EventInService:
		return where + ": " + p.whatEN + ": back in service; " + stateEN(n.State)
	}
	return head + ": " + n.Event + "."
}

var (
	stepZh = [...]string{"企业", "园区值班", "县应急值班"}
	stepEN = [...]string{"the enterprise", "the park control room", "the county duty officer"}
	// who has not acknowledged when a step is reached.
	whoZh = [...]string{"", "企业", "企业、园区"}
	whoEN = [...]string{"", "the enterprise", "the enterprise and the park"}
)

// kindWords are what a sensor kind measures, in Chinese and English, and
// whether its instrument is a gas detector.
var kindWords = map[string]struct {
	zh, en string
	gas    bool
}{
	"gas_combustible": {"可燃气体", "combustible gas", true},
	"gas_toxic":       {"有毒气体", "toxic gas", true},
	"gas_oxygen":      {"氧含量", "oxygen", true},
	"pressure":        {"压力", "pressure", false},
	"level":           {"液位", "level", false},
	"temperature":     {"温度", "temperature", false},
	"flow":            {"流量", "flow", false},
	"power":           {"用电功率", "power", false},
	"current":         {"电流", "current", false},
	"energy":          {"用电量", "energy", false},
	"valve":           {"紧急切断阀", "shut-off valve", false},
	"sis":             {"安全仪表系统", "SIS", false},
}

var levelZh = map[string]string{"L1": "一级", "L2": "二级"}

// what names the alarm: the measured thing, then its class and level, e.g.
// 氯气二级报警 / chlorine L2 alarm.
func what(n *Notification) (zh, en string) {
	kw := kindWords[n.Kind]
	subj, subjEN := firstOf(n.Gas, kw.zh), firstOf(n.GasEN, kw.en)
	device, deviceEN := "仪表", "instrument"
	if kw.gas || n.Gas != "" {
		device, deviceEN = "检测器", "detector"
	}
	switch n.Class {
	case "alarm", "":
		return subj + levelZh[n.Level] + "报警", join(" ", subjEN, n.Level, "alarm")
	case "prewarning":
		return subj + "预警", join(" ", subjEN, "prewarning")
	case "fault":
		return subj + device + "故障", join(" ", subjEN, deviceEN, "fault")
	case "offline":
		if n.Sensor == "" && n.Gateway != "" {
			return "网关离线", "gateway offline"
		}
		return subj + device + "离线", join(" ", subjEN, deviceEN, "offline")
	case "violation":
		switch n.Kind {
		case "power", "current", "energy":
			return "停产整顿期间用电异常", "power drawn under a stop order"
		case "sis", "valve":
			return subj + "被旁路", subjEN + " bypassed"
		}
		return subj + "违规", join(" ", subjEN, "violation")
	}
	return subj + n.Class, join(" ", subjEN, n.Class)
}

func levelChange(n *Notification) string {
	kw := kindWords[n.Kind]
	if l, ok := levelZh[n.Level]; ok {
		return firstOf(n.Gas, kw.zh) + "报警等级变为" + l
	}
	zh, _ := what(n)
	return zh + "等级变化"
}

func levelChangeEN(n *Notification) string {
	kw := kindWords[n.Kind]
	if n.Level != "" {
		return join(" ", firstOf(n.GasEN, kw.en), "alarm now at level", n.Level)
	}
	_, en := what(n)
	return en + ", level changed"
}

func reminder(k int) string {
	if k <= 0 {
		return "提醒："
	}
	return "第" + strconv.Itoa(k) + "次提醒："
}

// stateWords say what the end of a hold leaves, by the alarm's state.
var stateWords = map[string][2]string{
	"unack_active": {"报警仍在，请确认处置。", "still active, acknowledge and act now."},
	"ack_active":   {"报警仍在。", "still active."},
	"unack_rtn":    {"已恢复正常，请确认。", "back to normal, acknowledge it."},
	"normal":       {"已消除。", "cleared."},
}

func stateZh(s string) string {
	if w, ok := stateWords[s]; ok {
		return w[0]
	}
	return "状态：" + s + "。"
}

func stateEN(s string) string {
	if w, ok := stateWords[s]; ok {
		return w[1]
	}
	return "state " + s + "."
}

func otherZh(event string) string {
	switch event {
	case "returned":
		return "已恢复正常，请确认。"
	case "acknowledged":
		return "已确认。"
	case "cleared":
		return "已消除。"
	}
	return "事件：" + event + "。"
}

// durations writes d, rounded down to the minute, e.g. 1小时5分钟 /
// 1 h 5 min.
func durations(d time.Duration) (zh, en string) {
	m := int(d / time.Minute)
	switch {
	case m < 1:
		return "不到1分钟", "less than a minute"
	case m < 60:
		return fmt.Sprintf("%d分钟", m), fmt.Sprintf("%d min", m)
	case m < 24*60:
		if m%60 == 0 {
			return fmt.Sprintf("%d小时", m/60), fmt.Sprintf("%d h", m/60)
		}
		return fmt.Sprintf("%d小时%d分钟", m/60, m%60), fmt.Sprintf("%d h %d min", m/60, m%60)
	}
	h := m / 60
	if h%24 == 0 {
		return fmt.Sprintf("%d天", h/24), fmt.Sprintf("%d d", h/24)
	}
	return fmt.Sprintf("%d天%d小时", h/24, h%24), fmt.Sprintf("%d d %d h", h/24, h%24)
}

func ago(dur string) string {
	if dur == "" {
		return ""
	}
	return "已" + dur
}

func forDur(durEN string) string {
	if durEN == "" {
		return ""
	}
	return " for " + durEN
}

func afterDur(durEN string) string {
	if durEN == "" {
		return ""
	}
	return " after " + durEN
}

// join joins the non-empty parts with sep.
func join(sep string, ss ...string) string {
	var b strings.Builder
	for _, s := range ss {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
	}
	return b.String()
}

// shorten cuts s by up to over runes, keeping at least minNameRunes and
// marking a cut with …; it returns how many runes are still over.
func shorten(s string, over int) (string, int) {
	if over <= 0 {
		return s, over
	}
	r := []rune(s)
	keep := max(len(r)-over-1, minNameRunes) // −1 for the …
	if keep+1 >= len(r) {
		return s, over // nothing to gain
	}
	cut := string(r[:keep]) + "…"
	return cut, over - (len(r) - keep - 1)
}
