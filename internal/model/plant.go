package model

import "time"

// Plant is the compiled plant: every object with its dense index, the
// references between them resolved to indexes. The config loader builds it
// once; after that it is read-only and safe to share between goroutines.
type Plant struct {
	Counties      []County
	Parks         []Park
	Enterprises   []Enterprise
	HazardSources []HazardSource
	Gateways      []Gateway
	Sensors       []Sensor

	countyByID, parkByID, enterpriseByID, hazardByID, gatewayByID, sensorByID map[string]int32
}

type County struct {
	ID, Name string
	// Duty are the county's duty officers (县应急管理局值班员): the last
	// step of the escalation ladder.
	Duty []Person
}

type Park struct {
	ID, Name string
	County   int32
	// Duty are the park control room's people on duty (园区值班): the
	// second step of the escalation ladder.
	Duty []Person
}

type Enterprise struct {
	ID, Name string
	Park     int32
	Status   EnterpriseStatus
	// IdlePowerKW is the power an idle (stopped) plant draws; a stop-ordered
	// enterprise drawing more is producing. Zero when not configured.
	IdlePowerKW float64
	// Duty are the enterprise's own control room (企业值班), notified
	// with the hazard source's responsible persons at the first step;
	// for a plant-wide sensor they are the first step alone.
	Duty []Person
	// Maintenance are its planned maintenance windows (检修), during which
	// its alarms are suppressed by design.
	Maintenance []MaintenanceWindow
}

// MaintenanceWindow is a planned maintenance period of an enterprise:
// [From, To), with its reason.
type MaintenanceWindow struct {
	From, To time.Time
	Reason   string
}

// Person is one of a hazard source's responsible persons (包保责任人), or
// one on duty in a control room.
type Person struct {
	Name, Phone string
}

// Responsible holds the three persons GB 18218 sources must name.
type Responsible struct {
	Principal   Person // 主要负责人
	Technical   Person // 技术负责人
	Operational Person // 操作负责人
}

// Chemical is one hazardous chemical held by a hazard source.
type Chemical struct {
	CAS      string
	Name     string
	Category string // GB 18218-2018 Table 2 symbol, e.g. "W2"; empty for Table 3 gases
	// QuantityT is the maximum quantity present, in tonnes.
	QuantityT float64
	// CriticalT is Q of GB 18218-2018 (Table 1 by CAS, else Table 2 by category).
	CriticalT float64
	// Beta is β (Table 3 by substance, else Table 4 by category).
	Beta float64
}

// HazardSource is a major hazard source (重大危险源).
type HazardSource struct {
	ID, Name   string
	Type       string
	Enterprise int32
	Chemicals  []Chemical
	People500m int
	// R is GB 18218-2018 §4.3's R, computed from the chemicals and people.
	R float64
	// Level is 1–4: as declared when the plant file gives it, else from R.
	Level int
	// LevelDeclared reports whether Level came from the plant file.
	LevelDeclared bool
	Responsible   Responsible
}

// Gateway is an edge box that polls Modbus devices.
type Gateway struct {
	ID         string
	Enterprise int32
	// PollPeriodMS is the default poll period of its devices.
	PollPeriodMS int64
	Devices      []Device
}

// Transport of a Modbus device.
type Transport uint8

const (
	ModbusTCP Transport = iota
	ModbusRTU
)

// Device is one Modbus slave behind a gateway.
type Device struct {
	ID        string
	Transport Transport
	// Address is host:port for TCP, the serial device path for RTU.
	Address      string
	BaudRate     int
	UnitID       uint8
	TimeoutMS    int64
	PollPeriodMS int64
	MaxRegisters int
	// MaxGap is how many unmapped registers (bits, for coils and discrete
	// inputs) one read may span. 0: reads never cross a gap, because a
	// strict device answers exception 02 to an address it does not map.
	MaxGap int
}

// Area is a Modbus data table.
type Area uint8

const (
	Holding Area = iota
	Input
	Coil
	DiscreteInput
)

func (a Area) String() string {
	return [...]string{"holding", "input", "coil", "discrete_input"}[a]
}

// DataType is how register words turn into a number.
type DataType uint8

const (
	Uint16 DataType = iota
	Int16
	Uint32
	Int32
	Float32
	Float64
	Bit // one bit: a coil, a discrete input, or Register.Bit of a register
)

// Words is how many 16-bit registers the type spans (0 for Bit of a coil).
func (t DataType) Words() int {
	switch t {
	case Uint32, Int32, Float32:
		return 2
	case Float64:
		return 4
	}
	return 1
}

func (t DataType) String() string {
	return [...]string{"uint16", "int16", "uint32", "int32", "float32", "float64", "bit"}[t]
}

// ByteOrder within a register, and word order across registers.
type ByteOrder uint8

const (
	BigEndian ByteOrder = iota
	LittleEndian
)

// Register binds a sensor to a place in a Modbus device.
type Register struct {
	Area    Area
	Address uint16 // 0-based
	Type    DataType
	// Bit is the bit of a 16-bit register (0 = least significant), or -1.
	Bit       int8
	ByteOrder ByteOrder
	WordOrder ByteOrder
	// Value = raw*Scale + Offset.
	Scale, Offset float64
}

// Gas is what a gas detector detects.
type Gas struct {
	CAS  string
	Name string
	// LELPctVol is the lower explosive limit (%vol) that defines 100 %LEL
	// for this detector (combustible gas only).
	LELPctVol float64
	// LELBasis names where that figure comes from ("IEC 60079-20-1", "NFPA 497", "calibration").
	LELBasis string
	// OELMgM3 is the occupational exposure limit used for %OEL (toxic gas
	// only): MAC, else PC-STEL, else PC-TWA of GBZ 2.1-2019.
	OELMgM3 float64
	// OELKind says which of those it is.
	OELKind string
	// PPMPerMgM3 converts mg/m³ to ppm at 20 °C.
	PPMPerMgM3 float64
	// Unverified is set when a figure above comes from a reference row
	// marked unverified: an engineer must confirm it.
	Unverified bool
}

// Sensor is one measured quantity (监测点位).
type Sensor struct {
	ID, Name     string
	Kind         Kind
	Unit         string
	Enterprise   int32
	HazardSource int32
	Gateway      int32
	Device       int32 // index into Gateways[Gateway].Devices
	Register     Register
	// Fault is where the device reports its own fault for this sensor, or
	// nil: a coil or discrete input, or one bit of a register (Type Bit),
	// on the sensor's own device. While it reads 1 the value is not to be
	// trusted, whatever it is.
	Fault *Register
	// RangeMin/RangeMax is the instrument's measuring range.
	RangeMin, RangeMax float64
	Gas                *Gas
}

// Index builds the lookup maps; the loader calls it after filling the slices.
func (p *Plant) Index() {
	p.countyByID = indexBy(p.Counties, func(c County) string { return c.ID })
	p.parkByID = indexBy(p.Parks, func(c Park) string { return c.ID })
	p.enterpriseByID = indexBy(p.Enterprises, func(c Enterprise) string { return c.ID })
	p.hazardByID = indexBy(p.HazardSources, func(c HazardSource) string { return c.ID })
	p.gatewayByID = indexBy(p.Gateways, func(c Gateway) string { return c.ID })
	p.sensorByID = indexBy(p.Sensors, func(c Sensor) string { return c.ID })
}

func indexBy[T any](xs []T, id func(T) string) map[string]int32 {
	m := make(map[string]int32, len(xs))
	for i, x := range xs {
		m[id(x)] = int32(i)
	}
	return m
}

func lookup(m map[string]int32, id string) (int32, bool) {
	i, ok := m[id]
	if !ok {
		return -1, false
	}
	return i, true
}

// SensorIndex returns the index of the sensor with id. The lookup does not
// allocate when called as SensorIndex(string(b)) on a byte slice.
func (p *Plant) SensorIndex(id string) (int32, bool) { return lookup(p.sensorByID, id) }

// GatewayIndex returns the index of the gateway with id.
func (p *Plant) GatewayIndex(id string) (int32, bool) { return lookup(p.gatewayByID, id) }

// EnterpriseIndex returns the index of the enterprise with id.
func (p *Plant) EnterpriseIndex(id string) (int32, bool) { return lookup(p.enterpriseByID, id) }

// HazardSourceIndex returns the index of the hazard source with id.
func (p *Plant) HazardSourceIndex(id string) (int32, bool) { return lookup(p.hazardByID, id) }

// ParkIndex returns the index of the park with id.
func (p *Plant) ParkIndex(id string) (int32, bool) { return lookup(p.parkByID, id) }

// CountyIndex returns the index of the county with id.
func (p *Plant) CountyIndex(id string) (int32, bool) { return lookup(p.countyByID, id) }

// GatewayEnterprise returns the enterprise index of gateway g.
func (p *Plant) GatewayEnterprise(g int32) int32 { return p.Gateways[g].Enterprise }

// SensorCount returns how many sensors the plant has; indexes run from 0.
func (p *Plant) SensorCount() int { return len(p.Sensors) }

// SensorID returns the id of sensor s.
func (p *Plant) SensorID(s int32) string { return p.Sensors[s].ID }

// SensorEnterprise returns the enterprise index of sensor s.
func (p *Plant) SensorEnterprise(s int32) int32 { return p.Sensors[s].Enterprise }
