package dashboards_test

// The Grafana dashboards (grafana/dashboards/*.json) and their provisioning
// (grafana/provisioning): every file parses, every panel is titled in
// Chinese then English, every query goes to a provisioned data source and
// uses only variables the dashboard defines, and the hazard source
// dashboard's thresholds are the demo rules' limits. influxql_test.go and
// promql_test.go check what the queries name.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"hazardwatch/internal/config"
	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	dashboardDir   = "grafana/dashboards"
	provisioning   = "grafana/provisioning"
	influxUID      = "hw-influxdb"
	prometheusUID  = "hw-prometheus"
	hazardSourceDB = "hazard-source.json"
)

// dashboard is one dashboard file, decoded generically: the test walks
// Grafana's JSON model rather than mirroring it in types.
type dashboard struct {
	file string
	raw  []byte
	m    map[string]any
}

// query is one query of a dashboard: a panel target, a template variable
// or an annotation.
type query struct {
	file, where string // where: the panel title, variable or annotation
	uid         string // data source uid
	text        string // InfluxQL or PromQL
	alias       string // InfluxDB target alias
	legend      string // Prometheus legend format
	isVariable  bool
}

func (q query) String() string { return fmt.Sprintf("%s: %s: %s", q.file, q.where, q.text) }

// queriesTo returns the queries of every dashboard to the data source uid,
// failing t when there are fewer than min (a dashboard lost, say).
func queriesTo(t *testing.T, uid string, min int) []query {
	t.Helper()
	var out []query
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries() {
			if q.uid == uid {
				out = append(out, q)
			}
		}
	}
	if len(out) < min {
		t.Fatalf("only %d queries to %s in the dashboards, want %d or more", len(out), uid, min)
	}
	return out
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("%d dashboards in %s, want 4 (park overview, hazard source, gateways, pipeline)", len(files), dashboardDir)
	}
	var out []dashboard
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard{file: filepath.Base(f), raw: raw}
		if err := json.Unmarshal(raw, &d.m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, d)
	}
	return out
}

// panels returns every panel of d, those inside rows included.
func (d dashboard) panels() []map[string]any {
	var out []map[string]any
	var walk func(list []any)
	walk = func(list []any) {
		for _, p := range list {
			pm := p.(map[string]any)
			out = append(out, pm)
			if sub, ok := pm["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	list, _ := d.m["panels"].([]any)
	walk(list)
	return out
}

func (d dashboard) variables() []map[string]any {
	tpl, _ := d.m["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	out := make([]map[string]any, len(list))
	for i, v := range list {
		out[i] = v.(map[string]any)
	}
	return out
}

func uidOf(ds any) string {
	m, _ := ds.(map[string]any)
	s, _ := m["uid"].(string)
	return s
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// queries returns every query of d.
func (d dashboard) queries() []query {
	var out []query
	for _, p := range d.panels() {
		targets, _ := p["targets"].([]any)
		for _, tg := range targets {
			tm := tg.(map[string]any)
			uid := uidOf(tm["datasource"])
			if uid == "" {
				uid = uidOf(p["datasource"])
			}
			text := str(tm, "query")
			if text == "" {
				text = str(tm, "expr")
			}
			out = append(out, query{file: d.file, where: str(p, "title"), uid: uid, text: text,
				alias: str(tm, "alias"), legend: str(tm, "legendFormat")})
		}
	}
	for _, v := range d.variables() {
		if str(v, "type") != "query" {
			continue
		}
		text := str(v, "query")
		if qm, ok := v["query"].(map[string]any); ok {
			text = str(qm, "query")
		}
		out = append(out, query{file: d.file, where: "variable " + str(v, "name"), uid: uidOf(v["datasource"]), text: text, isVariable: true})
	}
	ann, _ := d.m["annotations"].(map[string]any)
	list, _ := ann["list"].([]any)
	for _, a := range list {
		am := a.(map[string]any)
		if uid := uidOf(am["datasource"]); uid == influxUID || uid == prometheusUID {
			text := str(am, "query")
			if text == "" {
				text = str(am, "expr")
			}
			out = append(out, query{file: d.file, where: "annotation " + str(am, "name"), uid: uid, text: text})
		}
	}
	return out
}

var han = regexp.MustCompile(`\p{Han}`)

// bilingual: "中文 / English": Chinese first, then English, as the panel
// titles are (numbers, units and product names such as InfluxDB may
// appear in the Chinese part).
func bilingual(title string) error {
	zh, en, ok := strings.Cut(title, " / ")
	switch {
	case !ok:
		return fmt.Errorf("%q: want \"中文 / English\"", title)
	case !han.MatchString(zh):
		return fmt.Errorf("%q: no Chinese before the slash", title)
	case han.MatchString(en) || !strings.ContainsFunc(en, unicode.IsLetter):
		return fmt.Errorf("%q: the part after the slash must be English", title)
	}
	return nil
}

// TestDashboardsWellFormed: what a user sees and what Grafana needs from
// each dashboard file.
func TestDashboardsWellFormed(t *testing.T) {
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(d.file, func(t *testing.T) {
			uid, title := str(d.m, "uid"), str(d.m, "title")
			if uid == "" || len(uid) > 40 {
				t.Errorf("uid %q: want one of at most 40 characters", uid)
			}
			if other, dup := uids[uid]; dup {
				t.Errorf("uid %q also in %s", uid, other)
			}
			uids[uid] = d.file
			if err := bilingual(title); err != nil {
				t.Errorf("dashboard title %v", err)
			}
			panels := d.panels()
			if len(panels) < 4 {
				t.Errorf("%d panels", len(panels))
			}
			ids := map[float64]bool{}
			for _, p := range panels {
				ptitle := str(p, "title")
				if err := bilingual(ptitle); err != nil {
					t.Errorf("panel title %v", err)
				}
				id, _ := p["id"].(float64)
				if id == 0 || ids[id] {
					t.Errorf("panel %q: id %v missing or repeated", ptitle, p["id"])
				}
				ids[id] = true
				if _, ok := p["gridPos"].(map[string]any); !ok {
					t.Errorf("panel %q: no gridPos", ptitle)
				}
				if str(p, "type") != "row" {
					if targets, _ := p["targets"].([]any); len(targets) == 0 {
						t.Errorf("panel %q: no queries", ptitle)
					}
				}
			}
			for _, v := range d.variables() {
				if err := bilingual(str(v, "label")); err != nil {
					t.Errorf("variable %s: label %v", str(v, "name"), err)
				}
			}
			defined := map[string]bool{}
			for _, v := range d.variables() {
				defined[str(v, "name")] = true
			}
			for _, p := range panels {
				if r := str(p, "repeat"); r != "" && !defined[r] {
					t.Errorf("panel %q repeats over $%s, which is not defined", str(p, "title"), r)
				}
			}
			for _, q := range d.queries() {
				if strings.TrimSpace(q.text) == "" {
					t.Errorf("%s: empty query", q.where)
				}
				if q.uid != influxUID && q.uid != prometheusUID {
					t.Errorf("%s: data source %q, want %s or %s (provisioned)", q.where, q.uid, influxUID, prometheusUID)
				}
				for _, name := range variablesIn(q.text + " " + q.alias) {
					if !defined[name] && !grafanaBuiltin(name) {
						t.Errorf("%s: $%s is neither a variable of the dashboard nor one of Grafana's", q.where, name)
					}
				}
			}
		})
	}
}

var varRef = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// variablesIn returns the $names in s ($tag_… aliases excepted: they name
// tags, checked in influxql_test.go).
func variablesIn(s string) []string {
	var out []string
	for _, m := range varRef.FindAllStringSubmatch(s, -1) {
		name := m[1] + m[2]
		if !strings.HasPrefix(name, "tag_") {
			out = append(out, name)
		}
	}
	return out
}

func grafanaBuiltin(name string) bool {
	switch name {
	case "timeFilter", "__interval", "__interval_ms", "__rate_interval", "__range", "__range_s", "__from", "__to":
		return true
	}
	return false
}

// TestProvisioning: the data sources the dashboards use are provisioned
// under the uids they name, and the dashboards' provider reads the folder
// docker-compose.yml mounts them on.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
			JSONData                     map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	decodeYAML(t, filepath.Join(provisioning, "datasources", "hazardwatch.yaml"), &ds)
	got := map[string]string{}
	for _, d := range ds.Datasources {
		got[d.UID] = d.Type
		if d.Access != "proxy" {
			t.Errorf("data source %s: access %q, want proxy (the browser cannot reach the compose network)", d.UID, d.Access)
		}
	}
	if got[influxUID] != "influxdb" || got[prometheusUID] != "prometheus" || len(got) != 2 {
		t.Errorf("data sources %v, want %s: influxdb and %s: prometheus", got, influxUID, prometheusUID)
	}
	for _, d := range ds.Datasources {
		if d.UID == influxUID && (d.JSONData["dbName"] != "hazardwatch" || d.JSONData["version"] != "InfluxQL") {
			t.Errorf("InfluxDB data source: jsonData %v, want dbName hazardwatch (the writer's database), version InfluxQL", d.JSONData)
		}
	}

	var prov struct {
		Providers []struct {
			Name, Type string
			Options    struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeYAML(t, filepath.Join(provisioning, "dashboards", "hazardwatch.yaml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("providers %+v, want one of type file", prov.Providers)
	}
	compose, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := prov.Providers[0].Options.Path
	mount := "./dashboards/grafana/dashboards:" + dir + ":ro"
	if !bytes.Contains(compose, []byte(mount)) {
		t.Errorf("docker-compose.yml does not mount %q: Grafana would find no dashboards", mount)
	}
	// Grafana's home page is the park overview, by its path in the mount.
	home := regexp.MustCompile(`GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: (\S+)`).FindSubmatch(compose)
	if home == nil {
		t.Fatal("docker-compose.yml sets no home dashboard")
	}
	rel, ok := strings.CutPrefix(string(home[1]), dir+"/")
	if _, err := os.Stat(filepath.Join(dashboardDir, rel)); !ok || err != nil {
		t.Errorf("home dashboard %s: not a dashboard of %s (%v)", home[1], dashboardDir, err)
	}
}

func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: v holds only what the test looks at of Grafana's format.
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestHazardSourceThresholds: the hazard source dashboard draws each demo
// sensor's HH, H, L and LL limits as thresholds of its reading panel, and
// its unit, exactly as the demo's rule files give them (compiled, gas
// limits resolved to the sensor's unit). Run with -update after changing
// the demo's rules to rewrite the panel's overrides.
func TestHazardSourceThresholds(t *testing.T) {
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dashboardDir, hazardSourceDB)
	var d dashboard
	for _, x := range loadDashboards(t) {
		if x.file == hazardSourceDB {
			d = x
		}
	}
	var panel map[string]any
	for _, p := range d.panels() {
		if str(p, "repeat") == "sensor" && str(p, "type") == "timeseries" {
			panel = p
		}
	}
	if panel == nil {
		t.Fatalf("%s: no time series panel repeated per $sensor", path)
	}
	fc := panel["fieldConfig"].(map[string]any)
	fc["overrides"] = thresholdOverrides(cfg.Plant, cfg.Rules)

	// The whole file is compared, so that -update can rewrite it; the
	// encoding is json.MarshalIndent's with HTML characters left as they
	// are (queries have < and >).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d.m); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, path, buf.String())

	// And what the overrides say, in a person's terms: the sensor with the
	// first alarm of the demo's scenario, chlorine in ppm, H 0.339 and
	// HH 0.678 (100 and 200 %OEL of a MAC of 1 mg/m³).
	var unit string
	var lines []float64
	for _, o := range fc["overrides"].([]any) {
		om := o.(map[string]any)
		if om["matcher"].(map[string]any)["options"] != "e01-GT-101" {
			continue
		}
		for _, pr := range om["properties"].([]any) {
			pm := pr.(map[string]any)
			switch pm["id"] {
			case "unit":
				unit = pm["value"].(string)
			case "thresholds":
				for _, st := range pm["value"].(map[string]any)["steps"].([]any) {
					if v, ok := st.(map[string]any)["value"].(float64); ok {
						lines = append(lines, v)
					}
				}
			}
		}
	}
	if unit != "suffix: ppm" || len(lines) != 2 || math.Abs(lines[0]-0.339) > 0.001 || math.Abs(lines[1]-0.678) > 0.001 {
		t.Errorf("e01-GT-101: unit %q, threshold lines %v; want ppm, about 0.339 and 0.678", unit, lines)
	}
}

// thresholdOverrides returns one field override per sensor of a hazard
// source, matched by name (the reading panel's alias is the sensor id):
// its unit and, when it has limits, thresholds whose steps colour the
// bands between them: red beyond HH and LL, orange beyond H and L, green
// inside. The time series panel draws each step as a dashed line.
func thresholdOverrides(p *model.Plant, rules []model.SensorRules) []any {
	colourAbove := map[model.LimitKind]string{model.HH: "red", model.H: "orange", model.L: "green", model.LL: "orange"}
	var out []any
	ids := make([]int, 0, len(p.Sensors))
	for i := range p.Sensors {
		if p.Sensors[i].HazardSource >= 0 {
			ids = append(ids, i)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return p.Sensors[ids[a]].ID < p.Sensors[ids[b]].ID })
	for _, i := range ids {
		s, r := &p.Sensors[i], &rules[i]
		props := []any{map[string]any{"id": "unit", "value": "suffix: " + s.Unit}}
		type step struct {
			kind  model.LimitKind
			value float64
		}
		var steps []step
		for k := model.LimitKind(0); k < model.NumLimits; k++ {
			if r.Limits[k].Set && !math.IsNaN(r.Limits[k].Value) {
				steps = append(steps, step{k, r.Limits[k].Value})
			}
		}
		if len(steps) > 0 {
			slices.SortStableFunc(steps, func(a, b step) int { return cmp.Compare(a.value, b.value) })
			base := "green"
			switch {
			case r.Limits[model.LL].Set:
				base = "red"
			case r.Limits[model.L].Set:
				base = "orange"
			}
			list := []any{map[string]any{"color": base, "value": nil}}
			for _, st := range steps {
				c := colourAbove[st.kind]
				if st.kind == model.LL && !r.Limits[model.L].Set {
					c = "green"
				}
				if st.kind == model.H && !r.Limits[model.HH].Set {
					c = "orange"
				}
				list = append(list, map[string]any{"color": c, "value": st.value})
			}
			props = append(props, map[string]any{"id": "thresholds", "value": map[string]any{"mode": "absolute", "steps": list}})
		}
		out = append(out, map[string]any{"matcher": map[string]any{"id": "byName", "options": s.ID}, "properties": props})
	}
	return out
}
