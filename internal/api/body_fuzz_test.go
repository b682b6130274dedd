package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"hazardwatch/alerting"
	"hazardwatch/internal/model"
)

// bodyRoute is a route that takes a JSON body, for FuzzRequestBodies.
// ready makes (or finds) an object the action could succeed on and returns
// the request's path and a function that reads what a refused body must
// leave unchanged; it is called again after an accepted body.
type bodyRoute struct {
	pattern string // the mux's
	token   string
	ready   func(e *env, i int) (path string, state func() string)
}

// bodyRoutes are every route with a JSON body. Each alarm route works on
// its own sensor (the i-th unlatched one of e01), so that their alarms do
// not meet; the admin's routes read their object back over the API.
var bodyRoutes = []bodyRoute{
	{"POST /api/v1/alarms/{id}/ack", "e01", alarmIn("ack", model.StateUnackActive)},
	{"POST /api/v1/alarms/{id}/shelve", "e01", alarmIn("shelve", model.StateUnackActive)},
	{"POST /api/v1/alarms/{id}/unshelve", "e01", alarmIn("unshelve", model.StateShelved)},
	{"POST /api/v1/alarms/{id}/feedback", "e01", alarmIn("feedback", model.StateAckActive)},
	{"PUT /api/v1/enterprises/{id}/status", "admin", func(e *env, _ int) (string, func() string) {
		path := "/api/v1/enterprises/e02/status"
		return path, func() string { return e.get(path) }
	}},
	{"POST /api/v1/sensors/{id}/out_of_service", "admin", sensorIn(4, "out_of_service", false)},
	{"POST /api/v1/sensors/{id}/in_service", "admin", sensorIn(5, "in_service", true)},
}

// sensorIn returns a ready for POST /api/v1/sensors/{id}/action on e01's
// k-th sensor, out of service or not as out says.
func sensorIn(k int, action string, out bool) func(e *env, _ int) (string, func() string) {
	return func(e *env, _ int) (string, func() string) {
		id := e.sensorsOf("e01")[k]
		base := "/api/v1/sensors/" + id
		if out {
			e.do("POST", base+"/out_of_service", "admin", `{"reason":"标定"}`, nil) // 409 when out already
		} else {
			e.do("POST", base+"/in_service", "admin", "", nil) // 409 when in service already
		}
		return base + "/" + action, func() string {
			// The sensor object as the list has it; the list is in plant
			// order, so a page starting at the sensor before would do,
			// but the whole enterprise is small.
			var l list[map[string]any]
			e.do("GET", "/api/v1/sensors?enterprise=e01&limit=1000", "admin", "", &l)
			for _, o := range l.Items {
				if o["id"] == id {
					b, _ := json.Marshal(o)
					return string(b)
				}
			}
			return ""
		}
	}
}

// get answers GET path as admin: status and body.
func (e *env) get(path string) string {
	e.t.Helper()
	code, body := e.do("GET", path, "admin", "", nil)
	return fmt.Sprint(code, " ", body)
}

// alarmIn returns a ready for POST /api/v1/alarms/{id}/action on an alarm
// in state want: the high alarm of e01's i-th sensor, raised afresh after
// the last one is driven back to normal.
func alarmIn(action string, want model.AlarmState) func(e *env, i int) (string, func() string) {
	return func(e *env, i int) (string, func() string) {
		sensor := e.unlatched("e01")[i]
		a := e.freshAlarm(sensor)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		switch want {
		case model.StateShelved:
			if err := e.mgr.Shelve(ctx, a.ID, "fuzz", "fuzz", time.Hour); err != nil {
				e.t.Fatal(err)
			}
		case model.StateAckActive:
			if err := e.mgr.Ack(ctx, a.ID, "fuzz", ""); err != nil {
				e.t.Fatal(err)
			}
		}
		return "/api/v1/alarms/" + a.ID + "/" + action, func() string {
			got, _ := e.mgr.Get(a.ID)
			b, _ := json.Marshal(got)
			return string(b)
		}
	}
}

// unlatched are the sensors of enterprise ent whose alarms end when the
// value returns after an acknowledgement (freshAlarm's way to end one).
func (e *env) unlatched(ent string) []string {
	var out []string
	for _, id := range e.sensorsOf(ent) {
		if !demo.Rules[e.sensor(id)].Latch {
			out = append(out, id)
		}
	}
	return out
}

// fuzzReadingTime is the reading time of freshAlarm's transitions: an hour
// later at each, so that raising one sensor's alarm again and again is
// never chattering (judged on reading times), which would keep it open.
var fuzzReadingTime atomic.Int64

// freshAlarm drives the high alarm of sensor, if open, back to normal and
// raises a new one.
func (e *env) freshAlarm(sensor string) alerting.Alarm {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fuzzReadingTime.CompareAndSwap(0, time.Now().Add(-365*24*time.Hour).UnixMilli())
	for range 10 {
		var open *alerting.Alarm
		for _, a := range e.mgr.Active() {
			if a.Source.Sensor == sensor && a.Rule == model.ThresholdHigh {
				open = &a
			}
		}
		if open == nil {
			tr := e.transition(sensor, true)
			tr.TS = fuzzReadingTime.Add(time.Hour.Milliseconds())
			return e.raiseBy(tr)
		}
		var err error
		switch open.State {
		case model.StateShelved:
			err = e.mgr.Unshelve(ctx, open.ID, "fuzz", "")
		case model.StateUnackActive, model.StateUnackRTN:
			err = e.mgr.Ack(ctx, open.ID, "fuzz", "")
		default:
			tr := e.transition(sensor, false)
			tr.TS = fuzzReadingTime.Add(time.Hour.Milliseconds())
			e.submit(tr)
		}
		if err != nil {
			e.t.Fatalf("%s in %v: %v", open.ID, open.State, err)
		}
		id, state := open.ID, open.State
		waitFor(e.t, id+" to leave "+state.String(), func() bool {
			a, _ := e.mgr.Get(id)
			return a.State != state
		})
	}
	e.t.Fatalf("the alarm of %s did not return to normal", sensor)
	return alerting.Alarm{}
}

// FuzzRequestBodies sends fuzzed bodies through the real handlers of
// every route with a JSON body: never a 5xx, every 4xx a JSON
// {"error":…}, a refused body changes nothing, an accepted one answers
// the object.
func FuzzRequestBodies(f *testing.F) {
	for i := range bodyRoutes {
		for _, b := range []string{"", "{}", "null", "[]", `{"comment":"收到"}`, `{"duration":"30m","reason":"检修"}`,
			`{"cause":"阀门泄漏","action":"已更换垫片"}`, `{"duration":"-1h","reason":"x"}`, `{"comment":1}`, `{"comment":"a"}{}`,
			`{"reason":"` + strings.Repeat("长", 100) + `"}`, "{\"comment\":\"\xff\"}", `{"comment":"x","extra":true}`} {
			f.Add(uint8(i), []byte(b))
		}
	}
	e := newEnv(f, nil)
	served := servedPatterns(e.srv)
	routes := bodyRoutes
	for _, r := range routes {
		if !served[r.pattern] {
			f.Fatalf("%s is in the fuzz table but not served", r.pattern)
		}
	}
	type target struct {
		path  string
		state func() string
	}
	targets := make([]*target, len(routes))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		// The env's helpers report to the running input's t: F's own
		// methods may not be called from here.
		e.t = t
		defer func() { e.t = f }()
		k := int(which) % len(routes)
		r := routes[k]
		if targets[k] == nil {
			p, st := r.ready(e, k)
			targets[k] = &target{p, st}
		}
		tg := targets[k]
		before := tg.state()
		method, _, _ := strings.Cut(r.pattern, " ")
		req, err := http.NewRequest(method, e.ts.URL+tg.path, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.tok[r.token])
		req.Header.Set("Content-Type", "application/json")
		res, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch code := res.StatusCode; {
		case code >= 500:
			t.Fatalf("%s %q: %d %s", r.pattern, body, code, got)
		case code >= 400:
			var eb errorBody
			if err := json.Unmarshal(got, &eb); err != nil || eb.Error == "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%s %q: %d %q, want {\"error\":…}", r.pattern, body, code, got)
			}
			if after := tg.state(); after != before {
				t.Fatalf("%s %q was refused (%d %s) but changed the object:\n%s\n%s", r.pattern, body, code, got, before, after)
			}
		case code == http.StatusOK:
			// The object of the path: an alarm or a sensor by its id, an
			// enterprise's status by its enterprise.
			var o struct{ ID, Enterprise string }
			err := json.Unmarshal(got, &o)
			if o.ID == "" {
				o.ID = o.Enterprise
			}
			if err != nil || o.ID == "" || !strings.Contains(tg.path, "/"+o.ID+"/") {
				t.Fatalf("%s %q: 200 %s, want the object", r.pattern, body, got)
			}
			targets[k] = nil // used up: the next input gets a fresh one
		default:
			t.Fatalf("%s %q: %d %s", r.pattern, body, code, got)
		}
	})
}

// FuzzWSSubscribe sends a fuzzed first message over a real WebSocket as a
// park operator: the server answers a snapshot, or an error frame and a
// close frame with a refusal code; never anything else, never a dropped
// connection.
func FuzzWSSubscribe(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe"}`, `{"type":"subscribe","scope":{"enterprise":"e01"}}`,
		`{"type":"subscribe","scope":{"park":"p01"},"resume":0,"readings":true}`,
		`{"type":"subscribe","scope":{"park":"p02"}}`, `{"type":"subscribe","scope":{"county":"c01"}}`,
		`{"type":"subscribe","scope":{"enterprise":"e01","park":"p01"}}`, `{"type":"subscribe","scope":{"gateway":"g"}}`,
		`{"type":"subscribe","resume":18446744073709551615}`, `{"type":"subscribe","resume":-1}`,
		`{"type":"hello"}`, `null`, `[]`, ``, `{"type":"subscribe","scope":null}`, `{"type":"subscribe"}{}`,
	} {
		f.Add(s, false)
	}
	f.Add("\x00\x01", true)
	e := newEnv(f, nil)
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + url.QueryEscape(e.tok["p01"])
	f.Fuzz(func(t *testing.T, msg string, binary bool) {
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		typ := websocket.TextMessage
		if binary {
			typ = websocket.BinaryMessage
		}
		if err := c.WriteMessage(typ, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := c.ReadMessage()
		if len(msg) > maxClientMessage {
			// Over the read limit: the server ends the connection.
			return
		}
		if err != nil {
			t.Fatalf("%q: %v, want a snapshot or an error frame", msg, err)
		}
		var fr struct {
			Type  string `json:"type"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatalf("%q: frame %s: %v", msg, b, err)
		}
		switch fr.Type {
		case "snapshot":
		case "error":
			if fr.Error == "" {
				t.Fatalf("%q: error frame without a message: %s", msg, b)
			}
			_, _, err := c.ReadMessage()
			ce, ok := err.(*websocket.CloseError)
			if !ok || (ce.Code != websocket.ClosePolicyViolation && ce.Code != websocket.CloseUnsupportedData && ce.Code != websocket.CloseInvalidFramePayloadData) {
				t.Fatalf("%q: after the error frame %v, want a close frame 1003, 1007 or 1008", msg, err)
			}
		default:
			t.Fatalf("%q: first frame %s", msg, b)
		}
	})
}
