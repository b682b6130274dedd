package alerting

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"hazardwatch/internal/model"
)

// TestKPIs: the duty report's figures over two hours at e01 and e02 under
// the demo's alarm rules, on the bubble's clock.
//
// e01 (park p01): V101's level chatters (3 raises within a minute, each
// acknowledged at once, the third chattering), V102's level is
// acknowledged late (after the park was notified), GT-101's chlorine
// alarm climbs to the county unacknowledged, and 9 more process alarms
// make 13 new alarms in 5 minutes: a flood. Feedback: V101's first two
// in time; V102's never (overdue: the loop is open).
// e02: one LPG alarm, acknowledged in time.
func TestKPIs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, _, stop := startManagerWith(t, log, 0, demo.Alarms)
		defer stop()
		ctx := context.Background()
		start := time.Now()
		at := func(d time.Duration) time.Time { advance(time.Until(start.Add(d))); return time.Now() }
		id := func(s string) string {
			synctest.Wait()
			for _, a := range m.Active() {
				if a.Source.Sensor == s {
					return a.ID
				}
			}
			t.Fatalf("no open alarm of %s", s)
			return ""
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		// V101 chatters: raised, acknowledged, back, three times.
		var v101 []string
		for i := range 3 {
			now := at(time.Duration(i) * 20 * time.Second)
			submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, now))
			v101 = append(v101, id("e01-V101-LT"))
			must(m.Ack(ctx, v101[i], "张伟", ""))
			submit(t, m, ret(t, "e01-V101-LT", model.ThresholdHigh, 2.1, now.Add(time.Second)))
			synctest.Wait()
			if i < 2 {
				must(m.Feedback(ctx, v101[i], "张伟", "液位波动", "调整控制"))
			}
		}
		// V102, GT-101 and nine more within the next minutes.
		now := at(time.Minute)
		submit(t, m, raise(t, "e01-V102-LT", model.H, 2.3, now), raise(t, "e01-GT-101", model.H, 0.4, now))
		for i, s := range []string{"e01-V101-PT", "e01-V101-TT", "e01-V102-PT", "e01-V102-TT", "e01-V103-PT",
			"e01-F201-TT", "e01-F201-PT", "e01-FT-201", "e01-GT-102"} {
			now = at(time.Minute + time.Duration(i+1)*20*time.Second)
			submit(t, m, raise(t, s, model.H, limit(t, s, model.H)*1.05, now))
		}
		v102 := id("e01-V102-LT")
		at(5 * time.Minute) // V102 (priority 2) reached the park at +4m
		must(m.Ack(ctx, v102, "李明远", ""))
		submit(t, m, raise(t, "e02-V201-LT", model.H, 9.8, at(6*time.Minute)))
		must(m.Ack(ctx, id("e02-V201-LT"), "周强", ""))
		at(2 * time.Hour)

		k := m.KPIs("enterprise", "e01", start, time.Now())
		if k.Alarms != 14 || k.ByClass["alarm"] != 14 || k.ByLevel["L1"] != 14 {
			t.Errorf("e01: %d alarms, by class %v, by level %v; want 14", k.Alarms, k.ByClass, k.ByLevel)
		}
		if k.Top[0] != (ConditionCount{Sensor: "e01-V101-LT", Rule: "threshold_high", Count: 3}) || len(k.Top) != 10 {
			t.Errorf("top: %v", k.Top)
		}
		if want := 12.0 / 14; k.Top10Share != want {
			t.Errorf("top-10 share %.3f, want %.3f", k.Top10Share, want)
		}
		if want := 14.0 / 12; k.Per10Min != want {
			t.Errorf("per 10 min %.3f, want %.3f", k.Per10Min, want)
		}
		if k.Chattering != 1 || k.Floods != 1 || k.Acked != 4 || k.AckedInTime != 3 {
			t.Errorf("chattering %d floods %d acked %d in time %d; want 1, 1, 4, 3", k.Chattering, k.Floods, k.Acked, k.AckedInTime)
		}
		// Unacknowledged for two hours, everything else reached the
		// county (priority 2 at e01-hs1, 3 at e01-hs2); V102 the park.
		if k.Escalated != 11 || k.ToCounty != 10 {
			t.Errorf("escalated %d, to the county %d; want 11, 10", k.Escalated, k.ToCounty)
		}
		if k.FeedbackGiven != 2 || k.FeedbackInTime != 2 || k.FeedbackOverdue != 12 || len(k.LoopOpen) != 12 ||
			!slices.Contains(k.LoopOpen, v102) || slices.Contains(k.LoopOpen, v101[0]) {
			t.Errorf("feedback given %d in time %d overdue %d, loop open %v", k.FeedbackGiven, k.FeedbackInTime, k.FeedbackOverdue, k.LoopOpen)
		}
		e02 := m.KPIs("enterprise", "e02", start, time.Now())
		if e02.Alarms != 1 || e02.AckedInTime != 1 || e02.Floods != 0 || e02.Escalated != 0 {
			t.Errorf("e02: %+v", e02)
		}
		if p := m.KPIs("park", "p01", start, time.Now()); p.Alarms != 15 || p.Floods != 1 {
			t.Errorf("p01: %d alarms, %d floods; want 15, 1", p.Alarms, p.Floods)
		}
		if c := m.KPIs("county", "c01", start, time.Now()); c.Alarms != 15 || c.Floods != 1 {
			t.Errorf("c01: %d alarms, %d floods; want 15, 1", c.Alarms, c.Floods)
		}
		if none := m.KPIs("enterprise", "e01", start.Add(-2*time.Hour), start); none.Alarms != 0 || none.Floods != 0 {
			t.Errorf("before: %+v", none)
		}
		// A day on, the 12 left open stand for over 24 h.
		if k := m.KPIs("enterprise", "e01", start, start.Add(25*time.Hour)); k.Standing24h != 12 {
			t.Errorf("standing > 24 h: %d, want 12", k.Standing24h)
		}
	})
}
