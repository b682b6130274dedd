package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// park moves the READINGS stream off its subject, so that JetStream
// publishes to hw.readings fail as they do when the stream is gone, and
// unpark puts it back with everything it held.
func (h *harness) park(parked bool) {
	h.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	nc, js, err := h.bus.JetStream("test-admin")
	if err != nil {
		h.tb.Fatal(err)
	}
	defer nc.Close()
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		h.tb.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{Subject}
	if parked {
		cfg.Subjects = []string{"test.parked"}
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		h.tb.Fatal(err)
	}
}

func (h *harness) storeErrors() float64 {
	return h.metric("hw_store_write_errors_total", "store", "jetstream")
}

// TestStoreFailureWithholdsAck: when JetStream cannot take a message the
// gateway gets no PUBACK and loses its connection; its resend on a new
// connection, once the store is back, is stored exactly once.
func TestStoreFailureWithholdsAck(t *testing.T) {
	h := start(t, nil)
	lost := make(chan error, 1)
	c := h.client("gw-store", func(o *paho.ClientOptions) {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	})
	mustPublish(t, c, testTopic, goodMessage("b", 1, nowMS(), 2))

	h.park(true)
	payload := goodMessage("b", 2, nowMS(), 2)
	tok := c.Publish(testTopic, 1, false, payload)
	select {
	case <-lost:
	case <-time.After(waitLong):
		t.Fatal("the connection stayed open after a failed store")
	}
	if !tok.WaitTimeout(waitLong) {
		t.Fatal("the publish token neither completed nor failed after the connection was lost")
	}
	if tok.Error() == nil {
		t.Fatal("the message was acknowledged although it was not stored")
	}
	if n := h.storeErrors(); n != 1 {
		t.Errorf("hw_store_write_errors_total{store=jetstream} = %v, want 1", n)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "accepted"); n != 1 {
		t.Errorf("accepted = %v, want 1 (the failed message is not counted)", n)
	}

	h.park(false)
	c = h.client("gw-store", nil) // the gateway reconnects and republishes
	mustPublish(t, c, testTopic, payload)
	mustPublish(t, c, testTopic, payload) // and once more, as a QoS 1 redelivery may
	got := h.storedSeqs(testGW, "b")
	if len(got) != 2 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("stored seqs %v, want 1 and 2 once each", got)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "duplicate"); n != 1 {
		t.Errorf("duplicates = %v, want 1", n)
	}
}

// TestStoreFailureSessionResend: a gateway client with a persistent session
// resends the unacknowledged message by itself on every reconnect; the
// resends fail while the store is down, and the first one after it is back
// is stored, once, and acknowledged.
//
// paho completes the original publish token without error when it resends
// on a reconnect (resume → claimID → flowComplete), PUBACK or not, so the
// test watches paho's outbound store instead: a QoS 1 message stays there
// until its PUBACK arrives.
func TestStoreFailureSessionResend(t *testing.T) {
	h := start(t, nil)
	store := paho.NewMemoryStore()
	c := h.client("gw-session", func(o *paho.ClientOptions) {
		o.SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).SetStore(store)
	})
	unacked := func() int {
		n := 0
		for _, k := range store.All() {
			if strings.HasPrefix(k, "o.") {
				n++
			}
		}
		return n
	}
	h.park(true)
	c.Publish(testTopic, 1, false, goodMessage("s", 1, nowMS(), 2))
	// The first attempt and at least one resend after a reconnect fail …
	eventually(t, "two failed writes", func() bool { return h.storeErrors() >= 2 })
	// … and the message is still waiting for its PUBACK.
	if n := unacked(); n != 1 {
		t.Fatalf("%d messages wait for a PUBACK in the client's store, want 1", n)
	}
	h.park(false)
	eventually(t, "the resend acknowledged", func() bool { return unacked() == 0 })
	if got := h.storedSeqs(testGW, "s"); len(got) != 1 || got[1] != 1 {
		t.Fatalf("stored %v, want seq 1 once", got)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "accepted"); n != 1 {
		t.Errorf("accepted = %v, want 1", n)
	}
}
