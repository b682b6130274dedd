package alerting

import (
	"context"
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// Group commit. The Run goroutine stages events one by one (Next on the
// alarm as the batch left it, sequence numbers counted on from the
// batch's), then makes the whole batch durable in one Log.Append, and only
// then applies, pushes and answers. Nothing staged is visible to readers
// until it is durable; a batch that cannot be made durable before the
// Manager stops is dropped whole, and its actions are answered ErrStopped.

// batch is what the Run goroutine has staged since the last flush.
type batch struct {
	evs   []Event
	froms []model.AlarmState // each event's state before, for the log line
	// alarms and slots are the staged alarms, by id, and the conditions
	// whose latest occurrence the batch changed; global and scope the
	// sequence numbers counted on.
	alarms  map[string]Alarm
	slots   map[int]string
	global  uint64
	scope   [3]map[string]uint64
	replies []reply
}

// reply is an action's answer, sent once its batch is durable.
type reply struct {
	ch  chan error
	err error
}

func (b *batch) reset(global uint64) {
	b.evs, b.froms, b.replies = b.evs[:0], b.froms[:0], b.replies[:0]
	b.global = global
	b.alarms, b.slots = map[string]Alarm{}, map[int]string{}
	for i := range b.scope {
		b.scope[i] = map[string]uint64{}
	}
}

// alarm is alarm id as the batch left it, else as it is durable.
func (m *Manager) alarm(id string) (Alarm, bool) {
	if a, ok := m.b.alarms[id]; ok {
		return a, true
	}
	a, ok := m.alarms[id]
	return a, ok
}

// latest is the latest occurrence of a condition (a slot).
func (m *Manager) latest(sl int) (Alarm, bool) {
	id, ok := m.b.slots[sl]
	if !ok {
		id = m.slots[sl]
	}
	if id == "" {
		return Alarm{}, false
	}
	return m.alarm(id)
}

// slotOf is the condition an alarm is an occurrence of: a sensor's rule,
// or a gateway's silence.
func (m *Manager) slotOf(a Alarm) (int, bool) {
	if a.Rule == model.GatewaySilent {
		gi, ok := m.o.Plant.GatewayIndex(a.Source.Gateway)
		return m.gatewaySlot(gi), ok
	}
	si, ok := m.o.Plant.SensorIndex(a.Source.Sensor)
	if !ok || a.Rule >= model.NumRuleKinds {
		return 0, false
	}
	return slot(si, a.Rule), true
}

// newer says whether a is a later occurrence of its condition than the
// alarm id: an event of an older occurrence (its feedback, say) must not
// make it the condition's latest again.
func (m *Manager) newer(a Alarm, id string) bool {
	if id == "" || id == a.ID {
		return true
	}
	cur, ok := m.alarm(id)
	return !ok || a.Occurrence > cur.Occurrence
}

// stage applies ev to a and adds the event to the batch. A refusal is
// returned; an event that changes nothing is dropped.
func (m *Manager) stage(a Alarm, ev Event, pol Policy) error {
	now := m.clock().UTC()
	next, ch := Next(a, ev, now, pol)
	if ch.Err != nil {
		return ch.Err
	}
	if ch.Name == NameNone {
		return nil
	}
	ev.Name, ev.At, ev.Ring, ev.Notified = ch.Name, now, ch.Ring, ch.Notified
	if ev.Op == OpShelve {
		ev.Due = next.Shelf.Until
	}
	next.History = nil
	ev.Alarm = next
	b := &m.b
	b.global++
	ev.Seq = Seqs{Global: b.global}
	for i, id := range m.scopeIDs(next.Source) {
		if id == "" {
			continue
		}
		n, ok := b.scope[i][id]
		if !ok {
			n = m.scope[i][id]
		}
		b.scope[i][id] = n + 1
		*m.scopeSeq(&ev.Seq, i) = n + 1
	}
	b.evs = append(b.evs, ev)
	b.froms = append(b.froms, ch.From)
	b.alarms[next.ID] = next
	if sl, ok := m.slotOf(next); ok {
		cur, staged := b.slots[sl]
		if !staged {
			cur = m.slots[sl]
		}
		if m.newer(next, cur) {
			b.slots[sl] = next.ID
		}
	}
	return nil
}

// gather stages what else is waiting, without waiting for more, until the
// batch is full.
func (m *Manager) gather(ctx context.Context) {
	for len(m.b.evs) < m.o.MaxBatch {
		select {
		case t := <-m.trans:
			m.onTransition(ctx, t)
		case r := <-m.acts:
			m.onAct(ctx, r)
		default:
			return
		}
	}
}

// flush makes the batch durable, then applies and pushes its events and
// answers its actions.
func (m *Manager) flush(ctx context.Context) {
	b := &m.b
	defer func() { b.reset(m.global) }()
	if len(b.evs) > 0 {
		if err := m.appendDurable(ctx, b.evs); err != nil {
			m.log.Error("alarm events dropped: the manager stops before they are durable", "events", len(b.evs),
				"first", b.evs[0].Seq.Global, "err", err)
			for _, r := range b.replies {
				r.ch <- ErrStopped
			}
			return
		}
		for i, ev := range b.evs {
			m.apply(ev, true)
			a := ev.Alarm
			m.log.Info("alarm "+ev.Name.String(), "alarm", a.ID, "state", a.State, "from", b.froms[i],
				"base", a.Base, "op", ev.Op, "level", a.Level, "priority", a.Priority, "value", a.Value,
				"limit", a.Limit, "late", ev.Late, "user", ev.User, "reason", ev.Reason, "due", ev.Due,
				"notified", len(ev.Notified), "seq", ev.Seq.Global)
		}
	}
	for _, r := range b.replies {
		r.ch <- r.err
	}
}

// appendDurable retries until the events are durable or ctx ends. It uses
// the Manager's context, not an operator's: giving up half-way would leave
// it unknown whether the events are in the log, and the next ones would
// then take their sequence numbers.
func (m *Manager) appendDurable(ctx context.Context, evs []Event) error {
	wait := 50 * time.Millisecond
	for {
		err := m.o.Log.Append(ctx, evs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("alerting: events %d-%d not durable: %w", evs[0].Seq.Global, evs[len(evs)-1].Seq.Global, err)
		}
		m.log.Error("alarm events not durable; retrying", "first", evs[0].Seq.Global, "events", len(evs),
			"retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("alerting: events %d-%d not durable: %w", evs[0].Seq.Global, evs[len(evs)-1].Seq.Global, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, m.o.RetryMax)
	}
}

// pushTimers arms what a durable event set due: a shelf's end, the
// ladder's next step or reminder, the feedback limit.
func (m *Manager) pushTimers(a, prev Alarm) {
	if a.Shelf.On() && !a.Shelf.Until.Equal(prev.Shelf.Until) {
		m.timers.push(a.Shelf.Until, a.ID, OpShelfExpired)
	}
	if d := a.Escalation.DueAt; !d.IsZero() && !d.Equal(prev.Escalation.DueAt) {
		m.timers.push(d, a.ID, OpEscalate)
	}
	if d := a.FeedbackDue; !d.IsZero() && !a.FeedbackOverdue && !a.Feedback.Given() && !d.Equal(prev.FeedbackDue) {
		m.timers.push(d, a.ID, OpFeedbackDue)
	}
}

// rebuildTimers arms every timer the alarms replayed from the log hold.
func (m *Manager) rebuildTimers() {
	for _, a := range m.alarms {
		m.pushTimers(a, Alarm{})
	}
}

// contactsOf is who each escalation step notifies for an alarm of src:
// the hazard source's operational and technical responsible persons and
// the enterprise's control room; then the park's control room and the
// source's principal (主要负责人, the 源长); then the county's duty
// officers. Cached by source: the plant does not change while running.
func (m *Manager) contactsOf(src Source) [model.NumEscalationSteps][]Contact {
	if c, ok := m.contacts[src]; ok {
		return c
	}
	p := m.o.Plant
	var c [model.NumEscalationSteps][]Contact
	add := func(s model.EscalationStep, role string, ps ...model.Person) {
		for _, per := range ps {
			if per.Name != "" || per.Phone != "" {
				c[s] = append(c[s], Contact{Name: per.Name, Phone: per.Phone, Role: role})
			}
		}
	}
	var principal model.Person
	if hi, ok := p.HazardSourceIndex(src.HazardSource); ok {
		r := p.HazardSources[hi].Responsible
		add(model.StepEnterprise, "操作负责人", r.Operational)
		add(model.StepEnterprise, "技术负责人", r.Technical)
		principal = r.Principal
	}
	if ei, ok := p.EnterpriseIndex(src.Enterprise); ok {
		add(model.StepEnterprise, "企业值班", p.Enterprises[ei].Duty...)
	}
	if pi, ok := p.ParkIndex(src.Park); ok {
		add(model.StepPark, "园区值班", p.Parks[pi].Duty...)
	}
	add(model.StepPark, "主要负责人", principal)
	if ci, ok := p.CountyIndex(src.County); ok {
		add(model.StepCounty, "县应急值班", p.Counties[ci].Duty...)
	}
	if len(m.contacts) < 1<<16 {
		m.contacts[src] = c
	}
	return c
}
