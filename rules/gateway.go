package rules

import (
	"time"

	"hazardwatch/internal/model"
)

// Gateway silence (网关离线): when a gateway's uplink is cut, every sensor
// behind it goes quiet at once, and one `offline` alarm per sensor would
// bury the one cause under dozens of alarms. So a gateway has a silence
// condition of its own (rule gateway_silent, class offline, Sensor -1 and
// Gateway its index): none of its sensors heard, whatever the quality, for
// its window, SilentPeriods (model.GatewayRules) × the shortest poll
// period of its sensors' devices (the gateway's own unless every device
// polls slower), as of Tick.
//
// While it is raised its sensors raise no `silent` of their own; one
// raised before stays as it is. A live reading of any of its sensors ends
// it; a late (replayed) one does not, for the reason Eval gives for
// sensors. A sensor that stays quiet after its gateway is back raises its
// own `silent` as before.
//
// A sensor whose own window ends first (its poll period is the gateway's
// shortest, or it has fewer silent periods) waits for the gateway to
// decide while nothing has come from the gateway since the sensor's next
// reading was due: its silence may be the gateway's. The wait ends either
// way, since a gateway that sends nothing reaches its own window. After a
// gateway's silence a sensor's own window counts from the gateway's
// return: while the gateway was away nothing could be heard from it, and
// its devices need not answer in the first message after it.
//
// Eval pays nothing for it on the common path: the gateway's newest
// reading is found in Tick from its sensors' own, and a silent gateway
// marks each of its sensors (a bit of sensorState.offline), so that the
// one test Eval already makes for an offline sensor covers both.

// Bits of sensorState.offline.
const (
	sensorOffline  uint8 = 1 << iota // the sensor's own silent is raised
	gatewayOffline                   // its gateway's gateway_silent is raised
)

type gatewayState struct {
	// heard is the newest reading of any of its sensors as of the last
	// Tick; since is what heard was when the gateway went silent (never
	// when seeded by Assume without one); back is the reading that ended
	// its last silence (never before).
	heard, since, back int64
	offline            bool
}

// initGateways sizes the gateways' tables for plant p with gs[g] the rules
// of gateway g; a gateway beyond the end of gs is not checked.
func (e *Engine) initGateways(p *model.Plant, gs []model.GatewayRules) {
	ng := len(p.Gateways)
	e.gws = make([]gatewayState, ng)
	e.gwSilentMS = make([]int64, ng)
	e.gwStart = make([]int32, ng+1)
	for i := range e.gwOf {
		if g := e.gwOf[i]; g >= 0 {
			e.gwStart[g+1]++
		}
	}
	for g := range ng {
		e.gwStart[g+1] += e.gwStart[g]
	}
	e.gwMembers = make([]int32, e.gwStart[ng])
	next := append([]int32(nil), e.gwStart[:ng]...)
	for i, g := range e.gwOf {
		if g >= 0 {
			e.gwMembers[next[g]] = int32(i)
			next[g]++
		}
	}
	for g := range ng {
		e.gws[g] = gatewayState{heard: never, since: never, back: never}
		if g >= len(gs) {
			continue
		}
		shortest := int64(0)
		for _, i := range e.members(int32(g)) {
			if poll := e.pollMS[i]; poll > 0 && (shortest == 0 || poll < shortest) {
				shortest = poll
			}
		}
		e.gwSilentMS[g] = silentWindow(shortest, gs[g].SilentPeriods)
	}
}

func (e *Engine) members(g int32) []int32 { return e.gwMembers[e.gwStart[g]:e.gwStart[g+1]] }

// GatewaySilentWindow returns gateway g's silence window; 0 when it is not
// checked.
func (e *Engine) GatewaySilentWindow(g int32) time.Duration {
	return time.Duration(e.gwSilentMS[g]) * time.Millisecond
}

// tickGateway brings gateway g's newest reading up to date and raises its
// silence when its window has passed.
func (e *Engine) tickGateway(g int32, ms int64, out []model.Transition) []model.Transition {
	w, gs := e.gwSilentMS[g], &e.gws[g]
	if w <= 0 || gs.offline {
		return out
	}
	heard := gs.heard
	for _, i := range e.members(g) {
		heard = max(heard, e.st[i].heard)
	}
	if heard == never {
		heard = ms // silence counts from the first Tick, as for sensors
	}
	gs.heard = heard
	if ms-heard < w {
		return out
	}
	gs.offline, gs.since = true, heard
	e.markGateway(g, true)
	return append(out, model.Transition{
		Sensor: -1, Gateway: g, Rule: model.GatewaySilent, Class: model.ClassOffline, Active: true,
		Value: float64(ms-heard) / 1000, Limit: float64(w) / 1000, TS: ms,
	})
}

// waitsForGateway reports whether sensor i, silent for its window as of
// ms, is to leave the decision to its gateway: the gateway is checked and
// nothing came from it since the sensor's next reading was due, or it came
// back less than the sensor's window ago.
func (e *Engine) waitsForGateway(i int, ms int64) bool {
	g := e.gwOf[i]
	if g < 0 || e.gwSilentMS[g] <= 0 {
		return false
	}
	gs := &e.gws[g]
	return gs.heard-e.st[i].heard < e.pollMS[i] || gs.back != never && ms-gs.back < e.silentMS[i]
}

// markGateway sets or clears the gateway bit of each of g's sensors.
func (e *Engine) markGateway(g int32, on bool) {
	for _, i := range e.members(g) {
		if on {
			e.st[i].offline |= gatewayOffline
		} else {
			e.st[i].offline &^= gatewayOffline
		}
	}
}

// heardAgain ends the offline conditions a live reading of a marked sensor
// ends: its gateway's, then its own, whose value is the seconds since the
// sensor was heard before (prev).
func (e *Engine) heardAgain(st *sensorState, r model.Reading, prev int64, out []model.Transition) []model.Transition {
	i := r.SensorIdx
	if st.offline&gatewayOffline != 0 {
		g := e.gwOf[i]
		gs := &e.gws[g]
		gs.offline, gs.back = false, r.TS
		e.markGateway(g, false)
		t := model.Transition{
			Sensor: -1, Gateway: g, Rule: model.GatewaySilent, Class: model.ClassOffline,
			Limit: float64(e.gwSilentMS[g]) / 1000, TS: r.TS,
		}
		if gs.since != never {
			t.Value = float64(r.TS-gs.since) / 1000
		}
		out = append(out, t)
	}
	if st.offline&sensorOffline != 0 {
		st.offline &^= sensorOffline
		t := model.Transition{
			Sensor: i, Rule: model.Silent, Class: model.ClassOffline,
			Limit: float64(e.silentMS[i]) / 1000, TS: r.TS,
		}
		if prev != never && r.TS > prev {
			t.Value = float64(r.TS-prev) / 1000
		}
		out = append(out, t)
	}
	return out
}

// assumeGateway seeds a gateway's silence: raised, it ends at the first
// live reading of any of its sensors.
func (e *Engine) assumeGateway(t model.Transition) bool {
	g := t.Gateway
	if g < 0 || int(g) >= len(e.gws) || e.gwSilentMS[g] <= 0 {
		return !t.Active && g >= 0 && int(g) < len(e.gws)
	}
	gs := &e.gws[g]
	gs.offline, gs.since = t.Active, never
	if t.Active && t.TS > 0 {
		gs.since = t.TS - int64(t.Value*1000)
	}
	e.markGateway(g, t.Active)
	return true
}

// carryGateways moves the gateways' state from e to the fresh engine n of
// a reload: a silent gateway stays silent while it is still checked, and
// ends at the reload when it no longer is.
func (e *Engine) carryGateways(n *Engine, ts int64, out []model.Transition) []model.Transition {
	for g := range n.gws {
		old := e.gws[g]
		n.gws[g].heard = old.heard
		if !old.offline {
			continue
		}
		if n.gwSilentMS[g] > 0 {
			n.gws[g] = old
			n.markGateway(int32(g), true)
			continue
		}
		out = append(out, model.Transition{
			Sensor: -1, Gateway: int32(g), Rule: model.GatewaySilent, Class: model.ClassOffline,
			Limit: float64(e.gwSilentMS[g]) / 1000, TS: ts,
		})
	}
	return out
}
