package notify

import (
	"log/slog"

	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"hazardwatch/internal/testlog"
)

// TestMemStore: lookups, the bound, expiry in the order recorded, and a
// key recorded again keeping its newer time.
func TestMemStore(t *testing.T) {
	s := NewMemStore(3)
	for i, k := range []string{"a", "b", "c", "d"} {
		if err := s.Record(k, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := s.Lookup("a"); ok || s.Len() != 3 {
		t.Errorf("over the bound: a kept %v, %d keys; want forgotten, 3", ok, s.Len())
	}
	if at, ok, _ := s.Lookup("d"); !ok || !at.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("d: %v %v", at, ok)
	}
	// b again, later: its first entry expiring must not forget it.
	if err := s.Record("b", t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := s.Expire(t0.Add(5 * time.Minute))
	if err != nil || n != 2 {
		t.Errorf("Expire: %d, %v; want 2 (c, d)", n, err)
	}
	if at, ok, _ := s.Lookup("b"); !ok || !at.Equal(t0.Add(10*time.Minute)) || s.Len() != 1 {
		t.Errorf("b after expiry: %v %v, %d keys; want kept at +10m, 1 key", at, ok, s.Len())
	}
	// The queue behind it is compacted, not grown for ever.
	for i := range 10_000 {
		if err := s.Record(fmt.Sprint(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 3 || len(s.fifo) > 20 {
		t.Errorf("%d keys, fifo of %d: want 3 and a few", s.Len(), len(s.fifo))
	}
}

// TestDedup: a Key delivered once is a duplicate within the TTL and
// delivered again after it.
func TestDedup(t *testing.T) {
	now := t0
	sms := &fake{name: "sms"}
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: sms, PerRecipient: true}}
		o.Clock = func() time.Time { return now }
		o.DedupTTL = time.Hour
	})
	n := chlorine()
	for _, after := range []time.Duration{0, time.Minute, 59 * time.Minute, time.Minute} {
		now = now.Add(after)
		if err := d.Handle(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	// Sent at 0, duplicate at 1 and 60 min (the TTL counts from the first
	// delivery), sent again at 61 min.
	if got := results(t, reg); got["sent"] != 2 || got["duplicate"] != 2 || sms.n() != 4 {
		t.Errorf("results %v, %d SMS; want sent 2, duplicate 2, 4 SMS (2 recipients × 2)", got, sms.n())
	}
	// The same event for another step is another Key.
	n.Step = StepPark
	if err := d.Handle(context.Background(), n); err != nil || sms.n() != 6 {
		t.Errorf("step 1: %v, %d SMS; want 6", err, sms.n())
	}
}

// TestDedupInFlight: a durable consumer redelivers a notification whose
// first delivery is still retrying; the second waits for the first and
// finds it done, so the message goes out once.
func TestDedupInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sms := &fake{name: "sms", block: make(chan struct{})}
		d, reg := newTest(t, func(o *Options) { o.Routes = []Route{{Notifier: sms, PerRecipient: true}} })
		n := chlorine()
		n.Recipients = n.Recipients[:1]
		errs := make(chan error, 2)
		go func() { errs <- d.Handle(context.Background(), n) }()
		synctest.Wait() // the first is at the notifier
		go func() { errs <- d.Handle(context.Background(), n) }()
		synctest.Wait() // the second waits for the first
		if sms.n() != 1 {
			t.Fatalf("%d calls while the first is under way, want 1", sms.n())
		}
		close(sms.block)
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if got := results(t, reg); got["sent"] != 1 || got["duplicate"] != 1 || sms.n() != 1 {
			t.Errorf("results %v, %d calls; want sent 1, duplicate 1, 1 call", got, sms.n())
		}
	})
}

// failingStore fails every call.
type failingStore struct{}

var errDisk = errors.New("disk on fire")

func (failingStore) Lookup(string) (time.Time, bool, error) { return time.Time{}, false, errDisk }
func (failingStore) Record(string, time.Time) error         { return errDisk }
func (failingStore) Expire(time.Time) (int, error)          { return 0, errDisk }

// TestDedupStoreFails: a store that fails is logged and delivery goes on:
// twice rather than never.
func TestDedupStoreFails(t *testing.T) {
	var logs testlog.Buffer
	sms := &fake{name: "sms"}
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: sms, PerRecipient: true}}
		o.Store = failingStore{}
		o.Logger = logs.Logger(slog.LevelDebug)
	})
	n := chlorine()
	for range 2 {
		if err := d.Handle(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if got := results(t, reg); got["sent"] != 2 || sms.n() != 4 || logs.Count("dedup store lookup failed") < 2 {
		t.Errorf("results %v, %d SMS, log:\n%s", got, sms.n(), logs.String())
	}
}
