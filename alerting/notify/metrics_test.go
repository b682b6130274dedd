package notify

import (
	"testing"
)

// TestMetricsAtStart: every series a dashboard or an alert rule reads
// exists before the first notification, at 0.
func TestMetricsAtStart(t *testing.T) {
	_, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: &fake{name: "webhook"}}, {Notifier: &fake{name: "sms"}, PerRecipient: true}}
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	want := map[string]int{
		"hw_notifications_total":              int(numOutcomes) - 1, // every outcome but pending
		"hw_notifications_rate_limited_total": 2,
		"hw_notification_messages_total":      2 * 3,
		"hw_notification_attempts_total":      2 * 2,
		"hw_notification_retries_total":       2,
		"hw_notification_delivery_seconds":    2,
	}
	for name, n := range want {
		if series[name] != n {
			t.Errorf("%s: %d series, want %d", name, series[name], n)
		}
	}
	if len(series) != len(want) {
		t.Errorf("metrics %v, want %v", series, want)
	}
	for o := outSent; o < numOutcomes; o++ {
		if v := metric(t, reg, "hw_notifications_total", "result", o.String()); v != 0 {
			t.Errorf("%s = %v at start", o, v)
		}
	}
}
