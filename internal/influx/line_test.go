package influx

import (
	"math"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

func TestAppendReading(t *testing.T) {
	p := &model.Plant{
		Counties:      []model.County{{ID: "c01"}},
		Parks:         []model.Park{{ID: "p01", County: 0}},
		Enterprises:   []model.Enterprise{{ID: "e01", Park: 0}},
		HazardSources: []model.HazardSource{{ID: "hs 1", Enterprise: 0}},
		Gateways:      []model.Gateway{{ID: "gw-1", Enterprise: 0}},
		Sensors: []model.Sensor{
			{ID: "T101", Kind: model.GasToxic, Unit: "mg/m³", Enterprise: 0, HazardSource: 0, Gateway: 0},
			{ID: "P1", Kind: model.Power, Unit: "k,W=x", Enterprise: 0, HazardSource: -1, Gateway: 0},
		},
	}
	tags := newReadingTags(p)
	const prefix0 = "reading,county=c01,enterprise=e01,gateway=gw-1,hazard_source=hs\\ 1,kind=gas_toxic,park=p01,sensor=T101,unit=mg/m³ "
	for _, c := range []struct {
		name string
		r    model.Reading
		want string
	}{
		{"good", model.Reading{SensorIdx: 0, TS: 1732442400123, Value: 3.42, HasValue: true},
			prefix0 + "value=3.42,quality=0i 1732442400123000000\n"},
		{"late is not written", model.Reading{SensorIdx: 0, TS: 1732442400123, Value: 3.42, HasValue: true, Late: true},
			prefix0 + "value=3.42,quality=0i 1732442400123000000\n"},
		{"uncertain, large", model.Reading{SensorIdx: 0, TS: 1, Value: 1e21, HasValue: true, Quality: model.Uncertain},
			prefix0 + "value=1e+21,quality=1i 1000000\n"},
		{"bad without value", model.Reading{SensorIdx: 0, TS: 2, Quality: model.Bad, Reason: model.ReasonTimeout},
			prefix0 + "quality=2i,reason=\"timeout\" 2000000\n"},
		{"non-finite value left out", model.Reading{SensorIdx: 0, TS: 3, Value: math.Inf(1), HasValue: true},
			prefix0 + "quality=0i 3000000\n"},
		{"no hazard source, escaped unit", model.Reading{SensorIdx: 1, TS: -5, Value: -2, HasValue: true},
			"reading,county=c01,enterprise=e01,gateway=gw-1,kind=power,park=p01,sensor=P1,unit=k\\,W\\=x value=-2,quality=0i -5000000\n"},
	} {
		if got := string(appendReading(nil, tags, &c.r)); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestAppendAlarmEvent(t *testing.T) {
	e := AlarmEvent{
		Time: time.Unix(1, 5), Enterprise: "e01", Sensor: "T101", Class: "offline", Rule: "offline", Event: "raised",
		Value: 30, Limit: math.NaN(), Message: "离线 \"30 s\" \\ offline\nsecond line", AlarmID: "T101.offline.1",
	}
	want := "alarm_event,class=offline,enterprise=e01,event=raised,rule=offline,sensor=T101 " +
		"alarm_id=\"T101.offline.1\",message=\"离线 \\\"30 s\\\" \\\\ offline\nsecond line\",value=30 1000000005\n"
	if got := string(appendAlarmEvent(nil, &e)); got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	// A gateway's alarm: no sensor, no level, no hazard source tags.
	e = AlarmEvent{Time: time.Unix(2, 0), Enterprise: "e01", Class: "offline", Rule: "gateway_silent", Event: "raised",
		Value: 95, Limit: 5, AlarmID: "gw-e01-1.gateway_silent.1"}
	want = "alarm_event,class=offline,enterprise=e01,event=raised,rule=gateway_silent " +
		"alarm_id=\"gw-e01-1.gateway_silent.1\",limit=5,message=\"\",value=95 2000000000\n"
	if got := string(appendAlarmEvent(nil, &e)); got != want {
		t.Errorf("gateway alarm:\n got %q\nwant %q", got, want)
	}
}

func TestAppendTagText(t *testing.T) {
	for in, want := range map[string]string{
		"a b,c=d": `a\ b\,c\=d`,
		"x\ny":    "x y",
		`a\b`:     `a\b`,
		`ab\`:     "ab",
		"°C":      "°C",
	} {
		if got := string(appendTagText(nil, in)); got != want {
			t.Errorf("appendTagText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAppendReadingAllocations: encoding a reading into a buffer with room
// allocates nothing (the writer encodes every reading of the stream).
func TestAppendReadingAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := demoPlant(t)
	tags := newReadingTags(p)
	buf := make([]byte, 0, 4096)
	r := model.Reading{SensorIdx: 3, TS: 1732442400123, Value: 12.345, HasValue: true, Quality: model.Bad, Reason: model.ReasonTimeout}
	if n := testing.AllocsPerRun(1000, func() { buf = appendReading(buf[:0], tags, &r) }); n != 0 {
		t.Errorf("appendReading: %v allocations, want 0", n)
	}
}

func BenchmarkAppendReading(b *testing.B) {
	p := demoPlant(b)
	tags := newReadingTags(p)
	rs := make([]model.Reading, len(p.Sensors))
	for i := range rs {
		rs[i] = model.Reading{SensorIdx: int32(i), TS: 1732442400123 + int64(i), Value: 12.345 + float64(i), HasValue: true}
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if len(buf) > 60<<10 {
			buf = buf[:0]
		}
		buf = appendReading(buf, tags, &rs[i%len(rs)])
	}
}
