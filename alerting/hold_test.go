package alerting

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"hazardwatch/internal/model"
)

// startSubscribed starts a Manager on log with a subscription taken
// before Run (startManager).
func startSubscribed(t *testing.T, log Log) (*Manager, <-chan Event, func()) {
	t.Helper()
	return startManager(t, log, 64)
}

// advance lets d pass on the bubble's clock (testing/synctest): no real
// wait. Every test of the package that moves the fake clock calls it.
func advance(d time.Duration) { time.Sleep(d) }

// quietFor lets d pass on the bubble's clock and checks that nothing more
// happened: no event, and the log holds want events.
func quietFor(t *testing.T, d time.Duration, evs <-chan Event, log *memLog, want int) {
	t.Helper()
	advance(d)
	synctest.Wait()
	if len(evs) != 0 || log.len() != want {
		t.Errorf("%s later: %d more events, %d in the log (want %d)", d, len(evs), log.len(), want)
	}
}

// TestManagerShelve: a shelf with a reason and a limit, rule events under
// it, and its timer on the Manager's clock ending it unacknowledged at
// exactly its due time.
func TestManagerShelve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, evs, stop := startSubscribed(t, log)
		defer stop()
		ctx := context.Background()
		start := time.Now()
		const gt = "e01-GT-101"

		submit(t, m, raise(t, gt, model.H, 1.2, start))
		id := next(t, evs).Alarm.ID
		for _, c := range []struct {
			err  error
			call func() error
		}{
			{ErrShelveTooLong, func() error { return m.Shelve(ctx, id, "李明远", "误报", DefaultMaxShelve+time.Second) }},
			{ErrInvalid, func() error { return m.Shelve(ctx, id, "李明远", "", time.Minute) }},
			{ErrInvalid, func() error { return m.Shelve(ctx, id, "", "误报", time.Minute) }},
			{ErrNotFound, func() error { return m.Shelve(ctx, "e01-GT-101.threshold_high.9", "李明远", "误报", time.Minute) }},
			{ErrNotShelved, func() error { return m.Unshelve(ctx, id, "李明远", "") }},
		} {
			if err := c.call(); !errors.Is(err, c.err) {
				t.Errorf("got %v, want %v", err, c.err)
			}
		}
		if n := log.len(); n != 1 {
			t.Fatalf("refused actions reached the log: %d events", n)
		}

		advance(time.Minute)
		if err := m.Shelve(ctx, id, "李明远", "探头受潮，待更换", 30*time.Minute); err != nil {
			t.Fatal(err)
		}
		due := start.Add(31 * time.Minute)
		ev := next(t, evs)
		if ev.Name != Shelved || !ev.Due.Equal(due) || ev.Duration != 30*time.Minute || ev.Reason != "探头受潮，待更换" ||
			ev.Alarm.State != model.StateShelved || ev.Alarm.Base != model.StateUnackActive || log.len() != 2 {
			t.Fatalf("shelve: %s due %v (%s) reason %q state %s base %s; %d in the log",
				ev.Name, ev.Due, ev.Duration, ev.Reason, ev.Alarm.State, ev.Alarm.Base, log.len())
		}
		if err := m.Ack(ctx, id, "张伟", ""); !errors.Is(err, ErrNotAckable) {
			t.Errorf("ack of a shelved alarm: %v", err)
		}
		if err := m.Shelve(ctx, id, "李明远", "再搁置", time.Hour); !errors.Is(err, ErrNotShelvable) {
			t.Errorf("second shelve: %v", err)
		}

		// Under the shelf the gas comes and goes: followed, never rung.
		submit(t, m, ret(t, gt, model.ThresholdHigh, 0.1, start.Add(5*time.Minute)))
		if ev := next(t, evs); ev.Name != Returned || ev.Ring || ev.Alarm.State != model.StateShelved || ev.Alarm.Base != model.StateUnackRTN {
			t.Errorf("return under the shelf: %s ring=%v %s base %s", ev.Name, ev.Ring, ev.Alarm.State, ev.Alarm.Base)
		}
		submit(t, m, raise(t, gt, model.HH, 2.5, start.Add(6*time.Minute)))
		if ev := next(t, evs); ev.Name != Raised || ev.Ring || ev.Alarm.ID != id || ev.Alarm.Base != model.StateUnackActive || ev.Alarm.Level != model.L2 {
			t.Errorf("raise under the shelf: %s ring=%v %s base %s level %s", ev.Name, ev.Ring, ev.Alarm.ID, ev.Alarm.Base, ev.Alarm.Level)
		}
		if a := m.Active(); len(a) != 1 || a[0].State != model.StateShelved {
			t.Errorf("Active under the shelf: %+v", a)
		}

		advance(time.Until(due)) // the bubble's clock: no real wait
		synctest.Wait()
		ev = next(t, evs)
		if ev.Name != Unshelved || ev.Op != OpShelfExpired || !ev.Ring || !ev.At.Equal(due) || !ev.Due.Equal(due) || ev.User != "" ||
			ev.Alarm.State != model.StateUnackActive || ev.Alarm.Shelf.On() {
			t.Fatalf("timer: %s op %s ring=%v at %v due %v by %q → %s shelf %+v",
				ev.Name, ev.Op, ev.Ring, ev.At, ev.Due, ev.User, ev.Alarm.State, ev.Alarm.Shelf)
		}
		if err := m.Ack(ctx, id, "张伟", ""); err != nil {
			t.Errorf("ack after the shelf: %v", err)
		}
		next(t, evs)
		quietFor(t, time.Hour, evs, log, 6)
	})
}

// TestShelfUnshelvedByHand: the alarm comes back acknowledged, and the
// shelf's timer, still in the Manager's queue, does nothing when it comes.
func TestShelfUnshelvedByHand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, evs, stop := startSubscribed(t, log)
		defer stop()
		ctx := context.Background()
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, time.Now()))
		id := next(t, evs).Alarm.ID
		if err := m.Shelve(ctx, id, "李明远", "液位计检修", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		next(t, evs)
		advance(time.Minute)
		if err := m.Unshelve(ctx, id, "王建国", "检修完成"); err != nil {
			t.Fatal(err)
		}
		ev := next(t, evs)
		if ev.Name != Unshelved || ev.Alarm.State != model.StateAckActive || ev.Alarm.AckedBy != "王建国" || ev.Comment != "检修完成" {
			t.Errorf("by hand: %s → %s acked by %q, comment %q", ev.Name, ev.Alarm.State, ev.Alarm.AckedBy, ev.Comment)
		}
		quietFor(t, time.Hour, evs, log, 3) // the old shelf's timer does nothing
	})
}

// TestShelfTimerRestart: the shelves come back from the log with their
// original due times. One that fell due while the centre was down ends
// before Ready, its event carrying when it was due; one still to come ends
// at its time; after both nothing fires again.
func TestShelfTimerRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, evs, stop := startSubscribed(t, log)
		ctx := context.Background()
		start := time.Now()
		submit(t, m, raise(t, "e01-GT-101", model.H, 1.2, start), raise(t, "e02-GT-201", model.H, 30, start))
		a, b := next(t, evs).Alarm.ID, next(t, evs).Alarm.ID
		if err := m.Shelve(ctx, a, "李明远", "误报", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := m.Shelve(ctx, b, "李明远", "误报", 8*time.Hour); err != nil {
			t.Fatal(err)
		}
		advance(5 * time.Minute)
		stop()

		advance(time.Hour) // the centre is down
		restart := time.Now()
		m, evs, stop = startSubscribed(t, log)
		defer stop()
		select {
		case ev := <-evs:
			if ev.Alarm.ID != a || ev.Name != Unshelved || !ev.Due.Equal(start.Add(10*time.Minute)) || !ev.At.Equal(restart) ||
				ev.Alarm.State != model.StateUnackActive || !ev.Ring {
				t.Errorf("overdue shelf at start: %s %s due %v at %v → %s ring=%v", ev.Alarm.ID, ev.Name, ev.Due, ev.At, ev.Alarm.State, ev.Ring)
			}
		default:
			t.Fatal("the overdue shelf did not end before Ready")
		}
		if got, _ := m.Get(b); got.State != model.StateShelved || !got.Shelf.Until.Equal(start.Add(8*time.Hour)) {
			t.Errorf("the other shelf after restart: %s until %v", got.State, got.Shelf.Until)
		}
		advance(time.Until(start.Add(8 * time.Hour)))
		synctest.Wait()
		ev := next(t, evs)
		if ev.Alarm.ID != b || ev.Name != Unshelved || !ev.At.Equal(start.Add(8*time.Hour)) || !ev.Due.Equal(ev.At) {
			t.Errorf("second shelf: %s %s at %v due %v", ev.Alarm.ID, ev.Name, ev.At, ev.Due)
		}
		stop()

		_, evs, stop = startSubscribed(t, log)
		defer stop()
		quietFor(t, 24*time.Hour, evs, log, 6) // a third start fires nothing again
	})
}
