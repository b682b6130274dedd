package influx

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// TestMeasurementsMatchLines: the lines the encoder writes name exactly the
// tags and fields Measurements declares, with their types: every tag and
// field present when the point has everything, and never anything else
// whatever is left out. Dashboards are checked against Measurements, so
// this is what ties them to the writer.
func TestMeasurementsMatchLines(t *testing.T) {
	schema := map[string]Measurement{}
	for _, m := range Measurements() {
		if !slices.IsSorted(m.Tags) {
			t.Errorf("%s: tags not sorted: %v", m.Name, m.Tags)
		}
		for _, tag := range m.Tags {
			if _, ok := m.Fields[tag]; ok {
				t.Errorf("%s: %q is both a tag and a field", m.Name, tag)
			}
		}
		schema[m.Name] = m
	}
	if len(schema) != 2 || schema[MeasurementReading].Name == "" || schema[MeasurementAlarmEvent].Name == "" {
		t.Fatalf("Measurements() = %v, want %s and %s", slices.Collect(maps.Keys(schema)), MeasurementReading, MeasurementAlarmEvent)
	}

	p := &model.Plant{
		Counties:      []model.County{{ID: "c01"}},
		Parks:         []model.Park{{ID: "p01", County: 0}},
		Enterprises:   []model.Enterprise{{ID: "e01", Park: 0}, {ID: "e02", Park: -1}},
		HazardSources: []model.HazardSource{{ID: "hs1", Enterprise: 0}},
		Gateways:      []model.Gateway{{ID: "gw-1", Enterprise: 0}},
		Sensors: []model.Sensor{
			{ID: "T101", Kind: model.GasToxic, Unit: "ppm", Enterprise: 0, HazardSource: 0, Gateway: 0},
			{ID: "P1", Kind: model.Power, Unit: "kW", Enterprise: 1, HazardSource: -1, Gateway: -1},
		},
	}
	tags := newReadingTags(p)
	full := func(t *testing.T, line string, m Measurement) {
		t.Helper()
		name, gotTags, gotFields := parseLine(t, line)
		if name != m.Name {
			t.Errorf("measurement %q, want %q", name, m.Name)
		}
		if !slices.Equal(slices.Sorted(maps.Keys(gotTags)), m.Tags) {
			t.Errorf("%s: tags %v, want %v", line, slices.Sorted(maps.Keys(gotTags)), m.Tags)
		}
		if !maps.Equal(gotFields, m.Fields) {
			t.Errorf("%s: fields %v, want %v", line, gotFields, m.Fields)
		}
	}
	within := func(t *testing.T, line string, m Measurement) {
		t.Helper()
		name, gotTags, gotFields := parseLine(t, line)
		if name != m.Name {
			t.Errorf("measurement %q, want %q", name, m.Name)
		}
		for k := range gotTags {
			if !slices.Contains(m.Tags, k) {
				t.Errorf("%s: tag %q is not in Measurements", line, k)
			}
		}
		for k, typ := range gotFields {
			if want, ok := m.Fields[k]; !ok || want != typ {
				t.Errorf("%s: field %q of type %s; Measurements says %q", line, k, typ, want)
			}
		}
	}

	t.Run("reading", func(t *testing.T) {
		r := model.Reading{SensorIdx: 0, TS: 1732442400123, Value: 0.42, HasValue: true, Quality: model.Uncertain, Reason: model.ReasonOutOfRange}
		full(t, string(appendReading(nil, tags, &r)), schema[MeasurementReading])
		for _, r := range []model.Reading{
			{SensorIdx: 0, TS: 1, Value: 1, HasValue: true},
			{SensorIdx: 0, TS: 2, Quality: model.Bad, Reason: model.ReasonTimeout},
			{SensorIdx: 1, TS: 3, Value: math.NaN(), HasValue: true},
		} {
			within(t, string(appendReading(nil, tags, &r)), schema[MeasurementReading])
		}
	})
	t.Run("alarm_event", func(t *testing.T) {
		e := AlarmEvent{Time: time.Unix(1, 0), Enterprise: "e01", HazardSource: "hs1", Sensor: "T101", Class: "alarm",
			Level: "L1", Rule: "threshold_high", Event: "raised", Value: 0.5, Limit: 0.339, Message: "氯气 H", AlarmID: "T101.threshold_high.1"}
		full(t, string(appendAlarmEvent(nil, &e)), schema[MeasurementAlarmEvent])
		e = AlarmEvent{Time: time.Unix(2, 0), Sensor: "T101", Class: "offline", Rule: "silent", Event: "cleared",
			Value: math.Inf(1), Limit: math.NaN(), AlarmID: "T101.silent.1"}
		within(t, string(appendAlarmEvent(nil, &e)), schema[MeasurementAlarmEvent])
	})
}

// parseLine splits one line of line protocol into its measurement, tags
// and fields with their types (a quoted value is a string, a trailing i
// an integer, anything else a float). It knows the escapes the encoder
// writes and nothing more.
func parseLine(t *testing.T, line string) (name string, tags map[string]string, fields map[string]FieldType) {
	t.Helper()
	// Measurement and tags, fields, timestamp: split at the two spaces
	// that are neither escaped nor quoted.
	parts := splitUnescaped(strings.TrimSuffix(line, "\n"), ' ')
	if len(parts) != 3 {
		t.Fatalf("%q: %d space-separated parts, want 3", line, len(parts))
	}
	key := splitUnescaped(parts[0], ',')
	name, tags = key[0], map[string]string{}
	for _, kv := range key[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			t.Fatalf("%q: bad tag %q", line, kv)
		}
		tags[k] = v
	}
	fields = map[string]FieldType{}
	for _, kv := range splitUnescaped(parts[1], ',') {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			t.Fatalf("%q: bad field %q", line, kv)
		}
		switch {
		case strings.HasPrefix(v, `"`):
			fields[k] = String
		case strings.HasSuffix(v, "i"):
			fields[k] = Integer
		default:
			fields[k] = Float
		}
	}
	return name, tags, fields
}

// splitUnescaped splits s at sep where sep is neither escaped nor inside a
// quoted string value.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
