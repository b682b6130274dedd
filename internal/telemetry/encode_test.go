package telemetry

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"hazardwatch/internal/model"
)

func TestAppendTelemetry(t *testing.T) {
	tests := []struct {
		name string
		out  Out
		want string // the reading's JSON
	}{
		{"good", Out{Sensor: "e01-T101-LT", TS: 1732442400123, Value: 3.42, HasValue: true},
			`{"sensor":"e01-T101-LT","ts":1732442400123,"v":3.42}`},
		{"good with reason", Out{Sensor: "s", TS: 1, Value: 1, HasValue: true, Reason: model.ReasonTimeout},
			`{"sensor":"s","ts":1,"v":1,"r":"timeout"}`},
		{"uncertain", Out{Sensor: "s", TS: 1, Value: -0.5, HasValue: true, Quality: model.Uncertain, Reason: model.ReasonOutOfRange},
			`{"sensor":"s","ts":1,"v":-0.5,"q":"uncertain","r":"out_of_range"}`},
		{"bad without value", Out{Sensor: "s", TS: 1, Quality: model.Bad, Reason: model.ModbusException(2)},
			`{"sensor":"s","ts":1,"q":"bad","r":"exception_02"}`},
		{"bad without reason", Out{Sensor: "s", TS: 1, Quality: model.Bad},
			`{"sensor":"s","ts":1,"q":"bad"}`},
		{"NaN", Out{Sensor: "s", TS: 1, Value: math.NaN(), HasValue: true},
			`{"sensor":"s","ts":1,"q":"bad","r":"other"}`},
		{"+Inf keeps its reason", Out{Sensor: "s", TS: 1, Value: math.Inf(1), HasValue: true, Quality: model.Uncertain, Reason: model.ReasonDeviceFault},
			`{"sensor":"s","ts":1,"q":"bad","r":"device_fault"}`},
		{"-Inf", Out{Sensor: "s", TS: 1, Value: math.Inf(-1), HasValue: true},
			`{"sensor":"s","ts":1,"q":"bad","r":"other"}`},
		{"good without value", Out{Sensor: "s", TS: 1},
			`{"sensor":"s","ts":1,"q":"bad","r":"other"}`},
		{"unknown quality", Out{Sensor: "s", TS: 1, Value: 2, HasValue: true, Quality: 9},
			`{"sensor":"s","ts":1,"v":2,"q":"bad"}`},
		{"negative zero", Out{Sensor: "s", TS: -1, Value: math.Copysign(0, -1), HasValue: true},
			`{"sensor":"s","ts":-1,"v":-0}`},
		{"large and tiny", Out{Sensor: "s", TS: 1, Value: 1e21, HasValue: true},
			`{"sensor":"s","ts":1,"v":1e+21}`},
		{"escapes", Out{Sensor: "a\"b\\c\n\t\x01\x7f储\xff", TS: 1, Value: 1, HasValue: true},
			`{"sensor":"a\"b\\c\n\t\u0001` + "\x7f储" + `\ufffd","ts":1,"v":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendTelemetry(nil, "gw-e01-1", "2f9c", 7, false, []Out{tt.out}))
			want := `{"gateway":"gw-e01-1","boot":"2f9c","seq":7,"readings":[` + tt.want + `]}`
			if got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// TestAppendTelemetryShape decodes the output with encoding/json into the
// shape of SPEC §2's example, so that a third party reading the spec reads
// what a hazardwatch gateway writes.
func TestAppendTelemetryShape(t *testing.T) {
	prefix := []byte("prefix:")
	out := AppendTelemetry(prefix, "gw-e01-1", "2f9c…", 1024, true, []Out{
		{Sensor: "e01-T101-LT", TS: 1732442400123, Value: 3.42, HasValue: true},
		{Sensor: "e01-T101-PT", TS: 1732442400124, Quality: model.Bad, Reason: model.ReasonTimeout},
	})
	if string(out[:len(prefix)]) != "prefix:" {
		t.Fatalf("AppendTelemetry did not append: %s", out)
	}
	var msg struct {
		Gateway  string `json:"gateway"`
		Boot     string `json:"boot"`
		Seq      uint64 `json:"seq"`
		Replay   bool   `json:"replay"`
		Readings []struct {
			Sensor string   `json:"sensor"`
			TS     int64    `json:"ts"`
			V      *float64 `json:"v"`
			Q      *string  `json:"q"`
			R      *string  `json:"r"`
		} `json:"readings"`
	}
	dec := json.NewDecoder(bytes.NewReader(out[len(prefix):]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&msg); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if msg.Gateway != "gw-e01-1" || msg.Boot != "2f9c…" || msg.Seq != 1024 || !msg.Replay || len(msg.Readings) != 2 {
		t.Fatalf("decoded %+v", msg)
	}
	r0, r1 := msg.Readings[0], msg.Readings[1]
	if r0.Sensor != "e01-T101-LT" || r0.TS != 1732442400123 || r0.V == nil || *r0.V != 3.42 || r0.Q != nil || r0.R != nil {
		t.Errorf("reading 0 = %+v", r0)
	}
	if r1.V != nil || r1.Q == nil || *r1.Q != "bad" || r1.R == nil || *r1.R != "timeout" {
		t.Errorf("reading 1 = %+v", r1)
	}
}

// TestAppendTelemetryFloats checks that every value a gateway can produce
// survives the trip exactly: the centre compares values against limits, so
// 0.1 must come back as 0.1, not its neighbour.
func TestAppendTelemetryFloats(t *testing.T) {
	values := []float64{0, 0.1, 1.0 / 3, -273.15, 3.42, 1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, float64(math.MaxInt64), 123456789.123456789, math.Nextafter(1, 2)}
	dec := NewDecoder(testPlant(), Options{})
	var m Message
	for _, v := range values {
		payload := AppendTelemetry(nil, "gw-e01-1", "b", 1, false, []Out{{Sensor: "e01-T101-LT", TS: testNowMS, Value: v, HasValue: true}})
		if err := dec.Decode(TelemetryTopic("e01", "gw-e01-1"), payload, testNow, 0, &m); err != nil || len(m.Readings) != 1 {
			t.Fatalf("%v: Decode(%s) = %v, %+v", v, payload, err, m)
		}
		if got := m.Readings[0].Value; math.Float64bits(got) != math.Float64bits(v) {
			t.Errorf("wrote %s, read %s", strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(got, 'g', -1, 64))
		}
	}
}

func TestAppendTelemetryAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	outs := make([]Out, 60)
	for i := range outs {
		outs[i] = Out{Sensor: "e01-AI-000", TS: testNowMS, Value: float64(i) / 7, HasValue: true, Quality: model.Quality(i % 3), Reason: model.QualityReason(i % 20)}
	}
	buf := AppendTelemetry(nil, "gw-e01-1", "b", 1, false, outs)
	if n := testing.AllocsPerRun(100, func() { buf = AppendTelemetry(buf[:0], "gw-e01-1", "b", 1, false, outs) }); n != 0 {
		t.Errorf("AppendTelemetry into a large enough buffer: %v allocations, want 0", n)
	}
}
