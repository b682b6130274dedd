package ingest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/auth"
	"hazardwatch/internal/bus"
	"hazardwatch/internal/telemetry"
	"hazardwatch/internal/testpki"
)

// tokens is a real token store holding one token per holder: the two
// gateways of the tests, an admin, an enterprise operator, and a revoked
// and an expired token of gw-e01-1.
type tokens struct {
	store *auth.Store
	plain map[string]string
	ids   map[string]string
}

func newTokens(tb testing.TB) *tokens {
	tb.Helper()
	s, err := auth.Open(filepath.Join(tb.TempDir(), "tokens.json"))
	if err != nil {
		tb.Fatal(err)
	}
	k := &tokens{store: s, plain: map[string]string{}, ids: map[string]string{}}
	now := time.Now()
	for _, t := range []struct {
		holder string
		role   auth.Role
		scope  auth.Scope
		ttl    time.Duration
		at     time.Time
	}{
		{testGW, auth.Gateway, auth.GatewayScope(testGW), 0, now},
		{"gw-e02-1", auth.Gateway, auth.GatewayScope("gw-e02-1"), 0, now},
		{"admin", auth.Admin, auth.Scope{Kind: "all"}, 0, now},
		{"operator", auth.Operator, auth.Scope{Kind: "enterprise", ID: testEnt}, 0, now},
		{"revoked", auth.Gateway, auth.GatewayScope(testGW), 0, now},
		{"expired", auth.Gateway, auth.GatewayScope(testGW), time.Minute, now.Add(-time.Hour)},
	} {
		plain, tok, err := s.Create(t.holder, t.role, t.scope, t.ttl, t.at)
		if err != nil {
			tb.Fatal(err)
		}
		k.plain[t.holder], k.ids[t.holder] = plain, tok.ID
	}
	if err := s.Revoke(k.ids["revoked"], now); err != nil {
		tb.Fatal(err)
	}
	return k
}

// as sets a client's username and password.
func as(user, password string) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(password) }
}

// both applies several client options.
func both(mods ...func(*paho.ClientOptions)) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) {
		for _, m := range mods {
			m(o)
		}
	}
}

// refusedCounts reads hw_ingest_connect_refused_total for every reason.
func (h *harness) refusedCounts() map[string]float64 {
	n := map[string]float64{}
	for _, r := range refusedReasons {
		n[r] = h.metric("hw_ingest_connect_refused_total", "reason", r)
	}
	return n
}

// expectRefused checks that exactly one connection was refused since
// before, for reason; an empty reason expects none.
func (h *harness) expectRefused(tb testing.TB, before map[string]float64, reason string) {
	tb.Helper()
	eventually(tb, "refusal counted as "+reason, func() bool {
		return reason == "" || h.refusedCounts()[reason] > before[reason]
	})
	for r, n := range h.refusedCounts() {
		want := before[r]
		if r == reason {
			want++
		}
		if n != want {
			tb.Errorf("hw_ingest_connect_refused_total{reason=%q} = %v, want %v", r, n, want)
		}
	}
}

// TestConnectRefused: every way to connect without valid credentials is
// refused and counted under its reason; a gateway with its own token and
// an admin get in.
func TestConnectRefused(t *testing.T) {
	k := newTokens(t)
	h := start(t, func(o *Options) { o.Credentials = k.store })
	url := "tcp://" + h.in.Addr()
	will := func(topic string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) { o.SetWill(topic, `{"state":"offline","boot":"b","ts":1}`, 1, true) }
	}
	ownStatus := telemetry.StatusTopic(testEnt, testGW)
	tests := []struct {
		name, client string
		mod          func(*paho.ClientOptions)
		reason       string // "" when the connection is accepted
	}{
		{"no credentials", "c-none", nil, refusedNoCredentials},
		{"username without a password", "c-user", as(testGW, ""), refusedNoCredentials},
		{"wrong password", "c-wrong", as(testGW, "hw_"+strings.Repeat("A", 43)), refusedBadCredentials},
		{"revoked token", "c-revoked", as(testGW, k.plain["revoked"]), refusedBadCredentials},
		{"expired token", "c-expired", as(testGW, k.plain["expired"]), refusedBadCredentials},
		{"an operator's API token", "c-operator", as("operator", k.plain["operator"]), refusedBadCredentials},
		{"token of another gateway", "c-other", as(testGW, k.plain["gw-e02-1"]), refusedWrongGateway},
		{"another gateway's client id", testGW, as("gw-e02-1", k.plain["gw-e02-1"]), refusedWrongGateway},
		{"admin with a gateway's client id", testGW, as("admin", k.plain["admin"]), refusedWrongGateway},
		{"will on another gateway's status", testGW, both(as(testGW, k.plain[testGW]), will(telemetry.StatusTopic("e02", "gw-e02-1"))), refusedWill},
		{"will on its own telemetry", testGW, both(as(testGW, k.plain[testGW]), will(testTopic)), refusedWill},
		{"admin with a will", "c-admin-will", both(as("admin", k.plain["admin"]), will(ownStatus)), refusedWill},
		{"gateway with its own will", testGW, both(as(testGW, k.plain[testGW]), will(ownStatus)), ""},
		{"gateway, any client id", "gw-e01-1-debug", as(testGW, k.plain[testGW]), ""},
		{"admin", "debug", as("admin", k.plain["admin"]), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.refusedCounts()
			c, err := tryConnect(t, url, tt.client, tt.mod)
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.reason != "" && err == nil:
				t.Fatal("accepted")
			case tt.reason != "" && !strings.Contains(err.Error(), "not Authorized"):
				t.Errorf("refused with %v, want not authorized", err)
			}
			h.expectRefused(t, before, tt.reason)
			if c != nil {
				c.Disconnect(100)
			}
		})
	}
	// The refused connections touched nothing.
	if n := h.metric("hw_ingest_messages_total", "result", "accepted") + h.metric("hw_ingest_status_total", "result", "accepted"); n != 0 {
		t.Errorf("%v messages accepted", n)
	}
}

// TestGatewayACL is the acceptance test of the ACL: a gateway
// authenticated as gw-e01-1 publishes valid telemetry of other gateways to
// their topics, in its own enterprise and in another. Each publish is
// refused and counted not_authorized, and nothing of it is stored or
// reaches a subscriber; its own publishes are stored, and the very
// payload it was refused is stored when the gateway it belongs to sends
// it.
func TestGatewayACL(t *testing.T) {
	k := newTokens(t)
	h := start(t, func(o *Options) { o.Credentials = k.store })
	url := "tcp://" + h.in.Addr()

	// An admin watches everything delivered.
	var mu sync.Mutex
	var seen []string
	admin := connect(t, url, "watch", as("admin", k.plain["admin"]))
	if tok := admin.Subscribe("hw/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.Topic()+" "+string(m.Payload()))
	}); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		t.Fatalf("admin subscribe: %v", tok.Error())
	}
	delivered := func(topic string, payload []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			if s == topic+" "+string(payload) {
				return true
			}
		}
		return false
	}

	now := nowMS()
	message := func(gw, sensor string, seq uint64) []byte {
		return telemetry.AppendTelemetry(nil, gw, "b-acl", seq, false, []telemetry.Out{{Sensor: sensor, TS: now, Value: 20.5, HasValue: true}})
	}
	own := connect(t, url, testGW, as(testGW, k.plain[testGW]))
	mustPublish(t, own, testTopic, message(testGW, sensorLT, 1))

	foreign := []struct {
		name, topic string
		payload     []byte
		retain      bool
	}{
		{"another enterprise's gateway", telemetry.TelemetryTopic("e02", "gw-e02-1"), message("gw-e02-1", "e02-V201-TT", 7), false},
		{"another gateway of its enterprise", telemetry.TelemetryTopic(testEnt, "gw-e01-2"), message("gw-e01-2", "e01-F201-TT", 7), false},
		{"another gateway's status", telemetry.StatusTopic("e02", "gw-e02-1"), telemetry.AppendStatus(nil, telemetry.Status{State: "offline", Boot: "b-acl", TS: now}), true},
	}
	for i, f := range foreign {
		t.Run(f.name, func(t *testing.T) {
			lost := newLossWatch()
			c := connect(t, url, testGW, both(as(testGW, k.plain[testGW]), lost.option))
			lost.refused(t, c, f.topic, f.retain, f.payload)
			if n := h.metric("hw_ingest_rejected_total", "reason", "not_authorized"); n != float64(i+1) {
				t.Errorf("not_authorized = %v, want %d", n, i+1)
			}
		})
	}
	// QoS 0 is dropped without a word to the client, and counted; the
	// connection stays.
	c := connect(t, url, testGW, as(testGW, k.plain[testGW]))
	c.Publish(foreign[0].topic, 0, false, foreign[0].payload)
	eventually(t, "the QoS 0 refusal counted", func() bool {
		return h.metric("hw_ingest_rejected_total", "reason", "not_authorized") == float64(len(foreign)+1)
	})
	mustPublish(t, c, testTopic, message(testGW, sensorLT, 2))

	// The payload refused on gw-e02-1's topic is good telemetry: sent by
	// gw-e02-1 (seq 8: the refused copy was seq 7) it is stored.
	e02 := connect(t, url, "gw-e02-1", as("gw-e02-1", k.plain["gw-e02-1"]))
	e02msg := message("gw-e02-1", "e02-V201-TT", 8)
	mustPublish(t, e02, foreign[0].topic, e02msg)

	var got []string
	for _, e := range h.stored() {
		got = append(got, fmt.Sprintf("%s/%s/%d", e.Gateway, e.Boot, e.Seq))
	}
	if want := []string{"gw-e01-1/b-acl/1", "gw-e01-1/b-acl/2", "gw-e02-1/b-acl/8"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("READINGS holds %v, want %v", got, want)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "accepted"); n != 3 {
		t.Errorf("messages accepted = %v, want 3", n)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "rejected"); n != float64(len(foreign)+1) {
		t.Errorf("messages rejected = %v, want %d", n, len(foreign)+1)
	}
	if n := h.metric("hw_ingest_status_total", "result", "accepted") + h.metric("hw_ingest_status_total", "result", "rejected"); n != 0 {
		t.Errorf("the refused status reached the status handling (%v)", n)
	}
	eventually(t, "the admin to get the stored messages", func() bool {
		return delivered(testTopic, message(testGW, sensorLT, 2)) && delivered(foreign[0].topic, e02msg)
	})
	for _, f := range foreign {
		if delivered(f.topic, f.payload) {
			t.Errorf("a subscriber got the refused publish on %s", f.topic)
		}
	}
}

// TestAdminReadOnly: an admin token subscribes and never publishes; a
// gateway never subscribes.
func TestAdminReadOnly(t *testing.T) {
	k := newTokens(t)
	h := start(t, func(o *Options) { o.Credentials = k.store })
	url := "tcp://" + h.in.Addr()
	lost := newLossWatch()
	admin := connect(t, url, "debug", both(as("admin", k.plain["admin"]), lost.option))
	got := make(chan string, 10)
	sub := admin.Subscribe("hw/v1/+/+/telemetry", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })
	if !sub.WaitTimeout(waitLong) || sub.Error() != nil {
		t.Fatalf("admin subscribe: %v", sub.Error())
	}
	if q := sub.(*paho.SubscribeToken).Result()["hw/v1/+/+/telemetry"]; q != 1 {
		t.Fatalf("admin subscription granted %#x, want QoS 1", q)
	}

	gw := connect(t, url, testGW, as(testGW, k.plain[testGW]))
	gsub := gw.Subscribe("hw/#", 1, func(paho.Client, paho.Message) { t.Error("a gateway received a message") })
	if !gsub.WaitTimeout(waitLong) {
		t.Fatal("no SUBACK")
	}
	if q := gsub.(*paho.SubscribeToken).Result()["hw/#"]; q != 0x80 {
		t.Errorf("gateway subscription answered %#x, want 0x80 (refused)", q)
	}
	mustPublish(t, gw, testTopic, goodMessage("b-ro", 1, nowMS(), 1))
	select {
	case topic := <-got:
		if topic != testTopic {
			t.Errorf("admin got %s", topic)
		}
	case <-time.After(waitLong):
		t.Fatal("the admin's subscription got nothing")
	}

	lost.refused(t, admin, testTopic, false, goodMessage("b-ro", 2, nowMS(), 1))
	if n := h.metric("hw_ingest_rejected_total", "reason", "not_authorized"); n != 1 {
		t.Errorf("not_authorized = %v, want 1", n)
	}
	if n := h.storedSeqs(testGW, "b-ro"); len(n) != 1 || n[1] != 1 {
		t.Errorf("stored seqs %v, want only the gateway's seq 1", n)
	}
}

// TestRevokedTokenEndsConnection: a token revoked while its gateway is
// connected ends the connection at its next publish after recheckEvery,
// and a new connection with it is refused.
func TestRevokedTokenEndsConnection(t *testing.T) {
	k := newTokens(t)
	var ahead atomic.Int64
	h := start(t, func(o *Options) {
		o.Credentials = k.store
		o.Clock = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	url := "tcp://" + h.in.Addr()
	lost := newLossWatch()
	c := connect(t, url, testGW, both(as(testGW, k.plain[testGW]), lost.option))
	mustPublish(t, c, testTopic, goodMessage("b-rv", 1, nowMS(), 1))
	if err := k.store.Revoke(k.ids[testGW], time.Now()); err != nil {
		t.Fatal(err)
	}
	ahead.Store(int64(recheckEvery))
	lost.refused(t, c, testTopic, false, goodMessage("b-rv", 2, nowMS(), 1))
	if n := h.storedSeqs(testGW, "b-rv"); len(n) != 1 {
		t.Errorf("stored seqs %v, want only seq 1", n)
	}
	before := h.refusedCounts()
	if _, err := tryConnect(t, url, testGW, as(testGW, k.plain[testGW])); err == nil {
		t.Fatal("a revoked token connected")
	}
	h.expectRefused(t, before, refusedBadCredentials)
}

// TestOpenBrokerWarns: without Credentials the broker lets everyone in,
// as the other tests rely on, and says so once at start.
func TestOpenBrokerWarns(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := start(t, func(o *Options) { o.Logger = log })
	c := h.client("anyone", nil)
	mustPublish(t, c, testTopic, goodMessage("b-open", 1, nowMS(), 1))
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "level=WARN msg=\"MQTT clients are not authenticated"); n != 1 {
		t.Errorf("%d warnings that clients are not authenticated, want 1:\n%s", n, buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestTLS: the broker speaks TLS only; a client certificate of the
// configured CA whose CN is a gateway authenticates it without a password,
// and its publishes are stored; a certificate of an unknown gateway or of
// another CA is refused, as are plain MQTT and a certificate contradicting
// the password.
func TestTLS(t *testing.T) {
	ca, rogue := testpki.NewCA(t, "hazardwatch test CA"), testpki.NewCA(t, "another CA")
	k := newTokens(t)
	h := start(t, func(o *Options) {
		o.Credentials = k.store
		o.TLS = &tls.Config{
			Certificates: []tls.Certificate{ca.Server(t)},
			ClientCAs:    ca.Pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
		}
	})
	url := "tls://" + h.in.Addr()
	// withCert presents certs, if any, whoever signed them: crypto/tls's
	// own choice (Config.Certificates) silently leaves out a certificate
	// the server's CertificateRequest names no CA of, and other clients
	// (mosquitto's) send it regardless.
	withCert := func(certs ...tls.Certificate) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.SetTLSConfig(&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if len(certs) == 0 {
						return &tls.Certificate{}, nil
					}
					return &certs[0], nil
				}})
		}
	}
	gwCert := ca.Client(t, testGW)

	before := h.refusedCounts()
	c := connect(t, url, testGW, withCert(gwCert))
	mustPublish(t, c, testTopic, goodMessage("b-tls", 1, nowMS(), 2))
	if n := h.storedSeqs(testGW, "b-tls"); n[1] != 1 {
		t.Fatalf("stored seqs %v, want seq 1", n)
	}
	h.expectRefused(t, before, "")

	tests := []struct {
		name   string
		url    string
		mod    func(*paho.ClientOptions)
		reason string
	}{
		{"password over TLS", url, both(withCert(), as("gw-e02-1", k.plain["gw-e02-1"])), ""},
		{"certificate and its own token", url, both(withCert(gwCert), as(testGW, k.plain[testGW])), ""},
		{"certificate of an unknown gateway", url, withCert(ca.Client(t, "gw-nope")), refusedBadCertificate},
		{"certificate of another CA", url, withCert(rogue.Client(t, testGW)), refusedBadCertificate},
		{"certificate contradicting the username", url, both(withCert(gwCert), as("gw-e02-1", k.plain["gw-e02-1"])), refusedWrongGateway},
		{"certificate and an admin token", url, both(withCert(gwCert), as("admin", k.plain["admin"])), refusedWrongGateway},
		{"no certificate, no password", url, withCert(), refusedNoCredentials},
		{"plain MQTT on the TLS port", "tcp://" + h.in.Addr(), as(testGW, k.plain[testGW]), refusedHandshake},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.refusedCounts()
			c, err := tryConnect(t, tt.url, fmt.Sprintf("tls-%d", i), tt.mod)
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.reason != "" && err == nil:
				t.Fatal("accepted")
			}
			h.expectRefused(t, before, tt.reason)
			if c != nil {
				c.Disconnect(100)
			}
		})
	}
}

// TestNewChecksSecurity: settings that would not secure what they seem to
// are refused.
func TestNewChecksSecurity(t *testing.T) {
	p := plant(t)
	ca := testpki.NewCA(t, "ca")
	cert := []tls.Certificate{ca.Server(t)}
	k := newTokens(t)
	for name, o := range map[string]Options{
		"TLS at an external broker":         {ExternalURL: "tcp://127.0.0.1:1883", TLS: &tls.Config{Certificates: cert}},
		"credentials at an external broker": {ExternalURL: "tcp://127.0.0.1:1883", Credentials: k.store},
		"TLS without a certificate":         {Listen: "127.0.0.1:0", TLS: &tls.Config{}},
		"client certificates unverified":    {Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: cert, ClientCAs: ca.Pool, ClientAuth: tls.RequestClientCert}},
		"client certificates, no CA":        {Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: cert, ClientAuth: tls.VerifyClientCertIfGiven}},
	} {
		o.Plant, o.Bus = p, new(bus.Server)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
