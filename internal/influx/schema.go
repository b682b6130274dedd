package influx

// FieldType is an InfluxDB field type, as SHOW FIELD KEYS names it.
type FieldType string

// Field types the writer uses.
const (
	Float   FieldType = "float"
	Integer FieldType = "integer"
	String  FieldType = "string"
)

// Measurement describes one measurement the writer writes: its tag keys
// and its field keys with their types. A tag or field may be left out of a
// point (an empty tag, a value that is not finite, a reading without a
// reason), never one outside these.
type Measurement struct {
	Name   string
	Tags   []string // sorted
	Fields map[string]FieldType
}

// Measurements returns what the writer writes, for those who build on it:
// the Grafana dashboards' test checks every query against it, and
// line_test.go checks that the line encoder writes exactly these names.
// Each call returns a new copy.
func Measurements() []Measurement {
	return []Measurement{
		{
			Name: MeasurementReading,
			Tags: []string{"county", "enterprise", "gateway", "hazard_source", "kind", "park", "sensor", "unit"},
			Fields: map[string]FieldType{
				"value":   Float,
				"quality": Integer, // QualityGood, QualityUncertain, QualityBad
				"reason":  String,  // only with a reason from the gateway
			},
		},
		{
			Name: MeasurementAlarmEvent,
			Tags: []string{"class", "enterprise", "event", "hazard_source", "level", "rule", "sensor"},
			Fields: map[string]FieldType{
				"alarm_id": String,
				"limit":    Float,
				"message":  String,
				"value":    Float,
			},
		},
	}
}
