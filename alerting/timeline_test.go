package alerting

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
)

// A timeline is a folder under testdata/timelines: what happens to the
// alarms of the demo plant, through a real Manager on an in-memory log, on
// the synctest bubble's clock (time passes at once; timers fire at their
// exact time).
//
//	timeline.txt  one step a line, optionally at a time after the start:
//	                [+DURATION] COMMAND ARGS…
//	              a step without a time happens when the one before it did.
//	              Commands:
//	                alarms demo                    (first line only) run with the demo's alarm
//	                                               rules: its escalation limits; without it the
//	                                               ladder and the feedback limit are off
//	                sensor ID                      the next steps are about this demo sensor
//	                raise H|HH|L|LL VALUE          a threshold transition of that limit
//	                return VALUE                   the condition of the current alarm ended
//	                ack USER [COMMENT…]
//	                shelve DURATION USER REASON…
//	                unshelve USER [COMMENT…]
//	                suppress suspended|maintenance [USER]
//	                unsuppress [USER]
//	                out_of_service USER REASON…
//	                in_service USER [COMMENT…]
//	                feedback USER CAUSE… | ACTION…
//	                stop | start                   the Manager stops, and starts again on its log
//	                state                          print the current alarm as it stands
//	                wait                           only let the time pass (timers fire)
//	              Actions apply to the sensor's latest alarm. # starts a comment.
//	want.txt      what happened, one line per event, refusal or state (golden;
//	              -update rewrites it), times after the start:
//	                +AT #SEQ EVENT ALARM FROM → TO [(base STATE)] …details
func TestTimelines(t *testing.T) {
	dirs, err := filepath.Glob("testdata/timelines/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no timelines (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				golden.Check(t, filepath.Join(dir, "want.txt"), runTimeline(t, filepath.Join(dir, "timeline.txt")))
			})
		})
	}
}

func runTimeline(t *testing.T, file string) string {
	log := &memLog{}
	start := time.Now()
	lines := readTimeline(t, file)
	alarms := quietAlarms()
	if len(lines) > 0 && lines[0].fields[0] == "alarms" {
		if len(lines[0].fields) != 2 || lines[0].fields[1] != "demo" {
			t.Fatalf("%s:%d: alarms demo is the only choice", file, lines[0].n)
		}
		alarms, lines = demo.Alarms, lines[1:]
	}
	m, evs, stop := startManagerWith(t, log, 64, alarms)
	defer func() { stop() }()
	fls, _ := m.SubscribeFloods(16) // closed when the Manager stops
	var (
		out    strings.Builder
		sensor string
		cur    = map[string]string{}           // sensor → its latest alarm
		shown  = map[string]model.AlarmState{} // alarm → its state after its last event
		ctx    = context.Background()
	)
	// drain prints the events made so far.
	drain := func() {
		synctest.Wait()
		for evs != nil {
			select {
			case ev, ok := <-evs:
				if !ok {
					evs = nil
					return
				}
				out.WriteString(formatEvent(ev, shown[ev.Alarm.ID], start))
				shown[ev.Alarm.ID] = ev.Alarm.State
				cur[ev.Alarm.Source.Sensor] = ev.Alarm.ID
			default:
				for fls != nil {
					select {
					case f, ok := <-fls:
						if !ok {
							fls = nil
							return
						}
						out.WriteString(formatFlood(f, start))
					default:
						return
					}
				}
				return
			}
		}
	}
	for _, l := range lines {
		bad := func(format string, args ...any) {
			t.Fatalf("%s:%d: %s", file, l.n, fmt.Sprintf(format, args...))
		}
		f := l.fields
		if d, err := time.ParseDuration(f[0]); err == nil && strings.HasPrefix(f[0], "+") {
			at := start.Add(d)
			if at.Before(time.Now()) {
				bad("%s is before the step above", f[0])
			}
			advance(time.Until(at)) // the bubble's clock
			f = f[1:]
		}
		drain()
		if len(f) == 0 {
			bad("no command")
		}
		rest := func(i int) string {
			if len(f) <= i {
				return ""
			}
			return strings.Join(f[i:], " ")
		}
		need := func(n int) {
			if len(f) < n {
				bad("%s needs %d arguments", f[0], n-1)
			}
		}
		id := cur[sensor]
		var err error
		switch f[0] {
		case "sensor":
			need(2)
			sensor = f[1]
		case "raise":
			need(3)
			k, ok := map[string]model.LimitKind{"HH": model.HH, "H": model.H, "L": model.L, "LL": model.LL}[f[1]]
			if !ok {
				bad("no limit %q", f[1])
			}
			submit(t, m, raise(t, sensor, k, num64(t, f[2]), time.Now()))
		case "return":
			need(2)
			rule := model.ThresholdHigh
			if a, ok := m.Get(id); ok {
				rule = a.Rule
			}
			submit(t, m, ret(t, sensor, rule, num64(t, f[1]), time.Now()))
		case "ack":
			need(2)
			err = m.Ack(ctx, id, f[1], rest(2))
		case "shelve":
			need(4)
			d, perr := time.ParseDuration(f[1])
			if perr != nil {
				bad("%v", perr)
			}
			err = m.Shelve(ctx, id, f[2], rest(3), d)
		case "unshelve":
			need(2)
			err = m.Unshelve(ctx, id, f[1], rest(2))
		case "suppress":
			need(2)
			err = m.Suppress(ctx, id, rest(2), f[1])
		case "unsuppress":
			err = m.Unsuppress(ctx, id, rest(1))
		case "out_of_service":
			need(3)
			err = m.RemoveFromService(ctx, id, f[1], rest(2))
		case "in_service":
			need(2)
			err = m.ReturnToService(ctx, id, f[1], rest(2))
		case "feedback":
			need(3)
			cause, action, _ := strings.Cut(rest(2), "|")
			err = m.Feedback(ctx, id, f[1], strings.TrimSpace(cause), strings.TrimSpace(action))
		case "stop":
			stop()
		case "start":
			fmt.Fprintf(&out, "%-7s start: %d events in the log\n", rel(time.Since(start)), log.len())
			m, evs, stop = startManagerWith(t, log, 64, alarms)
			fls, _ = m.SubscribeFloods(16)
			for _, f := range m.Floods() {
				out.WriteString(formatFlood(f, start))
			}
		case "state":
			a, ok := m.Get(id)
			if !ok {
				bad("no alarm of %s", sensor)
			}
			out.WriteString(formatState(a, start))
		case "wait":
		default:
			bad("unknown command %q", f[0])
		}
		if err != nil {
			fmt.Fprintf(&out, "%-7s %s refused: %v\n", rel(time.Since(start)), f[0], err)
		}
		drain()
	}
	return out.String()
}

type timelineLine struct {
	n      int
	fields []string
}

func readTimeline(t *testing.T, file string) []timelineLine {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []timelineLine
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, timelineLine{n, f})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func num64(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rel writes a time after the start short: 0s, 90s as 1m30s, 1h, 1h5m.
func rel(d time.Duration) string {
	s := "+" + d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func formatEvent(ev Event, from model.AlarmState, start time.Time) string {
	a := ev.Alarm
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s #%-2d %-14s %s  %s → %s", rel(ev.At.Sub(start)), ev.Seq.Global, ev.Name, a.ID, from, a.State)
	if a.Held() {
		fmt.Fprintf(&b, " (base %s)", a.Base)
	}
	if a.Unshown {
		b.WriteString(" unseen")
	}
	if (a.State == model.StateAckActive || a.Base == model.StateAckActive) && !a.Active {
		b.WriteString(" condition ended")
	}
	switch ev.Op {
	case OpRaise, OpLevelChange, OpReturn:
		fmt.Fprintf(&b, "  %s %s", a.Level, num(a.Value)+unit(a.Unit))
	}
	if ev.Ring {
		b.WriteString("  RING")
	}
	if ev.User != "" {
		b.WriteString("  by " + ev.User)
	}
	switch {
	case ev.Op == OpShelve:
		b.WriteString("  until " + rel(ev.Due.Sub(start)))
	case !ev.Due.IsZero():
		b.WriteString("  due " + rel(ev.Due.Sub(start)))
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, "  reason %q", ev.Reason)
	}
	if ev.Comment != "" {
		fmt.Fprintf(&b, "  %q", ev.Comment)
	}
	if ev.Cause != "" {
		fmt.Fprintf(&b, "  cause %q action %q", ev.Cause, ev.Action)
	}
	if a.Count > 1 || a.Chattering {
		fmt.Fprintf(&b, "  count %d", a.Count)
		if a.Chattering {
			b.WriteString(" chattering")
		}
	}
	if ev.Name == Escalated || ev.Name == Reminded {
		fmt.Fprintf(&b, "  step %s", a.Escalation.Step)
		if ev.Name == Reminded {
			fmt.Fprintf(&b, " reminder %d", a.Escalation.Reminders)
		}
	}
	if len(ev.Notified) > 0 {
		var ns []string
		for _, c := range ev.Notified {
			ns = append(ns, c.Name+"("+c.Role+")")
		}
		b.WriteString("  → " + strings.Join(ns, " "))
	}
	if ev.Name == Raised || ev.Name == LevelChanged {
		b.WriteString("\n        " + a.Message)
	}
	return b.String() + "\n"
}

func formatFlood(f Flood, start time.Time) string {
	if f.Active {
		return fmt.Sprintf("%-7s FLOOD %s %s since %s: %d new alarms in the window\n", rel(time.Since(start)), f.Scope, f.ID, rel(f.Since.Sub(start)), f.Count)
	}
	return fmt.Sprintf("%-7s flood over %s %s (since %s, peak %d)\n", rel(f.Until.Sub(start)), f.Scope, f.ID, rel(f.Since.Sub(start)), f.Peak)
}

func formatState(a Alarm, start time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s state %s: %s", rel(time.Since(start)), a.ID, a.State)
	if a.Held() {
		fmt.Fprintf(&b, " (base %s)", a.Base)
	}
	cond := "condition holds"
	if !a.Active {
		cond = "condition ended"
	}
	if a.Unshown {
		cond += " (an episode unseen: it began while held)"
	}
	fmt.Fprintf(&b, ", %s, %s, priority %d", cond, a.Level, a.Priority)
	for _, h := range []struct {
		name string
		h    Hold
	}{{"shelf", a.Shelf}, {"suppression", a.Suppression}, {"out of service", a.OutOfService}} {
		if !h.h.On() {
			continue
		}
		fmt.Fprintf(&b, ", %s since %s", h.name, rel(h.h.At.Sub(start)))
		if !h.h.Until.IsZero() {
			b.WriteString(" until " + rel(h.h.Until.Sub(start)))
		}
	}
	if a.AckedBy != "" {
		fmt.Fprintf(&b, ", acknowledged by %s at %s", a.AckedBy, rel(a.AckedAt.Sub(start)))
	}
	if !a.ClearedAt.IsZero() {
		fmt.Fprintf(&b, ", ended at %s", rel(a.ClearedAt.Sub(start)))
	}
	if e := a.Escalation; !e.Started.IsZero() {
		fmt.Fprintf(&b, ", escalation at %s", e.Step)
		if !e.DueAt.IsZero() {
			fmt.Fprintf(&b, " next due %s", rel(e.DueAt.Sub(start)))
		}
	}
	switch {
	case a.Feedback.Given():
		fmt.Fprintf(&b, ", feedback by %s at %s", a.Feedback.By, rel(a.Feedback.At.Sub(start)))
	case a.FeedbackOverdue:
		b.WriteString(", feedback overdue")
	case !a.FeedbackDue.IsZero():
		fmt.Fprintf(&b, ", feedback due %s", rel(a.FeedbackDue.Sub(start)))
	}
	return b.String() + "\n"
}
