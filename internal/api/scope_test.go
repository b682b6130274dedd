package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

// fourEnterprises is the demo plant spread so that, seen from e01, every
// kind of neighbour exists: e02 its sibling in park p01, e03 in another
// park (p02) of the same county c01, and e04, a copy of e03 with its
// hazard sources, gateways and sensors, in park p03 of another county
// (c02). It returns the rules for the new sensors too (e03's).
func fourEnterprises(p *model.Plant, rules []model.SensorRules) (*model.Plant, []model.SensorRules) {
	q := *p
	q.Counties = append(slices.Clone(p.Counties), model.County{ID: "c02", Name: "邻县"})
	q.Parks = append(slices.Clone(p.Parks),
		model.Park{ID: "p02", Name: "本县第二化工园区", County: 0},
		model.Park{ID: "p03", Name: "邻县化工园区", County: int32(len(q.Counties) - 1)})
	q.Enterprises = slices.Clone(p.Enterprises)
	e03, _ := p.EnterpriseIndex("e03")
	q.Enterprises[e03].Park = int32(len(p.Parks))
	e04 := int32(len(q.Enterprises))
	ent := q.Enterprises[e03]
	ent.ID, ent.Name, ent.Park = "e04", "邻县某化工有限公司", int32(len(q.Parks)-1)
	q.Enterprises = append(q.Enterprises, ent)
	rename := func(id string) string { return "e04" + strings.TrimPrefix(id, "e03") }
	q.HazardSources, q.Gateways, q.Sensors = slices.Clone(p.HazardSources), slices.Clone(p.Gateways), slices.Clone(p.Sensors)
	hs, gw := map[int32]int32{}, map[int32]int32{}
	for i, h := range p.HazardSources {
		if h.Enterprise == e03 {
			hs[int32(i)] = int32(len(q.HazardSources))
			h.ID, h.Enterprise = rename(h.ID), e04
			q.HazardSources = append(q.HazardSources, h)
		}
	}
	for i, g := range p.Gateways {
		if g.Enterprise == e03 {
			gw[int32(i)] = int32(len(q.Gateways))
			g.ID, g.Enterprise = "gw-e04"+strings.TrimPrefix(g.ID, "gw-e03"), e04
			q.Gateways = append(q.Gateways, g)
		}
	}
	rs := slices.Clone(rules)
	for i, s := range p.Sensors {
		if s.Enterprise != e03 {
			continue
		}
		s.ID, s.Enterprise = rename(s.ID), e04
		if s.HazardSource >= 0 {
			s.HazardSource = hs[s.HazardSource]
		}
		s.Gateway = gw[s.Gateway]
		q.Sensors = append(q.Sensors, s)
		rs = append(rs, rules[i])
	}
	q.Index()
	return &q, rs
}

// TestScopeTable is issue #7's table: every route that takes an id × every
// role × {own object, sibling enterprise, other park, other county}, seen
// from callers whose scopes all hold e01. Foreign access is 403 and
// changes nothing; a role that may not act is 403 in its scope; missing,
// wrong, malformed, revoked and expired tokens are 401 on every route; and
// the lists and the WebSocket snapshot of each caller hold nothing out of
// its scope.
func TestScopeTable(t *testing.T) {
	plant, rules := fourEnterprises(demo.Plant, demo.Rules)
	e := newEnvWith(t, plant, rules, nil)
	e.mkToken("p01-officer", auth.Officer, "park:p01", 0, time.Now())

	objects := []struct{ rel, ent string }{{"own", "e01"}, {"sibling", "e02"}, {"other park", "e03"}, {"other county", "e04"}}
	// What each caller sees, by relation to e01.
	callers := []struct {
		name string
		sees []string
		// acts: what the role may do besides reading (SPEC §3's table).
		ack, shelve, admin bool
	}{
		{"e01", []string{"own"}, true, true, false},
		{"p01", []string{"own", "sibling"}, true, true, false},
		{"p01-officer", []string{"own", "sibling"}, true, false, false},
		{"c01", []string{"own", "sibling", "other park"}, true, false, false},
		{"admin", []string{"own", "sibling", "other park", "other county"}, true, true, true},
	}
	invalid := []string{"missing", "wrong", "malformed", "revoked", "expired"}

	// One alarm and one sensor per (caller, enterprise), so that every
	// allowed action finds its own object as it expects it.
	type key struct{ caller, ent string }
	alarms, sensors := map[key]alerting.Alarm{}, map[key]string{}
	names := append([]string{}, invalid...)
	for _, c := range callers {
		names = append(names, c.name)
	}
	for i, name := range names {
		for _, o := range objects {
			sensors[key{name, o.ent}] = e.sensorsOf(o.ent)[i]
			alarms[key{name, o.ent}] = e.raise(e.sensorsOf(o.ent)[i])
		}
	}
	from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Minute).UTC().Format(time.RFC3339)

	type route struct {
		name, method string
		path         func(k key) string
		body         string
		may          func(ack, shelve, admin bool) bool
	}
	read := func(bool, bool, bool) bool { return true }
	alarm := func(suffix string) func(k key) string {
		return func(k key) string { return "/api/v1/alarms/" + alarms[k].ID + suffix }
	}
	sensor := func(suffix string) func(k key) string {
		return func(k key) string { return "/api/v1/sensors/" + sensors[k] + suffix }
	}
	status := func(k key) string { return "/api/v1/enterprises/" + k.ent + "/status" }
	// In the order a control room would: acknowledge, shelve, unshelve,
	// then feedback; the admin's changes last.
	routes := []route{
		{"alarm", "GET", alarm(""), "", read},
		{"history", "GET", sensor("/history?from=" + from + "&to=" + to), "", read},
		{"status", "GET", status, "", read},
		{"ack", "POST", alarm("/ack"), `{"comment":"收到"}`, func(ack, _, _ bool) bool { return ack }},
		{"shelve", "POST", alarm("/shelve"), `{"duration":"30m","reason":"探头受潮"}`, func(_, shelve, _ bool) bool { return shelve }},
		{"unshelve", "POST", alarm("/unshelve"), "", func(_, shelve, _ bool) bool { return shelve }},
		{"feedback", "POST", alarm("/feedback"), `{"cause":"法兰垫片老化","action":"更换垫片"}`, func(_, shelve, _ bool) bool { return shelve }},
		{"out_of_service", "POST", sensor("/out_of_service"), `{"reason":"标定"}`, func(_, _, admin bool) bool { return admin }},
		{"in_service", "POST", sensor("/in_service"), `{"comment":"标定完成"}`, func(_, _, admin bool) bool { return admin }},
		{"put status", "PUT", status, `{"status":"stop_ordered","reason":"停产整顿"}`, func(_, _, admin bool) bool { return admin }},
	}
	audited := 0
	for _, rt := range routes {
		for _, c := range callers {
			for _, o := range objects {
				k := key{c.name, o.ent}
				t.Run(fmt.Sprintf("%s/%s/%s", rt.name, c.name, o.rel), func(t *testing.T) {
					want := http.StatusForbidden
					if slices.Contains(c.sees, o.rel) && rt.may(c.ack, c.shelve, c.admin) {
						want = http.StatusOK
					}
					before, _ := e.mgr.Get(alarms[k].ID)
					designBefore := e.design.Design()
					got, body := e.do(rt.method, rt.path(k), c.name, rt.body, nil)
					if got != want {
						t.Fatalf("%s %s: %d, want %d: %s", rt.method, rt.path(k), got, want, body)
					}
					after, _ := e.mgr.Get(alarms[k].ID)
					if want != http.StatusOK {
						if after.State != before.State || len(after.History) != len(before.History) {
							t.Errorf("a refused request changed the alarm: %s → %s", before.State, after.State)
						}
						if !equalDesign(designBefore, e.design.Design()) {
							t.Errorf("a refused request changed the design")
						}
						if !strings.HasPrefix(body, `{"error":"`) {
							t.Errorf("not a JSON error: %s", body)
						}
					} else if rt.method != "GET" {
						audited++
					}
				})
			}
		}
		for _, name := range invalid {
			t.Run(fmt.Sprintf("%s/%s", rt.name, name), func(t *testing.T) {
				k := key{name, "e01"}
				if got, body := e.do(rt.method, rt.path(k), name, rt.body, nil); got != http.StatusUnauthorized {
					t.Errorf("%d, want 401: %s", got, body)
				}
			})
		}
	}
	// Every change that was allowed is in the audit log, with who and
	// from where; nothing refused is.
	if es := e.audit.entries(); len(es) != audited {
		t.Errorf("%d audit entries, want %d", len(es), audited)
	} else {
		for _, a := range es {
			if a.Actor == "" || a.From == "" || a.Action == "" || a.Object == "" || a.After == nil {
				t.Errorf("audit entry incomplete: %+v", a)
			}
		}
	}

	// Lists and the WebSocket snapshot: nothing out of scope.
	for _, c := range callers {
		t.Run("lists/"+c.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, o := range objects {
				seen[o.ent] = slices.Contains(c.sees, o.rel)
			}
			for _, path := range []string{"/api/v1/sensors?limit=1000", "/api/v1/alarms?state=all&limit=1000"} {
				var out struct {
					Items []json.RawMessage `json:"items"`
				}
				if code, body := e.do("GET", path, c.name, "", &out); code != http.StatusOK {
					t.Fatalf("%s: %d %s", path, code, body)
				}
				ents := map[string]int{}
				for _, it := range out.Items {
					var x struct {
						Enterprise string `json:"enterprise"`
						Source     struct {
							Enterprise string `json:"enterprise"`
						} `json:"source"`
					}
					if err := json.Unmarshal(it, &x); err != nil {
						t.Fatal(err)
					}
					ents[x.Enterprise+x.Source.Enterprise]++
				}
				for ent, n := range ents {
					if !seen[ent] {
						t.Errorf("%s: %d items of %s, outside the scope", path, n, ent)
					}
				}
				for ent, ok := range seen {
					if ok && ents[ent] == 0 {
						t.Errorf("%s: nothing of %s, which is in scope", path, ent)
					}
				}
			}
			snap := e.dial(c.name, map[string]any{"type": "subscribe"}).next()
			if snap.Type != "snapshot" {
				t.Fatalf("first frame %s, want the snapshot", snap.Raw)
			}
			for _, a := range snap.Alarms {
				if !seen[a.Source.Enterprise] {
					t.Errorf("snapshot: alarm %s of %s, outside the scope", a.ID, a.Source.Enterprise)
				}
			}
			if len(snap.Alarms) == 0 {
				t.Error("an empty snapshot")
			}
		})
	}
}

func equalDesign(a, b model.Design) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
