package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDuplicates: a (gateway, boot, seq) seen before is acknowledged,
// counted duplicate and not stored again, before and after a restart of
// ingest and bus on the same data folder, whatever order the seqs come in.
func TestDuplicates(t *testing.T) {
	h := start(t, nil)
	c := h.client("gw-dup", nil)
	pub := func(boot string, seq uint64) {
		t.Helper()
		mustPublish(t, c, testTopic, goodMessage(boot, seq, nowMS(), 2))
	}
	dups := func() float64 { return h.metric("hw_ingest_messages_total", "result", "duplicate") }

	pub("boot-a", 1)
	pub("boot-a", 2)
	pub("boot-a", 1) // QoS 1 redelivery
	if n := dups(); n != 1 {
		t.Fatalf("duplicates = %v, want 1", n)
	}
	// Live messages interleave with an older replay: 10 arrives before
	// 3..9, and 5 twice.
	for _, seq := range []uint64{10, 3, 4, 5, 5, 6, 7, 8, 9, 10} {
		pub("boot-a", seq)
	}
	if n := dups(); n != 3 {
		t.Fatalf("duplicates = %v, want 3", n)
	}
	// Another boot of the same gateway starts again at 1.
	pub("boot-b", 1)
	if n := dups(); n != 3 {
		t.Fatalf("seq 1 of a new boot counted as a duplicate")
	}
	if n := h.metric("hw_ingest_messages_total", "result", "accepted"); n != 11 {
		t.Fatalf("accepted = %v, want 11", n)
	}

	h.restart()
	c = h.client("gw-dup", nil)
	dups = func() float64 { return h.metric("hw_ingest_messages_total", "result", "duplicate") }
	for seq := uint64(1); seq <= 10; seq++ {
		pub("boot-a", seq)
	}
	pub("boot-b", 1)
	if n := dups(); n != 11 {
		t.Fatalf("after a restart: duplicates = %v, want 11 (everything was stored before)", n)
	}
	pub("boot-a", 12) // a gap at 11 …
	pub("boot-b", 2)
	h.restart()
	c = h.client("gw-dup", nil)
	dups = func() float64 { return h.metric("hw_ingest_messages_total", "result", "duplicate") }
	pub("boot-a", 11) // … filled after another restart
	pub("boot-a", 12)
	pub("boot-b", 2)
	if n := dups(); n != 2 {
		t.Fatalf("after the second restart: duplicates = %v, want 2", n)
	}

	for boot, want := range map[string]int{"boot-a": 12, "boot-b": 2} {
		got := h.storedSeqs(testGW, boot)
		if len(got) != want {
			t.Errorf("%s: %d seqs stored, want %d: %v", boot, len(got), want, got)
		}
		for seq, n := range got {
			if n != 1 {
				t.Errorf("%s seq %d stored %d times", boot, seq, n)
			}
		}
	}
}

// ownCommitter stops the ingest's committer so that a test can queue
// requests and then run it; run starts it, and it stops with the test.
func ownCommitter(t *testing.T, h *harness) (com *committer, run func()) {
	close(h.in.stopCommit)
	<-h.in.commitDone
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	// Close waits for the committer it started, which has stopped.
	h.in.stopCommit, h.in.commitDone = make(chan struct{}), make(chan struct{})
	close(h.in.commitDone)
	return h.in.com, func() { go h.in.com.run(stop, done) }
}

func testRequest(seq uint64) *request {
	r := newRequest()
	r.gw, r.boot, r.seq = 0, "b", seq
	r.body = appendEntryBody(nil, &Entry{Gateway: []byte(testGW), Enterprise: []byte(testEnt), Boot: []byte("b"), Seq: seq})
	return r
}

// TestCopiesInOneBatch: two copies of a message that reach the committer
// together (a gateway republishing on a new connection before the first
// copy is written) are written once; the second shares the first's fate.
func TestCopiesInOneBatch(t *testing.T) {
	h := start(t, nil)
	com, run := ownCommitter(t, h)
	a, b, other := testRequest(7), testRequest(7), testRequest(8)
	com.reqs <- a
	com.reqs <- b
	com.reqs <- other
	run()
	for _, r := range []*request{a, b, other} {
		got := <-r.done
		want := stored
		if r == b {
			want = duplicate
		}
		if got.v != want {
			t.Errorf("seq %d: verdict %d, want %d (%v)", r.seq, got.v, want, got.err)
		}
	}
	if n := h.metric("hw_ingest_batch_messages"); n != 1 {
		t.Errorf("%v writes, want the three requests in one", n)
	}
	if got := len(h.stored()); got != 2 {
		t.Errorf("%d entries stored, want 2", got)
	}
}

// TestBatchLimit: what does not fit a batch is written in the next one at
// once, without waiting for more traffic.
func TestBatchLimit(t *testing.T) {
	h := start(t, func(o *Options) { o.batchMessages = 2 })
	com, run := ownCommitter(t, h)
	var rs []*request
	for seq := range uint64(5) {
		r := testRequest(seq + 1)
		rs = append(rs, r)
		com.reqs <- r
	}
	run()
	for _, r := range rs {
		if got := <-r.done; got.v != stored {
			t.Fatalf("seq %d: verdict %d (%v)", r.seq, got.v, got.err)
		}
	}
	if n := h.metric("hw_ingest_batch_messages"); n != 3 {
		t.Errorf("%v writes, want 3 of at most 2", n)
	}
}

// TestRebuildSkipsCorrupt: a message in the stream that is not a batch
// does not keep the centre from starting.
func TestRebuildSkipsCorrupt(t *testing.T) {
	h := start(t, nil)
	c := h.client("gw-corrupt", nil)
	mustPublish(t, c, testTopic, goodMessage("b", 1, nowMS(), 1))
	nc, js, err := h.bus.JetStream("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), Subject, []byte("not a batch")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	h.restart()
	c = h.client("gw-corrupt", nil)
	mustPublish(t, c, testTopic, goodMessage("b", 1, nowMS(), 1))
	if n := h.metric("hw_ingest_messages_total", "result", "duplicate"); n != 1 {
		t.Fatalf("the message before the corrupt one was forgotten: duplicates = %v", n)
	}
}

func TestSeenRuns(t *testing.T) {
	s := newSeen(2)
	add := func(seqs ...uint64) {
		for _, q := range seqs {
			s.add(1, "b", q, 1)
		}
	}
	runs := func() string { return fmt.Sprint(s.boots[1]["b"].runs) }
	add(1, 2, 3)
	if got := runs(); got != "[{1 3}]" {
		t.Fatalf("runs %s", got)
	}
	add(10, 7, 5)
	if got := runs(); got != "[{1 3} {5 5} {7 7} {10 10}]" {
		t.Fatalf("runs %s", got)
	}
	add(6) // joins 5 and 7
	add(4) // joins everything below 8
	if got := runs(); got != "[{1 7} {10 10}]" {
		t.Fatalf("runs %s", got)
	}
	add(9, 11, 9, 1)
	if got := runs(); got != "[{1 7} {9 11}]" {
		t.Fatalf("runs %s", got)
	}
	for q, want := range map[uint64]bool{0: false, 1: true, 7: true, 8: false, 9: true, 11: true, 12: false} {
		if s.has(1, "b", q) != want {
			t.Errorf("has(%d) = %v", q, !want)
		}
	}
	if s.has(0, "b", 1) || s.has(1, "c", 1) {
		t.Error("another gateway or boot shares the seqs")
	}
	add(^uint64(0), ^uint64(0)-1)
	if !s.has(1, "b", ^uint64(0)) || s.has(1, "b", ^uint64(0)-2) {
		t.Error("the top of uint64")
	}
}

// TestSeenRandom checks the runs against a plain set, seqs in any order.
func TestSeenRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		s := newSeen(1)
		set := map[uint64]bool{}
		n := 1 + rng.IntN(200)
		for range n {
			q := 1 + uint64(rng.IntN(100))
			s.add(0, "b", q, 0)
			set[q] = true
		}
		for q := uint64(0); q <= 101; q++ {
			if s.has(0, "b", q) != set[q] {
				t.Fatalf("round %d: has(%d) = %v, set says %v", round, q, !set[q], set[q])
			}
		}
		rs := s.boots[0]["b"].runs
		for i := range rs {
			if rs[i].lo > rs[i].hi || i > 0 && rs[i-1].hi+1 >= rs[i].lo {
				t.Fatalf("round %d: runs not sorted, disjoint and apart: %v", round, rs)
			}
		}
	}
}

func TestSeenPruneAndBound(t *testing.T) {
	s := newSeen(1)
	s.add(0, "old", 1, 100)
	s.add(0, "new", 1, 200)
	if boots := s.prune(150); boots != 1 || s.has(0, "old", 1) || !s.has(0, "new", 1) {
		t.Fatalf("prune kept %d boots", boots)
	}
	s.maxRuns = 4
	for q := uint64(2); q <= 20; q += 2 {
		s.add(0, "new", q, 200)
	}
	rs := s.boots[0]["new"].runs
	if len(rs) != 4 || !slices.Equal(rs, []run{{14, 14}, {16, 16}, {18, 18}, {20, 20}}) {
		t.Fatalf("bounded runs %v", rs)
	}
	// Forgetting can only let an old message in again, never drop a new one.
	if s.has(0, "new", 1) || s.has(0, "new", 3) {
		t.Error("a forgotten seq still counts as seen, or a missing one does")
	}
}
