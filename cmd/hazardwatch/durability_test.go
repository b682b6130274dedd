package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
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
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "durability")
	passwords := gatewayTokens(t, dataDir)
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
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(p.gateway).
			SetUsername(p.gateway).SetPassword(passwords[p.gateway]).SetAutoReconnect(false))
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
	poll.Until(t, "400 acknowledged messages", 60*time.Second, func() bool { return total() >= 400 })
	centre.kill(t) // while the publishers are mid-stream
	close(stop)
	wg.Wait()
	t.Logf("%d messages acknowledged before SIGKILL", total())

	startCentre(t, dataDir, httpAddr, mqttAddr)
	from := time.UnixMilli(start).UTC().Format(time.RFC3339Nano)
	to := time.UnixMilli(start + 1_000_000).UTC().Format(time.RFC3339Nano)
	for _, p := range pubs {
		var missing []int64
		poll.Until(t, "history of "+p.sensor, 60*time.Second, func() bool {
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

// metricValue reads one sample of the centre's /metrics.
func metricValue(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// TestDuplicateRaisesNoSecondAlarm: a message that raises an alarm, sent
// again with the same (gateway, boot, seq) before and after a centre
// restart, moves the duplicate counter and raises no second alarm event.
func TestDuplicateRaisesNoSecondAlarm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "dup")
	password := gatewayTokens(t, dataDir)["gw-e01-1"]
	centre := startCentre(t, dataDir, httpAddr, mqttAddr)

	// Five readings above HH over 4 s: the 3 s on-delay completes inside
	// the one message.
	now := time.Now().UnixMilli()
	var outs []telemetry.Out
	for i := range 5 {
		outs = append(outs, telemetry.Out{Sensor: "e01-V101-LT", TS: now - 5000 + int64(i)*1000, Value: 2.6, HasValue: true})
	}
	msg := telemetry.AppendTelemetry(nil, "gw-e01-1", "dup-boot", 1, false, outs)
	publish := func() {
		t.Helper()
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("gw-e01-1").
			SetUsername("gw-e01-1").SetPassword(password))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		defer cl.Disconnect(100)
		if tok := cl.Publish(telemetry.TelemetryTopic("e01", "gw-e01-1"), 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	const dup = `hw_ingest_messages_total{result="duplicate"}`
	alarmEvents := func() (id string, events int) {
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		apiCall(t, http.MethodGet, "http://"+httpAddr+"/api/v1/alarms", token, nil, &page)
		for _, a := range page.Items {
			if strings.HasPrefix(a.ID, "e01-V101-LT.") {
				var full struct {
					History []json.RawMessage `json:"history"`
				}
				apiCall(t, http.MethodGet, "http://"+httpAddr+"/api/v1/alarms/"+a.ID, token, nil, &full)
				return a.ID, len(full.History)
			}
		}
		return "", 0
	}

	publish()
	poll.Until(t, "the alarm", 30*time.Second, func() bool { id, _ := alarmEvents(); return id != "" })
	id, events := alarmEvents()
	publish()
	poll.Until(t, "the duplicate counted", 10*time.Second, func() bool { return metricValue(t, httpAddr, dup) == 1 })

	centre.kill(t)
	startCentre(t, dataDir, httpAddr, mqttAddr)
	publish()
	poll.Until(t, "the duplicate counted after the restart", 10*time.Second, func() bool { return metricValue(t, httpAddr, dup) == 1 })
	if id2, events2 := alarmEvents(); id2 != id || events2 != events {
		t.Fatalf("after the duplicates: alarm %s with %d events, want %s with %d", id2, events2, id, events)
	}
	if !strings.HasSuffix(id, ".1") {
		t.Errorf("alarm %s: a second occurrence", id)
	}
}
