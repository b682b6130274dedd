package api

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

type sub = map[string]any

// hubSeq is the hub's current seq of a scope.
func (e *env) hubSeq(key string) uint64 {
	e.srv.hub.mu.Lock()
	defer e.srv.hub.mu.Unlock()
	return e.srv.hub.current[key]
}

// toggle submits n events on sensor id: raise, return, raise … (an
// unacknowledged alarm goes unack_active ↔ unack_rtn, one event each).
// It returns whether the alarm is active at the end.
func (e *env) toggle(id string, n int, active bool) bool {
	e.t.Helper()
	ts := make([]model.Transition, n)
	for i := range ts {
		active = !active
		ts[i] = e.transition(id, active)
	}
	e.submit(ts...)
	return active
}

// TestWSSnapshotThenEvent: a snapshot of the open alarms in scope with the
// scope's seq, then the next event with the next seq.
func TestWSSnapshotThenEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.raise("e01-V101-LT")
	e.raise("e02-V201-LT")
	e.raise("e01-V102-LT")
	waitFor(t, "the hub to see 3 events", func() bool { return e.hubSeq("all") == 3 })

	c := e.dial("e01", sub{"type": "subscribe"})
	f := c.next()
	if f.Type != "snapshot" || f.Seq != 2 || len(f.Alarms) != 2 || f.Reset || f.Resumed {
		t.Fatalf("snapshot %+v, want seq 2 (e01's events) with e01's 2 alarms", f)
	}
	for _, a := range f.Alarms {
		if a.Source.Enterprise != "e01" {
			t.Errorf("snapshot has %s of %s", a.ID, a.Source.Enterprise)
		}
	}
	e.clock.Set(time.Now().Add(2 * time.Second)) // the push "happens" 2 s after the event
	a := e.raise("e01-V103-LT")
	f = c.nextAlarm()
	if f.Seq != 3 || f.Event != "raised" || f.Alarm.ID != a.ID || f.Alarm.State != "unack_active" {
		t.Errorf("event %+v, want seq 3 raised %s", f, a.ID)
	}
	// The ack through the API reaches the client as the next event.
	if code, body := e.do("POST", "/api/v1/alarms/"+a.ID+"/ack", "e01", `{"comment":"ok"}`, nil); code != 200 {
		t.Fatalf("ack: %d %s", code, body)
	}
	if f = c.nextAlarm(); f.Seq != 4 || f.Event != "acknowledged" || f.Alarm.State != "ack_active" {
		t.Errorf("event %+v, want seq 4 acknowledged", f)
	}
	if got := e.metric("hw_ws_clients"); got != 1 {
		t.Errorf("hw_ws_clients = %v", got)
	}
	if lag := e.metric("hw_pipeline_lag_seconds", "stage", "push"); lag < 1 || lag > 2 {
		t.Errorf("hw_pipeline_lag_seconds{stage=push} = %v, want just under 2 s", lag)
	}
}

// TestWSScopes: each client gets exactly the events of its scope, numbered
// in that scope without gaps; a narrower scope than the token's is fine, a
// wider one is refused.
func TestWSScopes(t *testing.T) {
	e := newEnv(t, nil)
	clients := map[string]*wsClient{
		"e01":        e.dial("e01", sub{"type": "subscribe"}),
		"p01":        e.dial("p01", sub{"type": "subscribe", "scope": sub{"park": "p01"}}),
		"c01 as e02": e.dial("c01", sub{"type": "subscribe", "scope": sub{"enterprise": "e02"}}),
		"admin":      e.dial("admin", sub{"type": "subscribe"}),
	}
	wantEnt := map[string]func(string) bool{
		"e01":        func(s string) bool { return s == "e01" },
		"p01":        func(s string) bool { return s == "e01" || s == "e02" },
		"c01 as e02": func(s string) bool { return s == "e02" },
		"admin":      func(string) bool { return true },
	}
	seqs := map[string]uint64{}
	for name, c := range clients {
		f := c.next()
		if f.Type != "snapshot" || f.Seq != 0 {
			t.Fatalf("%s: %+v", name, f)
		}
	}
	// 30 events each on e01, e02, e03, interleaved.
	a1, a2, a3 := false, false, false
	for range 30 {
		a1 = e.toggle("e01-V101-LT", 1, a1)
		a2 = e.toggle("e02-V201-LT", 1, a2)
		a3 = e.toggle("e03-R501-TT", 1, a3)
	}
	want := map[string]uint64{"e01": 30, "p01": 60, "c01 as e02": 30, "admin": 90}
	for name, c := range clients {
		for seqs[name] < want[name] {
			f := c.nextAlarm()
			if f.Seq != seqs[name]+1 {
				t.Fatalf("%s: seq %d after %d", name, f.Seq, seqs[name])
			}
			if !wantEnt[name](f.Alarm.Source.Enterprise) {
				t.Fatalf("%s got an event of %s", name, f.Alarm.Source.Enterprise)
			}
			seqs[name] = f.Seq
		}
	}
	// Nothing more: a last e03 event goes to admin only, and the others'
	// next frame is the e01+e02 event after it.
	e.toggle("e03-R501-TT", 1, a3)
	e.toggle("e01-V101-LT", 1, a1)
	e.toggle("e02-V201-LT", 1, a2)
	if f := clients["admin"].nextAlarm(); f.Seq != 91 || f.Alarm.Source.Enterprise != "e03" {
		t.Errorf("admin: %+v", f)
	}
	if f := clients["e01"].nextAlarm(); f.Seq != 31 || f.Alarm.Source.Enterprise != "e01" {
		t.Errorf("e01: %+v", f)
	}
	if f := clients["c01 as e02"].nextAlarm(); f.Seq != 31 || f.Alarm.Source.Enterprise != "e02" {
		t.Errorf("c01 as e02: %+v", f)
	}

	for _, c := range []struct {
		name  string
		scope sub
		code  int
	}{
		{"e01", sub{"park": "p01"}, websocket.ClosePolicyViolation},
		{"p01", sub{"enterprise": "e03"}, websocket.ClosePolicyViolation},
		{"c01", sub{"county": "c02"}, websocket.ClosePolicyViolation},
		{"admin", sub{"enterprise": "e99"}, websocket.ClosePolicyViolation},
		{"admin", sub{"enterprise": "e01", "park": "p01"}, websocket.ClosePolicyViolation},
	} {
		w := e.dial(c.name, sub{"type": "subscribe", "scope": c.scope})
		if f := w.next(); f.Type != "error" || f.Error == "" {
			t.Errorf("%s with scope %v: %+v, want an error frame", c.name, c.scope, f)
		}
		if code := w.closeCode(); code != c.code {
			t.Errorf("%s with scope %v: close %d, want %d", c.name, c.scope, code, c.code)
		}
	}
	w := e.dial("e01", sub{"type": "hello"})
	if f := w.next(); f.Type != "error" || w.closeCode() != websocket.ClosePolicyViolation {
		t.Errorf("a first message other than subscribe: %+v", f)
	}
}

// TestWSAuth: the token in the query or the header; refusals before the
// upgrade are 401 JSON.
func TestWSAuth(t *testing.T) {
	e := newEnv(t, nil)
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws"
	for _, name := range []string{"revoked", "expired", "wrong", "malformed", "missing"} {
		_, res, err := websocket.DefaultDialer.Dial(u+"?token="+url.QueryEscape(e.tok[name]), nil)
		if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %v %v, want 401", name, err, res)
		}
	}
	h := http.Header{"Authorization": {"Bearer " + e.tok["p01"]}}
	c, _, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &wsClient{t: t, c: c}
	_ = c.WriteJSON(sub{"type": "subscribe"})
	if f := w.next(); f.Type != "snapshot" {
		t.Errorf("with the header: %+v", f)
	}
}

// TestWSResume: 100 events in scope pass while the client is away; it
// comes back with resume and gets all of them in order, then live ones,
// none twice.
func TestWSResume(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial("e01", sub{"type": "subscribe", "readings": true})
	if f := c.next(); f.Type != "snapshot" {
		t.Fatal(f)
	}
	e.raise("e01-V101-LT")
	last := c.nextAlarm().Seq
	c.c.Close()

	// 100 e01 events and 50 of e02 while away.
	active := true
	for range 50 {
		active = e.toggle("e01-V101-LT", 2, active)
		e.toggle("e02-V201-LT", 1, false)
	}
	waitFor(t, "the hub to see them", func() bool { return e.hubSeq("enterprise:e01") == last+100 })

	c = e.dial("e01", sub{"type": "subscribe", "resume": last})
	f := c.next()
	if f.Type != "snapshot" || !f.Resumed || f.Reset || f.Seq != last || len(f.Alarms) != 0 {
		t.Fatalf("resumed snapshot %+v, want seq %d resumed without alarms", f, last)
	}
	// Live events while the replay is still being written.
	active = e.toggle("e01-V101-LT", 10, active)
	for want := last + 1; want <= last+110; want++ {
		if f := c.nextAlarm(); f.Seq != want || f.Alarm.Source.Enterprise != "e01" {
			t.Fatalf("frame %+v, want seq %d", f, want)
		}
	}
	e.toggle("e01-V101-LT", 1, active)
	if f := c.nextAlarm(); f.Seq != last+111 {
		t.Errorf("after the replay: seq %d, want %d", f.Seq, last+111)
	}

	// Resuming at the current seq misses nothing and replays nothing.
	cur := e.hubSeq("enterprise:e01")
	d := e.dial("e01", sub{"type": "subscribe", "resume": cur})
	if f := d.next(); !f.Resumed || f.Seq != cur {
		t.Errorf("resume at the current seq: %+v", f)
	}
	e.toggle("e02-V201-LT", 1, true)
	e.toggle("e01-V102-LT", 1, false)
	if f := d.nextAlarm(); f.Seq != cur+1 || f.Alarm.Source.Sensor != "e01-V102-LT" {
		t.Errorf("after resuming at the current seq: %+v", f)
	}
}

// restart stops the server and the Manager and starts new ones over the
// same log, as a restart of the centre does.
func (e *env) restart() {
	e.t.Helper()
	if err := e.srv.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.ts.Close()
	e.stopManager()
	e.startManager()
	e.startServer()
}

// TestWSResumeRestart (issue #7): 100 events in scope pass while a client
// is away; it resumes and gets exactly those, in order, once. It goes away
// again; events pass before and after a restart of the centre (a new
// Manager and server over the same log), and a resume from before the
// restart replays all of them, not a reset, none twice. An enterprise's
// client counts its enterprise's events, an admin's every event.
func TestWSResumeRestart(t *testing.T) {
	e := newEnv(t, nil)
	clients := []struct{ name, key string }{{"e01", "enterprise:e01"}, {"admin", "all"}}
	last := map[string]uint64{}
	var first []*wsClient
	for _, c := range clients {
		w := e.dial(c.name, sub{"type": "subscribe"})
		if f := w.next(); f.Type != "snapshot" || f.Seq != 0 {
			t.Fatalf("%s: %+v", c.name, f)
		}
		first = append(first, w)
	}
	e.raise("e02-V201-LT")
	e.raise("e01-V101-LT")
	for i, c := range clients {
		last[c.name] = first[i].nextAlarm().Seq
		if c.name == "admin" {
			last[c.name] = first[i].nextAlarm().Seq
		}
		first[i].c.Close()
	}
	if last["e01"] != 1 || last["admin"] != 2 {
		t.Fatalf("before going away: e01 at %d, admin at %d", last["e01"], last["admin"])
	}

	// away: n e01 events and n/2 of e02 while the clients are away.
	e01, e02 := true, true
	away := func(n int) {
		for range n / 2 {
			e01 = e.toggle("e01-V101-LT", 2, e01)
			e02 = e.toggle("e02-V201-LT", 1, e02)
		}
	}
	// resume reconnects each client from its last seq and checks that it
	// gets every event after it up to the hub's current seq, in order, in
	// its scope, resumed, and then the next live one: nothing twice.
	resume := func(when string) {
		t.Helper()
		ws := map[string]*wsClient{}
		for _, c := range clients {
			cur := e.hubSeq(c.key)
			w := e.dial(c.name, sub{"type": "subscribe", "resume": last[c.name]})
			ws[c.name] = w
			f := w.next()
			if f.Type != "snapshot" || !f.Resumed || f.Reset || f.Seq != last[c.name] || len(f.Alarms) != 0 {
				t.Fatalf("%s, %s resuming from %d: %+v, want a resumed snapshot", when, c.name, last[c.name], f)
			}
			for want := last[c.name] + 1; want <= cur; want++ {
				f := w.nextAlarm()
				if f.Seq != want || (c.name == "e01" && f.Alarm.Source.Enterprise != "e01") {
					t.Fatalf("%s, %s: seq %d of %s, want %d", when, c.name, f.Seq, f.Alarm.Source.Enterprise, want)
				}
			}
			t.Logf("%s, %s: resumed from %d, replayed %d events", when, c.name, last[c.name], cur-last[c.name])
			last[c.name] = cur
		}
		e01 = e.toggle("e01-V101-LT", 1, e01)
		for _, c := range clients {
			last[c.name]++
			if f := ws[c.name].nextAlarm(); f.Seq != last[c.name] || f.Alarm.Source.Sensor != "e01-V101-LT" {
				t.Fatalf("%s, %s: live event %+v, want seq %d", when, c.name, f, last[c.name])
			}
			ws[c.name].c.Close()
		}
	}

	away(100)
	waitFor(t, "the hub to see them", func() bool { return e.hubSeq("enterprise:e01") == 101 })
	resume("without a restart")
	if last["e01"] != 102 || last["admin"] != 153 {
		t.Fatalf("after the first resume: e01 at %d, admin at %d; want 102 and 153", last["e01"], last["admin"])
	}

	away(50)
	e.restart()
	away(50)
	waitFor(t, "the new hub to see them", func() bool { return e.hubSeq("enterprise:e01") == 202 })
	resume("across a restart")
	if last["e01"] != 203 || last["admin"] != 304 {
		t.Errorf("after the restart: e01 at %d, admin at %d; want 203 and 304", last["e01"], last["admin"])
	}
}

// TestWSResumeReset: a resume older than the ring, or ahead of the
// server, gets a full snapshot marked reset; a new server's ring starts
// where the Manager's recent events do.
func TestWSResumeReset(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ringSize = 10 })
	e.raise("e02-V201-LT")
	e.raise("e01-V101-LT")
	active := true
	active = e.toggle("e01-V101-LT", 20, active) // ends active: 1 open e01 alarm
	_ = active
	waitFor(t, "the hub to see them", func() bool { return e.hubSeq("enterprise:e01") == 21 })

	for _, resume := range []uint64{5, 10, 22, 1 << 40} {
		c := e.dial("e01", sub{"type": "subscribe", "resume": resume})
		f := c.next()
		if f.Type != "snapshot" || !f.Reset || f.Resumed || f.Seq != 21 || len(f.Alarms) != 1 || f.Alarms[0].Source.Sensor != "e01-V101-LT" {
			t.Errorf("resume %d: %+v, want a reset snapshot at 21 with e01-V101-LT", resume, f)
		}
	}
	// The last 10 events are still there: 11 is the oldest resumable.
	c := e.dial("e01", sub{"type": "subscribe", "resume": 11})
	if f := c.next(); !f.Resumed || f.Seq != 11 {
		t.Errorf("resume 11 of 21 with a ring of 10: %+v", f)
	}
	for want := uint64(12); want <= 21; want++ {
		if f := c.nextAlarm(); f.Seq != want {
			t.Fatalf("replay: %d, want %d", f.Seq, want)
		}
	}

	// A new server over the same Manager: its ring starts with the
	// Manager's recent events, the last 10 (TestWSResumeRestart restarts
	// the Manager too).
	srv2, err := New(Options{Plant: e.plant, Rules: demo.Rules, Tokens: e.tokens, Alarms: e.mgr, ringSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	e2 := *e
	e2.srv = srv2
	e2.ts = newTestServer(t, srv2)
	waitFor(t, "the new hub", func() bool { return srv2.hub.ready(context.Background()) == nil })
	if f := e2.dial("e01", sub{"type": "subscribe", "resume": 10}).next(); !f.Reset || f.Seq != 21 || len(f.Alarms) != 1 {
		t.Errorf("resume 10 from a new server at 21 with a ring of 10: %+v", f)
	}
	c = e2.dial("e01", sub{"type": "subscribe", "resume": 11})
	if f := c.next(); !f.Resumed || f.Seq != 11 {
		t.Errorf("resume 11 from a new server at 21 with a ring of 10: %+v", f)
	}
	for want := uint64(12); want <= 21; want++ {
		if f := c.nextAlarm(); f.Seq != want {
			t.Fatalf("replay from the new server: %d, want %d", f.Seq, want)
		}
	}
}

// fanout is WebSocket clients that read every frame on their own
// goroutines, check that their alarm seqs run 1, 2, 3 … and note when
// each alarm frame came.
type fanout struct {
	conns   []*websocket.Conn
	seen    []atomic.Uint64 // the last seq each client read
	recv    [][]int64       // per client, the arrival (Unix ns) of seq i+1; read after stop
	errc    chan error
	wg      sync.WaitGroup
	stopped atomic.Bool // the test closed the connections: their errors are expected
}

// startFanout connects n clients with snapshots at seq 0, as the tokens
// e01, p01, c01 and admin in turn: with every event in e01 their seqs are
// the same.
func (e *env) startFanout(n int) *fanout {
	e.t.Helper()
	f := &fanout{seen: make([]atomic.Uint64, n), recv: make([][]int64, n), errc: make(chan error, n)}
	names := []string{"e01", "p01", "c01", "admin"}
	for i := range n {
		w := e.dial(names[i%len(names)], sub{"type": "subscribe"})
		if fr := w.next(); fr.Type != "snapshot" || fr.Seq != 0 {
			e.t.Fatalf("client %d: %+v, want a snapshot at 0", i, fr)
		}
		f.conns = append(f.conns, w.c)
		_ = w.c.SetReadDeadline(time.Time{}) // next's deadline was for the snapshot
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				_, b, err := w.c.ReadMessage()
				if err != nil {
					if !f.stopped.Load() {
						f.errc <- fmt.Errorf("client %d (%s) after seq %d: %w", i, names[i%len(names)], f.seen[i].Load(), err)
					}
					return
				}
				at := time.Now().UnixNano()
				seq, ok := frameSeq(b)
				if !ok {
					continue
				}
				if want := f.seen[i].Load() + 1; seq != want {
					f.errc <- fmt.Errorf("client %d (%s): seq %d, want %d", i, names[i%len(names)], seq, want)
					return
				}
				f.recv[i] = append(f.recv[i], at)
				f.seen[i].Store(seq)
			}
		}()
	}
	e.t.Cleanup(f.stop)
	return f
}

// frameSeq is the seq of an alarm frame, read from the prefix the hub
// writes (alarmFrame) rather than by decoding the whole frame: 50 clients
// decoding every alarm would take the cores the server is measured on.
func frameSeq(b []byte) (uint64, bool) {
	const prefix = `{"type":"alarm","seq":`
	rest, ok := bytes.CutPrefix(b, []byte(prefix))
	if !ok {
		return 0, false
	}
	end := bytes.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return seq, err == nil
}

// caughtUp says whether every client has read up to seq n; a client's
// error fails the test.
func (f *fanout) caughtUp(t *testing.T, n uint64) bool {
	t.Helper()
	select {
	case err := <-f.errc:
		t.Fatal(err)
	default:
	}
	for i := range f.seen {
		if f.seen[i].Load() < n {
			return false
		}
	}
	return true
}

// stop closes the clients and waits for their goroutines; again does
// nothing more.
func (f *fanout) stop() {
	f.stopped.Store(true)
	for _, c := range f.conns {
		c.Close()
	}
	f.wg.Wait()
}

// TestWSSlowClient (issue #7): among 50 clients that read, one that never
// reads is dropped within 10 s, while the 50 get every event, in order,
// without a gap, before and after the drop.
func TestWSSlowClient(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.clientQueue = 16 })
	// Small socket buffers on both sides, or the silent client's socket
	// would absorb megabytes (TCP autotuning) before its queue fills.
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	e.ts.Listener = smallSendListener{e.ts.Listener}
	e.ts.Start()
	t.Cleanup(e.ts.Close)
	const readers = 50
	fast := e.startFanout(readers)
	slow := e.dialWith(smallBufferDialer(), "e01", sub{"type": "subscribe"})
	_ = slow // never read
	waitFor(t, "51 clients", func() bool { return e.metric("hw_ws_clients") == readers+1 })

	var n uint64
	active := false
	// A burst is half the queue: the readers' queues never fill while
	// they read, the silent one's does once its socket is full.
	burst := func() {
		t.Helper()
		active = e.toggle("e01-V101-LT", 8, active)
		n += 8
		waitFor(t, "the readers to get the burst", func() bool { return fast.caughtUp(t, n) })
	}
	start := time.Now()
	for e.metric("hw_ws_dropped_total", "reason", dropSlow) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the slow client was not dropped within 10 s (%d events)", n)
		}
		burst()
	}
	dropped, at := time.Since(start), n
	waitFor(t, "the slow client to go", func() bool { return e.metric("hw_ws_clients") == readers })
	for range 5 {
		burst()
	}
	fast.stop()
	if got := e.metric("hw_ws_dropped_total", "reason", dropSlow); got != 1 {
		t.Errorf("%v clients dropped as slow, want 1", got)
	}
	for i := range fast.recv {
		if got := len(fast.recv[i]); got != int(n) {
			t.Errorf("client %d got %d events, want %d", i, got, n)
		}
	}
	t.Logf("the slow client was dropped %v after the first event (%d events); the %d readers got all %d, in order",
		dropped.Round(time.Millisecond), at, readers, n)
}

// smallSendListener gives accepted connections an 8 KiB send buffer.
type smallSendListener struct{ net.Listener }

func (l smallSendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// TestWSReadings: readings frames only for clients that asked, only for
// sensors in scope, at most one per sensor per second, the newest held back
// and sent when the second has passed; an older reading never replaces a
// newer one.
func TestWSReadings(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.flushEvery = 5 * time.Millisecond })
	r := e.dial("e01", sub{"type": "subscribe", "readings": true})
	n := e.dial("e01", sub{"type": "subscribe"})
	r.next()
	n.next()
	waitFor(t, "two clients", func() bool { return e.metric("hw_ws_clients") == 2 })
	a, b, x := e.sensor("e01-V101-LT"), e.sensor("e01-V102-LT"), e.sensor("e02-V201-LT")
	rd := func(s int32, ts int64, v float64) model.Reading {
		return model.Reading{SensorIdx: s, TS: ts, Value: v, HasValue: true}
	}
	check := func(f wsFrame, want ...string) {
		t.Helper()
		var got []string
		for _, r := range f.Readings {
			v := "null"
			if r.V != nil {
				v = strconv.FormatFloat(*r.V, 'f', -1, 64)
			}
			got = append(got, r.Sensor+"="+v)
		}
		if f.Type != "readings" || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("frame %+v, want readings %v", f, want)
		}
	}

	e.feed.send(t, rd(a, 1000, 1), rd(x, 1000, 9))
	check(r.next(), "e01-V101-LT=1") // e02's sensor is out of scope
	e.feed.send(t, rd(a, 2000, 2))
	e.feed.send(t, rd(a, 3000, 3), rd(b, 3000, 30)) // a held (the newest kept), b passes
	check(r.next(), "e01-V102-LT=30")
	e.feed.send(t) // the hub has finished with the batches before
	e.clock.Add(999 * time.Millisecond)
	e.feed.send(t, rd(a, 500, 0.5)) // older than what was sent: never shown
	e.feed.send(t)
	e.clock.Add(time.Millisecond)
	check(r.next(), "e01-V101-LT=3") // flushed by the ticker once the second has passed; never 2
	e.feed.send(t, rd(a, 4000, 4), rd(b, 4000, 40))
	check(r.next(), "e01-V102-LT=40") // a was sent a moment ago, b a second ago
	e.feed.send(t)
	e.clock.Add(time.Second)
	check(r.next(), "e01-V101-LT=4")

	// The client that did not ask got no readings: its next frame is the
	// next alarm event.
	e.raise("e01-V103-LT")
	if f := n.next(); f.Type != "alarm" {
		t.Errorf("client without readings: %+v", f)
	}
	if f := r.nextAlarm(); f.Alarm.Source.Sensor != "e01-V103-LT" {
		t.Errorf("client with readings: %+v", f)
	}
}

// TestWSPing: the product pings every 15 s and waits twice that for an
// answer; a client that answers the pings (as browsers and gorilla do)
// stays connected past the pong deadline, its pings a period apart.
func TestWSPing(t *testing.T) {
	if d := newEnv(t, nil).srv.o; d.pingEvery != 15*time.Second || d.pongWait != 30*time.Second || d.readingsEvery != time.Second || d.ringSize != alerting.DefaultRecent {
		t.Errorf("defaults: ping every %v, pong wait %v, readings every %v, ring %d (the Manager keeps %d)", d.pingEvery, d.pongWait, d.readingsEvery, d.ringSize, alerting.DefaultRecent)
	}
	const every = 40 * time.Millisecond
	e := newEnv(t, func(o *Options) {
		o.pingEvery = every
		o.pongWait = 3 * every
	})
	w := e.dial("e01", sub{"type": "subscribe"})
	if f := w.next(); f.Type != "snapshot" {
		t.Fatal(f)
	}
	_ = w.c.SetReadDeadline(time.Time{})
	var mu sync.Mutex
	var pings []time.Time
	w.c.SetPingHandler(func(data string) error {
		mu.Lock()
		pings = append(pings, time.Now())
		mu.Unlock()
		return w.c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	done := make(chan error, 1)
	go func() {
		for {
			if _, _, err := w.c.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	const n = 12 // four pong deadlines
	waitFor(t, "12 pings", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(pings) >= n
	})
	select {
	case err := <-done:
		t.Fatalf("a client answering pings was disconnected: %v", err)
	default:
	}
	if got := e.metric("hw_ws_dropped_total", "reason", dropPong); got != 0 {
		t.Errorf("hw_ws_dropped_total{reason=read_timeout} = %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	span := pings[n-1].Sub(pings[0])
	if avg := span / (n - 1); avg < every*3/4 || avg > 3*every {
		t.Errorf("pings %v apart on average, want about %v", avg, every)
	}
	w.c.Close()
	<-done
}

// TestWSLifecycle: a client that answers no ping is dropped at the pong
// deadline; a token revoked while connected ends the stream; Close
// disconnects everyone with 1001 and returns once they are gone.
func TestWSLifecycle(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.pingEvery = 20 * time.Millisecond
		o.pongWait = 300 * time.Millisecond
	})
	sc, _ := auth.ParseScope("enterprise:e01")
	plain, tok, err := e.tokens.Create("temp", auth.Operator, sc, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.tok["temp"] = plain

	quiet := e.dial("e01", sub{"type": "subscribe"}) // never reads, so never answers a ping
	_ = quiet
	waitFor(t, "the silent client to be dropped", func() bool { return e.metric("hw_ws_dropped_total", "reason", dropPong) == 1 })

	revoked := e.dial("temp", sub{"type": "subscribe"})
	if f := revoked.next(); f.Type != "snapshot" {
		t.Fatal(f)
	}
	if err := e.tokens.Revoke(tok.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if code := revoked.closeCode(); code != websocket.ClosePolicyViolation {
		t.Errorf("revoked token: close %d, want %d", code, websocket.ClosePolicyViolation)
	}

	live := e.dial("admin", sub{"type": "subscribe"})
	if f := live.next(); f.Type != "snapshot" {
		t.Fatal(f)
	}
	codes := make(chan int, 1)
	go func() { codes <- live.closeCode() }()
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if code := <-codes; code != websocket.CloseGoingAway {
		t.Errorf("at Close: close %d, want %d", code, websocket.CloseGoingAway)
	}
	if got := e.metric("hw_ws_clients"); got != 0 {
		t.Errorf("hw_ws_clients = %v after Close", got)
	}
	// After Close the WebSocket is refused before the upgrade.
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + e.tok["admin"]
	if _, res, err := websocket.DefaultDialer.Dial(u, nil); err == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: %v, want 503", err)
	}
}

// newTestServer serves srv on loopback until the test ends; srv is closed
// first.
func newTestServer(t *testing.T, srv *Server) *httptest.Server {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return ts
}

// cuttable is the Manager with a subscription the test can cut, as the
// Manager does to a subscriber that falls behind, and a gate that holds
// the next subscription back.
type cuttable struct {
	*alerting.Manager
	mu   sync.Mutex
	cut  chan struct{}
	gate chan struct{}
}

func (c *cuttable) SubscribeSnapshot(n int) (alerting.Snapshot, <-chan alerting.Event, func()) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	snap, in, cancel := c.Manager.SubscribeSnapshot(n)
	out, cut, done := make(chan alerting.Event, n), make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	c.cut = cut
	c.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-cut:
					return
				case <-done:
					return
				}
			case <-cut:
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return snap, out, func() { once.Do(func() { close(done); cancel() }) }
}

// TestWSResync: when the hub's subscription is lost, its clients are
// disconnected with 1013 (they cannot know what they missed), new clients
// are refused until the hub has subscribed again, and then a resume from
// before the loss replays the missed events from the new snapshot's
// recent ones, and one at the current seq resumes.
func TestWSResync(t *testing.T) {
	var cm *cuttable
	e := newEnv(t, func(o *Options) {
		cm = &cuttable{Manager: o.Alarms.(*alerting.Manager)}
		o.Alarms = cm
	})
	c := e.dial("e01", sub{"type": "subscribe"})
	c.next()
	e.raise("e01-V101-LT")
	if f := c.nextAlarm(); f.Seq != 1 {
		t.Fatal(f)
	}

	cm.mu.Lock()
	cm.gate = make(chan struct{})
	close(cm.cut)
	cm.mu.Unlock()
	if code := c.closeCode(); code != websocket.CloseTryAgainLater {
		t.Errorf("on resync: close %d, want %d", code, websocket.CloseTryAgainLater)
	}
	if got := e.metric("hw_ws_dropped_total", "reason", dropResync); got != 1 {
		t.Errorf("hw_ws_dropped_total{reason=resync} = %v", got)
	}
	// While the hub has no subscription: refused, and not ready.
	w := e.dial("e01", sub{"type": "subscribe"})
	if f := w.next(); f.Type != "error" || w.closeCode() != websocket.CloseTryAgainLater {
		t.Errorf("while resubscribing: %+v", f)
	}
	if code, _ := e.do("GET", "/readyz", "missing", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("readyz while resubscribing: %d", code)
	}
	// An event the hub never sees live: only its next snapshot has it.
	a := e.raise("e01-V102-LT")
	cm.mu.Lock()
	close(cm.gate)
	cm.gate = nil
	cm.mu.Unlock()
	waitFor(t, "the hub to subscribe again", func() bool { return e.srv.hub.ready(context.Background()) == nil })

	// The new subscription's snapshot brings the recent events: a resume
	// from before the loss replays what the client missed, the event the
	// hub never saw live included.
	c = e.dial("e01", sub{"type": "subscribe", "resume": 1})
	if f := c.next(); !f.Resumed || f.Seq != 1 {
		t.Errorf("resume 1 after the resync: %+v, want resumed at 1", f)
	}
	if f := c.nextAlarm(); f.Seq != 2 || f.Alarm.ID != a.ID {
		t.Errorf("replay after the resync: %+v, want seq 2 of %s", f, a.ID)
	}
	d := e.dial("e01", sub{"type": "subscribe", "resume": 2})
	if f := d.next(); !f.Resumed || f.Seq != 2 {
		t.Errorf("resume 2 after the resync: %+v", f)
	}
	e.raise("e01-V103-LT")
	if f := d.nextAlarm(); f.Seq != 3 {
		t.Errorf("live after the resync: %+v", f)
	}
}

// TestWSRegisterUnderLoad: clients that connect (fresh or resuming) while
// events stream in each get a stream without gap or duplicate from their
// snapshot on: the snapshot and the registration are one step.
func TestWSRegisterUnderLoad(t *testing.T) {
	e := newEnv(t, nil)
	const n = 400
	errc := make(chan error, 1)
	go func() {
		active := false
		for range n {
			active = !active
			if err := e.mgr.Submit(context.Background(), e.transition("e01-V101-LT", active)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var clients []*wsClient
	for i := range 16 {
		m := sub{"type": "subscribe"}
		if cur := e.hubSeq("enterprise:e01"); i%2 == 1 && cur > 3 {
			m["resume"] = cur - 3
		}
		clients = append(clients, e.dial("e01", m))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		f := c.next()
		if f.Type != "snapshot" {
			t.Fatalf("client %d: %+v", i, f)
		}
		for want := f.Seq + 1; want <= n; want++ {
			if g := c.nextAlarm(); g.Seq != want {
				t.Fatalf("client %d (snapshot at %d, resumed %v): seq %d, want %d", i, f.Seq, f.Resumed, g.Seq, want)
			}
		}
	}
}
