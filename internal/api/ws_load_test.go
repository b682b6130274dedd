package api

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
)

var (
	loadFor  = flag.Duration("load", 0, "run TestWSLoad for this long, half without and half with a client that never reads (a load run, not a unit test: its figures go to docs/PERFORMANCE.md)")
	loadRate = flag.Int("rate", 500, "TestWSLoad: alarm events per second")
)

// loadReaders is how many WebSocket clients read every event in the load
// run (issue #7: 50).
const loadReaders = 50

// TestWSLoad is the WebSocket fan-out load run: alarm events at a steady
// rate to 50 reading clients, with the product's queue sizes and the
// operating system's socket buffers, first alone, then with a client that
// never reads. Latency is from the moment an event is durable (Append
// returned) to a client's receipt of its frame, over every client and
// event of each half. It fails when a reader misses an event or the
// silent client is not dropped.
//
//	go test -run TestWSLoad -v ./internal/api -args -load=30s
func TestWSLoad(t *testing.T) {
	if *loadFor == 0 {
		t.Skip("a load run: -args -load=30s")
	}
	e := newEnv(t, nil)
	stalls := &stallListener{first: map[string]time.Time{}}
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	stalls.Listener = e.ts.Listener
	e.ts.Listener = stalls
	e.ts.Start()
	t.Cleanup(e.ts.Close)
	readers := e.startFanout(loadReaders)
	waitFor(t, "the readers", func() bool { return e.metric("hw_ws_clients") == loadReaders })

	// The events: e01's sensors in turn, each raised and returned, so
	// that every transition is one event and every reader's seq is the
	// global one.
	ids := e.sensorsOf("e01")
	active := make([]bool, len(ids))
	var sent uint64
	k := 0
	push := func(ctx context.Context, d time.Duration) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		var n uint64 // sent in this call
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if now.Sub(start) >= d {
					return
				}
				due := uint64(now.Sub(start).Seconds() * float64(*loadRate))
				var ts []model.Transition
				for ; n < due; n++ {
					i := k % len(ids)
					active[i] = !active[i]
					ts = append(ts, e.transition(ids[i], active[i]))
					k++
				}
				if err := e.mgr.Submit(ctx, ts...); err != nil {
					return // the run has ended
				}
				sent += uint64(len(ts))
			}
		}
	}
	half := *loadFor / 2
	waitSent := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return readers.caughtUp(t, sent) })
	}

	load0 := loadAvg()
	t0 := time.Now()
	push(context.Background(), 2*time.Second) // warm-up, not counted
	waitSent("the readers to get the warm-up")
	warm := sent
	push(context.Background(), half)
	waitSent("the readers to get the first half")
	first := [2]uint64{warm + 1, sent}

	// The second half lasts until the silent client has been dropped for
	// 5 s too: how soon depends on the rate, as the system's socket
	// buffers take megabytes first.
	slow := e.dial("admin", sub{"type": "subscribe"}) // never reads
	slowAddr := slow.c.LocalAddr().String()
	waitFor(t, "the silent client", func() bool { return e.metric("hw_ws_clients") == loadReaders+1 })
	from := sent + 1
	t1 := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		push(ctx, time.Hour)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var dropAt time.Time
	var dropSeq uint64
	poll.Until(t, "the silent client to be dropped", half+time.Minute, func() bool {
		if dropAt.IsZero() {
			if e.metric("hw_ws_dropped_total", "reason", dropSlow)+e.metric("hw_ws_dropped_total", "reason", dropWrite) == 0 {
				return false
			}
			dropAt, dropSeq = time.Now(), e.hubSeq("all")
		}
		return time.Since(t1) >= half && time.Since(dropAt) >= 5*time.Second
	})
	cancel()
	<-done
	waitSent("the readers to get the second half")
	readers.stop()
	slowDrops, writeDrops := e.metric("hw_ws_dropped_total", "reason", dropSlow), e.metric("hw_ws_dropped_total", "reason", dropWrite)
	if slowDrops+writeDrops != 1 {
		t.Errorf("%v clients dropped as slow and %v for a blocked write, want 1 in all (the silent one)", slowDrops, writeDrops)
	}

	e.log.mu.Lock()
	durable := slices.Clone(e.log.at)
	e.log.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d readers, %d events/s, %v alone after a 2-s warm-up, then %v with the silent client (%v in all); load average %s at the start, %s at the end\n",
		loadReaders, *loadRate, half, time.Since(t1).Round(time.Second), time.Since(t0).Round(time.Second), load0, loadAvg())
	fmt.Fprintf(&b, "| clients | events | frames | p50 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, h := range []struct {
		name string
		seqs [2]uint64
	}{
		{fmt.Sprintf("%d reading", loadReaders), first},
		{fmt.Sprintf("%d reading + 1 silent, until it is dropped", loadReaders), [2]uint64{from, dropSeq}},
		{fmt.Sprintf("%d reading, after the drop", loadReaders), [2]uint64{dropSeq + 1, sent}},
	} {
		var lat []time.Duration
		for _, recv := range readers.recv {
			if uint64(len(recv)) < h.seqs[1] {
				t.Fatalf("a reader got %d events of %d", len(recv), h.seqs[1])
			}
			for q := h.seqs[0]; q <= h.seqs[1]; q++ {
				lat = append(lat, time.Duration(recv[q-1]-durable[q-1].UnixNano()))
			}
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond) }
		fmt.Fprintf(&b, "| %s | %d | %d | %v | %v | %v |\n", h.name, h.seqs[1]-h.seqs[0]+1, len(lat), pct(0.5), pct(0.99), lat[len(lat)-1].Round(10*time.Microsecond))
	}
	why := "its queue was full"
	if writeDrops > 0 {
		why = "a write blocked for 10 s"
	}
	stalls.mu.Lock()
	stalled, ok := stalls.first[slowAddr]
	others := len(stalls.first)
	stalls.mu.Unlock()
	if ok {
		others--
	}
	if !ok || dropAt.Sub(stalled) > 10*time.Second {
		t.Errorf("the silent client's socket stalled at %v (found %v), dropped %v after", stalled, ok, dropAt.Sub(stalled))
	}
	fmt.Fprintf(&b, "silent client: dropped %v after it connected, %d events later (%s); %v after its socket was full (first write blocked)\n",
		dropAt.Sub(t1).Round(time.Millisecond), dropSeq-from+1, why, dropAt.Sub(stalled).Round(time.Millisecond))
	fmt.Fprintf(&b, "reading clients with a write blocked over %v: %d\n", stallAfter, others)
	t.Log(b.String())
}

// stallAfter is how long a write must block to count as the client's
// socket being full.
const stallAfter = 100 * time.Millisecond

// stallListener notes, per client address, when the first write to it
// began that blocked longer than stallAfter: when the client's socket
// buffers were full, and it no longer kept up.
type stallListener struct {
	net.Listener
	mu    sync.Mutex
	first map[string]time.Time
}

func (l *stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, l: l}, nil
}

type stallConn struct {
	net.Conn
	l *stallListener
}

func (c *stallConn) Write(b []byte) (int, error) {
	start := time.Now()
	n, err := c.Conn.Write(b)
	if time.Since(start) > stallAfter {
		c.l.mu.Lock()
		if _, ok := c.l.first[c.RemoteAddr().String()]; !ok {
			c.l.first[c.RemoteAddr().String()] = start
		}
		c.l.mu.Unlock()
	}
	return n, err
}

// loadAvg is the 1-minute load average, for the record of a run on a
// shared machine; "?" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
