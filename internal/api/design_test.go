package api

import (
	"strings"
	"testing"
	"time"
)

// TestDesignRequests: what the admin's calls accept and refuse, and what
// they answer.
func TestDesignRequests(t *testing.T) {
	e := newEnv(t, nil)
	future := e.clock.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	past := e.clock.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	sensor := e.sensorsOf("e01")[0]
	for _, c := range []struct {
		name, method, path, body string
		want                     int
		has                      string
	}{
		{"status unknown", "PUT", "/api/v1/enterprises/e01/status", `{"status":"closed","reason":"x"}`, 400, "status: want operating"},
		{"status without a reason", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended"}`, 400, "reason: required"},
		{"status until in the past", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended","reason":"检修","until":"` + past + `"}`, 400, "until: must lie in the future"},
		{"status until not a time", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended","reason":"检修","until":"tomorrow"}`, 400, "RFC 3339"},
		{"status unknown field", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended","reason":"检修","from":"x"}`, 400, "unknown field"},
		{"status reason too long", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended","reason":"` + strings.Repeat("检", 1400) + `"}`, 400, "at most 4000 bytes"},
		{"status of no enterprise", "PUT", "/api/v1/enterprises/e99/status", `{"status":"suspended","reason":"检修"}`, 404, "no such enterprise"},
		{"suspended until", "PUT", "/api/v1/enterprises/e01/status", `{"status":"suspended","reason":"年度检修","until":"` + future + `"}`, 200,
			`"status":"suspended","configured":"operating","until":"` + strings.TrimSuffix(future, "Z") + `.000Z","reason":"年度检修","set_by":"admin"`},
		{"read back", "GET", "/api/v1/enterprises/e01/status", "", 200, `"status":"suspended"`},
		{"back to the plant file's", "PUT", "/api/v1/enterprises/e01/status", `{"status":"operating","reason":"检修完成"}`, 200, `"status":"operating","configured":"operating","maintenance":[]`},
		{"out of service without a reason", "POST", "/api/v1/sensors/" + sensor + "/out_of_service", `{}`, 400, "reason: required"},
		{"out of service with a comment", "POST", "/api/v1/sensors/" + sensor + "/out_of_service", `{"reason":"标定","comment":"x"}`, 400, "comment"},
		{"in service when in service", "POST", "/api/v1/sensors/" + sensor + "/in_service", ``, 409, "not out of service"},
		{"out of service", "POST", "/api/v1/sensors/" + sensor + "/out_of_service", `{"reason":"标定","until":"` + future + `"}`, 200, `"out_of_service":{"since":"`},
		{"out of service again", "POST", "/api/v1/sensors/" + sensor + "/out_of_service", `{"reason":"标定"}`, 409, "out of service already"},
		{"listed", "GET", "/api/v1/sensors?enterprise=e01&limit=1", ``, 200, `"reason":"标定"`},
		{"in service with a reason", "POST", "/api/v1/sensors/" + sensor + "/in_service", `{"reason":"x"}`, 400, "comment only"},
		{"in service", "POST", "/api/v1/sensors/" + sensor + "/in_service", `{"comment":"标定完成"}`, 200, `"alarm_state":"normal"}`},
		{"no such sensor", "POST", "/api/v1/sensors/nope/in_service", ``, 404, "no such sensor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(c.method, c.path, "admin", c.body, nil)
			if code != c.want || !strings.Contains(body, c.has) {
				t.Errorf("%d %s\nwant %d with %s", code, body, c.want, c.has)
			}
		})
	}
	if got := len(e.audit.entries()); got != 4 {
		t.Errorf("%d audit entries, want 4 (two statuses, out of service, in service)", got)
	}
}
