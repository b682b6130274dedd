package main

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/poll"
	"hazardwatch/internal/telemetry"
	"hazardwatch/internal/testnet"
	"hazardwatch/internal/testpki"
)

// TestServeMQTTSecurity runs `serve` with its broker on TLS with a client
// CA, as a site would: a gateway gets in with its certificate or with its
// token, publishes to its own topic only, and its token opens nothing of
// the HTTP API; a client without credentials is refused. The counters are
// read from /metrics.
func TestServeMQTTSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	dataDir, httpAddr, mqttAddr, admin := newDataDir(t, "admin", "all", "security")
	passwords := gatewayTokens(t, dataDir)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "hazardwatch test CA")
	certFile, keyFile := testpki.WriteFiles(t, dir, "server", ca.Server(t))
	startCentre(t, dataDir, httpAddr, mqttAddr, "--mqtt-tls-cert", certFile, "--mqtt-tls-key", keyFile,
		"--mqtt-client-ca", ca.WriteCA(t, dir, "ca.pem"))
	gateway := ca.Client(t, "gw-e01-1")

	dial := func(id, user, password string, cert *tls.Certificate) (mqtt.Client, error) {
		cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tls://" + mqttAddr).SetClientID(id).SetProtocolVersion(4).
			SetUsername(user).SetPassword(password).SetTLSConfig(cfg).SetAutoReconnect(false))
		tok := cl.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatalf("connect %s: no answer", id)
		}
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		t.Cleanup(func() { cl.Disconnect(100) })
		return cl, nil
	}
	msg := telemetry.AppendTelemetry(nil, "gw-e01-1", "security-boot", 1, false,
		[]telemetry.Out{{Sensor: "e01-V101-TT", TS: time.Now().UnixMilli(), Value: 21, HasValue: true}})
	publish := func(cl mqtt.Client, topic string) error {
		tok := cl.Publish(topic, 1, false, msg)
		if !tok.WaitTimeout(10 * time.Second) {
			return errors.New("no PUBACK")
		}
		return tok.Error()
	}
	metric := func(series string) float64 { return metricValue(t, httpAddr, series) }
	own := telemetry.TelemetryTopic("e01", "gw-e01-1")

	// The same message with the certificate, then with the token: stored
	// once, its copy counted as a duplicate.
	byCert, err := dial("gw-e01-1", "", "", &gateway)
	if err != nil {
		t.Fatalf("with its client certificate: %v", err)
	}
	if err := publish(byCert, own); err != nil {
		t.Fatalf("publish with the certificate: %v", err)
	}
	byCert.Disconnect(100)
	byToken, err := dial("gw-e01-1", "gw-e01-1", passwords["gw-e01-1"], nil)
	if err != nil {
		t.Fatalf("with its token over TLS: %v", err)
	}
	if err := publish(byToken, own); err != nil {
		t.Fatalf("publish with the token: %v", err)
	}
	if a, d := metric(`hw_ingest_messages_total{result="accepted"}`), metric(`hw_ingest_messages_total{result="duplicate"}`); a != 1 || d != 1 {
		t.Errorf("accepted %v, duplicate %v; want 1 and 1", a, d)
	}
	if err := publish(byToken, telemetry.TelemetryTopic("e02", "gw-e02-1")); err == nil {
		t.Error("a publish to another gateway's topic was acknowledged")
	}
	if n := metric(`hw_ingest_rejected_total{reason="not_authorized"}`); n != 1 {
		t.Errorf("not_authorized = %v, want 1", n)
	}

	if _, err := dial("anyone", "", "", nil); err == nil {
		t.Fatal("a client without credentials connected")
	}
	if _, err := dial("gw-e01-1", "admin", admin, nil); err == nil {
		t.Fatal("an admin token took a gateway's client id")
	}
	poll.Until(t, "the refusals counted", 10*time.Second, func() bool {
		return metric(`hw_ingest_connect_refused_total{reason="no_credentials"}`) == 1 &&
			metric(`hw_ingest_connect_refused_total{reason="wrong_gateway"}`) == 1
	})
	if code := apiCall(t, http.MethodGet, "http://"+httpAddr+"/api/v1/alarms", passwords["gw-e01-1"], nil, nil); code != http.StatusForbidden {
		t.Errorf("the API answered a gateway's token with %d, want 403", code)
	}

	// The gateway itself over TLS with its certificate and no password.
	// Its devices are unreachable, so it publishes q bad "connection"
	// readings: content the centre accepts.
	gwCert, gwKey := testpki.WriteFiles(t, dir, "gw-e01-1", gateway)
	accepted := metric(`hw_ingest_messages_total{result="accepted"}`)
	gw := exec.Command(binary(t), "gateway", "--id", "gw-e01-1", "--broker", "tls://"+mqttAddr, "--data-dir", t.TempDir(), "--listen", "",
		"--tls-ca", ca.WriteCA(t, dir, "ca.pem"), "--tls-cert", gwCert, "--tls-key", gwKey,
		"--device", "plc1="+testnet.FreeAddr(t), "--device", "gds1="+testnet.FreeAddr(t))
	var gwLog strings.Builder
	gw.Stderr = &gwLog
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", gwLog.String())
		}
	}()
	poll.Until(t, "the gateway's messages accepted over TLS with its certificate", 30*time.Second, func() bool {
		return metric(`hw_ingest_messages_total{result="accepted"}`) >= accepted+3
	})
}

// TestLoadMQTTTLS: the broker's TLS flags make a config that verifies
// client certificates given against the CA bundle, and every error names
// the flag and the file.
func TestLoadMQTTTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	cert, key := testpki.WriteFiles(t, dir, "server", ca.Server(t))
	_, otherKey := testpki.WriteFiles(t, dir, "other", ca.Server(t))
	caFile := ca.WriteCA(t, dir, "ca.pem")
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name, cert, key, ca string
		wantErr             string // "" for none
	}{
		{name: "none"},
		{name: "certificate", cert: cert, key: key},
		{name: "certificate and client CA", cert: cert, key: key, ca: caFile},
		{name: "certificate missing", cert: missing, key: key, wantErr: "--mqtt-tls-cert: open " + missing},
		{name: "key missing", cert: cert, key: missing, wantErr: "--mqtt-tls-key: open " + missing},
		{name: "key of another certificate", cert: cert, key: otherKey, wantErr: "--mqtt-tls-cert " + cert + ", --mqtt-tls-key " + otherKey + ":"},
		{name: "client CA missing", cert: cert, key: key, ca: missing, wantErr: "--mqtt-client-ca: open " + missing},
		{name: "client CA not PEM", cert: cert, key: key, ca: key, wantErr: "--mqtt-client-ca " + key + ": no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadMQTTTLS(tt.cert, tt.key, tt.ca)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (c != nil) != (tt.cert != "") {
				t.Fatalf("config %v for cert %q", c, tt.cert)
			}
			if c == nil {
				return
			}
			if c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 {
				t.Errorf("MinVersion %x, %d certificates", c.MinVersion, len(c.Certificates))
			}
			if verify := c.ClientAuth == tls.VerifyClientCertIfGiven && c.ClientCAs != nil; verify != (tt.ca != "") {
				t.Errorf("ClientAuth %v with ClientCAs %v, for client CA %q", c.ClientAuth, c.ClientCAs != nil, tt.ca)
			}
		})
	}
}
