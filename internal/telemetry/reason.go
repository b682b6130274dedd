// Package telemetry is the public MQTT contract between gateways and the
// centre (SPEC §2) in code: the topic layout, the JSON of telemetry and status
// messages, and the rules that decide which messages and readings the centre
// accepts. Gateways (and tests) encode with it; ingest decodes with it.
//
// Third-party gateways are written against this contract, so the decoder is
// strict about what it needs (gateway, boot, seq, readings and each reading's
// sensor, ts, v, q, r) and ignores everything else, letting the contract
// grow. A bad reading is rejected alone: one faulty sensor never costs the
// rest of a poll cycle.
//
// Decoding sits on the ingest hot path: a good message decodes into a reused
// Message without allocating per reading.
package telemetry

import "strconv"

// Reason is why a message or a reading was rejected; String gives the
// reason label of hw_ingest_rejected_total (SPEC §3).
type Reason uint8

const (
	ReasonInvalidJSON Reason = iota + 1
	ReasonMalformedMessage
	ReasonOversized
	ReasonBadTopic
	ReasonUnknownGateway
	ReasonNotAuthorized
	ReasonUnknownSensor
	ReasonWrongEnterprise
	ReasonFutureTimestamp
	ReasonStaleTimestamp
	ReasonNonFinite
	ReasonMalformedReading
	numReasons
)

var reasonLabels = [numReasons]string{
	ReasonInvalidJSON:      "invalid_json",
	ReasonMalformedMessage: "malformed_message",
	ReasonOversized:        "oversized",
	ReasonBadTopic:         "bad_topic",
	ReasonUnknownGateway:   "unknown_gateway",
	ReasonNotAuthorized:    "not_authorized",
	ReasonUnknownSensor:    "unknown_sensor",
	ReasonWrongEnterprise:  "wrong_enterprise",
	ReasonFutureTimestamp:  "future_timestamp",
	ReasonStaleTimestamp:   "stale_timestamp",
	ReasonNonFinite:        "non_finite",
	ReasonMalformedReading: "malformed_reading",
}

// Reasons lists every reason in label order, so that metrics can register
// all their label values up front and a dashboard sees zeros, not gaps.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := ReasonInvalidJSON; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

func (r Reason) String() string {
	if r >= ReasonInvalidJSON && r < numReasons {
		return reasonLabels[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// PerReading reports whether r rejects one reading rather than a whole
// message; SPEC §3 counts both under the same metric.
func (r Reason) PerReading() bool {
	return r >= ReasonUnknownSensor && r <= ReasonMalformedReading
}

// Error is a message-level rejection. Ingest still acknowledges the message
// (SPEC §2: rejecting content is not refusing delivery), counts it under
// Reason and logs Detail.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "telemetry: " + e.Reason.String()
	}
	return "telemetry: " + e.Reason.String() + ": " + e.Detail
}
