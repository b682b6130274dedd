package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
)

// The escalation limits of the restart test: short enough to run in real
// time, long enough that the alarms are set up and the centre killed
// before the park step is due on a slow machine.
const (
	restartPark   = 10 * time.Second
	restartCounty = 20 * time.Second
)

// restartPlant writes a plant of two enterprises with 100 level
// transmitters each (H at 10 m) and rules with the short escalation
// limits, and returns its folder.
func restartPlant(t *testing.T) string {
	t.Helper()
	return restartPlantWith(t, restartPark, restartCounty)
}

// restartPlantWith is restartPlant with the escalation limits given.
func restartPlantWith(t *testing.T, park, county time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`kind: plant
counties: [{id: c01, name: 测试县, duty: [{name: 县值班员, phone: "13900000001"}]}]
parks: [{id: p01, name: 测试园区, county: c01, duty: [{name: 园区值班员, phone: "13900000002"}]}]
enterprises:
`)
	for _, e := range []string{"e01", "e02"} {
		fmt.Fprintf(&b, "  - {id: %s, name: 测试企业%s, park: p01, status: operating}\n", e, e)
	}
	b.WriteString("hazard_sources:\n")
	for _, e := range []string{"e01", "e02"} {
		fmt.Fprintf(&b, `  - id: %[1]s-hs1
    name: 液氯储罐区
    enterprise: %[1]s
    type: tank_farm
    level: 1
    people_500m: 150
    chemicals: [{cas: 7782-50-5, name: 液氯, quantity_t: 80}]
    responsible:
      principal:   {name: 主要负责人%[1]s, phone: "13800000001"}
      technical:   {name: 技术负责人%[1]s, phone: "13800000002"}
      operational: {name: 操作负责人%[1]s, phone: "13800000003"}
`, e)
	}
	b.WriteString("gateways:\n")
	for _, e := range []string{"e01", "e02"} {
		fmt.Fprintf(&b, "  - {id: gw-%s, enterprise: %s, devices: [{id: plc1, address: \"127.0.0.1:1\", unit_id: 1}]}\n", e, e)
	}
	b.WriteString("sensors:\n")
	for i := range 200 {
		e := []string{"e01", "e02"}[i/100]
		fmt.Fprintf(&b, "  - {id: %s, name: 储罐液位%03d, kind: level, unit: m, hazard_source: %s-hs1, gateway: gw-%s, device: plc1, register: {area: holding, address: %d, type: float32}, range: {min: 0, max: 20}}\n",
			restartSensor(i), i, e, e, (i%100)*2)
	}
	rules := fmt.Sprintf(`kind: rules
kinds:
  level: {limits: {H: 10}, silent_periods: 3600}
gateways:                        # the test's gateways send only what it says
  gw-e01: {silent_periods: 3600}
  gw-e02: {silent_periods: 3600}
alarms:
  escalation:
    priority_1: {park: %[1]s, county: %[2]s, remind: 0s, feedback: 1h}
    priority_2: {park: %[1]s, county: %[2]s, remind: 0s, feedback: 1h}
    priority_3: {park: %[1]s, county: %[2]s, remind: 0s, feedback: 1h}
    priority_4: {park: %[1]s, county: %[2]s, remind: 0s, feedback: 1h}
`, park, county)
	for name, data := range map[string]string{"plant.yaml": b.String(), "rules.yaml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func restartSensor(i int) string {
	return fmt.Sprintf("%s-LT-%03d", []string{"e01", "e02"}[i/100], i%100)
}

// restartPublisher connects to the centre's broker as the restart
// plant's two gateways in their boot named boot, and returns a function
// that publishes value v for the sensors ids (restartSensor's numbers),
// one message per gateway.
func restartPublisher(t *testing.T, mqttAddr, boot string) func(ids []int, v float64) {
	t.Helper()
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("restart-test").SetAutoReconnect(false))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	seq := map[string]uint64{}
	return func(ids []int, v float64) {
		t.Helper()
		by := map[string][]telemetry.Out{}
		now := time.Now().UnixMilli()
		for _, i := range ids {
			e := []string{"e01", "e02"}[i/100]
			by[e] = append(by[e], telemetry.Out{Sensor: restartSensor(i), TS: now, Value: v, HasValue: true, Quality: model.Good})
		}
		for e, outs := range by {
			seq[e]++
			msg := telemetry.AppendTelemetry(nil, "gw-"+e, boot, seq[e], false, outs)
			if tok := cl.Publish(telemetry.TelemetryTopic(e, "gw-"+e), 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
	}
}

// alarmJSON is what the test reads of an alarm.
type alarmJSON struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Active     bool   `json:"active"`
	AckedBy    string `json:"acked_by"`
	Escalation *struct {
		Step     string    `json:"step"`
		DueAt    time.Time `json:"due_at"`
		Started  time.Time `json:"started"`
		Notified []struct {
			Name string `json:"name"`
		} `json:"notified"`
	} `json:"escalation"`
	Source  map[string]string `json:"source"`
	History []struct {
		Seq      uint64    `json:"seq"`
		Event    string    `json:"event"`
		At       time.Time `json:"at"`
		Due      time.Time `json:"due_at"`
		Notified []struct {
			Name string `json:"name"`
			Role string `json:"role"`
		} `json:"notified"`
	} `json:"history"`
}

// TestAlarmRestartKill9 (SPEC §4: nothing is lost): 200 alarms in mixed
// states with their escalation ladders running; the centre is killed
// with SIGKILL before any step is due, and started again after the park
// step fell due. Every alarm comes back in its state; the overdue park
// steps fire at start, each with its original due_at; the county steps
// fire live within 1 s of theirs; every event is in the log once, its
// sequence numbers without a gap.
func TestAlarmRestartKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	cfgDir := restartPlant(t)
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "值班长")
	centre := startCentre(t, dataDir, httpAddr, mqttAddr, "--config", cfgDir, "--mqtt-auth", "none")
	base := "http://" + httpAddr

	publish := restartPublisher(t, mqttAddr, "restart-boot")
	list := func() map[string]alarmJSON {
		t.Helper()
		var page struct {
			Items []alarmJSON `json:"items"`
		}
		if code := apiCall(t, http.MethodGet, base+"/api/v1/alarms?state=all&limit=1000", token, nil, &page); code != http.StatusOK {
			t.Fatalf("alarms: %d", code)
		}
		out := map[string]alarmJSON{}
		for _, a := range page.Items {
			out[a.Source["sensor"]] = a
		}
		return out
	}
	// 200 raises; then 0-49 stay unacknowledged, 50-99 return
	// unacknowledged, 100-149 are acknowledged, 150-199 shelved.
	t0 := time.Now()
	publish(group(0, 200), 12)
	poll.Until(t, "200 alarms", 30*time.Second, func() bool { return len(list()) == 200 })
	publish(group(50, 100), 5)
	alarms := list()
	for i := 100; i < 200; i++ {
		id := alarms[restartSensor(i)].ID
		path, body := "/ack", map[string]string{"comment": "现场确认"}
		if i >= 150 {
			path, body = "/shelve", map[string]string{"duration": "1h", "reason": "仪表校验"}
		}
		if code := apiCall(t, http.MethodPost, base+"/api/v1/alarms/"+id+path, token, body, nil); code != http.StatusOK {
			t.Fatalf("%s %s: %d", path, id, code)
		}
	}
	want := map[string]string{}
	poll.Until(t, "the returns", 30*time.Second, func() bool {
		alarms = list()
		for i := range 200 {
			want[restartSensor(i)] = []string{"unack_active", "unack_rtn", "ack_active", "shelved"}[i/50]
		}
		for s, st := range want {
			if alarms[s].State != st {
				return false
			}
		}
		return true
	})
	before := alarms
	for s, a := range before {
		if a.Escalation == nil || a.Escalation.Step != "enterprise" {
			t.Fatalf("%s escalated before the kill, %s after the start: the machine is too slow for the limits", s, time.Since(t0))
		}
	}
	centre.kill(t)
	killed := time.Now()
	t.Logf("set up and killed %s after the raises", killed.Sub(t0).Round(time.Millisecond))

	// Down until every park step is overdue.
	var lastPark time.Time
	for _, a := range before {
		if a.Escalation.DueAt.After(lastPark) {
			lastPark = a.Escalation.DueAt
		}
	}
	poll.Until(t, "every park step overdue", 2*restartPark, func() bool { return time.Now().After(lastPark.Add(500 * time.Millisecond)) })
	restarted := time.Now()
	startCentre(t, dataDir, httpAddr, mqttAddr, "--config", cfgDir, "--mqtt-auth", "none")

	// Every escalating alarm reaches the county; the others stay.
	poll.Until(t, "the county steps", 3*restartCounty, func() bool {
		alarms = list()
		for i := range 100 {
			if e := alarms[restartSensor(i)].Escalation; e == nil || e.Step != "county" {
				return false
			}
		}
		return true
	})
	var seqs []uint64
	counts := map[string]int{}
	var parkLate, countyOff []time.Duration
	for s, a := range alarms {
		// The list leaves histories out: each alarm with its own.
		if code := apiCall(t, http.MethodGet, base+"/api/v1/alarms/"+a.ID, token, nil, &a); code != http.StatusOK {
			t.Fatalf("alarm %s: %d", a.ID, code)
		}
		b := before[s]
		if a.ID != b.ID || a.State != b.State || a.Active != b.Active || a.AckedBy != b.AckedBy {
			t.Errorf("%s: %s %s active=%v acked by %q after the restart; before %s %s active=%v %q", s, a.ID, a.State, a.Active, a.AckedBy, b.ID, b.State, b.Active, b.AckedBy)
		}
		var steps []string
		for _, h := range a.History {
			seqs = append(seqs, h.Seq)
			counts[h.Event]++
			if h.Event != "escalated" {
				continue
			}
			steps = append(steps, h.Notified[0].Role)
			started := b.Escalation.Started
			switch h.Notified[0].Role {
			case "园区值班":
				// Overdue while the centre was down: fired at the start,
				// with the due time it had before the kill.
				if !h.Due.Equal(b.Escalation.DueAt) || !h.Due.Equal(started.Add(restartPark)) || h.At.Before(restarted) {
					t.Errorf("%s park step due %v (want %v) at %v (restarted %v)", s, h.Due, b.Escalation.DueAt, h.At, restarted)
				}
				parkLate = append(parkLate, h.At.Sub(h.Due))
			case "县应急值班":
				if !h.Due.Equal(started.Add(restartCounty)) || math.Abs(float64(h.At.Sub(h.Due))) > float64(time.Second) {
					t.Errorf("%s county step due %v at %v: off by %v", s, h.Due, h.At, h.At.Sub(h.Due))
				}
				countyOff = append(countyOff, h.At.Sub(h.Due))
			}
		}
		wantSteps := []string(nil)
		if want[s] == "unack_active" || want[s] == "unack_rtn" {
			wantSteps = []string{"园区值班", "县应急值班"}
		}
		if !slices.Equal(steps, wantSteps) {
			t.Errorf("%s (%s): steps %v, want %v", s, want[s], steps, wantSteps)
		}
	}
	// Every event once, the sequence numbers without a gap.
	slices.Sort(seqs)
	for i, q := range seqs {
		if q != uint64(i+1) {
			t.Fatalf("event seqs: %d at position %d (lost or doubled): %v…", q, i, seqs[max(i-3, 0):min(i+3, len(seqs))])
		}
	}
	wantCounts := map[string]int{"raised": 200, "returned": 50, "acknowledged": 50, "shelved": 50, "escalated": 200}
	if !maps(counts, wantCounts) {
		t.Errorf("events %v, want %v", counts, wantCounts)
	}
	slices.Sort(parkLate)
	slices.Sort(countyOff)
	t.Logf("%d events; park steps fired %v–%v after their due time (at the restart); county steps %v–%v off theirs",
		len(seqs), parkLate[0].Round(time.Millisecond), parkLate[len(parkLate)-1].Round(time.Millisecond),
		countyOff[0].Round(time.Millisecond), countyOff[len(countyOff)-1].Round(time.Millisecond))
}

// group is the sensor numbers from up to to.
func group(from, to int) []int {
	var ids []int
	for i := from; i < to; i++ {
		ids = append(ids, i)
	}
	return ids
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// wsSubscribe opens the centre's WebSocket as token, sends msg and returns
// the connection and its snapshot.
func wsSubscribe(t *testing.T, httpAddr, token string, msg map[string]any) (*websocket.Conn, wsFrame) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+httpAddr+"/api/v1/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteJSON(msg); err != nil {
		t.Fatal(err)
	}
	f := wsAlarm(t, c)
	if f.Type != "snapshot" {
		t.Fatalf("first frame %+v, want a snapshot", f)
	}
	return c, f
}

// wsAlarm reads the next snapshot or alarm frame, skipping floods.
func wsAlarm(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var f wsFrame
		if err := c.ReadJSON(&f); err != nil {
			t.Fatalf("reading a frame: %v", err)
		}
		if f.Type != "flood" {
			return f
		}
	}
}

// TestWSResumeKill9 (issue #7): WebSocket clients resume across a SIGKILL
// of the centre and a start on the same data directory: the events they
// missed before the kill and after the start arrive in order, none twice,
// without a reset; for every event (seq overall) and for one enterprise's
// (its own seq) alike.
func TestWSResumeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	cfgDir := restartPlantWith(t, time.Hour, 2*time.Hour) // nothing escalates meanwhile
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "值班长")
	centre := startCentre(t, dataDir, httpAddr, mqttAddr, "--config", cfgDir, "--mqtt-auth", "none")

	// Each client reads a part of the 200 raises, then goes away.
	clients := []struct {
		name   string
		scope  map[string]string
		read   uint64 // how far it reads before going away
		raises uint64 // its raises, before the kill
		total  uint64 // its events by the end: the raises, then returns
	}{
		{"all", nil, 120, 200, 301},
		{"e01", map[string]string{"enterprise": "e01"}, 60, 100, 151},
	}
	var conns []*websocket.Conn
	for _, c := range clients {
		msg := map[string]any{"type": "subscribe"}
		if c.scope != nil {
			msg["scope"] = c.scope
		}
		conn, snap := wsSubscribe(t, httpAddr, token, msg)
		if snap.Seq != 0 {
			t.Fatalf("%s: snapshot at %d on a new data directory", c.name, snap.Seq)
		}
		conns = append(conns, conn)
	}
	restartPublisher(t, mqttAddr, "ws-boot-1")(group(0, 200), 12)
	for i, c := range clients {
		for want := uint64(1); want <= c.read; want++ {
			if f := wsAlarm(t, conns[i]); f.Type != "alarm" || f.Seq != want || f.Event != "raised" {
				t.Fatalf("%s before the kill: %s %s seq %d, want raised %d", c.name, f.Type, f.Event, f.Seq, want)
			}
		}
		conns[i].Close()
	}
	poll.Until(t, "200 alarms", 30*time.Second, func() bool {
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		apiCall(t, http.MethodGet, "http://"+httpAddr+"/api/v1/alarms?state=all&limit=1000", token, nil, &page)
		return len(page.Items) == 200
	})
	centre.kill(t)

	startCentre(t, dataDir, httpAddr, mqttAddr, "--config", cfgDir, "--mqtt-auth", "none")
	publish := restartPublisher(t, mqttAddr, "ws-boot-2")
	publish(append(group(0, 50), group(100, 150)...), 5) // 100 returns, half of them e01's
	for i, c := range clients {
		msg := map[string]any{"type": "subscribe", "resume": c.read}
		if c.scope != nil {
			msg["scope"] = c.scope
		}
		conn, snap := wsSubscribe(t, httpAddr, token, msg)
		if !snap.Resumed || snap.Reset || snap.Seq != c.read {
			t.Fatalf("%s resuming from %d after the restart: %+v, want a resumed snapshot", c.name, c.read, snap)
		}
		if i == len(clients)-1 {
			publish([]int{50}, 5) // the next live event, once every client is back
		}
		conns[i] = conn
	}
	for i, c := range clients {
		for want := c.read + 1; want <= c.total; want++ {
			f := wsAlarm(t, conns[i])
			event := "raised"
			if want > c.raises {
				event = "returned"
			}
			src, _ := f.Alarm["source"].(map[string]any)
			if f.Type != "alarm" || f.Seq != want || f.Event != event || (c.scope != nil && src["enterprise"] != "e01") {
				t.Fatalf("%s after the restart: %s %s seq %d of %v, want %s %d", c.name, f.Type, f.Event, f.Seq, src["enterprise"], event, want)
			}
		}
		t.Logf("%s: resumed from %d across the restart, got %d events in order", c.name, c.read, c.total-c.read)
	}
}
