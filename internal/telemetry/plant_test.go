package telemetry

import (
	"fmt"
	"time"

	"hazardwatch/internal/model"
)

// The tests decode against a real *model.Plant, not a fake, so that they
// also hold the plant to the Directory contract and measure allocations
// through the same lookups ingest will use.
var _ Directory = (*model.Plant)(nil)

// testNow is the centre's clock in every test: 2024-11-24T10:00:00Z, the
// time of SPEC §2's example reading.
var testNow = time.Date(2024, 11, 24, 10, 0, 0, 0, time.UTC)

const testNowMS = 1732442400000

// numAnalog is how many e01-AI-nnn sensors the plant has, enough for the
// 60-reading poll cycle of the benchmark.
const numAnalog = 60

func testPlant() *model.Plant {
	p := &model.Plant{
		Enterprises: []model.Enterprise{{ID: "e01"}, {ID: "e02"}, {ID: "e03"}},
		Gateways: []model.Gateway{
			{ID: "gw-e01-1", Enterprise: 0},
			{ID: "gw-e02-1", Enterprise: 1},
		},
		Sensors: []model.Sensor{
			{ID: "e01-T101-LT", Kind: model.Level, Enterprise: 0},
			{ID: "e01-T101-PT", Kind: model.Pressure, Enterprise: 0},
			{ID: "e01-G201-GT", Kind: model.GasToxic, Enterprise: 0},
			{ID: "e01-XV-101", Kind: model.Valve, Enterprise: 0},
			{ID: "e01-储罐-TT", Kind: model.Temperature, Enterprise: 0},
			{ID: "e02-T301-LT", Kind: model.Level, Enterprise: 1, Gateway: 1},
		},
	}
	for i := range numAnalog {
		p.Sensors = append(p.Sensors, model.Sensor{ID: fmt.Sprintf("e01-AI-%03d", i), Kind: model.Temperature})
	}
	p.Index()
	return p
}
