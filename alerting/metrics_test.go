package alerting

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"hazardwatch/internal/model"
)

// TestMetrics: hw_alarms counts alarms by state and hw_alarm_events_total
// counts live events by name; events replayed from the log at start are
// state, not news, and are not counted again.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, stop := run(t, log)
		evs, cancel := m.Subscribe(16)
		start := time.Now()
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, start), raise(t, "e01-V102-LT", model.H, 2.25, start))
		a := next(t, evs).Alarm
		next(t, evs)
		if err := m.Ack(context.Background(), a.ID, "张伟", ""); err != nil {
			t.Fatal(err)
		}
		next(t, evs)
		want := `
# HELP hw_alarm_events_total Durable alarm events by name (raised, acknowledged, shelved, returned, cleared, …) since the centre started.
# TYPE hw_alarm_events_total counter
hw_alarm_events_total{event="acknowledged"} 1
hw_alarm_events_total{event="raised"} 2
# HELP hw_alarms Alarms by ISA-18.2 state (normal alarms, ended, are not counted).
# TYPE hw_alarms gauge
hw_alarms{state="ack_active"} 1
hw_alarms{state="out_of_service"} 0
hw_alarms{state="shelved"} 0
hw_alarms{state="suppressed"} 0
hw_alarms{state="unack_active"} 1
hw_alarms{state="unack_rtn"} 0
`
		if err := testutil.CollectAndCompare(m.Collector(), strings.NewReader(want)); err != nil {
			t.Error(err)
		}
		cancel()
		stop()

		// A restart replays the log: the same alarms, no events counted.
		m2, stop2 := run(t, log)
		defer stop2()
		if got := testutil.ToFloat64(m2.met.events.WithLabelValues("raised")); got != 0 {
			t.Errorf("after a restart hw_alarm_events_total{event=raised} = %v, want 0", got)
		}
		states := want[strings.Index(want, "# HELP hw_alarms "):]
		if err := testutil.CollectAndCompare(m2.Collector(), strings.NewReader(states), "hw_alarms"); err != nil {
			t.Errorf("after a restart: %v", err)
		}
	})
}
