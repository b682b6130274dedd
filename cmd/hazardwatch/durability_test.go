package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// TestDurabilityKill9: gateways publish while the centre is killed with
// SIGKILL; after a restart every reading a gateway got a PUBACK for is in
// history. (That the JetStream store syncs every write, which SIGKILL
// alone cannot tell, is asserted in internal/bus.)
func TestDurabilityKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	dataDir := t.TempDir()
	code, out, errOut := runCmd("token", "create", "--data-dir", dataDir, "--role", "admin", "--scope", "all", "--name", "durability")
	if code != exitOK {
		t.Fatalf("token: %s", errOut)
	}
	token := strings.Fields(out)[3]
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	centre := startCentre(t, dataDir, httpAddr, mqttAddr)

	type publisher struct {
		enterprise, gateway, sensor string
		mu                          sync.Mutex
		acked                       []int64 // ts of every reading whose message was acknowledged
	}
	pubs := []*publisher{
		{enterprise: "e01", gateway: "gw-e01-1", sensor: "e01-V101-TT"},
		{enterprise: "e01", gateway: "gw-e01-2", sensor: "e01-F201-TT"},
		{enterprise: "e02", gateway: "gw-e02-1", sensor: "e02-V201-TT"},
		{enterprise: "e03", gateway: "gw-e03-1", sensor: "e03-R501-TT"},
	}
	start := time.Now().UnixMilli()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, p := range pubs {
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(p.gateway).SetAutoReconnect(false))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", p.gateway, tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Disconnect(0)
			topic := telemetry.TelemetryTopic(p.enterprise, p.gateway)
			for seq := uint64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				ts := start + int64(seq)
				msg := telemetry.AppendTelemetry(nil, p.gateway, "durability-boot", seq, false,
					[]telemetry.Out{{Sensor: p.sensor, TS: ts, Value: float64(seq) / 100, HasValue: true, Quality: model.Good}})
				tok := cl.Publish(topic, 1, false, msg)
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || !cl.IsConnectionOpen() {
					return // the centre is gone: this message was not acknowledged
				}
				p.mu.Lock()
				p.acked = append(p.acked, ts)
				p.mu.Unlock()
			}
		}()
	}
	total := func() int {
		n := 0
		for _, p := range pubs {
			p.mu.Lock()
			n += len(p.acked)
			p.mu.Unlock()
		}
		return n
	}
	waitFor(t, "400 acknowledged messages", 60*time.Second, func() bool { return total() >= 400 })
	centre.kill(t) // while the publishers are mid-stream
	close(stop)
	wg.Wait()
	t.Logf("%d messages acknowledged before SIGKILL", total())

	startCentre(t, dataDir, httpAddr, mqttAddr)
	from := time.UnixMilli(start).UTC().Format(time.RFC3339Nano)
	to := time.UnixMilli(start + 1_000_000).UTC().Format(time.RFC3339Nano)
	for _, p := range pubs {
		var missing []int64
		waitFor(t, "history of "+p.sensor, 60*time.Second, func() bool {
			var h struct {
				Items []struct {
					TS    time.Time `json:"ts"`
					Count int       `json:"count"`
				} `json:"items"`
			}
			u := fmt.Sprintf("http://%s/api/v1/sensors/%s/history?from=%s&to=%s", httpAddr, p.sensor, url.QueryEscape(from), url.QueryEscape(to))
			if code := apiCall(t, http.MethodGet, u, token, nil, &h); code != http.StatusOK {
				t.Fatalf("history %s: %d", p.sensor, code)
			}
			have := map[int64]bool{}
			for _, it := range h.Items {
				have[it.TS.UnixMilli()] = true
			}
			missing = missing[:0]
			for _, ts := range p.acked {
				if !have[ts] {
					missing = append(missing, ts)
				}
			}
			return len(missing) == 0
		})
		t.Logf("%s: all %d acknowledged readings are in history", p.sensor, len(p.acked))
	}
}
