package configs_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/poll"
)

// Deadlines: generous for a 2-core machine under the race detector; waits
// poll or block on an answer, so a fast machine never pays them.
const waitLong = 15 * time.Second

func mosquittoBinary(t *testing.T) string {
	t.Helper()
	if bin, err := exec.LookPath("mosquitto"); err == nil {
		return bin
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no mosquitto: ./test.sh installs Debian's")
	return ""
}

// connect opens an MQTT 3.1.1 connection; err is the broker's refusal.
func connect(t *testing.T, broker, clientID, user, password string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetUsername(user).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(waitLong).SetCleanSession(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitLong) {
		t.Fatalf("connect %s as %q: no answer", broker, user)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func publish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(waitLong) {
		t.Fatalf("publish %s: no PUBACK", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// TestMosquittoLive runs Debian's Mosquitto on the deployment's
// configuration (mosquitto.conf, passwd, both ACLs; only the ports and
// paths changed) and checks what it lets through: each gateway of the demo
// plant signs in with its password file and publishes to its own topics,
// which reach the centre's read-only listener; a publish to another
// gateway's topic, or by the centre's anonymous listener, reaches nobody;
// a wrong password and an anonymous client are refused at the gateways'
// listener; and the compose file's health check succeeds.
func TestMosquittoLive(t *testing.T) {
	bin := mosquittoBinary(t)
	dir := t.TempDir()
	gwPort, centrePort := freePort(t), freePort(t)
	conf := mosquittoConf(t, gwPort, centrePort, dir)
	var log bytes.Buffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto:\n%s", log.String())
		}
	})
	poll.Until(t, "mosquitto listening", waitLong, func() bool {
		select {
		case <-exited:
			t.Fatalf("mosquitto exited:\n%s", log.String())
		default:
		}
		for _, p := range []string{gwPort, centrePort} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", p), time.Second)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})

	// The centre, as ingest's external mode connects: anonymous, its own
	// client id, subscribed to the contract's topics.
	got := make(chan paho.Message, 64)
	centre, err := connect(t, brokerURL(centrePort), "hazardwatch-ingest", "", "")
	if err != nil {
		t.Fatalf("the centre's listener refused the centre: %v", err)
	}
	tok := centre.SubscribeMultiple(map[string]byte{"hw/v1/+/+/telemetry": 1, "hw/v1/+/+/status": 1}, func(_ paho.Client, m paho.Message) { got <- m })
	if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// next returns the next message the centre receives.
	next := func() paho.Message {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(waitLong):
			t.Fatal("the centre received nothing")
			return nil
		}
	}
	// expect: the next message is this one (so nothing forbidden came
	// before it: Mosquitto routes one message at a time, and the sender
	// had its PUBACK before the next was sent).
	expect := func(topic, payload string) {
		t.Helper()
		m := next()
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("the centre received %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
		}
	}

	p := demoPlant(t)
	topic := func(g int, kind string) string {
		gw := &p.Gateways[g]
		return "hw/v1/" + p.Enterprises[gw.Enterprise].ID + "/" + gw.ID + "/" + kind
	}
	for g := range p.Gateways {
		id := p.Gateways[g].ID
		pw, err := os.ReadFile(filepath.Join(composeDir, "gateways", id+".password"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := connect(t, brokerURL(gwPort), id, id, strings.TrimSpace(string(pw)))
		if err != nil {
			t.Errorf("%s with its password file: refused: %v", id, err)
			continue
		}
		for _, kind := range []string{"telemetry", "status"} {
			publish(t, c, topic(g, kind), id+" "+kind)
			expect(topic(g, kind), id+" "+kind)
		}
		other := (g + 1) % len(p.Gateways)
		publish(t, c, topic(other, "telemetry"), "forbidden: another gateway's topic")
		publish(t, c, strings.Replace(topic(g, "telemetry"), "/telemetry", "/other", 1), "forbidden: not a topic of the contract")
		publish(t, c, topic(g, "telemetry"), id+" after")
		expect(topic(g, "telemetry"), id+" after")

		if _, err := connect(t, brokerURL(gwPort), id+"-x", id, "wrong-password"); err == nil {
			t.Errorf("%s: a wrong password was let in", id)
		}
	}
	if _, err := connect(t, brokerURL(gwPort), "anonymous", "", ""); err == nil {
		t.Error("the gateways' listener let an anonymous client in")
	}

	// Anyone on the centre's listener reads, but writes nothing.
	anon, err := connect(t, brokerURL(centrePort), "someone", "", "")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, anon, topic(0, "telemetry"), "forbidden: anonymous")
	pw, err := os.ReadFile(filepath.Join(composeDir, "gateways", p.Gateways[0].ID+".password"))
	if err != nil {
		t.Fatal(err)
	}
	gw0, err := connect(t, brokerURL(gwPort), p.Gateways[0].ID, p.Gateways[0].ID, strings.TrimSpace(string(pw)))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, gw0, topic(0, "telemetry"), "after anonymous")
	expect(topic(0, "telemetry"), "after anonymous")

	// The compose file's health check, on the test's port.
	hc := composeHealthcheck(t, "mosquitto")
	for i := range hc {
		if hc[i] == "-p" && i+1 < len(hc) {
			hc[i+1] = centrePort
		}
	}
	sub, err := exec.LookPath(hc[0])
	if err != nil {
		t.Logf("no %s here: the health check is not run", hc[0])
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if out, err := exec.CommandContext(ctx, sub, hc[1:]...).CombinedOutput(); err != nil {
		t.Errorf("health check %q: %v\n%s", hc, err, out)
	}
}
