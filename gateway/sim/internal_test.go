package sim

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"hazardwatch/configs"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

func demoConfig(t testing.TB) (*config.Config, *Scenario) {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := LoadScenario(configs.Demo(), "scenario.yaml", "configs/demo", cfg.Plant)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, sc
}

// TestNoiseInsideDeadband: noise alone raises nothing. For every sensor
// with rules, the noise amplitude is below the rule's deadband, and outside
// its episodes (and those of the sensor it follows) the value stays inside
// every limit by at least the deadband, over two whole cycles.
func TestNoiseInsideDeadband(t *testing.T) {
	cfg, sc := demoConfig(t)
	p := cfg.Plant
	for _, seed := range []int64{1, 7, 42} {
		s, err := New(p, sc, Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Sensors {
			r := cfg.Rules[i]
			plan := &s.plans[i]
			id := p.Sensors[i].ID
			if r.Deadband > 0 && plan.noise >= r.Deadband {
				t.Errorf("%s: noise ±%g is not inside the deadband %g", id, plan.noise, r.Deadband)
			}
			for x := 0.0; x < 2*sc.cycle; x += 0.25 {
				ph := sc.phase(x)
				if plan.active(ph) != nil || (plan.follows >= 0 && s.plans[plan.follows].active(ph) != nil) {
					continue
				}
				v := s.value(int32(i), x)
				if math.Abs(v-plan.baseline) > plan.noise+1e-9 && plan.follows < 0 && plan.integrates < 0 {
					t.Fatalf("%s at %gs: %g is further than the noise %g from the baseline %g", id, x, v, plan.noise, plan.baseline)
				}
				for k, l := range r.Limits {
					if !l.Set {
						continue
					}
					high := model.LimitKind(k).High()
					if (high && v >= l.Value-r.Deadband) || (!high && v <= l.Value+r.Deadband) {
						t.Fatalf("seed %d: %s at %gs: quiet value %g is within the deadband %g of %s %g", seed, id, x, v, r.Deadband, model.LimitKind(k), l.Value)
					}
				}
			}
		}
	}
}

// TestRampArea checks the closed-form integral against a fine sum.
func TestRampArea(t *testing.T) {
	for _, e := range []episode{
		{rise: 60, hold: 200, fall: 60},
		{rise: 4, hold: 0, fall: 20},
		{rise: 0, hold: 10, fall: 0},
		{rise: 0, hold: 0, fall: 7},
	} {
		const dx = 0.001
		sum := 0.0
		for x := 0.0; x < 400; x += dx {
			sum += e.rampFrac(x+dx/2) * dx
			if math.Abs(x-math.Round(x)) < dx/2 && int(math.Round(x))%50 == 0 {
				if got := e.rampArea(x); math.Abs(got-sum) > 1e-3 {
					t.Errorf("%+v: area(%g) = %g, sum %g", e, x, got, sum)
				}
			}
		}
	}
}

// TestNoiseBounds: the noise stays in [-1, 1], is continuous, and moves.
func TestNoiseBounds(t *testing.T) {
	prev := noise(3, 5, 0)
	lo, hi := prev, prev
	for x := 0.01; x < 1000; x += 0.01 {
		n := noise(3, 5, x)
		if n < -1 || n > 1 {
			t.Fatalf("noise(%g) = %g", x, n)
		}
		if math.Abs(n-prev) > 0.02 {
			t.Fatalf("noise jumps by %g at %g", n-prev, x)
		}
		prev = n
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo > -0.8 || hi < 0.8 {
		t.Errorf("noise spans only %g..%g", lo, hi)
	}
}

// TestRequestAllocs: a poll costs the slice the library needs and nothing
// else (no per-sensor allocation, no map, no boxing).
func TestRequestAllocs(t *testing.T) {
	cfg, sc := demoConfig(t)
	s, err := New(cfg.Plant, sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plc1, gds1 := s.byKey["gw-e01-1/plc1"], s.byKey["gw-e02-1/gds1"]
	plc := s.byKey["gw-e02-1/plc1"]
	cases := map[string]func(){
		"holding 0-17 (floats and a status word)": func() { _, _ = plc1.readRegs(model.Holding, 0, 18) },
		"input 0-7 (gas detectors, fault word)":   func() { _, _ = gds1.readRegs(model.Input, 0, 8) },
		"coils 0-1":                               func() { _, _ = plc.readBits(0, 0, 2) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(200, f); n > 1 {
			t.Errorf("%s: %v allocations per request, want at most 1", name, n)
		}
	}
	if n := testing.AllocsPerRun(200, func() { s.Value("e03-PM-001-E") }); n != 0 {
		t.Errorf("Value: %v allocations", n)
	}
}

// BenchmarkPoll is one gateway poll of the busiest device.
func BenchmarkPoll(b *testing.B) {
	cfg, sc := demoConfig(b)
	s, err := New(cfg.Plant, sc, Options{})
	if err != nil {
		b.Fatal(err)
	}
	d := s.byKey["gw-e01-1/plc1"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.readRegs(model.Holding, 0, 18); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzLoadScenario: any bytes give a scenario or errors with places, never
// a panic; a scenario that loads gives finite values at any time.
func FuzzLoadScenario(f *testing.F) {
	for _, pattern := range []string{"../../configs/demo/scenario.yaml", "testdata/broken/*.yaml"} {
		paths, _ := filepath.Glob(pattern)
		for _, path := range paths {
			if data, err := os.ReadFile(path); err == nil {
				f.Add(data)
			}
		}
	}
	cfg, _ := demoConfig(f)
	p := cfg.Plant
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := LoadScenario(fstest.MapFS{"fuzz.yaml": {Data: data}}, "fuzz.yaml", "", p)
		var errs config.Errors
		switch {
		case err == nil:
		case errors.As(err, &errs):
			if len(errs) == 0 {
				t.Fatal("empty error list")
			}
			for _, e := range errs {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Col < 1 {
					t.Fatalf("error without a place: %q", e.Error())
				}
			}
			return
		default:
			t.Fatalf("error of type %T: %v", err, err)
		}
		if sc.cycle <= 0 {
			t.Fatalf("loaded with cycle %g", sc.cycle)
		}
		s, err := New(p, sc, Options{Clock: func() time.Time { return time.Unix(0, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []float64{-3, 0, 1.5, sc.cycle / 2, sc.cycle - 0.001, 3*sc.cycle + 7} {
			for i := range p.Sensors {
				if v := s.value(int32(i), x); math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%s at %gs = %v", p.Sensors[i].ID, x, v)
				}
			}
		}
	})
}

// TestStuckHolds: a hold without a value freezes what the sensor showed
// when it began, even when stuck episodes follow each other round the
// whole cycle (each starts where another ends, and the cycle wraps).
func TestStuckHolds(t *testing.T) {
	cfg, _ := demoConfig(t)
	data := []byte("kind: scenario\ncycle: 3s\nepisodes:\n" +
		"  - {type: hold, sensor: e02-GT-201, start: 0s, duration: 1s}\n" +
		"  - {type: hold, sensor: e02-GT-201, start: 1s, duration: 1s}\n" +
		"  - {type: hold, sensor: e02-GT-201, start: 2s, duration: 1s}\n")
	sc, err := LoadScenario(fstest.MapFS{"f.yaml": {Data: data}}, "f.yaml", "", cfg.Plant)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg.Plant, sc, Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	i, _ := cfg.Plant.SensorIndex("e02-GT-201")
	for _, base := range []float64{0, 3, 1e6, 1e9 + 0.3} {
		for k := 0.0; k < 3; k++ {
			first := s.value(i, base+k+0.001)
			for _, x := range []float64{0.25, 0.5, 0.999} {
				if v := s.value(i, base+k+x); v != first {
					t.Errorf("stuck episode at %gs: %g, then %g at +%g", base+k, first, v, x)
				}
			}
			// The frozen value is the noisy value at the episode's start.
			want := math.Max(0, s.plans[i].baseline+s.plans[i].noise*noise(3, i, base+k))
			if math.Abs(first-want) > 1e-9 {
				t.Errorf("stuck at %g from %gs, want %g", first, base+k, want)
			}
		}
	}
}
