package alerting

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

var (
	t0     = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	tRead  = t0.Add(-3 * time.Second) // the reading's own time
	tNow   = t0                       // the centre's clock
	gasSrc = Source{County: "c01", Park: "p01", Enterprise: "e01", HazardSource: "e01-hs1", Sensor: "e01-GT-101", Gateway: "gw-e01-1"}
)

// Starting points. "ack_active_rtn" is ack_active whose condition has
// ended: only a latched alarm can be there.
func startAlarm(state string, level model.AlarmLevel, latch bool) Alarm {
	a := Alarm{
		ID: "e01-GT-101.threshold_high.1", Occurrence: 1, Class: model.ClassAlarm, Source: gasSrc,
		SensorName: "液氯储罐区东侧氯气检测器", Kind: model.GasToxic, Rule: model.ThresholdHigh,
		Unit: "ppm", Latch: latch, Level: level, Value: 1.2, Limit: 1, LimitKind: "H",
		RaisedAt: tRead.Add(-time.Hour),
	}
	if level == model.L2 {
		a.Limit, a.LimitKind = 2, "HH"
	}
	switch state {
	case "normal":
		a.State = model.StateNormal
	case "unack_active":
		a.State, a.Active = model.StateUnackActive, true
	case "ack_active":
		a.State, a.Active, a.AckedBy, a.AckedAt = model.StateAckActive, true, "张伟", tNow.Add(-time.Minute)
	case "ack_active_rtn":
		a.State, a.AckedBy, a.AckedAt = model.StateAckActive, "张伟", tNow.Add(-time.Minute)
	case "unack_rtn":
		a.State = model.StateUnackRTN
	default:
		panic(state)
	}
	return a
}

func event(op string, level model.AlarmLevel) Event {
	ev := Event{TS: tRead, Level: level, Value: 1.5, Limit: 1}
	if level == model.L2 {
		ev.Value, ev.Limit = 2.5, 2
	}
	switch op {
	case "raise":
		ev.Op = OpRaise
	case "level_change":
		ev.Op = OpLevelChange
	case "return":
		ev.Op, ev.Value = OpReturn, 0.1
	case "ack":
		ev = Event{Op: OpAck, User: "李明远", Comment: "现场确认"}
	default:
		panic(op)
	}
	return ev
}

// TestNext: every (state, event) pair, for non-latched and latched alarms.
func TestNext(t *testing.T) {
	type want struct {
		state  model.AlarmState
		active bool
		name   Name
		ring   bool
		err    error
		occ    int // occurrence after the event
	}
	const (
		normal   = model.StateNormal
		unack    = model.StateUnackActive
		ack      = model.StateAckActive
		unackRTN = model.StateUnackRTN
	)
	tests := []struct {
		latch bool
		from  string
		level model.AlarmLevel // of the alarm before; the event's level for raise/level_change is L2 unless noted
		op    string
		evLvl model.AlarmLevel
		want  want
	}{
		// normal: a raise (or a level change that finds nothing open) opens occurrence 2.
		{false, "normal", model.L1, "raise", model.L1, want{unack, true, Raised, true, nil, 2}},
		{true, "normal", model.L1, "raise", model.L1, want{unack, true, Raised, true, nil, 2}},
		{false, "normal", model.L1, "level_change", model.L2, want{unack, true, Raised, true, nil, 2}},
		{true, "normal", model.L1, "level_change", model.L2, want{unack, true, Raised, true, nil, 2}},
		{false, "normal", model.L1, "return", 0, want{normal, false, NameNone, false, nil, 1}},
		{true, "normal", model.L1, "return", 0, want{normal, false, NameNone, false, nil, 1}},
		{false, "normal", model.L1, "ack", 0, want{normal, false, NameNone, false, ErrNotAckable, 1}},
		{true, "normal", model.L1, "ack", 0, want{normal, false, NameNone, false, ErrNotAckable, 1}},

		// unack_active
		{false, "unack_active", model.L1, "raise", model.L1, want{unack, true, NameNone, false, nil, 1}},
		{true, "unack_active", model.L1, "raise", model.L1, want{unack, true, NameNone, false, nil, 1}},
		{false, "unack_active", model.L1, "level_change", model.L2, want{unack, true, LevelChanged, true, nil, 1}},
		{true, "unack_active", model.L1, "level_change", model.L2, want{unack, true, LevelChanged, true, nil, 1}},
		{false, "unack_active", model.L2, "level_change", model.L1, want{unack, true, LevelChanged, false, nil, 1}},
		{false, "unack_active", model.L1, "return", 0, want{unackRTN, false, Returned, false, nil, 1}},
		{true, "unack_active", model.L1, "return", 0, want{unackRTN, false, Returned, false, nil, 1}},
		{false, "unack_active", model.L1, "ack", 0, want{ack, true, Acknowledged, false, nil, 1}},
		{true, "unack_active", model.L1, "ack", 0, want{ack, true, Acknowledged, false, nil, 1}},

		// ack_active, condition holding
		{false, "ack_active", model.L1, "raise", model.L1, want{ack, true, NameNone, false, nil, 1}},
		{true, "ack_active", model.L1, "raise", model.L1, want{ack, true, NameNone, false, nil, 1}},
		{false, "ack_active", model.L1, "raise", model.L2, want{unack, true, LevelChanged, true, nil, 1}},
		{false, "ack_active", model.L1, "level_change", model.L2, want{unack, true, LevelChanged, true, nil, 1}},
		{true, "ack_active", model.L1, "level_change", model.L2, want{unack, true, LevelChanged, true, nil, 1}},
		{true, "ack_active", model.L2, "level_change", model.L1, want{ack, true, LevelChanged, false, nil, 1}},
		{false, "ack_active", model.L1, "return", 0, want{normal, false, Cleared, false, nil, 1}},
		{true, "ack_active", model.L1, "return", 0, want{ack, false, Returned, false, nil, 1}},
		{false, "ack_active", model.L1, "ack", 0, want{ack, true, NameNone, false, ErrNotAckable, 1}},
		{true, "ack_active", model.L1, "ack", 0, want{ack, true, NameNone, false, ErrNotAckable, 1}},

		// ack_active whose condition ended: a latched alarm waiting for its reset.
		{true, "ack_active_rtn", model.L1, "raise", model.L1, want{unack, true, Raised, true, nil, 1}},
		{true, "ack_active_rtn", model.L1, "level_change", model.L2, want{unack, true, Raised, true, nil, 1}},
		{true, "ack_active_rtn", model.L1, "return", 0, want{ack, false, NameNone, false, nil, 1}},
		{true, "ack_active_rtn", model.L1, "ack", 0, want{normal, false, Cleared, false, nil, 1}},

		// unack_rtn: alarming again is the same occurrence.
		{false, "unack_rtn", model.L1, "raise", model.L1, want{unack, true, Raised, true, nil, 1}},
		{true, "unack_rtn", model.L1, "raise", model.L1, want{unack, true, Raised, true, nil, 1}},
		{false, "unack_rtn", model.L1, "level_change", model.L2, want{unack, true, Raised, true, nil, 1}},
		{true, "unack_rtn", model.L1, "level_change", model.L2, want{unack, true, Raised, true, nil, 1}},
		{false, "unack_rtn", model.L1, "return", 0, want{unackRTN, false, NameNone, false, nil, 1}},
		{true, "unack_rtn", model.L1, "return", 0, want{unackRTN, false, NameNone, false, nil, 1}},
		{false, "unack_rtn", model.L1, "ack", 0, want{normal, false, Cleared, false, nil, 1}},
		{true, "unack_rtn", model.L1, "ack", 0, want{normal, false, Cleared, false, nil, 1}},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		name := fmt.Sprintf("latch=%v/%s_%s/%s_%s", tc.latch, tc.from, tc.level, tc.op, tc.evLvl)
		covered[fmt.Sprint(tc.latch, tc.from, tc.op)] = true
		t.Run(name, func(t *testing.T) {
			a := startAlarm(tc.from, tc.level, tc.latch)
			got, ch := Next(a, event(tc.op, tc.evLvl), tNow, Policy{Latch: tc.latch, SourceLevel: 1})
			if !errors.Is(ch.Err, tc.want.err) || (tc.want.err == nil) != (ch.Err == nil) {
				t.Fatalf("err = %v, want %v", ch.Err, tc.want.err)
			}
			if got.State != tc.want.state || got.Active != tc.want.active || ch.Name != tc.want.name || ch.Ring != tc.want.ring {
				t.Errorf("→ %s active=%v %q ring=%v; want %s active=%v %q ring=%v",
					got.State, got.Active, ch.Name, ch.Ring, tc.want.state, tc.want.active, tc.want.name, tc.want.ring)
			}
			if got.Occurrence != tc.want.occ {
				t.Errorf("occurrence %d, want %d", got.Occurrence, tc.want.occ)
			}
			if ch.From != a.State || ch.To != got.State {
				t.Errorf("change says %s → %s, the alarm went %s → %s", ch.From, ch.To, a.State, got.State)
			}
			if ch.Name == NameNone && !reflect.DeepEqual(got, a) {
				t.Errorf("nothing happened, but the alarm changed:\n%+v\n%+v", a, got)
			}
		})
	}
	for _, latch := range []bool{false, true} {
		for _, from := range []string{"normal", "unack_active", "ack_active", "unack_rtn"} {
			for _, op := range []string{"raise", "level_change", "return", "ack"} {
				if !covered[fmt.Sprint(latch, from, op)] {
					t.Errorf("no case for latch=%v %s + %s", latch, from, op)
				}
			}
		}
	}
}

// TestNextFields: the times, the acknowledger and the new occurrence's
// fields that the table does not look at.
func TestNextFields(t *testing.T) {
	pol := Policy{Latch: true, SourceLevel: 1}
	a := startAlarm("normal", model.L1, true)
	a.AckedBy, a.ClearedBy = "old", "old"

	a, _ = Next(a, event("raise", model.L1), tNow, pol)
	if a.ID != "e01-GT-101.threshold_high.2" || !a.RaisedAt.Equal(tRead) || a.AckedBy != "" || a.ClearedBy != "" {
		t.Errorf("raise: id %s raised %v acked_by %q cleared_by %q", a.ID, a.RaisedAt, a.AckedBy, a.ClearedBy)
	}
	if a.Priority != 2 || a.LimitKind != "H" || !a.Latch {
		t.Errorf("raise: priority %d limit %s latch %v; want 2, H, true", a.Priority, a.LimitKind, a.Latch)
	}
	if want := "液氯储罐区东侧氯气检测器一级报警 (H)：1.5 ppm，报警值 1 ppm / e01-GT-101 toxic gas L1 alarm (H): 1.5 ppm, limit 1 ppm"; a.Message != want {
		t.Errorf("message\n got %s\nwant %s", a.Message, want)
	}
	a, _ = Next(a, Event{Op: OpLevelChange, TS: tRead, Level: model.L2, Value: 2.5, Limit: 2, LimitKind: "HH"}, tNow, pol)
	if a.Priority != 1 || !strings.Contains(a.Message, "二级报警 (HH)：2.5 ppm") {
		t.Errorf("level change: priority %d, message %s", a.Priority, a.Message)
	}
	a, _ = Next(a, event("ack", 0), tNow, pol)
	if !a.AckedAt.Equal(tNow) || a.AckedBy != "李明远" {
		t.Errorf("ack: acked %v by %q", a.AckedAt, a.AckedBy)
	}
	ret := tRead.Add(10 * time.Second)
	a, _ = Next(a, Event{Op: OpReturn, TS: ret, Value: 0.1}, tNow, pol)
	if !a.ReturnedAt.Equal(ret) || !a.ClearedAt.IsZero() || a.Value != 0.1 || a.Level != model.L2 {
		t.Errorf("return: returned %v cleared %v value %g level %s", a.ReturnedAt, a.ClearedAt, a.Value, a.Level)
	}
	later := tNow.Add(time.Minute)
	a, ch := Next(a, Event{Op: OpAck, User: "王建国"}, later, pol)
	if ch.Name != Cleared || !a.ClearedAt.Equal(later) || a.ClearedBy != "王建国" || a.AckedBy != "李明远" {
		t.Errorf("reset: %s cleared %v by %q, acked by %q", ch.Name, a.ClearedAt, a.ClearedBy, a.AckedBy)
	}
}

// TestNextLate: a crossing found in late data that also returns in it ends
// in unack_rtn with a late mark, and neither event rings (SPEC §2).
func TestNextLate(t *testing.T) {
	for _, latch := range []bool{false, true} {
		pol := Policy{Latch: latch}
		a := startAlarm("normal", model.L1, latch)
		raise := event("raise", model.L1)
		raise.Late = true
		a, ch1 := Next(a, raise, tNow, pol)
		ret := event("return", 0)
		ret.Late, ret.TS = true, tRead.Add(time.Second)
		a, ch2 := Next(a, ret, tNow, pol)
		if a.State != model.StateUnackRTN || !a.Late || ch1.Ring || ch2.Ring || ch1.Name != Raised || ch2.Name != Returned {
			t.Errorf("latch=%v: %s late=%v, rings %v %v, events %s %s; want unack_rtn, late, no ring",
				latch, a.State, a.Late, ch1.Ring, ch2.Ring, ch1.Name, ch2.Name)
		}
		if !a.RaisedAt.Equal(tRead) {
			t.Errorf("late raise recorded at %v, want its own time %v", a.RaisedAt, tRead)
		}
		// A late level change up does not ring either.
		b := startAlarm("ack_active", model.L1, latch)
		up := event("level_change", model.L2)
		up.Late = true
		b, ch := Next(b, up, tNow, pol)
		if ch.Ring || b.State != model.StateUnackActive {
			t.Errorf("late level up: ring %v state %s", ch.Ring, b.State)
		}
	}
}

func TestNextInvalid(t *testing.T) {
	a := startAlarm("unack_active", model.L1, true)
	if _, ch := Next(a, Event{Op: OpAck}, tNow, Policy{}); !errors.Is(ch.Err, ErrInvalid) {
		t.Errorf("ack without a user: %v", ch.Err)
	}
	if _, ch := Next(a, Event{Op: Op(99)}, tNow, Policy{}); !errors.Is(ch.Err, ErrInvalid) {
		t.Errorf("unknown op: %v", ch.Err)
	}
}
