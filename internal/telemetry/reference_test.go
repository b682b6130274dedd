package telemetry

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"hazardwatch/internal/model"
)

// refDecode is a second implementation of SPEC §2's rules, written for
// obviousness on encoding/json rather than for speed. FuzzDecode holds the
// scanner to it.
type refResult struct {
	err      Reason // 0: accepted
	ent, gw  int32
	boot     string
	seq      uint64
	replay   bool
	outcomes []refOutcome // one per element of readings
}

type refOutcome struct {
	reason  Reason // 0: accepted
	reading model.Reading
}

func refDecode(dir *model.Plant, opts Options, topic string, payload []byte, now time.Time, skew time.Duration) refResult {
	opts = opts.withDefaults()
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0] != "hw" || parts[1] != "v1" || parts[4] != "telemetry" {
		return refResult{err: ReasonBadTopic}
	}
	for _, seg := range parts[2:4] {
		if seg == "" || strings.ContainsAny(seg, "+#\x00") {
			return refResult{err: ReasonBadTopic}
		}
	}
	ent, gw := parts[2], parts[3]
	if len(payload) > opts.MaxPayload {
		return refResult{err: ReasonOversized}
	}
	if !json.Valid(payload) {
		return refResult{err: ReasonInvalidJSON}
	}
	obj, ok := refObject(payload)
	if !ok {
		return refResult{err: ReasonMalformedMessage}
	}
	var res refResult
	gateway, ok := refString(obj["gateway"])
	if !ok || gateway == "" {
		return refResult{err: ReasonMalformedMessage}
	}
	if res.boot, ok = refString(obj["boot"]); !ok || res.boot == "" || len(res.boot) > 64 {
		return refResult{err: ReasonMalformedMessage}
	}
	seq, ok := refInteger(obj["seq"])
	if !ok || seq.Sign() < 1 || !seq.IsUint64() {
		return refResult{err: ReasonMalformedMessage}
	}
	res.seq = seq.Uint64()
	raw, ok := obj["readings"]
	var readings []json.RawMessage
	if !ok || raw[0] != '[' || json.Unmarshal(raw, &readings) != nil {
		return refResult{err: ReasonMalformedMessage}
	}
	if raw, ok := obj["replay"]; ok {
		if err := json.Unmarshal(raw, &res.replay); err != nil || raw[0] == 'n' {
			return refResult{err: ReasonMalformedMessage}
		}
	}
	if gateway != gw {
		return refResult{err: ReasonBadTopic}
	}
	if res.gw, ok = dir.GatewayIndex(gw); !ok {
		return refResult{err: ReasonUnknownGateway}
	}
	if res.ent, ok = dir.EnterpriseIndex(ent); !ok || dir.GatewayEnterprise(res.gw) != res.ent {
		return refResult{err: ReasonBadTopic}
	}
	for _, raw := range readings {
		res.outcomes = append(res.outcomes, refReading(dir, opts, res.ent, res.replay, raw, now, skew))
	}
	return res
}

func refReading(dir *model.Plant, opts Options, ent int32, replay bool, raw json.RawMessage, now time.Time, skew time.Duration) refOutcome {
	bad := refOutcome{reason: ReasonMalformedReading}
	obj, ok := refObject(raw)
	if !ok {
		return bad
	}
	sensor, ok := refString(obj["sensor"])
	if !ok {
		return bad
	}
	ts, ok := refInteger(obj["ts"])
	if !ok || !ts.IsInt64() {
		return bad
	}
	v, hasV := obj["v"]
	if hasV && string(v) == "null" {
		hasV = false
	} else if hasV && !strings.ContainsRune("-0123456789", rune(v[0])) {
		return bad
	}
	q := model.Good
	if raw, ok := obj["q"]; ok {
		s, _ := refString(raw)
		switch s {
		case "good":
		case "uncertain":
			q = model.Uncertain
		case "bad":
			q = model.Bad
		default:
			return bad
		}
	}
	var r string
	if raw, ok := obj["r"]; ok {
		if r, ok = refString(raw); !ok {
			return bad
		}
	}
	if q == model.Good && !hasV {
		return bad
	}
	idx, ok := dir.SensorIndex(sensor)
	if !ok {
		return refOutcome{reason: ReasonUnknownSensor}
	}
	if dir.SensorEnterprise(idx) != ent {
		return refOutcome{reason: ReasonWrongEnterprise}
	}
	var value float64
	if hasV && json.Unmarshal(v, &value) != nil {
		return refOutcome{reason: ReasonNonFinite}
	}
	corrected := time.UnixMilli(ts.Int64()).Add(-skew)
	if corrected.After(now.Add(opts.MaxFuture)) {
		return refOutcome{reason: ReasonFutureTimestamp}
	}
	if corrected.Before(now.Add(-opts.MaxAge)) {
		return refOutcome{reason: ReasonStaleTimestamp}
	}
	return refOutcome{reading: model.Reading{
		SensorIdx: idx,
		Reason:    model.ParseQualityReason(r),
		Quality:   q,
		HasValue:  hasV,
		Late:      replay || corrected.Before(now.Add(-opts.LiveWindow)),
		TS:        ts.Int64(),
		Value:     value,
	}}
}

// refObject decodes a JSON object; null, which encoding/json would accept
// as an empty map, is not one.
func refObject(raw []byte) (map[string]json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var obj map[string]json.RawMessage
	return obj, json.Unmarshal(raw, &obj) == nil
}

// refString decodes a JSON string; encoding/json would leave a string
// untouched on null.
func refString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// refInteger is the exact value of a JSON number when it is an integer.
func refInteger(raw json.RawMessage) (*big.Int, bool) {
	if len(raw) == 0 || !strings.ContainsRune("-0123456789", rune(raw[0])) {
		return nil, false
	}
	s := string(raw)
	// big.Rat would build 10^exp for any exponent; past the length of the
	// mantissa plus 25 the answer is known without it: a nonzero value is
	// either beyond 64 bits or a fraction below one.
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(s[i+1:])
		mant := s[:i]
		zero := strings.Trim(mant, "-0.") == ""
		if err != nil || exp > len(s)+25 || exp < -(len(s)+25) {
			if zero {
				return new(big.Int), true
			}
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || !r.IsInt() {
		return nil, false
	}
	return r.Num(), true
}

// sameReading compares readings bit for bit, so that -0 and 0 differ.
func sameReading(a, b model.Reading) bool {
	av, bv := a.Value, b.Value
	a.Value, b.Value = 0, 0
	return a == b && math.Float64bits(av) == math.Float64bits(bv)
}
