package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Backoff is how a message is retried: waits from Initial doubling up to
// Max, each with jitter (between half and all of it, so that messages
// that failed together do not retry together), until the next try would
// fall after Deadline from the first. A Retry-After the receiver gives
// lengthens a wait, never beyond the deadline.
type Backoff struct {
	Initial  time.Duration // default 1 s
	Max      time.Duration // default 1 min
	Deadline time.Duration // default 10 min
}

// DefaultBackoff is Backoff's defaults. Ten minutes is about the shortest
// escalation limit: a message not through by then is overtaken by the
// next step's, and the failure is better reported than retried on.
var DefaultBackoff = Backoff{Initial: time.Second, Max: time.Minute, Deadline: 10 * time.Minute}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	b.Max = max(b.Max, b.Initial)
	if b.Deadline <= 0 {
		b.Deadline = DefaultBackoff.Deadline
	}
	return b
}

// wait is the pause after the attempt-th failure, jitter in [0, 1).
func (b Backoff) wait(attempt int, jitter float64) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// The errors Handle returns for a notification that was not wholly
// delivered; both wrap the notifiers' errors.
var (
	// ErrGaveUp: a message was still failing with a retryable error at the
	// deadline. Redelivering the notification later (a durable consumer's
	// nak with a delay) sends only what was not delivered.
	ErrGaveUp = errors.New("notify: gave up at the deadline")
	// ErrRefused: a notifier refused a message for good (a 4xx, a
	// permanent provider error); a redelivery would not help.
	ErrRefused = errors.New("notify: refused")
)

// retryStage hands each message to its notifier, all messages of a
// notification at once, and retries each while its notifier says the
// failure is worth it (Alertmanager's notify.RetryStage). A message
// delivered or refused is recorded in the store, so a redelivery of the
// notification skips it.
type retryStage struct {
	notifiers map[string]Notifier
	backoff   Backoff
	mem       *memory
	clock     func() time.Time
	sleep     func(context.Context, time.Duration) error
	jitter    func() float64
	log       *slog.Logger
	met       *metrics
}

type result uint8

const (
	resSent result = iota
	resSkipped
	resRefused
	resGaveUp
	resCanceled
)

func (s *retryStage) Exec(ctx context.Context, d *delivery) (outcome, error) {
	res := make([]result, len(d.Messages))
	errs := make([]error, len(d.Messages))
	var wg sync.WaitGroup
	for i := range d.Messages {
		m := &d.Messages[i]
		if s.mem.done(m.ID) {
			res[i] = resSkipped
			continue
		}
		wg.Go(func() { res[i], errs[i] = s.deliver(ctx, m) })
	}
	wg.Wait()
	var failed []error
	for i, r := range res {
		switch r {
		case resCanceled:
			return outPending, ctx.Err()
		case resRefused:
			d.refused = true
			failed = append(failed, fmt.Errorf("%w: %s: %w", ErrRefused, d.Messages[i].ID, errs[i]))
		case resGaveUp:
			d.gaveUp = true
			failed = append(failed, fmt.Errorf("%w: %s: %w", ErrGaveUp, d.Messages[i].ID, errs[i]))
		}
	}
	if len(failed) > 0 {
		return outFailed, &FailedError{Errs: failed}
	}
	return outSent, nil
}

// FailedError is what Handle returns when some messages were not
// delivered: errors.Is(err, ErrGaveUp) or ErrRefused says which kind.
type FailedError struct {
	Errs []error
}

func (e *FailedError) Error() string { return errors.Join(e.Errs...).Error() }

// Unwrap lets errors.Is find ErrGaveUp, ErrRefused and the notifiers'
// errors.
func (e *FailedError) Unwrap() []error { return e.Errs }

func (s *retryStage) deliver(ctx context.Context, m *Message) (result, error) {
	n := s.notifiers[m.Notifier]
	if n == nil {
		return resRefused, fmt.Errorf("no notifier %q", m.Notifier)
	}
	log := s.log.With("notifier", m.Notifier, "message", m.ID)
	deadline := s.clock().Add(s.backoff.Deadline)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, max(deadline.Sub(s.clock()), time.Millisecond))
		retry, err := n.Notify(actx, *m)
		cancel()
		s.met.attempt(m.Notifier, err)
		if err == nil {
			s.met.message(m.Notifier, resSent)
			s.met.delivered(m.Notifier, s.clock().Sub(m.Notification.At))
			s.mem.record(m.ID)
			if attempt > 1 {
				log.Info("notify: delivered after retries", "attempts", attempt)
			}
			return resSent, nil
		}
		if ctx.Err() != nil {
			return resCanceled, ctx.Err()
		}
		if !retry {
			s.met.message(m.Notifier, resRefused)
			s.mem.record(m.ID)
			log.Error("notify: message refused, not retried", "attempts", attempt, "err", err)
			return resRefused, err
		}
		wait := s.backoff.wait(attempt, s.jitter())
		if after, ok := delayOf(err); ok && after > wait {
			wait = after
		}
		if s.clock().Add(wait).After(deadline) {
			s.met.message(m.Notifier, resGaveUp)
			log.Error("notify: gave up at the deadline", "attempts", attempt, "deadline", s.backoff.Deadline, "err", err)
			return resGaveUp, err
		}
		if attempt == 1 {
			log.Warn("notify: delivery failed, retrying", "wait", wait, "err", err)
		}
		s.met.retry(m.Notifier)
		if err := s.sleep(ctx, wait); err != nil {
			return resCanceled, err
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
