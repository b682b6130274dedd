package alerting

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"hazardwatch/internal/bus"
	"hazardwatch/internal/model"
)

// openBus starts the embedded server on dir and opens the alarm log on it;
// the returned function closes both.
func openBus(t *testing.T, dir string) (*JetStreamLog, *bus.Server, func()) {
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
func streamMsgs(t *testing.T, srv *bus.Server) uint64 {
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
	if n := streamMsgs(t, srv); n != 4 {
		t.Fatalf("Ack returned with %d events in the stream, want 4", n)
	}
	next(t, evs)
	submit(t, m, ret(t, "e01-V101-LT", model.ThresholdHigh, 2.1, now.Add(time.Second)))
	if ev := next(t, evs); ev.Alarm.State != model.StateUnackRTN || ev.LogSeq != 5 {
		t.Fatalf("return: %s at log seq %d", ev.Alarm.State, ev.LogSeq)
	}
	before, _ := json.Marshal(m.Active())
	cancel()
	stop()
	closeBus()

	log2, _, closeBus2 := openBus(t, dir)
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
	if ev := next(t, evs2); ev.Seq != (Seqs{Global: 6, Enterprise: 2, Park: 6, County: 6}) || ev.LogSeq != 6 {
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
				t.Errorf("event %d: %s seq %d after %d", ev.LogSeq, c.key, c.got, last[c.key])
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

// TestJetStreamAppendTwice: appending an event again after an error
// (same global seq) does not store it twice.
func TestJetStreamAppendTwice(t *testing.T) {
	log, srv, closeBus := openBus(t, t.TempDir())
	defer closeBus()
	ctx := context.Background()
	ev := Event{Op: OpRaise, Name: Raised, At: time.Now().UTC(), Seq: Seqs{Global: 1, Enterprise: 1},
		Alarm: Alarm{ID: "e01-GT-101.threshold_high.1", Source: gasSrc, State: model.StateUnackActive}}
	a, err := log.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := log.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if a.LogSeq != 1 || b.LogSeq != 1 || streamMsgs(t, srv) != 1 {
		t.Fatalf("log seqs %d and %d, %d messages; want 1, 1, 1", a.LogSeq, b.LogSeq, streamMsgs(t, srv))
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
