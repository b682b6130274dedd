package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/bus"
	"hazardwatch/internal/model"
)

// openBus starts the embedded server on dir and opens the alarm log on it;
// the returned function closes both.
func openBus(t testing.TB, dir string) (*JetStreamLog, *bus.Server, func()) {
	t.Helper()
	srv, err := bus.Start(bus.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.SyncAlways() {
		t.Fatal("the alarm log's server does not sync every write")
	}
	nc, js, err := srv.JetStream("alerting-test")
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log, err := OpenJetStreamLog(ctx, js)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		t.Fatal(err)
	}
	return log, srv, func() { nc.Close(); srv.Shutdown() }
}

// streamMsgs counts the messages in the ALARMS stream.
func streamMsgs(t testing.TB, srv *bus.Server) uint64 {
	t.Helper()
	nc, js, err := srv.JetStream("count")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestJetStreamRestart: alarms and their states survive a restart of the
// server and the Manager on the same folder, an acknowledgement is in the
// stream when Ack returns, and every sequence number, overall and per
// scope, goes on without a gap.
func TestJetStreamRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log, srv, closeBus := openBus(t, dir)
	m, stop := run(t, log)
	evs, cancel := m.Subscribe(16)
	now := time.Now().Truncate(time.Millisecond)
	submit(t, m,
		raise(t, "e01-GT-101", model.H, 1.2, now),
		raise(t, "e01-V101-LT", model.H, 2.25, now),
		raise(t, "e02-GT-201", model.H, 30, now))
	var gt string
	for range 3 {
		if ev := next(t, evs); ev.Alarm.Source.Sensor == "e01-GT-101" {
			gt = ev.Alarm.ID
		}
	}
	if err := m.Ack(ctx, gt, "张伟", "已派人巡检"); err != nil {
		t.Fatal(err)
	}
	if n := loggedEvents(t, log); n != 4 {
		t.Fatalf("Ack returned with %d events in the stream, want 4", n)
	}
	next(t, evs)
	submit(t, m, ret(t, "e01-V101-LT", model.ThresholdHigh, 2.1, now.Add(time.Second)))
	if ev := next(t, evs); ev.Alarm.State != model.StateUnackRTN || ev.Seq.Global != 5 || ev.LogSeq != streamMsgs(t, srv) {
		t.Fatalf("return: %s, seq %d at log seq %d", ev.Alarm.State, ev.Seq.Global, ev.LogSeq)
	}
	before, _ := json.Marshal(m.Active())
	cancel()
	stop()
	closeBus()

	log2, srv2, closeBus2 := openBus(t, dir)
	defer closeBus2()
	m2, stop2 := run(t, log2)
	defer stop2()
	after, _ := json.Marshal(m2.Active())
	if string(before) != string(after) {
		t.Fatalf("alarms after restart differ:\n%s\n%s", before, after)
	}
	if a, ok := m2.Get(gt); !ok || a.State != model.StateAckActive || a.AckedBy != "张伟" || a.History[1].Comment != "已派人巡检" {
		t.Fatalf("the acknowledged alarm after restart: %+v", a)
	}
	evs2, cancel2 := m2.Subscribe(16)
	defer cancel2()
	submit(t, m2, ret(t, "e02-GT-201", model.ThresholdHigh, 3, now.Add(2*time.Second)))
	if ev := next(t, evs2); ev.Seq != (Seqs{Global: 6, Enterprise: 2, Park: 6, County: 6}) || ev.LogSeq != streamMsgs(t, srv2) {
		t.Fatalf("first event after restart: %+v at log seq %d", ev.Seq, ev.LogSeq)
	}

	// The whole log: every counter runs 1, 2, 3 … in its scope.
	last := map[string]uint64{}
	n := 0
	err := log2.Replay(ctx, func(ev Event) error {
		n++
		src := ev.Alarm.Source
		for _, c := range []struct {
			key string
			got uint64
		}{
			{"all", ev.Seq.Global}, {"enterprise " + src.Enterprise, ev.Seq.Enterprise},
			{"park " + src.Park, ev.Seq.Park}, {"county " + src.County, ev.Seq.County},
		} {
			if c.got != last[c.key]+1 {
				t.Errorf("event %d: %s seq %d after %d", ev.Seq.Global, c.key, c.got, last[c.key])
			}
			last[c.key] = c.got
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 || last["enterprise e01"] != 4 || last["enterprise e02"] != 2 {
		t.Errorf("replayed %d events, e01 up to %d, e02 up to %d; want 6, 4, 2", n, last["enterprise e01"], last["enterprise e02"])
	}
}

// loggedEvents counts the events in the log.
func loggedEvents(t *testing.T, log *JetStreamLog) int {
	t.Helper()
	n := 0
	if err := log.Replay(context.Background(), func(Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// testEvent is a raise of alarm n of the table's gas detector, seq n.
func testEvent(n int) Event {
	return Event{Op: OpRaise, Name: Raised, At: time.Now().UTC(), Seq: Seqs{Global: uint64(n), Enterprise: uint64(n)},
		Alarm: Alarm{ID: fmt.Sprintf("e01-GT-101.threshold_high.%d", n), Occurrence: n, Source: gasSrc, State: model.StateUnackActive,
			Message: strings.Repeat("氯气泄漏报警 / chlorine leak alarm ", 40)}}
}

// TestJetStreamAppendTwice: appending a batch again after an error (same
// global seqs) does not store it twice.
func TestJetStreamAppendTwice(t *testing.T) {
	log, srv, closeBus := openBus(t, t.TempDir())
	defer closeBus()
	ctx := context.Background()
	a := []Event{testEvent(1), testEvent(2)}
	if err := log.Append(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := []Event{testEvent(1), testEvent(2)}
	if err := log.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	if a[1].LogSeq != 1 || b[1].LogSeq != 1 || streamMsgs(t, srv) != 1 || loggedEvents(t, log) != 2 {
		t.Fatalf("log seqs %d and %d, %d messages, %d events; want 1, 1, 1, 2", a[1].LogSeq, b[1].LogSeq, streamMsgs(t, srv), loggedEvents(t, log))
	}
}

// TestJetStreamBigBatch: a batch larger than one message is written as
// several, and replays whole and in order.
func TestJetStreamBigBatch(t *testing.T) {
	log, srv, closeBus := openBus(t, t.TempDir())
	defer closeBus()
	evs := make([]Event, 2000)
	for i := range evs {
		evs[i] = testEvent(i + 1)
	}
	if err := log.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	msgs := streamMsgs(t, srv)
	if msgs < 2 || evs[len(evs)-1].LogSeq != msgs || evs[0].LogSeq != 1 {
		t.Fatalf("%d messages, log seqs %d … %d; want several, the last the last", msgs, evs[0].LogSeq, evs[len(evs)-1].LogSeq)
	}
	want := uint64(1)
	err := log.Replay(context.Background(), func(ev Event) error {
		if ev.Seq.Global != want {
			return fmt.Errorf("event %d, want %d", ev.Seq.Global, want)
		}
		want++
		return nil
	})
	if err != nil || want != 2001 {
		t.Fatalf("replay: %v after %d events", err, want-1)
	}
}

// TestJetStreamOldMessages: a log written one event per message, before
// batching, replays, and batches follow it.
func TestJetStreamOldMessages(t *testing.T) {
	log, srv, closeBus := openBus(t, t.TempDir())
	defer closeBus()
	nc, js, err := srv.JetStream("old-writer")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		data, _ := json.Marshal(testEvent(i))
		if _, err := js.Publish(ctx, "alarms.e01", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Append(ctx, []Event{testEvent(3)}); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	if err := log.Replay(ctx, func(ev Event) error { got = append(got, ev.Seq.Global); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("replayed %v", got)
	}
}

// TestJetStreamReplayEmpty: a new stream replays nothing and a Manager
// starts on it.
func TestJetStreamReplayEmpty(t *testing.T) {
	log, _, closeBus := openBus(t, t.TempDir())
	defer closeBus()
	m, stop := run(t, log)
	defer stop()
	if a := m.Active(); len(a) != 0 {
		t.Fatalf("fresh log: %d alarms", len(a))
	}
}
