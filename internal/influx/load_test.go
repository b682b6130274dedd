package influx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
)

var loadFor = flag.Duration("load", 0, "run TestWriteLoad for this long (a load run, not a unit test: its figures go to docs/PERFORMANCE.md)")

// Load run shape: a park of loadGateways gateways of loadPerGateway sensors
// each; one Add is one gateway's poll cycle, as the centre's feed hands
// over one READINGS entry at a time.
const (
	loadGateways   = 40
	loadPerGateway = 50
	loadTarget     = 100_000 // readings/s, issue #8
	baselineFor    = 10 * time.Second
)

// loadPlant is a park of loadGateways×loadPerGateway sensors with every
// tag of the reading measurement.
func loadPlant() *model.Plant {
	p := &model.Plant{
		Counties: []model.County{{ID: "c01"}},
		Parks:    []model.Park{{ID: "p01"}},
	}
	for g := range loadGateways {
		e := int32(len(p.Enterprises))
		p.Enterprises = append(p.Enterprises, model.Enterprise{ID: fmt.Sprintf("e%02d", g)})
		p.HazardSources = append(p.HazardSources, model.HazardSource{ID: fmt.Sprintf("e%02d-hs1", g), Enterprise: e})
		p.Gateways = append(p.Gateways, model.Gateway{ID: fmt.Sprintf("gw-e%02d-1", g), Enterprise: e})
		for s := range loadPerGateway {
			kind, unit := model.Pressure, "MPa"
			if s%5 == 0 {
				kind, unit = model.GasCombustible, "%LEL"
			}
			p.Sensors = append(p.Sensors, model.Sensor{ID: fmt.Sprintf("e%02d-S%03d", g, s), Kind: kind, Unit: unit,
				Enterprise: e, HazardSource: int32(g), Gateway: int32(g)})
		}
	}
	p.Index()
	return p
}

// loadCycle fills rs with gateway g's poll cycle c.
func loadCycle(rs []model.Reading, g, c int, t0 int64) {
	for s := range rs {
		rs[s] = model.Reading{SensorIdx: int32(g*loadPerGateway + s), TS: t0 + int64(c), Value: float64(c%1000) / 7, HasValue: true}
	}
}

// rateMeter counts readings written and keeps the lowest rate of any full
// 10-second window.
type rateMeter struct {
	written atomic.Int64
	mu      sync.Mutex
	windows []float64
}

func (m *rateMeter) sample(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := m.written.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := m.written.Load()
			m.mu.Lock()
			m.windows = append(m.windows, float64(n-last)/now.Sub(lastAt).Seconds())
			m.mu.Unlock()
			last, lastAt = n, now
		}
	}
}

// TestWriteLoad writes readings through the Writer into a real InfluxDB
// 1.8.10 for -load, as fast as it takes them, and fails when the rate of
// any 10-second window is under 100 000 readings/s. Before it, in the same
// run and on the same server, two baselines with the client library alone
// for 10 s each: its blocking WritePoint one point at a time, and its own
// batching, non-blocking WriteAPI with write.Point.
//
//	go test -run TestWriteLoad -v ./internal/influx -args -load=1m
func TestWriteLoad(t *testing.T) {
	if *loadFor == 0 {
		t.Skip("a load run: go test -run TestWriteLoad -v ./internal/influx -args -load=1m")
	}
	srv := influxtest.Start(t)
	plant := loadPlant()
	t.Logf("machine: %d CPUs (GOMAXPROCS %d), %s; %d sensors on %d gateways", runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), len(plant.Sensors), loadGateways)

	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	blocking := baselineBlocking(t, srv, plant, t0)
	async := baselineAsync(t, srv, plant, t0)

	srv.CreateDatabase("load")
	w := runWriter(t, Options{URL: srv.URL(), Bucket: "load/autogen", Plant: plant})

	var m rateMeter
	sctx, stopSampling := context.WithCancel(context.Background())
	go m.sample(sctx, 10*time.Second)
	start := time.Now()
	var added int64
	rs := make([]model.Reading, loadPerGateway)
	for c := 0; time.Since(start) < *loadFor; c++ {
		for g := range loadGateways {
			loadCycle(rs, g, c, t0)
			n := int64(len(rs))
			for {
				room := w.Room()
				err := w.AddReadings(rs, func() { m.written.Add(n) })
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) {
					t.Fatal(err)
				}
				<-room
			}
			added += n
		}
	}
	fedFor := time.Since(start)
	poll.Until(t, "every reading fed written", time.Hour, func() bool { return m.written.Load() >= added })
	took := time.Since(start)
	stopSampling()
	rate := float64(added) / took.Seconds()

	got, err := srv.Count("load", `SELECT count(value) FROM reading`)
	if err != nil {
		t.Fatal(err)
	}
	if got != added {
		t.Errorf("InfluxDB holds %d reading points, %d were written", got, added)
	}
	m.mu.Lock()
	windows := m.windows
	m.mu.Unlock()
	low := rate
	for _, r := range windows {
		low = min(low, r)
	}
	t.Logf("writer: %d readings in %s (fed for %s): %.0f readings/s; 10-s windows %s; lowest %.0f/s", added, took.Round(time.Millisecond), fedFor.Round(time.Millisecond), rate, fmtRates(windows), low)
	t.Logf("baseline, client WritePoint one at a time (blocking): %.0f readings/s", blocking)
	t.Logf("baseline, client WriteAPI with write.Point (its own batching, 5000): %.0f readings/s", async)
	t.Logf("writer / blocking = %.0f×, writer / WriteAPI = %.1f×", rate/blocking, rate/async)
	if low < loadTarget || rate < loadTarget {
		t.Errorf("%.0f readings/s overall, %.0f in the slowest 10 s: want at least %d sustained", rate, low, loadTarget)
	}
}

func fmtRates(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', 0, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// baselineBlocking writes one point per call with the client's blocking
// API for baselineFor and returns readings/s.
func baselineBlocking(t *testing.T, srv *influxtest.Server, plant *model.Plant, t0 int64) float64 {
	srv.CreateDatabase("base_blocking")
	client := influxdb2.NewClient(srv.URL(), "")
	defer client.Close()
	api := client.WriteAPIBlocking("", "base_blocking/autogen")
	start := time.Now()
	n := 0
	for c := 0; time.Since(start) < baselineFor; c++ {
		for s := range plant.Sensors {
			if err := api.WritePoint(context.Background(), clientPoint(plant, int32(s), t0+int64(c), float64(c))); err != nil {
				t.Fatal(err)
			}
			n++
			if n%256 == 0 && time.Since(start) >= baselineFor {
				break
			}
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// baselineAsync writes with the client's non-blocking WriteAPI (batches of
// 5000, its defaults otherwise) for baselineFor, flushes, and returns
// readings/s.
func baselineAsync(t *testing.T, srv *influxtest.Server, plant *model.Plant, t0 int64) float64 {
	srv.CreateDatabase("base_async")
	client := influxdb2.NewClientWithOptions(srv.URL(), "", influxdb2.DefaultOptions().SetBatchSize(5000))
	defer client.Close()
	api := client.WriteAPI("", "base_async/autogen")
	var failed atomic.Int64
	errs := api.Errors()
	go func() {
		for range errs {
			failed.Add(1)
		}
	}()
	start := time.Now()
	n := 0
	for c := 0; time.Since(start) < baselineFor; c++ {
		for s := range plant.Sensors {
			api.WritePoint(clientPoint(plant, int32(s), t0+int64(c), float64(c)))
			n++
		}
	}
	api.Flush()
	took := time.Since(start)
	if failed.Load() > 0 {
		t.Errorf("client WriteAPI: %d failed writes", failed.Load())
	}
	return float64(n) / took.Seconds()
}

// clientPoint is a reading as the client library's Point, with the same
// tags and fields as the Writer's.
func clientPoint(p *model.Plant, s int32, ts int64, v float64) *write.Point {
	sn := &p.Sensors[s]
	e := &p.Enterprises[sn.Enterprise]
	return influxdb2.NewPoint(MeasurementReading, map[string]string{
		"county": "c01", "park": "p01", "enterprise": e.ID, "hazard_source": p.HazardSources[sn.HazardSource].ID,
		"gateway": p.Gateways[sn.Gateway].ID, "sensor": sn.ID, "kind": sn.Kind.String(), "unit": sn.Unit,
	}, map[string]any{"value": v, "quality": int64(0)}, time.UnixMilli(ts))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown CPU"
}
