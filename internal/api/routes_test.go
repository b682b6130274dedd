package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
)

// sees says which enterprises each valid token covers; the rest get 401.
var sees = map[string]map[string]bool{
	"e01":   {"e01": true},
	"p01":   {"e01": true, "e02": true},
	"c01":   {"e01": true, "e02": true},
	"admin": {"e01": true, "e02": true, "e03": true},
}

// TestAuthorisation runs every route that takes an id, and every list
// filtered to an enterprise or park, as every kind of caller on the
// caller's own objects and on others': SPEC §3's 401, 403, 200.
func TestAuthorisation(t *testing.T) {
	e := newEnv(t, nil)
	ents := []string{"e01", "e02", "e03"}

	// One alarm per (caller, enterprise), so that every acknowledgement
	// that is allowed finds its own alarm unacknowledged.
	alarms := map[string]map[string]alerting.Alarm{}
	for i, name := range tokenNames {
		alarms[name] = map[string]alerting.Alarm{}
		for _, ent := range ents {
			alarms[name][ent] = e.raise(e.sensorsOf(ent)[i])
		}
	}
	// A little history for the first sensor of each enterprise.
	now := time.Now()
	for _, ent := range ents {
		var pts []store.Point
		for k := range 10 {
			pts = append(pts, store.Point{Sensor: e.sensorsOf(ent)[0], TS: now.Add(-time.Duration(k) * time.Minute).UnixMilli(), Value: float64(k)})
		}
		if err := e.hist.Append(context.Background(), pts); err != nil {
			t.Fatal(err)
		}
	}

	from, to := now.Add(-time.Hour).UTC().Format(time.RFC3339), now.Add(time.Minute).UTC().Format(time.RFC3339)
	routes := []struct {
		name   string
		method string
		path   func(name, ent string) string
		body   string
		check  func(t *testing.T, name, ent, body string)
	}{
		{"history", "GET", func(_, ent string) string {
			return "/api/v1/sensors/" + e.sensorsOf(ent)[0] + "/history?from=" + from + "&to=" + to + "&step=1m"
		}, "", func(t *testing.T, _, _, body string) {
			if n := strings.Count(body, `"count":1`); n != 10 {
				t.Errorf("%d buckets of one reading, want 10: %s", n, body)
			}
		}},
		{"alarm", "GET", func(name, ent string) string { return "/api/v1/alarms/" + alarms[name][ent].ID }, "",
			func(t *testing.T, name, ent, body string) {
				if !strings.Contains(body, `"id":"`+alarms[name][ent].ID+`"`) || !strings.Contains(body, `"history":[{`) {
					t.Errorf("not the alarm with its history: %s", body)
				}
			}},
		{"ack", "POST", func(name, ent string) string { return "/api/v1/alarms/" + alarms[name][ent].ID + "/ack" }, `{"comment":"收到"}`,
			func(t *testing.T, name, _, body string) {
				want := name
				if name == "c01" {
					want = "officer:c01"
				}
				if !strings.Contains(body, `"state":"ack_active"`) || !strings.Contains(body, `"acked_by":"`+want+`"`) {
					t.Errorf("not acknowledged by %s: %s", want, body)
				}
			}},
		// After the ack: an acknowledged alarm is shelved, then unshelved
		// (back acknowledged). Officers may do neither (SPEC §3).
		{"shelve", "POST", func(name, ent string) string { return "/api/v1/alarms/" + alarms[name][ent].ID + "/shelve" },
			`{"duration":"30m","reason":"探头受潮"}`,
			func(t *testing.T, name, _, body string) {
				if !strings.Contains(body, `"state":"shelved","base_state":"ack_active"`) || !strings.Contains(body, `"by":"`+name+`","reason":"探头受潮"`) {
					t.Errorf("not shelved by %s: %s", name, body)
				}
			}},
		{"unshelve", "POST", func(name, ent string) string { return "/api/v1/alarms/" + alarms[name][ent].ID + "/unshelve" }, "",
			func(t *testing.T, name, _, body string) {
				if !strings.Contains(body, `"state":"ack_active"`) || strings.Contains(body, `"shelf"`) {
					t.Errorf("not unshelved by %s: %s", name, body)
				}
			}},
		// After the ack: the enterprise's handling report (处置反馈).
		{"feedback", "POST", func(name, ent string) string { return "/api/v1/alarms/" + alarms[name][ent].ID + "/feedback" },
			`{"cause":"法兰垫片老化","action":"更换垫片并复测"}`,
			func(t *testing.T, name, _, body string) {
				if !strings.Contains(body, `"feedback":{"at":"`) || !strings.Contains(body, `"by":"`+name+`","cause":"法兰垫片老化","action":"更换垫片并复测"}`) {
					t.Errorf("no feedback by %s: %s", name, body)
				}
			}},
		{"sensors?enterprise", "GET", func(_, ent string) string { return "/api/v1/sensors?enterprise=" + ent }, "",
			func(t *testing.T, _, ent, body string) {
				if n := strings.Count(body, `"enterprise":"`+ent+`"`); n != len(e.sensorsOf(ent)) {
					t.Errorf("%d sensors of %s, want %d", n, ent, len(e.sensorsOf(ent)))
				}
			}},
		{"alarms?enterprise", "GET", func(_, ent string) string { return "/api/v1/alarms?enterprise=" + ent }, "",
			func(t *testing.T, _, ent, body string) {
				// Every caller raised one alarm in each enterprise.
				if n := strings.Count(body, `"enterprise":"`+ent+`"`); n != len(tokenNames) {
					t.Errorf("%d alarms of %s, want %d", n, ent, len(tokenNames))
				}
			}},
		{"alarms?park", "GET", func(_, ent string) string {
			return "/api/v1/alarms?park=" + e.plant.Parks[e.plant.Enterprises[must(e.plant.EnterpriseIndex(ent))].Park].ID
		}, "", nil},
	}
	for _, rt := range routes {
		for _, name := range tokenNames {
			for _, ent := range ents {
				t.Run(fmt.Sprintf("%s/%s/%s", rt.name, name, ent), func(t *testing.T) {
					want := http.StatusUnauthorized
					if v, ok := sees[name]; ok {
						want = http.StatusForbidden
						if v[ent] {
							want = http.StatusOK
						}
					}
					if rt.name == "alarms?park" && name == "e01" && want == http.StatusOK {
						// An enterprise operator may not ask for its whole park.
						want = http.StatusForbidden
					}
					if (rt.name == "shelve" || rt.name == "unshelve" || rt.name == "feedback") && name == "c01" && want == http.StatusOK {
						want = http.StatusForbidden // an officer neither shelves nor reports the enterprise's handling
					}
					before, _ := e.mgr.Get(alarms[name][ent].ID)
					got, body := e.do(rt.method, rt.path(name, ent), name, rt.body, nil)
					if got != want {
						t.Fatalf("%d, want %d: %s", got, want, body)
					}
					if want == http.StatusOK && rt.check != nil {
						rt.check(t, name, ent, body)
					}
					if after, _ := e.mgr.Get(alarms[name][ent].ID); want != http.StatusOK && (after.State != before.State || after.Feedback != before.Feedback) {
						t.Errorf("refused request changed the alarm: %s → %s, feedback %+v", before.State, after.State, after.Feedback)
					}
				})
			}
		}
	}

	// Refusals are counted by reason.
	for reason, min := range map[string]float64{"revoked": 1, "expired": 1, "unknown": 1, "malformed": 1, "missing": 1} {
		if got := e.metric("hw_api_auth_failures_total", "reason", reason); got < min {
			t.Errorf("hw_api_auth_failures_total{reason=%q} = %v", reason, got)
		}
	}
	// Foreign alarms: e01 on e02's and e03's, p01 and c01 on e03's.
	if got := e.metric("hw_api_requests_total", "route", "GET /api/v1/alarms/{id}", "code", "403"); got != 4 {
		t.Errorf("hw_api_requests_total{route=\"GET /api/v1/alarms/{id}\",code=\"403\"} = %v, want 4", got)
	}
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("not found")
	}
	return v
}

// TestNotFound: an unknown id is 404 for a valid token, 401 without one
// (authentication comes first, so ids cannot be probed anonymously).
func TestNotFound(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct{ method, path, name string }{
		{"GET", "/api/v1/alarms/e01-V101-LT.threshold_high.99", "admin"},
		{"POST", "/api/v1/alarms/nope/ack", "admin"},
		{"POST", "/api/v1/alarms/nope/shelve", "admin"},
		{"POST", "/api/v1/alarms/nope/unshelve", "admin"},
		{"GET", "/api/v1/sensors/nope/history", "admin"},
	} {
		if got, body := e.do(c.method, c.path, c.name, "", nil); got != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404: %s", c.method, c.path, got, body)
		}
		if got, _ := e.do(c.method, c.path, "missing", "", nil); got != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", c.method, c.path, got)
		}
	}
}

// TestGatewayTokenRefused: a gateway's token is its password at the MQTT
// broker; the API answers 403 to it on every route, the WebSocket
// included, with a JSON error that says so, and counts each refusal.
func TestGatewayTokenRefused(t *testing.T) {
	e := newEnv(t, nil)
	plain, _, err := e.tokens.Create("gw-e01-1", auth.Gateway, auth.GatewayScope("gw-e01-1"), 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.tok["gateway"] = plain
	a := e.raise(e.sensorsOf("e01")[0])
	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/sensors", ""},
		{"GET", "/api/v1/sensors?enterprise=e01", ""},
		{"GET", "/api/v1/sensors/" + e.sensorsOf("e01")[0] + "/history", ""},
		{"GET", "/api/v1/alarms", ""},
		{"GET", "/api/v1/alarms/" + a.ID, ""},
		{"POST", "/api/v1/alarms/" + a.ID + "/ack", `{"comment":"x"}`},
		{"POST", "/api/v1/alarms/" + a.ID + "/shelve", `{"duration":"30m","reason":"x"}`},
		{"POST", "/api/v1/alarms/" + a.ID + "/unshelve", ""},
	}
	for _, rt := range routes {
		var eb errorBody
		got, body := e.do(rt.method, rt.path, "gateway", rt.body, nil)
		if got != http.StatusForbidden {
			t.Errorf("%s %s with a gateway token: %d, want 403: %s", rt.method, rt.path, got, body)
			continue
		}
		if err := json.Unmarshal([]byte(body), &eb); err != nil || !strings.Contains(eb.Error, "gateway token is for the MQTT broker") {
			t.Errorf("%s %s: error body %s", rt.method, rt.path, body)
		}
	}
	if after, _ := e.mgr.Get(a.ID); after.State != model.StateUnackActive {
		t.Errorf("a gateway token acknowledged the alarm: %s", after.State)
	}
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + url.QueryEscape(plain)
	if _, res, err := websocket.DefaultDialer.Dial(u, nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("WebSocket with a gateway token: %v %v, want 403", err, res)
	}
	if got := e.metric("hw_api_auth_failures_total", "reason", "not_for_api"); got != float64(len(routes)+1) {
		t.Errorf("hw_api_auth_failures_total{reason=\"not_for_api\"} = %v, want %d", got, len(routes)+1)
	}
	// The other tokens are served as before.
	if got, body := e.do("GET", "/api/v1/alarms/"+a.ID, "e01", "", nil); got != http.StatusOK {
		t.Errorf("the enterprise operator: %d: %s", got, body)
	}
}

// TestAck: 200 with the acknowledged alarm, then 409; bodies checked.
func TestAck(t *testing.T) {
	e := newEnv(t, nil)
	a := e.raise("e01-V101-LT")
	path := "/api/v1/alarms/" + a.ID + "/ack"

	for _, c := range []struct {
		body string
		want int
	}{
		{`{"comment":`, http.StatusBadRequest},
		{`{"comentary":"typo"}`, http.StatusBadRequest},
		{`{"comment":"a"} {"comment":"b"}`, http.StatusBadRequest},
		{`{"comment":"` + strings.Repeat("长", 30_000) + `"}`, http.StatusRequestEntityTooLarge},
		{`{"comment":"` + strings.Repeat("x", 5000) + `"}`, http.StatusBadRequest}, // the Manager's comment limit
	} {
		if got, body := e.do("POST", path, "e01", c.body, nil); got != c.want {
			t.Errorf("body %.40q: %d, want %d: %s", c.body, got, c.want, body)
		}
	}
	if cur, _ := e.mgr.Get(a.ID); cur.State != model.StateUnackActive {
		t.Fatalf("bad requests changed the alarm to %s", cur.State)
	}

	var got alarmView
	if code, body := e.do("POST", path, "e01", `{"comment":"现场确认"}`, &got); code != http.StatusOK || got.State != "ack_active" {
		t.Fatalf("first ack: %d %s", code, body)
	}
	cur, _ := e.mgr.Get(a.ID)
	last := cur.History[len(cur.History)-1]
	if cur.State != model.StateAckActive || last.User != "e01" || last.Comment != "现场确认" {
		t.Errorf("after the ack: %s by %q %q", cur.State, last.User, last.Comment)
	}
	if code, body := e.do("POST", path, "e01", "", nil); code != http.StatusConflict {
		t.Errorf("second ack: %d, want 409: %s", code, body)
	}
	// An empty body is an acknowledgement without a comment.
	b := e.raise("e01-V102-LT")
	if code, body := e.do("POST", "/api/v1/alarms/"+b.ID+"/ack", "c01", "", nil); code != http.StatusOK || !strings.Contains(body, `"acked_by":"officer:c01"`) {
		t.Errorf("officer's ack: %d %s", code, body)
	}
}

// TestShelve: a shelf with its duration, limit and reason; the refusals
// with their statuses and words; unshelving by hand brings the alarm back
// acknowledged by whoever unshelved it.
func TestShelve(t *testing.T) {
	e := newEnv(t, nil)
	a := e.raise("e01-V101-LT")
	path := "/api/v1/alarms/" + a.ID + "/shelve"

	for _, c := range []struct {
		body string
		want int
		says string
	}{
		{`{"duration":"30m"}`, http.StatusBadRequest, "shelving needs a user and a reason"},
		{`{"reason":"误报"}`, http.StatusBadRequest, "is not a duration such as 30m"},
		{`{"duration":"半小时","reason":"误报"}`, http.StatusBadRequest, "is not a duration such as 30m"},
		{`{"duration":"-5m","reason":"误报"}`, http.StatusBadRequest, "positive duration"},
		{`{"duration":"9h","reason":"误报"}`, http.StatusBadRequest, "搁置时长超过上限 / shelving longer than the limit: 9h0m0s asked, at most 8h0m0s"},
		{`{"duration":"30m","reason":"误报","until":"tomorrow"}`, http.StatusBadRequest, "unknown field"},
		{`{"duration":"30m","reason":"` + strings.Repeat("x", 5000) + `"}`, http.StatusBadRequest, "at most 4000 bytes"},
	} {
		got, body := e.do("POST", path, "e01", c.body, nil)
		if got != c.want || !strings.Contains(body, c.says) {
			t.Errorf("body %.50q: %d %s; want %d saying %q", c.body, got, body, c.want, c.says)
		}
	}
	if code, body := e.do("POST", path, "c01", `{"duration":"30m","reason":"误报"}`, nil); code != http.StatusForbidden || !strings.Contains(body, "无权搁置：角色 officer 不可执行 / forbidden: role officer may not shelve alarms") {
		t.Errorf("an officer shelves: %d %s", code, body)
	}
	if cur, _ := e.mgr.Get(a.ID); cur.State != model.StateUnackActive {
		t.Fatalf("refused requests changed the alarm to %s", cur.State)
	}

	before := time.Now()
	var got struct {
		State string `json:"state"`
		Base  string `json:"base_state"`
		Shelf struct {
			Until  time.Time `json:"until"`
			By     string    `json:"by"`
			Reason string    `json:"reason"`
		} `json:"shelf"`
	}
	if code, body := e.do("POST", path, "e01", `{"duration":"30m","reason":"液位计检修，读数不可信"}`, &got); code != http.StatusOK {
		t.Fatalf("shelve: %d %s", code, body)
	}
	if got.State != "shelved" || got.Base != "unack_active" || got.Shelf.By != "e01" || got.Shelf.Reason != "液位计检修，读数不可信" ||
		got.Shelf.Until.Before(before.Add(30*time.Minute)) || got.Shelf.Until.After(time.Now().Add(30*time.Minute)) {
		t.Errorf("shelved alarm: %+v", got)
	}
	cur, _ := e.mgr.Get(a.ID)
	if last := cur.History[len(cur.History)-1]; last.Event != alerting.Shelved || !last.Due.Equal(got.Shelf.Until) || last.Reason != "液位计检修，读数不可信" {
		t.Errorf("history: %+v", last)
	}
	for _, c := range []struct{ path, body, says string }{
		{path, `{"duration":"1h","reason":"再搁置"}`, "当前状态不可搁置 / cannot be shelved in state shelved"},
		{"/api/v1/alarms/" + a.ID + "/ack", "", "当前状态不可确认 / not ackable in state shelved"},
	} {
		if code, body := e.do("POST", c.path, "e01", c.body, nil); code != http.StatusConflict || !strings.Contains(body, c.says) {
			t.Errorf("%s on a shelved alarm: %d %s", c.path, code, body)
		}
	}

	// The park's operator unshelves: back acknowledged, by it.
	unshelve := "/api/v1/alarms/" + a.ID + "/unshelve"
	if code, body := e.do("POST", unshelve, "p01", `{"comment":"检修完成"}`, nil); code != http.StatusOK ||
		!strings.Contains(body, `"state":"ack_active"`) || !strings.Contains(body, `"acked_by":"p01"`) {
		t.Errorf("unshelve: %d %s", code, body)
	}
	if code, body := e.do("POST", unshelve, "p01", "", nil); code != http.StatusConflict || !strings.Contains(body, "报警未搁置 / not shelved in state ack_active") {
		t.Errorf("second unshelve: %d %s", code, body)
	}
	// Only what is shown can be shelved: not an alarm that has ended.
	e.submit(e.transition("e01-V101-LT", false))
	waitFor(t, "the clear", func() bool { a, _ := e.mgr.Get(a.ID); return a.State == model.StateNormal })
	if code, body := e.do("POST", path, "admin", `{"duration":"30m","reason":"误报"}`, nil); code != http.StatusConflict {
		t.Errorf("shelve of an ended alarm: %d %s", code, body)
	}
}

// TestSensors: the list in scope with its pages, the sensor object, the
// filters.
func TestSensors(t *testing.T) {
	e := newEnv(t, nil)
	lt := e.sensor("e01-V101-LT")
	e.latest.set(model.Reading{SensorIdx: lt, TS: 1732442400123, Value: 2.3, HasValue: true, Quality: model.Good})
	pm := e.sensor("e01-PM-001")
	e.latest.set(model.Reading{SensorIdx: pm, TS: 1732442400000, Quality: model.Bad, Reason: model.ReasonTimeout})
	e.raise("e01-V101-LT")

	// Every page of limit 4, as e01: all of e01's sensors once, no other.
	seen := map[string]sensorJSON{}
	cursor, pages := "", 0
	for {
		var page list[sensorJSON]
		path := "/api/v1/sensors?limit=4"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if code, body := e.do("GET", path, "e01", "", &page); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		pages++
		for _, s := range page.Items {
			if _, dup := seen[s.ID]; dup || s.Enterprise != "e01" {
				t.Errorf("sensor %s of %s (again: %v)", s.ID, s.Enterprise, dup)
			}
			seen[s.ID] = s
		}
		if page.Next == "" {
			break
		}
		if len(page.Items) != 4 {
			t.Errorf("a page of %d before the last", len(page.Items))
		}
		cursor = page.Next
	}
	n := len(e.sensorsOf("e01"))
	if len(seen) != n || pages != (n+3)/4 {
		t.Errorf("%d sensors in %d pages, want %d in %d", len(seen), pages, n, (n+3)/4)
	}

	s := seen["e01-V101-LT"]
	if s.Value == nil || *s.Value != 2.3 || *s.Quality != "good" || *s.TS != "2024-11-24T10:00:00.123Z" ||
		s.AlarmState != "unack_active" || s.Kind != "level" || s.Unit != "m" || s.Gateway == "" || s.HazardSource == nil || *s.HazardSource != "e01-hs1" {
		t.Errorf("e01-V101-LT: %+v", s)
	}
	if len(s.Limits) != 4 || s.Limits["HH"] != 2.4 || s.Limits["LL"] != 0.25 {
		t.Errorf("limits %v", s.Limits)
	}
	if s := seen["e01-V103-LT"]; len(s.Limits) != 2 || s.Value != nil || s.Quality != nil || s.TS != nil || s.AlarmState != "normal" {
		t.Errorf("e01-V103-LT (no low limits, no reading): %+v", s)
	}
	if s := seen["e01-PM-001"]; s.Value != nil || *s.Quality != "bad" || s.QualityReason != "timeout" || s.HazardSource != nil {
		t.Errorf("e01-PM-001 (bad reading, whole-plant meter): %+v", s)
	}

	var all list[sensorJSON]
	e.do("GET", "/api/v1/sensors?limit=5000", "admin", "", &all)
	if len(all.Items) != len(e.plant.Sensors) || all.Next != "" { // limit clamped to 1000, above the demo's 63
		t.Errorf("admin with limit=5000: %d items, next %q; want all %d", len(all.Items), all.Next, len(e.plant.Sensors))
	}
	var lv list[sensorJSON]
	e.do("GET", "/api/v1/sensors?kind=level&hazard_source=e01-hs1", "p01", "", &lv)
	for _, s := range lv.Items {
		if s.Kind != "level" || *s.HazardSource != "e01-hs1" {
			t.Errorf("filtered list has %+v", s)
		}
	}
	if len(lv.Items) == 0 {
		t.Error("no level sensors of e01-hs1")
	}
	for path, want := range map[string]int{
		"/api/v1/sensors?hazard_source=e02-hs1": http.StatusForbidden,
		"/api/v1/sensors?enterprise=e09":        http.StatusBadRequest,
		"/api/v1/sensors?kind=smell":            http.StatusBadRequest,
		"/api/v1/sensors?limit=0":               http.StatusBadRequest,
		"/api/v1/sensors?cursor=xyz":            http.StatusBadRequest,
	} {
		if got, body := e.do("GET", path, "e01", "", nil); got != want {
			t.Errorf("%s: %d, want %d: %s", path, got, want, body)
		}
	}
}

// TestHistory: buckets, defaults, and the limits on what one request may
// ask for.
func TestHistory(t *testing.T) {
	e := newEnv(t, nil)
	id := "e01-V101-LT"
	base := time.Now().Truncate(time.Hour).Add(-2 * time.Hour)
	var pts []store.Point
	for k := range 120 {
		pts = append(pts, store.Point{Sensor: id, TS: base.Add(time.Duration(k) * time.Minute).UnixMilli(), Value: float64(k)})
	}
	if err := e.hist.Append(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	var h struct {
		Sensor, Step string
		Items        []bucketJSON
	}
	q := "?from=" + base.UTC().Format(time.RFC3339) + "&to=" + base.Add(2*time.Hour).UTC().Format(time.RFC3339) + "&step=1h"
	if code, body := e.do("GET", "/api/v1/sensors/"+id+"/history"+q, "e01", "", &h); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if len(h.Items) != 2 || h.Items[0].Count != 60 || h.Items[0].Mean != 29.5 || h.Items[1].Min != 60 || h.Items[1].Max != 119 ||
		h.Items[0].TS != base.UTC().Format("2006-01-02T15:04:05.000Z07:00") || h.Step != "1h0m0s" {
		t.Errorf("hourly: %+v", h)
	}
	// Default: the hour before the clock, raw.
	e.clock.Set(base.Add(90 * time.Minute))
	h.Items = nil
	e.do("GET", "/api/v1/sensors/"+id+"/history", "e01", "", &h)
	if len(h.Items) != 60 || h.Items[0].Mean != 30 || h.Step != "0s" {
		t.Errorf("default range: %d raw readings from %v, want 60 from 30", len(h.Items), h.Items)
	}
	for q, want := range map[string]int{
		"?step=100ms":     http.StatusBadRequest, // 36 000 buckets
		"?step=1.5ms":     http.StatusBadRequest,
		"?step=-1m":       http.StatusBadRequest,
		"?from=yesterday": http.StatusBadRequest,
		"?from=2024-11-25T00:00:00Z&to=2024-11-24T00:00:00Z":         http.StatusBadRequest,
		"?from=2024-11-01T00:00:00Z&to=2024-11-03T00:00:00Z":         http.StatusBadRequest, // raw over 24 h
		"?from=2024-11-01T00:00:00Z&to=2024-11-03T00:00:00Z&step=1m": http.StatusOK,
	} {
		code, body := e.do("GET", "/api/v1/sensors/"+id+"/history"+q, "e01", "", nil)
		if code != want {
			t.Errorf("%s: %d, want %d: %s", q, code, want, body)
		}
		if q == "?step=100ms" && !strings.Contains(body, "use a step of at least 1s") {
			t.Errorf("%s: %s does not say which step to use", q, body)
		}
	}
}

// TestAlarmList: active and all, filters, since, pages.
func TestAlarmList(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for _, s := range e.sensorsOf("e01")[:5] {
		ids = append(ids, e.raise(s).ID)
	}
	e.raise("e02-V201-LT")
	// One e01 alarm ends: acknowledged, then returned (not latched): cleared.
	if err := e.mgr.Ack(context.Background(), ids[0], "op", ""); err != nil {
		t.Fatal(err)
	}
	e.submit(e.transition(e.sensorsOf("e01")[0], false))
	waitFor(t, "the alarm to clear", func() bool { a, _ := e.mgr.Get(ids[0]); return a.State == model.StateNormal })

	var l list[alarmView]
	e.do("GET", "/api/v1/alarms", "e01", "", &l)
	if len(l.Items) != 4 {
		t.Errorf("active as e01: %d, want 4", len(l.Items))
	}
	l = list[alarmView]{}
	e.do("GET", "/api/v1/alarms?state=all", "e01", "", &l)
	if len(l.Items) != 5 || l.Items[4].ID != ids[0] || l.Items[4].State != "normal" {
		t.Errorf("all as e01: %+v, want 5 with the cleared one last", l.Items)
	}
	l = list[alarmView]{}
	e.do("GET", "/api/v1/alarms?state=all&park=p01", "c01", "", &l)
	if len(l.Items) != 6 {
		t.Errorf("all of p01 as c01: %d, want 6", len(l.Items))
	}
	// Pages of two over the six, in order, none twice.
	var got []string
	cursor := ""
	for {
		var p list[alarmView]
		path := "/api/v1/alarms?state=all&limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		e.do("GET", path, "admin", "", &p)
		for _, a := range p.Items {
			got = append(got, a.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if len(got) != 6 || got[5] != ids[0] {
		t.Errorf("pages: %v", got)
	}
	// since: only what changed after it.
	mark := time.Now()
	e.submit(e.transition(e.sensorsOf("e01")[1], false)) // returns: unack_rtn
	waitFor(t, "the return", func() bool { a, _ := e.mgr.Get(ids[1]); return a.State == model.StateUnackRTN })
	l = list[alarmView]{}
	e.do("GET", "/api/v1/alarms?since="+mark.UTC().Format(time.RFC3339Nano), "admin", "", &l)
	if len(l.Items) != 1 || l.Items[0].ID != ids[1] {
		t.Errorf("since: %+v", l.Items)
	}
	for path, want := range map[string]int{
		"/api/v1/alarms?state=open":              http.StatusBadRequest,
		"/api/v1/alarms?since=today":             http.StatusBadRequest,
		"/api/v1/alarms?cursor=!":                http.StatusBadRequest,
		"/api/v1/alarms?park=p02":                http.StatusForbidden,
		"/api/v1/alarms?park=p09":                http.StatusBadRequest,
		"/api/v1/alarms?enterprise=e01&park=p01": http.StatusOK,
	} {
		if code, body := e.do("GET", path, "c01", "", nil); code != want {
			t.Errorf("%s: %d, want %d: %s", path, code, want, body)
		}
	}
}

// TestPrewarningETA: a prediction's alarm object carries its class and
// its eta (SPEC §3); other alarms have eta null.
func TestPrewarningETA(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Truncate(time.Millisecond)
	eta := now.Add(76 * time.Second)
	e.submit(model.Transition{
		Sensor: e.sensor("e02-V201-LT"), Rule: model.PredictHigh, Class: model.ClassPrewarning, Active: true,
		Value: 8.2, Limit: 9.5, TS: now.UnixMilli(), ETA: eta.UnixMilli(),
	})
	const id = "e02-V201-LT.predict_high.1"
	waitFor(t, "the prewarning", func() bool { _, ok := e.mgr.Get(id); return ok })
	var got struct {
		Class     string     `json:"class"`
		LimitKind string     `json:"limit_kind"`
		ETA       *time.Time `json:"eta"`
	}
	if code, body := e.do("GET", "/api/v1/alarms/"+id, "admin", "", &got); code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, body)
	}
	if got.Class != "prewarning" || got.LimitKind != "H" || got.ETA == nil || !got.ETA.Equal(eta) {
		t.Errorf("prewarning %+v, want class prewarning, limit H, eta %v", got, eta)
	}
	a := e.raise("e01-V101-LT")
	if code, body := e.do("GET", "/api/v1/alarms/"+a.ID, "admin", "", nil); code != http.StatusOK || !strings.Contains(body, `"eta":null`) {
		t.Errorf("threshold alarm: %d %s, want eta null", code, body)
	}
}

// TestServiceRoutes: health, readiness with a failing check, metrics, the
// page, and JSON errors from the mux.
func TestServiceRoutes(t *testing.T) {
	fail := errors.New("NATS 未连接 / not connected")
	e := newEnv(t, func(o *Options) {
		o.Checks = []Check{
			{Name: "store", Ready: func(context.Context) error { return nil }},
			{Name: "nats", Ready: func(context.Context) error { return fail }},
		}
	})
	if code, body := e.do("GET", "/healthz", "missing", "", nil); code != 200 || !strings.Contains(body, `{"status":"ok"}`) {
		t.Errorf("healthz: %d %s", code, body)
	}
	code, body := e.do("GET", "/readyz", "missing", "", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"name":"nats","ok":false,"error":"NATS 未连接 / not connected"`) ||
		!strings.Contains(body, `"name":"store","ok":true`) || !strings.Contains(body, `"name":"alarm_push","ok":true`) {
		t.Errorf("readyz: %d %s", code, body)
	}
	if code, body := e.do("GET", "/metrics", "missing", "", nil); code != 200 ||
		!strings.Contains(body, `hw_api_requests_total{code="503",route="GET /readyz"} 1`) || !strings.Contains(body, "hw_ws_clients 0") {
		t.Errorf("metrics: %d %s", code, body)
	}
	if code, body := e.do("GET", "/", "missing", "", nil); code != 200 || !strings.Contains(body, "hazardwatch") {
		t.Errorf("page: %d %.100s", code, body)
	}
	if code, body := e.do("GET", "/app.js", "missing", "", nil); code != 200 || !strings.Contains(body, "/api/v1/ws") {
		t.Errorf("app.js: %d %.100s", code, body)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope.html", 404},
		{"GET", "/api/v1/nope", 404},
		{"DELETE", "/api/v1/alarms", 405},
		{"POST", "/healthz", 405},
	} {
		if code, _ := e.do(c.method, c.path, "admin", "", nil); code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	if got := e.metric("hw_api_requests_total", "route", "/", "code", "405"); got != 1 {
		t.Errorf("405s of the page's route: %v, want 1 (POST /healthz)", got)
	}
	if got := e.metric("hw_api_requests_total", "route", "/api/", "code", "405"); got != 1 {
		t.Errorf("405s under /api/: %v, want 1 (DELETE /api/v1/alarms)", got)
	}
}

// TestGatewayAlarm: a gateway's offline alarm has no sensor; the lists
// show it to the scopes of the gateway's enterprise only, state=all finds
// it once it has ended, and the sensor list is not disturbed by it.
func TestGatewayAlarm(t *testing.T) {
	e := newEnv(t, nil)
	cut := func(gw string, active bool) model.Transition {
		g, ok := e.plant.GatewayIndex(gw)
		if !ok {
			t.Fatalf("no gateway %s", gw)
		}
		return model.Transition{Sensor: -1, Gateway: g, Rule: model.GatewaySilent, Class: model.ClassOffline,
			Active: active, Value: 30, Limit: 5, TS: time.Now().UnixMilli()}
	}
	e.submit(cut("gw-e01-1", true), cut("gw-e03-1", true))
	waitFor(t, "two gateway alarms", func() bool { return len(e.mgr.Active()) == 2 })
	for name, want := range map[string][]string{
		"e01":   {"gw-e01-1.gateway_silent.1"},
		"c01":   {"gw-e01-1.gateway_silent.1"},
		"admin": {"gw-e01-1.gateway_silent.1", "gw-e03-1.gateway_silent.1"},
	} {
		var l list[alarmView]
		if code, body := e.do("GET", "/api/v1/alarms", name, "", &l); code != http.StatusOK {
			t.Fatalf("alarms as %s: %d %s", name, code, body)
		}
		var got []string
		for _, a := range l.Items {
			got = append(got, a.ID)
			if a.Source.Sensor != "" || a.Source.Gateway == "" || a.Source.Enterprise == "" {
				t.Errorf("as %s: source %+v, want a gateway and its enterprise, no sensor", name, a.Source)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("alarms as %s: %v, want %v", name, got, want)
		}
	}
	var sensors list[sensorJSON]
	if code, body := e.do("GET", "/api/v1/sensors?enterprise=e01", "e01", "", &sensors); code != http.StatusOK || len(sensors.Items) == 0 {
		t.Fatalf("sensors with a gateway alarm open: %d %s", code, body)
	}
	for _, s := range sensors.Items {
		if s.AlarmState != "normal" {
			t.Errorf("%s: alarm_state %s, want normal (its gateway's alarm is not its own)", s.ID, s.AlarmState)
		}
	}
	e.submit(cut("gw-e01-1", false))
	waitFor(t, "the return", func() bool { a, _ := e.mgr.Get("gw-e01-1.gateway_silent.1"); return !a.Active })
	if err := e.mgr.Ack(context.Background(), "gw-e01-1.gateway_silent.1", "op", ""); err != nil {
		t.Fatal(err)
	}
	var l list[alarmView]
	e.do("GET", "/api/v1/alarms?state=all", "e01", "", &l)
	if len(l.Items) != 1 || l.Items[0].ID != "gw-e01-1.gateway_silent.1" || l.Items[0].State != "normal" {
		t.Errorf("state=all as e01: %+v, want the ended gateway alarm", l.Items)
	}
}
