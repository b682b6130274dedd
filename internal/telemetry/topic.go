package telemetry

import (
	"strconv"
	"strings"
)

// TopicKind says which of a gateway's two topics a topic is.
type TopicKind uint8

const (
	TopicTelemetry TopicKind = iota + 1
	TopicStatus
)

func (k TopicKind) String() string {
	switch k {
	case TopicTelemetry:
		return "telemetry"
	case TopicStatus:
		return "status"
	}
	return "topic_kind(" + strconv.Itoa(int(k)) + ")"
}

// Topic is a parsed hw/v1/{enterprise}/{gateway}/{kind} topic.
type Topic struct {
	Enterprise, Gateway string
	Kind                TopicKind
}

const topicPrefix = "hw/v1/"

// ParseTopic splits a gateway topic. Enterprise and Gateway are substrings
// of topic, so parsing the topic of every message costs no allocation.
// Wildcards are refused even inside a segment: MQTT forbids them in the name
// a message is published to, so one here means a filter was passed by
// mistake.
func ParseTopic(topic string) (Topic, error) {
	rest, ok := strings.CutPrefix(topic, topicPrefix)
	if !ok {
		return Topic{}, topicError(topic, "does not start with "+topicPrefix)
	}
	ent, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return Topic{}, topicError(topic, "has too few levels")
	}
	gw, kind, ok := strings.Cut(rest, "/")
	if !ok {
		return Topic{}, topicError(topic, "has too few levels")
	}
	t := Topic{Enterprise: ent, Gateway: gw}
	switch kind {
	case "telemetry":
		t.Kind = TopicTelemetry
	case "status":
		t.Kind = TopicStatus
	default:
		return Topic{}, topicError(topic, "does not end in /telemetry or /status")
	}
	if !validSegment(ent) {
		return Topic{}, topicError(topic, "has an empty or wildcard enterprise")
	}
	if !validSegment(gw) {
		return Topic{}, topicError(topic, "has an empty or wildcard gateway")
	}
	return t, nil
}

func validSegment(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#\x00")
}

func topicError(topic, what string) *Error {
	return &Error{Reason: ReasonBadTopic, Detail: "topic " + strconv.Quote(topic) + " " + what}
}

// TelemetryTopic is the topic a gateway publishes its readings to.
func TelemetryTopic(enterprise, gateway string) string {
	return topicPrefix + enterprise + "/" + gateway + "/telemetry"
}

// StatusTopic is the retained topic of a gateway's online/offline status.
func StatusTopic(enterprise, gateway string) string {
	return topicPrefix + enterprise + "/" + gateway + "/status"
}
