package telemetry

import (
	"math"
	"strconv"
	"unicode/utf8"

	"hazardwatch/internal/model"
)

// Out is one reading as a gateway publishes it.
type Out struct {
	Sensor string
	// TS is the poll time, Unix milliseconds.
	TS       int64
	Value    float64
	HasValue bool
	Quality  model.Quality
	Reason   model.QualityReason
}

// AppendTelemetry appends the JSON of one telemetry message to dst, in the
// shape of SPEC §2's example. It writes only what the contract needs, so that
// a poll cycle of a few hundred readings stays small on a plant's uplink:
// "replay" only when set, "q" only when not good, "r" only with a reason.
//
// A reading the decoder would refuse as a whole is written as bad instead,
// because a reading that says "bad" still tells the centre the sensor was
// polled: a non-finite Value (JSON has no NaN or Inf) and a good reading
// without a value lose the value and go out as q "bad" with their reason, or
// "other" when they have none.
func AppendTelemetry(dst []byte, gateway, boot string, seq uint64, replay bool, readings []Out) []byte {
	dst = append(dst, `{"gateway":`...)
	dst = appendString(dst, gateway)
	dst = append(dst, `,"boot":`...)
	dst = appendString(dst, boot)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	if replay {
		dst = append(dst, `,"replay":true`...)
	}
	dst = append(dst, `,"readings":[`...)
	for i, r := range readings {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendReading(dst, r)
	}
	return append(dst, "]}"...)
}

func appendReading(dst []byte, r Out) []byte {
	hasValue, quality, reason := r.HasValue, r.Quality, r.Reason
	if hasValue && (math.IsNaN(r.Value) || math.IsInf(r.Value, 0)) || !hasValue && quality == model.Good {
		hasValue, quality = false, model.Bad
		if reason == model.ReasonNone {
			reason = model.ReasonOther
		}
	}
	dst = append(dst, `{"sensor":`...)
	dst = appendString(dst, r.Sensor)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	if hasValue {
		dst = append(dst, `,"v":`...)
		// Shortest form that parses back to the same bits.
		dst = strconv.AppendFloat(dst, r.Value, 'g', -1, 64)
	}
	switch quality {
	case model.Good:
	case model.Uncertain:
		dst = append(dst, `,"q":"uncertain"`...)
	default:
		// A quality this version does not know is not good either.
		dst = append(dst, `,"q":"bad"`...)
	}
	if reason != model.ReasonNone {
		dst = append(dst, `,"r":`...)
		dst = appendString(dst, reason.String())
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it, so that the output is always valid UTF-8.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
