package sim_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/poll"
)

// statusWord reads one input register of a device.
func statusWord(t *testing.T, c gateway.ModbusClient, addr uint16) uint16 {
	t.Helper()
	b, err := c.ReadInputRegisters(addr, 1)
	if err != nil {
		t.Fatalf("read input %d: %v", addr, err)
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

// TestFaultEpisode moves an injected clock through the demo's methane
// detector fault: gw-e02-1/gds1 serves its detectors' fault bits in input
// 7, all clear until the fault episode sets e02-GT-402's (bit 6) while the
// detector shows the fault code; SetFault sets other bits on top, and
// clearing a bit the episode sets leaves it set; the episode is logged as
// it begins and ends, and comes again in the next cycle.
func TestFaultEpisode(t *testing.T) {
	cfg, sc := loadDemo(t)
	p := cfg.Plant
	clock := newFakeClock()
	logs := &episodeLog{key: "fault_bit"}
	s := newSim(t, p, sc, sim.Options{Clock: clock.Now, Seed: 7, Logger: slog.New(logs)})
	clock.At(340 * time.Second) // stuck at 4.0 %LEL, nothing says so
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := client(t, s, p, "gw-e02-1", "gds1", 2*time.Second)
	gt402 := sensorOf(t, p, "e02-GT-402")
	const bit402 = 1 << 6
	if w := statusWord(t, c, 7); w != 0 {
		t.Errorf("at 340 s: status word %07b, want all clear", w)
	}
	if v := readSensor(t, c, gt402); v != 4 {
		t.Errorf("at 340 s: e02-GT-402 = %v, want the stuck 4", v)
	}

	clock.At(360 * time.Second)
	begins := "begins 可燃气体检测器故障（故障位） e02-GT-402"
	poll.Until(t, "the fault episode's first line", 5*time.Second, func() bool { return len(logs.all()) >= 1 })
	if w := statusWord(t, c, 7); w != bit402 {
		t.Errorf("at 360 s: status word %07b, want %07b", w, bit402)
	}
	if v := readSensor(t, c, gt402); v != 6553.5 {
		t.Errorf("at 360 s: e02-GT-402 = %v, want the fault code 6553.5", v)
	}
	if err := s.SetFault("e02-GT-201", true); err != nil {
		t.Fatal(err)
	}
	if w := statusWord(t, c, 7); w != bit402|1 {
		t.Errorf("SetFault(e02-GT-201): status word %07b, want %07b", w, bit402|1)
	}
	if err := s.SetFault("e02-GT-402", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFault("e02-GT-201", false); err != nil {
		t.Fatal(err)
	}
	if w := statusWord(t, c, 7); w != bit402 {
		t.Errorf("after clearing both by SetFault: status word %07b, want the episode's %07b", w, bit402)
	}

	clock.At(450 * time.Second)
	poll.Until(t, "the fault episode's last line", 5*time.Second, func() bool { return len(logs.all()) >= 2 })
	if got, want := logs.all(), []string{begins, "ends 可燃气体检测器故障（故障位） e02-GT-402"}; !slices.Equal(got, want) {
		t.Errorf("episode lines %q, want %q", got, want)
	}
	if w := statusWord(t, c, 7); w != 0 {
		t.Errorf("at 450 s: status word %07b, want all clear", w)
	}
	clock.At(10*time.Minute + 360*time.Second)
	if w := statusWord(t, c, 7); w != bit402 {
		t.Errorf("in the next cycle: status word %07b, want %07b", w, bit402)
	}
}

func TestSetFaultErrors(t *testing.T) {
	cfg, sc := loadDemo(t)
	s := newSim(t, cfg.Plant, sc, sim.Options{})
	if err := s.SetFault("no-such-sensor", true); err == nil {
		t.Error("SetFault of an unknown sensor")
	}
	if err := s.SetFault("e01-V101-LT", true); err == nil {
		t.Error("SetFault of a sensor without a fault bit")
	}
}
