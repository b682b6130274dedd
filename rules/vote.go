package rules

import "hazardwatch/internal/model"

// Voting (表决): k-out-of-n gas detectors of one area confirm a gas alarm.
//
// A member votes while its high condition is raised (H or HH, after its
// on-delay: stage ≥ 1) and it has no sensor fault raised (out_of_range or
// bad_quality): a detector known to be broken neither confirms a leak nor
// blocks one, so a 2oo3 group with one faulty detector still confirms
// with the two healthy ones. One bad reading alone does not take a vote
// away (it does not clear the member's own alarm either); the bad_quality
// fault, N bad readings in a row, does. A silent member keeps its last
// vote: silence is not evidence that the gas has gone.
//
// When K members vote, the group raises one alarm of its own: rule Voted,
// class alarm, level L2, on the group's first member (Value the members
// voting, Limit K). It returns when fewer than K vote. The members' own
// threshold alarms are untouched; the group's alarm, always L2, is the one
// that ranks first (priority 1).
//
// The group's state sits in a slice indexed by group and each member's
// vote in its sensorState, so counting costs a comparison for a sensor in
// no group and a few for a member, and allocates nothing.

// voteGroup is the state of one voting group.
type voteGroup struct {
	carrier   int32 // the sensor that carries the group's alarm
	k, votes  int32
	confirmed bool // what the last transition (or Assume) said
}

// initGroups builds the groups from the sensors' rules: the group of a
// sensor that is the first of its own members. A member already in an
// earlier group stays there (the rule files refuse that).
func (e *Engine) initGroups() {
	for i := range e.rules {
		v := &e.rules[i].Vote
		if !v.On() || v.Members[0] != int32(i) || v.K < 1 {
			continue
		}
		g := int32(len(e.groups))
		e.groups = append(e.groups, voteGroup{carrier: int32(i), k: int32(min(v.K, 1<<30))})
		for _, m := range v.Members {
			if m >= 0 && int(m) < len(e.st) && e.st[m].group < 0 {
				e.st[m].group = g
			}
		}
	}
}

// voted recounts the vote of st's group after a reading and appends the
// group's transition when it changes; nothing for a sensor in no group.
func (e *Engine) voted(st *sensorState, r model.Reading, out []model.Transition) []model.Transition {
	if st.group < 0 {
		return out
	}
	return e.vote(st, r, out)
}

func (e *Engine) vote(st *sensorState, r model.Reading, out []model.Transition) []model.Transition {
	e.recount(st)
	g := &e.groups[st.group]
	confirmed := g.votes >= g.k
	if confirmed == g.confirmed {
		return out
	}
	g.confirmed = confirmed
	return append(out, model.Transition{
		Sensor: g.carrier, Rule: model.Voted, Class: model.ClassAlarm, Level: model.L2, Active: confirmed,
		Value: float64(g.votes), Limit: float64(g.k), TS: r.TS, Late: r.Late,
	})
}

// recount brings the group's count up to date with st's vote.
func (e *Engine) recount(st *sensorState) {
	if st.group < 0 {
		return
	}
	v := st.hi.stage >= 1 && !st.outOfRange && !st.badActive
	if v == st.vote {
		return
	}
	st.vote = v
	if v {
		e.groups[st.group].votes++
	} else {
		e.groups[st.group].votes--
	}
}

// assumeVoted seeds a group's alarm on its carrier. The count comes from
// the members' own seeded conditions; a group seeded confirmed with fewer
// than K votes returns at the first reading of any member.
func (e *Engine) assumeVoted(st *sensorState, t model.Transition) bool {
	if st.group < 0 || e.groups[st.group].carrier != t.Sensor {
		return !t.Active
	}
	e.groups[st.group].confirmed = t.Active
	return true
}
