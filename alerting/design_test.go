package alerting

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"hazardwatch/internal/model"
)

// TestSuppressionByDesign: e02 is suspended, e01 has a maintenance window
// from +10m to +20m. e02's alarm starts suppressed and never rings; e01's
// rings, is suppressed when the window opens, and shows again (ringing,
// unacknowledged) when it closes; a new e01 alarm inside the window starts
// suppressed; an e01 alarm that came and went inside it is owed nothing.
// A restart inside the window changes nothing of it.
func TestSuppressionByDesign(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := *demo.Plant
		p.Enterprises = slices.Clone(p.Enterprises)
		e01, _ := p.EnterpriseIndex("e01")
		e02, _ := p.EnterpriseIndex("e02")
		p.Enterprises[e02].Status = model.Suspended
		p.Enterprises[e01].Maintenance = []model.MaintenanceWindow{{From: start.Add(10 * time.Minute), To: start.Add(20 * time.Minute), Reason: "年度检修"}}
		log := &memLog{}
		begin := func() (*Manager, <-chan Event, func()) {
			return startOptions(t, Options{Plant: &p, Rules: demo.Rules, Log: log, Alarms: quietAlarms()}, 64)
		}
		m, evs, stop := begin()
		at := func(d time.Duration) time.Time { advance(time.Until(start.Add(d))); return time.Now() }
		expect := func(what string, want ...string) {
			t.Helper()
			synctest.Wait()
			var got []string
			for len(evs) > 0 {
				ev := <-evs
				s := ev.Alarm.Source.Sensor + " " + ev.Name.String() + " " + ev.Alarm.State.String()
				if ev.Ring {
					s += " RING"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s:\n got %q\nwant %q", what, got, want)
			}
		}

		submit(t, m, raise(t, "e02-V201-LT", model.H, 9.8, at(0)))
		expect("the suspended enterprise's alarm", "e02-V201-LT raised suppressed")
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, at(time.Minute)))
		expect("e01 before its window", "e01-V101-LT raised unack_active RING")
		at(10 * time.Minute)
		expect("the window opens", "e01-V101-LT suppressed suppressed")
		submit(t, m, raise(t, "e01-V102-LT", model.H, 2.3, at(12*time.Minute)))
		submit(t, m, raise(t, "e01-V101-PT", model.H, 0.95, at(12*time.Minute)))
		submit(t, m, ret(t, "e01-V101-PT", model.ThresholdHigh, 0.5, at(13*time.Minute)))
		expect("inside the window", "e01-V102-LT raised suppressed", "e01-V101-PT raised suppressed", "e01-V101-PT returned suppressed")

		stop()
		m, evs, stop = begin()
		defer stop()
		expect("a restart inside the window")
		at(20 * time.Minute)
		expect("the window closes",
			"e01-V101-LT unsuppressed unack_active RING", "e01-V101-PT cleared normal", "e01-V102-LT unsuppressed unack_active RING")
		for _, a := range m.Active() {
			if a.Source.Enterprise == "e02" && (a.State != model.StateSuppressed || a.Suppression.Reason != SuppressSuspended) {
				t.Errorf("e02's alarm after the window: %s %+v", a.State, a.Suppression)
			}
		}
	})
}
