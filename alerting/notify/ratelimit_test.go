package notify

import (
	"log/slog"

	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"hazardwatch/internal/testlog"
)

// TestRateLimit: token buckets per sensor and per enterprise for first
// notices, on a clock the test moves; escalations, reminders and overdue
// feedback always pass.
func TestRateLimit(t *testing.T) {
	type step struct {
		after  time.Duration // since the previous notice
		sensor string
		ent    string
		event  string
		want   outcome
	}
	cases := []struct {
		name               string
		sensor, enterprise Rate
		steps              []step
	}{
		{"a sensor's burst, then one per period", Rate{Burst: 2, Every: 10 * time.Minute}, Rate{Every: -1}, []step{
			{0, "s1", "e1", EventRaised, outPending},
			{time.Second, "s1", "e1", EventLevelChanged, outPending},
			{time.Second, "s1", "e1", EventRaised, outRateLimited},
			{time.Second, "s2", "e1", EventRaised, outPending}, // another sensor has its own bucket
			{10 * time.Minute, "s1", "e1", EventRaised, outPending},
			{time.Second, "s1", "e1", EventRaised, outRateLimited},
			{25 * time.Minute, "s1", "e1", EventRaised, outPending}, // refilled to the burst, not beyond
			{time.Second, "s1", "e1", EventRaised, outPending},
			{time.Second, "s1", "e1", EventRaised, outRateLimited},
		}},
		{"the closed loop is never limited", Rate{Burst: 1, Every: time.Hour}, Rate{Burst: 1, Every: time.Hour}, []step{
			{0, "s1", "e1", EventRaised, outPending},
			{time.Second, "s1", "e1", EventRaised, outRateLimited},
			{time.Second, "s1", "e1", EventEscalated, outPending},
			{time.Second, "s1", "e1", EventReminded, outPending},
			{time.Second, "s1", "e1", EventFeedbackOverdue, outPending},
			{time.Second, "s1", "e1", EventUnshelved, outPending},
			{time.Second, "s1", "e1", EventLevelChanged, outRateLimited},
		}},
		{"an enterprise's burst across its sensors", Rate{Every: -1}, Rate{Burst: 3, Every: time.Minute}, []step{
			{0, "s1", "e1", EventRaised, outPending},
			{0, "s2", "e1", EventRaised, outPending},
			{0, "s3", "e1", EventRaised, outPending},
			{0, "s4", "e1", EventRaised, outRateLimited},
			{0, "s5", "e2", EventRaised, outPending}, // another enterprise
			{time.Minute, "s4", "e1", EventRaised, outPending},
		}},
		{"a notice the enterprise refuses keeps its sensor's token", Rate{Burst: 1, Every: time.Hour}, Rate{Burst: 1, Every: time.Hour}, []step{
			{0, "s1", "e1", EventRaised, outPending},
			{0, "s2", "e1", EventRaised, outRateLimited}, // by the enterprise
			{0, "s2", "e2", EventRaised, outPending},     // s2 still has its token
		}},
		{"no sensor: the gateway's bucket", Rate{Burst: 1, Every: time.Hour}, Rate{Every: -1}, []step{
			{0, "", "e1", EventRaised, outPending},
			{0, "", "e1", EventRaised, outRateLimited},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			met := newMetrics(nil)
			s := newRateStage(tc.sensor, tc.enterprise, func() time.Time { return now }, new(testlog.Buffer).Logger(slog.LevelDebug), met)
			limitedN := 0
			for i, st := range tc.steps {
				now = now.Add(st.after)
				n := chlorine()
				n.Sensor, n.Enterprise, n.Event, n.Gateway = st.sensor, st.ent, st.event, "gw-1"
				got, err := s.Exec(context.Background(), &delivery{N: n})
				if err != nil || got != st.want {
					t.Errorf("notice %d (%s %s %s at +%s): %v, %v; want %v", i, st.event, st.sensor, st.ent, now.Sub(t0), got, err, st.want)
				}
				if got == outRateLimited {
					limitedN++
				}
			}
			counted := testutil.ToFloat64(met.rateLimited[0]) + testutil.ToFloat64(met.rateLimited[1])
			if counted != float64(limitedN) {
				t.Errorf("hw_notifications_rate_limited_total sums to %v, want %d", counted, limitedN)
			}
		})
	}
}

// TestRateLimitLog: a sensor dropping many notices gives one log line a
// minute with how many, not a line per notice; idle buckets are
// forgotten.
func TestRateLimitLog(t *testing.T) {
	now := t0
	var logs testlog.Buffer
	met := newMetrics(nil)
	s := newRateStage(Rate{Burst: 1, Every: time.Hour}, Rate{Every: -1}, func() time.Time { return now }, logs.Logger(slog.LevelDebug), met)
	n := chlorine()
	n.Event = EventRaised
	for i := range 100 {
		now = t0.Add(time.Duration(i) * time.Second) // 100 notices in 100 s
		if _, err := s.Exec(context.Background(), &delivery{N: n}); err != nil {
			t.Fatal(err)
		}
	}
	// The notice at 60 s flushed the first minute (59 dropped); the rest
	// waits for the next flush.
	if got := logs.Count("first notices dropped"); got != 1 || logs.Count("dropped=59") != 1 {
		t.Fatalf("after 100 s: %d log lines (want 1, with dropped=59):\n%s", got, logs.String())
	}
	now = t0.Add(2 * time.Minute)
	s.flush()
	if got := logs.Count("first notices dropped"); got != 2 || logs.Count("dropped=40") != 1 {
		t.Fatalf("after the second flush: %d lines (want 2, the second with dropped=40):\n%s", got, logs.String())
	}
	s.flush()
	if got := logs.Count("first notices dropped"); got != 2 {
		t.Errorf("a flush with nothing dropped logged: %d lines", got)
	}
	if testutil.ToFloat64(met.rateLimited[0]) != 99 {
		t.Errorf("rate limited %v, want 99", testutil.ToFloat64(met.rateLimited[0]))
	}
	if len(s.buckets) != 1 {
		t.Errorf("%d buckets, want 1 (the sensor, still refilling)", len(s.buckets))
	}
	now = t0.Add(2 * time.Hour)
	s.flush()
	if len(s.buckets) != 0 {
		t.Errorf("%d buckets after the sensor was quiet for an hour, want 0", len(s.buckets))
	}
}
