package ingest

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll lets every client connect, publish and subscribe. (mochi's own
// hooks/auth would pull in gopkg.in/yaml.v3, which the module does not
// require.)
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// standIn runs a plain mochi broker on loopback in place of Mosquitto or
// EMQX: it lets everyone in and keeps persistent sessions. It uses this
// package's listener because mochi's own TCP listener writes one error
// variable from every connection's goroutine (a data race the race
// detector reports).
func standIn(tb testing.TB) string {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		tb.Fatal(err)
	}
	ln := &tcpListener{id: "standin", addr: "127.0.0.1:0", conns: make(map[net.Conn]struct{}), served: make(chan struct{})}
	if err := srv.AddListener(ln); err != nil {
		tb.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = srv.Close()
		ln.wait()
	})
	return ln.Address()
}

// startExternal runs an ingest subscribed at the broker at addr and waits
// until it is subscribed.
func startExternal(tb testing.TB, addr string) *harness {
	tb.Helper()
	h := start(tb, func(o *Options) {
		o.Listen = ""
		o.ExternalURL = "tcp://" + addr
		o.ClientID = "centre"
	})
	h.waitReady()
	return h
}

func (h *harness) waitReady() {
	h.tb.Helper()
	eventually(h.tb, "subscribed at the external broker", func() bool { return h.in.Ready() == nil })
}

// TestExternalBroker: through an external broker the centre validates,
// deduplicates and stores as it does with its own, and what arrives while
// it is down waits in its persistent session.
func TestExternalBroker(t *testing.T) {
	t.Run("mochi", func(t *testing.T) { testExternalBroker(t, standIn(t)) })
	t.Run("mosquitto", func(t *testing.T) { testExternalBroker(t, mosquitto(t)) })
}

// mosquitto starts Debian's Mosquitto on a free loopback port, as the
// external broker of a plant + centre deployment. On CI it must be there
// (test.sh installs it); elsewhere a missing one skips.
func mosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto is missing: test.sh installs it")
		}
		t.Skip("no mosquitto: run ./test.sh, which installs it")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto:\n%s", log.String())
		}
	})
	eventually(t, "mosquitto listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr
}

func testExternalBroker(t *testing.T, addr string) {
	h := startExternal(t, addr)
	if h.in.Addr() != "" {
		t.Errorf("Addr = %q with an external broker", h.in.Addr())
	}
	gw := connect(t, "tcp://"+addr, "gw-ext", nil)
	mustPublish(t, gw, testTopic, goodMessage("x", 1, nowMS(), 3))
	mustPublish(t, gw, testTopic, []byte(`{"gateway":`))
	mustPublish(t, gw, testTopic, goodMessage("x", 1, nowMS(), 3))
	eventually(t, "one stored, one rejected, one duplicate", func() bool {
		return h.metric("hw_ingest_messages_total", "result", "accepted") == 1 &&
			h.metric("hw_ingest_rejected_total", "reason", "invalid_json") == 1 &&
			h.metric("hw_ingest_messages_total", "result", "duplicate") == 1
	})

	// The centre is down; the gateway publishes to the broker meanwhile.
	h.down()
	mustPublish(t, gw, testTopic, goodMessage("x", 2, nowMS(), 3))
	mustPublish(t, gw, testTopic, goodMessage("x", 3, nowMS(), 3))
	h.up()
	h.waitReady()
	eventually(t, "what waited in the session stored", func() bool {
		return h.metric("hw_ingest_messages_total", "result", "accepted") == 2
	})
	if got := h.storedSeqs(testGW, "x"); len(got) != 3 || got[1] != 1 || got[2] != 1 || got[3] != 1 {
		t.Fatalf("stored %v, want seqs 1–3 once each", got)
	}
}

// TestExternalStoreFailure: a message the centre cannot store is not
// acknowledged to the broker; the centre reconnects, the broker sends it
// again, and once the store is back it is stored once.
func TestExternalStoreFailure(t *testing.T) {
	addr := standIn(t)
	h := startExternal(t, addr)
	gw := connect(t, "tcp://"+addr, "gw-ext-fail", nil)
	h.park(true)
	// The broker acknowledges the gateway; the centre cannot store.
	mustPublish(t, gw, testTopic, goodMessage("f", 1, nowMS(), 2))
	eventually(t, "a failed write", func() bool { return h.storeErrors() >= 1 })
	eventually(t, "a redelivery after reconnecting fails too", func() bool { return h.storeErrors() >= 2 })
	h.park(false)
	eventually(t, "stored after the store came back", func() bool {
		return h.metric("hw_ingest_messages_total", "result", "accepted") == 1
	})
	h.waitReady()
	// Whatever redeliveries were still under way settle as duplicates.
	mustPublish(t, gw, testTopic, goodMessage("f", 2, nowMS(), 2))
	eventually(t, "the next message", func() bool {
		return h.metric("hw_ingest_messages_total", "result", "accepted") == 2
	})
	if got := h.storedSeqs(testGW, "f"); len(got) != 2 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("stored %v, want seqs 1 and 2 once each", got)
	}
}
