package ingest

import (
	"math"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/telemetry"
)

var testStatusTopic = telemetry.StatusTopic(testEnt, testGW)

func statusPayload(state string, ts time.Time) []byte {
	return telemetry.AppendStatus(nil, telemetry.Status{State: state, Boot: "boot-st", TS: ts.UnixMilli()})
}

// killable is a paho dialer whose connection a test can cut, as a gateway's
// uplink fails: the broker then publishes the gateway's last will.
type killable struct {
	mu sync.Mutex
	c  net.Conn
}

func (k *killable) dial(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	c, err := net.Dial("tcp", u.Host)
	k.mu.Lock()
	k.c = c
	k.mu.Unlock()
	return c, err
}

func (k *killable) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	_ = k.c.Close()
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// TestStatusEmbedded: a fresh online status sets the gateway online and
// measures its clock skew, which the telemetry checks then correct by; the
// last will sets it offline without touching the skew.
func TestStatusEmbedded(t *testing.T) {
	h := start(t, nil)
	var k killable
	c := h.client("gw-status", func(o *paho.ClientOptions) {
		// The will's ts is from when the gateway connected: far off now.
		o.SetBinaryWill(testStatusTopic, statusPayload(telemetry.StateOffline, time.Now().Add(-time.Hour)), 1, true)
		o.SetCustomOpenConnectionFn(k.dial)
	})
	// The gateway's clock runs 10 minutes ahead.
	ahead := 10 * time.Minute
	mustPublish(t, c, testStatusTopic, statusPayload(telemetry.StateOnline, time.Now().Add(ahead)))
	if n := h.metric("hw_gateways_online"); n != 1 {
		t.Fatalf("hw_gateways_online = %v, want 1", n)
	}
	skew := h.metric("hw_gateway_clock_skew_seconds", "gateway", testGW)
	if !near(skew, ahead.Seconds(), 5) {
		t.Fatalf("hw_gateway_clock_skew_seconds = %v, want about %v", skew, ahead.Seconds())
	}
	// A reading stamped by that clock is not in the future after
	// correction, though it is 10 minutes ahead of the centre's.
	mustPublish(t, c, testTopic, goodMessage("boot-st", 1, time.Now().Add(ahead).UnixMilli(), 1))
	if n := h.metric("hw_ingest_rejected_total", "reason", "future_timestamp"); n != 0 {
		t.Fatalf("a reading on the gateway's skewed clock was rejected as future")
	}
	if n := h.metric("hw_ingest_readings_total", "result", "accepted"); n != 1 {
		t.Fatalf("readings accepted = %v, want 1", n)
	}
	// A bad status is counted and changes nothing.
	mustPublish(t, c, testStatusTopic, []byte(`{"state":"sleepy","boot":"x","ts":1}`))
	if n := h.metric("hw_ingest_status_total", "result", "rejected"); n != 1 {
		t.Errorf("status rejected = %v, want 1", n)
	}

	k.kill() // the uplink fails: mochi publishes the will
	eventually(t, "the last will sets the gateway offline", func() bool { return h.metric("hw_gateways_online") == 0 })
	if got := h.metric("hw_gateway_clock_skew_seconds", "gateway", testGW); got != skew {
		t.Errorf("the will changed the skew from %v to %v", skew, got)
	}
	if n := h.metric("hw_ingest_status_total", "result", "accepted"); n != 2 {
		t.Errorf("status accepted = %v, want 2 (online, will)", n)
	}
}

// TestStatusRetainedIgnoredForSkew: with an external broker, the retained
// status delivered on subscribing tells the state but not the clock; the
// next fresh one measures the skew.
func TestStatusRetainedIgnoredForSkew(t *testing.T) {
	addr := standIn(t)
	gw := connect(t, "tcp://"+addr, "gw-retained", nil)
	tok := gw.Publish(testStatusTopic, 1, true, statusPayload(telemetry.StateOnline, time.Now().Add(time.Hour)))
	if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	h := startExternal(t, addr)
	eventually(t, "the retained status counted", func() bool { return h.metric("hw_gateways_online") == 1 })
	if got := h.metric("hw_gateway_clock_skew_seconds", "gateway", testGW); got != 0 {
		t.Fatalf("skew %v measured from a retained status", got)
	}
	tok = gw.Publish(testStatusTopic, 1, true, statusPayload(telemetry.StateOnline, time.Now().Add(-30*time.Second)))
	if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	eventually(t, "skew measured from the fresh status", func() bool {
		return near(h.metric("hw_gateway_clock_skew_seconds", "gateway", testGW), -30, 5)
	})
}
