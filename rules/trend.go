package rules

import "hazardwatch/internal/model"

// point is one reading kept in a window: its time (Unix ms) and value.
type point struct {
	ts int64
	v  float64
}

// ring is a window of readings, oldest first, in the engine's pts. It
// holds indexes only, so a state that holds one stays small and copyable;
// the points live in one slice allocated at New.
//
// The rings of one size are laid out by time, not one after the other:
// slot i of the ring in column col is pts[off + i·stride + col], stride
// being the number of rings of that size. Sensors read once a cycle push
// their readings in step, so the rules stage, going through a cycle's
// readings in plant order, writes and reads their rings' slots in
// sequence, where a ring of its own for each sensor would make every
// reading a cache miss somewhere in 70 MB of windows for 100 000 sensors
// (docs/PERFORMANCE.md).
type ring struct {
	off, stride, col int32
	size             int32
	head             int32 // where the next point goes
	n                int32 // points held
}

// slot is where slot i of the ring lies in pts.
func (g *ring) slot(i int32) int32 { return g.off + i*g.stride + g.col }

func (g *ring) at(pts []point, k int32) *point { // k-th oldest, 0 ≤ k < n
	i := g.head - g.n + k
	if i < 0 {
		i += g.size
	}
	return &pts[g.slot(i)]
}

// push appends p, dropping the oldest point when the ring is full, and
// reports the dropped point.
func (g *ring) push(pts []point, p point) (dropped point, full bool) {
	slot := &pts[g.slot(g.head)]
	if g.n == g.size {
		dropped, full = *slot, true
	} else {
		g.n++
	}
	*slot = p
	if g.head++; g.head == g.size {
		g.head = 0
	}
	return dropped, full
}

// ---- Rate of change ----------------------------------------------------
//
// The class of a rate of change is `prewarning`, not `alarm`. SPEC §4 keeps
// `alarm` for a limit of the value crossed (GB/T 50493's L1/L2 are levels
// of such limits, and H/HH carry them) and names trends under `prewarning`.
// A level rising at 1 m/min or a pressure jumping 1 MPa in seconds is still
// inside its limits; what it says is that it will not stay there, which is
// a prewarning's meaning. It also ranks below the H/HH alarm that follows
// when the change goes on (priority 3–4 against 1–3), so a surge shows the
// operator the prewarning first and the limit alarm above it seconds later,
// and a fast change that stops in time leaves no alarm of the value.

// rateState is one sensor's rate of change: its window and each direction.
type rateState struct {
	pts        ring
	rise, fall rateCond
}

// rateCond is one direction of a rate.
type rateCond struct {
	active bool
	// since is the TS of the first reading of the current run at or past
	// the limit; never outside such a run.
	since int64
}

func newRateState(size int) rateState {
	return rateState{
		pts:  ring{size: int32(size)},
		rise: rateCond{since: never}, fall: rateCond{since: never},
	}
}

// maxRatePoints bounds one rate's window; the loader keeps windows within
// 1 000 poll periods, which needs at most 2 002.
const maxRatePoints = 4096

// rateCap is how many readings a rate's window keeps: twice the polls the
// window spans and two more, so that a poll that comes early or a device
// polled faster than planned still leaves a reading at or before the
// window's start.
func rateCap(windowMS, pollMS int64) int {
	if pollMS <= 0 {
		pollMS = 1000
	}
	n := 2*((windowMS+pollMS-1)/pollMS) + 2
	return int(min(max(n, 4), maxRatePoints))
}

// evalRate adds r to the window and judges the rate: the change from the
// newest reading at or before r.TS − window to r, per minute. Until the
// window holds such a reading there is no rate and nothing changes; a full
// window (readings faster than the poll period planned) uses its oldest.
func (e *Engine) evalRate(s *rateState, rr *model.RateRule, r model.Reading, out []model.Transition) []model.Transition {
	s.pts.push(e.pts, point{r.TS, r.Value})
	start := r.TS - rr.WindowMS
	// Keep one reading at or before the start, and drop the ones before it.
	for s.pts.n >= 2 && s.pts.at(e.pts, 1).ts <= start {
		s.pts.n--
	}
	ref := s.pts.at(e.pts, 0)
	if s.pts.n < 2 || (ref.ts > start && s.pts.n < s.pts.size) {
		return out
	}
	rate := (r.Value - ref.v) / float64(r.TS-ref.ts) * 60_000
	out = rateStep(&s.rise, rr.Rise, rr, rate, model.RateRise, r, out)
	out = rateStep(&s.fall, rr.Fall, rr, -rate, model.RateFall, r, out)
	return out
}

// rateStep advances one direction; rate is signed so that more is worse
// (the fall direction gets the rate negated), and the transition carries
// it so: positive while the value moves the rule's way.
func rateStep(c *rateCond, limit float64, rr *model.RateRule, rate float64, rule model.RuleKind, r model.Reading, out []model.Transition) []model.Transition {
	if limit <= 0 {
		return out
	}
	if c.active {
		if rate >= limit-rr.Deadband {
			return out
		}
		c.active, c.since = false, never
		return append(out, model.Transition{
			Sensor: r.SensorIdx, Rule: rule, Class: model.ClassPrewarning,
			Value: rate, Limit: limit, TS: r.TS, Late: r.Late,
		})
	}
	if rate < limit {
		c.since = never
		return out
	}
	if c.since == never {
		c.since = r.TS
	}
	if r.TS-c.since < rr.OnDelayMS {
		return out
	}
	c.active = true
	return append(out, model.Transition{
		Sensor: r.SensorIdx, Rule: rule, Class: model.ClassPrewarning, Active: true,
		Value: rate, Limit: limit, TS: r.TS, Late: r.Late,
	})
}

// ---- Prediction ----------------------------------------------------------
//
// The fit and why it is least squares: see the package documentation.

// predState is one sensor's trend: the last Window readings, and the sums
// of two least-squares fits, one over the whole window and one over its
// newest quarter, relative to an origin (t0, v0) so that the sums stay
// small: x = (ts − t0) in seconds, y = v − v0.
type predState struct {
	pts              ring
	short            int32 // readings in the short fit
	t0               int64
	v0               float64
	all, last        sums
	hi, lo           predCond
	hiStage, loStage int8 // the limits the value has reached, with the deadband as hysteresis
	started          bool
}

// sums are what a least-squares line needs.
type sums struct{ x, y, xx, xy, yy float64 }

func (m *sums) add(x, y, sign float64) {
	m.x += sign * x
	m.y += sign * y
	m.xx += sign * x * x
	m.xy += sign * x * y
	m.yy += sign * y * y
}

// line is the least-squares line through n points: its slope, the spread
// of the times (Σ(x − x̄)²), and the squared residuals; ok is false when
// the times do not spread.
func (m *sums) line(n float64) (slope, sxx, sse float64, ok bool) {
	sxx = m.xx - m.x*m.x/n
	if !(sxx > 0) {
		return 0, 0, 0, false
	}
	sxy := m.xy - m.x*m.y/n
	slope = sxy / sxx
	return slope, sxx, max(m.yy-m.y*m.y/n-slope*sxy, 0), true
}

// predCond is one direction of a prediction.
type predCond struct {
	active bool
	// target is the stage (1: H or L, 2: HH or LL) whose limit the raised
	// prediction names.
	target int8
	// rest counts the readings before a prediction cancelled by its trend
	// may be raised again.
	rest int32
}

// significance is the t statistic a slope must reach to be believed: the
// slope at least three times its standard error.
const significance = 3

// clearHorizon: a raised prediction is cancelled when the crossing moves
// beyond the horizon by a quarter, so that an ETA hovering at the horizon
// does not chatter.
const clearHorizon = 1.25

// minShort is the fewest readings in the short fit.
const minShort = 5

func newPredState(window int) predState {
	return predState{pts: ring{size: int32(window)}, short: int32(min(max(window/4, minShort), window))}
}

// layoutRings places every rate's and prediction's ring in pts, by size
// and in sensor order within a size (see ring), and returns how many
// points they need.
func layoutRings(rings []*ring) int {
	count := map[int32]int32{} // rings of each size
	for _, g := range rings {
		g.col = count[g.size]
		count[g.size]++
	}
	off, base := 0, map[int32]int32{}
	for _, g := range rings {
		if _, ok := base[g.size]; !ok {
			base[g.size] = int32(off)
			off += int(g.size) * int(count[g.size])
		}
		g.off, g.stride = base[g.size], count[g.size]
	}
	return off
}

// copyRing copies the points and position of ring src (in spts) to ring
// dst (in dpts), of the same size.
func copyRing(dst *ring, dpts []point, src *ring, spts []point) {
	for i := range src.size {
		dpts[dst.slot(i)] = spts[src.slot(i)]
	}
	dst.head, dst.n = src.head, src.n
}

// rebase recomputes the sums exactly from the ring against its oldest
// reading: incremental sums lose a little to rounding with every reading
// that leaves, and times measured from one fixed origin would grow without
// bound.
func (s *predState) rebase(pts []point) {
	first := s.pts.at(pts, 0)
	s.t0, s.v0 = first.ts, first.v
	s.all, s.last = sums{}, sums{}
	for k := range s.pts.n {
		p := s.pts.at(pts, k)
		x, y := float64(p.ts-s.t0)/1000, p.v-s.v0
		s.all.add(x, y, 1)
		if k >= s.pts.n-s.short {
			s.last.add(x, y, 1)
		}
	}
}

// evalPrediction adds r to the trend and judges each direction.
func (e *Engine) evalPrediction(s *predState, rs *model.SensorRules, r model.Reading, out []model.Transition) []model.Transition {
	if !s.started {
		s.started, s.t0, s.v0 = true, r.TS, r.Value
	}
	old, full := s.pts.push(e.pts, point{r.TS, r.Value})
	if full {
		s.all.add(float64(old.ts-s.t0)/1000, old.v-s.v0, -1)
	}
	x, y := float64(r.TS-s.t0)/1000, r.Value-s.v0
	s.all.add(x, y, 1)
	s.last.add(x, y, 1)
	if s.pts.n > s.short {
		p := s.pts.at(e.pts, s.pts.n-s.short-1)
		s.last.add(float64(p.ts-s.t0)/1000, p.v-s.v0, -1)
	}
	if s.pts.head == 0 {
		s.rebase(e.pts)
	}

	// The fits, once the window is full.
	f := fit{}
	if n := float64(s.pts.n); s.pts.n == s.pts.size {
		if b, sxx, sse, ok := s.all.line(n); ok {
			f = fit{ok: true, slope: b, at: s.v0 + s.all.y/n + b*(x-s.all.x/n), sig: significant(b, sxx, sse, n)}
			k := float64(s.short)
			if b, sxx, sse, ok := s.last.line(k); ok {
				f.recent, f.recentAt = b, s.v0+s.last.y/k+b*(x-s.last.x/k)
				f.recentSig = significant(b, sxx, sse, k)
			}
		}
	}
	s.hiStage = raw(s.hiStage, rs, &highLimits, true, r.Value)
	s.loStage = raw(s.loStage, rs, &lowLimits, false, r.Value)
	out = predict(&s.hi, s.hiStage, rs, &highLimits, f, model.PredictHigh, r, out)
	f.slope, f.at, f.recent, f.recentAt = -f.slope, -f.at, -f.recent, -f.recentAt
	out = predict(&s.lo, s.loStage, rs, &lowLimits, f, model.PredictLow, r, out)
	return out
}

// significant reports whether a slope is at least `significance` times
// its standard error, √(sse/(n−2)/sxx); squared, so no square root.
func significant(slope, sxx, sse, n float64) bool {
	return slope*slope*sxx*(n-2) >= significance*significance*sse
}

// fit is what two lines say: one through the whole window, and one through
// its newest quarter (at least minShort readings).
//
// The whole window decides: a prediction is raised when its slope is
// significant and its line reaches the limit within the horizon, and
// cancelled on it. Over N readings the noise of a transmitter averages
// out; a line through a few seconds of smoothly wandering noise is often
// steep and "significant", and would predict limits that nothing
// approaches. But the whole window lags a change of trend by about half a
// window: when a level starts to rise, its slope is a fraction of the rise
// at first, and when a level that rose turns back, it still points up. So
// the newest readings must head for the limit too before anything is
// raised, and the ETA is read from their line when its slope is
// significant (and its crossing within the horizon): it is the better
// estimate of where the value heads now. The demo's LPG sphere is
// predicted 76 s before it reaches H with an ETA within 6 s of the
// crossing, where the whole window's line put it near the end of the 4 min
// horizon, almost 3 min late.
type fit struct {
	ok        bool    // the window is full and its times are not all equal
	slope, at float64 // the whole window's line: unit/s, and its value at the newest reading
	sig       bool    // its slope is significant
	// The newest readings' line, and whether its slope is significant.
	recent, recentAt float64
	recentSig        bool
}

// nextStage is the first stage above reached whose limit is set; 0 when
// the value has reached every limit of that side.
func nextStage(reached int8, rs *model.SensorRules, kinds *[numStages]model.LimitKind) int8 {
	for s := reached + 1; s < numStages; s++ {
		if rs.Limits[kinds[s]].Set {
			return s
		}
	}
	return 0
}

// predict advances one direction. The fit is signed so that rising is
// towards the limits (the low side gets it negated, and its limits too).
//
// A prediction is raised when the value has not reached the next limit,
// the window's slope is significant and towards it, the newest readings
// head that way too, and the window's line reaches the limit within the
// horizon; it carries the ETA of the newest readings' line when that is
// significant (see fit). It is cancelled when the value reaches that limit
// (the threshold alarm takes over; a prediction of the next limit may
// follow from the next reading), when the window's slope turns, or when
// its crossing moves beyond the horizon by a quarter; after a cancel that
// is not a crossing, the side rests for a window of readings. A slope
// that loses its significance cancels nothing by itself: that, the wider
// horizon and the rest are the hysteresis that keeps a real but noisy
// trend from chattering. Until the window is full nothing is raised, and a
// raised prediction (seeded by Assume) is only cancelled by a crossing.
func predict(c *predCond, reached int8, rs *model.SensorRules, kinds *[numStages]model.LimitKind, f fit, rule model.RuleKind, r model.Reading, out []model.Transition) []model.Transition {
	target := nextStage(reached, rs, kinds)
	t := model.Transition{Sensor: r.SensorIdx, Rule: rule, Class: model.ClassPrewarning, Value: r.Value, TS: r.TS, Late: r.Late}
	horizon := float64(rs.Prediction.HorizonMS)
	if c.active {
		if target == c.target && (!f.ok || f.slope > 0 && etaMS(rs, kinds, target, rule, f.slope, f.at) <= clearHorizon*horizon) {
			return out
		}
		c.active = false
		if target == c.target {
			// The trend let go. Where a trend ends the newest readings
			// wander: the side rests for a window of readings before it
			// predicts again.
			c.rest = int32(rs.Prediction.Window)
		}
		t.Limit = rs.Limits[kinds[c.target]].Value
		return append(out, t)
	}
	if c.rest > 0 {
		c.rest--
		return out
	}
	if !f.ok || !f.sig || target == 0 || f.slope <= 0 || f.recent <= 0 {
		return out
	}
	eta := etaMS(rs, kinds, target, rule, f.slope, f.at)
	if eta > horizon {
		return out
	}
	if f.recentSig {
		// The newest readings' ETA, unless they say beyond the horizon (a
		// trend that slows): then the window's, which is within it.
		if e := etaMS(rs, kinds, target, rule, f.recent, f.recentAt); e <= horizon {
			eta = e
		}
	}
	c.active, c.target = true, target
	t.Active, t.Limit, t.ETA = true, rs.Limits[kinds[target]].Value, r.TS+int64(eta)
	return append(out, t)
}

// etaMS is how long, in ms, a line of slope (> 0) through at (its value at
// the newest reading) takes to the limit of stage target; 0 when it is past
// it already.
func etaMS(rs *model.SensorRules, kinds *[numStages]model.LimitKind, target int8, rule model.RuleKind, slope, at float64) float64 {
	limit := rs.Limits[kinds[target]].Value
	if rule == model.PredictLow {
		limit = -limit
	}
	return max(limit-at, 0) / slope * 1000
}

// assumePrediction seeds a raised prediction from the alarm log: the
// limit it named gives its stage.
func assumePrediction(s *predState, rs *model.SensorRules, t model.Transition) bool {
	c, kinds := &s.hi, &highLimits
	if t.Rule == model.PredictLow {
		c, kinds = &s.lo, &lowLimits
	}
	if !t.Active {
		*c = predCond{}
		return true
	}
	for st := int8(1); st < numStages; st++ {
		if l := rs.Limits[kinds[st]]; l.Set && l.Value == t.Limit {
			*c = predCond{active: true, target: st}
			return true
		}
	}
	return false
}
