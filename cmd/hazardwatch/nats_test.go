package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"hazardwatch/alerting"
	"hazardwatch/ingest"
	"hazardwatch/internal/natstest"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
)

// composeNATSConf is the compose deployment's NATS configuration: the
// centre is run against a server started from it (natstest.FromConfig).
const composeNATSConf = "../../configs/compose/nats/nats.conf"

// TestServeExternalNATS runs the centre with --nats-url against a NATS
// server started from the compose deployment's nats.conf: readings above
// HH published over MQTT reach the history and raise an alarm, as with the
// embedded server, and the streams are in that server, not under the data
// folder. /readyz's nats check follows the connection while the server is
// away; when it is back on its store, the centre carries on.
func TestServeExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	const user, password = "centre", "test-only-centre-password"
	t.Setenv("NATS_CENTRE_PASSWORD", password) // read by nats.conf
	t.Setenv(envNATSPassword, password)        // by the centre
	t.Setenv(envNATSToken, "")                 // nothing of this machine's
	store := t.TempDir()
	ns := natstest.FromConfig(t, composeNATSConf, store, 0)
	natsAddr := ns.Addr().(*net.TCPAddr)
	natsURL := "nats://" + natsAddr.String()

	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "admin", "all", "external nats")
	gwPassword := gatewayTokens(t, dataDir)["gw-e01-1"]
	startCentre(t, dataDir, httpAddr, mqttAddr, "--nats-url", natsURL, "--nats-user", user)

	// Five readings above HH over 4 s: the 3 s on-delay completes inside
	// the one message.
	const sensor = "e01-V101-LT"
	now := time.Now().Truncate(time.Second).UnixMilli()
	var outs []telemetry.Out
	for i := range 5 {
		outs = append(outs, telemetry.Out{Sensor: sensor, TS: now - 5000 + int64(i)*1000, Value: 2.6, HasValue: true})
	}
	publishAs(t, mqttAddr, "gw-e01-1", gwPassword, telemetry.AppendTelemetry(nil, "gw-e01-1", "nats-boot", 1, false, outs))

	base := "http://" + httpAddr + "/api/v1"
	waitHistory(t, base, token, sensor, now-5000, now+1000, 5)
	var alarm map[string]any
	poll.Until(t, "the alarm", 30*time.Second, func() bool {
		var page struct {
			Items []map[string]any `json:"items"`
		}
		apiCall(t, http.MethodGet, base+"/alarms", token, nil, &page)
		for _, a := range page.Items {
			if id, _ := a["id"].(string); strings.HasPrefix(id, sensor+".") {
				alarm = a
				return true
			}
		}
		return false
	})
	if alarm["level"] != "L2" || alarm["state"] != "unack_active" {
		t.Errorf("alarm %v %v, want L2 unack_active", alarm["level"], alarm["state"])
	}

	// The streams are in the external server; the data folder has no
	// JetStream of its own.
	nc, err := nats.Connect(natsURL, nats.UserInfo(user, password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ingest.StreamName, alerting.StreamName} {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s at the external server: %v", name, err)
		}
		if info, err := st.Info(context.Background()); err != nil || info.State.Msgs == 0 {
			t.Errorf("stream %s at the external server: %+v, %v; want messages", name, info, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "jetstream")); err == nil {
		t.Errorf("the centre kept a JetStream of its own under %s", dataDir)
	}
	if ok, msg := natsCheck(t, httpAddr); !ok {
		t.Fatalf("/readyz: nats not ready: %s", msg)
	}

	// The server goes away: the centre says so in /readyz and keeps
	// running; the server comes back on its store and port.
	ns.Shutdown()
	ns.WaitForShutdown()
	var msg string
	poll.Until(t, "/readyz to report the lost NATS connection", 30*time.Second, func() bool {
		var ok bool
		ok, msg = natsCheck(t, httpAddr)
		return !ok && strings.Contains(msg, "reconnecting")
	})
	t.Logf("/readyz while NATS is away: %s", msg)
	natstest.FromConfig(t, composeNATSConf, store, natsAddr.Port)
	poll.Until(t, "/readyz once NATS is back", 30*time.Second, func() bool { ok, _ := natsCheck(t, httpAddr); return ok })
	publishAs(t, mqttAddr, "gw-e01-1", gwPassword, telemetry.AppendTelemetry(nil, "gw-e01-1", "nats-boot", 2, false,
		[]telemetry.Out{{Sensor: sensor, TS: now + 2000, Value: 2.6, HasValue: true}}))
	waitHistory(t, base, token, sensor, now-5000, now+3000, 6)
}

// publishAs publishes one telemetry message as a gateway, with its token,
// and waits for the PUBACK: the centre holds it durably.
func publishAs(t *testing.T, mqttAddr, gateway, password string, msg []byte) {
	t.Helper()
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(gateway).
		SetUsername(gateway).SetPassword(password).SetAutoReconnect(false))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", gateway, tok.Error())
	}
	defer cl.Disconnect(100)
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	g, ok := cfg.Plant.GatewayIndex(gateway)
	if !ok {
		t.Fatalf("no gateway %s", gateway)
	}
	topic := telemetry.TelemetryTopic(cfg.Plant.Enterprises[cfg.Plant.Gateways[g].Enterprise].ID, gateway)
	if tok := cl.Publish(topic, 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// waitHistory waits until the API's history of sensor in [from, to) holds
// n readings.
func waitHistory(t *testing.T, base, token, sensor string, from, to int64, n int) {
	t.Helper()
	u := fmt.Sprintf("%s/sensors/%s/history?from=%s&to=%s", base, sensor,
		url.QueryEscape(time.UnixMilli(from).UTC().Format(time.RFC3339Nano)), url.QueryEscape(time.UnixMilli(to).UTC().Format(time.RFC3339Nano)))
	poll.Until(t, fmt.Sprintf("%d readings of %s in history", n, sensor), 30*time.Second, func() bool {
		var h struct {
			Items []json.RawMessage `json:"items"`
		}
		if code := apiCall(t, http.MethodGet, u, token, nil, &h); code != http.StatusOK {
			t.Fatalf("history %s: %d", sensor, code)
		}
		return len(h.Items) == n
	})
}

// natsCheck returns the nats check of the centre's /readyz: ok, and its
// error when not.
func natsCheck(t *testing.T, httpAddr string) (bool, string) {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Checks []struct {
			Name  string `json:"name"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"checks"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, c := range body.Checks {
		if c.Name == "nats" {
			if !c.OK && res.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("/readyz answered %d with nats not ok, want 503", res.StatusCode)
			}
			return c.OK, c.Error
		}
	}
	t.Fatal("/readyz has no nats check")
	return false, ""
}
