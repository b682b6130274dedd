package influx

import (
	"math"
	"strconv"
	"time"

	"hazardwatch/internal/model"
)

// Measurement names of SPEC §3.
const (
	MeasurementReading    = "reading"
	MeasurementAlarmEvent = "alarm_event"
)

// Quality codes of the reading measurement's quality field (SPEC §3).
const (
	QualityGood      = 0
	QualityUncertain = 1
	QualityBad       = 2
)

// readingTags holds, per sensor index, the start of its reading lines:
// the measurement and the tag set, escaped and sorted by key, up to and
// including the space before the fields. The tags come from the plant
// alone, never from the reading, so a reading written live and the same
// reading replayed name the same series, and the second write overwrites
// the first (a point's identity is measurement, tag set and timestamp).
type readingTags [][]byte

func newReadingTags(p *model.Plant) readingTags {
	out := make(readingTags, len(p.Sensors))
	for i := range p.Sensors {
		s := &p.Sensors[i]
		var county, park, enterprise, hazard, gateway string
		if s.Enterprise >= 0 {
			e := &p.Enterprises[s.Enterprise]
			enterprise = e.ID
			if e.Park >= 0 {
				pk := &p.Parks[e.Park]
				park = pk.ID
				if pk.County >= 0 {
					county = p.Counties[pk.County].ID
				}
			}
		}
		if s.HazardSource >= 0 {
			hazard = p.HazardSources[s.HazardSource].ID
		}
		if s.Gateway >= 0 {
			gateway = p.Gateways[s.Gateway].ID
		}
		// Sorted by key, as InfluxDB recommends for the fastest parse.
		// Empty values are left out: line protocol has no empty tag.
		b := appendMeasurement(nil, MeasurementReading)
		b = appendTag(b, "county", county)
		b = appendTag(b, "enterprise", enterprise)
		b = appendTag(b, "gateway", gateway)
		b = appendTag(b, "hazard_source", hazard)
		b = appendTag(b, "kind", s.Kind.String())
		b = appendTag(b, "park", park)
		b = appendTag(b, "sensor", s.ID)
		b = appendTag(b, "unit", s.Unit)
		out[i] = append(b, ' ')
	}
	return out
}

// appendReading appends r as one line of the reading measurement. Fields:
// value (float; left out when the reading has none or it is not finite),
// quality (integer, SPEC §3's codes) and reason (string, only when the
// gateway gave one). The late mark is not written: it differs between a
// live reading and its replay, and as a tag it would make two series of
// one reading. It allocates nothing once dst has room.
func appendReading(dst []byte, tags readingTags, r *model.Reading) []byte {
	dst = append(dst, tags[r.SensorIdx]...)
	if r.HasValue && !math.IsNaN(r.Value) && !math.IsInf(r.Value, 0) {
		dst = append(dst, "value="...)
		dst = strconv.AppendFloat(dst, r.Value, 'g', -1, 64)
		dst = append(dst, ',')
	}
	dst = append(dst, "quality="...)
	dst = strconv.AppendInt(dst, qualityCode(r.Quality), 10)
	dst = append(dst, 'i')
	if r.Reason != model.ReasonNone {
		dst = append(dst, `,reason=`...)
		dst = appendFieldString(dst, r.Reason.String())
	}
	dst = append(dst, ' ')
	// Readings are stamped in milliseconds; lines in nanoseconds (the
	// precision of every write), so that alarm events keep theirs.
	dst = strconv.AppendInt(dst, r.TS, 10)
	dst = append(dst, "000000\n"...)
	return dst
}

func qualityCode(q model.Quality) int64 {
	switch q {
	case model.Uncertain:
		return QualityUncertain
	case model.Bad:
		return QualityBad
	}
	return QualityGood
}

// AlarmEvent is one alarm event as the alarm_event measurement stores it
// (SPEC §3): tags enterprise, hazard_source, sensor, class, level, rule,
// event; fields value, limit, message, alarm_id.
type AlarmEvent struct {
	// Time is the point's time: the reading time of an event a rule
	// decided, else when the centre handled it. It must be the same every
	// time the event is written, so that a rewrite overwrites.
	Time                                                        time.Time
	Enterprise, HazardSource, Sensor, Class, Level, Rule, Event string
	Value, Limit                                                float64
	Message, AlarmID                                            string
}

func appendAlarmEvent(dst []byte, e *AlarmEvent) []byte {
	dst = appendMeasurement(dst, MeasurementAlarmEvent)
	dst = appendTag(dst, "class", e.Class)
	dst = appendTag(dst, "enterprise", e.Enterprise)
	dst = appendTag(dst, "event", e.Event)
	dst = appendTag(dst, "hazard_source", e.HazardSource)
	dst = appendTag(dst, "level", e.Level)
	dst = appendTag(dst, "rule", e.Rule)
	dst = appendTag(dst, "sensor", e.Sensor)
	dst = append(dst, ' ')
	dst = append(dst, "alarm_id="...)
	dst = appendFieldString(dst, e.AlarmID)
	if !math.IsNaN(e.Limit) && !math.IsInf(e.Limit, 0) {
		dst = append(dst, ",limit="...)
		dst = strconv.AppendFloat(dst, e.Limit, 'g', -1, 64)
	}
	dst = append(dst, ",message="...)
	dst = appendFieldString(dst, e.Message)
	if !math.IsNaN(e.Value) && !math.IsInf(e.Value, 0) {
		dst = append(dst, ",value="...)
		dst = strconv.AppendFloat(dst, e.Value, 'g', -1, 64)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, e.Time.UnixNano(), 10)
	return append(dst, '\n')
}

// Line protocol escaping: a measurement escapes commas and spaces; tag
// keys and values also equals signs; a string field value double quotes
// and backslashes. A newline cannot be escaped in a tag and is replaced
// by a space; in a string field it is kept (it is inside the quotes). The
// plant's ids are plain ASCII (docs/CONFIG.md), so escaping matters for
// units and free text only.

func appendMeasurement(dst []byte, m string) []byte {
	for i := 0; i < len(m); i++ {
		switch c := m[i]; c {
		case ',', ' ':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func appendTag(dst []byte, key, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',')
	dst = appendTagText(dst, key)
	dst = append(dst, '=')
	return appendTagText(dst, value)
}

func appendTagText(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', '=', ' ':
			dst = append(dst, '\\', c)
		case '\n', '\r':
			dst = append(dst, ' ')
		case '\\':
			// A trailing backslash would escape the separator after it,
			// and line protocol has no escape for it: it is left out.
			if i < len(s)-1 {
				dst = append(dst, c)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func appendFieldString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
