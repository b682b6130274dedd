package notify

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"hazardwatch/internal/golden"
)

// stepCase is the chlorine alarm as each step sees it: the enterprise
// 5 minutes on (an escalation at step 0 is odd but must read well), the
// park 15 minutes on, the county 25 minutes on.
func stepCase(event string, step int) Notification {
	n := chlorine()
	n.Event, n.Step = event, step
	n.At = t0.Add([...]time.Duration{5 * time.Minute, 15 * time.Minute, 25 * time.Minute}[step])
	switch event {
	case EventEscalated:
		n.Due = n.At
	case EventReminded:
		n.Reminder = 2
		n.At = n.At.Add(10 * time.Minute)
		n.Due = n.At
	case EventFeedbackOverdue:
		n.State = "ack_active"
		n.At = n.At.Add(30 * time.Minute)
		n.Due = n.At
	case EventLevelChanged:
		n.At = n.At.Add(3 * time.Minute)
	case EventUnshelved:
		n.At = n.At.Add(40 * time.Minute)
	case EventUnsuppressed:
		n.State = "unack_rtn"
	case EventInService:
		n.Level, n.Class = "", "fault"
	}
	return n
}

func describe(n *Notification) string {
	zh, en := Texts{}.Format(n)
	return fmt.Sprintf("step %d %s, reminder %d (%d 字)\nzh: %s\nen: %s\n", n.Step, stepNames[n.Step], n.Reminder,
		utf8.RuneCountInString(zh), zh, en)
}

// TestTextsGolden: every event the texts know, for every step, with the
// demo's names, each within one SMS segment.
func TestTextsGolden(t *testing.T) {
	for _, ev := range Events() {
		t.Run(ev, func(t *testing.T) {
			var b strings.Builder
			fmt.Fprintf(&b, "# %s: the chlorine tank farm's L2 alarm raised at 10:02\n\n", ev)
			for step := StepEnterprise; step <= StepCounty; step++ {
				n := stepCase(ev, step)
				b.WriteString(describe(&n) + "\n")
				if zh, _ := (Texts{}).Format(&n); utf8.RuneCountInString(zh) > DefaultMaxRunes {
					t.Errorf("step %d: %d characters, more than one SMS segment: %s", step, utf8.RuneCountInString(zh), zh)
				}
			}
			golden.Check(t, filepath.Join("testdata", "text", ev+".txt"), b.String())
		})
	}
}

// TestTextsClasses: what each class of alarm is called, and the texts'
// edge cases: a day boundary, no raise time, names too long for a segment.
func TestTextsClasses(t *testing.T) {
	raised := func(mod func(*Notification)) Notification {
		n := chlorine()
		n.Event, n.Step, n.At, n.Recipients = EventRaised, StepEnterprise, t0, nil
		mod(&n)
		return n
	}
	cases := []struct {
		name string
		n    Notification
	}{
		{"toxic gas L1 alarm", raised(func(n *Notification) { n.Level, n.Priority = "L1", 2 })},
		{"level L2 alarm, no gas", raised(func(n *Notification) {
			n.Kind, n.Gas, n.GasEN, n.SensorName, n.HazardSourceName = "level", "", "", "V101 液氯储罐液位", "液氯储罐区"
		})},
		{"level prewarning", raised(func(n *Notification) { n.Class, n.Level, n.Kind, n.Gas, n.GasEN = "prewarning", "", "level", "", "" })},
		{"gas detector fault", raised(func(n *Notification) { n.Class, n.Level = "fault", "" })},
		{"pressure instrument offline", raised(func(n *Notification) { n.Class, n.Level, n.Kind, n.Gas, n.GasEN = "offline", "", "pressure", "", "" })},
		{"gateway offline", raised(func(n *Notification) {
			n.Class, n.Level, n.Kind, n.Gas, n.GasEN, n.Sensor, n.SensorName, n.HazardSource, n.HazardSourceName =
				"offline", "", "", "", "", "", "", "", ""
		})},
		{"stop-order power violation", raised(func(n *Notification) {
			n.Class, n.Level, n.Kind, n.Gas, n.GasEN = "violation", "", "power", "", ""
			n.EnterpriseName, n.HazardSource, n.HazardSourceName, n.SensorName = "示范县绿禾农药化工有限公司", "", "", "总进线有功功率"
		})},
		{"SIS bypassed", raised(func(n *Notification) { n.Class, n.Level, n.Kind, n.Gas, n.GasEN = "violation", "", "sis", "", "" })},
		{"raised yesterday, escalated today", raised(func(n *Notification) {
			n.Event, n.Step, n.At = EventEscalated, StepPark, t0.Add(26*time.Hour+5*time.Minute)
		})},
		{"no raise time", raised(func(n *Notification) { n.Event, n.Step, n.RaisedAt = EventEscalated, StepPark, time.Time{} })},
		{"names too long for a segment", raised(func(n *Notification) {
			n.Event, n.Step, n.Reminder, n.At = EventReminded, StepCounty, 3, t0.Add(2*time.Hour+5*time.Minute)
			n.HazardSourceName = "氯化氢合成及氢气处理装置"
		})},
		{"an event without a text of its own", raised(func(n *Notification) { n.Event = "acknowledged" })},
		{"an unknown event", raised(func(n *Notification) { n.Event = "teleported" })},
	}
	var b strings.Builder
	for _, tc := range cases {
		fmt.Fprintf(&b, "# %s: %s\n%s\n", tc.name, tc.n.Event, describe(&tc.n))
	}
	golden.Check(t, filepath.Join("testdata", "text", "classes.txt"), b.String())
}

// TestShorten: names give way, to four characters at least, and the text
// of a long reminder fits the segment.
func TestShorten(t *testing.T) {
	cases := []struct {
		s        string
		over     int
		want     string
		wantOver int
	}{
		{"液氯储罐区", 0, "液氯储罐区", 0},
		{"液氯储罐区", -3, "液氯储罐区", -3},
		{"氯化氢合成及氢气处理装置", 3, "氯化氢合成及氢气…", 0},
		{"氯化氢合成及氢气处理装置", 20, "氯化氢合…", 13},
		// 4 kept and … would be as long as the name: nothing gained.
		{"液氯储罐区", 1, "液氯储罐区", 1},
		{"液氯储罐区东侧", 2, "液氯储罐…", 0},
		{"液氯储罐区东侧", 9, "液氯储罐…", 7},
		{"短", 5, "短", 5},
	}
	for _, c := range cases {
		got, over := shorten(c.s, c.over)
		if got != c.want || over != c.wantOver {
			t.Errorf("shorten(%q, %d) = %q, %d; want %q, %d", c.s, c.over, got, over, c.want, c.wantOver)
		}
	}
}

func TestDurations(t *testing.T) {
	cases := []struct {
		d      time.Duration
		zh, en string
	}{
		{-time.Minute, "不到1分钟", "less than a minute"},
		{59 * time.Second, "不到1分钟", "less than a minute"},
		{15*time.Minute + 59*time.Second, "15分钟", "15 min"},
		{time.Hour, "1小时", "1 h"},
		{time.Hour + 5*time.Minute, "1小时5分钟", "1 h 5 min"},
		{48 * time.Hour, "2天", "2 d"},
		{51*time.Hour + 30*time.Minute, "2天3小时", "2 d 3 h"},
	}
	for _, c := range cases {
		if zh, en := durations(c.d); zh != c.zh || en != c.en {
			t.Errorf("durations(%s) = %q, %q; want %q, %q", c.d, zh, en, c.zh, c.en)
		}
	}
}
