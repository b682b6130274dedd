package gateway

import (
	"testing"
	"time"

	"hazardwatch/internal/telemetry"
)

// BenchmarkPollToPublish measures the gateway's own work per reading: the
// planned reads of every device of the demo's busiest gateway answered
// from memory, decoding each value, then encoding the cycle's message. The
// Modbus round trips themselves are the device's and the network's.
func BenchmarkPollToPublish(b *testing.B) {
	p := demoPlant(b)
	gi, _ := p.GatewayIndex("gw-e02-1")
	var plans []devicePlan
	readings := 0
	for di := range p.Gateways[gi].Devices {
		plan := planDevice(p, gi, int32(di))
		plans = append(plans, plan)
		readings += plan.sensors
	}
	dev := &fakeDevice{regs: map[uint16]uint16{}}
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	var outs []telemetry.Out
	var msg []byte
	b.ReportAllocs()
	for b.Loop() {
		outs = outs[:0]
		for i := range plans {
			outs, _ = pollDevice(dev, &plans[i], now, outs)
		}
		msg = telemetry.AppendTelemetry(msg[:0], "gw-e02-1", "bench", 1, false, outs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*readings), "ns/reading")
	b.ReportMetric(float64(readings), "readings/cycle")
}
