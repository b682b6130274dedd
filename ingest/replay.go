package ingest

import (
	"sync"
	"time"

	"hazardwatch/internal/telemetry"
)

// replayQuiet is how long after a gateway's last replayed message its
// catch-up counts as over (at the next live message): a gateway interleaves
// up to 10 replays with each live message, so a gap this long means its
// queue is empty.
const replayQuiet = 3 * time.Second

// replays follows each gateway's store-and-forward catch-up, for the log:
// one line when a gateway starts sending messages from its queue, one when
// it is done, with how many and how old they were.
type replays struct {
	mu  sync.Mutex
	gws []replayRun
}

type replayRun struct {
	active         bool
	msgs, readings int
	oldest         int64 // Unix ms of the oldest replayed reading
	first, last    time.Time
	boots          map[string]bool
}

// note records an accepted message of gateway gw (its index).
func (in *Ingest) noteReplay(m *telemetry.Message, now time.Time) {
	if m.Gateway < 0 {
		return
	}
	if m.Replay {
		in.m.msgReplayed.Inc()
	}
	r := &in.replays
	r.mu.Lock()
	defer r.mu.Unlock()
	run := &r.gws[m.Gateway]
	id := in.plant.Gateways[m.Gateway].ID
	switch {
	case m.Replay:
		if !run.active {
			*run = replayRun{active: true, first: now, oldest: now.UnixMilli(), boots: map[string]bool{}}
			in.log.Info("gateway replays its store-and-forward queue: the readings fill history as late data", "gateway", id, "boot", m.Boot, "seq", m.Seq)
		}
		run.msgs++
		run.readings += len(m.Readings)
		run.last = now
		run.boots[m.Boot] = true
		for i := range m.Readings {
			run.oldest = min(run.oldest, m.Readings[i].TS)
		}
	case run.active && now.Sub(run.last) >= replayQuiet:
		in.log.Info("gateway replay done: its queue reached the centre", "gateway", id, "messages", run.msgs, "readings", run.readings,
			"boots", len(run.boots), "oldest_reading", time.UnixMilli(run.oldest).UTC().Format(time.RFC3339), "took", run.last.Sub(run.first).Round(time.Millisecond))
		run.active = false
	}
}
