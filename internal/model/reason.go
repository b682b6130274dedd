package model

import (
	"fmt"
	"strconv"
	"strings"
)

// QualityReason says why a reading is not good: the `r` field of the
// telemetry contract (SPEC §2). Known reasons are small numbers so that a
// reading stays free of strings; a reason the centre does not know is kept
// as ReasonOther.
type QualityReason uint8

const (
	ReasonNone QualityReason = iota
	ReasonTimeout
	ReasonOutOfRange
	ReasonDeviceFault
	ReasonShortResponse
	ReasonMalformedResponse
	ReasonConnection
	ReasonOther
	// ReasonException01 … ReasonException0B are Modbus exception codes 01–0B.
	ReasonException01
	reasonExceptionLast = ReasonException01 + 0x0B - 1
)

// reasonNames holds the text of every reason, exception codes included, so
// that String never formats (it runs per reading when a gateway encodes).
var reasonNames = func() (t [reasonExceptionLast + 1]string) {
	t[ReasonTimeout] = "timeout"
	t[ReasonOutOfRange] = "out_of_range"
	t[ReasonDeviceFault] = "device_fault"
	t[ReasonShortResponse] = "short_response"
	t[ReasonMalformedResponse] = "malformed_response"
	t[ReasonConnection] = "connection"
	t[ReasonOther] = "other"
	for c := byte(1); c <= 0x0B; c++ {
		t[ModbusException(c)] = fmt.Sprintf("exception_%02x", c)
	}
	return t
}()

// ModbusException returns the reason for Modbus exception code c (1–11).
func ModbusException(c byte) QualityReason {
	if c < 1 || c > 0x0B {
		return ReasonOther
	}
	return ReasonException01 + QualityReason(c-1)
}

func (r QualityReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "other"
}

// ParseQualityReason maps the text of an `r` field to a reason; text it
// does not know gives ReasonOther (the contract lets gateways add reasons).
func ParseQualityReason(s string) QualityReason {
	if s == "" {
		return ReasonNone
	}
	for i, n := range reasonNames {
		if i > 0 && n == s {
			return QualityReason(i)
		}
	}
	// Gateways may write the code in upper case (exception_0B).
	if hex, ok := strings.CutPrefix(s, "exception_"); ok && len(hex) == 2 {
		if c, err := strconv.ParseUint(hex, 16, 8); err == nil {
			return ModbusException(byte(c))
		}
	}
	return ReasonOther
}
