package ingest

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hazardwatch/internal/testlog"
)

// TestReplayLogged: a gateway's catch-up from its store-and-forward queue
// shows in the centre's log, one line when it begins and one when it is
// done (a live message after replayQuiet without replays), and in
// hw_ingest_replayed_messages_total.
func TestReplayLogged(t *testing.T) {
	var logs testlog.Buffer
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	h := start(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Clock = clock
	})
	c := h.client(testGW, nil)
	replay := func(seq uint64, ts int64) []byte {
		m := goodMessage("b-replay", seq, ts, 3)
		return append([]byte(`{"replay":true,`), m[1:]...)
	}
	old := now.Load() - 90_000 // queued during a 90 s cut
	for seq := uint64(1); seq <= 4; seq++ {
		mustPublish(t, c, testTopic, replay(seq, old+int64(seq)*1000))
		if seq == 2 {
			// Live messages interleave with the replays.
			mustPublish(t, c, testTopic, goodMessage("b-replay", 100, now.Load(), 3))
		}
	}
	if !strings.Contains(logs.String(), "gateway replays its store-and-forward queue") {
		t.Errorf("no line for the replay's start:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "gateway replay done") {
		t.Fatalf("replay done while replays still come:\n%s", logs.String())
	}
	now.Add(int64(replayQuiet / time.Millisecond))
	mustPublish(t, c, testTopic, goodMessage("b-replay", 101, now.Load(), 3))
	var done string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, "gateway replay done") {
			done = line
		}
	}
	for _, want := range []string{"gateway=" + testGW, "messages=4", "readings=12", "boots=1"} {
		if !strings.Contains(done, want) {
			t.Errorf("replay-done line %q lacks %s", done, want)
		}
	}
	if n := h.metric("hw_ingest_replayed_messages_total"); n != 4 {
		t.Errorf("hw_ingest_replayed_messages_total = %v, want 4", n)
	}
}
