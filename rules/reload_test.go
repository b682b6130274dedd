package rules

import (
	"math"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// TestReload: each case runs readings before a reload, the reload (at TS
// 10 000) and readings after it, and lists every transition in the order
// they came, the reload's own after "reload".
func TestReload(t *testing.T) {
	v := func(ts int64, x float64) model.Reading {
		return model.Reading{SensorIdx: 0, TS: ts, Value: x, HasValue: true}
	}
	noDelay := gasRules
	noDelay.OnDelayMS = 0
	edit := func(f func(*model.SensorRules)) model.SensorRules {
		rs := noDelay
		f(&rs)
		return rs
	}
	frozen := edit(func(rs *model.SensorRules) { rs.Frozen = model.FrozenRule{DurationMS: 2000, Epsilon: 0.1} })
	stopOrder := model.SensorRules{StopOrder: model.StopOrderRule{On: true, BaselineKW: 80, MarginPct: 20, DelayMS: 1000}}
	sis := model.SensorRules{SISBypass: model.SISBypassRule{On: true, OnDelayMS: 0, SourceLevel: 2}}
	cases := []struct {
		name          string
		before, after model.SensorRules
		pre, post     []model.Reading
		want          []string
	}{{
		name:   "raised H stays raised under a moved limit, returns by the new one",
		before: noDelay, after: edit(func(rs *model.SensorRules) { rs.Limits[model.H].Value = 35 }),
		pre:  []model.Reading{v(1000, 30)},
		post: []model.Reading{v(11000, 30)},
		want: []string{
			"1000 s1 threshold_high alarm L1 active value=30 limit=25",
			"reload",
			"11000 s1 threshold_high alarm L1 return value=30 limit=35",
		},
	}, {
		name:   "raised H stays raised when its limit moves down",
		before: noDelay, after: edit(func(rs *model.SensorRules) { rs.Limits[model.H].Value = 20 }),
		pre:  []model.Reading{v(1000, 30)},
		post: []model.Reading{v(11000, 30), v(12000, 60)},
		want: []string{
			"1000 s1 threshold_high alarm L1 active value=30 limit=25",
			"reload",
			"12000 s1 threshold_high alarm L2 active value=60 limit=50",
		},
	}, {
		name:   "limits removed while raised: a return at the reload",
		before: noDelay, after: edit(func(rs *model.SensorRules) { rs.Limits[model.H], rs.Limits[model.HH] = model.Limit{}, model.Limit{} }),
		pre:  []model.Reading{v(1000, 60)},
		post: []model.Reading{v(11000, 60)},
		want: []string{
			"1000 s1 threshold_high alarm L2 active value=60 limit=50",
			"reload",
			"10000 s1 threshold_high alarm L2 return value=0 limit=25",
		},
	}, {
		name:   "HH removed while at HH: falls to H",
		before: noDelay, after: edit(func(rs *model.SensorRules) { rs.Limits[model.HH] = model.Limit{} }),
		pre:  []model.Reading{v(1000, 60)},
		post: []model.Reading{v(11000, 60), v(12000, 10)},
		want: []string{
			"1000 s1 threshold_high alarm L2 active value=60 limit=50",
			"reload",
			"10000 s1 threshold_high alarm L1 active value=0 limit=25",
			"12000 s1 threshold_high alarm L1 return value=10 limit=25",
		},
	}, {
		name:   "an on-delay keeps running across the reload",
		before: gasRules, after: edit(func(rs *model.SensorRules) { rs.OnDelayMS = 2000; rs.Deadband = 1 }),
		pre:  []model.Reading{v(9000, 30)},
		post: []model.Reading{v(10500, 30), v(11000, 30)},
		want: []string{
			"reload",
			"11000 s1 threshold_high alarm L1 active value=30 limit=25",
		},
	}, {
		name:   "an added limit is judged from the next reading",
		before: edit(func(rs *model.SensorRules) { rs.Limits[model.H], rs.Limits[model.HH] = model.Limit{}, model.Limit{} }), after: noDelay,
		pre:  []model.Reading{v(1000, 30)},
		post: []model.Reading{v(11000, 30)},
		want: []string{
			"reload",
			"11000 s1 threshold_high alarm L1 active value=30 limit=25",
		},
	}, {
		name:   "frozen kept: its run goes on under a new duration",
		before: frozen, after: edit(func(rs *model.SensorRules) { *rs = frozen; rs.Frozen.DurationMS = 2500 }),
		pre:  []model.Reading{v(9000, 10)},
		post: []model.Reading{v(11000, 10), v(11500, 10)},
		want: []string{
			"reload",
			"11500 s1 frozen fault - active value=10 limit=2.5",
		},
	}, {
		name:   "stop-order violation kept across a reload",
		before: stopOrder, after: edit(func(rs *model.SensorRules) { *rs = stopOrder; rs.StopOrder.DelayMS = 2000 }),
		pre:  []model.Reading{v(7000, 800), v(8000, 800)},
		post: []model.Reading{v(11000, 800), v(12000, 70)},
		want: []string{
			"8000 s1 stop_order_power violation - active value=800 limit=80",
			"reload",
			"12000 s1 stop_order_power violation - return value=70 limit=80",
		},
	}, {
		name:   "stop-order rule removed while raised: a return",
		before: stopOrder, after: model.SensorRules{},
		pre: []model.Reading{v(7000, 800), v(8000, 800)},
		want: []string{
			"8000 s1 stop_order_power violation - active value=800 limit=80",
			"reload",
			"10000 s1 stop_order_power violation - return value=0 limit=80",
		},
	}, {
		name:   "SIS bypass kept across a reload, removed later returns",
		before: sis, after: sis,
		pre:  []model.Reading{v(9000, 1)},
		post: []model.Reading{v(11000, 1), v(12000, 0)},
		want: []string{
			"9000 s1 sis_bypass violation - active value=1 limit=2",
			"reload",
			"12000 s1 sis_bypass violation - return value=0 limit=2",
		},
	}, {
		name:   "silence check removed while offline: a return",
		before: noDelay, after: edit(func(rs *model.SensorRules) { rs.SilentPeriods = 0 }),
		pre: nil,
		want: []string{
			"5000 s1 silent offline - active value=5 limit=5",
			"reload",
			"10000 s1 silent offline - return value=0 limit=5",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, rs := oneSensor(c.before)
			e := New(p, rs, nil)
			var got []string
			add := func(ts []model.Transition) {
				for _, tr := range ts {
					got = append(got, formatTransition(p, tr))
				}
			}
			add(e.Tick(time.UnixMilli(0), nil))
			for _, r := range c.pre {
				add(e.Eval(r, nil))
			}
			if len(c.pre) == 0 {
				add(e.Tick(time.UnixMilli(5000), nil))
			}
			out, err := e.Reload(p, []model.SensorRules{c.after}, nil, time.UnixMilli(10000), nil)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, "reload")
			add(out)
			for _, r := range c.post {
				add(e.Eval(r, nil))
			}
			if g, w := strings.Join(got, "\n"), strings.Join(c.want, "\n"); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

// TestReloadVoted: a confirmed group whose group is removed returns at the
// reload; one that is kept stays confirmed with its votes recounted.
func TestReloadVoted(t *testing.T) {
	p := &model.Plant{Gateways: []model.Gateway{{ID: "gw", PollPeriodMS: 1000}}}
	for _, id := range []string{"a", "b", "c"} {
		p.Sensors = append(p.Sensors, model.Sensor{ID: id, Gateway: 0, Device: -1, HazardSource: -1})
	}
	p.Index()
	grouped := func(on bool) []model.SensorRules {
		rs := []model.SensorRules{gasRules, gasRules, gasRules}
		for i := range rs {
			rs[i].OnDelayMS = 0
			if on {
				rs[i].Vote = model.VoteRule{Name: "g", K: 2, Members: []int32{0, 1, 2}}
			}
		}
		return rs
	}
	e := New(p, grouped(true), nil)
	var out []model.Transition
	out = e.Eval(model.Reading{SensorIdx: 0, TS: 1000, Value: 30, HasValue: true}, out)
	out = e.Eval(model.Reading{SensorIdx: 1, TS: 1000, Value: 30, HasValue: true}, out)
	if len(out) != 3 || out[2].Rule != model.Voted || !out[2].Active {
		t.Fatalf("two detectors in alarm: %+v, want two H alarms and the group's", out)
	}
	out, err := e.Reload(p, grouped(true), nil, time.UnixMilli(2000), out[:0])
	if err != nil || len(out) != 0 {
		t.Fatalf("unchanged group: %+v, %v; want nothing", out, err)
	}
	if out = e.Eval(model.Reading{SensorIdx: 1, TS: 3000, Value: 5, HasValue: true}, out[:0]); len(out) != 2 || out[1].Rule != model.Voted || out[1].Active {
		t.Fatalf("after the reload b returned: %+v, want b's return and the group's (votes recounted)", out)
	}
	out = e.Eval(model.Reading{SensorIdx: 1, TS: 4000, Value: 30, HasValue: true}, out[:0])
	out, _ = e.Reload(p, grouped(false), nil, time.UnixMilli(5000), out[:0])
	if len(out) != 1 || out[0].Rule != model.Voted || out[0].Active || out[0].Sensor != 0 || out[0].TS != 5000 {
		t.Fatalf("group removed while confirmed: %+v, want its return on a at 5000", out)
	}
	if _, err := e.Reload(&model.Plant{}, nil, nil, time.UnixMilli(6000), nil); err == nil {
		t.Error("a reload for another plant was accepted")
	}
	if n := testing.AllocsPerRun(100, func() {
		out = e.Eval(model.Reading{SensorIdx: 2, TS: 7000, Value: 30, HasValue: true}, out[:0])
	}); n != 0 {
		t.Errorf("Eval after a reload: %v allocations, want 0", n)
	}
}

// TestReloadKeepsWindows: a reload that gives another sensor a rate and a
// prediction moves every ring of those sizes to new places (they are laid
// out by time, see ring); the windows of the sensors whose rules did not
// change go with them, so those sensors decide exactly as an engine that
// was never reloaded.
func TestReloadKeepsWindows(t *testing.T) {
	p := &model.Plant{Gateways: []model.Gateway{{ID: "gw", PollPeriodMS: 1000}}}
	for _, id := range []string{"a", "b", "c"} {
		p.Sensors = append(p.Sensors, model.Sensor{ID: id, Gateway: 0, Device: -1, HazardSource: -1})
	}
	p.Index()
	trend := allRules
	trend.Frozen = model.FrozenRule{}
	before := []model.SensorRules{trend, {}, trend}
	after := []model.SensorRules{trend, trend, trend}
	plain, reloaded := New(p, before, nil), New(p, before, nil)
	var want, got []string
	for k := range 200 {
		if k == 100 {
			out, err := reloaded.Reload(p, after, nil, time.UnixMilli(int64(k)*1000), nil)
			if err != nil || len(out) != 0 {
				t.Fatalf("reload: %+v, %v", out, err)
			}
		}
		for _, i := range []int32{0, 2} {
			// A level that rises through H and HH, falls back and again.
			v := 10 + 14*math.Abs(math.Sin(float64(k)/40+float64(i)))
			r := model.Reading{SensorIdx: i, TS: int64(k) * 1000, Value: v, HasValue: true}
			for _, tr := range plain.Eval(r, nil) {
				want = append(want, formatTransition(p, tr))
			}
			for _, tr := range reloaded.Eval(r, nil) {
				got = append(got, formatTransition(p, tr))
			}
		}
		reloaded.Eval(model.Reading{SensorIdx: 1, TS: int64(k) * 1000, Value: 5, HasValue: true}, nil)
	}
	if len(want) < 10 {
		t.Fatalf("%d transitions: the readings do not exercise the windows", len(want))
	}
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("after the reload\n%s\nwant, as without it,\n%s", g, w)
	}
}
