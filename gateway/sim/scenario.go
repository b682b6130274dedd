package sim

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

// The scenario file as written (see the package doc for the format). Fields
// that only some episode types take are pointers so that "left out" and
// "zero" differ: a ramp with `hold: 0s` is fine, a hold episode with a
// `peak` is a mistake worth pointing at.
type scenarioDoc struct {
	Kind     string        `yaml:"kind" hw:"required"`
	Cycle    time.Duration `yaml:"cycle" hw:"required"`
	NoisePct kindNoiseDoc  `yaml:"noise_pct"`
	Sensors  []sensorDoc   `yaml:"sensors"`
	Episodes []episodeDoc  `yaml:"episodes"`
}

// kindNoiseDoc has one field per measured kind. Valves, SIS states and
// energy counters have none: noise on a state or a counter is not noise but
// a fault, which an episode says explicitly.
type kindNoiseDoc struct {
	GasCombustible *float64 `yaml:"gas_combustible"`
	GasToxic       *float64 `yaml:"gas_toxic"`
	GasOxygen      *float64 `yaml:"gas_oxygen"`
	Pressure       *float64 `yaml:"pressure"`
	Level          *float64 `yaml:"level"`
	Temperature    *float64 `yaml:"temperature"`
	Flow           *float64 `yaml:"flow"`
	Power          *float64 `yaml:"power"`
	Current        *float64 `yaml:"current"`
}

func (n *kindNoiseDoc) byKind() map[model.Kind]*float64 {
	return map[model.Kind]*float64{
		model.GasCombustible: n.GasCombustible,
		model.GasToxic:       n.GasToxic,
		model.GasOxygen:      n.GasOxygen,
		model.Pressure:       n.Pressure,
		model.Level:          n.Level,
		model.Temperature:    n.Temperature,
		model.Flow:           n.Flow,
		model.Power:          n.Power,
		model.Current:        n.Current,
	}
}

type sensorDoc struct {
	ID         string   `hw:"key"`
	Baseline   *float64 `yaml:"baseline"`
	Noise      *float64 `yaml:"noise"`
	Follows    *string  `yaml:"follows"`
	Gain       *float64 `yaml:"gain"`
	Integrates *string  `yaml:"integrates"`
}

type episodeDoc struct {
	Name  string        `yaml:"name"`
	Type  string        `yaml:"type" hw:"required"`
	Start time.Duration `yaml:"start" hw:"required"`
	// ramp, hold and fault
	Sensor *string `yaml:"sensor"`
	// ramp
	Peak *float64       `yaml:"peak"`
	Rise *time.Duration `yaml:"rise"`
	Hold *time.Duration `yaml:"hold"`
	Fall *time.Duration `yaml:"fall"`
	// hold
	Value *float64 `yaml:"value"`
	// hold, silent, uplink and fault
	Duration *time.Duration `yaml:"duration"`
	// silent and uplink
	Gateway *string `yaml:"gateway"`
	// silent
	Device *string `yaml:"device"`
}

// Episode types.
const (
	epRamp = iota
	epHold
)

// episode is one compiled ramp or hold of one sensor; times are seconds
// from the cycle start, as float64 because every use is arithmetic.
type episode struct {
	name       string
	typ        int
	start, end float64
	rise, hold float64 // ramp: the plateau is [start+rise, start+rise+hold)
	fall       float64
	peak       float64 // ramp: the value at the plateau
	value      float64 // hold: the value held, when hasValue
	hasValue   bool
}

// sensorPlan is what the scenario says about one sensor.
type sensorPlan struct {
	baseline float64
	noise    float64 // amplitude in the sensor's unit: the value stays within baseline ± noise
	follows  int32   // -1, or the sensor whose noise-free value times gain is this one's baseline
	gain     float64
	// integrates is -1, or the power sensor this energy counter integrates (kW → kWh).
	integrates int32
	episodes   []episode // sorted by start, never overlapping
}

// silence is a time when a device does not answer.
type silence struct {
	name       string
	start, end float64
	gateway    int32
	device     int32
}

// uplinkCut is a time when a gateway's link to the centre is cut.
type uplinkCut struct {
	name       string
	start, end float64
	gateway    int32
}

// at reports whether the cut is in force at phase p.
func (u *uplinkCut) at(p float64) bool { return p >= u.start && p < u.end }

// faultSpan is a time when a sensor's device sets the sensor's fault bit.
type faultSpan struct {
	name       string
	start, end float64
	sensor     int32
}

// at reports whether the fault bit is set at phase p.
func (f *faultSpan) at(p float64) bool { return p >= f.start && p < f.end }

// Scenario is a compiled scenario file, bound to the plant it was checked
// against. It is read-only after LoadScenario and may be shared.
type Scenario struct {
	plant    *model.Plant
	file     string
	cycle    float64 // seconds; 0 for baselines only
	sensors  []sensorPlan
	silences []silence
	uplinks  []uplinkCut // sorted by start
	faults   []faultSpan // sorted by start
}

// Cycle is how long the scenario runs before it repeats.
func (sc *Scenario) Cycle() time.Duration { return durationOf(sc.cycle) }

// UplinkCut is one uplink episode: when, in each cycle, a gateway's link to
// the centre is cut.
type UplinkCut struct {
	Gateway         string
	Start, Duration time.Duration
}

// UplinkCuts lists the scenario's uplink episodes by start.
func (sc *Scenario) UplinkCuts() []UplinkCut {
	out := make([]UplinkCut, 0, len(sc.uplinks))
	for _, u := range sc.uplinks {
		out = append(out, UplinkCut{Gateway: sc.plant.Gateways[u.gateway].ID, Start: durationOf(u.start), Duration: durationOf(u.end - u.start)})
	}
	return out
}

func durationOf(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// File is the name the scenario was loaded under (as in its errors).
func (sc *Scenario) File() string { return sc.file }

// Default noise amplitudes, in % of the instrument's span. They are small
// enough to stay inside the deadbands of the demo rules (the tests check it
// against the compiled rules), so that noise alone never raises an alarm.
var defaultNoisePct = map[model.Kind]float64{
	model.GasCombustible: 0.5,
	model.GasToxic:       0.2,
	model.GasOxygen:      0.4,
	model.Pressure:       0.2,
	model.Level:          0.2,
	model.Temperature:    0.2,
	model.Flow:           0.3,
	model.Power:          0.2,
	model.Current:        0.2,
}

// maxCycle bounds the cycle so that float64 seconds stay exact and a typo
// (`cycle: 10000h`) is caught.
const maxCycle = 24 * time.Hour

// LoadScenario reads the scenario file name from fsys and checks it against
// plant p. Errors name the file as display joined with name (display is a
// folder, as for config.LoadFS; "" for the bare name). Every error of the
// file comes at once, as config.Errors; a file that cannot be read gives a
// wrapped fs error.
func LoadScenario(fsys fs.FS, name, display string, p *model.Plant) (*Scenario, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("sim: scenario: %w", err)
	}
	file := name
	if display != "" {
		file = filepath.Join(display, filepath.FromSlash(name)) // as config.LoadFS names files
	}
	return parseScenario(config.File{Name: file, Data: data}, p)
}

func parseScenario(f config.File, p *model.Plant) (*Scenario, error) {
	if p == nil {
		return nil, errors.New("sim: scenario: no plant")
	}
	var doc scenarioDoc
	pos, err := config.DecodeFile(f, "scenario", &doc)
	var errs config.Errors
	if err != nil && !errors.As(err, &errs) {
		return nil, fmt.Errorf("sim: scenario: %w", err)
	}
	if errs != nil && pos.Of(&doc).File == "?" {
		return nil, errs // not YAML, or not a scenario: nothing to check further
	}
	c := &checker{pos: pos, errs: errs, plant: p}
	sc := c.compile(f.Name, &doc)
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b config.Diag) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), cmp.Compare(a.Path, b.Path))
		})
		return nil, slices.CompactFunc(c.errs, func(a, b config.Diag) bool { return a == b })
	}
	return sc, nil
}

// checker collects the errors found after decoding, each at its place.
type checker struct {
	pos   config.Positions
	errs  config.Errors
	plant *model.Plant
	// cycleOK is false when the cycle is missing or wrong: episodes are
	// still checked for references, not for fitting in the cycle.
	cycleOK bool
}

func (c *checker) errorf(ptr any, format string, args ...any) {
	c.add(c.pos.Errorf(ptr, format, args...))
}

// add keeps one error per place: a value the decoder already refused (a
// cycle of "ten minutes") is left zero, and saying again that zero is wrong
// would only be noise.
func (c *checker) add(d config.Diag) {
	for _, e := range c.errs {
		if e.File == d.File && e.Line == d.Line && e.Col == d.Col {
			return
		}
	}
	c.errs = append(c.errs, d)
}

// fieldf reports a problem with a field of the mapping at ptr, typically one
// that is missing and so has no place of its own.
func (c *checker) fieldf(ptr any, field, format string, args ...any) {
	d := c.pos.Errorf(ptr, format, args...)
	if d.Path == "" {
		d.Path = field
	} else {
		d.Path += "." + field
	}
	c.add(d)
}

// startf reports a problem with an episode's start; a start left out has
// no place of its own (its absence was reported), so the episode's is used.
func (c *checker) startf(ed *episodeDoc, format string, args ...any) {
	if c.pos.Of(&ed.Start).File == "?" {
		c.fieldf(ed, "start", format, args...)
		return
	}
	c.errorf(&ed.Start, format, args...)
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func (c *checker) compile(file string, doc *scenarioDoc) *Scenario {
	p := c.plant
	sc := &Scenario{plant: p, file: file, cycle: seconds(doc.Cycle)}
	c.cycleOK = true
	if doc.Cycle <= 0 || doc.Cycle > maxCycle {
		// A cycle left out was reported as required; zero is not "left out".
		if pos := c.pos.Of(&doc.Cycle); pos.File != "?" {
			c.errorf(&doc.Cycle, "must be more than 0s and at most %s", maxCycle)
		}
		c.cycleOK = false
	}

	noisePct := map[model.Kind]float64{}
	for k, v := range defaultNoisePct {
		noisePct[k] = v
	}
	for k, v := range doc.NoisePct.byKind() {
		if v == nil {
			continue
		}
		if *v < 0 || *v > 10 {
			c.errorf(v, "must be 0-10 (%% of the instrument's span)")
			continue
		}
		noisePct[k] = *v
	}
	sc.sensors = defaultPlans(p, noisePct)

	// Per-sensor overrides. References are checked after all sensors are
	// read so that "follows a sensor that itself follows" is caught in
	// either order.
	byID := make([]*sensorDoc, len(p.Sensors))
	for i := range doc.Sensors {
		sd := &doc.Sensors[i]
		idx, ok := c.sensor(&sd.ID, sd.ID)
		if !ok {
			continue
		}
		byID[idx] = sd
		s, plan := &p.Sensors[idx], &sc.sensors[idx]
		if sd.Baseline != nil {
			if b := *sd.Baseline; b < s.RangeMin || b > s.RangeMax {
				c.errorf(sd.Baseline, "%g is outside the range %g-%g of %s", b, s.RangeMin, s.RangeMax, s.ID)
			} else if s.Kind.Discrete() && b != math.Trunc(b) {
				c.errorf(sd.Baseline, "a %s is a whole state (0-%g)", s.Kind, s.RangeMax)
			} else {
				plan.baseline = b
			}
		}
		if sd.Noise != nil {
			switch n := *sd.Noise; {
			case n < 0:
				c.errorf(sd.Noise, "must not be negative")
			case n > 0 && noiseless(s.Kind):
				c.errorf(sd.Noise, "a %s has no noise: use a hold episode for a fault", s.Kind)
			case n > (s.RangeMax-s.RangeMin)/10:
				c.errorf(sd.Noise, "%g is more than a tenth of the range of %s", n, s.ID)
			default:
				plan.noise = n
			}
		}
		if sd.Baseline != nil && sd.Follows != nil {
			c.errorf(sd.Baseline, "a sensor that follows another takes its baseline from it (gain × its value)")
		}
	}
	for idx, sd := range byID {
		if sd == nil {
			continue
		}
		c.links(sc, int32(idx), sd, byID)
	}

	type span struct {
		start, end float64
		at         *episodeDoc
	}
	bySensor := map[int32][]span{}
	byDevice := map[[2]int32][]span{}
	byUplink := map[int32][]span{}
	byFault := map[int32][]span{}
	for i := range doc.Episodes {
		ed := &doc.Episodes[i]
		c.episode(sc, ed, episodeSinks{
			sensor: func(sensor int32, start, end float64) {
				bySensor[sensor] = append(bySensor[sensor], span{start, end, ed})
			},
			device: func(gw, dev int32, start, end float64) {
				byDevice[[2]int32{gw, dev}] = append(byDevice[[2]int32{gw, dev}], span{start, end, ed})
			},
			uplink: func(gw int32, start, end float64) {
				byUplink[gw] = append(byUplink[gw], span{start, end, ed})
			},
			fault: func(sensor int32, start, end float64) {
				byFault[sensor] = append(byFault[sensor], span{start, end, ed})
			},
		})
	}
	// Overlaps: an episode's value is defined relative to the sensor's
	// value without it, so two at once have no single meaning; two cuts of
	// one link would each claim to restore it when they end, and so would
	// two faults of one sensor. A fault bit is not a value: its episodes
	// may overlap the sensor's ramps and holds (a detector frozen, then
	// reporting its fault).
	overlaps := func(what string, spans []span) {
		slices.SortStableFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
		for i := 1; i < len(spans); i++ {
			if spans[i].start < spans[i-1].end {
				prev := c.pos.Of(spans[i-1].at)
				c.startf(spans[i].at, "overlaps the episode at line %d on %s", prev.Line, what)
			}
		}
	}
	for idx, spans := range bySensor {
		overlaps(p.Sensors[idx].ID, spans)
		slices.SortFunc(sc.sensors[idx].episodes, func(a, b episode) int { return cmp.Compare(a.start, b.start) })
	}
	for k, spans := range byDevice {
		overlaps(p.Gateways[k[0]].ID+"/"+p.Gateways[k[0]].Devices[k[1]].ID, spans)
	}
	for g, spans := range byUplink {
		overlaps("the uplink of "+p.Gateways[g].ID, spans)
	}
	for idx, spans := range byFault {
		overlaps("the fault bit of "+p.Sensors[idx].ID, spans)
	}
	slices.SortFunc(sc.silences, func(a, b silence) int { return cmp.Compare(a.start, b.start) })
	slices.SortFunc(sc.uplinks, func(a, b uplinkCut) int { return cmp.Compare(a.start, b.start) })
	slices.SortFunc(sc.faults, func(a, b faultSpan) int { return cmp.Compare(a.start, b.start) })
	return sc
}

// noiseless kinds hold states or a counter.
func noiseless(k model.Kind) bool { return k.Discrete() || k == model.Energy }

// defaultBaseline is a sensible normal value from the kind and the range:
// a process value at 40 % of its span, clean air for gas detectors, valves
// closed, SIS normal, a stopped enterprise's meters at its idle load.
func defaultBaseline(p *model.Plant, s *model.Sensor) float64 {
	span := s.RangeMax - s.RangeMin
	clamp := func(v float64) float64 { return math.Max(s.RangeMin, math.Min(s.RangeMax, v)) }
	switch s.Kind {
	case model.GasOxygen:
		return clamp(20.9) // fresh air
	case model.GasCombustible, model.GasToxic, model.Energy, model.Valve, model.SIS:
		return clamp(0)
	case model.Power, model.Current:
		e := p.Enterprises[s.Enterprise]
		if e.Status == model.Operating {
			return s.RangeMin + 0.4*span
		}
		// A stopped plant draws its security loads: below the idle power,
		// so that the baseline alone is no violation.
		if s.Kind == model.Power && e.IdlePowerKW > 0 {
			return clamp(0.8 * e.IdlePowerKW)
		}
		return s.RangeMin + 0.02*span
	}
	return s.RangeMin + 0.4*span
}

// sensor resolves a sensor id at ptr.
func (c *checker) sensor(ptr any, id string) (int32, bool) {
	if idx, ok := c.plant.SensorIndex(id); ok {
		return idx, true
	}
	ids := make([]string, len(c.plant.Sensors))
	for i := range c.plant.Sensors {
		ids[i] = c.plant.Sensors[i].ID
	}
	c.errorf(ptr, "no sensor %q in the plant%s", id, didYouMean(id, ids))
	return -1, false
}

// didYouMean names the id closest to a mistyped one, when it is close
// enough to be the likely intent.
func didYouMean(id string, ids []string) string {
	if best := config.Suggest(id, ids); best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}

func (c *checker) links(sc *Scenario, idx int32, sd *sensorDoc, byID []*sensorDoc) {
	p := c.plant
	s, plan := &p.Sensors[idx], &sc.sensors[idx]
	chained := func(t int32) bool {
		o := byID[t]
		return o != nil && (o.Follows != nil || o.Integrates != nil)
	}
	if sd.Gain != nil && sd.Follows == nil {
		c.errorf(sd.Gain, "gain is for a sensor that follows another")
	}
	if sd.Follows != nil && sd.Integrates != nil {
		c.errorf(sd.Integrates, "a sensor either follows or integrates another, not both")
		return
	}
	if sd.Follows != nil {
		t, ok := c.sensor(sd.Follows, *sd.Follows)
		switch {
		case !ok:
		case t == idx:
			c.errorf(sd.Follows, "a sensor cannot follow itself")
		case chained(t):
			c.errorf(sd.Follows, "%s itself follows or integrates another sensor: follow that one", *sd.Follows)
		case noiseless(s.Kind):
			c.errorf(sd.Follows, "a %s cannot follow another sensor", s.Kind)
		default:
			plan.follows = t
			if sd.Gain != nil {
				plan.gain = *sd.Gain
			}
		}
	}
	if sd.Integrates != nil {
		t, ok := c.sensor(sd.Integrates, *sd.Integrates)
		switch {
		case !ok:
		case s.Kind != model.Energy:
			c.errorf(sd.Integrates, "only an energy counter integrates, not a %s", s.Kind)
		case p.Sensors[t].Kind != model.Power:
			c.errorf(sd.Integrates, "%s is a %s: an energy counter integrates a power sensor", *sd.Integrates, p.Sensors[t].Kind)
		case chained(t):
			c.errorf(sd.Integrates, "%s itself follows another sensor: integrate that one", *sd.Integrates)
		default:
			plan.integrates = t
		}
	}
}

// only reports fields given that the episode type does not take.
func (c *checker) only(ed *episodeDoc, typ string, fields map[string]bool) {
	given := map[string]any{
		"sensor": ed.Sensor, "peak": ed.Peak, "rise": ed.Rise, "hold": ed.Hold, "fall": ed.Fall,
		"value": ed.Value, "duration": ed.Duration, "gateway": ed.Gateway, "device": ed.Device,
	}
	for name, ptr := range given {
		if fields[name] || isNil(ptr) {
			continue
		}
		c.errorf(ptr, "not for %s episode", withArticle(typ))
	}
}

// withArticle puts "a" or "an" before an episode type.
func withArticle(typ string) string {
	if typ != "" && strings.ContainsRune("aeiou", rune(typ[0])) {
		return "an " + typ
	}
	return "a " + typ
}

func isNil(p any) bool {
	switch v := p.(type) {
	case *string:
		return v == nil
	case *float64:
		return v == nil
	case *time.Duration:
		return v == nil
	}
	return true
}

func dur(d *time.Duration) float64 {
	if d == nil {
		return 0
	}
	return seconds(*d)
}

// episodeSinks receive each compiled episode's place and time span, for
// the overlap checks.
type episodeSinks struct {
	sensor func(sensor int32, start, end float64)
	device func(gw, dev int32, start, end float64)
	uplink func(gw int32, start, end float64)
	fault  func(sensor int32, start, end float64)
}

func (c *checker) episode(sc *Scenario, ed *episodeDoc, sink episodeSinks) {
	p := c.plant
	start := seconds(ed.Start)
	if c.cycleOK && start >= sc.cycle {
		c.startf(ed, "%s is not within the cycle (%s)", ed.Start, sc.Cycle())
		return
	}
	end := func(length float64) (float64, bool) {
		if c.cycleOK && start+length > sc.cycle {
			c.startf(ed, "the episode ends at %s, after the cycle (%s): it must end within it", time.Duration((start+length)*float64(time.Second)), sc.Cycle())
			return 0, false
		}
		return start + length, true
	}
	switch ed.Type {
	case "ramp":
		c.only(ed, "ramp", map[string]bool{"sensor": true, "peak": true, "rise": true, "hold": true, "fall": true})
		idx, sOK := c.episodeSensor(ed)
		if ed.Peak == nil {
			c.fieldf(ed, "peak", "required for a ramp")
		}
		if ed.Rise == nil {
			c.fieldf(ed, "rise", "required for a ramp")
		}
		length := dur(ed.Rise) + dur(ed.Hold) + dur(ed.Fall)
		if ed.Rise != nil && length == 0 {
			c.errorf(ed.Rise, "a ramp of no length: give rise, hold or fall")
			return
		}
		if !sOK || ed.Peak == nil || ed.Rise == nil {
			return
		}
		s := &p.Sensors[idx]
		if s.Kind.Discrete() || s.Kind == model.Energy {
			c.errorf(ed.Sensor, "a %s does not ramp: use a hold episode", s.Kind)
			return
		}
		if *ed.Peak < s.RangeMin || *ed.Peak > s.RangeMax {
			c.errorf(ed.Peak, "%g is outside the range %g-%g of %s (a value out of range is a hold episode)", *ed.Peak, s.RangeMin, s.RangeMax, s.ID)
			return
		}
		e, ok := end(length)
		if !ok {
			return
		}
		sc.sensors[idx].episodes = append(sc.sensors[idx].episodes, episode{
			name: ed.Name, typ: epRamp, start: start, end: e,
			rise: dur(ed.Rise), hold: dur(ed.Hold), fall: dur(ed.Fall), peak: *ed.Peak,
		})
		sink.sensor(idx, start, e)
	case "hold":
		c.only(ed, "hold", map[string]bool{"sensor": true, "value": true, "duration": true})
		idx, sOK := c.episodeSensor(ed)
		length, ok := c.duration(ed)
		if !sOK || !ok {
			return
		}
		s := &p.Sensors[idx]
		ep := episode{name: ed.Name, typ: epHold, start: start}
		if ed.Value != nil {
			v := *ed.Value
			if s.Kind.Discrete() && (v != math.Trunc(v) || v < s.RangeMin || v > s.RangeMax) {
				c.errorf(ed.Value, "a %s holds a state %g-%g, not %g", s.Kind, s.RangeMin, s.RangeMax, v)
				return
			}
			ep.value, ep.hasValue = v, true
		}
		e, ok := end(length)
		if !ok {
			return
		}
		ep.end = e
		sc.sensors[idx].episodes = append(sc.sensors[idx].episodes, ep)
		sink.sensor(idx, start, e)
	case "silent":
		c.only(ed, "silent", map[string]bool{"gateway": true, "device": true, "duration": true})
		length, ok := c.duration(ed)
		g, gOK := c.episodeGateway(ed)
		if !gOK {
			return
		}
		devs := []int32{}
		if ed.Device == nil {
			for d := range p.Gateways[g].Devices {
				devs = append(devs, int32(d))
			}
		} else {
			var ids []string
			for d, dev := range p.Gateways[g].Devices {
				ids = append(ids, dev.ID)
				if dev.ID == *ed.Device {
					devs = append(devs, int32(d))
				}
			}
			if len(devs) == 0 {
				c.errorf(ed.Device, "gateway %s has no device %q (it has %s)", *ed.Gateway, *ed.Device, strings.Join(ids, ", "))
				return
			}
		}
		if !ok {
			return
		}
		e, ok := end(length)
		if !ok {
			return
		}
		for _, d := range devs {
			sc.silences = append(sc.silences, silence{name: ed.Name, start: start, end: e, gateway: g, device: d})
			sink.device(g, d, start, e)
		}
	case "uplink":
		c.only(ed, "uplink", map[string]bool{"gateway": true, "duration": true})
		length, ok := c.duration(ed)
		g, gOK := c.episodeGateway(ed)
		if !ok || !gOK {
			return
		}
		e, ok := end(length)
		if !ok {
			return
		}
		sc.uplinks = append(sc.uplinks, uplinkCut{name: ed.Name, start: start, end: e, gateway: g})
		sink.uplink(g, start, e)
	case "fault":
		c.only(ed, "fault", map[string]bool{"sensor": true, "duration": true})
		idx, sOK := c.faultSensor(ed)
		if length, ok := c.duration(ed); sOK && ok {
			if e, ok := end(length); ok {
				sc.faults = append(sc.faults, faultSpan{name: ed.Name, start: start, end: e, sensor: idx})
				sink.fault(idx, start, e)
			}
		}
	default:
		if c.pos.Of(&ed.Type).File != "?" { // a missing type was reported as required
			c.errorf(&ed.Type, "must be ramp, hold, silent, uplink or fault, not %q", ed.Type)
		}
	}
}

// episodeGateway resolves a silent or uplink episode's gateway.
func (c *checker) episodeGateway(ed *episodeDoc) (int32, bool) {
	p := c.plant
	if ed.Gateway == nil {
		c.fieldf(ed, "gateway", "required for %s episode", withArticle(ed.Type))
		return -1, false
	}
	g, ok := p.GatewayIndex(*ed.Gateway)
	if !ok {
		ids := make([]string, len(p.Gateways))
		for i := range p.Gateways {
			ids[i] = p.Gateways[i].ID
		}
		c.errorf(ed.Gateway, "no gateway %q in the plant%s", *ed.Gateway, didYouMean(*ed.Gateway, ids))
		return -1, false
	}
	return g, true
}

func (c *checker) episodeSensor(ed *episodeDoc) (int32, bool) {
	if ed.Sensor == nil {
		c.fieldf(ed, "sensor", "required for %s episode", withArticle(ed.Type))
		return -1, false
	}
	return c.sensor(ed.Sensor, *ed.Sensor)
}

// faultSensor resolves a fault episode's sensor, which must have a fault bit.
func (c *checker) faultSensor(ed *episodeDoc) (int32, bool) {
	idx, ok := c.episodeSensor(ed)
	if ok && c.plant.Sensors[idx].Fault == nil {
		c.errorf(ed.Sensor, "%s has no fault bit (give it fault: in the plant files)", *ed.Sensor)
		return -1, false
	}
	return idx, ok
}

func (c *checker) duration(ed *episodeDoc) (float64, bool) {
	switch {
	case ed.Duration == nil:
		c.fieldf(ed, "duration", "required for %s episode", withArticle(ed.Type))
		return 0, false
	case *ed.Duration <= 0:
		c.errorf(ed.Duration, "must be more than 0s")
		return 0, false
	}
	return seconds(*ed.Duration), true
}
