package influx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
)

// TestHistoryAgrees writes the same readings to the embedded store and,
// through the writer, to a real InfluxDB 1.8.10, bad ones among them, and
// asks both History implementations the same questions: the answers must
// be the same, bucket by bucket.
func TestHistoryAgrees(t *testing.T) {
	srv := startInflux(t)
	plant := demoPlant(t)
	w := runWriter(t, Options{URL: srv.URL(), Plant: plant, FlushInterval: 50 * time.Millisecond})
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ih, err := NewHistory(Options{URL: srv.URL(), Bucket: testDB + "/autogen"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ih.Close() })

	gas := sensorWhere(t, plant, func(s *model.Sensor) bool { return s.Kind == model.GasToxic && s.HazardSource >= 0 })
	power := sensorWhere(t, plant, func(s *model.Sensor) bool { return s.HazardSource < 0 })
	gasID := plant.Sensors[gas].ID

	// 150 s of readings every 250 ms from half a minute before a minute
	// boundary, so that 1 m buckets are cut at both ends. Values are not
	// round, so a mean exercises the floating point. Among them: bad
	// readings with a spike value and without a value (never counted),
	// uncertain ones with a value (counted) and without (nothing to count),
	// and a whole second of bad readings (10 s–11 s), whose bucket neither
	// side may report. A second sensor's readings must not leak in.
	base := time.Date(2026, 11, 24, 9, 59, 30, 0, time.UTC)
	var rs []model.Reading
	for i := range 600 {
		r := model.Reading{SensorIdx: gas, TS: base.UnixMilli() + int64(i)*250, HasValue: true,
			Value: 20 + 3*math.Sin(float64(i)*0.37) + float64(i)*0.001}
		switch {
		case i >= 40 && i < 44, i%17 == 5:
			r.Quality, r.Reason, r.Value = model.Bad, model.ReasonDeviceFault, 1e6
		case i%23 == 7:
			r.Quality, r.Reason, r.HasValue, r.Value = model.Bad, model.ReasonTimeout, false, 0
		case i%19 == 3:
			r.Quality, r.Reason = model.Uncertain, model.ReasonOutOfRange
		case i%29 == 11:
			r.Quality, r.Reason, r.HasValue, r.Value = model.Uncertain, model.ReasonOutOfRange, false, 0
		}
		rs = append(rs, r, model.Reading{SensorIdx: power, TS: r.TS, Value: 800 + float64(i), HasValue: true})
	}
	pts := make([]store.Point, len(rs))
	for i, r := range rs {
		v := r.Value
		if !r.HasValue {
			v = math.NaN()
		}
		pts[i] = store.Point{Sensor: plant.Sensors[r.SensorIdx].ID, TS: r.TS, Value: v, Quality: r.Quality}
	}
	ctx := context.Background()
	if err := st.Append(ctx, pts); err != nil {
		t.Fatal(err)
	}
	var dc doneCounter
	if err := w.AddReadings(rs, dc.done); err != nil {
		t.Fatal(err)
	}
	dc.wait(t, 1)

	at := func(d time.Duration) time.Time { return base.Add(d) }
	sec := time.Second
	questions := []struct {
		name     string
		sensor   string
		from, to time.Time
		step     time.Duration
		nonEmpty bool
	}{
		{"raw, all", gasID, at(-sec), at(200 * sec), 0, true},
		{"step 1s, all", gasID, at(-sec), at(200 * sec), sec, true},
		{"step 1m, all", gasID, at(-time.Minute), at(200 * sec), time.Minute, true},
		{"step 1h, all", gasID, at(-time.Hour), at(time.Hour), time.Hour, true},
		{"step 24h, all", gasID, at(-24 * time.Hour), at(24 * time.Hour), 24 * time.Hour, true},
		{"step 1m, cut at both ends", gasID, at(10*sec + 300*time.Millisecond), at(130*sec + 700*time.Millisecond), time.Minute, true},
		{"step 1s, cut inside seconds", gasID, at(10*sec + 125*time.Millisecond), at(20*sec + 600*time.Millisecond), sec, true},
		{"step 7s, cut", gasID, at(3*sec + 100*time.Millisecond), at(140 * sec), 7 * sec, true},
		{"step 1500ms, cut", gasID, at(sec + 1), at(100*sec + 1), 1500 * time.Millisecond, true},
		{"raw, cut", gasID, at(5*sec + 100*time.Millisecond), at(9*sec + 900*time.Millisecond), 0, true},
		{"raw, sub-millisecond bounds", gasID, at(2*sec + 250*time.Millisecond + 500*time.Microsecond), at(4*sec + 500*time.Microsecond), 0, true},
		{"step 1s, only bad readings", gasID, at(10 * sec), at(11 * sec), sec, false},
		{"raw, empty range", gasID, at(-2 * time.Hour), at(-time.Hour), 0, false},
		{"step 1m, empty range", gasID, at(-2 * time.Hour), at(-time.Hour), time.Minute, false},
		{"from = to", gasID, at(5 * sec), at(5 * sec), sec, false},
		{"unknown sensor", "no-such-sensor", at(-sec), at(200 * sec), sec, false},
		{"other sensor, step 1m", plant.Sensors[power].ID, at(-time.Minute), at(200 * sec), time.Minute, true},
	}
	for _, q := range questions {
		want, err := st.History(ctx, q.sensor, q.from, q.to, q.step)
		if err != nil {
			t.Fatalf("%s: store: %v", q.name, err)
		}
		got, err := ih.History(ctx, q.sensor, q.from, q.to, q.step)
		if err != nil {
			t.Fatalf("%s: influx: %v", q.name, err)
		}
		if got == nil {
			t.Errorf("%s: influx answered nil, want an empty slice", q.name)
		}
		if (len(want) > 0) != q.nonEmpty {
			t.Errorf("%s: the store answered %d buckets; the question expects them %s", q.name, len(want), map[bool]string{true: "some", false: "none"}[q.nonEmpty])
		}
		if d := diffBuckets(want, got); d != "" {
			t.Errorf("%s: InfluxDB's answer differs from the store's: %s", q.name, d)
		}
		for _, b := range got {
			if q.sensor == gasID && b.Max >= 1e6 {
				t.Errorf("%s: a bad reading's value was counted: %+v", q.name, b)
				break
			}
		}
	}

	// The questions the store refuses, the InfluxDB side refuses the same
	// way (the API answers them 400).
	for _, q := range []struct {
		name     string
		from, to time.Time
		step     time.Duration
	}{
		{"to before from", at(time.Minute), at(0), time.Second},
		{"negative step", at(0), at(time.Minute), -time.Second},
		{"step not in whole milliseconds", at(0), at(time.Minute), 1500 * time.Microsecond},
	} {
		_, serr := st.History(ctx, gasID, q.from, q.to, q.step)
		_, ierr := ih.History(ctx, gasID, q.from, q.to, q.step)
		if !errors.Is(serr, store.ErrBadRange) || !errors.Is(ierr, store.ErrBadRange) {
			t.Errorf("%s: store %v, influx %v; want store.ErrBadRange from both", q.name, serr, ierr)
		}
	}
}

// diffBuckets says how got differs from want, "" when it does not. Times,
// counts, minima and maxima must be equal; means within a relative 1e-12.
// Both sides add the same float64 values and divide by the same count, but
// InfluxDB may add them in another grouping (partial sums per shard or per
// series, merged), and float addition is not associative: that changes the
// last bits, about 1e-16 relative, and nothing a wrong set of values would
// give (one value more or less moves a mean of a few hundred readings of
// 17–23 by far more than 1e-12).
// TestHistoryUnavailable: with the real InfluxDB 1.8.10 stopped, History
// and Ping fail with ErrUnavailable (the API's 503) and work again once it
// is back; a caller that went away is not InfluxDB's fault. Against
// servers that misbehave: a 5xx, a hung answer and an answer broken off
// are unavailable; a 4xx (wrong credentials) and an answer that is not
// InfluxDB's are failures.
func TestHistoryUnavailable(t *testing.T) {
	srv := startInflux(t)
	h, err := NewHistory(Options{URL: srv.URL(), Bucket: testDB + "/autogen", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	from, to := time.Now().Add(-time.Hour), time.Now()
	ask := func() error {
		_, err := h.History(ctx, "e01-V101-LT", from, to, time.Minute)
		return err
	}
	if err := errors.Join(h.Ping(ctx), ask()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for what, err := range map[string]error{"Ping": h.Ping(ctx), "History": ask()} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with InfluxDB stopped: %v, want ErrUnavailable", what, err)
		}
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.History(gone, "e01-V101-LT", from, to, 0); errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("History for a caller gone: %v, want its context.Canceled alone", err)
	}
	srv.Restart()
	if err := errors.Join(h.Ping(ctx), ask()); err != nil {
		t.Errorf("with InfluxDB back: %v", err)
	}

	for _, tt := range []struct {
		name        string
		handler     http.HandlerFunc
		unavailable bool
	}{
		{"503", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}, true},
		{"hung", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true},
		{"broken off", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(`{"results":[{"series":[{"values":[[1`))
		}, true},
		{"401", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"authorization failed"}`, http.StatusUnauthorized)
		}, false},
		{"not InfluxDB", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := httptest.NewServer(tt.handler)
			defer fake.Close()
			h, err := NewHistory(Options{URL: fake.URL, RequestTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			_, err = h.History(ctx, "s", from, to, 0)
			if err == nil || errors.Is(err, ErrUnavailable) != tt.unavailable {
				t.Errorf("History: %v; want an error, unavailable %v", err, tt.unavailable)
			}
		})
	}
}

func diffBuckets(want, got []store.Bucket) string {
	for i := range min(len(want), len(got)) {
		w, g := want[i], got[i]
		if w.TS != g.TS || w.Count != g.Count || w.Min != g.Min || w.Max != g.Max ||
			math.Abs(w.Mean-g.Mean) > 1e-12*math.Max(math.Abs(w.Mean), 1) {
			return fmt.Sprintf("%d buckets, want %d; bucket %d is %+v, want %+v", len(got), len(want), i, g, w)
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Sprintf("%d buckets, want %d; the first extra is %+v", len(got), len(want), got[len(want)])
	case len(got) < len(want):
		return fmt.Sprintf("%d buckets, want %d; the first missing is %+v", len(got), len(want), want[len(got)])
	}
	return ""
}
