package centre

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testlog"
)

// TestDesignChanges runs the admin's changes through a real centre: a stop
// order on e01 until a few seconds from now turns its power sensor's
// stop-order rule on, and off again when it ends; a sensor with an open
// alarm taken out of service has the alarm out of service; both survive a
// restart (design.json), and the sensor comes back in service by hand.
func TestDesignChanges(t *testing.T) {
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logs := &testlog.Buffer{}
	start := func() *Centre {
		t.Helper()
		c, err := Start(context.Background(), Options{Config: cfg, DataDir: dir, MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatalf("centre: %v\n%s", err, logs)
		}
		return c
	}
	c := start()
	defer func() { _ = c.Close() }()
	admin, _, err := c.Tokens().Create("值班管理员", auth.Admin, auth.Scope{Kind: "all"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	var power int32 = -1
	e01, _ := p.EnterpriseIndex("e01")
	for i, s := range p.Sensors {
		if s.Kind == model.Power && s.Enterprise == e01 {
			power = int32(i)
		}
	}
	if power < 0 {
		t.Fatal("the demo's e01 has no power sensor")
	}
	stopOrderOn := func() bool {
		c.reloadMu.Lock()
		defer c.reloadMu.Unlock()
		return c.running[power].StopOrder.On
	}
	if stopOrderOn() {
		t.Fatal("e01 operates: its stop-order rule is on")
	}

	until := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	var st struct{ Status, Configured, Until, SetBy string }
	code, msg := apiCall(t, c.HTTPAddr(), admin, http.MethodPut, "/api/v1/enterprises/e01/status",
		`{"status":"stop_ordered","until":"`+until+`","reason":"县应急局停产整顿通知"}`, &st)
	if code != http.StatusOK || st.Status != "stop_ordered" || st.Configured != "operating" {
		t.Fatalf("PUT status: %d %s %+v", code, msg, st)
	}
	if !stopOrderOn() {
		t.Fatal("after the stop order: e01's stop-order rule is off")
	}
	poll.Until(t, "the stop order's end", waitLong, func() bool { return !stopOrderOn() })

	// An open alarm on a sensor that goes out of service.
	const sensor = "e01-V101-LT"
	si, _ := p.SensorIndex(sensor)
	raise := model.Transition{Sensor: si, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1, Active: true,
		Value: 2.3, Limit: 2.2, TS: time.Now().UnixMilli()}
	if err := c.alarms.Submit(context.Background(), raise); err != nil {
		t.Fatal(err)
	}
	id := sensor + ".threshold_high.1"
	poll.Until(t, id, waitLong, func() bool { a, _ := c.alarms.Get(id); return a.Active })
	var obj struct {
		AlarmState   string `json:"alarm_state"`
		OutOfService *struct {
			By, Reason string
		} `json:"out_of_service"`
	}
	code, msg = apiCall(t, c.HTTPAddr(), admin, http.MethodPost, "/api/v1/sensors/"+sensor+"/out_of_service", `{"reason":"液位计标定"}`, &obj)
	if code != http.StatusOK || obj.OutOfService == nil || obj.OutOfService.Reason != "液位计标定" || obj.AlarmState != "out_of_service" {
		t.Fatalf("out_of_service: %d %s %+v", code, msg, obj)
	}
	if code, _ := apiCall(t, c.HTTPAddr(), admin, http.MethodPost, "/api/v1/sensors/"+sensor+"/out_of_service", `{"reason":"again"}`, nil); code != http.StatusConflict {
		t.Errorf("out of service twice: %d, want 409", code)
	}
	data, err := os.ReadFile(DesignFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	var kept model.Design
	if err := json.Unmarshal(data, &kept); err != nil || kept.OutOfService[sensor].Reason != "液位计标定" || len(kept.Status) != 0 {
		// The stop order has ended: the change after it pruned it.
		t.Fatalf("design.json: %v %s", err, data)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = start()
	if a, _ := c.alarms.Get(id); a.State != model.StateOutOfService {
		t.Errorf("after the restart: %s is %s, want out_of_service", id, a.State)
	}
	if _, ok := c.Design().OutOfServiceAt(sensor, time.Now()); !ok || stopOrderOn() {
		t.Errorf("after the restart: design %+v, stop order on %v", c.Design(), stopOrderOn())
	}
	obj.OutOfService = nil // decoding leaves what the answer does not name
	code, msg = apiCall(t, c.HTTPAddr(), admin, http.MethodPost, "/api/v1/sensors/"+sensor+"/in_service", `{"comment":"标定完成"}`, &obj)
	if code != http.StatusOK || obj.OutOfService != nil || obj.AlarmState != "unack_active" {
		t.Fatalf("in_service: %d %s %+v", code, msg, obj)
	}
	a, _ := c.alarms.Get(id)
	if last := a.History[len(a.History)-1]; last.Event != alerting.ReturnedToService || last.User != "值班管理员" {
		t.Errorf("the alarm's last event: %s by %q", last.Event, last.User)
	}
	// Each change is in the audit log: who, from where, before and after.
	var got []string
	for r, err := range audit.Records(filepath.Join(dir, "audit"), time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(r.Actor, " 值班管理员") || r.Role != "admin" || !strings.HasPrefix(r.From, "127.0.0.1:") || r.After == nil {
			t.Errorf("audit record %d: %+v", r.Seq, r.Entry)
		}
		got = append(got, r.Action+" "+r.Object)
	}
	if want := []string{"enterprise.status enterprise:e01", "sensor.out_of_service sensor:" + sensor, "sensor.in_service sensor:" + sensor}; !slices.Equal(got, want) {
		t.Errorf("audit log: %q, want %q", got, want)
	}
	if rep, err := audit.Verify(audit.Options{Dir: filepath.Join(dir, "audit"), HeadFile: dir + ".audit-head"}); err != nil || rep.Records != 3 {
		t.Errorf("audit verify: %+v %v", rep, err)
	}
}
