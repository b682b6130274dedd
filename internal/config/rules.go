package config

import (
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// Defaults of the rules (docs/CONFIG.md).
const (
	defaultSilentPeriods = 5
	defaultBadQuality    = 3
	defaultRateWindow    = time.Minute
	defaultPredWindow    = 60
	defaultPredHorizon   = 10 * time.Minute
	// A rate's window spans at least one poll and at most this many: the
	// rules keep its readings in a ring sized by it.
	maxRateWindowPolls = 1000
	minPredWindow      = 5
	maxPredWindow      = 1000
)

// GB/T 50493-2019 §5.5 maxima for gas alarm set points, by level.
var gasMax = map[model.Kind][3]float64{
	model.GasCombustible: {model.L1: 25, model.L2: 50},   // %LEL
	model.GasToxic:       {model.L1: 100, model.L2: 200}, // %OEL
}

// compileRules merges built-in defaults, kind rules and sensor rules into
// one model.SensorRules per sensor, resolving %LEL and %OEL.
func (l *loader) compileRules(p *model.Plant) []model.SensorRules {
	kindRules := map[model.Kind]*ruleDoc{}
	sensorRules := map[int32]*ruleDoc{}
	given := map[int32]*string{}
	for _, d := range l.rules {
		for i := range d.Kinds {
			r := &d.Kinds[i]
			k, ok := model.ParseKind(r.Key)
			if !ok {
				l.errorf(&r.Key, "unknown sensor kind %q (known: %s)", r.Key, quoteAll(idsOf(model.Kinds(), model.Kind.String)))
				continue
			}
			if first, dup := kindRules[k]; dup {
				l.errorf(&r.Key, "rules for kind %s are already given at %s", k, where(l.at(&first.Key)))
				continue
			}
			kindRules[k] = r
		}
		for i := range d.Sensors {
			r := &d.Sensors[i]
			if si, ok := l.claim(&r.Key, "sensor", p.SensorIndex, sensorIDs(p), given); ok {
				sensorRules[si] = r
			}
		}
	}
	out := make([]model.SensorRules, len(p.Sensors))
	for si := range p.Sensors {
		out[si] = l.sensorRules(&p.Sensors[si], pollPeriod(p, &p.Sensors[si]), &l.sensorDocs[si].ID, kindRules[p.Sensors[si].Kind], sensorRules[int32(si)])
	}
	l.compileVoting(p, out)
	l.compileViolations(p, out, kindRules, sensorRules)
	return out
}

// compileVoting checks the voting groups of every rules file and gives
// each member's rules its group. A group has two or more gas detectors
// (gas_combustible or gas_toxic) of one kind, each in no other group, and
// 1 ≤ k ≤ its number of sensors; its first sensor carries its alarm.
func (l *loader) compileVoting(p *model.Plant, out []model.SensorRules) {
	names := map[string]*votingDoc{}
	member := map[int32]*string{} // sensor → where it joined a group
	for _, d := range l.rules {
		for i := range d.Voting {
			v := &d.Voting[i]
			if first, dup := names[v.Name]; dup {
				l.errorf(&v.Name, "voting group %s is already given at %s", v.Name, where(l.at(&first.Name)))
				continue
			}
			names[v.Name] = v
			g := model.VoteRule{Name: v.Name, K: v.K}
			ok := true
			var kind model.Kind
			gas := ""
			for j := range v.Sensors {
				id := &v.Sensors[j]
				si, found := p.SensorIndex(*id)
				if !found {
					ok = false
					l.noSuch(id, "sensor", sensorIDs(p)())
					continue
				}
				s := &p.Sensors[si]
				if first, dup := member[si]; dup {
					ok = false
					l.errorf(id, "sensor %s is already in a voting group at %s: a sensor may vote in one group only", *id, where(l.at(first)))
					continue
				}
				member[si] = id
				switch {
				case s.Kind != model.GasCombustible && s.Kind != model.GasToxic:
					ok = false
					l.errorf(id, "sensor %s is %s: only gas_combustible and gas_toxic detectors vote", *id, s.Kind)
					continue
				case len(g.Members) > 0 && s.Kind != kind:
					ok = false
					l.errorf(id, "sensor %s is %s but the group's first sensor is %s: a group's detectors are of one kind", *id, s.Kind, kind)
					continue
				}
				kind = s.Kind
				if s.Gas != nil {
					if gas != "" && s.Gas.CAS != gas {
						l.warnf(id, "sensor %s detects %s but the group's first sensor detects %s: do they watch the same gas?", *id, s.Gas.CAS, gas)
					} else if gas == "" {
						gas = s.Gas.CAS
					}
				}
				if lim := out[si].Limits; !lim[model.H].Set && !lim[model.HH].Set {
					l.warnf(id, "sensor %s has no H or HH limit: it can never vote", *id)
				}
				g.Members = append(g.Members, si)
			}
			switch n := len(v.Sensors); {
			case n < 2:
				ok = false
				l.errorf(&v.Sensors, "a voting group needs at least two sensors, not %d", n)
			case v.K < 1 || v.K > n:
				ok = false
				l.errorf(&v.K, "must be 1-%d (the group's sensors), not %d", n, v.K)
			}
			if !ok {
				continue
			}
			for _, si := range g.Members {
				out[si].Vote = g
			}
		}
	}
}

// compileGateways gives every gateway the default silence check and
// applies the rule files' gateways entries: a known gateway, given once,
// silent_periods at least 1.
func (l *loader) compileGateways(p *model.Plant) []model.GatewayRules {
	out := make([]model.GatewayRules, len(p.Gateways))
	for i := range out {
		out[i].SilentPeriods = defaultSilentPeriods
	}
	given := map[int32]*string{}
	for _, d := range l.rules {
		for i := range d.Gateways {
			r := &d.Gateways[i]
			gi, ok := l.claim(&r.Key, "gateway", p.GatewayIndex, func() []string {
				return idsOf(p.Gateways, func(g model.Gateway) string { return g.ID })
			}, given)
			if ok && r.SilentPeriods != nil {
				if *r.SilentPeriods < 1 {
					l.errorf(r.SilentPeriods, "must be at least 1")
				} else {
					out[gi].SilentPeriods = *r.SilentPeriods
				}
			}
		}
	}
	return out
}

// noSuch reports the unknown id at id, a what, with the nearest of ids.
func (l *loader) noSuch(id *string, what string, ids []string) {
	if s := Suggest(*id, ids); s != "" {
		l.errorf(id, "no %s %q (did you mean %s?)", what, *id, s)
	} else {
		l.errorf(id, "no %s %q in the plant files", what, *id)
	}
}

// claim resolves the rules entry at key to its sensor's or gateway's
// index, refusing an unknown id (with the nearest of ids) and one given
// before (given says where).
func (l *loader) claim(key *string, what string, index func(string) (int32, bool), ids func() []string, given map[int32]*string) (int32, bool) {
	i, ok := index(*key)
	if !ok {
		l.noSuch(key, what, ids())
		return -1, false
	}
	if first, dup := given[i]; dup {
		l.errorf(key, "rules for %s %s are already given at %s", what, *key, where(l.at(first)))
		return -1, false
	}
	given[i] = key
	return i, true
}

func sensorIDs(p *model.Plant) func() []string {
	return func() []string { return idsOf(p.Sensors, func(s model.Sensor) string { return s.ID }) }
}

// idsOf names each of xs.
func idsOf[T any](xs []T, id func(T) string) []string {
	ids := make([]string, len(xs))
	for i, x := range xs {
		ids[i] = id(x)
	}
	return ids
}

// pollPeriod is the sensor's device's poll period (the gateway's when the
// device has none of its own).
func pollPeriod(p *model.Plant, s *model.Sensor) time.Duration {
	if s.Gateway < 0 || int(s.Gateway) >= len(p.Gateways) {
		return time.Second
	}
	g := &p.Gateways[s.Gateway]
	ms := g.PollPeriodMS
	if s.Device >= 0 && int(s.Device) < len(g.Devices) && g.Devices[s.Device].PollPeriodMS > 0 {
		ms = g.Devices[s.Device].PollPeriodMS
	}
	if ms <= 0 {
		return time.Second
	}
	return time.Duration(ms) * time.Millisecond
}

// at is where a merged setting was last given, and for which sensor, for
// the checks that need the whole merge.
type at struct {
	ptr any
	who string
}

func (l *loader) sensorRules(s *model.Sensor, poll time.Duration, id *string, layers ...*ruleDoc) model.SensorRules {
	rs := model.SensorRules{Latch: s.Kind.IsGas(), SilentPeriods: defaultSilentPeriods, OutOfRange: true, BadQuality: defaultBadQuality}
	var src [model.NumLimits]*limitSpec
	var tr trendSrc
	for _, r := range layers {
		if r == nil {
			continue
		}
		// A kind rule's error names the sensor it was applied to.
		who := ""
		if r.Key != s.ID {
			who = " (for sensor " + s.ID + ")"
		}
		if r.Limits != nil {
			for k, spec := range r.Limits.specs() {
				if !spec.Given {
					continue
				}
				if spec.Removed {
					rs.Limits[k], src[k] = model.Limit{}, nil
					continue
				}
				v, ok := l.resolve(spec, spec.Value, s, who)
				if !ok {
					continue
				}
				lvl := k.DefaultLevel()
				if spec.Level == "L1" {
					lvl = model.L1
				} else if spec.Level == "L2" {
					lvl = model.L2
				}
				rs.Limits[k], src[k] = model.Limit{Set: true, Value: v, Level: lvl}, spec
			}
		}
		if v, ok := l.quantity(r.Deadband, s, who, false); ok {
			rs.Deadband = v
		}
		if r.OnDelay != nil {
			rs.OnDelayMS = r.OnDelay.Milliseconds()
		}
		if r.OffDelay != nil {
			rs.OffDelayMS = r.OffDelay.Milliseconds()
		}
		if r.Latch != nil {
			rs.Latch = *r.Latch
		}
		if r.SilentPeriods != nil {
			if *r.SilentPeriods < 1 {
				l.errorf(r.SilentPeriods, "must be at least 1")
			} else {
				rs.SilentPeriods = *r.SilentPeriods
			}
		}
		l.mergeTrends(r, s, who, &rs, &tr)
	}
	l.checkLimits(s, id, &rs, src)
	l.checkTrends(s, poll, &rs, &tr)
	return rs
}

// trendSrc remembers where the merged rate, prediction and frozen settings
// were given; a nil section is off.
type trendSrc struct {
	rate, rateWindow, rateDeadband at
	pred, frozen                   at
	// rateGiven: a layer gave rise or fall, if wrongly (reported there).
	rateGiven bool
}

// mergeTrends applies one layer's rate, prediction, frozen, out_of_range
// and bad_quality over what the layers below it set: a section turns the
// rule on (with its defaults when it was off) and overrides the fields it
// gives; `~` turns it off.
func (l *loader) mergeTrends(r *ruleDoc, s *model.Sensor, who string, rs *model.SensorRules, tr *trendSrc) {
	if d := r.Rate; d != nil {
		switch {
		case d.Removed:
			rs.Rate, tr.rate, tr.rateGiven = model.RateRule{}, at{}, false
		default:
			if tr.rate.ptr == nil {
				rs.Rate = model.RateRule{WindowMS: defaultRateWindow.Milliseconds()}
				tr.rateWindow, tr.rateDeadband = at{}, at{}
			}
			tr.rate = at{d, who}
			tr.rateGiven = tr.rateGiven || d.Rise != nil || d.Fall != nil
			if v, ok := l.quantity(d.Rise, s, who, true); ok {
				rs.Rate.Rise = v
			}
			if v, ok := l.quantity(d.Fall, s, who, true); ok {
				rs.Rate.Fall = v
			}
			if d.Window != nil {
				rs.Rate.WindowMS, tr.rateWindow = d.Window.Milliseconds(), at{d.Window, who}
			}
			if v, ok := l.quantity(d.Deadband, s, who, false); ok {
				rs.Rate.Deadband, tr.rateDeadband = v, at{d.Deadband, who}
			}
			if d.OnDelay != nil {
				rs.Rate.OnDelayMS = d.OnDelay.Milliseconds()
			}
		}
	}
	if d := r.Prediction; d != nil {
		switch {
		case d.Removed:
			rs.Prediction, tr.pred = model.PredictionRule{}, at{}
		default:
			if tr.pred.ptr == nil {
				rs.Prediction = model.PredictionRule{Window: defaultPredWindow, HorizonMS: defaultPredHorizon.Milliseconds()}
			}
			tr.pred = at{d, who}
			if d.Window != nil {
				if *d.Window < minPredWindow || *d.Window > maxPredWindow {
					l.errorf(d.Window, "must be %d-%d readings", minPredWindow, maxPredWindow)
				} else {
					rs.Prediction.Window = *d.Window
				}
			}
			if d.Horizon != nil {
				if *d.Horizon <= 0 {
					l.errorf(d.Horizon, "must be more than 0s")
				} else {
					rs.Prediction.HorizonMS = d.Horizon.Milliseconds()
				}
			}
		}
	}
	if d := r.Frozen; d != nil {
		switch {
		case d.Removed:
			rs.Frozen, tr.frozen = model.FrozenRule{}, at{}
		default:
			tr.frozen = at{d, who}
			if d.Duration != nil {
				if *d.Duration <= 0 {
					l.errorf(d.Duration, "must be more than 0s")
				} else {
					rs.Frozen.DurationMS = d.Duration.Milliseconds()
				}
			}
			if v, ok := l.quantity(d.Epsilon, s, who, false); ok {
				rs.Frozen.Epsilon = v
			}
		}
	}
	if r.OutOfRange != nil {
		rs.OutOfRange = *r.OutOfRange
	}
	if r.BadQuality != nil {
		if *r.BadQuality < 0 {
			l.errorf(r.BadQuality, "must be 0 or more (0 turns the check off)")
		} else {
			rs.BadQuality = *r.BadQuality
		}
	}
}

// checkTrends checks the merged rate, prediction and frozen rules of one
// sensor, pointing at the layer that gave what is wrong.
func (l *loader) checkTrends(s *model.Sensor, poll time.Duration, rs *model.SensorRules, tr *trendSrc) {
	if tr.rate.ptr != nil {
		r := &rs.Rate
		if !r.On() && !tr.rateGiven {
			l.fieldErrorf(tr.rate.ptr, "rise", "give rise, fall or both: the rate, in %s per minute, that raises a prewarning%s", unitOf(s), tr.rate.who)
		}
		w := time.Duration(r.WindowMS) * time.Millisecond
		wAt := tr.rateWindow
		if wAt.ptr == nil {
			wAt = at{tr.rate.ptr, tr.rate.who}
		}
		switch {
		case w < poll:
			l.errorf(wAt.ptr, "window %s is shorter than the poll period %s: a rate needs two readings%s", w, poll, wAt.who)
		case w > maxRateWindowPolls*poll:
			l.errorf(wAt.ptr, "window %s spans more than %d poll periods of %s%s", w, maxRateWindowPolls, poll, wAt.who)
		}
		if db := r.Deadband; db > 0 && tr.rateDeadband.ptr != nil {
			for _, lim := range []float64{r.Rise, r.Fall} {
				if lim > 0 && db >= lim {
					l.errorf(tr.rateDeadband.ptr, "deadband %g must be less than the rate it belongs to (%g)%s", db, lim, tr.rateDeadband.who)
					break
				}
			}
		}
	}
	if tr.pred.ptr != nil {
		has := false
		for _, lim := range rs.Limits {
			has = has || lim.Set
		}
		if !has {
			l.warnf(tr.pred.ptr, "sensor %s has no limit (HH, H, L, LL) for its prediction to reach", s.ID)
		}
	}
	if tr.frozen.ptr != nil && !rs.Frozen.On() {
		l.fieldErrorf(tr.frozen.ptr, "duration", "required: how long the value must stay still to count as frozen%s", tr.frozen.who)
	}
}

func unitOf(s *model.Sensor) string {
	if s.Unit == "" {
		return "the sensor's unit"
	}
	return s.Unit
}

func (d *limitsDoc) specs() map[model.LimitKind]*limitSpec {
	return map[model.LimitKind]*limitSpec{model.HH: &d.HH, model.H: &d.H, model.L: &d.L, model.LL: &d.LL}
}

// quantity resolves an optional quantity (nil: not given) into the
// sensor's unit and checks its sign: more than 0 when positive, else not
// negative. ok is false when it was not given, or is wrong (reported).
func (l *loader) quantity(q *Quantity, s *model.Sensor, who string, positive bool) (float64, bool) {
	if q == nil {
		return 0, false
	}
	v, ok := l.resolve(q, *q, s, who)
	switch {
	case !ok:
		return 0, false
	case positive && v <= 0:
		l.errorf(q, "must be more than 0%s", who)
		return 0, false
	case !positive && v < 0:
		l.errorf(q, "must not be negative%s", who)
		return 0, false
	}
	return v, true
}

// resolve turns a quantity into the sensor's unit. at is where it was written.
func (l *loader) resolve(at any, q Quantity, s *model.Sensor, who string) (float64, bool) {
	switch q.Of {
	case "":
		return q.Value, true
	case "%LEL":
		if s.Kind != model.GasCombustible {
			l.errorf(at, "%%LEL applies to gas_combustible sensors, not %s%s", s.Kind, who)
			return 0, false
		}
		if s.Gas == nil {
			return 0, false // the sensor's gas error is reported already
		}
		return q.Value, true // combustible detectors report in %LEL
	case "%OEL":
		if s.Kind != model.GasToxic {
			l.errorf(at, "%%OEL applies to gas_toxic sensors, not %s%s", s.Kind, who)
			return 0, false
		}
		if s.Gas == nil {
			return 0, false
		}
		mg := q.Value / 100 * s.Gas.OELMgM3
		if s.Unit == "ppm" {
			return mg * s.Gas.PPMPerMgM3, true
		}
		return mg, true
	}
	return 0, false
}

// gasShare expresses v (in the sensor's unit) as %LEL or %OEL.
func gasShare(s *model.Sensor, v float64) float64 {
	if s.Kind == model.GasCombustible {
		return v
	}
	mg := v
	if s.Unit == "ppm" {
		mg = v / s.Gas.PPMPerMgM3
	}
	return mg / s.Gas.OELMgM3 * 100
}

func (l *loader) checkLimits(s *model.Sensor, at *string, rs *model.SensorRules, src [model.NumLimits]*limitSpec) {
	lim := &rs.Limits
	order := func(hi, lo model.LimitKind) {
		if lim[hi].Set && lim[lo].Set && lim[hi].Value <= lim[lo].Value {
			l.errorf(src[hi], "%s (%g) must be above %s (%g) for sensor %s", hi, lim[hi].Value, lo, lim[lo].Value, s.ID)
		}
	}
	order(model.HH, model.H)
	order(model.L, model.LL)
	order(model.H, model.L)
	order(model.HH, model.LL)
	maxima, isGas := gasMax[s.Kind]
	hasLimit := false
	for k := range model.NumLimits {
		if !lim[k].Set {
			continue
		}
		hasLimit = true
		if v := lim[k].Value; v < s.RangeMin || v > s.RangeMax {
			l.warnf(src[k], "%s %g %s lies outside the instrument range %g-%g of sensor %s: it can never be crossed", k, v, s.Unit, s.RangeMin, s.RangeMax, s.ID)
		}
		if !isGas || s.Gas == nil || !k.High() {
			continue
		}
		share := gasShare(s, lim[k].Value)
		unit := "%LEL"
		basis := fmt.Sprintf("LEL %g %%vol, %s", s.Gas.LELPctVol, s.Gas.LELBasis)
		if s.Kind == model.GasToxic {
			unit = "%OEL"
			basis = fmt.Sprintf("%s %g mg/m³", s.Gas.OELKind, s.Gas.OELMgM3)
		}
		if lvl := lim[k].Level; share > maxima[lvl]*(1+1e-9) {
			l.errorf(src[k], "%s = %.4g %s (%s of %s) is above GB/T 50493-2019 §5.5's %s maximum of %g %s for sensor %s",
				k, share, unit, basis, s.Gas.CAS, lvl, maxima[lvl], unit, s.ID)
		}
	}
	if s.Kind.IsGas() && !hasLimit {
		l.warnf(at, "gas detector %s has no alarm limits", s.ID)
	}
}
