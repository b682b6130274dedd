package rules

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
)

// A rule case is a folder under testdata/cases:
//
//	rules.txt     the sensors and their rules, one setting a line:
//	                gateway NAME [poll=1s] [silent_periods=5]
//	                                          a gateway whose silence is checked
//	                sensor NAME [poll=1s] [gateway=G]
//	                                          starts a sensor (default: s1, 1 s)
//	                                          on its own device of G, or alone
//	                                          on a gateway of its own, gw-NAME,
//	                                          which is not checked
//	                H|HH|L|LL VALUE [L1|L2]   a limit, with an optional level
//	                deadband V | on_delay D | off_delay D | silent_periods N
//	                range MIN MAX             the instrument's range (default: none)
//	                rate [rise=V] [fall=V] [window=D] [deadband=V] [on_delay=D]
//	                prediction [window=N] [horizon=D]
//	                frozen duration=D [epsilon=V]
//	                out_of_range on|off       (default on)
//	                bad_quality N             (default 3; 0 off)
//	                stop_order [baseline=KW] [margin=PCT] [delay=D] [learn=D]
//	                                          (baseline 0: learned; 20, 5m, 1h)
//	                sis_bypass [level=N] [on_delay=D]   (level 2, 5s)
//	              and, anywhere (the sensors may come later):
//	                group NAME k=K sensors=A,B,C   a voting group; A carries its alarm
//	readings.txt  what happens, in order, one line each:
//	                sensor NAME               following readings are NAME's
//	                TS VALUE [good|uncertain|bad] [r=REASON] [late]   VALUE "-" for none
//	                tick TS                   Tick at TS (Unix ms)
//	want.txt      the transitions, one a line (golden; -update rewrites it),
//	              with eta= (Unix ms) and reason= when a transition has them
//
// Defaults are the rule files' (docs/CONFIG.md): rate window 1m, prediction
// window 60 and horizon 10m, out_of_range on, bad_quality 3. Lines starting
// with # are comments; rules.txt's say what the case checks.
type ruleCase struct {
	plant    *model.Plant
	rules    []model.SensorRules
	gateways []model.GatewayRules
	byName   map[string]int32
	readings []caseStep
}

type caseStep struct {
	tick    bool
	reading model.Reading
	line    int
}

func TestCases(t *testing.T) {
	dirs, err := filepath.Glob("testdata/cases/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no rule cases (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := loadCase(t, dir)
			got := runCase(c)
			golden.Check(t, filepath.Join(dir, "want.txt"), got)
		})
	}
}

func runCase(c *ruleCase) string {
	return play(New(c.plant, c.rules, c.gateways), c.plant, c.readings)
}

// play runs the steps through e and writes every transition, one a line.
func play(e *Engine, p *model.Plant, steps []caseStep) string {
	var b strings.Builder
	out := make([]model.Transition, 0, 8)
	for _, s := range steps {
		if s.tick {
			out = e.Tick(time.UnixMilli(s.reading.TS), out[:0])
		} else {
			out = e.Eval(s.reading, out[:0])
		}
		for _, tr := range out {
			b.WriteString(formatTransition(p, tr))
			b.WriteByte('\n')
		}
	}
	if n := e.OutOfOrder(); n > 0 {
		fmt.Fprintf(&b, "# out of order: %d\n", n)
	}
	return b.String()
}

func formatTransition(p *model.Plant, t model.Transition) string {
	state := "return"
	if t.Active {
		state = "active"
	}
	lvl := t.Level.String()
	if lvl == "" {
		lvl = "-"
	}
	who := p.Gateways[t.Gateway].ID // a gateway's condition
	if t.Sensor >= 0 {
		who = p.Sensors[t.Sensor].ID
	}
	s := fmt.Sprintf("%d %s %s %s %s %s value=%.6g limit=%.6g",
		t.TS, who, t.Rule, t.Class, lvl, state, t.Value, t.Limit)
	if t.ETA != 0 {
		s += fmt.Sprintf(" eta=%d", t.ETA)
	}
	if t.Reason != model.ReasonNone {
		s += " reason=" + t.Reason.String()
	}
	if t.Late {
		s += " late"
	}
	return s
}

func loadCase(t *testing.T, dir string) *ruleCase {
	t.Helper()
	c := &ruleCase{plant: &model.Plant{}, byName: map[string]int32{}}
	type group struct {
		line    int
		name    string
		k       int
		sensors []string
	}
	var groups []group
	gateways := map[string]int32{}
	addGateway := func(name string, pollMS int64, rules model.GatewayRules) int32 {
		g := int32(len(c.plant.Gateways))
		gateways[name] = g
		c.plant.Gateways = append(c.plant.Gateways, model.Gateway{ID: name, PollPeriodMS: pollMS})
		c.gateways = append(c.gateways, rules)
		return g
	}
	addSensor := func(name string, pollMS int64, gateway string) {
		g, ok := gateways[gateway]
		if !ok {
			g = addGateway("gw-"+name, pollMS, model.GatewayRules{})
		}
		gw := &c.plant.Gateways[g]
		c.byName[name] = int32(len(c.plant.Sensors))
		gw.Devices = append(gw.Devices, model.Device{ID: "dev-" + name, PollPeriodMS: pollMS})
		c.plant.Sensors = append(c.plant.Sensors, model.Sensor{ID: name, Gateway: g, Device: int32(len(gw.Devices) - 1), HazardSource: -1})
		c.rules = append(c.rules, model.SensorRules{SilentPeriods: 5, OutOfRange: true, BadQuality: 3})
	}
	eachLine(t, filepath.Join(dir, "rules.txt"), func(n int, f []string) {
		bad := func(format string, args ...any) {
			t.Fatalf("%s:%d: %s", filepath.Join(dir, "rules.txt"), n, fmt.Sprintf(format, args...))
		}
		if f[0] == "sensor" || f[0] == "gateway" {
			if len(f) < 2 {
				bad("%s needs a name", f[0])
			}
			poll, gateway, periods := int64(1000), "", 5
			for _, opt := range f[2:] {
				switch k, v, _ := strings.Cut(opt, "="); {
				case k == "poll":
					d, err := time.ParseDuration(v)
					if err != nil {
						bad("want poll=DURATION, got %q", opt)
					}
					poll = d.Milliseconds()
				case k == "gateway" && f[0] == "sensor":
					if _, ok := gateways[v]; !ok {
						bad("no gateway %q before this line", v)
					}
					gateway = v
				case k == "silent_periods" && f[0] == "gateway":
					periods = int(parseInt(t, v))
				default:
					bad("unknown option %q", opt)
				}
			}
			if f[0] == "gateway" {
				addGateway(f[1], poll, model.GatewayRules{SilentPeriods: periods})
			} else {
				addSensor(f[1], poll, gateway)
			}
			return
		}
		if f[0] == "group" {
			g := group{line: n}
			for _, o := range f[1:] {
				switch k, v, _ := strings.Cut(o, "="); k {
				case "k":
					g.k = int(parseInt(t, v))
				case "sensors":
					g.sensors = strings.Split(v, ",")
				default:
					if g.name != "" {
						bad("want group NAME k=K sensors=A,B,C, got %q", o)
					}
					g.name = o
				}
			}
			groups = append(groups, g)
			return
		}
		if len(c.plant.Sensors) == 0 {
			addSensor("s1", 1000, "")
		}
		rs := &c.rules[len(c.rules)-1]
		if len(f) < 2 {
			bad("%s needs a value", f[0])
		}
		switch f[0] {
		case "HH", "H", "L", "LL":
			k := map[string]model.LimitKind{"HH": model.HH, "H": model.H, "L": model.L, "LL": model.LL}[f[0]]
			lim := model.Limit{Set: true, Value: parseFloat(t, f[1]), Level: k.DefaultLevel()}
			if len(f) > 2 {
				lim.Level = map[string]model.AlarmLevel{"L1": model.L1, "L2": model.L2}[f[2]]
				if lim.Level == model.NoLevel {
					bad("level %q is not L1 or L2", f[2])
				}
			}
			rs.Limits[k] = lim
		case "deadband":
			rs.Deadband = parseFloat(t, f[1])
		case "on_delay", "off_delay":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				bad("%v", err)
			}
			if f[0] == "on_delay" {
				rs.OnDelayMS = d.Milliseconds()
			} else {
				rs.OffDelayMS = d.Milliseconds()
			}
		case "silent_periods", "bad_quality":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				bad("%v", err)
			}
			if f[0] == "bad_quality" {
				rs.BadQuality = n
			} else {
				rs.SilentPeriods = n
			}
		case "range":
			if len(f) != 3 {
				bad("want range MIN MAX")
			}
			s := &c.plant.Sensors[len(c.plant.Sensors)-1]
			s.RangeMin, s.RangeMax = parseFloat(t, f[1]), parseFloat(t, f[2])
		case "out_of_range":
			rs.OutOfRange = f[1] == "on"
		case "rate", "prediction", "frozen", "stop_order", "sis_bypass":
			opts := map[string]string{}
			for _, o := range f[1:] {
				k, v, ok := strings.Cut(o, "=")
				if !ok {
					bad("want key=value, got %q", o)
				}
				opts[k] = v
			}
			dur := func(k string, def time.Duration) int64 {
				v, ok := opts[k]
				if !ok {
					return def.Milliseconds()
				}
				d, err := time.ParseDuration(v)
				if err != nil {
					bad("%s: %v", k, err)
				}
				return d.Milliseconds()
			}
			num := func(k string) float64 {
				if v, ok := opts[k]; ok {
					return parseFloat(t, v)
				}
				return 0
			}
			switch f[0] {
			case "rate":
				rs.Rate = model.RateRule{Rise: num("rise"), Fall: num("fall"), WindowMS: dur("window", time.Minute),
					Deadband: num("deadband"), OnDelayMS: dur("on_delay", 0)}
			case "prediction":
				rs.Prediction = model.PredictionRule{Window: 60, HorizonMS: dur("horizon", 10*time.Minute)}
				if v, ok := opts["window"]; ok {
					rs.Prediction.Window = int(parseInt(t, v))
				}
			case "frozen":
				rs.Frozen = model.FrozenRule{DurationMS: dur("duration", 0), Epsilon: num("epsilon")}
			case "stop_order":
				rs.StopOrder = model.StopOrderRule{On: true, BaselineKW: num("baseline"), MarginPct: 20,
					DelayMS: dur("delay", 5*time.Minute), LearnMS: dur("learn", time.Hour)}
				if _, ok := opts["margin"]; ok {
					rs.StopOrder.MarginPct = num("margin")
				}
			case "sis_bypass":
				rs.SISBypass = model.SISBypassRule{On: true, SourceLevel: 2, OnDelayMS: dur("on_delay", 5*time.Second)}
				if v, ok := opts["level"]; ok {
					rs.SISBypass.SourceLevel = int(parseInt(t, v))
				}
			}
		default:
			bad("unknown setting %q", f[0])
		}
	})
	if len(c.plant.Sensors) == 0 {
		addSensor("s1", 1000, "")
	}
	for _, g := range groups {
		v := model.VoteRule{Name: g.name, K: g.k}
		for _, name := range g.sensors {
			i, ok := c.byName[name]
			if !ok {
				t.Fatalf("%s:%d: no sensor %q", filepath.Join(dir, "rules.txt"), g.line, name)
			}
			v.Members = append(v.Members, i)
		}
		for _, i := range v.Members {
			c.rules[i].Vote = v
		}
	}
	c.plant.Index()
	c.readings = loadReadings(t, filepath.Join(dir, "readings.txt"), func(name string) (int32, bool) {
		i, ok := c.byName[name]
		return i, ok
	})
	return c
}

// loadReadings reads a readings.txt (the format above); sensor finds a
// sensor's index by its name.
func loadReadings(t *testing.T, file string, sensor func(string) (int32, bool)) []caseStep {
	t.Helper()
	var steps []caseStep
	cur := int32(0)
	eachLine(t, file, func(n int, f []string) {
		bad := func(format string, args ...any) {
			t.Fatalf("%s:%d: %s", file, n, fmt.Sprintf(format, args...))
		}
		switch f[0] {
		case "sensor":
			i, ok := sensor(f[1])
			if !ok {
				bad("no sensor %q", f[1])
			}
			cur = i
			return
		case "tick":
			steps = append(steps, caseStep{tick: true, reading: model.Reading{TS: parseInt(t, f[1])}, line: n})
			return
		}
		if len(f) < 2 {
			bad("want TS VALUE [quality] [late]")
		}
		r := model.Reading{SensorIdx: cur, TS: parseInt(t, f[0]), Quality: model.Good}
		if f[1] != "-" {
			r.Value, r.HasValue = parseFloat(t, f[1]), true
		}
		for _, w := range f[2:] {
			if w == "late" {
				r.Late = true
				continue
			}
			if reason, ok := strings.CutPrefix(w, "r="); ok {
				r.Reason = model.ParseQualityReason(reason)
				continue
			}
			q, ok := model.ParseQuality(w)
			if !ok {
				bad("unknown word %q", w)
			}
			r.Quality = q
		}
		steps = append(steps, caseStep{reading: r, line: n})
	})
	return steps
}

func eachLine(t *testing.T, file string, fn func(n int, fields []string)) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if fields := strings.Fields(line); len(fields) > 0 {
			fn(n, fields)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parseInt(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
