package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testnet"
)

// The end-to-end tests run the real binary as the centre, so that it can be
// killed with SIGKILL, and the simulator and a gateway in the test.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hazardwatch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hazardwatch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// newDataDir makes a data folder holding one token, and picks free ports
// for the centre's HTTP and MQTT listeners.
func newDataDir(t *testing.T, role, scope, name string) (dataDir, httpAddr, mqttAddr, token string) {
	t.Helper()
	dataDir = t.TempDir()
	code, out, errOut := runCmd("token", "create", "--data-dir", dataDir, "--role", role, "--scope", scope, "--name", name)
	if code != exitOK {
		t.Fatalf("token: %s", errOut)
	}
	return dataDir, testnet.FreeAddr(t), testnet.FreeAddr(t), strings.Fields(out)[3]
}

// gatewayTokens creates a token for every gateway of the demo plant in
// the data folder, as an operator would with `hazardwatch token create
// --role gateway`: the gateways' MQTT passwords, by gateway id.
func gatewayTokens(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, g := range cfg.Plant.Gateways {
		code, out, errOut := runCmd("token", "create", "--data-dir", dataDir, "--role", "gateway", "--scope", "gateway:"+g.ID, "--name", g.ID)
		if code != exitOK {
			t.Fatalf("gateway token for %s: %s", g.ID, errOut)
		}
		tokens[g.ID] = strings.Fields(out)[3]
	}
	return tokens
}

// centreProc is a centre running as a child process.
type centreProc struct {
	cmd        *exec.Cmd
	http, mqtt string
	log        *bytes.Buffer
}

// startCentre runs `hazardwatch serve` with its broker authenticating
// (the default), and extra flags.
func startCentre(t *testing.T, dataDir, httpAddr, mqttAddr string, extra ...string) *centreProc {
	t.Helper()
	return startCentreWith(t, http.DefaultClient, "http://"+httpAddr, dataDir, httpAddr, mqttAddr, extra...)
}

// startCentreWith is startCentre waiting for readiness at base with client
// (https:// and a client trusting the test CA, for a TLS listener).
func startCentreWith(t *testing.T, client *http.Client, base, dataDir, httpAddr, mqttAddr string, extra ...string) *centreProc {
	t.Helper()
	c := &centreProc{http: httpAddr, mqtt: mqttAddr, log: &bytes.Buffer{}}
	// The tests poll the API every 10 ms with one token, faster than a
	// token may (internal/api tests the limits): no rate limit here.
	c.cmd = exec.Command(binary(t), append([]string{"serve", "--data-dir", dataDir, "--http", httpAddr, "--mqtt", mqttAddr, "--api-rate=-1"}, extra...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("centre log:\n%s", c.log.String())
		}
	})
	poll.Until(t, "the centre to be ready", 60*time.Second, func() bool {
		res, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return c
}

func (c *centreProc) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

func apiCall(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	if out != nil {
		_ = json.NewDecoder(res.Body).Decode(out)
	}
	return res.StatusCode
}

type wsFrame struct {
	Type    string            `json:"type"`
	Seq     uint64            `json:"seq"`
	Resumed bool              `json:"resumed"`
	Reset   bool              `json:"reset"`
	Event   string            `json:"event"`
	Alarm   map[string]any    `json:"alarm"`
	Alarms  []json.RawMessage `json:"alarms"`
}

// TestEndToEnd: a Modbus register crossing HH becomes exactly one alarm
// (noise inside the deadband and a spike shorter than the on-delay raise
// nothing); a WebSocket client sees it with the next seq; it is
// acknowledged over HTTP; the centre is killed with SIGKILL right after the
// 200 and started again: the alarm is there, acknowledged.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "e2e")
	centre := startCentre(t, dataDir, httpAddr, mqttAddr)

	const sensor = "e01-V101-LT" // H 2.20, HH 2.40, deadband 0.02, on-delay 3 s
	s, gws, stopGateways := startPlant(t, cfg, mqttAddr, gatewayTokens(t, dataDir))
	defer stopGateways()
	g := gws["gw-e01-1"] // the tank's gateway
	if err := s.Set(sensor, 2.10); err != nil {
		t.Fatal(err)
	}

	// The level reaches the centre.
	base := "http://" + httpAddr + "/api/v1"
	poll.Until(t, "the first readings", 30*time.Second, func() bool {
		var page struct {
			Items []struct {
				ID    string   `json:"id"`
				Value *float64 `json:"value"`
			} `json:"items"`
		}
		apiCall(t, "GET", base+"/sensors?enterprise=e01&limit=1000", token, nil, &page)
		for _, it := range page.Items {
			if it.ID == sensor && it.Value != nil && *it.Value > 2.05 {
				return true
			}
		}
		return false
	})

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+httpAddr+"/api/v1/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "subscribe"}); err != nil {
		t.Fatal(err)
	}
	frames := make(chan wsFrame, 100)
	go func() {
		defer close(frames)
		for {
			var f wsFrame
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			frames <- f
		}
	}()
	var snap wsFrame
	select {
	case snap = <-frames:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot")
	}
	if snap.Type != "snapshot" {
		t.Fatalf("first frame %q, want snapshot", snap.Type)
	}

	// Noise inside the deadband below H, then a spike above HH shorter than
	// the 3 s on-delay: nothing may be raised.
	for _, v := range []float64{2.15, 2.19, 2.17, 2.19} {
		_ = s.Set(sensor, v)
		waitPolled(t, g, 1)
	}
	_ = s.Set(sensor, 2.55)
	waitPolled(t, g, 1)
	_ = s.Set(sensor, 2.10)
	waitPolled(t, g, 4)
	select {
	case f := <-frames:
		t.Fatalf("noise or a short spike raised something: %+v", f)
	default:
	}

	// A sustained crossing of HH: exactly one alarm, at L2, with the next seq.
	_ = s.Set(sensor, 2.50)
	var raised wsFrame
	select {
	case raised = <-frames:
	case <-time.After(20 * time.Second):
		t.Fatal("no alarm event for a sustained HH crossing")
	}
	if raised.Type != "alarm" || raised.Event != "raised" || raised.Seq != snap.Seq+1 {
		t.Fatalf("event %s/%s seq %d, want alarm/raised seq %d", raised.Type, raised.Event, raised.Seq, snap.Seq+1)
	}
	src, _ := raised.Alarm["source"].(map[string]any)
	if src["sensor"] != sensor || raised.Alarm["level"] != "L2" {
		t.Fatalf("raised alarm %v", raised.Alarm)
	}
	id, _ := raised.Alarm["id"].(string)
	waitPolled(t, g, 3)
	select {
	case f := <-frames:
		t.Fatalf("a second event for one crossing: %+v", f)
	default:
	}

	// Acknowledged over HTTP, then SIGKILL right after the 200.
	var acked map[string]any
	if code := apiCall(t, "POST", base+"/alarms/"+id+"/ack", token, map[string]string{"comment": "现场已确认 / checked on site"}, &acked); code != http.StatusOK {
		t.Fatalf("ack: %d %v", code, acked)
	}
	centre.kill(t)
	stopGateways()

	startCentre(t, dataDir, httpAddr, mqttAddr)
	var got map[string]any
	if code := apiCall(t, "GET", base+"/alarms/"+id, token, nil, &got); code != http.StatusOK {
		t.Fatalf("alarm after restart: %d %v", code, got)
	}
	if got["state"] != "ack_active" || got["acked_by"] != "e2e" {
		t.Fatalf("after SIGKILL and restart the alarm is %v by %v, want ack_active by e2e", got["state"], got["acked_by"])
	}
}

// startPlant runs the simulator for every device of the plant, baselines
// only, with every sensor that has limits pinned inside them (so nothing
// alarms by itself), and every gateway against the broker at mqttAddr,
// each with its token of tokens as its password.
func startPlant(t *testing.T, cfg *config.Config, mqttAddr string, tokens map[string]string) (*sim.Simulator, map[string]*gateway.Gateway, func()) {
	t.Helper()
	p := cfg.Plant
	s, err := sim.New(p, nil, sim.Options{Listen: sim.Loopback(p), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i, sn := range p.Sensors {
		lim := cfg.Rules[i].Limits
		lo, hi := sn.RangeMin, sn.RangeMax
		if lim[model.L].Set {
			lo = max(lo, lim[model.L].Value)
		}
		if lim[model.H].Set {
			hi = min(hi, lim[model.H].Value)
		}
		if lim[model.L].Set || lim[model.H].Set {
			if err := s.Set(sn.ID, (lo+hi)/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	gws := map[string]*gateway.Gateway{}
	for _, gw := range p.Gateways {
		addrs := map[string]string{}
		for _, d := range gw.Devices {
			addrs[d.ID] = s.Addr(gw.ID, d.ID)
		}
		one, err := gateway.New(gateway.Options{Plant: p, Gateway: gw.ID, Broker: "tcp://" + mqttAddr, Username: gw.ID, Password: tokens[gw.ID],
			DeviceAddr: addrs, PublishTimeout: 3 * time.Second, QueuePath: filepath.Join(t.TempDir(), gw.ID+".queue")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = one.Close() })
		gws[gw.ID] = one
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := one.Run(ctx); err != nil {
				t.Errorf("gateway %s: %v", gw.ID, err)
			}
		}()
	}
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		_ = s.Close()
	})
	t.Cleanup(stop)
	return s, gws, stop
}

// waitPolled waits until the broker has acknowledged n more of the
// gateway's messages: the centre holds those readings durably.
func waitPolled(t *testing.T, g *gateway.Gateway, n uint64) {
	t.Helper()
	start := g.Published()
	poll.Until(t, "poll cycles", 20*time.Second, func() bool { return g.Published() >= start+n })
}
