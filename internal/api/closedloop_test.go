package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/alerting"
)

// TestFeedback: the enterprise's handling report closes the loop: after
// the acknowledgement, once, with a cause and an action; the refusals
// with their statuses.
func TestFeedback(t *testing.T) {
	e := newEnv(t, nil)
	a := e.raise("e01-V101-LT")
	path := "/api/v1/alarms/" + a.ID + "/feedback"
	ok := `{"cause":"进料阀开度过大","action":"调小开度，加强巡检"}`
	for _, c := range []struct {
		name, body string
		want       int
		says       string
	}{
		{"e01", ok, http.StatusConflict, "acknowledge it first"},
		{"e01", `{"cause":"只有原因"}`, http.StatusBadRequest, "needs a user, a cause and an action"},
		{"e01", `{"cause":"x","action":"y","extra":1}`, http.StatusBadRequest, "unknown field"},
		{"e01", `{"cause":"` + strings.Repeat("x", 5000) + `","action":"y"}`, http.StatusBadRequest, "at most 4000 bytes"},
		{"c01", ok, http.StatusForbidden, "may not give feedback on alarms"},
	} {
		if got, body := e.do("POST", path, c.name, c.body, nil); got != c.want || !strings.Contains(body, c.says) {
			t.Errorf("%s %.30q: %d %s; want %d saying %q", c.name, c.body, got, body, c.want, c.says)
		}
	}
	if code, body := e.do("POST", "/api/v1/alarms/"+a.ID+"/ack", "e01", "", nil); code != http.StatusOK {
		t.Fatalf("ack: %d %s", code, body)
	}
	var got alarmView
	code, body := e.do("POST", path, "p01", ok, &got)
	if code != http.StatusOK || !strings.Contains(body, `"feedback":{"at":"`) || !strings.Contains(body, `"by":"p01","cause":"进料阀开度过大","action":"调小开度，加强巡检"`) {
		t.Fatalf("feedback: %d %s", code, body)
	}
	if code, body := e.do("POST", path, "e01", ok, nil); code != http.StatusConflict || !strings.Contains(body, "feedback already given") {
		t.Errorf("second feedback: %d %s", code, body)
	}
	cur, _ := e.mgr.Get(a.ID)
	if last := cur.History[len(cur.History)-1]; last.Event != alerting.FeedbackGiven || last.User != "p01" {
		t.Errorf("history ends with %s by %s", last.Event, last.User)
	}
}

// TestAlarmKPIs: the duty report's alarm figures, in the caller's scope
// only; a scope outside it is 403.
func TestAlarmKPIs(t *testing.T) {
	e := newEnv(t, nil)
	for _, id := range []string{"e01-V101-LT", "e01-V102-LT", "e01-V101-PT"} {
		e.raise(id)
	}
	e.raise(e.sensorsOf("e02")[0])
	e.clock.Add(time.Minute) // the page's "to" is the API's clock
	var k alerting.KPIs
	if code, body := e.do("GET", "/api/v1/reports/alarms", "e01", "", &k); code != http.StatusOK || k.Alarms != 3 || k.Scope != "enterprise" || k.ID != "e01" {
		t.Fatalf("e01's own: %d %s", code, body)
	}
	if code, _ := e.do("GET", "/api/v1/reports/alarms?park=p01", "c01", "", &k); code != http.StatusOK || k.Alarms != 4 || k.Scope != "park" {
		t.Errorf("c01 on p01: %d %+v", code, k)
	}
	if code, _ := e.do("GET", "/api/v1/reports/alarms", "admin", "", &k); code != http.StatusOK || k.Alarms != 4 || k.Scope != "" {
		t.Errorf("admin: %d %+v", code, k)
	}
	for _, c := range []struct {
		name, query string
		want        int
	}{
		{"e01", "?enterprise=e02", http.StatusForbidden},
		{"e01", "?park=p01", http.StatusForbidden},
		{"c01", "?enterprise=e01&park=p01", http.StatusBadRequest},
		{"c01", "?from=yesterday", http.StatusBadRequest},
		{"c01", "?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", http.StatusBadRequest},
		{"c01", "?county=nowhere", http.StatusBadRequest},
		{"wrong", "", http.StatusUnauthorized},
	} {
		if got, body := e.do("GET", "/api/v1/reports/alarms"+c.query, c.name, "", nil); got != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.name, c.query, got, c.want, body)
		}
	}
}

// TestWSFlood: 11 new alarms at e01 within minutes flag a flood: pushed to
// the clients who see e01 (its operator, the park, the county), not to
// e02's; a client that connects later finds it in its snapshot.
func TestWSFlood(t *testing.T) {
	e := newEnv(t, nil)
	e01 := e.dial("e01", map[string]any{"type": "subscribe"})
	e02 := e.dial("admin", map[string]any{"type": "subscribe", "scope": map[string]string{"enterprise": "e02"}})
	all := e.dial("admin", map[string]any{"type": "subscribe"})
	for _, c := range []*wsClient{e01, e02, all} {
		if f := c.next(); f.Type != "snapshot" || !strings.Contains(string(f.Raw), `"floods":[]`) {
			t.Fatalf("first frame: %s", f.Raw)
		}
	}
	for _, id := range e.sensorsOf("e01")[:11] {
		e.submit(e.transition(id, true))
	}
	var flood wsFrame
	for i := 0; ; i++ {
		f := e01.next()
		if f.Type == "flood" {
			flood = f
			break
		}
		if f.Type != "alarm" || i > 11 {
			t.Fatalf("frame %d: %s", i, f.Raw)
		}
	}
	if s := string(flood.Raw); !strings.Contains(s, `"scope":"enterprise","id":"e01","active":true`) || !strings.Contains(s, `"count":11`) {
		t.Errorf("flood frame: %s", s)
	}
	// Everything's client is told of both, the enterprise's and the park's.
	var scopes []string
	for len(scopes) < 2 {
		if f := all.next(); f.Type == "flood" {
			var m struct {
				Flood struct{ Scope, ID string } `json:"flood"`
			}
			_ = json.Unmarshal(f.Raw, &m)
			scopes = append(scopes, m.Flood.Scope+":"+m.Flood.ID)
		}
	}
	if !slices.Equal(scopes, []string{"enterprise:e01", "park:p01"}) {
		t.Errorf("floods told to an admin: %v", scopes)
	}
	p01 := e.dial("p01", map[string]any{"type": "subscribe"})
	if f := p01.next(); f.Type != "snapshot" || !strings.Contains(string(f.Raw), `"scope":"enterprise","id":"e01","active":true`) ||
		!strings.Contains(string(f.Raw), `"scope":"park","id":"p01","active":true`) {
		t.Errorf("a later park snapshot: %s", f.Raw)
	}
	if f, err := e02.read(300 * time.Millisecond); err == nil {
		t.Errorf("e02's client got %s", f.Raw)
	}
}
