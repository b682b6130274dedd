package notify

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"hazardwatch/internal/testclock"
)

// TestDedupRestart: with a FileStore, a notification redelivered after a
// restart of the centre is a duplicate; one that was partly delivered
// (the webhook gave up) sends, when redelivered, only the webhook's
// message, not the SMS again.
func TestDedupRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.db")
	clk := clock{testclock.New(t0)}
	start := func(sms, hook *fake) (*Dispatcher, *FileStore) {
		t.Helper()
		fs, err := OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := newTest(t, func(o *Options) {
			o.Routes = []Route{{Notifier: sms, PerRecipient: true}, {Notifier: hook}}
			o.Store = fs
			o.Clock, o.Sleep = clk.Now, clk.Sleep
		})
		return d, fs
	}
	done, partial := chlorine(), chlorine()
	partial.Seq = 43

	sms, hook := &fake{name: "sms"}, &fake{name: "webhook", script: []fakeAnswer{{}, {true, errFlaky}}}
	d, fs := start(sms, hook)
	if err := d.Handle(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	// The second notification's webhook keeps failing: given up.
	if err := d.Handle(context.Background(), partial); !errors.Is(err, ErrGaveUp) {
		t.Fatalf("partial: %v, want ErrGaveUp", err)
	}
	if err := fs.Close(); err != nil { // the centre stops
		t.Fatal(err)
	}

	clk.Add(time.Hour)
	sms2, hook2 := &fake{name: "sms"}, &fake{name: "webhook"}
	d2, fs2 := start(sms2, hook2)
	defer fs2.Close()
	// The consumer redelivers both.
	for _, n := range []Notification{done, partial} {
		if err := d2.Handle(context.Background(), n); err != nil {
			t.Fatalf("seq %d after the restart: %v", n.Seq, err)
		}
	}
	if sms2.n() != 0 || !slices.Equal(hook2.ids(), []string{"e01-GT-101.high.1/43/2/webhook"}) {
		t.Errorf("after the restart: %d SMS, webhook %q; want none and only seq 43's", sms2.n(), hook2.ids())
	}
	// Now both are done.
	if err := d2.Handle(context.Background(), partial); err != nil || hook2.n() != 1 {
		t.Errorf("third delivery: %v, %d webhook calls; want a duplicate", err, hook2.n())
	}
	// Keys and message ids: 2 notifications + 2×2 SMS + 2 webhook.
	if n, err := fs2.Len(); err != nil || n != 8 {
		t.Errorf("%d keys, %v; want 8", n, err)
	}
	if n, err := fs2.Expire(clk.Now().Add(-30 * time.Minute)); err != nil || n != 6 {
		t.Errorf("expired %d, %v; want the 6 recorded before the restart (a key, 4 SMS, a webhook)", n, err)
	}
	if _, ok, _ := fs2.Lookup(done.Key); ok {
		t.Error("an expired key is still found")
	}
}

// TestFileStore: what Record writes, Lookup finds after a reopen; a key
// recorded again moves in time; Expire removes by time.
func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.db")
	fs, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b", "c"} {
		if err := fs.Record(k, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Record("a", t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := fs.Record("", t0); err == nil {
		t.Error("an empty key was recorded")
	}
	if _, err := OpenFileStore(path); err == nil {
		t.Error("a second open of a file in use succeeded")
	}
	fs.Close()
	fs, err = OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if at, ok, err := fs.Lookup("a"); err != nil || !ok || !at.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("a after a reopen: %v %v %v", at, ok, err)
	}
	if n, err := fs.Expire(t0.Add(5 * time.Minute)); err != nil || n != 2 {
		t.Errorf("expired %d, %v; want 2 (b, c)", n, err)
	}
	if n, _ := fs.Len(); n != 1 {
		t.Errorf("%d keys left, want 1", n)
	}
	if _, ok, _ := fs.Lookup("b"); ok {
		t.Error("b survived its expiry")
	}
}
