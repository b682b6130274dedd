package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"hazardwatch/internal/config"
	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Deadlines: generous for a 2-core machine under the race detector; waits
// poll, so a fast machine never pays them.
const waitLong = 30 * time.Second

const testDB = "hazardwatch"

func demoPlant(t testing.TB) *model.Plant {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Plant
}

// startInflux starts influxd with the database the writer writes to.
func startInflux(t testing.TB) *influxtest.Server {
	t.Helper()
	s := influxtest.Start(t)
	s.CreateDatabase(testDB)
	return s
}

// runWriter starts a writer on srv and stops it at the end of t.
func runWriter(t testing.TB, o Options) *Writer {
	t.Helper()
	if o.Bucket == "" {
		o.Bucket = testDB + "/autogen"
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// waitFor polls cond until it holds or waitLong passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, waitLong, cond)
}

// doneCounter counts done callbacks.
type doneCounter struct{ n atomic.Int64 }

func (d *doneCounter) done() { d.n.Add(1) }

func (d *doneCounter) wait(t testing.TB, want int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d done callbacks", want), func() bool { return d.n.Load() >= want })
	if got := d.n.Load(); got != want {
		t.Fatalf("done called %d times, want %d", got, want)
	}
}

func sensorWhere(t testing.TB, p *model.Plant, cond func(*model.Sensor) bool) int32 {
	t.Helper()
	for i := range p.Sensors {
		if cond(&p.Sensors[i]) {
			return int32(i)
		}
	}
	t.Fatal("no such sensor in the demo plant")
	return -1
}

func count(t testing.TB, s *influxtest.Server, q string) int64 {
	t.Helper()
	n, err := s.Count(testDB, q)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReadingPoints writes readings and alarm events and reads them back
// with InfluxQL and with Flux through the /api/v2 query endpoint: every
// tag and field of SPEC §3, with its type.
func TestReadingPoints(t *testing.T) {
	srv := startInflux(t)
	plant := demoPlant(t)
	reg := prometheus.NewRegistry()
	w := runWriter(t, Options{URL: srv.URL(), Plant: plant, Registerer: reg, FlushInterval: 50 * time.Millisecond})

	gas := sensorWhere(t, plant, func(s *model.Sensor) bool { return s.Kind == model.GasToxic && s.HazardSource >= 0 })
	power := sensorWhere(t, plant, func(s *model.Sensor) bool { return s.HazardSource < 0 })
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).UnixMilli()
	rs := []model.Reading{
		{SensorIdx: gas, TS: ts, Value: 3.25, HasValue: true},
		{SensorIdx: gas, TS: ts + 1000, Value: 4.5, HasValue: true, Quality: model.Uncertain},
		{SensorIdx: gas, TS: ts + 2000, Quality: model.Bad, Reason: model.ReasonTimeout},
		{SensorIdx: power, TS: ts, Value: 812.5, HasValue: true, Late: true},
	}
	evs := []AlarmEvent{{
		Time: time.UnixMilli(ts + 1000), Enterprise: "e01", HazardSource: "hs1", Sensor: plant.Sensors[gas].ID,
		Class: "alarm", Level: "L1", Rule: "threshold_high", Event: "raised",
		Value: 4.5, Limit: 4, Message: "氯气浓度高 / chlorine high", AlarmID: plant.Sensors[gas].ID + ".threshold_high.1",
	}}
	var dc doneCounter
	if err := w.AddReadings(rs, dc.done); err != nil {
		t.Fatal(err)
	}
	if err := w.AddAlarmEvents(evs, dc.done); err != nil {
		t.Fatal(err)
	}
	dc.wait(t, 2)

	series, err := srv.Query(testDB, `SELECT * FROM reading GROUP BY * ORDER BY time`)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 {
		t.Fatalf("%d series, want 2 (one per sensor): %+v", len(series), series)
	}
	wantTags := func(idx int32) map[string]string {
		s := &plant.Sensors[idx]
		e := &plant.Enterprises[s.Enterprise]
		pk := &plant.Parks[e.Park]
		m := map[string]string{
			"county": plant.Counties[pk.County].ID, "park": pk.ID, "enterprise": e.ID,
			"gateway": plant.Gateways[s.Gateway].ID, "sensor": s.ID, "kind": s.Kind.String(), "unit": s.Unit, "hazard_source": "",
		}
		if s.HazardSource >= 0 {
			m["hazard_source"] = plant.HazardSources[s.HazardSource].ID
		}
		return m
	}
	type row struct {
		ts      int64
		value   any
		quality any
		reason  any
	}
	want := map[string][]row{
		plant.Sensors[gas].ID: {
			{ts, json.Number("3.25"), json.Number("0"), nil},
			{ts + 1000, json.Number("4.5"), json.Number("1"), nil},
			{ts + 2000, nil, json.Number("2"), "timeout"},
		},
		plant.Sensors[power].ID: {{ts, json.Number("812.5"), json.Number("0"), nil}},
	}
	for _, s := range series {
		id := s.Tags["sensor"]
		idx, _ := plant.SensorIndex(id)
		for k, v := range wantTags(idx) {
			if s.Tags[k] != v {
				t.Errorf("sensor %s: tag %s = %q, want %q", id, k, s.Tags[k], v)
			}
		}
		if len(s.Tags) != 8 {
			t.Errorf("sensor %s: tags %v, want the 8 of SPEC §3", id, s.Tags)
		}
		col := map[string]int{}
		for i, c := range s.Columns {
			col[c] = i
		}
		if len(s.Values) != len(want[id]) {
			t.Fatalf("sensor %s: %d points, want %d: %v", id, len(s.Values), len(want[id]), s.Values)
		}
		for i, v := range s.Values {
			w := want[id][i]
			got := row{ts: influxtest.Int(t, v[col["time"]]), value: v[col["value"]], quality: v[col["quality"]], reason: v[col["reason"]]}
			if got != w {
				t.Errorf("sensor %s point %d = %+v, want %+v", id, i, got, w)
			}
		}
	}

	// Field types as InfluxDB keeps them: Grafana users filter on quality
	// as an integer.
	keys, err := srv.Query(testDB, `SHOW FIELD KEYS FROM reading`)
	if err != nil {
		t.Fatal(err)
	}
	gotTypes := map[string]string{}
	for _, v := range keys[0].Values {
		gotTypes[v[0].(string)] = v[1].(string)
	}
	if wantTypes := map[string]string{"value": "float", "quality": "integer", "reason": "string"}; fmt.Sprint(gotTypes) != fmt.Sprint(wantTypes) {
		t.Errorf("reading fields %v, want %v", gotTypes, wantTypes)
	}

	ev, err := srv.Query(testDB, `SELECT * FROM alarm_event GROUP BY *`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || len(ev[0].Values) != 1 {
		t.Fatalf("alarm_event: %+v, want one point", ev)
	}
	wantEvTags := map[string]string{"enterprise": "e01", "hazard_source": "hs1", "sensor": plant.Sensors[gas].ID, "class": "alarm", "level": "L1", "rule": "threshold_high", "event": "raised"}
	if fmt.Sprint(ev[0].Tags) != fmt.Sprint(wantEvTags) {
		t.Errorf("alarm_event tags %v, want %v", ev[0].Tags, wantEvTags)
	}
	gotEv := map[string]any{}
	for i, c := range ev[0].Columns {
		gotEv[c] = ev[0].Values[0][i]
	}
	wantEv := map[string]any{"time": json.Number(fmt.Sprint(ts + 1000)), "value": json.Number("4.5"), "limit": json.Number("4"),
		"message": "氯气浓度高 / chlorine high", "alarm_id": evs[0].AlarmID}
	if fmt.Sprint(gotEv) != fmt.Sprint(wantEv) {
		t.Errorf("alarm_event fields %v, want %v", gotEv, wantEv)
	}

	// The same points through Flux on the /api/v2 query endpoint, as a
	// Grafana InfluxDB (Flux) data source reads them.
	client := influxdb2.NewClient(srv.URL(), "")
	defer client.Close()
	res, err := client.QueryAPI("").Query(context.Background(), fmt.Sprintf(`from(bucket: "%s/autogen")
  |> range(start: 2026-11-24T00:00:00Z, stop: 2026-11-25T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "reading" and r._field == "value" and r.sensor == "%s")`, testDB, plant.Sensors[gas].ID))
	if err != nil {
		t.Fatal(err)
	}
	var flux []string
	for res.Next() {
		r := res.Record()
		flux = append(flux, fmt.Sprintf("%d=%v@%s/%s", r.Time().UnixMilli(), r.Value(), r.ValueByKey("enterprise"), r.ValueByKey("hazard_source")))
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	hs := plant.HazardSources[plant.Sensors[gas].HazardSource].ID
	if want := fmt.Sprintf("[%d=3.25@e01/%s %d=4.5@e01/%s]", ts, hs, ts+1000, hs); fmt.Sprint(flux) != want {
		t.Errorf("flux: %v, want %s", flux, want)
	}

	if got := testutil.ToFloat64(w.m.readings); got != 4 {
		t.Errorf("hw_influx_points_written_total{measurement=reading} = %v, want 4", got)
	}
	if got := testutil.ToFloat64(w.m.events); got != 1 {
		t.Errorf("hw_influx_points_written_total{measurement=alarm_event} = %v, want 1", got)
	}
	if st := w.Stats(); st.NewestReading != ts+2000 || st.Pending != 0 {
		t.Errorf("stats %+v: want NewestReading %d (the late reading not counted), nothing pending", st, ts+2000)
	}
}

// TestReplayIsOnePoint writes readings live, then the same readings twice
// more as a replay (late) would carry them: each stays one point.
func TestReplayIsOnePoint(t *testing.T) {
	srv := startInflux(t)
	plant := demoPlant(t)
	w := runWriter(t, Options{URL: srv.URL(), Plant: plant, FlushInterval: 20 * time.Millisecond})
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).UnixMilli()
	var rs []model.Reading
	for i := range plant.Sensors {
		rs = append(rs, model.Reading{SensorIdx: int32(i), TS: ts, Value: float64(i) / 4, HasValue: true})
	}
	var dc doneCounter
	if err := w.AddReadings(rs, dc.done); err != nil {
		t.Fatal(err)
	}
	dc.wait(t, 1)
	for i := range rs {
		rs[i].Late = true
	}
	for range 2 {
		if err := w.AddReadings(rs, dc.done); err != nil {
			t.Fatal(err)
		}
	}
	dc.wait(t, 3)
	if n := count(t, srv, `SELECT count(quality) FROM reading`); n != int64(len(rs)) {
		t.Errorf("%d points after one live write and two replays of %d readings, want %d", n, len(rs), len(rs))
	}
	series, err := srv.Query(testDB, `SHOW SERIES FROM reading`)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || len(series[0].Values) != len(plant.Sensors) {
		t.Errorf("series: %+v, want one per sensor (%d)", series, len(plant.Sensors))
	}
	if st := w.Stats(); st.Readings != uint64(3*len(rs)) {
		t.Errorf("stats: %d readings written, want %d", st.Readings, 3*len(rs))
	}
}

// TestOutage stops InfluxDB while readings keep coming: nothing is
// acknowledged (done) while it is down, the writer stays within MaxPending
// and says ErrFull, and once InfluxDB is back every reading is written.
func TestOutage(t *testing.T) {
	srv := startInflux(t)
	plant := demoPlant(t)
	reg := prometheus.NewRegistry()
	const maxPending = 2000
	w := runWriter(t, Options{URL: srv.URL(), Plant: plant, Registerer: reg, MaxPending: maxPending, BatchSize: 500,
		FlushInterval: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, RequestTimeout: 2 * time.Second})

	ts0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).UnixMilli()
	n := len(plant.Sensors)
	cycle := func(c int) []model.Reading {
		rs := make([]model.Reading, n)
		for i := range rs {
			rs[i] = model.Reading{SensorIdx: int32(i), TS: ts0 + int64(c)*1000, Value: float64(c), HasValue: true}
		}
		return rs
	}
	var dc doneCounter
	// Feeds cycles from..to-1, waiting for room when the writer is full.
	var fullSeen, restarted atomic.Bool
	feed := func(from, to int) {
		for c := from; c < to; c++ {
			for {
				room := w.Room()
				err := w.AddReadings(cycle(c), dc.done)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) {
					t.Error(err)
					return
				}
				fullSeen.Store(true)
				// Only while InfluxDB has not come back: from then on the
				// writer drains between the refusal and this look.
				if st := w.Stats(); !restarted.Load() && st.Pending+n <= maxPending {
					t.Errorf("ErrFull with %d points pending, %d to add, bound %d", st.Pending, n, maxPending)
				}
				<-room
			}
		}
	}
	feed(0, 10)
	dc.wait(t, 10)

	srv.Stop()
	var wg sync.WaitGroup
	wg.Go(func() { feed(10, 200) })
	waitFor(t, "the writer full while InfluxDB is down", fullSeen.Load)
	if got := dc.n.Load(); got != 10 {
		t.Errorf("%d done callbacks while InfluxDB is down, want 10 (those before)", got)
	}
	if st := w.Stats(); st.Pending > maxPending {
		t.Errorf("stats while down: %+v: want at most %d pending", st, maxPending)
	}
	// The writer may fill before its first write has failed (a loaded
	// machine): the failure shows in its stats and counters soon after.
	waitFor(t, "the writer failing", func() bool { return !w.Stats().FailingSince.IsZero() })
	waitFor(t, "failed writes counted", func() bool { return testutil.ToFloat64(w.m.storeErrors) > 0 })

	restarted.Store(true)
	srv.Restart()
	wg.Wait()
	dc.wait(t, 200)
	if got := count(t, srv, `SELECT count(value) FROM reading`); got != int64(200*n) {
		t.Errorf("%d points in InfluxDB after the outage, want %d", got, 200*n)
	}
	if st := w.Stats(); !st.FailingSince.IsZero() || st.Pending != 0 || st.Readings != uint64(200*n) {
		t.Errorf("stats after the outage: %+v", st)
	}
	if got := testutil.ToFloat64(w.m.readings); got != float64(200*n) {
		t.Errorf("hw_influx_points_written_total{measurement=reading} = %v, want %d", got, 200*n)
	}
}

// TestRefusedBatch: a batch InfluxDB refuses for good (here a field of
// another type than the series has) is counted, logged and done, not
// retried for ever.
func TestRefusedBatch(t *testing.T) {
	srv := startInflux(t)
	plant := demoPlant(t)
	s := &plant.Sensors[0]
	// quality as a string first: the writer's integer quality conflicts.
	line := fmt.Sprintf("reading,sensor=%s quality=\"good\" 1764000000000000000", s.ID)
	resp, err := http.Post(srv.URL()+"/write?db="+testDB, "text/plain", strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("seeding the conflicting field: %s", resp.Status)
	}
	w := runWriter(t, Options{URL: srv.URL(), Plant: plant, FlushInterval: 20 * time.Millisecond, MinBackoff: time.Millisecond})
	var dc doneCounter
	if err := w.AddReadings([]model.Reading{{SensorIdx: 0, TS: 1764000001000, Value: 1, HasValue: true}}, dc.done); err != nil {
		t.Fatal(err)
	}
	dc.wait(t, 1)
	if st := w.Stats(); st.Rejected != 1 || st.Readings != 0 {
		t.Errorf("stats %+v: want 1 rejected, 0 written", st)
	}
	if got := testutil.ToFloat64(w.m.writes.rejected); got != 1 {
		t.Errorf("hw_influx_writes_total{result=rejected} = %v, want 1", got)
	}
}

// TestAlarmEventWithoutSensor: a gateway's offline alarm has no sensor and
// no hazard source; its events are written without those tags, and
// InfluxDB takes them.
func TestAlarmEventWithoutSensor(t *testing.T) {
	srv := startInflux(t)
	w := runWriter(t, Options{URL: srv.URL(), Plant: demoPlant(t), Registerer: prometheus.NewRegistry(), FlushInterval: 50 * time.Millisecond})
	ev := AlarmEvent{
		Time: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), Enterprise: "e01", Class: "offline", Rule: "gateway_silent", Event: "raised",
		Value: 95, Limit: 5, Message: "网关 gw-e01-1 离线 / gateway gw-e01-1 offline", AlarmID: "gw-e01-1.gateway_silent.1",
	}
	var dc doneCounter
	if err := w.AddAlarmEvents([]AlarmEvent{ev}, dc.done); err != nil {
		t.Fatal(err)
	}
	dc.wait(t, 1)
	got, err := srv.Query(testDB, `SELECT * FROM alarm_event GROUP BY *`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Values) != 1 {
		t.Fatalf("alarm_event: %+v, want one point", got)
	}
	want := map[string]string{"enterprise": "e01", "class": "offline", "rule": "gateway_silent", "event": "raised"}
	if fmt.Sprint(got[0].Tags) != fmt.Sprint(want) {
		t.Errorf("tags %v, want %v", got[0].Tags, want)
	}
}
