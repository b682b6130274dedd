package telemetry

import (
	"errors"
	"testing"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  Topic // zero: an error
	}{
		{"hw/v1/e01/gw-e01-1/telemetry", Topic{"e01", "gw-e01-1", TopicTelemetry}},
		{"hw/v1/e01/gw-e01-1/status", Topic{"e01", "gw-e01-1", TopicStatus}},
		{"hw/v1/园区A/网关-1/telemetry", Topic{"园区A", "网关-1", TopicTelemetry}},
		{"hw/v1/e 01/gw.1/status", Topic{"e 01", "gw.1", TopicStatus}},
		{"", Topic{}},
		{"hw/v1/", Topic{}},
		{"hw/v1/e01", Topic{}},
		{"hw/v1/e01/gw-e01-1", Topic{}},
		{"hw/v1/e01/gw-e01-1/", Topic{}},
		{"hw/v1/e01/gw-e01-1/telemetry/", Topic{}},
		{"hw/v1/e01/gw-e01-1/telemetry/x", Topic{}},
		{"hw/v1/e01/gw-e01-1/Telemetry", Topic{}},
		{"hw/v1/e01/gw-e01-1/readings", Topic{}},
		{"hw/v1//gw-e01-1/telemetry", Topic{}},
		{"hw/v1/e01//telemetry", Topic{}},
		{"hw/v1/+/gw-e01-1/telemetry", Topic{}},
		{"hw/v1/e01/+/telemetry", Topic{}},
		{"hw/v1/e01/gw#/telemetry", Topic{}},
		{"hw/v1/e01/#", Topic{}},
		{"hw/v1/e01/gw\x00/telemetry", Topic{}},
		{"hw/v2/e01/gw-e01-1/telemetry", Topic{}},
		{"/hw/v1/e01/gw-e01-1/telemetry", Topic{}},
		{"HW/v1/e01/gw-e01-1/telemetry", Topic{}},
	}
	for _, tt := range tests {
		got, err := ParseTopic(tt.topic)
		if tt.want == (Topic{}) {
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonBadTopic {
				t.Errorf("ParseTopic(%q) = %+v, %v; want a bad_topic error", tt.topic, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", tt.topic, got, err, tt.want)
		}
		if tt.want.Kind == TopicTelemetry && TelemetryTopic(got.Enterprise, got.Gateway) != tt.topic ||
			tt.want.Kind == TopicStatus && StatusTopic(got.Enterprise, got.Gateway) != tt.topic {
			t.Errorf("%q does not build back from %+v", tt.topic, got)
		}
	}
}

func TestParseTopicAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseTopic("hw/v1/e01/gw-e01-1/telemetry") }); n != 0 {
		t.Errorf("ParseTopic: %v allocations, want 0", n)
	}
}
