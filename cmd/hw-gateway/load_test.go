package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"hazardwatch/gateway/sim"
	"hazardwatch/internal/config"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testnet"
)

var loadFor = flag.Duration("load", 0, "run TestLoad500 for this long (a load run, not a unit test: its figures go to docs/PERFORMANCE.md)")

// Load run shape: 5 devices × 100 holding registers, each device polled
// every second: 500 registers (and readings) a second, in 5 requests.
const (
	loadDevices   = 5
	loadRegisters = 100
)

// loadPlant is the demo plant plus gw-load: loadDevices devices of
// loadRegisters temperature sensors each, one uint16 register a sensor.
func loadPlant(t *testing.T) (string, *config.Config) {
	t.Helper()
	dir, _ := fastPlant(t)
	var b strings.Builder
	b.WriteString("# load run: 500 registers a second\nkind: plant\ngateways:\n  - id: gw-load\n    enterprise: e01\n    poll_period: 1s\n    devices:\n")
	for d := range loadDevices {
		fmt.Fprintf(&b, "      - {id: dev%d, transport: tcp, address: \"127.0.0.1:1\", unit_id: 1, timeout: 500ms}\n", d)
	}
	b.WriteString("sensors:\n")
	for d := range loadDevices {
		for r := range loadRegisters {
			fmt.Fprintf(&b, "  - {id: load-%d-%03d, name: 负载测试温度 %d-%d, kind: temperature, unit: °C, enterprise: e01, gateway: gw-load, device: dev%d, register: {area: holding, address: %d, type: uint16, scale: 0.01}, range: {min: 0, max: 200}}\n", d, r, d, r, d, r)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "load.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDirOrDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// scrape sums the samples of a metric on the gateway's /metrics.
func scrape(t *testing.T, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var sum float64
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// procStat reads a process's CPU time (user + system) and its resident
// set size now and at its peak, from /proc.
func procStat(t *testing.T, pid int) (cpu time.Duration, rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	cpu = time.Duration(utime+stime) * time.Second / clkTck
	s, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sc := bufio.NewScanner(s)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return cpu, rss, hwm
}

// TestLoad500 is the gateway's load run: the real hw-gateway binary polls
// 500 registers a second from simulated devices over Modbus TCP and
// publishes to a local broker; the run reports its CPU and memory. Run it
// with:
//
//	go test -run TestLoad500 -v ./cmd/hw-gateway -args -load=2m
func TestLoad500(t *testing.T) {
	if *loadFor == 0 {
		t.Skip("a load run: give -load DURATION")
	}
	cfgDir, cfg := loadPlant(t)
	p := cfg.Plant
	gi, _ := p.GatewayIndex("gw-load")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(mochiauth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	defer srv.Close()

	s, err := sim.New(p, nil, sim.Options{Listen: sim.Loopback(p)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	bin := filepath.Join(t.TempDir(), "hw-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	st, _ := os.Stat(bin)
	health := testnet.FreeAddr(t)
	args := []string{"--config", cfgDir, "--id", "gw-load", "--broker", "tcp://" + ln.Address(), "--data-dir", t.TempDir(), "--listen", health}
	for _, d := range p.Gateways[gi].Devices {
		args = append(args, "--device", d.ID+"="+s.Addr("gw-load", d.ID))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	g := &gatewayProc{health: health}
	poll.Until(t, "the gateway polling and publishing", 30*time.Second, func() bool {
		h, ok := g.healthz()
		return ok && h.OK && h.Uplink
	})
	readings := func() float64 {
		return scrape(t, health, "hw_gateway_readings_total")
	}
	// Warm up (ten seconds of polling), then measure.
	poll.Until(t, "ten seconds of polling", time.Minute, func() bool { return readings() >= 10*loadDevices*loadRegisters })
	cpu0, _, _ := procStat(t, cmd.Process.Pid)
	r0, t0 := readings(), time.Now()
	time.Sleep(*loadFor)
	cpu1, rss, hwm := procStat(t, cmd.Process.Pid)
	r1, t1 := readings(), time.Now()
	wall := t1.Sub(t0)
	h, _ := g.healthz()
	t.Logf("hw-gateway (%.1f MiB binary) polled %.0f registers/s for %s: CPU %.2f %% of one core, RSS %.1f MiB now, %.1f MiB peak; queue %d",
		float64(st.Size())/(1<<20), (r1-r0)/wall.Seconds(), wall.Round(time.Second),
		100*float64(cpu1-cpu0)/float64(wall), float64(rss)/(1<<20), float64(hwm)/(1<<20), h.Pending)
	if rate := (r1 - r0) / wall.Seconds(); rate < 450 {
		t.Errorf("polled %.0f registers/s, want 500", rate)
	}
	if hwm > 30<<20 {
		t.Errorf("peak RSS %.1f MiB, want under 30 MiB", float64(hwm)/(1<<20))
	}
}
