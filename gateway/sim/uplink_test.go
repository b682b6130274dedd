package sim_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"hazardwatch/gateway/sim"
	"hazardwatch/internal/poll"
)

// TestDemoUplinkCut: the demo cuts the chlor-alkali gateway's uplink from
// 8:50 to 9:50 of every cycle, and no other gateway's.
func TestDemoUplinkCut(t *testing.T) {
	cfg, sc := loadDemo(t)
	clock := newFakeClock()
	s := newSim(t, cfg.Plant, sc, sim.Options{Clock: clock.Now}) // not started: UplinkCut needs no servers
	const cycle = 10 * time.Minute
	for _, tt := range []struct {
		at  time.Duration
		cut bool
	}{
		{0, false},
		{8*time.Minute + 49*time.Second, false},
		{8*time.Minute + 50*time.Second, true},
		{9*time.Minute + 49*time.Second + 900*time.Millisecond, true},
		{9*time.Minute + 50*time.Second, false},
		{cycle + 8*time.Minute + 49*time.Second, false},
		{cycle + 9*time.Minute, true},
		{5*cycle + 9*time.Minute, true},
		{5*cycle + 9*time.Minute + 55*time.Second, false},
	} {
		clock.At(tt.at)
		if got := s.UplinkCut("gw-e01-1"); got != tt.cut {
			t.Errorf("at %s: gw-e01-1 uplink cut = %v, want %v", tt.at, got, tt.cut)
		}
		for _, g := range cfg.Plant.Gateways {
			if g.ID != "gw-e01-1" && s.UplinkCut(g.ID) {
				t.Errorf("at %s: %s uplink cut, want only gw-e01-1's", tt.at, g.ID)
			}
		}
	}
	if s.UplinkCut("gw-e09-1") {
		t.Error("UplinkCut of an unknown gateway = true")
	}
}

// uplinkCall is one call of Options.OnUplink.
type uplinkCall struct {
	gateway string
	up      bool
}

func (c uplinkCall) String() string { return fmt.Sprintf("%s up=%v", c.gateway, c.up) }

// calls records OnUplink's calls.
type calls struct {
	mu  sync.Mutex
	got []uplinkCall
}

func (c *calls) onUplink(gateway string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, uplinkCall{gateway, up})
}

func (c *calls) all() []uplinkCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// episodeLog records the simulator's episode lines about uplinks (or,
// with key "fault_bit", about fault bits) as "begins name what" and "ends
// name what".
type episodeLog struct {
	key   string // the attribute naming what the episode is about; "" is "uplink"
	mu    sync.Mutex
	lines []string
}

func (l *episodeLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *episodeLog) Handle(_ context.Context, r slog.Record) error {
	var name, about string
	key := cmp.Or(l.key, "uplink")
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "episode":
			name = a.Value.String()
		case key:
			about = a.Value.String()
		}
		return true
	})
	if about == "" {
		return nil
	}
	word := map[string]string{"scenario episode begins": "begins", "scenario episode ends": "ends"}[r.Message]
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, word+" "+name+" "+about)
	return nil
}
func (l *episodeLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *episodeLog) WithGroup(string) slog.Handler      { return l }

func (l *episodeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// TestOnUplink moves an injected clock through two cycles of a scenario
// with three uplink cuts, two of them back to back, and checks OnUplink's
// calls and the episode log lines, in order: a cut in force at Start is
// reported once, back-to-back cuts of one gateway are one cut, and the
// cuts come again in the next cycle.
func TestOnUplink(t *testing.T) {
	cfg, _ := loadDemo(t)
	data := []byte("kind: scenario\ncycle: 10m\nepisodes:\n" +
		"  - {name: a, type: uplink, gateway: gw-e01-1, start: 100s, duration: 60s}\n" +
		"  - {name: b, type: uplink, gateway: gw-e01-1, start: 160s, duration: 40s}\n" +
		"  - {name: c, type: uplink, gateway: gw-e02-1, start: 300s, duration: 30s}\n")
	sc, err := sim.LoadScenario(fstest.MapFS{"f.yaml": {Data: data}}, "f.yaml", "", cfg.Plant)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	rec, logs := &calls{}, &episodeLog{}
	s := newSim(t, cfg.Plant, sc, sim.Options{Clock: clock.Now, OnUplink: rec.onUplink, Logger: slog.New(logs)})
	clock.At(120 * time.Second) // in a: the cut is in force at Start
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	down := func(g string) uplinkCall { return uplinkCall{g, false} }
	up := func(g string) uplinkCall { return uplinkCall{g, true} }
	steps := []struct {
		at    time.Duration
		calls []uplinkCall // all calls so far
		logs  []string     // all uplink episode lines so far
		cut   []string     // gateways UplinkCut reports
	}{
		{120 * time.Second, []uplinkCall{down("gw-e01-1")},
			[]string{"begins a gw-e01-1"}, []string{"gw-e01-1"}},
		{170 * time.Second, []uplinkCall{down("gw-e01-1")},
			[]string{"begins a gw-e01-1", "ends a gw-e01-1", "begins b gw-e01-1"}, []string{"gw-e01-1"}},
		{230 * time.Second, []uplinkCall{down("gw-e01-1"), up("gw-e01-1")},
			[]string{"begins a gw-e01-1", "ends a gw-e01-1", "begins b gw-e01-1", "ends b gw-e01-1"}, nil},
		{310 * time.Second, []uplinkCall{down("gw-e01-1"), up("gw-e01-1"), down("gw-e02-1")},
			nil, []string{"gw-e02-1"}},
		{400 * time.Second, []uplinkCall{down("gw-e01-1"), up("gw-e01-1"), down("gw-e02-1"), up("gw-e02-1")},
			nil, nil},
		// the next cycle
		{10*time.Minute + 110*time.Second, []uplinkCall{down("gw-e01-1"), up("gw-e01-1"), down("gw-e02-1"), up("gw-e02-1"), down("gw-e01-1")},
			nil, []string{"gw-e01-1"}},
		{10*time.Minute + 210*time.Second, []uplinkCall{down("gw-e01-1"), up("gw-e01-1"), down("gw-e02-1"), up("gw-e02-1"), down("gw-e01-1"), up("gw-e01-1")},
			[]string{
				"begins a gw-e01-1", "ends a gw-e01-1", "begins b gw-e01-1", "ends b gw-e01-1",
				"begins c gw-e02-1", "ends c gw-e02-1", "begins a gw-e01-1", "ends a gw-e01-1",
			}, nil},
	}
	for _, st := range steps {
		clock.At(st.at)
		// Each step changes the log or the calls, so waiting for the lines
		// (or calls) of the step means the run goroutine has seen it.
		if st.logs != nil {
			poll.Until(t, fmt.Sprintf("episode lines at %s", st.at), 5*time.Second, func() bool { return len(logs.all()) >= len(st.logs) })
			if got := logs.all(); !slices.Equal(got, st.logs) {
				t.Errorf("at %s: episode lines %q, want %q", st.at, got, st.logs)
			}
		}
		poll.Until(t, fmt.Sprintf("OnUplink calls at %s", st.at), 5*time.Second, func() bool { return len(rec.all()) >= len(st.calls) })
		if got := rec.all(); !slices.Equal(got, st.calls) {
			t.Fatalf("at %s: OnUplink calls %v, want %v", st.at, got, st.calls)
		}
		for _, g := range cfg.Plant.Gateways {
			if want := slices.Contains(st.cut, g.ID); s.UplinkCut(g.ID) != want {
				t.Errorf("at %s: UplinkCut(%s) = %v, want %v", st.at, g.ID, !want, want)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != len(steps[len(steps)-1].calls) {
		t.Errorf("OnUplink calls after the last step: %v", got[len(steps[len(steps)-1].calls):])
	}
}

// TestUplinkWithoutCallback: a scenario with uplink cuts runs without
// OnUplink, and the cut is still logged and answered by UplinkCut.
func TestUplinkWithoutCallback(t *testing.T) {
	cfg, sc := loadDemo(t)
	clock := newFakeClock()
	logs := &episodeLog{}
	s := newSim(t, cfg.Plant, sc, sim.Options{Clock: clock.Now, Logger: slog.New(logs)})
	clock.At(9 * time.Minute)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the cut's episode line", 5*time.Second, func() bool { return len(logs.all()) > 0 })
	if got, want := logs.all(), []string{"begins 氯碱企业网关上行链路中断 gw-e01-1"}; !slices.Equal(got, want) {
		t.Errorf("episode lines %q, want %q", got, want)
	}
	if !s.UplinkCut("gw-e01-1") {
		t.Error("UplinkCut(gw-e01-1) = false at 9:00")
	}
}
