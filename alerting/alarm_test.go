package alerting

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

func TestPriority(t *testing.T) {
	tests := []struct {
		class  model.AlarmClass
		level  model.AlarmLevel
		source int
		want   int
	}{
		{model.ClassAlarm, model.L2, 1, 1},
		{model.ClassAlarm, model.L2, 4, 1}, // L2 is top wherever it is
		{model.ClassAlarm, model.L2, 0, 1},
		{model.ClassViolation, model.NoLevel, 0, 1},
		{model.ClassAlarm, model.L1, 1, 2},
		{model.ClassAlarm, model.L1, 2, 2},
		{model.ClassAlarm, model.L1, 3, 3},
		{model.ClassAlarm, model.L1, 0, 3},
		{model.ClassPrewarning, model.L1, 2, 3},
		{model.ClassFault, model.NoLevel, 1, 3},
		{model.ClassOffline, model.NoLevel, 2, 3},
		{model.ClassOffline, model.NoLevel, 4, 4},
		{model.ClassFault, model.NoLevel, 0, 4},
	}
	for _, tc := range tests {
		if got := Priority(tc.class, tc.level, tc.source); got != tc.want {
			t.Errorf("Priority(%s, %q, source level %d) = %d, want %d", tc.class, tc.level, tc.source, got, tc.want)
		}
	}
}

func TestMessage(t *testing.T) {
	raised := time.Date(2026, 3, 1, 8, 2, 54, 0, time.UTC)
	tests := []struct {
		a    Alarm
		want string
		at   time.Time // of the reading that raised it
	}{
		{
			Alarm{Class: model.ClassAlarm, Kind: model.Level, Rule: model.ThresholdHigh, Level: model.L2, LimitKind: "HH",
				SensorName: "V101 液氯储罐液位", Source: Source{Sensor: "e01-V101-LT"}, Unit: "m", Value: 2.45, Limit: 2.4},
			"V101 液氯储罐液位高高报警 (HH)：2.45 m，报警值 2.4 m / e01-V101-LT level HH alarm: 2.45 m, limit 2.4 m", time.Time{},
		},
		{
			Alarm{Class: model.ClassAlarm, Kind: model.Level, Rule: model.ThresholdLow, Level: model.L1,
				SensorName: "V402 汽包液位", Source: Source{Sensor: "e02-V402-LT"}, Unit: "%", Value: 29.5, Limit: 30},
			"V402 汽包液位低报警 (L)：29.5 %，报警值 30 % / e02-V402-LT level L alarm: 29.5 %, limit 30 %", time.Time{},
		},
		{
			Alarm{Class: model.ClassAlarm, Kind: model.GasCombustible, Rule: model.ThresholdHigh, Level: model.L1, LimitKind: "H",
				SensorName: "液化石油气装卸车台可燃气体检测器（丙烷标定）", Source: Source{Sensor: "e02-GT-203"}, Unit: "%LEL", Value: 21.3, Limit: 20},
			"液化石油气装卸车台可燃气体检测器（丙烷标定）一级报警 (H)：21.3 %LEL，报警值 20 %LEL / e02-GT-203 combustible gas L1 alarm (H): 21.3 %LEL, limit 20 %LEL", time.Time{},
		},
		{
			Alarm{Class: model.ClassAlarm, Kind: model.GasOxygen, Rule: model.ThresholdLow, Level: model.L1, LimitKind: "L",
				SensorName: "氯化厂房氧含量", Source: Source{Sensor: "e03-AT-501"}, Unit: "%VOL", Value: 19.2, Limit: 19.5},
			"氯化厂房氧含量欠氧报警 (L)：19.2 %VOL，报警值 19.5 %VOL / e03-AT-501 oxygen deficiency alarm (L): 19.2 %VOL, limit 19.5 %VOL", time.Time{},
		},
		{
			Alarm{Class: model.ClassAlarm, Kind: model.GasToxic, Rule: model.Voted, Level: model.L2,
				SensorName: "液氯储罐区东侧氯气检测器", Source: Source{Sensor: "e01-GT-101"}, Value: 2, Limit: 2},
			"液氯储罐区东侧氯气检测器所在区域表决确认报警：2 台检测器报警（表决 2 台） / gas alarm confirmed by vote at e01-GT-101: 2 detectors in alarm (vote 2)", time.Time{},
		},
		{
			Alarm{Class: model.ClassViolation, Kind: model.Power, Rule: model.StopOrder,
				SensorName: "10kV 总进线有功功率", Source: Source{Enterprise: "e03", Sensor: "e03-PM-001"}, Unit: "kW", Value: 860, Limit: 80},
			"停产整顿企业 e03 用电异常：860 kW，基线 80 kW（10kV 总进线有功功率） / stop-ordered enterprise e03 drawing power: 860 kW, idle baseline 80 kW (e03-PM-001)", time.Time{},
		},
		{
			Alarm{Class: model.ClassViolation, Kind: model.SIS, Rule: model.SISBypass,
				SensorName: "R401 合成塔 SIS 状态", Source: Source{Sensor: "e02-SIS-401"}, Value: 1, Limit: 2},
			"R401 合成塔 SIS 状态旁路违规：安全仪表系统或紧急切断被旁路（二级重大危险源） / e02-SIS-401 SIS or emergency shut-off bypassed on a level 2 major hazard source", time.Time{},
		},
		{
			Alarm{Class: model.ClassOffline, Kind: model.GasToxic, Rule: model.Silent,
				SensorName: "液氯储罐区东侧氯气检测器", Source: Source{Sensor: "e01-GT-101"}, Unit: "s", Value: 5, Limit: 5},
			"液氯储罐区东侧氯气检测器离线：5 s 无数据（限值 5 s） / e01-GT-101 offline: no data for 5 s (limit 5 s)", time.Time{},
		},
		{
			Alarm{Class: model.ClassPrewarning, Kind: model.Level, Rule: model.PredictHigh, LimitKind: "H",
				SensorName: "V201 液化石油气球罐液位", Source: Source{Sensor: "e02-V201-LT"}, Unit: "m", Value: 8.218, Limit: 9.5,
				ETA: raised.Add(72 * time.Second)},
			"V201 液化石油气球罐液位趋势预警：预计约 72 s 后达到高报警值 (H) 9.5 m，当前 8.218 m / e02-V201-LT trend prewarning: expected to reach H 9.5 m in about 72 s, now 8.218 m", raised,
		},
		{
			Alarm{Class: model.ClassPrewarning, Kind: model.Level, Rule: model.PredictLow, LimitKind: "L",
				SensorName: "T301 甲醇储罐液位", Source: Source{Sensor: "e02-T301-LT"}, Unit: "m", Value: 2.9, Limit: 2.2,
				ETA: raised.Add(330 * time.Second)},
			"T301 甲醇储罐液位趋势预警：预计约 5.5 分钟后达到低报警值 (L) 2.2 m，当前 2.9 m / e02-T301-LT trend prewarning: expected to reach L 2.2 m in about 5.5 min, now 2.9 m", raised,
		},
		{
			Alarm{Class: model.ClassPrewarning, Kind: model.Pressure, Rule: model.RateRise,
				SensorName: "R401 合成塔入口压力", Source: Source{Sensor: "e02-R401-PT"}, Unit: "MPa/min", Value: 2.002, Limit: 1},
			"R401 合成塔入口压力上升过快预警：2.002 MPa/min，限值 1 MPa/min / e02-R401-PT rising too fast: 2.002 MPa/min, limit 1 MPa/min", time.Time{},
		},
		{
			Alarm{Class: model.ClassFault, Kind: model.GasCombustible, Rule: model.Frozen,
				SensorName: "转化炉燃料气阀组可燃气体检测器", Source: Source{Sensor: "e02-GT-402"}, Unit: "%LEL", Value: 4, Limit: 120},
			"转化炉燃料气阀组可燃气体检测器数值冻结故障：4 %LEL 已 120 s 未变化 / e02-GT-402 frozen value: 4 %LEL unchanged for 120 s", time.Time{},
		},
		{
			Alarm{Class: model.ClassFault, Kind: model.GasCombustible, Rule: model.OutOfRange, Reason: "out_of_range",
				SensorName: "转化炉燃料气阀组可燃气体检测器", Source: Source{Sensor: "e02-GT-402"}, Unit: "%LEL", Value: 6553.5, Limit: 100},
			"转化炉燃料气阀组可燃气体检测器超量程故障：6554 %LEL，量程限 100 %LEL / e02-GT-402 out of range: 6554 %LEL, range limit 100 %LEL", time.Time{},
		},
		{
			Alarm{Class: model.ClassFault, Kind: model.GasCombustible, Rule: model.OutOfRange, Reason: "device_fault",
				SensorName: "转化炉燃料气阀组可燃气体检测器", Source: Source{Sensor: "e02-GT-402"}, Unit: "%LEL", Value: 0.3, Limit: 100},
			"转化炉燃料气阀组可燃气体检测器仪表故障（设备故障位）：0.3 %LEL / e02-GT-402 device fault (the device's fault bit): 0.3 %LEL", time.Time{},
		},
		{
			Alarm{Class: model.ClassFault, Kind: model.Pressure, Rule: model.BadQuality, Reason: "timeout",
				SensorName: "T301 甲醇储罐压力", Source: Source{Sensor: "e02-T301-PT"}, Value: 3, Limit: 3},
			"T301 甲醇储罐压力数据质量故障：连续 3 次坏值（timeout） / e02-T301-PT bad quality: 3 bad readings in a row (timeout)", time.Time{},
		},
	}
	for _, tc := range tests {
		if got := message(&tc.a, tc.at); got != tc.want {
			t.Errorf("message\n got %s\nwant %s", got, tc.want)
		}
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 2.4: "2.4", 0.1 + 0.2: "0.3", 75000: "75000", 1350: "1350", 2.45678: "2.457",
		-0.2: "-0.2", 19.5: "19.5", 123456: "123500", 0.0012344: "0.001234",
	} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %s, want %s", v, got, want)
		}
	}
}

// TestEventJSON: an event survives the log's encoding exactly, and the
// alarm object has SPEC §3's field names and values.
func TestEventJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 1, 500_000_000, time.UTC)
	ev := Event{
		Op: OpAck, Name: Cleared, At: at, User: "李明远", Comment: "现场确认无泄漏",
		Seq: Seqs{Global: 12, Enterprise: 5, Park: 12, County: 12},
		Alarm: Alarm{
			ID: "e01-GT-101.threshold_high.3", Occurrence: 3, Class: model.ClassAlarm, Priority: 2, Level: model.L1,
			State: model.StateNormal, Latch: true, Late: true, Source: gasSrc, SensorName: "液氯储罐区东侧氯气检测器",
			Kind: model.GasToxic, Rule: model.ThresholdHigh, LimitKind: "H", Value: 0.2, Limit: 1, Unit: "ppm",
			Message: "m", RaisedAt: at.Add(-time.Hour), AckedAt: at, AckedBy: "李明远", ReturnedAt: at.Add(-time.Minute),
			ClearedAt: at, ClearedBy: "李明远",
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"v":1`, `"seq":12`, `"seq_enterprise":5`, `"event":"cleared"`, `"op":"ack"`,
		`"id":"e01-GT-101.threshold_high.3"`, `"class":"alarm"`, `"priority":2`, `"level":"L1"`, `"state":"normal"`,
		`"source":{"county":"c01","park":"p01","enterprise":"e01","hazard_source":"e01-hs1","sensor":"e01-GT-101","gateway":"gw-e01-1"}`,
		`"rule":"threshold_high"`, `"limit":1`, `"unit":"ppm"`, `"raised_at":"2026-11-25T07:00:01.5Z"`,
		`"acked_by":"李明远"`, `"late":true`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoded event lacks %s:\n%s", want, b)
		}
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Errorf("round trip changed the event:\n%+v\n%+v", ev, back)
	}

	a := ev.Alarm
	a.AckedAt, a.ClearedAt, a.State = time.Time{}, time.Time{}, model.StateUnackActive
	a.History = []Entry{{Seq: 1, Event: Raised, At: at, TS: at.Add(-time.Second), State: model.StateUnackActive, Level: model.L1, Value: 1.2, Late: true}}
	b, err = json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"acked_at":null`) || !strings.Contains(string(b), `"history":[{"seq":1,"event":"raised"`) {
		t.Errorf("alarm JSON: %s", b)
	}
	var back2 Alarm
	if err := json.Unmarshal(b, &back2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back2, a) {
		t.Errorf("round trip changed the alarm:\n%+v\n%+v", a, back2)
	}

	// A shelved alarm keeps its holds, the state underneath and the
	// shelf's due time through the log.
	sh := Event{
		Op: OpShelve, Name: Shelved, At: at, User: "李明远", Reason: "探头受潮，待更换", Duration: 30 * time.Minute,
		Due: at.Add(30 * time.Minute), Seq: Seqs{Global: 13, Enterprise: 6, Park: 13, County: 13},
		Alarm: a,
	}
	sh.Alarm.History = nil
	sh.Alarm.State, sh.Alarm.Base, sh.Alarm.Unshown = model.StateSuppressed, model.StateUnackRTN, true
	sh.Alarm.Shelf = Hold{At: at, Until: at.Add(30 * time.Minute), By: "李明远", Reason: "探头受潮，待更换"}
	sh.Alarm.Suppression = Hold{At: at.Add(-time.Hour), Reason: SuppressMaintenance}
	b, err = json.Marshal(sh)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"op":"shelve"`, `"event":"shelved"`, `"duration":"30m0s"`, `"due_at":"2026-11-25T08:30:01.5Z"`,
		`"state":"suppressed","base_state":"unack_rtn"`,
		`"shelf":{"at":"2026-11-25T08:00:01.5Z","until":"2026-11-25T08:30:01.5Z","by":"李明远","reason":"探头受潮，待更换"}`,
		`"suppression":{"at":"2026-11-25T07:00:01.5Z","by":"","reason":"maintenance"}`, `"unshown":true`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoded shelve lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), `"out_of_service"`) {
		t.Errorf("a hold that is off is encoded: %s", b)
	}
	back = Event{}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, sh) {
		t.Errorf("round trip changed the shelve:\n%+v\n%+v", sh, back)
	}

	for _, bad := range []string{
		`{"v":2,"alarm":{}}`,
		`{"v":1,"event":"shelved","op":"shelve","duration":"half an hour","alarm":{"class":"alarm","state":"normal","rule":"silent","kind":"level"}}`,
		`{"v":1,"event":"shelved","op":"shelve","alarm":{"class":"alarm","state":"shelved","base_state":"shelved","shelf":{"at":"2026-11-25T08:00:00Z","by":"x","reason":"y"},"rule":"silent","kind":"level"}}`,
		`{"v":1,"event":"exploded","op":"raise","alarm":{"class":"alarm","state":"normal","rule":"silent","kind":"level"}}`,
		`{"v":1,"event":"raised","op":"raise","alarm":{"class":"alarm","state":"melted","rule":"silent","kind":"level"}}`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("decoded %s", bad)
		}
	}
}
