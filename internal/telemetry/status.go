package telemetry

import (
	"encoding/json"
	"strconv"
)

// Status is a gateway's retained status message. Its TS is the gateway's
// clock when it published the message, from which the centre measures the
// gateway's clock skew.
type Status struct {
	// State is StateOnline or StateOffline.
	State string
	Boot  string
	// TS is Unix milliseconds.
	TS int64
	// Dropped counts the messages the gateway's store-and-forward queue
	// dropped, oldest first, because it was full (issue #4); optional, 0
	// when absent. A present but malformed value is ignored: the status
	// still says whether the gateway is online.
	Dropped uint64
}

// The states of Status; the gateway's MQTT last will says offline.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// DecodeStatus decodes a status message. It returns an *Error with
// invalid_json or malformed_message. Status messages come once a minute per
// gateway, so unlike Decode it does not try to save allocations.
func DecodeStatus(payload []byte) (Status, error) {
	if !json.Valid(payload) {
		return Status{}, &Error{Reason: ReasonInvalidJSON, Detail: syntaxDetail(payload)}
	}
	c := cursor{b: payload}
	if !c.enter('{') {
		return Status{}, malformed("the status is not a JSON object")
	}
	var state, boot, ts, dropped span
	for {
		key, _, more, ok := c.member()
		if !ok {
			return Status{}, malformed("the status could not be scanned")
		}
		if !more {
			break
		}
		sp, ok := c.valueSpan()
		if !ok {
			return Status{}, malformed("the status could not be scanned")
		}
		switch string(key) {
		case "state":
			state = sp
		case "boot":
			boot = sp
		case "ts":
			ts = sp
		case "dropped":
			dropped = sp
		}
	}
	var s Status
	st, _ := stringAt(payload, state)
	switch string(st) {
	case StateOnline:
		s.State = StateOnline
	case StateOffline:
		s.State = StateOffline
	default:
		return Status{}, malformed(`state is missing or not "online" or "offline"`)
	}
	b, ok := stringAt(payload, boot)
	if !ok || len(b) == 0 || len(b) > maxBoot {
		return Status{}, malformed("boot is missing or not a non-empty string of at most 64 bytes")
	}
	s.Boot = string(b)
	if s.TS, ok = int64Of(numberAt(payload, ts)); !ok {
		return Status{}, malformed("ts is missing or not an integer of Unix milliseconds")
	}
	if n, ok := int64Of(numberAt(payload, dropped)); ok && n > 0 {
		s.Dropped = uint64(n)
	}
	return s, nil
}

// AppendStatus appends the JSON of s to dst.
func AppendStatus(dst []byte, s Status) []byte {
	dst = append(dst, `{"state":`...)
	dst = appendString(dst, s.State)
	dst = append(dst, `,"boot":`...)
	dst = appendString(dst, s.Boot)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, s.TS, 10)
	if s.Dropped > 0 {
		dst = append(dst, `,"dropped":`...)
		dst = strconv.AppendUint(dst, s.Dropped, 10)
	}
	return append(dst, '}')
}
