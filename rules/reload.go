package rules

import (
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// Reload replaces the engine's rules with rs and gs, compiled for the same
// plant p (the same sensors in the same order: a changed plant needs a
// restart),
// and appends to out the transitions the change itself causes.
//
// What the sensors have told so far survives: every condition the new
// rules still have keeps its state, so a raised H alarm stays raised while
// the sensor still has an H limit, and the runs its on- and off-delays
// measure keep running (the next reading judges them against the new
// limits and delays). A raised condition the new rules no longer have ends
// with a return, TS now, so that its alarm ends cleanly downstream; such a
// return carries no reading (Value 0). A raised HH whose HH limit was
// removed falls to H when H is still set (a level change), and a kept stage
// whose level was edited changes level at once.
//
// A rate or prediction whose window is unchanged keeps its window of
// readings; one whose window changed starts an empty one, keeping a raised
// condition raised until the new window shows it over (as Assume does).
// A voting group keeps its confirmed alarm while a group is still carried by
// the same sensor; its votes are recounted from the members' conditions. A
// stop-order violation keeps its state and, while its baseline is still
// learned, what was learned; an SIS bypass keeps its state. A silent
// gateway stays silent while it is still checked.
//
// Reload allocates the new tables; like Eval it belongs to the engine's own
// goroutine and must never run beside Eval or Tick. The counters are kept.
func (e *Engine) Reload(p *model.Plant, rs []model.SensorRules, gs []model.GatewayRules, now time.Time, out []model.Transition) ([]model.Transition, error) {
	if len(p.Sensors) != len(e.st) || len(p.Gateways) != len(e.gws) {
		return out, fmt.Errorf("rules: reload for a plant of %d sensors and %d gateways, the engine has %d and %d: a changed plant needs a restart",
			len(p.Sensors), len(p.Gateways), len(e.st), len(e.gws))
	}
	n := New(p, rs, gs)
	ts := now.UnixMilli()
	for i := range n.st {
		out = e.carry(n, int32(i), ts, out)
	}
	out = e.carryGateways(n, ts, out)
	for i := range n.st {
		n.recount(&n.st[i])
	}
	for _, g := range e.groups {
		if !g.confirmed {
			continue
		}
		if ng := n.st[g.carrier].group; ng >= 0 && n.groups[ng].carrier == g.carrier {
			n.groups[ng].confirmed = true // returns at a member's reading if fewer than K vote now
			continue
		}
		out = append(out, model.Transition{
			Sensor: g.carrier, Rule: model.Voted, Class: model.ClassAlarm, Level: model.L2,
			Value: float64(g.votes), Limit: float64(g.k), TS: ts,
		})
	}
	e.rules, e.silentMS, e.st = n.rules, n.silentMS, n.st
	e.gwOf, e.pollMS, e.gwSilentMS, e.gws, e.gwMembers, e.gwStart = n.gwOf, n.pollMS, n.gwSilentMS, n.gws, n.gwMembers, n.gwStart
	e.rates, e.preds, e.frozen, e.pts, e.groups = n.rates, n.preds, n.frozen, n.pts, n.groups
	e.powers, e.sises = n.powers, n.sises
	return out, nil
}

// carry moves sensor i's state from e to the fresh engine n, appending the
// returns of the conditions n's rules no longer have.
func (e *Engine) carry(n *Engine, i int32, ts int64, out []model.Transition) []model.Transition {
	old, nw := &e.st[i], &n.st[i]
	ors, nrs := &e.rules[i], &n.rules[i]
	end := func(rule model.RuleKind, class model.AlarmClass, limit float64) {
		out = append(out, model.Transition{Sensor: i, Rule: rule, Class: class, Limit: limit, TS: ts})
	}
	nw.lastTS, nw.qualTS, nw.heard = old.lastTS, old.qualTS, old.heard
	if old.offline&sensorOffline != 0 {
		if n.silentMS[i] > 0 {
			nw.offline |= sensorOffline
		} else {
			end(model.Silent, model.ClassOffline, float64(e.silentMS[i])/1000)
		}
	}
	if old.outOfRange {
		if nw.oorOn {
			nw.outOfRange = true
		} else {
			end(model.OutOfRange, model.ClassFault, 0)
		}
	}
	if nw.badLimit > 0 {
		nw.badActive, nw.badRun = old.badActive, min(old.badRun, nw.badLimit)
	} else if old.badActive {
		end(model.BadQuality, model.ClassFault, float64(old.badLimit))
	}
	nw.hi, out = carryCond(old.hi, i, ors, nrs, &highLimits, model.ThresholdHigh, ts, out)
	nw.lo, out = carryCond(old.lo, i, ors, nrs, &lowLimits, model.ThresholdLow, ts, out)

	if old.rate >= 0 {
		was := &e.rates[old.rate]
		if nw.rate >= 0 {
			ns := &n.rates[nw.rate]
			if ns.pts.size == was.pts.size && ors.Rate.WindowMS == nrs.Rate.WindowMS {
				copyRing(&ns.pts, n.pts, &was.pts, e.pts)
				ns.rise, ns.fall = was.rise, was.fall
			} else {
				ns.rise.active, ns.fall.active = was.rise.active, was.fall.active
			}
		}
		if was.rise.active && (nw.rate < 0 || nrs.Rate.Rise <= 0) {
			end(model.RateRise, model.ClassPrewarning, ors.Rate.Rise)
			if nw.rate >= 0 {
				n.rates[nw.rate].rise = rateCond{since: never}
			}
		}
		if was.fall.active && (nw.rate < 0 || nrs.Rate.Fall <= 0) {
			end(model.RateFall, model.ClassPrewarning, ors.Rate.Fall)
			if nw.rate >= 0 {
				n.rates[nw.rate].fall = rateCond{since: never}
			}
		}
	}

	if old.pred >= 0 {
		was := &e.preds[old.pred]
		var ns *predState
		if nw.pred >= 0 {
			ns = &n.preds[nw.pred]
			if ns.pts.size == was.pts.size {
				keep := ns.pts
				copyRing(&keep, n.pts, &was.pts, e.pts)
				*ns = *was
				ns.pts = keep
			} else {
				ns.hi, ns.lo = predCond{active: was.hi.active, target: was.hi.target}, predCond{active: was.lo.active, target: was.lo.target}
			}
		}
		// A raised prediction names a limit; without it (or without the
		// rule) it ends.
		for _, d := range [...]struct {
			rule  model.RuleKind
			kinds *[numStages]model.LimitKind
			oc    predCond
		}{{model.PredictHigh, &highLimits, was.hi}, {model.PredictLow, &lowLimits, was.lo}} {
			if !d.oc.active || ns != nil && nrs.Limits[d.kinds[d.oc.target]].Set {
				continue
			}
			end(d.rule, model.ClassPrewarning, ors.Limits[d.kinds[d.oc.target]].Value)
			if ns != nil {
				if d.rule == model.PredictHigh {
					ns.hi = predCond{}
				} else {
					ns.lo = predCond{}
				}
			}
		}
	}

	if old.frozen >= 0 {
		was := e.frozen[old.frozen]
		if nw.frozen >= 0 {
			n.frozen[nw.frozen] = was
		} else if was.active {
			end(model.Frozen, model.ClassFault, float64(ors.Frozen.DurationMS)/1000)
		}
	}
	if old.power >= 0 {
		was := e.powers[old.power]
		if nw.power >= 0 {
			ns := &n.powers[nw.power]
			if nrs.StopOrder.BaselineKW <= 0 && ors.StopOrder.BaselineKW <= 0 {
				// Still learned: what was learned so far stays.
				ns.baseline, ns.admitted, ns.learning, ns.learnEnd = was.baseline, was.admitted, was.learning, was.learnEnd
			}
			ns.active, ns.since = was.active, was.since
		} else if was.active {
			end(model.StopOrder, model.ClassViolation, was.baseline)
		}
	}
	if old.sis >= 0 {
		was := e.sises[old.sis]
		if nw.sis >= 0 {
			n.sises[nw.sis] = was
		} else if was.active {
			end(model.SISBypass, model.ClassViolation, 0)
		}
	}
	return out
}

// carryCond keeps one direction's condition under new rules: its stage
// while that stage's limit is still set, else the highest set stage below
// it (a level change), else normal (a return). The runs the delays
// measure are kept as they are.
func carryCond(c cond, i int32, ors, nrs *model.SensorRules, kinds *[numStages]model.LimitKind, rule model.RuleKind, ts int64, out []model.Transition) (cond, []model.Transition) {
	if c.stage == 0 {
		return c, out
	}
	s := c.stage
	for s >= 1 && !nrs.Limits[kinds[s]].Set {
		s--
	}
	oldLevel := levelOf(ors.Limits[kinds[c.stage]], kinds[c.stage])
	t := model.Transition{Sensor: i, Rule: rule, Class: model.ClassAlarm, TS: ts}
	if s > 0 {
		l := nrs.Limits[kinds[s]]
		if s == c.stage && levelOf(l, kinds[s]) == oldLevel {
			return c, out
		}
		t.Active, t.Level, t.Limit = true, levelOf(l, kinds[s]), l.Value
	} else {
		// Like step's return: the level that ended and the outermost limit.
		t.Level = oldLevel
		for st := int8(1); st < numStages; st++ {
			if l := ors.Limits[kinds[st]]; l.Set {
				t.Limit = l.Value
				break
			}
		}
	}
	c.stage = s
	return c, append(out, t)
}
