// Package model holds the plant objects, readings and alarm enumerations
// that every other package meets in. It is the leaf of the import graph and
// uses the standard library only.
//
// Objects that the hot path touches are addressed by dense int32 indexes
// assigned at load time (SensorIdx, GatewayIdx …), so per-reading state can
// live in slices instead of maps keyed by strings.
package model

import "fmt"

// Kind is what a sensor measures (SPEC §1).
type Kind uint8

const (
	KindUnknown Kind = iota
	GasCombustible
	GasToxic
	GasOxygen
	Pressure
	Level
	Temperature
	Flow
	Power
	Current
	Energy
	Valve
	SIS
	numKinds
)

var kindNames = [numKinds]string{
	KindUnknown:    "unknown",
	GasCombustible: "gas_combustible",
	GasToxic:       "gas_toxic",
	GasOxygen:      "gas_oxygen",
	Pressure:       "pressure",
	Level:          "level",
	Temperature:    "temperature",
	Flow:           "flow",
	Power:          "power",
	Current:        "current",
	Energy:         "energy",
	Valve:          "valve",
	SIS:            "sis",
}

// Kinds lists every known kind, in declaration order.
func Kinds() []Kind {
	ks := make([]Kind, 0, numKinds-1)
	for k := GasCombustible; k < numKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind returns the kind named s, as written in plant and rule files.
func ParseKind(s string) (Kind, bool) {
	for k := GasCombustible; k < numKinds; k++ {
		if kindNames[k] == s {
			return k, true
		}
	}
	return KindUnknown, false
}

// IsGas reports whether k is a gas detector kind (GB/T 50493 applies, alarms latch).
func (k Kind) IsGas() bool { return k == GasCombustible || k == GasToxic || k == GasOxygen }

// Discrete reports whether readings of k are states (valve 0/1, SIS 0/1/2), not measurements.
func (k Kind) Discrete() bool { return k == Valve || k == SIS }

// Units lists the units a sensor of kind k may report in; the first is the usual one.
func (k Kind) Units() []string {
	switch k {
	case GasCombustible:
		return []string{"%LEL"}
	case GasToxic:
		return []string{"ppm", "mg/m3"}
	case GasOxygen:
		return []string{"%VOL"}
	case Pressure:
		return []string{"MPa", "kPa"}
	case Level:
		return []string{"m", "%"}
	case Temperature:
		return []string{"°C"}
	case Flow:
		return []string{"m3/h", "Nm3/h", "t/h", "kg/h", "L/min"}
	case Power:
		return []string{"kW"}
	case Current:
		return []string{"A"}
	case Energy:
		return []string{"kWh"}
	case Valve, SIS:
		return []string{"state"}
	}
	return nil
}

// Quality of a reading. The numbers are the InfluxDB field values (SPEC §3).
type Quality uint8

const (
	Good      Quality = 0
	Uncertain Quality = 1
	Bad       Quality = 2
)

func (q Quality) String() string {
	switch q {
	case Good:
		return "good"
	case Uncertain:
		return "uncertain"
	case Bad:
		return "bad"
	}
	return fmt.Sprintf("quality(%d)", uint8(q))
}

// ParseQuality returns the quality named s ("good", "uncertain", "bad").
func ParseQuality(s string) (Quality, bool) {
	switch s {
	case "good":
		return Good, true
	case "uncertain":
		return Uncertain, true
	case "bad":
		return Bad, true
	}
	return Good, false
}

// Reading is one measured value of one sensor, as the pipeline carries it.
// It holds no strings and no pointers, so slices of readings cost the
// garbage collector nothing.
type Reading struct {
	SensorIdx int32
	// Reason says why the quality is not good; ReasonNone when it is.
	Reason  QualityReason
	Quality Quality
	// HasValue is false when a bad or uncertain reading carries no value.
	HasValue bool
	// Late is set for readings replayed from a gateway's store or older
	// than the live window (SPEC §2): evaluated, never rung as new.
	Late bool
	// TS is the gateway's poll time, Unix milliseconds.
	TS    int64
	Value float64
}

// EnterpriseStatus is an enterprise's production status (SPEC §1).
type EnterpriseStatus uint8

const (
	Operating EnterpriseStatus = iota
	StopOrdered
	Suspended
)

func (s EnterpriseStatus) String() string {
	switch s {
	case Operating:
		return "operating"
	case StopOrdered:
		return "stop_ordered"
	case Suspended:
		return "suspended"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseEnterpriseStatus returns the status named s.
func ParseEnterpriseStatus(s string) (EnterpriseStatus, bool) {
	for _, v := range []EnterpriseStatus{Operating, StopOrdered, Suspended} {
		if v.String() == s {
			return v, true
		}
	}
	return Operating, false
}
