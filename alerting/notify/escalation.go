package notify

import (
	"context"
	"slices"
)

// Route sends notices through one notifier.
type Route struct {
	Notifier Notifier
	// PerRecipient: one message per recipient with a phone number (SMS,
	// voice), else one message per notification, carrying every recipient
	// (a webhook to another system).
	PerRecipient bool
	// Steps the route serves (StepEnterprise, StepPark, StepCounty); empty:
	// every step.
	Steps []int
	// Events the route serves; empty: every event. A voice route for
	// "escalated" and "reminded" calls only those nobody acknowledged.
	Events []string
	// MaxPriority: only notices of this priority or higher (1 highest);
	// 0: all.
	MaxPriority int
}

func (r *Route) serves(n *Notification) bool {
	return (len(r.Steps) == 0 || slices.Contains(r.Steps, n.Step)) &&
		(len(r.Events) == 0 || slices.Contains(r.Events, n.Event)) &&
		(r.MaxPriority == 0 || n.Priority <= r.MaxPriority)
}

// escalationStage turns a notification into its messages: the step's text
// once, then a message per route and recipient. A phone number met twice
// (one person in two roles) gets one message per notifier.
type escalationStage struct {
	routes []Route
	texts  Texts
}

func (s *escalationStage) Exec(_ context.Context, d *delivery) (outcome, error) {
	n := &d.N
	zh, en := s.texts.Format(n)
	seen := make(map[string]bool)
	add := func(m Message) {
		if !seen[m.ID] {
			seen[m.ID] = true
			d.Messages = append(d.Messages, m)
		}
	}
	for i := range s.routes {
		r := &s.routes[i]
		if !r.serves(n) {
			continue
		}
		name := r.Notifier.Name()
		if !r.PerRecipient {
			add(Message{ID: n.Key + "/" + name, Notifier: name, Text: zh, TextEN: en, Notification: n})
			continue
		}
		for _, to := range n.Recipients {
			if to.Phone == "" {
				continue
			}
			add(Message{ID: n.Key + "/" + name + "/" + to.Phone, Notifier: name, To: to, Text: zh, TextEN: en, Notification: n})
		}
	}
	if len(d.Messages) == 0 {
		return outUnrouted, nil
	}
	return outPending, nil
}
