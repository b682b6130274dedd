package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hazardwatch/configs"
	"hazardwatch/gateway/edge"
	"hazardwatch/gateway/queue"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/centre"
	"hazardwatch/internal/config"
	"hazardwatch/internal/netcut"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
	"hazardwatch/internal/testnet"
)

// asMain makes the test binary run hw-gateway's main instead of the tests:
// the uplink test starts it as a child process that it can kill -9.
const asMain = "HW_GATEWAY_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(edge.Main("hw-gateway", os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// kept is one message the gateway made durable: its boot, seq and number
// of readings.
type kept struct {
	boot     string
	seq      uint64
	readings int
}

// gatewayProc is hw-gateway running as a child process; it reads the
// child's log for the messages it kept.
type gatewayProc struct {
	cmd    *exec.Cmd
	health string
	done   chan struct{}
}

type keptLog struct {
	mu   sync.Mutex
	msgs []kept
}

func (k *keptLog) add(m kept) {
	k.mu.Lock()
	k.msgs = append(k.msgs, m)
	k.mu.Unlock()
}

func (k *keptLog) snapshot() []kept {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kept(nil), k.msgs...)
}

func startGateway(t *testing.T, log *keptLog, args ...string) *gatewayProc {
	t.Helper()
	health := testnet.FreeAddr(t)
	cmd := exec.Command(os.Args[0], append(args, "--listen", health, "--debug")...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{cmd: cmd, health: health, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `msg="poll cycle kept"`) {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					t.Logf("gateway: %s", line)
				}
				continue
			}
			f := logFields(line)
			seq, _ := strconv.ParseUint(f["seq"], 10, 64)
			n, _ := strconv.Atoi(f["readings"])
			log.add(kept{boot: f["boot"], seq: seq, readings: n})
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-g.done; _ = cmd.Wait() })
	return g
}

// logFields reads the key=value pairs of a text log line (values without
// spaces).
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = strings.Trim(v, `"`)
		}
	}
	return f
}

type health struct {
	OK, Uplink bool
	Pending    int
	Boot       string
}

func (g *gatewayProc) healthz() (health, bool) {
	var h health
	res, err := http.Get("http://" + g.health + "/healthz")
	if err != nil {
		return h, false
	}
	defer res.Body.Close()
	return h, json.NewDecoder(res.Body).Decode(&h) == nil
}

// fastPlant writes the demo plant with gw-e01-1 polling every 50 ms into a
// folder and loads it.
func fastPlant(t *testing.T) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(configs.Demo(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.IsDir() && p != "." {
				return os.MkdirAll(filepath.Join(dir, p), 0o755)
			}
			return err
		}
		b, err := fs.ReadFile(configs.Demo(), p)
		if err != nil {
			return err
		}
		if p == "e01-chlor-alkali.yaml" {
			s := strings.Replace(string(b), "poll_period: 1s", "poll_period: 50ms", 1) // gw-e01-1 comes first
			b = []byte(strings.ReplaceAll(s, "timeout: 500ms", "timeout: 40ms"))
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDirOrDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// TestUplinkCutKill9 is the store-and-forward acceptance test. gw-e01-1
// (hw-gateway as a child process) polls the simulated devices every 50 ms
// and publishes to a real centre (embedded broker, JetStream, history)
// through a proxy. The proxy cuts the uplink for more than 600 poll
// cycles; halfway through, the gateway is killed with SIGKILL and started
// again on the same queue; then the uplink comes back. Every message the
// gateway made reaches the centre: its history holds each reading exactly
// once (as many readings as the gateway made, no timestamp twice), in
// timestamp order.
func TestUplinkCutKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	cfgDir, cfg := fastPlant(t)
	p := cfg.Plant
	gi, _ := p.GatewayIndex("gw-e01-1")
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dataDir := t.TempDir()
	c, err := centre.Start(ctx, centre.Options{Config: cfg, DataDir: dataDir, MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		MQTTAuth: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	admin, _, err := c.Tokens().Create("uplink test", auth.Admin, auth.Scope{Kind: "all"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gwToken, _, err := c.Tokens().Create("gw-e01-1", auth.Gateway, auth.GatewayScope("gw-e01-1"), 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	s, err := sim.New(p, nil, sim.Options{Listen: sim.Loopback(p), Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	px, err := netcut.Listen(ctx, "127.0.0.1:0", c.MQTTAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()

	gwData := t.TempDir()
	args := []string{"--config", cfgDir, "--id", "gw-e01-1", "--broker", "tcp://" + px.Addr(), "--data-dir", gwData, "--password", gwToken}
	for _, d := range p.Gateways[gi].Devices {
		args = append(args, "--device", d.ID+"="+s.Addr("gw-e01-1", d.ID))
	}
	var log keptLog
	first := startGateway(t, &log, args...)
	poll.Until(t, "the gateway online, its messages acknowledged", 30*time.Second, func() bool {
		h, ok := first.healthz()
		return ok && h.Uplink && len(log.snapshot()) >= 20 && h.Pending == 0
	})

	const cycles = 600
	px.SetCut(true)
	atCut := len(log.snapshot())
	poll.Until(t, "half the cut's cycles queued", 60*time.Second, func() bool { return len(log.snapshot())-atCut >= cycles/2 })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	_ = first.cmd.Wait()
	// A message kept just before the kill may not have reached the log:
	// the queue has it.
	q, err := queue.Open(queue.Options{Path: edge.QueueFile(gwData, "gw-e01-1")})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := q.Oldest(q.Len())
	if err != nil {
		t.Fatal(err)
	}
	_ = q.Close()
	logged := map[[2]string]bool{}
	for _, m := range log.snapshot() {
		logged[[2]string{m.boot, strconv.FormatUint(m.seq, 10)}] = true
	}
	dec := telemetry.NewDecoder(p, telemetry.Options{MaxFuture: time.Hour, LiveWindow: time.Hour})
	for _, m := range queued {
		if logged[[2]string{m.Boot, strconv.FormatUint(m.MsgSeq, 10)}] {
			continue
		}
		var msg telemetry.Message
		if err := dec.Decode(telemetry.TelemetryTopic("e01", "gw-e01-1"), m.Payload, time.Now(), 0, &msg); err != nil {
			t.Fatalf("queued message %d: %v", m.MsgSeq, err)
		}
		t.Logf("message %s/%d was kept but not logged before the kill", m.Boot, m.MsgSeq)
		log.add(kept{boot: m.Boot, seq: m.MsgSeq, readings: len(msg.Readings)})
	}
	t.Logf("killed with %d messages queued", len(queued))

	second := startGateway(t, &log, args...)
	poll.Until(t, fmt.Sprintf("%d cycles queued during the cut", cycles), 60*time.Second, func() bool { return len(log.snapshot())-atCut >= cycles })
	px.SetCut(false)
	poll.Until(t, "the queue drained", 60*time.Second, func() bool {
		h, ok := second.healthz()
		return ok && h.Uplink && h.Pending == 0
	})
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-second.done
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	q, err = queue.Open(queue.Options{Path: edge.QueueFile(gwData, "gw-e01-1")})
	if err != nil {
		t.Fatal(err)
	}
	if n := q.Len(); n != 0 {
		t.Errorf("%d messages left in the queue after a clean stop with the uplink up", n)
	}
	_ = q.Close()

	// What the gateway made: per boot, seqs 1, 2, 3, … each once.
	all := log.snapshot()
	want := 0
	seqs := map[string][]uint64{}
	for _, m := range all {
		want += m.readings
		seqs[m.boot] = append(seqs[m.boot], m.seq)
	}
	if len(seqs) != 2 {
		t.Fatalf("%d boots, want 2", len(seqs))
	}
	for boot, ss := range seqs {
		seen := map[uint64]bool{}
		for _, s := range ss {
			seen[s] = true
		}
		for s := uint64(1); s <= uint64(len(ss)); s++ {
			if !seen[s] {
				t.Errorf("boot %s: seq %d never made (seqs %d)", boot, s, len(ss))
			}
		}
	}

	// What the centre holds: every reading, once, in timestamp order.
	var sensors []string
	for _, sn := range p.Sensors {
		if sn.Gateway == gi {
			sensors = append(sensors, sn.ID)
		}
	}
	var got int
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the centre's history held %d of the %d readings", got, want)
			// What ingest and history counted, to tell a reading lost
			// from one refused or late.
			if res, err := http.Get("http://" + c.HTTPAddr() + "/metrics"); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(l, "hw_ingest") || strings.HasPrefix(l, "hw_pipeline") || strings.HasPrefix(l, "hw_store") {
						t.Logf("centre: %s", l)
					}
				}
			}
		}
	})
	poll.Until(t, fmt.Sprintf("the centre's history holds all %d readings", want), 60*time.Second, func() bool {
		got = 0
		for _, id := range sensors {
			got += len(history(t, c.HTTPAddr(), admin, id, start))
		}
		return got >= want
	})
	for _, id := range sensors {
		ts := history(t, c.HTTPAddr(), admin, id, start)
		for i := 1; i < len(ts); i++ {
			if !ts[i-1].Before(ts[i]) {
				t.Fatalf("%s: history at %d: %s then %s", id, i, ts[i-1], ts[i])
			}
		}
	}
	if got != want {
		t.Fatalf("the centre holds %d readings, the gateway made %d", got, want)
	}
	t.Logf("%d messages (%d during the cut, across a kill -9), %d readings of %d sensors: all at the centre once, in order",
		len(all), len(all)-atCut, want, len(sensors))
}

// history returns the timestamps of a sensor's raw history since from.
func history(t *testing.T, addr, token, sensor string, from time.Time) []time.Time {
	t.Helper()
	u := fmt.Sprintf("http://%s/api/v1/sensors/%s/history?from=%s&to=%s", addr, sensor,
		url.QueryEscape(from.Add(-time.Minute).Format(time.RFC3339Nano)), url.QueryEscape(time.Now().Add(time.Minute).Format(time.RFC3339Nano)))
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("history of %s: %d %s", sensor, res.StatusCode, b)
	}
	var body struct {
		Items []struct {
			TS    string `json:"ts"`
			Count int    `json:"count"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := make([]time.Time, 0, len(body.Items))
	for _, it := range body.Items {
		ts, err := time.Parse(time.RFC3339Nano, it.TS)
		if err != nil {
			t.Fatal(err)
		}
		for range it.Count {
			out = append(out, ts)
		}
	}
	return out
}
