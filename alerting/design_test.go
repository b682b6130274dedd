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
		expect := func(what string, want ...string) { t.Helper(); expectEvents(t, evs, false, what, want...) }

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

// TestDesignAtRunTime: an admin's Design. e01-V101-LT goes out of service
// until +30m with its alarm open: the alarm is taken out of service, a new
// occurrence starts so and never rings, and at +30m it returns by itself
// ("system"). e02 is suspended by the admin until +20m: its open alarm is
// suppressed and released at +20m. Another sensor taken out of service and
// returned by hand is returned by the admin. A restart keeps it all, from
// Options.Design.
func TestDesignAtRunTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		log := &memLog{}
		var d model.Design
		begin := func() (*Manager, <-chan Event, func()) {
			return startOptions(t, Options{Plant: demo.Plant, Rules: demo.Rules, Log: log, Alarms: quietAlarms(), Design: d}, 64)
		}
		m, evs, stop := begin()
		at := func(dd time.Duration) time.Time { advance(time.Until(start.Add(dd))); return time.Now() }
		expect := func(what string, want ...string) { t.Helper(); expectEvents(t, evs, true, what, want...) }
		set := func(user string) {
			t.Helper()
			if err := m.SetDesign(t.Context(), d, user); err != nil {
				t.Fatal(err)
			}
		}
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, at(0)))
		submit(t, m, raise(t, "e02-V201-LT", model.H, 9.8, at(0)))
		submit(t, m, raise(t, "e01-V101-PT", model.H, 0.95, at(0)))
		expect("raised", "e01-V101-LT raised unack_active RING", "e02-V201-LT raised unack_active RING", "e01-V101-PT raised unack_active RING")

		d = model.Design{
			OutOfService: map[string]model.ServiceHold{
				"e01-V101-LT": {Since: at(time.Minute), Until: start.Add(30 * time.Minute), By: "admin", Reason: "液位计标定"},
				"e01-V101-PT": {Since: at(time.Minute), By: "admin", Reason: "更换变送器"},
			},
			Status: map[string]model.StatusSetting{"e02": {Status: model.Suspended, At: at(time.Minute), Until: start.Add(20 * time.Minute), By: "admin", Reason: "检修"}},
		}
		set("admin")
		expect("the admin's design", "e01-V101-LT out_of_service out_of_service by admin",
			"e01-V101-PT out_of_service out_of_service by admin", "e02-V201-LT suppressed suppressed")
		if _, err := New(Options{Plant: demo.Plant, Log: log, Design: model.Design{OutOfService: map[string]model.ServiceHold{"nope": {}}}}); err == nil {
			t.Error("a design naming no sensor of the plant was taken")
		}

		submit(t, m, ret(t, "e01-V101-LT", model.ThresholdHigh, 1.0, at(5*time.Minute)))
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.3, at(6*time.Minute)))
		expect("a new occurrence while out of service", "e01-V101-LT returned out_of_service", "e01-V101-LT raised out_of_service")

		stop()
		m, evs, stop = begin()
		defer stop()
		expect("a restart")

		delete(d.OutOfService, "e01-V101-PT")
		set("admin2")
		expect("returned by hand", "e01-V101-PT in_service unack_active by admin2 RING")
		at(20 * time.Minute)
		expect("the suspension ends", "e02-V201-LT unsuppressed unack_active RING")
		at(30 * time.Minute)
		expect("the calibration ends", "e01-V101-LT in_service unack_active by system RING")
	})
}

// expectEvents waits until the bubble is idle and checks the events
// delivered since the last look: "sensor event state [by user] [RING]".
// evs is read where it is, so a restart's new channel needs a new call.
func expectEvents(t *testing.T, evs <-chan Event, users bool, what string, want ...string) {
	t.Helper()
	synctest.Wait()
	var got []string
	for len(evs) > 0 {
		ev := <-evs
		s := ev.Alarm.Source.Sensor + " " + ev.Name.String() + " " + ev.Alarm.State.String()
		if users && ev.User != "" {
			s += " by " + ev.User
		}
		if ev.Ring {
			s += " RING"
		}
		got = append(got, s)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}
