package model

import (
	"fmt"
	"maps"
	"time"
)

// Design is what an admin sets about the plant at run time (SPEC §3): an
// enterprise's production status, which overrides its plant file's while
// it is in force (a stop order, a suspension for maintenance until a
// time), and instruments taken out of service. It is plain data: the
// centre keeps it durable, the alarm Manager suppresses and takes alarms
// out of service by it, the rules turn stop-order power monitoring on and
// off by it.
type Design struct {
	// Status by enterprise id.
	Status map[string]StatusSetting `json:"status,omitempty"`
	// OutOfService by sensor id.
	OutOfService map[string]ServiceHold `json:"out_of_service,omitempty"`
}

// StatusSetting is an admin's status of one enterprise: Status from At,
// until Until (zero: until changed), when the plant file's status holds
// again.
type StatusSetting struct {
	Status EnterpriseStatus `json:"status"`
	At     time.Time        `json:"at"`
	Until  time.Time        `json:"until,omitzero"`
	By     string           `json:"by"`
	Reason string           `json:"reason"`
}

// ServiceHold is an instrument out of service (标定、检修): from Since
// until Until (zero: until returned by hand), by whom and why.
type ServiceHold struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitzero"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
}

// InForce reports whether a setting that ends at until holds at now.
func InForce(until, now time.Time) bool { return until.IsZero() || now.Before(until) }

// StatusOf is enterprise e's status at now: the admin's setting while it is
// in force, else the plant file's; set is true for the admin's.
func (d Design) StatusOf(p *Plant, e int32, now time.Time) (st StatusSetting, set bool) {
	ent := &p.Enterprises[e]
	if s, ok := d.Status[ent.ID]; ok && InForce(s.Until, now) {
		return s, true
	}
	return StatusSetting{Status: ent.Status}, false
}

// OutOfServiceAt returns the hold of sensor id when it is out of service at
// now.
func (d Design) OutOfServiceAt(id string, now time.Time) (ServiceHold, bool) {
	h, ok := d.OutOfService[id]
	if !ok || !InForce(h.Until, now) {
		return ServiceHold{}, false
	}
	return h, true
}

// Clone returns a copy that shares nothing with d.
func (d Design) Clone() Design {
	return Design{Status: maps.Clone(d.Status), OutOfService: maps.Clone(d.OutOfService)}
}

// Prune removes what has ended by now: a file of settings that only grows
// would keep every stop order ever given.
func (d *Design) Prune(now time.Time) {
	maps.DeleteFunc(d.Status, func(_ string, s StatusSetting) bool { return !InForce(s.Until, now) })
	maps.DeleteFunc(d.OutOfService, func(_ string, h ServiceHold) bool { return !InForce(h.Until, now) })
}

// Ends returns every Until of d after now: the times at which something
// d says ends.
func (d Design) Ends(now time.Time) []time.Time {
	var out []time.Time
	for _, s := range d.Status {
		if s.Until.After(now) {
			out = append(out, s.Until)
		}
	}
	for _, h := range d.OutOfService {
		if h.Until.After(now) {
			out = append(out, h.Until)
		}
	}
	return out
}

// Check reports the first entry of d that names nothing in p or is not
// valid, so that a design file from another plant is refused, not half
// applied.
func (d Design) Check(p *Plant) error {
	for id, s := range d.Status {
		if _, ok := p.EnterpriseIndex(id); !ok {
			return fmt.Errorf("status of enterprise %q: no such enterprise in the plant", id)
		}
		if s.Status > Suspended {
			return fmt.Errorf("status of enterprise %q: unknown status %d", id, s.Status)
		}
	}
	for id := range d.OutOfService {
		if _, ok := p.SensorIndex(id); !ok {
			return fmt.Errorf("out of service: no sensor %q in the plant", id)
		}
	}
	return nil
}

// MarshalText writes the status by name, for JSON.
func (s EnterpriseStatus) MarshalText() ([]byte, error) {
	if s > Suspended {
		return nil, fmt.Errorf("unknown enterprise status %d", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a status by name.
func (s *EnterpriseStatus) UnmarshalText(b []byte) error {
	v, ok := ParseEnterpriseStatus(string(b))
	if !ok {
		return fmt.Errorf("enterprise status %q: want operating, stop_ordered or suspended", b)
	}
	*s = v
	return nil
}
