package alerting

import (
	"cmp"
	"slices"
	"time"

	"hazardwatch/internal/model"
)

// KPIs are the alarm-management figures of one scope over a period, for
// the duty report (DOMAIN.md's targets for a well-run console: about one
// alarm per 10 minutes per operator, the top 10 under 1-5 % of all, no
// standing alarm older than 24 h without review), and how the closed loop
// went: acknowledged in time, escalated, fed back.
type KPIs struct {
	// Scope is "enterprise", "park", "county" or "" (everything); ID the
	// scope's id.
	Scope string    `json:"scope"`
	ID    string    `json:"id"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Alarms are the occurrences raised in [From, To), by their reading
	// time; ByClass counts them by class, ByLevel the alarm class's by
	// level.
	Alarms  int            `json:"alarms"`
	ByClass map[string]int `json:"by_class"`
	ByLevel map[string]int `json:"by_level"`
	// Per10Min is Alarms per 10 minutes of the period.
	Per10Min float64 `json:"per_10min"`
	// Top are the conditions (sensor or gateway, rule) raised most, at
	// most 10, and Top10Share their share of Alarms.
	Top        []ConditionCount `json:"top"`
	Top10Share float64          `json:"top10_share"`
	// Standing24h: alarms open at To, raised more than 24 h before it.
	Standing24h int `json:"standing_24h"`
	// Chattering: occurrences marked chattering.
	Chattering int `json:"chattering"`
	// Floods: floods of the scope (its enterprises and parks) that
	// overlap the period.
	Floods int `json:"floods"`
	// Acked: occurrences acknowledged; AckedInTime before their park step
	// was due (the priority's limit from the alarm being shown).
	Acked       int `json:"acked"`
	AckedInTime int `json:"acked_in_time"`
	// Escalated: occurrences whose ladder reached the park; ToCounty the
	// county.
	Escalated int `json:"escalated"`
	ToCounty  int `json:"to_county"`
	// FeedbackGiven, FeedbackInTime (before its limit) and FeedbackOverdue
	// (its limit passed without one, given later or not).
	FeedbackGiven   int `json:"feedback_given"`
	FeedbackInTime  int `json:"feedback_in_time"`
	FeedbackOverdue int `json:"feedback_overdue"`
	// LoopOpen are the alarms whose feedback is overdue and still not
	// given: they stay on the duty report until it is.
	LoopOpen []string `json:"loop_open"`
}

// ConditionCount is how many occurrences one condition had.
type ConditionCount struct {
	// Sensor is the sensor's id, or the gateway's for its own condition.
	Sensor string `json:"sensor"`
	Rule   string `json:"rule"`
	Count  int    `json:"count"`
}

// InScope reports whether an alarm of src belongs to the scope ("" for
// everything).
func InScope(src Source, scope, id string) bool {
	switch scope {
	case "":
		return true
	case "enterprise":
		return src.Enterprise == id
	case "park":
		return src.Park == id
	case "county":
		return src.County == id
	}
	return false
}

// KPIs computes the figures of scope (see InScope) over [from, to).
func (m *Manager) KPIs(scope, id string, from, to time.Time) KPIs {
	k := KPIs{Scope: scope, ID: id, From: from, To: to, ByClass: map[string]int{}, ByLevel: map[string]int{},
		Top: []ConditionCount{}, LoopOpen: []string{}}
	type cond struct{ sensor, rule string }
	counts := map[cond]int{}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, a := range m.alarms {
		if !InScope(a.Source, scope, id) {
			continue
		}
		if a.State != model.StateNormal && !a.RaisedAt.IsZero() && a.RaisedAt.Before(to.Add(-24*time.Hour)) {
			k.Standing24h++
		}
		if a.RaisedAt.Before(from) || !a.RaisedAt.Before(to) {
			continue
		}
		k.Alarms++
		k.ByClass[a.Class.String()]++
		if a.Class == model.ClassAlarm && a.Level != model.NoLevel {
			k.ByLevel[a.Level.String()]++
		}
		src := a.Source.Sensor
		if src == "" {
			src = a.Source.Gateway // a gateway's own condition
		}
		counts[cond{src, a.Rule.String()}]++
		if a.Chattering {
			k.Chattering++
		}
		lim := m.o.Alarms.Escalation[min(max(a.Priority, 0), 4)]
		if !a.AckedAt.IsZero() {
			k.Acked++
			if e := a.Escalation; lim.Park <= 0 || e.Started.IsZero() || !a.AckedAt.After(e.Started.Add(lim.Park)) {
				k.AckedInTime++
			}
		}
		if a.Escalation.Step >= model.StepPark {
			k.Escalated++
		}
		if a.Escalation.Step >= model.StepCounty {
			k.ToCounty++
		}
		if a.Feedback.Given() {
			k.FeedbackGiven++
			if !a.FeedbackOverdue {
				k.FeedbackInTime++
			}
		}
		if a.FeedbackOverdue {
			k.FeedbackOverdue++
			if !a.Feedback.Given() {
				k.LoopOpen = append(k.LoopOpen, a.ID)
			}
		}
	}
	for c, n := range counts {
		k.Top = append(k.Top, ConditionCount{Sensor: c.sensor, Rule: c.rule, Count: n})
	}
	slices.SortFunc(k.Top, func(a, b ConditionCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Sensor, b.Sensor), cmp.Compare(a.Rule, b.Rule))
	})
	k.Top = k.Top[:min(len(k.Top), 10)]
	top := 0
	for _, c := range k.Top {
		top += c.Count
	}
	if k.Alarms > 0 {
		k.Top10Share = float64(top) / float64(k.Alarms)
	}
	if d := to.Sub(from); d > 0 {
		k.Per10Min = float64(k.Alarms) / (float64(d) / float64(10*time.Minute))
	}
	slices.Sort(k.LoopOpen)
	// An upset floods an enterprise and its park together: count each
	// flood once, at the scope's own level (a county's and everything's
	// at their parks').
	overlaps := func(sc, fid string, since, until time.Time) bool {
		var in bool
		switch scope {
		case "enterprise", "park":
			in = sc == scope && fid == id
		case "county":
			in = sc == "park" && m.parkInCounty(fid, id)
		default:
			in = sc == "park"
		}
		return in && since.Before(to) && (until.IsZero() || until.After(from))
	}
	for _, f := range m.floodEnded {
		if overlaps(f.Scope, f.ID, f.Since, f.Until) {
			k.Floods++
		}
	}
	for _, f := range m.flooding {
		if overlaps(f.Scope, f.ID, f.Since, time.Time{}) {
			k.Floods++
		}
	}
	return k
}

// parkInCounty says whether park pid lies in county cid.
func (m *Manager) parkInCounty(pid, cid string) bool {
	p := m.o.Plant
	pi, ok := p.ParkIndex(pid)
	return ok && p.Parks[pi].County >= 0 && p.Counties[p.Parks[pi].County].ID == cid
}
