package centre

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"hazardwatch/alerting"
	"hazardwatch/ingest"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/bus"
	"hazardwatch/internal/config"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/natstest"
	"hazardwatch/internal/poll"
)

// Deadlines: generous for a 2-core machine under the race detector; waits
// poll, so a fast machine never pays them.
const waitLong = 30 * time.Second

const influxDB = "hazardwatch"

// influxEnv is a centre writing to a real InfluxDB 1.8.
type influxEnv struct {
	t       *testing.T
	influx  *influxtest.Server
	cfg     *config.Config
	nats    bus.ExternalOptions // the centre's NATS: embedded when URL is ""
	dataDir string
	c       *Centre
	js      jetstream.JetStream
	closeJS func()
	// The centre's log at Info and above, across its restarts: a file, so
	// that the test reads it while the centre writes.
	logPath string
	logFile *os.File
}

func newInfluxEnv(t *testing.T) *influxEnv { return newInfluxEnvOn(t, false) }

// newInfluxEnvOn is newInfluxEnv with, when externalNATS, the centre on a
// NATS server started from the compose deployment's nats.conf (as
// serve --nats-url) instead of its embedded one.
func newInfluxEnvOn(t *testing.T, externalNATS bool) *influxEnv {
	// Registered first, so it runs after every other cleanup: nothing the
	// centre started may outlive it.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	var nats bus.ExternalOptions
	if externalNATS {
		const password = "test-only-centre-password"
		t.Setenv("NATS_CENTRE_PASSWORD", password) // read by nats.conf
		ns := natstest.FromConfig(t, "../../configs/compose/nats/nats.conf", t.TempDir(), 0)
		nats = bus.ExternalOptions{URL: ns.ClientURL(), User: "centre", Password: password}
	}
	srv := influxtest.Start(t)
	srv.CreateDatabase(influxDB)
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	oldEvery, oldBehind := influxMonitorEvery, influxBehind
	influxMonitorEvery, influxBehind = 50*time.Millisecond, time.Second
	t.Cleanup(func() { influxMonitorEvery, influxBehind = oldEvery, oldBehind })
	e := &influxEnv{t: t, influx: srv, cfg: cfg, nats: nats, dataDir: t.TempDir(), logPath: filepath.Join(t.TempDir(), "centre.log")}
	if e.logFile, err = os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.logFile.Close() })
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *influxEnv) start() {
	e.t.Helper()
	var w io.Writer = e.logFile
	if testing.Verbose() {
		w = io.MultiWriter(e.logFile, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := Start(context.Background(), Options{
		Config: e.cfg, DataDir: e.dataDir, MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Logger: log, NATS: e.nats,
		Influx: influx.Options{URL: e.influx.URL(), Bucket: influxDB + "/autogen", FlushInterval: 50 * time.Millisecond,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, RequestTimeout: 2 * time.Second},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	nc, js, err := c.bus.JetStream("test")
	if err != nil {
		c.Close()
		e.t.Fatal(err)
	}
	e.c, e.js, e.closeJS = c, js, nc.Close
}

func (e *influxEnv) stop() {
	if e.c == nil {
		return
	}
	e.closeJS()
	if err := e.c.Close(); err != nil {
		e.t.Error(err)
	}
	e.c = nil
}

// cycle returns one poll cycle of every sensor of the plant as READINGS
// entries, one per gateway, at ts with value v.
func (e *influxEnv) cycle(seq uint64, ts int64, v float64, replay bool) []ingest.Entry {
	p := e.cfg.Plant
	entries := make([]ingest.Entry, len(p.Gateways))
	for g := range p.Gateways {
		entries[g] = ingest.Entry{Gateway: []byte(p.Gateways[g].ID), Enterprise: []byte(p.Enterprises[p.Gateways[g].Enterprise].ID),
			Boot: []byte("boot-1"), Seq: seq, Replay: replay, Received: time.Now().UnixMilli()}
	}
	for i := range p.Sensors {
		s := &p.Sensors[i]
		entries[s.Gateway].Readings = append(entries[s.Gateway].Readings,
			ingest.Reading{Sensor: []byte(s.ID), TS: ts, Value: v, HasValue: true, Late: replay})
	}
	return entries
}

// publish stores entries as one READINGS message, as ingest's group commit
// does.
func (e *influxEnv) publish(entries []ingest.Entry) {
	e.t.Helper()
	if _, err := e.js.Publish(context.Background(), ingest.Subject, ingest.EncodeBatch(nil, entries)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *influxEnv) count(q string) int64 {
	e.t.Helper()
	n, err := e.influx.Count(influxDB, q)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *influxEnv) waitCount(q string, want int64) {
	e.t.Helper()
	poll.Until(e.t, fmt.Sprintf("%s = %d", q, want), waitLong, func() bool {
		n := e.count(q)
		if n > want {
			e.t.Fatalf("%s = %d, want %d", q, n, want)
		}
		return n == want
	})
}

// metric returns the value of a gauge or counter of the centre's registry
// (with label=value when label is not empty), or -1 when it is absent.
func (e *influxEnv) metric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.c.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if label != "" {
				for _, l := range m.GetLabel() {
					if l.GetName() == label && l.GetValue() != value {
						continue metrics
					}
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func (e *influxEnv) waitMetric(what, name, label, value string, cond func(float64) bool) float64 {
	e.t.Helper()
	var v float64
	poll.Until(e.t, fmt.Sprintf("%s (%s)", what, name), waitLong, func() bool {
		v = e.metric(name, label, value)
		return cond(v)
	})
	return v
}

// logs returns what the centre has logged so far.
func (e *influxEnv) logs() string {
	e.t.Helper()
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// get asks the centre's HTTP server for path with token ("" for none) and
// decodes its JSON answer into out.
func (e *influxEnv) get(path, token string, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.c.HTTPAddr()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		e.t.Fatalf("GET %s: %s: %v", path, resp.Status, err)
	}
	return resp.StatusCode
}

// readyz is the centre's /readyz.
type readyz struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Checks []struct {
		Name     string `json:"name"`
		OK       bool   `json:"ok"`
		Optional bool   `json:"optional"`
		Error    string `json:"error"`
	} `json:"checks"`
}

// influxCheck returns /readyz's HTTP status, its status word and its
// influxdb check.
func (e *influxEnv) influxCheck() (int, string, bool, string) {
	e.t.Helper()
	var r readyz
	code := e.get("/readyz", "", &r)
	for _, c := range r.Checks {
		if c.Name == "influxdb" {
			if !c.Optional {
				e.t.Errorf("/readyz: the influxdb check is not optional: %+v", c)
			}
			return code, r.Status, c.OK, c.Error
		}
	}
	e.t.Fatalf("/readyz has no influxdb check: %+v", r)
	return 0, "", false, ""
}

func (e *influxEnv) consumerInfo(stream string) *jetstream.ConsumerInfo {
	e.t.Helper()
	ci, err := e.js.Consumer(context.Background(), stream, influxConsumerName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := ci.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// TestInfluxFeed runs a centre with InfluxDB configured: the READINGS
// stream's readings land as reading points with the plant's tags, a
// batch delivered again as a replay overwrites the same points, the
// alarm events the rules raise land as alarm_event points, and the
// consumer ends with nothing pending. The same with the streams and
// consumers on an external NATS server (the compose deployment's).
func TestInfluxFeed(t *testing.T) {
	t.Run("embedded NATS", func(t *testing.T) { testInfluxFeed(t, newInfluxEnv(t)) })
	t.Run("external NATS", func(t *testing.T) { testInfluxFeed(t, newInfluxEnvOn(t, true)) })
}

func testInfluxFeed(t *testing.T, e *influxEnv) {
	p := e.cfg.Plant
	n := int64(len(p.Sensors))
	now := time.Now().Truncate(time.Second).UnixMilli()
	for c := range 3 {
		e.publish(e.cycle(uint64(c+1), now-int64(2-c)*1000, float64(c), false))
	}
	e.waitCount(`SELECT count(value) FROM reading`, 3*n)
	// The same readings again, as a gateway's replay that reached the
	// stream twice: still one point each, with the same series.
	for c := range 3 {
		e.publish(e.cycle(uint64(c+1), now-int64(2-c)*1000, float64(c), true))
	}
	e.waitMetric("replayed batches written", "hw_influx_points_written_total", "measurement", "reading",
		func(v float64) bool { return v == float64(6*n) })
	if got := e.count(`SELECT count(value) FROM reading`); got != 3*n {
		t.Errorf("%d reading points after a replay of all, want %d", got, 3*n)
	}
	series, err := e.influx.Query(influxDB, `SHOW SERIES FROM reading`)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || int64(len(series[0].Values)) != n {
		t.Errorf("%v series, want one per sensor (%d)", series, n)
	}
	// Tags of one sensor in full.
	s := &p.Sensors[0]
	ent := &p.Enterprises[s.Enterprise]
	park := &p.Parks[ent.Park]
	q := fmt.Sprintf(`SELECT count(value) FROM reading WHERE county='%s' AND park='%s' AND enterprise='%s' AND hazard_source='%s' AND gateway='%s' AND sensor='%s' AND kind='%s' AND unit='%s'`,
		p.Counties[park.County].ID, park.ID, ent.ID, p.HazardSources[s.HazardSource].ID, p.Gateways[s.Gateway].ID, s.ID, s.Kind, s.Unit)
	if got := e.count(q); got != 3 {
		t.Errorf("%s = %d, want 3", q, got)
	}

	// A combustible gas detector at 80 %LEL for longer than its on-delay
	// raises an alarm: its events reach InfluxDB through the ALARMS
	// consumer, each once.
	gas := -1
	for i := range p.Sensors {
		if p.Sensors[i].Kind == model.GasCombustible && p.Sensors[i].Unit == "%LEL" && p.Sensors[i].RangeMax >= 100 {
			gas = i
			break
		}
	}
	if gas < 0 {
		t.Fatal("no combustible gas detector in the demo plant")
	}
	g := &p.Sensors[gas]
	gasTS := []int64{now + 1000, now + 3000, now + 5000}
	for i, ts := range gasTS {
		e.publish([]ingest.Entry{{Gateway: []byte(p.Gateways[g.Gateway].ID), Enterprise: []byte(p.Enterprises[g.Enterprise].ID),
			Boot: []byte("boot-1"), Seq: uint64(4 + i), Received: time.Now().UnixMilli(),
			Readings: []ingest.Reading{{Sensor: []byte(g.ID), TS: ts, Value: 80, HasValue: true}}}})
	}
	alog, err := alerting.OpenJetStreamLog(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "every alarm event of ALARMS in alarm_event, one raised for "+g.ID, waitLong, func() bool {
		// A message of ALARMS holds a batch of events: count events.
		var events int64
		if err := alog.Replay(context.Background(), func(alerting.Event) error { events++; return nil }); err != nil {
			t.Fatal(err)
		}
		got := e.count(`SELECT count(alarm_id) FROM alarm_event WHERE sensor='` + g.ID + `' AND event='raised'`)
		return events > 0 && got > 0 && e.count(`SELECT count(alarm_id) FROM alarm_event`) == events
	})
	ev, err := e.influx.Query(influxDB, `SELECT value, alarm_id, message FROM alarm_event WHERE sensor='`+g.ID+`' AND event='raised' GROUP BY *`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].Tags["class"] != "alarm" || ev[0].Tags["enterprise"] != p.Enterprises[g.Enterprise].ID || ev[0].Tags["level"] == "" ||
		!slices.Contains(gasTS, influxtest.Int(t, ev[0].Values[0][0])) || fmt.Sprint(ev[0].Values[0][1]) != "80" {
		t.Errorf("raised event of %s: %+v, want class alarm, a level, at one of the readings' times %v with value 80", g.ID, ev, gasTS)
	}

	// Everything written is acknowledged.
	e.waitMetric("backlog drained", "hw_influx_backlog_messages", "", "", func(v float64) bool { return v == 0 })
	for _, st := range []string{ingest.StreamName, alerting.StreamName} {
		poll.Until(t, fmt.Sprintf("consumer %s on %s with nothing pending or unacknowledged", influxConsumerName, st), waitLong, func() bool {
			info := e.consumerInfo(st)
			return info.NumPending+uint64(info.NumAckPending) == 0
		})
	}
	if lag := e.metric("hw_pipeline_lag_seconds", "stage", "influx"); lag != 0 {
		t.Errorf("hw_pipeline_lag_seconds{stage=influx} = %v with nothing left to write, want 0", lag)
	}
}

// TestInfluxOutage stops InfluxDB while readings keep coming, restarts the
// centre in the middle of the outage, and starts InfluxDB again: nothing
// is acknowledged while it is down, the backlog and the lag show in
// /metrics, and in the end every reading is in InfluxDB, once.
func TestInfluxOutage(t *testing.T) {
	e := newInfluxEnv(t)
	n := int64(len(e.cfg.Plant.Sensors))
	t0 := time.Now().Truncate(time.Second).UnixMilli() - 60_000
	seq := uint64(0)
	publish := func(cycles int) {
		for range cycles {
			seq++
			e.publish(e.cycle(seq, t0+int64(seq)*100, float64(seq), false))
		}
	}
	publish(10)
	e.waitCount(`SELECT count(value) FROM reading`, 10*n)
	e.waitMetric("nothing behind", "hw_influx_backlog_messages", "", "", func(v float64) bool { return v == 0 })
	floor := e.consumerInfo(ingest.StreamName).AckFloor.Stream

	e.influx.Stop()
	publish(40)
	// Backlog: the 40 messages, none acknowledged; the lag grows past a
	// second while the stream holds them.
	e.waitMetric("backlog while InfluxDB is down", "hw_influx_backlog_messages", "", "", func(v float64) bool { return v == 40 })
	e.waitMetric("backlog in readings", "hw_influx_backlog_readings", "", "", func(v float64) bool { return v == float64(40*n) })
	e.waitMetric("lag while InfluxDB is down", "hw_pipeline_lag_seconds", "stage", "influx", func(v float64) bool { return v >= 1 })
	e.waitMetric("failed writes counted", "hw_store_write_errors_total", "store", "influxdb", func(v float64) bool { return v > 0 })
	if got := e.consumerInfo(ingest.StreamName).AckFloor.Stream; got != floor {
		t.Errorf("ack floor moved from %d to %d while InfluxDB was down", floor, got)
	}

	// The centre restarts during the outage: the durable consumer resumes
	// from what was written.
	e.stop()
	e.start()
	publish(30)
	e.waitMetric("backlog after the centre's restart", "hw_influx_backlog_messages", "", "", func(v float64) bool { return v == 70 })

	// The API's history, which reads InfluxDB, answers 503 meanwhile, and
	// counts it; /readyz shows InfluxDB down, and the centre, which does
	// without it, ready.
	admin, _, err := e.c.Tokens().Create("outage test", auth.Admin, auth.Scope{Kind: "all"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	history := "/api/v1/sensors/" + e.cfg.Plant.Sensors[0].ID + "/history?step=1m"
	var answer struct {
		Error string `json:"error"`
	}
	if code := e.get(history, admin, &answer); code != http.StatusServiceUnavailable || !strings.Contains(answer.Error, "history unavailable") {
		t.Errorf("history while InfluxDB is down: %d %q, want 503 history unavailable", code, answer.Error)
	}
	if got := e.metric("hw_api_history_errors_total", "reason", "unavailable"); got != 1 {
		t.Errorf("hw_api_history_errors_total{reason=unavailable} = %v, want 1", got)
	}
	if code, status, ok, msg := e.influxCheck(); code != http.StatusOK || status != "degraded" || ok || msg == "" {
		t.Errorf("/readyz while InfluxDB is down: %d %s, influxdb ok=%v %q; want 200 degraded, influxdb not ok with its error", code, status, ok, msg)
	}

	e.influx.Restart()
	e.waitCount(`SELECT count(value) FROM reading`, 80*n)
	e.waitMetric("backlog drained", "hw_influx_backlog_messages", "", "", func(v float64) bool { return v == 0 })
	e.waitMetric("lag back to 0", "hw_pipeline_lag_seconds", "stage", "influx", func(v float64) bool { return v == 0 })
	if code, status, ok, msg := e.influxCheck(); code != http.StatusOK || status != "ok" || !ok {
		t.Errorf("/readyz with InfluxDB back: %d %s, influxdb ok=%v %q", code, status, ok, msg)
	}
	if code := e.get(history, admin, &answer); code != http.StatusOK {
		t.Errorf("history with InfluxDB back: %d %q", code, answer.Error)
	}
	// The log told the outage's story: behind, the catch-up's progress
	// (the backlog in readings, the lag and the rate), caught up.
	poll.Until(t, "the log to say InfluxDB has caught up", waitLong, func() bool {
		return strings.Contains(e.logs(), "InfluxDB has caught up with the READINGS stream")
	})
	logs := e.logs()
	for _, want := range []string{
		`msg="InfluxDB is behind the READINGS stream" stage=influx lag=\d+s backlog_messages=[1-9]\d* backlog_readings=[1-9]\d*`,
		`msg="InfluxDB catching up" stage=influx lag=\d+s backlog_messages=\d+ backlog_readings=\d+ readings_per_s=\d+`,
	} {
		if !regexp.MustCompile(want).MatchString(logs) {
			t.Errorf("the centre's log has no line like %s", want)
		}
	}
	if got := e.count(`SELECT count(value) FROM reading`); got != 80*n {
		t.Errorf("%d reading points after the outage, want %d", got, 80*n)
	}
	// Each cycle's value is its seq: every one is there, once per sensor.
	sum := e.count(`SELECT sum(value) FROM reading`)
	if want := n * 80 * 81 / 2; sum != want {
		t.Errorf("sum of values %d, want %d: a cycle missing or doubled", sum, want)
	}
}
