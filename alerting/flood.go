package alerting

import (
	"cmp"
	"slices"
	"time"

	"hazardwatch/internal/model"
)

// Flood detection (DOMAIN.md, EEMUA 191): more than Policy's Flood.Count
// new alarms within Flood.Window in one operator's scope, an enterprise (its
// control room) or a park (the park's control room), is a flood. The
// operator is told (a flag pushed to subscribers, the page's banner) and
// the page orders alarms by priority, which it always does; nothing is
// dropped or held back: a flood is when the alarm that matters must still
// be seen.
//
// New alarms are occurrences raised in view (not under a suppression or
// out of service), counted at the centre's time of their event, so the
// detector rebuilds exactly from the log at start. A flood ends when the
// window holds no more than half the threshold: the hysteresis keeps a
// busy console from flapping in and out of it.

// Flood is the state of one scope.
type Flood struct {
	// Scope is "enterprise" or "park"; ID the enterprise's or park's id.
	Scope string `json:"scope"`
	ID    string `json:"id"`
	// Active: the scope is in a flood now. Since is when it began (zero
	// when none ever did); Until when the last one ended (zero while on).
	Active bool      `json:"active"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	// Count is the new alarms within the window now; Peak the most within
	// it during the flood.
	Count int `json:"count"`
	Peak  int `json:"peak"`
}

// FloodPeriod is a flood that has ended, for the duty report.
type FloodPeriod struct {
	Scope, ID    string
	Since, Until time.Time
	Peak         int
}

// maxFloodPeriods bounds the ended floods kept in memory.
const maxFloodPeriods = 1000

type floodScope struct {
	Flood
	times []time.Time // new alarms within the window, oldest first
}

// floods is the detector, owned by the Manager's Run goroutine; the
// Manager publishes its changes under its lock.
type floods struct {
	w      model.Window
	scopes map[[2]string]*floodScope
	ended  []FloodPeriod
}

func newFloods(w model.Window) *floods {
	return &floods{w: w, scopes: map[[2]string]*floodScope{}}
}

// on reports whether flood detection is on.
func (f *floods) on() bool { return f.w.Count > 0 && f.w.Window > 0 }

// add counts a new alarm of scope at t and returns the scope's state when
// it changed from not flooding to flooding.
func (f *floods) add(scope, id string, t time.Time) (Flood, bool) {
	if !f.on() || id == "" {
		return Flood{}, false
	}
	k := [2]string{scope, id}
	s := f.scopes[k]
	if s == nil {
		s = &floodScope{Flood: Flood{Scope: scope, ID: id}}
		f.scopes[k] = s
	}
	s.prune(t, f.w.Window)
	s.times = append(s.times, t)
	s.Count = len(s.times)
	if s.Active {
		s.Peak = max(s.Peak, s.Count)
		return s.Flood, false
	}
	if s.Count > f.w.Count {
		s.Active, s.Since, s.Until, s.Peak = true, t, time.Time{}, s.Count
		return s.Flood, true
	}
	return s.Flood, false
}

// expire ends the floods whose window has emptied enough by now and
// returns them.
func (f *floods) expire(now time.Time) []Flood {
	var out []Flood
	for k, s := range f.scopes {
		s.prune(now, f.w.Window)
		s.Count = len(s.times)
		if s.Active && s.Count <= f.w.Count/2 {
			s.Active, s.Until = false, now
			f.ended = append(f.ended, FloodPeriod{Scope: s.Scope, ID: s.ID, Since: s.Since, Until: now, Peak: s.Peak})
			if len(f.ended) > maxFloodPeriods {
				f.ended = slices.Delete(f.ended, 0, len(f.ended)-maxFloodPeriods)
			}
			out = append(out, s.Flood)
		}
		if !s.Active && s.Count == 0 {
			delete(f.scopes, k)
		}
	}
	SortFloods(out)
	return out
}

// next is when expire may next end a flood or forget a scope: the oldest
// new alarm's end of window.
func (f *floods) next() (time.Time, bool) {
	var at time.Time
	for _, s := range f.scopes {
		if len(s.times) > 0 {
			if t := s.times[0].Add(f.w.Window); at.IsZero() || t.Before(at) {
				at = t
			}
		}
	}
	return at, !at.IsZero()
}

// active lists the scopes in a flood now.
func (f *floods) active() []Flood {
	var out []Flood
	for _, s := range f.scopes {
		if s.Active {
			out = append(out, s.Flood)
		}
	}
	SortFloods(out)
	return out
}

// SortFloods orders floods by start, then scope and id, so that
// simultaneous ones come in the same order on every run.
func SortFloods(fs []Flood) {
	slices.SortFunc(fs, func(a, b Flood) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.ID, b.ID))
	})
}

func (s *floodScope) prune(now time.Time, w time.Duration) {
	i := 0
	for i < len(s.times) && !s.times[i].After(now.Add(-w)) {
		i++
	}
	s.times = slices.Delete(s.times, 0, i)
}

// Floods returns the scopes in a flood now, the oldest first.
func (m *Manager) Floods() []Flood {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.flooding)
}

// FloodPeriods returns the floods that ended, oldest first (at most the
// last 1 000), for the duty report. Safe from any goroutine once Ready.
func (m *Manager) FloodPeriods() []FloodPeriod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.floodEnded)
}

// SubscribeFloods returns a channel that gets every flood's start and end
// (Flood.Active says which), and its cancel. A subscriber whose buffer is
// full is dropped, its channel closed, as Subscribe's are.
func (m *Manager) SubscribeFloods(buffer int) (<-chan Flood, func()) {
	ch := make(chan Flood, max(buffer, 1))
	m.mu.Lock()
	if m.stopped {
		close(ch)
	} else {
		m.floodSubs[ch] = struct{}{}
	}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		if _, ok := m.floodSubs[ch]; ok {
			delete(m.floodSubs, ch)
			close(ch)
		}
		m.mu.Unlock()
	}
}

// publishFloods publishes the detector's state after floods ended (or, with
// nil, after the replay) and tells subscribers of the ends.
func (m *Manager) publishFloods(ended []Flood) {
	m.mu.Lock()
	m.flooding = m.floods.active()
	m.floodEnded = slices.Clone(m.floods.ended)
	m.sendFloods(ended)
	m.mu.Unlock()
	for _, f := range ended {
		m.log.Info("alarm flood over", "scope", f.Scope, "id", f.ID, "since", f.Since, "peak", f.Peak)
	}
}

// sendFloods hands changes to the flood subscribers; m.mu is held.
func (m *Manager) sendFloods(fs []Flood) {
	for _, f := range fs {
		if f.Active {
			m.log.Warn("alarm flood", "scope", f.Scope, "id", f.ID, "new_alarms", f.Count, "window", m.floods.w.Window)
		}
		for ch := range m.floodSubs {
			select {
			case ch <- f:
			default:
				delete(m.floodSubs, ch)
				close(ch)
			}
		}
	}
}
