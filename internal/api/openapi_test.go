package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/gorilla/websocket"

	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// servedPatterns are the "METHOD /path" patterns of the Server's mux.
func servedPatterns(s *Server) map[string]bool {
	m := map[string]bool{}
	for _, rt := range s.apiRoutes() {
		m[rt.pattern] = true
	}
	return m
}

// TestOpenAPIRoutes: the document is valid OpenAPI 3, every route the mux
// serves is documented with its method, and every documented operation is
// served (but the pending ones, while they are not).
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	served := servedPatterns(newEnv(t, nil).srv)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for p := range served {
		if !documented[p] {
			t.Errorf("%s is served but not in openapi.json", p)
		}
	}
	for p := range documented {
		if !served[p] {
			t.Errorf("%s is in openapi.json but not served", p)
		}
	}
}

// TestOpenAPIResponses: real answers of every served, documented
// operation, errors included, validate against the document: status
// documented, body and headers of the documented schema. The requests of
// the cases that should succeed validate too.
func TestOpenAPIResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		// The clock stands still: a burst that lasts the test; one
		// WebSocket per token, to see the 429.
		o.Limits = Limits{Rate: 1, Burst: 1000, AuthFailures: -1, WSPerToken: 1}
	})
	e01 := e.sensorsOf("e01")
	a1, a2, a3 := e.raise(e01[0]), e.raise(e01[1]), e.raise(e01[2])
	e03 := e.raise(e.sensorsOf("e03")[0])
	now := time.Now()
	var pts []store.Point
	for k := range 5 {
		pts = append(pts, store.Point{Sensor: e01[0], TS: now.Add(-time.Duration(k) * time.Minute).UnixMilli(), Value: float64(k)})
	}
	if err := e.hist.Append(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
	// One sensor with a latest reading, one with a bad one without value,
	// the rest without: every form of the sensor object.
	e.latest.set(model.Reading{SensorIdx: e.sensor(e01[0]), Quality: model.Good, HasValue: true, TS: now.UnixMilli(), Value: 1.5})
	e.latest.set(model.Reading{SensorIdx: e.sensor(e01[1]), Quality: model.Bad, Reason: model.ReasonTimeout, TS: now.UnixMilli()})
	from := url.QueryEscape(now.Add(-time.Hour).UTC().Format(time.RFC3339))
	big := `{"comment":"` + strings.Repeat("x", 70<<10) + `"}`

	future := e.clock.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	oos := "/api/v1/sensors/" + e01[3]
	cases := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/metrics", "", "", 200},
		{"GET", "/api/v1/openapi.json", "", "", 200},
		{"GET", "/api/v1/sensors", "p01", "", 200},
		{"GET", "/api/v1/sensors?enterprise=e01&kind=gas_toxic&limit=2", "admin", "", 200},
		{"GET", "/api/v1/sensors?enterprise=e03", "e01", "", 403},
		{"GET", "/api/v1/sensors?enterprise=nope", "admin", "", 400},
		{"GET", "/api/v1/sensors", "missing", "", 401},
		{"GET", "/api/v1/sensors", "revoked", "", 401},
		{"GET", "/api/v1/sensors/" + e01[0] + "/history?from=" + from + "&step=1m", "e01", "", 200},
		{"GET", "/api/v1/sensors/" + e01[0] + "/history?from=" + from, "e01", "", 200},
		{"GET", "/api/v1/sensors/" + e01[0] + "/history?from=yesterday", "e01", "", 400},
		{"GET", "/api/v1/sensors/nope/history", "e01", "", 404},
		{"GET", "/api/v1/sensors/" + e.sensorsOf("e03")[0] + "/history", "e01", "", 403},
		{"GET", "/api/v1/alarms", "p01", "", 200},
		{"GET", "/api/v1/alarms?state=all&enterprise=e01&limit=1", "admin", "", 200},
		{"GET", "/api/v1/alarms?state=closed", "admin", "", 400},
		{"GET", "/api/v1/alarms?park=p02", "p01", "", 403},
		{"GET", "/api/v1/alarms/" + a1.ID, "e01", "", 200},
		{"GET", "/api/v1/alarms/nope", "e01", "", 404},
		{"GET", "/api/v1/alarms/" + e03.ID, "e01", "", 403},
		{"POST", "/api/v1/alarms/" + a1.ID + "/ack", "e01", `{"comment":"收到"}`, 200},
		{"POST", "/api/v1/alarms/" + a1.ID + "/ack", "e01", `{"comment":"again"}`, 409},
		{"POST", "/api/v1/alarms/" + a2.ID + "/ack", "e01", `{"coment":"typo"}`, 400},
		{"POST", "/api/v1/alarms/" + a2.ID + "/ack", "e01", big, 413},
		{"POST", "/api/v1/alarms/nope/ack", "e01", "", 404},
		{"POST", "/api/v1/alarms/" + a1.ID + "/feedback", "e01", `{"cause":"阀门泄漏","action":"已更换垫片"}`, 200},
		{"POST", "/api/v1/alarms/" + a2.ID + "/feedback", "c01", `{"cause":"x","action":"y"}`, 403},
		{"POST", "/api/v1/alarms/" + a2.ID + "/feedback", "e01", `{"cause":"x","action":"y"}`, 409},
		{"POST", "/api/v1/alarms/" + a2.ID + "/shelve", "e01", `{"duration":"30m","reason":"检修"}`, 200},
		{"POST", "/api/v1/alarms/" + a3.ID + "/shelve", "e01", `{"duration":"soon","reason":"x"}`, 400},
		{"POST", "/api/v1/alarms/" + a2.ID + "/unshelve", "e01", `{"comment":"检修完毕"}`, 200},
		{"POST", "/api/v1/alarms/" + a2.ID + "/unshelve", "e01", "", 409},
		{"GET", "/api/v1/reports/alarms", "c01", "", 200},
		{"GET", "/api/v1/reports/alarms?park=p01&county=c01", "admin", "", 400},
		{"GET", "/api/v1/ws", "wrong", "", 401},
		{"GET", "/api/v1/ws", "admin", "", 400}, // a plain GET, no upgrade
		// The admin's routes.
		{"GET", "/api/v1/enterprises/e01/status", "e01", "", 200},
		{"GET", "/api/v1/enterprises/e03/status", "e01", "", 403},
		{"GET", "/api/v1/enterprises/e99/status", "admin", "", 404},
		{"PUT", "/api/v1/enterprises/e01/status", "admin", `{"status":"suspended","reason":"年度检修","until":"` + future + `"}`, 200},
		{"GET", "/api/v1/enterprises/e01/status", "p01", "", 200},
		{"PUT", "/api/v1/enterprises/e01/status", "admin", `{"status":"operating","reason":"检修完成"}`, 200},
		{"PUT", "/api/v1/enterprises/e01/status", "e01", `{"status":"operating","reason":"x"}`, 403},
		{"PUT", "/api/v1/enterprises/e01/status", "admin", `{"status":"closed","reason":"x"}`, 400},
		{"PUT", "/api/v1/enterprises/e99/status", "admin", `{"status":"suspended","reason":"x"}`, 404},
		{"POST", oos + "/out_of_service", "admin", `{"reason":"标定","until":"` + future + `"}`, 200},
		{"GET", "/api/v1/sensors?enterprise=e01", "admin", "", 200},
		{"POST", oos + "/out_of_service", "admin", `{"reason":"标定"}`, 409},
		{"POST", oos + "/out_of_service", "p01", `{"reason":"标定"}`, 403},
		{"POST", "/api/v1/sensors/nope/out_of_service", "admin", `{"reason":"标定"}`, 404},
		{"POST", oos + "/in_service", "admin", `{"comment":"标定完成"}`, 200},
		{"POST", oos + "/in_service", "admin", "", 409},
		{"POST", oos + "/in_service", "admin", `{"reason":"x"}`, 400},
	}
	served := servedPatterns(e.srv)

	checked := map[string]bool{}
	for _, c := range cases {
		req := e.request(c.method, c.path, c.token, c.body)
		res, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s %s as %q: %d %.200s, want %d", c.method, c.path, c.token, res.StatusCode, body, c.want)
			continue
		}
		req = e.request(c.method, c.path, c.token, c.body)
		checked[validateExchange(t, router, req, res.StatusCode, res.Header, body, c.want < 300)] = true
	}

	// The WebSocket's upgrade, and the 429 of a second one.
	d := websocket.Dialer{}
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + url.QueryEscape(e.tok["admin"])
	for _, want := range []int{http.StatusSwitchingProtocols, http.StatusTooManyRequests} {
		c, res, err := d.Dial(u, nil)
		if res == nil {
			t.Fatalf("WebSocket: %v", err)
		}
		if c != nil {
			defer c.Close()
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("WebSocket: %d %s, want %d", res.StatusCode, body, want)
		}
		req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/ws?token="+url.QueryEscape(e.tok["admin"]), nil)
		validateExchange(t, router, req, res.StatusCode, res.Header, body, want < 300)
	}

	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if p := method + " " + path; served[p] && !checked[p] {
				t.Errorf("%s: no answer checked against the document", p)
			}
		}
	}
}

// validateExchange checks one answer (and, when checkRequest, its request)
// against the document, and returns the operation's "METHOD /path".
func validateExchange(t *testing.T, router routers.Router, req *http.Request, status int, h http.Header, body []byte, checkRequest bool) string {
	t.Helper()
	what := req.Method + " " + req.URL.RequestURI()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: not in the document: %v", what, err)
		return ""
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}}
	if checkRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s: the request does not match the document: %v", what, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: h, Options: in.Options}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: answer %d does not match the document: %v\n%.300s", what, status, err, body)
	}
	return req.Method + " " + route.Path
}
