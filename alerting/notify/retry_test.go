package notify

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// delayErr is a retryable failure that asks for a wait, as a 429 with
// Retry-After does.
type delayErr time.Duration

func (e delayErr) Error() string        { return "slow down" }
func (e delayErr) Delay() time.Duration { return time.Duration(e) }

// retryCase runs one notification for one recipient through a notifier
// answering script, on testing/synctest's clock with the real sleep, and
// returns Handle's error and the attempts' times since the start.
func retryCase(t *testing.T, b Backoff, script []fakeAnswer, ctxMod func(context.Context) context.Context) (error, []time.Duration, *fake, func(name string, labels ...string) float64) {
	t.Helper()
	sms := &fake{name: "sms", script: script}
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: sms, PerRecipient: true}}
		o.Backoff = b
		o.Sleep = nil // the real timer, which the bubble fakes
	})
	n := chlorine()
	n.Recipients = n.Recipients[:1]
	start := time.Now()
	ctx := context.Background()
	if ctxMod != nil {
		ctx = ctxMod(ctx)
	}
	err := d.Handle(ctx, n)
	var at []time.Duration
	for _, c := range sms.calls {
		at = append(at, c.at.Sub(start))
	}
	return err, at, sms, func(name string, labels ...string) float64 { return metric(t, reg, name, labels...) }
}

func sameTimes(got, want []time.Duration) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestRetrySchedule: waits double from Initial to Max, each 3/4 of the
// step with the jitter the test fixes at 0.5, and the message goes through
// on the fifth try: on the bubble's clock, 0, 0.75, 2.25, 5.25, 8.25 s.
func TestRetrySchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flaky := fakeAnswer{true, errFlaky}
		err, at, _, m := retryCase(t, Backoff{Initial: time.Second, Max: 4 * time.Second, Deadline: time.Minute},
			[]fakeAnswer{flaky, flaky, flaky, flaky, {}}, nil)
		want := []time.Duration{0, 750 * time.Millisecond, 2250 * time.Millisecond, 5250 * time.Millisecond, 8250 * time.Millisecond}
		if err != nil || !sameTimes(at, want) {
			t.Fatalf("err %v, attempts at %v; want nil at %v", err, at, want)
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"hw_notification_attempts_total", []string{"notifier", "sms", "result", "error"}, 4},
			{"hw_notification_attempts_total", []string{"notifier", "sms", "result", "ok"}, 1},
			{"hw_notification_retries_total", []string{"notifier", "sms"}, 4},
			{"hw_notification_messages_total", []string{"notifier", "sms", "result", "sent"}, 1},
			{"hw_notifications_total", []string{"result", "sent"}, 1},
		} {
			if got := m(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
}

// TestRetryDeadline: a notifier that keeps failing is tried until the
// next try would fall after the deadline, then given up, counted, and
// reported as ErrGaveUp so that the caller may redeliver later.
func TestRetryDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		err, at, _, m := retryCase(t, Backoff{Initial: time.Second, Max: 4 * time.Second, Deadline: 10 * time.Second},
			[]fakeAnswer{{true, errFlaky}}, nil)
		want := []time.Duration{0, 750 * time.Millisecond, 2250 * time.Millisecond, 5250 * time.Millisecond, 8250 * time.Millisecond}
		if !errors.Is(err, ErrGaveUp) || !errors.Is(err, errFlaky) || errors.Is(err, ErrRefused) || !sameTimes(at, want) {
			t.Fatalf("err %v, attempts at %v; want ErrGaveUp wrapping %v at %v", err, at, errFlaky, want)
		}
		if m("hw_notification_messages_total", "result", "gave_up") != 1 || m("hw_notifications_total", "result", "failed") != 1 {
			t.Errorf("gave_up %v, failed %v; want 1 and 1", m("hw_notification_messages_total", "result", "gave_up"), m("hw_notifications_total", "result", "failed"))
		}
	})
}

// TestRetryAfter: a wait the receiver asks for is honoured when longer
// than the backoff's, and a wait past the deadline ends the retries at
// once.
func TestRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		err, at, _, _ := retryCase(t, Backoff{Initial: time.Second, Max: time.Minute, Deadline: time.Minute},
			[]fakeAnswer{{true, delayErr(20 * time.Second)}, {}}, nil)
		if want := []time.Duration{0, 20 * time.Second}; err != nil || !sameTimes(at, want) {
			t.Errorf("Retry-After 20 s: err %v, attempts at %v; want nil at %v", err, at, want)
		}
		err, at, _, _ = retryCase(t, Backoff{Initial: time.Second, Max: time.Minute, Deadline: time.Minute},
			[]fakeAnswer{{true, delayErr(2 * time.Minute)}, {}}, nil)
		if !errors.Is(err, ErrGaveUp) || len(at) != 1 {
			t.Errorf("Retry-After past the deadline: err %v, attempts at %v; want ErrGaveUp after one", err, at)
		}
		// A shorter Retry-After does not shorten the backoff.
		err, at, _, _ = retryCase(t, Backoff{Initial: 4 * time.Second, Max: time.Minute, Deadline: time.Minute},
			[]fakeAnswer{{true, delayErr(time.Second)}, {}}, nil)
		if want := []time.Duration{0, 3 * time.Second}; err != nil || !sameTimes(at, want) {
			t.Errorf("Retry-After 1 s: err %v, attempts at %v; want nil at %v", err, at, want)
		}
	})
}

// TestRetryRefused: a failure the notifier says is not worth a retry is
// tried once.
func TestRetryRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := errors.New("no such number")
		err, at, _, m := retryCase(t, Backoff{}, []fakeAnswer{{false, bad}}, nil)
		if !errors.Is(err, ErrRefused) || !errors.Is(err, bad) || errors.Is(err, ErrGaveUp) || len(at) != 1 {
			t.Fatalf("err %v, %d attempts; want ErrRefused wrapping %v after one", err, len(at), bad)
		}
		if m("hw_notification_messages_total", "result", "refused") != 1 || m("hw_notification_retries_total") != 0 {
			t.Errorf("refused %v, retries %v; want 1 and 0", m("hw_notification_messages_total", "result", "refused"), m("hw_notification_retries_total"))
		}
	})
}

// TestRetryCanceled: a shutdown during a wait ends Handle at once with the
// context's error; nothing is counted and nothing recorded, so the
// notification is delivered when it comes again.
func TestRetryCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sms := &fake{name: "sms", script: []fakeAnswer{{true, errFlaky}, {}}}
		d, reg := newTest(t, func(o *Options) {
			o.Routes = []Route{{Notifier: sms, PerRecipient: true}}
			o.Sleep = nil
		})
		n := chlorine()
		n.Recipients = n.Recipients[:1]
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // the first wait is 750 ms
		start := time.Now()
		err := d.Handle(ctx, n)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("err %v after %s; want the context's deadline after 500ms", err, time.Since(start))
		}
		if got := results(t, reg); len(got) != 0 {
			t.Errorf("counted %v, want nothing", got)
		}
		if err := d.Handle(context.Background(), n); err != nil || sms.n() != 2 {
			t.Errorf("delivered again: %v after %d calls; want nil after 2", err, sms.n())
		}
	})
}

// TestBackoffWait: the jitter keeps a wait between half and all of its
// step; steps double to Max.
func TestBackoffWait(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second}.withDefaults()
	for attempt, step := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		if lo, hi := b.wait(attempt, 0), b.wait(attempt, 0.999999); lo != step/2 || hi >= step || hi < step*99/100 {
			t.Errorf("attempt %d: waits %s to %s, want %s to just under %s", attempt, lo, hi, step/2, step)
		}
	}
	if d := (Backoff{}).withDefaults(); d != DefaultBackoff {
		t.Errorf("defaults %+v, want %+v", d, DefaultBackoff)
	}
}
