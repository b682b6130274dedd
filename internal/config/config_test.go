package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
)

const testdata = "../../testdata/config"

func reference(t testing.TB) *chem.Reference {
	t.Helper()
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		t.Fatalf("reference tables: %v", err)
	}
	return ref
}

// caseFiles reads the base plant and the case's files; a case file replaces
// the base file of the same name. Names are as a user would see them.
func caseFiles(t *testing.T, dir string) []config.File {
	t.Helper()
	byName := map[string]config.File{}
	for _, d := range []string{filepath.Join(testdata, "base"), dir} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(testdata, filepath.Join(d, e.Name()))
			byName[e.Name()] = config.File{Name: filepath.ToSlash(rel), Data: data}
		}
	}
	var files []config.File
	for _, f := range byName {
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b config.File) int { return strings.Compare(a.Name, b.Name) })
	return files
}

func TestBaseLoads(t *testing.T) {
	cfg, err := config.Load(caseFiles(t, filepath.Join(testdata, "base")), reference(t))
	if err != nil {
		t.Fatalf("base config: %v", err)
	}
	p := cfg.Plant
	if got := len(p.Sensors); got != 3 {
		t.Fatalf("sensors = %d, want 3", got)
	}
	cl, _ := p.SensorIndex("e1-CL1")
	r := cfg.Rules[cl]
	// Chlorine: MAC 1 mg/m³, 0.3391 ppm per mg/m³ at 20 °C.
	if h := r.Limits[model.H]; !h.Set || !near(h.Value, 0.3391) || h.Level != model.L1 {
		t.Errorf("chlorine H = %+v, want 0.3391 ppm at L1", h)
	}
	if hh := r.Limits[model.HH]; !near(hh.Value, 0.6782) || hh.Level != model.L2 {
		t.Errorf("chlorine HH = %+v, want 0.6782 ppm at L2", hh)
	}
	if !r.Latch || r.SilentPeriods != 5 {
		t.Errorf("gas defaults: latch %v silent %d, want latch and 5", r.Latch, r.SilentPeriods)
	}
	lt, _ := p.SensorIndex("e1-LT1")
	if r := cfg.Rules[lt]; r.Latch || r.Deadband != 0.05 || r.Limits[model.LL].Value != 0.5 || r.Limits[model.LL].Level != model.L2 {
		t.Errorf("level rules = %+v", r)
	}
	ch4, _ := p.SensorIndex("e1-CH4")
	if r := cfg.Rules[ch4]; r.Limits[model.H].Value != 25 || r.OnDelayMS != 2000 {
		t.Errorf("methane rules = %+v", r)
	}
	if g := p.Sensors[ch4].Gas; g.LELPctVol != 4.4 || g.LELBasis != "IEC 60079-20-1" {
		t.Errorf("methane gas = %+v", g)
	}
	// 50 t of chlorine (Q 5 t, β 4) with 40 people (α 1.2): R = 1.2·4·10 = 48.
	h := p.HazardSources[0]
	if !near(h.R, 48) || h.Level != 3 || h.LevelDeclared {
		t.Errorf("hazard source R %.2f level %d declared %v, want 48, 3, computed", h.R, h.Level, h.LevelDeclared)
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-3 && d > -1e-3 }

// TestThreeMistakesTwoFiles is the acceptance case: an unknown field, a
// wrong type and a reference to a missing gateway, spread over two files,
// are all reported with file, line, column and field.
func TestThreeMistakesTwoFiles(t *testing.T) {
	_, err := config.Load(caseFiles(t, filepath.Join(testdata, "broken", "three-mistakes-two-files")), reference(t))
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want config.Errors", err)
	}
	want := []string{
		"broken/three-mistakes-two-files/plant.yaml:7:55: enterprises[0].colour: unknown field (known: id, name, park, status, idle_power_kw, duty, maintenance)",
		`broken/three-mistakes-two-files/plant.yaml:13:18: hazard_sources[0].people_500m: must be a whole number, not "forty"`,
		`broken/three-mistakes-two-files/sensors.yaml:8:14: sensors[0].gateway: no gateway "gw9" (did you mean gw1?)`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBroken compares each broken config's error list with its golden file.
func TestBroken(t *testing.T) {
	ref := reference(t)
	cases, err := filepath.Glob(filepath.Join(testdata, "broken", "*"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, err := config.Load(caseFiles(t, dir), ref)
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("err = %v, want errors", err)
			}
			for _, e := range errs {
				if e.File == "" || e.Line < 1 || e.Col < 1 {
					t.Errorf("error without a place: %q", e.Error())
				}
			}
			got := errs.Error() + "\n"
			golden.Check(t, filepath.Join(dir, "errors.golden"), got)
		})
	}
}

// TestEveryConfigLoads loads every folder of YAML files under configs/ with
// the strict loader, and the reference tables with theirs. configs/compose
// holds the docker-compose deployment's files for Mosquitto and
// Prometheus, not plant files: configs/compose_test.go parses those.
func TestEveryConfigLoads(t *testing.T) {
	ref := reference(t)
	root := "../../configs"
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(root, "compose") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			rel, _ := filepath.Rel(root, p)
			dirs[filepath.Join(root, strings.Split(filepath.ToSlash(rel), "/")[0])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no config folders found")
	}
	for dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if _, err := config.LoadDir(dir, ref); err != nil {
				t.Errorf("%s:\n%v", dir, err)
			}
		})
	}
}

func TestDecodeFile(t *testing.T) {
	type step struct {
		Sensor string  `yaml:"sensor" hw:"required"`
		Value  float64 `yaml:"value"`
	}
	type doc struct {
		Kind  string `yaml:"kind" hw:"required"`
		Steps []step `yaml:"steps"`
	}
	var d doc
	_, err := config.DecodeFile(config.File{Name: "s.yaml", Data: []byte("kind: scenario\nsteps:\n  - {sensor: a, value: x}\n  - {value: 2, colour: red}\n")}, "scenario", &d)
	want := "s.yaml:3:24: steps[0].value: must be a number, not \"x\"\n" +
		"s.yaml:4:5: steps[1].sensor: required\n" +
		"s.yaml:4:16: steps[1].colour: unknown field (known: sensor, value)"
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
	pos, err := config.DecodeFile(config.File{Name: "s.yaml", Data: []byte("kind: scenario\nsteps:\n  - {sensor: a, value: 1.5}\n")}, "scenario", &d)
	if err != nil || len(d.Steps) != 1 || d.Steps[0].Value != 1.5 {
		t.Fatalf("decode: %v, %+v", err, d)
	}
	if p := pos.Of(&d.Steps[0].Sensor); p.Line != 3 || p.Col != 14 || p.Path != "steps[0].sensor" {
		t.Errorf("position of steps[0].sensor = %+v", p)
	}
	if _, err := config.DecodeFile(config.File{Name: "p.yaml", Data: []byte("kind: plant\n")}, "scenario", &d); err == nil {
		t.Error("a plant file decoded as a scenario")
	}
}

// TestFaultBits: a fault bit compiles to a one-bit register on the
// sensor's device; the detectors of one controller share its status word,
// beside a valve's value bit, and a coil or discrete input needs no bit.
func TestFaultBits(t *testing.T) {
	extra := config.File{Name: "faults.yaml", Data: []byte(`kind: plant
sensors:
  - {id: e1-CH4-2, name: 甲烷2, kind: gas_combustible, unit: "%LEL", hazard_source: e1-hs1, gateway: gw1, device: plc1,
     register: {area: input, address: 2}, fault: {area: input, address: 10, bit: 0}, range: {min: 0, max: 100},
     gas: {cas: 74-82-8, lel_basis: IEC 60079-20-1}}
  - {id: e1-CH4-3, name: 甲烷3, kind: gas_combustible, unit: "%LEL", hazard_source: e1-hs1, gateway: gw1, device: plc1,
     register: {area: input, address: 3}, fault: {area: input, address: 10, bit: 15}, range: {min: 0, max: 100},
     gas: {cas: 74-82-8, lel_basis: IEC 60079-20-1}}
  - {id: e1-XV1, name: 阀, kind: valve, unit: state, hazard_source: e1-hs1, gateway: gw1, device: plc1,
     register: {area: input, address: 10, bit: 7}, fault: {area: discrete_input, address: 4}, range: {min: 0, max: 1}}
`)}
	cfg, err := config.Load(append(caseFiles(t, filepath.Join(testdata, "base")), extra), reference(t))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	for _, tt := range []struct {
		sensor string
		want   *model.Register
	}{
		{"e1-CH4", nil},
		{"e1-CH4-2", &model.Register{Area: model.Input, Address: 10, Type: model.Bit, Bit: 0, Scale: 1}},
		{"e1-CH4-3", &model.Register{Area: model.Input, Address: 10, Type: model.Bit, Bit: 15, Scale: 1}},
		{"e1-XV1", &model.Register{Area: model.DiscreteInput, Address: 4, Type: model.Bit, Bit: -1, Scale: 1}},
	} {
		i, _ := p.SensorIndex(tt.sensor)
		if got := p.Sensors[i].Fault; (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("%s: fault %+v, want %+v", tt.sensor, got, tt.want)
		}
	}
	// The demo's gas-detection controllers: one status word after the
	// values, one bit per detector.
	demo, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	i, _ := demo.Plant.SensorIndex("e02-GT-402")
	if f := demo.Plant.Sensors[i].Fault; f == nil || f.Area != model.Input || f.Address != 7 || f.Bit != 6 {
		t.Errorf("e02-GT-402: fault %+v, want input 7 bit 6", f)
	}
}

// TestTrendRules: rate, prediction, frozen, out_of_range and bad_quality
// merge like limits: built-in defaults, then the kind's entry, then the
// sensor's, field by field; a section turns its rule on with its defaults,
// `~` removes an inherited one.
func TestTrendRules(t *testing.T) {
	rules := config.File{Name: "rules.yaml", Data: []byte(`kind: rules
kinds:
  gas_combustible:
    limits: {H: 25%LEL, HH: 50%LEL}
    rate: {rise: 5%LEL, window: 30s, deadband: 1}
    frozen: {duration: 2m, epsilon: 0.1}
    bad_quality: 5
  gas_toxic:
    limits: {H: 100%OEL}
    prediction: {}
    out_of_range: false
sensors:
  e1-CH4:
    rate: {fall: 10, on_delay: 2s}
    frozen: ~
  e1-CL1:
    prediction: {horizon: 5m}
  e1-LT1:
    limits: {H: 9}
    prediction: {window: 30}
    bad_quality: 0
`)}
	base := caseFiles(t, filepath.Join(testdata, "base"))
	var files []config.File
	for _, f := range base {
		if !strings.HasSuffix(f.Name, "rules.yaml") {
			files = append(files, f)
		}
	}
	cfg, err := config.Load(append(files, rules), reference(t))
	if err != nil {
		t.Fatal(err)
	}
	rule := func(id string) model.SensorRules {
		i, ok := cfg.Plant.SensorIndex(id)
		if !ok {
			t.Fatalf("no sensor %s", id)
		}
		return cfg.Rules[i]
	}
	ch4 := rule("e1-CH4")
	if want := (model.RateRule{Rise: 5, Fall: 10, WindowMS: 30_000, Deadband: 1, OnDelayMS: 2000}); ch4.Rate != want {
		t.Errorf("methane rate %+v, want %+v", ch4.Rate, want)
	}
	if ch4.Frozen.On() || ch4.Prediction.On() || ch4.BadQuality != 5 || !ch4.OutOfRange {
		t.Errorf("methane: frozen %+v prediction %+v bad_quality %d out_of_range %v; want off, off, 5, true",
			ch4.Frozen, ch4.Prediction, ch4.BadQuality, ch4.OutOfRange)
	}
	cl := rule("e1-CL1")
	if want := (model.PredictionRule{Window: 60, HorizonMS: 300_000}); cl.Prediction != want || cl.OutOfRange || cl.Rate.On() {
		t.Errorf("chlorine: prediction %+v out_of_range %v rate %+v; want %+v, false, off", cl.Prediction, cl.OutOfRange, cl.Rate, want)
	}
	lt := rule("e1-LT1")
	if want := (model.PredictionRule{Window: 30, HorizonMS: 600_000}); lt.Prediction != want || lt.BadQuality != 0 || !lt.OutOfRange || lt.Frozen.On() {
		t.Errorf("level: %+v", lt)
	}
	// A prediction needs a limit to reach: a warning, not an error.
	bare := config.File{Name: "rules.yaml", Data: []byte("kind: rules\nsensors:\n  e1-LT1:\n    prediction: {}\n")}
	cfg, err = config.Load(append(files, bare), reference(t))
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, w := range cfg.Warnings {
		warned = warned || w.Error() == "rules.yaml:4:17: sensors.e1-LT1.prediction: sensor e1-LT1 has no limit (HH, H, L, LL) for its prediction to reach"
	}
	if !warned {
		t.Errorf("no warning about a prediction without limits: %v", cfg.Warnings)
	}
	// The base rules set none of them: the defaults.
	cfg, err = config.Load(base, reference(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range cfg.Rules {
		if r.Rate.On() || r.Prediction.On() || r.Frozen.On() || !r.OutOfRange || r.BadQuality != 3 {
			t.Errorf("%s: defaults %+v, want rate, prediction and frozen off, out_of_range on, bad_quality 3", cfg.Plant.Sensors[i].ID, r)
		}
	}
}

// TestVoting: a voting group's members carry it, in the file's order, and a
// sensor in no group carries none; a member without an H or HH limit is a
// warning.
func TestVoting(t *testing.T) {
	plant, err := os.ReadFile(filepath.Join(testdata, "broken", "voting", "plant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules := []byte(`kind: rules
kinds:
  gas_combustible:
    limits: {H: 25%LEL, HH: 50%LEL}
sensors:
  e1-CH4-3:
    limits: {H: ~, HH: ~}
voting:
  area1:
    sensors: [e1-CH4-2, e1-CH4, e1-CH4-3]
    k: 2
`)
	cfg, err := config.Load([]config.File{{Name: "plant.yaml", Data: plant}, {Name: "rules.yaml", Data: rules}}, reference(t))
	if err != nil {
		t.Fatal(err)
	}
	idx := func(id string) int32 {
		i, ok := cfg.Plant.SensorIndex(id)
		if !ok {
			t.Fatalf("no sensor %s", id)
		}
		return i
	}
	want := []int32{idx("e1-CH4-2"), idx("e1-CH4"), idx("e1-CH4-3")}
	for _, i := range want {
		v := cfg.Rules[i].Vote
		if v.Name != "area1" || v.K != 2 || !slices.Equal(v.Members, want) {
			t.Errorf("%s: vote %+v, want area1, k 2, members %v", cfg.Plant.Sensors[i].ID, v, want)
		}
	}
	for _, id := range []string{"e1-LT1", "e1-CL1"} {
		if v := cfg.Rules[idx(id)].Vote; v.On() {
			t.Errorf("%s: vote %+v, want none", id, v)
		}
	}
	warned := false
	for _, w := range cfg.Warnings {
		warned = warned || w.Error() == "rules.yaml:10:33: voting.area1.sensors[2]: sensor e1-CH4-3 has no H or HH limit: it can never vote"
	}
	if !warned {
		t.Errorf("no warning about a member without a high limit: %v", cfg.Warnings)
	}
}

// TestAlarmsSection reads an alarms section over the defaults: what it
// gives replaces the default field by field, the rest stays.
func TestAlarmsSection(t *testing.T) {
	files := caseFiles(t, filepath.Join(testdata, "base"))
	files = append(files, config.File{Name: "alarms.yaml", Data: []byte(`kind: rules
alarms:
  max_shelve: 2h
  chattering: {count: 4}
  rate_limit: {enterprise: {count: 0}}
  escalation:
    priority_1: {park: 3m, county: 9m}
    priority_4: {feedback: 0s}
`)})
	cfg, err := config.Load(files, reference(t))
	if err != nil {
		t.Fatal(err)
	}
	want := model.DefaultAlarmRules()
	want.MaxShelve = 2 * time.Hour
	want.Chatter.Count = 4
	want.RateLimit.Enterprise.Count = 0
	want.Escalation[1].Park, want.Escalation[1].County = 3*time.Minute, 9*time.Minute
	want.Escalation[4].Feedback = 0
	if cfg.Alarms != want {
		t.Errorf("alarms:\n got %+v\nwant %+v", cfg.Alarms, want)
	}
	// Without a section: the defaults.
	cfg, err = config.Load(caseFiles(t, filepath.Join(testdata, "base")), reference(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Alarms != model.DefaultAlarmRules() {
		t.Errorf("no section: %+v, want the defaults", cfg.Alarms)
	}
}

// TestGatewayRules: every gateway is checked for silence after 5 poll
// periods unless a rules file's gateways entry says otherwise.
func TestGatewayRules(t *testing.T) {
	plant, err := os.ReadFile(filepath.Join(testdata, "broken", "voting", "plant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]config.File{{Name: "plant.yaml", Data: plant}}, reference(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Gateways) != len(cfg.Plant.Gateways) || cfg.Gateways[0].SilentPeriods != 5 {
		t.Errorf("no gateways entry: %+v, want one per gateway with silent_periods 5", cfg.Gateways)
	}
	rules := []byte("kind: rules\ngateways:\n  gw1: {silent_periods: 12}\n")
	cfg, err = config.Load([]config.File{{Name: "plant.yaml", Data: plant}, {Name: "rules.yaml", Data: rules}}, reference(t))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := cfg.Plant.GatewayIndex("gw1"); !ok || cfg.Gateways[g].SilentPeriods != 12 {
		t.Errorf("gw1: %+v, want silent_periods 12", cfg.Gateways)
	}
}
