package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

// demo is the demo plant with its rules, loaded once: real ids, hazard
// source levels and latching gas rules.
var demo *config.Config

func TestMain(m *testing.M) {
	var err error
	if demo, err = config.LoadDemo(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// memLog is a Log in memory. It keeps each event as JSON, so the tests
// also run the log's encoding. gate, when set, makes every Append wait for
// a value from it; fail makes the next appends fail.
type memLog struct {
	mu      sync.Mutex
	recs    [][]byte
	fail    int
	gate    chan struct{}
	appends int // Append calls that stored their events
}

func (l *memLog) Append(ctx context.Context, evs []Event) error {
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail > 0 {
		l.fail--
		return errors.New("disk full")
	}
	l.appends++
	for i := range evs {
		b, err := json.Marshal(evs[i])
		if err != nil {
			return err
		}
		l.recs = append(l.recs, b)
		evs[i].LogSeq = uint64(len(l.recs))
	}
	return nil
}

func (l *memLog) Replay(ctx context.Context, fn func(Event) error) error {
	l.mu.Lock()
	recs := slices.Clone(l.recs)
	l.mu.Unlock()
	for i, b := range recs {
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			return err
		}
		ev.LogSeq = uint64(i + 1)
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// run starts a Manager on log and returns it with a function that stops
// it and checks that Run ended cleanly.
func run(t *testing.T, log Log) (*Manager, func()) {
	t.Helper()
	m, _, stop := startManager(t, log, 0)
	return m, stop
}

// startManager starts a Manager on log and waits for Ready. With buffer >
// 0 it subscribes before Run, so that events made at start (a shelf that
// fell due while the centre was down) are seen too. stop ends Run and
// checks that it ended cleanly; calling it again does nothing.
func startManager(t *testing.T, log Log, buffer int) (*Manager, <-chan Event, func()) {
	t.Helper()
	return startManagerWith(t, log, buffer, quietAlarms())
}

// quietAlarms are the default alarm rules with the escalation ladder and
// the feedback limit off: what the tests of other things run with, so
// that their timelines show only what they are about.
func quietAlarms() model.AlarmRules {
	r := model.DefaultAlarmRules()
	r.Escalation = [5]model.EscalationLimits{}
	return r
}

// startManagerWith is startManager with the alarm rules given.
func startManagerWith(t *testing.T, log Log, buffer int, alarms model.AlarmRules) (*Manager, <-chan Event, func()) {
	t.Helper()
	return startOptions(t, Options{Plant: demo.Plant, Rules: demo.Rules, Log: log, Alarms: alarms}, buffer)
}

// startOptions is startManager with the options given.
func startOptions(t *testing.T, o Options, buffer int) (*Manager, <-chan Event, func()) {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var evs <-chan Event
	cancelSub := func() {}
	if buffer > 0 {
		evs, cancelSub = m.Subscribe(buffer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once sync.Once
	return m, evs, func() {
		once.Do(func() {
			cancelSub()
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func sensor(t *testing.T, id string) int32 {
	t.Helper()
	i, ok := demo.Plant.SensorIndex(id)
	if !ok {
		t.Fatalf("no demo sensor %s", id)
	}
	return i
}

// limit is the configured value of limit k of sensor id.
func limit(t *testing.T, id string, k model.LimitKind) float64 {
	t.Helper()
	l := demo.Rules[sensor(t, id)].Limits[k]
	if !l.Set {
		t.Fatalf("%s has no %s", id, k)
	}
	return l.Value
}

func raise(t *testing.T, id string, k model.LimitKind, v float64, ts time.Time) model.Transition {
	rule := model.ThresholdHigh
	if !k.High() {
		rule = model.ThresholdLow
	}
	return model.Transition{Sensor: sensor(t, id), Rule: rule, Class: model.ClassAlarm, Level: k.DefaultLevel(),
		Active: true, Value: v, Limit: limit(t, id, k), TS: ts.UnixMilli()}
}

func ret(t *testing.T, id string, rule model.RuleKind, v float64, ts time.Time) model.Transition {
	return model.Transition{Sensor: sensor(t, id), Rule: rule, Class: model.ClassAlarm, Value: v, TS: ts.UnixMilli()}
}

// next receives the next event or fails; with synctest a missing event is
// a deadlock the bubble reports, without it the deadline ends the wait.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func submit(t *testing.T, m *Manager, ts ...model.Transition) {
	t.Helper()
	if err := m.Submit(context.Background(), ts...); err != nil {
		t.Fatal(err)
	}
}

// TestManagerLifecycle: a process alarm (not latched) from raise to clear,
// with its events, sequence numbers, fields and history.
func TestManagerLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, stop := run(t, log)
		defer stop()
		evs, cancel := m.Subscribe(16)
		defer cancel()
		start := time.Now() // the bubble's clock: 2000-01-01 UTC

		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, start))
		ev := next(t, evs)
		a := ev.Alarm
		if ev.Name != Raised || !ev.Ring || ev.Seq != (Seqs{1, 1, 1, 1}) || ev.LogSeq != 1 {
			t.Errorf("raise: %s ring=%v seq %+v log %d", ev.Name, ev.Ring, ev.Seq, ev.LogSeq)
		}
		if a.ID != "e01-V101-LT.threshold_high.1" || a.State != model.StateUnackActive || a.Priority != 2 || a.LimitKind != "H" || a.Latch {
			t.Errorf("raised alarm: %s %s priority %d limit %s latch %v", a.ID, a.State, a.Priority, a.LimitKind, a.Latch)
		}
		wantSrc := Source{County: "c01", Park: "p01", Enterprise: "e01", HazardSource: "e01-hs1", Sensor: "e01-V101-LT", Gateway: "gw-e01-1"}
		if a.Source != wantSrc || a.Unit != "m" || !a.RaisedAt.Equal(start) {
			t.Errorf("source %+v unit %s raised %v", a.Source, a.Unit, a.RaisedAt)
		}
		if want := "V101 液氯储罐液位高报警 (H)：2.25 m，报警值 2.2 m / e01-V101-LT level H alarm: 2.25 m, limit 2.2 m"; a.Message != want {
			t.Errorf("message %s", a.Message)
		}

		submit(t, m, raise(t, "e01-V101-LT", model.HH, 2.45, start.Add(time.Second)))
		if ev = next(t, evs); ev.Name != LevelChanged || ev.Alarm.Level != model.L2 || ev.Alarm.Priority != 1 || ev.Alarm.LimitKind != "HH" {
			t.Errorf("HH: %s level %s priority %d limit %s", ev.Name, ev.Alarm.Level, ev.Alarm.Priority, ev.Alarm.LimitKind)
		}

		advance(time.Minute) // synctest: fake time, for a distinct ack time
		if err := m.Ack(context.Background(), a.ID, "张伟", "已通知现场"); err != nil {
			t.Fatal(err)
		}
		if ev = next(t, evs); ev.Name != Acknowledged || ev.User != "张伟" || ev.Comment != "已通知现场" {
			t.Errorf("ack event %s by %q: %q", ev.Name, ev.User, ev.Comment)
		}
		got, _ := m.Get(a.ID)
		if got.State != model.StateAckActive || got.AckedBy != "张伟" || !got.AckedAt.Equal(start.Add(time.Minute)) {
			t.Errorf("after ack: %s by %q at %v", got.State, got.AckedBy, got.AckedAt)
		}
		if err := m.Ack(context.Background(), a.ID, "张伟", ""); !errors.Is(err, ErrNotAckable) {
			t.Errorf("second ack: %v, want ErrNotAckable", err)
		}

		submit(t, m, ret(t, "e01-V101-LT", model.ThresholdHigh, 2.1, start.Add(2*time.Minute)))
		if ev = next(t, evs); ev.Name != Cleared || ev.Alarm.State != model.StateNormal || !ev.Alarm.ClearedAt.Equal(start.Add(2*time.Minute)) {
			t.Errorf("return of an acknowledged process alarm: %s %s cleared %v", ev.Name, ev.Alarm.State, ev.Alarm.ClearedAt)
		}
		if act := m.Active(); len(act) != 0 {
			t.Errorf("Active after clear: %v", act)
		}
		got, _ = m.Get(a.ID)
		var hist []string
		for _, h := range got.History {
			hist = append(hist, fmt.Sprintf("%d %s %s", h.Seq, h.Event, h.State))
		}
		if want := []string{"1 raised unack_active", "2 level_changed unack_active", "3 acknowledged ack_active", "4 cleared normal"}; !slices.Equal(hist, want) {
			t.Errorf("history %q, want %q", hist, want)
		}

		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.3, start.Add(time.Hour)))
		if ev = next(t, evs); ev.Alarm.ID != "e01-V101-LT.threshold_high.2" || ev.Seq.Global != 5 || len(ev.Alarm.History) != 0 {
			t.Errorf("next occurrence: %s seq %d", ev.Alarm.ID, ev.Seq.Global)
		}
		if n := log.len(); n != 5 {
			t.Errorf("the log holds %d events, want 5", n)
		}
	})
}

// TestManagerLatchedGas: a chlorine detector's alarm (latched by the demo
// rules) stays until acknowledged after the gas is gone, and an alarm
// acknowledged while the gas was there waits for its reset.
func TestManagerLatchedGas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		evs, cancel := m.Subscribe(16)
		defer cancel()
		now := time.Now()
		const gt = "e01-GT-101"

		submit(t, m, raise(t, gt, model.H, 1.2, now), ret(t, gt, model.ThresholdHigh, 0.1, now.Add(time.Second)))
		a := next(t, evs).Alarm
		if ev := next(t, evs); ev.Name != Returned || ev.Alarm.State != model.StateUnackRTN || !ev.Alarm.Latch {
			t.Fatalf("unacknowledged latched return: %s %s latch %v", ev.Name, ev.Alarm.State, ev.Alarm.Latch)
		}
		if act := m.Active(); len(act) != 1 || act[0].ID != a.ID {
			t.Fatalf("Active = %v, want the returned gas alarm", act)
		}
		if err := m.Ack(context.Background(), a.ID, "张伟", ""); err != nil {
			t.Fatal(err)
		}
		if ev := next(t, evs); ev.Name != Cleared || ev.Alarm.State != model.StateNormal {
			t.Fatalf("ack of unack_rtn: %s %s", ev.Name, ev.Alarm.State)
		}

		submit(t, m, raise(t, gt, model.H, 1.5, now.Add(time.Hour)))
		a = next(t, evs).Alarm
		if err := m.Ack(context.Background(), a.ID, "张伟", ""); err != nil {
			t.Fatal(err)
		}
		next(t, evs)
		submit(t, m, ret(t, gt, model.ThresholdHigh, 0.1, now.Add(2*time.Hour)))
		ev := next(t, evs)
		if ev.Name != Returned || ev.Alarm.State != model.StateAckActive || ev.Alarm.Active {
			t.Fatalf("acknowledged latched return: %s %s active=%v; want returned, ack_active, inactive", ev.Name, ev.Alarm.State, ev.Alarm.Active)
		}
		if act := m.Active(); len(act) != 1 {
			t.Fatalf("a latched alarm left the active list without a reset: %v", act)
		}
		if err := m.Ack(context.Background(), a.ID, "王建国", "复位"); err != nil {
			t.Fatal(err)
		}
		if ev := next(t, evs); ev.Name != Cleared || ev.Alarm.ClearedBy != "王建国" || ev.Alarm.AckedBy != "张伟" {
			t.Fatalf("reset: %s cleared by %q acked by %q", ev.Name, ev.Alarm.ClearedBy, ev.Alarm.AckedBy)
		}
	})
}

// TestManagerLateData: a crossing found in late data ends in unack_rtn with
// a late mark, recorded at its own times, and never rings.
func TestManagerLateData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		evs, cancel := m.Subscribe(16)
		defer cancel()
		then := time.Now().Add(-40 * time.Minute)
		up := raise(t, "e02-GT-201", model.H, 27, then)
		down := ret(t, "e02-GT-201", model.ThresholdHigh, 3, then.Add(30*time.Second))
		up.Late, down.Late = true, true
		submit(t, m, up, down)
		e1, e2 := next(t, evs), next(t, evs)
		if e1.Ring || e2.Ring || !e1.Late || !e2.Late {
			t.Errorf("late events: ring %v %v, late %v %v", e1.Ring, e2.Ring, e1.Late, e2.Late)
		}
		a := e2.Alarm
		if a.State != model.StateUnackRTN || !a.Late || !a.RaisedAt.Equal(then) || !a.ReturnedAt.Equal(then.Add(30*time.Second)) {
			t.Errorf("late alarm: %s late=%v raised %v returned %v", a.State, a.Late, a.RaisedAt, a.ReturnedAt)
		}
		if !e2.At.Equal(time.Now()) {
			t.Errorf("handled at %v, want the centre's clock %v", e2.At, time.Now())
		}
	})
}

func TestManagerAckErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		evs, cancel := m.Subscribe(16)
		defer cancel()
		ctx := context.Background()
		if err := m.Ack(ctx, "e01-V101-LT.threshold_high.1", "张伟", ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown alarm: %v", err)
		}
		submit(t, m, raise(t, "e01-V101-LT", model.H, 2.25, time.Now()), ret(t, "e01-V101-LT", model.ThresholdHigh, 2, time.Now()))
		id := next(t, evs).Alarm.ID
		next(t, evs)
		if err := m.Ack(ctx, id, "", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("no user: %v", err)
		}
		if err := m.Ack(ctx, id, "张伟", strings.Repeat("很", MaxText)); !errors.Is(err, ErrInvalid) {
			t.Errorf("huge comment: %v", err)
		}
		if err := m.Ack(ctx, id, "张伟", ""); err != nil {
			t.Errorf("ack of unack_rtn: %v", err)
		}
		next(t, evs)
		if err := m.Ack(ctx, id, "张伟", ""); !errors.Is(err, ErrNotAckable) {
			t.Errorf("ack of a cleared alarm: %v, want ErrNotAckable", err)
		}
		done, cancelCtx := context.WithCancel(ctx)
		cancelCtx()
		if err := m.Ack(done, id, "张伟", ""); !errors.Is(err, context.Canceled) {
			t.Errorf("ack with a cancelled context: %v", err)
		}
		stop()
		if err := m.Ack(ctx, id, "张伟", ""); !errors.Is(err, ErrStopped) {
			t.Errorf("ack after stop: %v", err)
		}
		if err := m.Submit(ctx, raise(t, "e01-V101-LT", model.H, 2.25, time.Now())); !errors.Is(err, ErrStopped) {
			t.Errorf("submit after stop: %v", err)
		}
		if _, ok := <-evs; ok {
			t.Error("subscription still open after the Manager stopped")
		}
	})
}

// TestActionsWaitForDurability: a raise is not visible, and every action
// does not return, before its event is in the log.
func TestActionsWaitForDurability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{gate: make(chan struct{})}
		m, stop := run(t, log)
		defer stop()
		evs, cancel := m.Subscribe(16)
		defer cancel()
		ctx := context.Background()

		submit(t, m, raise(t, "e01-GT-101", model.H, 1.2, time.Now()))
		synctest.Wait()
		if len(m.Active()) != 0 || len(evs) != 0 {
			t.Fatal("the raise is visible before it is durable")
		}
		log.gate <- struct{}{}
		id := next(t, evs).Alarm.ID

		for _, c := range []struct {
			name string
			call func() error
			want model.AlarmState
		}{
			{"ack", func() error { return m.Ack(ctx, id, "张伟", "") }, model.StateAckActive},
			{"shelve", func() error { return m.Shelve(ctx, id, "李明远", "误报", time.Hour) }, model.StateShelved},
			{"suppress", func() error { return m.Suppress(ctx, id, "", SuppressSuspended) }, model.StateSuppressed},
			{"out of service", func() error { return m.RemoveFromService(ctx, id, "王工", "探头标定") }, model.StateOutOfService},
			{"in service", func() error { return m.ReturnToService(ctx, id, "王工", "标定完成") }, model.StateSuppressed},
			{"unsuppress", func() error { return m.Unsuppress(ctx, id, "") }, model.StateShelved},
			{"unshelve", func() error { return m.Unshelve(ctx, id, "李明远", "") }, model.StateAckActive},
		} {
			before, _ := m.Get(id)
			done := make(chan error, 1)
			go func() { done <- c.call() }()
			synctest.Wait() // the Manager is waiting in Append
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) before its event was durable", c.name, err)
			default:
			}
			if a, _ := m.Get(id); a.State != before.State || len(evs) != 0 {
				t.Fatalf("%s is visible (%s, %d events) before it is durable", c.name, a.State, len(evs))
			}
			log.gate <- struct{}{}
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if a, _ := m.Get(id); a.State != c.want {
				t.Errorf("after %s: %s, want %s", c.name, a.State, c.want)
			}
			if ev := next(t, evs); ev.Alarm.State != c.want {
				t.Errorf("%s pushed %s %s", c.name, ev.Name, ev.Alarm.State)
			}
		}
		if a, _ := m.Get(id); a.AckedBy != "张伟" || len(a.History) != 8 || log.len() != 8 {
			t.Errorf("at the end: acked by %q, %d events, %d in the log", a.AckedBy, len(a.History), log.len())
		}
	})
}

// TestAppendRetried: a log that fails is retried with backoff until the
// event is durable; the event keeps its sequence number, and nothing after
// it overtakes it.
func TestAppendRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{fail: 5}
		m, stop := run(t, log)
		defer stop()
		evs, cancel := m.Subscribe(16)
		defer cancel()
		start := time.Now()
		submit(t, m, raise(t, "e01-GT-101", model.H, 1.2, start), raise(t, "e02-GT-201", model.H, 30, start))
		e1, e2 := next(t, evs), next(t, evs)
		if e1.Alarm.Source.Sensor != "e01-GT-101" || e1.Seq.Global != 1 || e2.Seq.Global != 2 || log.len() != 2 {
			t.Errorf("events %s #%d, %s #%d; %d in the log", e1.Alarm.Source.Sensor, e1.Seq.Global, e2.Alarm.Source.Sensor, e2.Seq.Global, log.len())
		}
		// 50+100+200+400+800 ms of backoff on the bubble's clock.
		if waited := time.Since(start); waited != 1550*time.Millisecond {
			t.Errorf("retried for %s, want 1.55 s", waited)
		}
	})
}

// TestRestart: a second Manager on the same log has every alarm in its
// state with its history, and the sequence numbers go on without a gap.
func TestRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m1, stop1 := run(t, log)
		evs, cancel := m1.Subscribe(16)
		now := time.Now()
		submit(t, m1,
			raise(t, "e01-GT-101", model.H, 1.2, now),
			raise(t, "e01-V101-LT", model.H, 2.25, now),
			raise(t, "e02-GT-201", model.H, 30, now))
		var last Event
		for range 3 {
			last = next(t, evs)
		}
		gt := m1.Active()[0].ID // toxic first
		if err := m1.Ack(context.Background(), gt, "张伟", ""); err != nil {
			t.Fatal(err)
		}
		next(t, evs)
		before, _ := json.Marshal(m1.Active())
		cancel()
		stop1()

		m2, stop2 := run(t, log)
		defer stop2()
		after, _ := json.Marshal(m2.Active())
		if string(before) != string(after) {
			t.Fatalf("alarms after restart differ:\n%s\n%s", before, after)
		}
		if a, _ := m2.Get(gt); a.State != model.StateAckActive || a.AckedBy != "张伟" || len(a.History) != 2 {
			t.Fatalf("acknowledged alarm after restart: %s by %q, %d events", a.State, a.AckedBy, len(a.History))
		}
		if n := len(m2.Conditions()); n != 3 {
			t.Errorf("Conditions() after restart: %d, want 3", n)
		}
		evs2, cancel2 := m2.Subscribe(16)
		defer cancel2()
		submit(t, m2, ret(t, "e02-GT-201", model.ThresholdHigh, 3, now.Add(time.Minute)))
		ev := next(t, evs2)
		want := Seqs{Global: 5, Enterprise: last.Seq.Enterprise + 1, Park: 5, County: 5}
		if ev.Seq != want {
			t.Errorf("first event after restart: seq %+v, want %+v", ev.Seq, want)
		}
		if last.Alarm.Source.Enterprise != "e02" || last.Seq.Enterprise != 1 {
			t.Errorf("e02's first event: %+v", last.Seq)
		}
	})
}

// TestSlowSubscriber: a subscriber that does not read is dropped, its
// channel closed, while the owner and the others go on.
func TestSlowSubscriber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		slow, cancelSlow := m.Subscribe(1)
		defer cancelSlow()
		fast, cancelFast := m.Subscribe(16)
		defer cancelFast()
		now := time.Now()
		submit(t, m,
			raise(t, "e01-GT-101", model.H, 1.2, now),
			raise(t, "e01-GT-102", model.H, 1.2, now),
			raise(t, "e01-GT-103", model.H, 1.2, now))
		for i := range 3 {
			if ev := next(t, fast); ev.Seq.Global != uint64(i+1) {
				t.Fatalf("fast subscriber: seq %d, want %d", ev.Seq.Global, i+1)
			}
		}
		if ev, ok := <-slow; !ok || ev.Seq.Global != 1 {
			t.Fatalf("slow subscriber's first event: %v %v", ev.Seq, ok)
		}
		if _, ok := <-slow; ok {
			t.Fatal("the slow subscriber was not dropped")
		}
		cancelSlow() // after the drop: nothing to do, no panic
		cancelSlow()
	})
}

// TestSubscribeSnapshot: the snapshot and the events after it fit without
// a gap.
func TestSubscribeSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		now := time.Now()
		submit(t, m, raise(t, "e01-GT-101", model.H, 1.2, now), raise(t, "e02-GT-201", model.H, 30, now))
		synctest.Wait()
		snap, evs, cancel := m.SubscribeSnapshot(4)
		defer cancel()
		if snap.Seq != 2 || len(snap.Alarms) != 2 || snap.Alarms[0].Kind != model.GasToxic {
			t.Fatalf("snapshot seq %d with %d alarms", snap.Seq, len(snap.Alarms))
		}
		// One event in each enterprise, both in park p01 and county c01.
		for scope, want := range map[string]uint64{"enterprise:e01": 1, "enterprise:e02": 1, "park:p01": 2, "county:c01": 2} {
			if got := snap.Scopes[scope]; got != want {
				t.Errorf("snapshot seq of %s = %d, want %d", scope, got, want)
			}
		}
		submit(t, m, ret(t, "e02-GT-201", model.ThresholdHigh, 3, now))
		ev := next(t, evs)
		if ev.Seq.Global != snap.Seq+1 {
			t.Fatalf("first event after the snapshot: %d, want %d", ev.Seq.Global, snap.Seq+1)
		}
		if ev.Seq.Enterprise != snap.Scopes["enterprise:e02"]+1 || ev.Seq.Park != snap.Scopes["park:p01"]+1 {
			t.Errorf("scope seqs after the snapshot: %+v", ev.Seq)
		}
	})
}

// TestSnapshotRecent: the snapshot carries the latest events up to its
// seq, at most Options.Recent, oldest first; after a restart they come
// from the log, the same events, and live ones join them without a gap.
func TestSnapshotRecent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		o := Options{Plant: demo.Plant, Rules: demo.Rules, Log: log, Alarms: quietAlarms(), Recent: 5}
		m1, _, stop1 := startOptions(t, o, 0)
		now := time.Now()
		// 8 events: raise and return, e01 and e02 in turn.
		for i := range 4 {
			id := []string{"e01-GT-101", "e02-GT-201"}[i%2]
			submit(t, m1, raise(t, id, model.H, 100, now), ret(t, id, model.ThresholdHigh, 0, now))
		}
		synctest.Wait()
		check := func(name string, snap Snapshot, first, last uint64) {
			t.Helper()
			if snap.Seq != last || len(snap.Recent) != int(last-first+1) {
				t.Fatalf("%s: snapshot at %d with %d recent events, want %d..%d", name, snap.Seq, len(snap.Recent), first, last)
			}
			for i, ev := range snap.Recent {
				if ev.Seq.Global != first+uint64(i) || ev.Alarm.ID == "" || ev.Alarm.History != nil {
					t.Fatalf("%s: recent[%d] = seq %+v alarm %q with %d history entries, want seq %d", name, i, ev.Seq, ev.Alarm.ID, len(ev.Alarm.History), first+uint64(i))
				}
			}
			// The per-scope seqs end where the snapshot's do.
			lastOf := map[string]uint64{}
			for _, ev := range snap.Recent {
				lastOf["enterprise:"+ev.Alarm.Source.Enterprise] = ev.Seq.Enterprise
				lastOf["park:"+ev.Alarm.Source.Park] = ev.Seq.Park
			}
			for k, v := range lastOf {
				if snap.Scopes[k] != v {
					t.Errorf("%s: %s at %d in the recent events, %d in the snapshot", name, k, v, snap.Scopes[k])
				}
			}
		}
		snap1, _, cancel := m1.SubscribeSnapshot(4)
		cancel()
		check("before the restart", snap1, 4, 8)
		stop1()

		m2, _, stop2 := startOptions(t, o, 0)
		defer stop2()
		snap2, evs, cancel := m2.SubscribeSnapshot(4)
		defer cancel()
		check("after the restart", snap2, 4, 8)
		for i := range snap1.Recent {
			a, b := snap1.Recent[i], snap2.Recent[i]
			if a.Seq != b.Seq || a.Name != b.Name || a.Alarm.ID != b.Alarm.ID || a.Alarm.State != b.Alarm.State || !a.At.Equal(b.At) {
				t.Errorf("recent[%d] before %+v %s %s %s, after %+v %s %s %s", i, a.Seq, a.Name, a.Alarm.ID, a.Alarm.State, b.Seq, b.Name, b.Alarm.ID, b.Alarm.State)
			}
		}
		submit(t, m2, raise(t, "e01-GT-101", model.H, 100, now))
		if ev := next(t, evs); ev.Seq.Global != 9 {
			t.Fatalf("first event after the restart: %d", ev.Seq.Global)
		}
		snap3, _, cancel3 := m2.SubscribeSnapshot(4)
		cancel3()
		check("after a live event", snap3, 5, 9)

		// Keeping the ring adds nothing per event once it is full.
		ev := snap3.Recent[0]
		m2.mu.Lock()
		if n := testing.AllocsPerRun(100, func() { m2.keepRecent(ev) }); n != 0 {
			t.Errorf("keepRecent: %v allocations per event", n)
		}
		m2.mu.Unlock()
	})
}

// TestSnapshotRecentNone: a negative Options.Recent keeps nothing.
func TestSnapshotRecentNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, stop := startOptions(t, Options{Plant: demo.Plant, Rules: demo.Rules, Log: &memLog{}, Alarms: quietAlarms(), Recent: -1}, 0)
		defer stop()
		submit(t, m, raise(t, "e01-GT-101", model.H, 100, time.Now()))
		synctest.Wait()
		snap, _, cancel := m.SubscribeSnapshot(1)
		cancel()
		if snap.Seq != 1 || snap.Recent != nil {
			t.Errorf("snapshot at %d with %d recent events, want 1 with none", snap.Seq, len(snap.Recent))
		}
	})
}

// TestOfflineAlarm: silence makes an offline alarm of priority 3 or 4,
// never latched, and a reading returns it.
func TestOfflineAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		evs, cancel := m.Subscribe(4)
		defer cancel()
		si := sensor(t, "e01-GT-101")
		now := time.Now()
		submit(t, m, model.Transition{Sensor: si, Rule: model.Silent, Class: model.ClassOffline, Active: true, Value: 5, Limit: 5, TS: now.UnixMilli()})
		a := next(t, evs).Alarm
		if a.ID != "e01-GT-101.silent.1" || a.Class != model.ClassOffline || a.Priority != 3 || a.Latch || a.Unit != "s" {
			t.Errorf("offline alarm: %s %s priority %d latch %v unit %s", a.ID, a.Class, a.Priority, a.Latch, a.Unit)
		}
		if !strings.HasPrefix(a.Message, "液氯储罐区东侧氯气检测器离线") {
			t.Errorf("message %s", a.Message)
		}
	})
}

// TestManagerTrendsAndFaults: the new rules' transitions become alarms of
// their classes: a prediction is a prewarning carrying its eta and the
// limit it names, ended (not latched) when cancelled, even on a gas
// detector whose alarms latch; a fault keeps its reason; a rate's unit is
// per minute; after a restart the conditions come back for the rules.
func TestManagerTrendsAndFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m, stop := run(t, log)
		evs, cancel := m.Subscribe(16)
		start := time.Now()

		lt := sensor(t, "e02-V201-LT")
		eta := start.Add(76 * time.Second)
		submit(t, m, model.Transition{Sensor: lt, Rule: model.PredictHigh, Class: model.ClassPrewarning, Active: true,
			Value: 8.218, Limit: limit(t, "e02-V201-LT", model.H), TS: start.UnixMilli(), ETA: eta.UnixMilli()})
		ev := next(t, evs)
		a := ev.Alarm
		if ev.Name != Raised || !ev.Ring || a.ID != "e02-V201-LT.predict_high.1" || a.Class != model.ClassPrewarning ||
			a.LimitKind != "H" || !a.ETA.Equal(eta) || !ev.ETA.Equal(eta) || a.Priority != 3 || a.Latch {
			t.Errorf("prediction: %s ring %v id %s class %s limit %s eta %v priority %d latch %v",
				ev.Name, ev.Ring, a.ID, a.Class, a.LimitKind, a.ETA, a.Priority, a.Latch)
		}
		if !strings.Contains(a.Message, "预计约 76 s 后达到高报警值 (H) 9.5 m") {
			t.Errorf("message %s", a.Message)
		}
		b, err := json.Marshal(a)
		if err != nil || !strings.Contains(string(b), `"eta":"`+eta.UTC().Format(time.RFC3339Nano)+`"`) {
			t.Errorf("alarm JSON without its eta: %s %v", b, err)
		}

		gas := sensor(t, "e02-GT-402") // gas: its threshold alarms latch
		submit(t, m,
			model.Transition{Sensor: gas, Rule: model.OutOfRange, Class: model.ClassFault, Active: true,
				Value: 6553.5, Limit: 100, TS: start.UnixMilli(), Reason: model.ReasonOutOfRange},
			model.Transition{Sensor: lt, Rule: model.PredictHigh, Class: model.ClassPrewarning,
				Value: 9.52, Limit: 9.5, TS: start.Add(time.Minute).UnixMilli()})
		f := next(t, evs).Alarm
		if f.Class != model.ClassFault || f.Reason != "out_of_range" || f.Latch || f.Priority != 4 || f.ETA != (time.Time{}) {
			t.Errorf("fault: class %s reason %q latch %v priority %d eta %v", f.Class, f.Reason, f.Latch, f.Priority, f.ETA)
		}
		if ev = next(t, evs); ev.Name != Returned || ev.Alarm.State != model.StateUnackRTN {
			t.Errorf("cancelled prediction: %s %s", ev.Name, ev.Alarm.State)
		}
		if err := m.Ack(context.Background(), a.ID, "张伟", ""); err != nil {
			t.Fatal(err)
		}
		if ev = next(t, evs); ev.Name != Cleared {
			t.Errorf("ack of a cancelled prediction: %s, want cleared", ev.Name)
		}
		pt := sensor(t, "e02-R401-PT")
		submit(t, m, model.Transition{Sensor: pt, Rule: model.RateRise, Class: model.ClassPrewarning, Active: true, Value: 2, Limit: 1, TS: start.UnixMilli()})
		if r := next(t, evs).Alarm; r.Unit != "MPa/min" || r.LimitKind != "" {
			t.Errorf("rate: unit %q limit kind %q", r.Unit, r.LimitKind)
		}
		cancel()
		stop()

		// Restarted, the open fault and rate come back, with their reason.
		m, stop = run(t, log)
		defer stop()
		got := map[model.RuleKind]model.Transition{}
		for _, c := range m.Conditions() {
			got[c.Rule] = c
		}
		if len(got) != 2 || got[model.OutOfRange].Sensor != gas || got[model.RateRise].Sensor != pt {
			t.Errorf("conditions after restart: %+v", got)
		}
		if a, ok := m.Get("e02-GT-402.out_of_range.1"); !ok || a.Reason != "out_of_range" {
			t.Errorf("fault after restart: %+v", a)
		}
		if a, ok := m.Get("e02-V201-LT.predict_high.1"); !ok || !a.ETA.Equal(eta) || !a.History[0].TS.Equal(start) {
			t.Errorf("prediction after restart: %+v", a)
		}
	})
}

// TestGatewayOfflineAlarm: a gateway's silence (Sensor -1) is one alarm
// of its own, named after the gateway, with the gateway's enterprise,
// park and county and no sensor; its priority follows the most hazardous
// source behind the gateway; Conditions gives it back after a restart, so
// that the engine is seeded with it, and its next occurrence counts on.
func TestGatewayOfflineAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &memLog{}
		m1, stop1 := run(t, log)
		evs, cancel := m1.Subscribe(4)
		gi, ok := demo.Plant.GatewayIndex("gw-e01-1")
		if !ok {
			t.Fatal("no demo gateway gw-e01-1")
		}
		now := time.Now()
		cut := model.Transition{Sensor: -1, Gateway: gi, Rule: model.GatewaySilent, Class: model.ClassOffline, Active: true, Value: 95, Limit: 5, TS: now.UnixMilli()}
		submit(t, m1, cut)
		a := next(t, evs).Alarm
		want := Source{County: "c01", Park: "p01", Enterprise: "e01", Gateway: "gw-e01-1"}
		if a.ID != "gw-e01-1.gateway_silent.1" || a.Source != want || a.SensorName != "" || a.Unit != "s" ||
			a.Class != model.ClassOffline || a.Latch || a.Priority != 3 {
			t.Errorf("gateway alarm: %s, source %+v, name %q, unit %q, %s, latch %v, priority %d; want %s, %+v, priority 3 (level 1 source)",
				a.ID, a.Source, a.SensorName, a.Unit, a.Class, a.Latch, a.Priority, "gw-e01-1.gateway_silent.1", want)
		}
		if wantMsg := "网关 gw-e01-1 离线：95 s 无数据（限值 5 s） / gateway gw-e01-1 offline: no data for 95 s (limit 5 s)"; a.Message != wantMsg {
			t.Errorf("message %q, want %q", a.Message, wantMsg)
		}
		if n := len(m1.Active()); n != 1 {
			t.Errorf("%d active alarms, want the gateway's only", n)
		}
		cancel()
		stop1()

		m2, stop2 := run(t, log)
		defer stop2()
		conds := m2.Conditions()
		if len(conds) != 1 || conds[0].Sensor != -1 || conds[0].Gateway != gi || conds[0].Rule != model.GatewaySilent || !conds[0].Active {
			t.Fatalf("Conditions() after restart: %+v, want the gateway's silence (Sensor -1, Gateway %d)", conds, gi)
		}
		evs2, cancel2 := m2.Subscribe(4)
		defer cancel2()
		back := cut
		back.Active, back.Value, back.TS = false, 120, now.Add(2*time.Minute).UnixMilli()
		submit(t, m2, back)
		if ev := next(t, evs2); ev.Alarm.ID != "gw-e01-1.gateway_silent.1" || ev.Alarm.Active {
			t.Errorf("return: %s active %v, want gw-e01-1.gateway_silent.1 returned", ev.Alarm.ID, ev.Alarm.Active)
		}
		if err := m2.Ack(context.Background(), "gw-e01-1.gateway_silent.1", "张伟", ""); err != nil {
			t.Fatal(err)
		}
		next(t, evs2)
		submit(t, m2, cut)
		if ev := next(t, evs2); ev.Alarm.ID != "gw-e01-1.gateway_silent.2" {
			t.Errorf("the next cut: %s, want gw-e01-1.gateway_silent.2", ev.Alarm.ID)
		}
		for _, bad := range []model.Transition{
			{Sensor: -1, Gateway: int32(len(demo.Plant.Gateways)), Rule: model.GatewaySilent, Active: true},
			{Sensor: -1, Rule: model.Silent, Active: true},
			{Sensor: 0, Gateway: gi, Rule: model.GatewaySilent, Active: true},
		} {
			submit(t, m2, bad) // dropped with a warning, never a panic
		}
		synctest.Wait()
		if n := log.len(); n != 4 {
			t.Errorf("%d events in the log, want 4 (the transitions that name no gateway or sensor are dropped)", n)
		}
	})
}

// TestSetRules: after SetRules a new occurrence latches by the new rules;
// the one open at the time keeps the latch it started with.
func TestSetRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, stop := run(t, &memLog{})
		defer stop()
		evs, cancel := m.Subscribe(8)
		defer cancel()
		const id = "e01-V101-LT"
		now := time.Now()
		submit(t, m, raise(t, id, model.H, 2.25, now))
		if a := next(t, evs).Alarm; a.Latch {
			t.Fatalf("%s: latched before SetRules", a.ID)
		}
		rs := slices.Clone(demo.Rules)
		rs[sensor(t, id)].Latch = true
		m.SetRules(rs)
		submit(t, m, ret(t, id, model.ThresholdHigh, 1, now.Add(time.Second)))
		if a := next(t, evs).Alarm; a.Latch || a.State != model.StateUnackRTN {
			t.Fatalf("the open occurrence after SetRules: latch %v, %s; want its own latch kept (off)", a.Latch, a.State)
		}
		if err := m.Ack(context.Background(), id+".threshold_high.1", "张伟", ""); err != nil {
			t.Fatal(err)
		}
		next(t, evs)
		submit(t, m, raise(t, id, model.H, 2.25, now.Add(time.Minute)))
		if a := next(t, evs).Alarm; a.ID != id+".threshold_high.2" || !a.Latch {
			t.Fatalf("the next occurrence: %s latch %v, want .2 latched", a.ID, a.Latch)
		}
	})
}
