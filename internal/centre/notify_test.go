package centre

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"hazardwatch/ingest"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
)

// hookReceiver is a webhook receiver on loopback that keeps every
// notification it is sent, and can fail the first ones.
type hookReceiver struct {
	mu   sync.Mutex
	got  []map[string]any
	keys []string
	fail int // answer 503 to this many more
	srv  *httptest.Server
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail > 0 {
			h.fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || r.Header.Get("Authorization") != "Bearer 城市平台" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.got = append(h.got, m)
		h.keys = append(h.keys, r.Header.Get("Idempotency-Key"))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// events lists what was received as "event step", in order.
func (h *hookReceiver) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.got {
		out = append(out, m["event"].(string)+" "+m["step_name"].(string))
	}
	return out
}

// caughtUp waits until the notify consumer has every message of ALARMS
// acknowledged.
func caughtUp(t *testing.T, js jetstream.JetStream, what string) {
	t.Helper()
	poll.Until(t, what+" to catch up", 20*time.Second, func() bool {
		cons, err := js.Consumer(context.Background(), "ALARMS", notifyConsumerName)
		if err != nil {
			return false
		}
		ci, err := cons.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream > 0
	})
}

// TestNotifications: an alarm nobody acknowledges is sent to the webhook
// as it rings and at each escalation step, with the step's people, in
// order; a receiver that fails at first gets it on a retry; after the
// acknowledgement nothing more comes; a restart of the centre sends
// nothing twice.
func TestNotifications(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Alarms.Escalation[1] = model.EscalationLimits{Park: 2 * time.Second, County: 4 * time.Second, Feedback: time.Hour}
	old := notifyAckWait
	notifyAckWait = 3 * time.Second // a message the stopped centre's fetch took comes back soon
	t.Cleanup(func() { notifyAckWait = old })
	hook := newHookReceiver(t)
	hook.fail = 1
	dataDir := t.TempDir()
	start := func() (*Centre, jetstream.JetStream, func()) {
		c, err := Start(context.Background(), Options{
			Config: cfg, DataDir: dataDir, MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
			Notify: NotifyOptions{WebhookURL: hook.srv.URL, WebhookHeader: http.Header{"Authorization": {"Bearer 城市平台"}}, WebhookTimeout: 2 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		nc, js, err := c.bus.JetStream("test")
		if err != nil {
			t.Fatal(err)
		}
		// The chlorine detector far above HH: an L2 alarm, priority 1.
		gt, _ := cfg.Plant.SensorIndex("e01-GT-101")
		s := &cfg.Plant.Sensors[gt]
		now := time.Now().UnixMilli()
		for i := range 3 {
			entry := ingest.Entry{Gateway: []byte(cfg.Plant.Gateways[s.Gateway].ID), Enterprise: []byte("e01"), Boot: []byte("boot-" + dataDir),
				Seq: uint64(i + 1), Received: now, Readings: []ingest.Reading{{Sensor: []byte(s.ID), TS: now + int64(i)*1000, Value: 3, HasValue: true}}}
			if _, err := js.Publish(context.Background(), ingest.Subject, ingest.EncodeBatch(nil, []ingest.Entry{entry})); err != nil {
				t.Fatal(err)
			}
		}
		return c, js, func() { nc.Close(); _ = c.Close() }
	}
	c, js, stop := start()
	want := []string{"raised enterprise", "escalated park", "escalated county"}
	poll.Until(t, "the raise and both steps at the webhook", 30*time.Second, func() bool { return len(hook.events()) >= 3 })
	if got := hook.events(); !slices.Equal(got, want) {
		t.Fatalf("webhook got %v, want %v", got, want)
	}
	hook.mu.Lock()
	first, county := hook.got[0], hook.got[2]
	keys := slices.Clone(hook.keys)
	hook.mu.Unlock()
	if first["text"].(map[string]any)["zh"] == "" || first["priority"].(float64) != 1 || first["alarm_id"] == "" {
		t.Errorf("raise: %v", first)
	}
	var who []string
	for _, r := range county["recipients"].([]any) {
		who = append(who, r.(map[string]any)["name"].(string))
	}
	if !slices.Equal(who, []string{"赵应急", "孙值守"}) {
		t.Errorf("county step notified %v", who)
	}
	id := first["alarm_id"].(string)
	if err := c.alarms.Ack(context.Background(), id, "张伟", "已处置"); err != nil {
		t.Fatal(err)
	}
	// Stopped once everything is done with: a notification a stop cuts
	// short between the receiver's answer and its record may go out again
	// (at least once, with the same Idempotency-Key); that is not this
	// test's subject.
	caughtUp(t, js, "the notifications")
	stop()

	// A restart: the log is read again, nothing is sent twice.
	_, js, stop = start()
	defer stop()
	caughtUp(t, js, "the restarted centre's notifications")
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.got) != 3 || !slices.Equal(hook.keys, keys) || len(slices.Compact(slices.Sorted(slices.Values(keys)))) != 3 {
		t.Errorf("after the restart the webhook has %d notifications, keys %v", len(hook.got), hook.keys)
	}
}
