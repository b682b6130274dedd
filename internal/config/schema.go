package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The documents as written in the files (docs/CONFIG.md). They keep the
// file's words; load.go checks them and compiles a model.Plant.

type plantDoc struct {
	Kind          string          `yaml:"kind" hw:"required"`
	Counties      []countyDoc     `yaml:"counties"`
	Parks         []parkDoc       `yaml:"parks"`
	Enterprises   []enterpriseDoc `yaml:"enterprises"`
	HazardSources []hazardDoc     `yaml:"hazard_sources"`
	Gateways      []gatewayDoc    `yaml:"gateways"`
	Sensors       []sensorDoc     `yaml:"sensors"`
}

type countyDoc struct {
	ID   string      `yaml:"id" hw:"required"`
	Name string      `yaml:"name" hw:"required"`
	Duty []personDoc `yaml:"duty"`
}

type parkDoc struct {
	ID     string      `yaml:"id" hw:"required"`
	Name   string      `yaml:"name" hw:"required"`
	County string      `yaml:"county" hw:"required"`
	Duty   []personDoc `yaml:"duty"`
}

type enterpriseDoc struct {
	ID          string           `yaml:"id" hw:"required"`
	Name        string           `yaml:"name" hw:"required"`
	Park        string           `yaml:"park" hw:"required"`
	Status      string           `yaml:"status" hw:"required"`
	IdlePowerKW *float64         `yaml:"idle_power_kw"`
	Duty        []personDoc      `yaml:"duty"`
	Maintenance []maintenanceDoc `yaml:"maintenance"`
}

// maintenanceDoc is a planned maintenance window, RFC 3339 times with
// their zone.
type maintenanceDoc struct {
	From   string `yaml:"from" hw:"required"`
	To     string `yaml:"to" hw:"required"`
	Reason string `yaml:"reason" hw:"required"`
}

type hazardDoc struct {
	ID          string         `yaml:"id" hw:"required"`
	Name        string         `yaml:"name" hw:"required"`
	Enterprise  string         `yaml:"enterprise" hw:"required"`
	Type        string         `yaml:"type" hw:"required"`
	Level       *int           `yaml:"level"`
	People500m  int            `yaml:"people_500m" hw:"required"`
	Chemicals   []chemicalDoc  `yaml:"chemicals" hw:"required"`
	Responsible responsibleDoc `yaml:"responsible" hw:"required"`
}

type chemicalDoc struct {
	CAS       string  `yaml:"cas" hw:"required"`
	Name      string  `yaml:"name" hw:"required"`
	Category  string  `yaml:"category"`
	QuantityT float64 `yaml:"quantity_t" hw:"required"`
}

type responsibleDoc struct {
	Principal   personDoc `yaml:"principal" hw:"required"`
	Technical   personDoc `yaml:"technical" hw:"required"`
	Operational personDoc `yaml:"operational" hw:"required"`
}

type personDoc struct {
	Name  string `yaml:"name" hw:"required"`
	Phone string `yaml:"phone" hw:"required"`
}

type gatewayDoc struct {
	ID         string        `yaml:"id" hw:"required"`
	Enterprise string        `yaml:"enterprise" hw:"required"`
	PollPeriod time.Duration `yaml:"poll_period"`
	Devices    []deviceDoc   `yaml:"devices" hw:"required"`
}

type deviceDoc struct {
	ID           string        `yaml:"id" hw:"required"`
	Transport    string        `yaml:"transport"`
	Address      string        `yaml:"address" hw:"required"`
	BaudRate     int           `yaml:"baud_rate"`
	UnitID       int           `yaml:"unit_id" hw:"required"`
	Timeout      time.Duration `yaml:"timeout"`
	PollPeriod   time.Duration `yaml:"poll_period"`
	MaxRegisters *int          `yaml:"max_registers"`
	MaxGap       *int          `yaml:"max_gap"`
}

type sensorDoc struct {
	ID           string      `yaml:"id" hw:"required"`
	Name         string      `yaml:"name" hw:"required"`
	Kind         string      `yaml:"kind" hw:"required"`
	Unit         string      `yaml:"unit" hw:"required"`
	HazardSource string      `yaml:"hazard_source"`
	Enterprise   string      `yaml:"enterprise"`
	Gateway      string      `yaml:"gateway" hw:"required"`
	Device       string      `yaml:"device" hw:"required"`
	Register     registerDoc `yaml:"register" hw:"required"`
	Fault        *faultDoc   `yaml:"fault"`
	Range        rangeDoc    `yaml:"range" hw:"required"`
	Gas          *gasDoc     `yaml:"gas"`
}

type registerDoc struct {
	Area      string   `yaml:"area" hw:"required"`
	Address   int      `yaml:"address" hw:"required"`
	Type      string   `yaml:"type"`
	ByteOrder string   `yaml:"byte_order"`
	WordOrder string   `yaml:"word_order"`
	Bit       *int     `yaml:"bit"`
	Scale     *float64 `yaml:"scale"`
	Offset    float64  `yaml:"offset"`
}

// faultDoc is where a device reports its own fault for a sensor: a coil or
// discrete input, or one bit of a holding or input register (a status word,
// often shared by the detectors of one controller).
type faultDoc struct {
	Area    string `yaml:"area" hw:"required"`
	Address int    `yaml:"address" hw:"required"`
	Bit     *int   `yaml:"bit"`
}

type rangeDoc struct {
	Min float64 `yaml:"min" hw:"required"`
	Max float64 `yaml:"max" hw:"required"`
}

type gasDoc struct {
	CAS       string   `yaml:"cas" hw:"required"`
	LELBasis  string   `yaml:"lel_basis"`
	LELPctVol *float64 `yaml:"lel_pct_vol"`
}

type rulesDoc struct {
	Kind    string      `yaml:"kind" hw:"required"`
	Kinds   []ruleDoc   `yaml:"kinds"`
	Sensors []ruleDoc   `yaml:"sensors"`
	Voting  []votingDoc `yaml:"voting"`
	Alarms  *alarmsDoc  `yaml:"alarms"`
	// Gateways tune the gateway-level silence check, by gateway id.
	Gateways []gatewayRuleDoc `yaml:"gateways"`
}

// alarmsDoc is the alarm lifecycle's settings (model.AlarmRules): one
// section for the whole plant, in any one rule file.
type alarmsDoc struct {
	MaxShelve  *time.Duration `yaml:"max_shelve"`
	Chattering *windowDoc     `yaml:"chattering"`
	Flood      *windowDoc     `yaml:"flood"`
	RateLimit  *rateLimitDoc  `yaml:"rate_limit"`
	Escalation *escalationDoc `yaml:"escalation"`
}

// windowDoc is a count within a time window.
type windowDoc struct {
	Count  *int           `yaml:"count"`
	Window *time.Duration `yaml:"window"`
}

type rateLimitDoc struct {
	Sensor     *windowDoc `yaml:"sensor"`
	Enterprise *windowDoc `yaml:"enterprise"`
}

// escalationDoc holds the escalation limits of each priority.
type escalationDoc struct {
	P1 *escalationLimitsDoc `yaml:"priority_1"`
	P2 *escalationLimitsDoc `yaml:"priority_2"`
	P3 *escalationLimitsDoc `yaml:"priority_3"`
	P4 *escalationLimitsDoc `yaml:"priority_4"`
}

type escalationLimitsDoc struct {
	Park     *time.Duration `yaml:"park"`
	County   *time.Duration `yaml:"county"`
	Remind   *time.Duration `yaml:"remind"`
	Feedback *time.Duration `yaml:"feedback"`
}

// gatewayRuleDoc is one gateway's rules.
type gatewayRuleDoc struct {
	Key           string `hw:"key"`
	SilentPeriods *int   `yaml:"silent_periods"`
}

// votingDoc is a k-out-of-n voting group of gas detectors, by name.
type votingDoc struct {
	Name    string   `hw:"key"`
	Sensors []string `yaml:"sensors" hw:"required"`
	K       int      `yaml:"k" hw:"required"`
}

type ruleDoc struct {
	Key           string         `hw:"key"`
	Limits        *limitsDoc     `yaml:"limits"`
	Deadband      *Quantity      `yaml:"deadband"`
	OnDelay       *time.Duration `yaml:"on_delay"`
	OffDelay      *time.Duration `yaml:"off_delay"`
	Latch         *bool          `yaml:"latch"`
	SilentPeriods *int           `yaml:"silent_periods"`
	Rate          *rateDoc       `yaml:"rate"`
	Prediction    *predictionDoc `yaml:"prediction"`
	Frozen        *frozenDoc     `yaml:"frozen"`
	OutOfRange    *bool          `yaml:"out_of_range"`
	BadQuality    *int           `yaml:"bad_quality"`
	StopOrder     *stopOrderDoc  `yaml:"stop_order"`
	SISBypass     *sisBypassDoc  `yaml:"sis_bypass"`
}

// stopOrderDoc tunes the stop-order power rule of power sensors;
// `stop_order: ~` turns it off.
type stopOrderDoc struct {
	Removed   bool           `hw:"null"`
	MarginPct *float64       `yaml:"margin_pct"`
	Delay     *time.Duration `yaml:"delay"`
	Learn     *time.Duration `yaml:"learn"`
}

// sisBypassDoc tunes the SIS bypass rule of sis sensors; `sis_bypass: ~`
// turns it off.
type sisBypassDoc struct {
	Removed bool           `hw:"null"`
	OnDelay *time.Duration `yaml:"on_delay"`
}

// rateDoc is a rate-of-change rule; `rate: ~` removes an inherited one.
// Rates are in the sensor's unit per minute.
type rateDoc struct {
	Removed  bool           `hw:"null"`
	Rise     *Quantity      `yaml:"rise"`
	Fall     *Quantity      `yaml:"fall"`
	Window   *time.Duration `yaml:"window"`
	Deadband *Quantity      `yaml:"deadband"`
	OnDelay  *time.Duration `yaml:"on_delay"`
}

// predictionDoc is a prediction of the next limit; `prediction: {}` turns
// it on with the defaults, `prediction: ~` removes an inherited one.
type predictionDoc struct {
	Removed bool           `hw:"null"`
	Window  *int           `yaml:"window"`
	Horizon *time.Duration `yaml:"horizon"`
}

// frozenDoc is the frozen-value check; `frozen: ~` removes an inherited one.
type frozenDoc struct {
	Removed  bool           `hw:"null"`
	Duration *time.Duration `yaml:"duration"`
	Epsilon  *Quantity      `yaml:"epsilon"`
}

type limitsDoc struct {
	HH limitSpec `yaml:"HH"`
	H  limitSpec `yaml:"H"`
	L  limitSpec `yaml:"L"`
	LL limitSpec `yaml:"LL"`
}

// Quantity is a number in the sensor's unit, or a share of a gas's LEL or
// OEL written as "25%LEL" or "100%OEL" (SPEC §4).
type Quantity struct {
	Value float64
	// Of is "" for the sensor's own unit, "%LEL" or "%OEL".
	Of string
}

func (q Quantity) String() string {
	return strconv.FormatFloat(q.Value, 'g', -1, 64) + q.Of
}

var errQuantity = errors.New(`must be a number, or a gas share such as "25%LEL" or "100%OEL"`)

func (q *Quantity) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!bool" {
		return fmt.Errorf("%w, not %s", errQuantity, describe(n))
	}
	s := strings.TrimSpace(n.Value)
	for _, of := range []string{"%LEL", "%OEL"} {
		if num, ok := strings.CutSuffix(s, of); ok {
			s, q.Of = strings.TrimSpace(num), of
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%w, not %s", errQuantity, describe(n))
	}
	q.Value = v
	return nil
}

// limitSpec is one of HH/H/L/LL: absent, removed with ~, a quantity, or
// {value, level}.
type limitSpec struct {
	Given   bool // the key is in the file
	Removed bool // written as ~
	Value   Quantity
	Level   string
	levelAt *yaml.Node
}

func (l *limitSpec) decodeNode(n *yaml.Node) error {
	l.Given = true
	if n.Tag == "!!null" {
		l.Removed = true
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return l.Value.decodeNode(n)
	}
	var hasValue bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "value":
			if err := l.Value.decodeNode(v); err != nil {
				return fmt.Errorf("value: %w", err)
			}
			hasValue = true
		case "level":
			if v.Value != "L1" && v.Value != "L2" {
				return fmt.Errorf("level must be L1 or L2, not %s", describe(v))
			}
			l.Level, l.levelAt = v.Value, v
		default:
			return fmt.Errorf("unknown field %q (known: value, level)", k.Value)
		}
	}
	if !hasValue {
		return errors.New("value: required")
	}
	return nil
}
