package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

// The hub is the one subscriber of the alarm Manager on behalf of every
// WebSocket client. Its run goroutine takes each durable event, keeps it in
// a bounded ring (for resume; it starts with the Manager's recent events,
// so it survives a restart), updates the open alarms and the last seq of
// every scope, and queues a frame for each client in scope, never waiting:
// a client whose queue is full is dropped. Live readings pass through the
// same goroutine, thinned to one per sensor per readingsEvery.
//
// Locking: h.mu guards everything a WebSocket handler touches (ring, seqs,
// open alarms, clients). A handler registers a client under h.mu, taking
// the snapshot or the replay from the same state that the next event will
// be applied to, so a client sees every event after its snapshot exactly
// once. The readings throttle is the run goroutine's alone. Nothing else
// is locked while h.mu is held (a client's kick is a channel close).

var (
	errHubClosed  = errors.New("the server is shutting down")
	errHubNotLive = errors.New("the alarm feed is not available yet")
)

// frame is one queued WebSocket message.
type frame struct {
	data []byte
	// at is the alarm event's handling time, for hw_pipeline_lag_seconds;
	// zero for other frames.
	at time.Time
}

// ringEntry is a durable event as the hub keeps it: what a replay needs,
// the alarm already encoded.
type ringEntry struct {
	seq   alerting.Seqs
	src   alerting.Source
	name  string
	at    time.Time
	alarm []byte
}

type hub struct {
	o       Options
	plant   *model.Plant
	log     *slog.Logger
	metrics *metrics
	done    chan struct{}

	mu      sync.Mutex
	live    bool // subscribed to the Manager: clients may register
	closed  bool
	ring    []ringEntry // circular once full; head is the oldest
	head    int
	floor   map[string]uint64 // per scope: the ring holds every event of the scope after this seq
	current map[string]uint64 // per scope: the seq of its last event
	last    uint64            // Seq.Global of the last event
	open    map[string]alerting.Alarm
	floods  map[[2]string]alerting.Flood // the floods now, by scope and id
	clients map[*client]struct{}

	// The readings throttle, by sensor index; the run goroutine's own.
	lastSent []time.Time
	lastTS   []int64 // newest reading time sent, so an older (replayed) one never shows as current
	pending  []model.Reading
	held     []bool
	nHeld    int
	scratch  []model.Reading
}

func newHub(o Options, m *metrics) *hub {
	n := len(o.Plant.Sensors)
	h := &hub{
		o: o, plant: o.Plant, log: o.Logger, metrics: m, done: make(chan struct{}),
		floor: map[string]uint64{}, current: map[string]uint64{},
		open: map[string]alerting.Alarm{}, floods: map[[2]string]alerting.Flood{}, clients: map[*client]struct{}{},
		lastSent: make([]time.Time, n), lastTS: make([]int64, n),
		pending: make([]model.Reading, n), held: make([]bool, n),
	}
	for i := range h.lastTS {
		h.lastTS[i] = math.MinInt64
	}
	return h
}

// ready is the hub's readiness check.
func (h *hub) ready(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.live {
		return errHubNotLive
	}
	return nil
}

// run subscribes to the Manager and pumps events and readings until ctx
// ends. When the Manager drops the subscription (the hub fell behind its
// buffer, or the Manager stopped), clients cannot be sure of a gapless
// stream any more: they are disconnected (1013) and the hub subscribes
// again with a fresh snapshot, whose recent events start the ring again:
// a client that reconnects with resume gets what it missed.
func (h *hub) run(ctx context.Context) {
	defer close(h.done)
	defer h.shutdown()
	// A subscription taken before the Manager has replayed its log would
	// see an empty snapshot and miss the replay (it is not pushed).
	if r, ok := h.o.Alarms.(interface{ Ready() <-chan struct{} }); ok {
		select {
		case <-r.Ready():
		case <-ctx.Done():
			return
		}
	}
	var readings <-chan []model.Reading
	var flush <-chan time.Time
	if h.o.Readings != nil {
		ch, cancel := h.o.Readings.SubscribeReadings(64)
		defer cancel()
		readings = ch
		t := time.NewTicker(h.o.flushEvery)
		defer t.Stop()
		flush = t.C
	}
	wait := 50 * time.Millisecond
	for {
		// Floods first: a start between the two subscriptions is then in
		// the snapshot or on the channel, and onFlood takes it twice
		// without harm.
		floods, cancelFloods := h.o.Alarms.SubscribeFloods(64)
		snap, events, cancel := h.o.Alarms.SubscribeSnapshot(h.o.alarmsBuffer)
		h.resync(snap)
		n, lost := h.pump(ctx, events, floods, &readings, flush)
		cancel()
		cancelFloods()
		if !lost {
			return
		}
		h.unlive()
		if n > 0 {
			wait = 50 * time.Millisecond
		}
		h.log.Warn("api: alarm subscription lost; WebSocket clients disconnected, resubscribing",
			"events_since_subscribe", n, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// pump handles events and readings until ctx ends (lost false) or the
// event channel closes (lost true). n counts the events handled.
func (h *hub) pump(ctx context.Context, events <-chan alerting.Event, floods <-chan alerting.Flood, readings *<-chan []model.Reading, flush <-chan time.Time) (n int, lost bool) {
	for {
		select {
		case <-ctx.Done():
			return n, false
		case ev, ok := <-events:
			if !ok {
				return n, true
			}
			h.onEvent(ev)
			n++
		case f, ok := <-floods:
			if !ok {
				// Dropped as too slow (it never is, at a few a day): the
				// next resubscription brings the floods back.
				floods = nil
				h.log.Warn("api: flood subscription lost")
				continue
			}
			h.onFlood(f)
		case rs, ok := <-*readings:
			if !ok {
				*readings = nil
				continue
			}
			h.onReadings(rs)
		case <-flush:
			h.flushHeld()
		}
	}
}

// resync starts over from a snapshot. The ring starts with the snapshot's
// recent events (the Manager keeps them across restarts), so a client
// resumes from any seq they cover: after a restart of the centre as after
// a lost subscription.
func (h *hub) resync(snap alerting.Snapshot) {
	// Encoded before the lock: up to a ring's worth of alarms.
	seed := h.seed(snap)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring, h.head = seed, 0 // once full, the next push evicts seed[0]
	clear(h.floor)
	clear(h.current)
	for k, v := range snap.Scopes {
		h.current[k] = v
	}
	h.current["all"] = snap.Seq
	// A scope's floor is the seq before its first event in the ring: the
	// ring holds every event after the first one's predecessor, so every
	// event of the scope after that seq. A scope without an event in the
	// ring resumes only from its current seq.
	h.floor["all"] = snap.Seq - uint64(len(seed))
	for _, e := range seed {
		for _, s := range scopesOf(e.src, e.seq) {
			if _, ok := h.floor[s.key]; !ok {
				h.floor[s.key] = s.seq - 1
			}
		}
	}
	for k, v := range h.current {
		if _, ok := h.floor[k]; !ok {
			h.floor[k] = v
		}
	}
	h.last = snap.Seq
	clear(h.open)
	for _, a := range snap.Alarms {
		a.History = nil
		h.open[a.ID] = a
	}
	clear(h.floods)
	for _, f := range snap.Floods {
		h.floods[[2]string{f.Scope, f.ID}] = f
	}
	h.live = true
}

// seed is the ring's start from a snapshot: the last of its recent events,
// at most a ring's worth, those that run without a gap up to the
// snapshot's seq (the Manager hands out no other; a log with a gap would
// make a resume across it replay less than was missed).
func (h *hub) seed(snap alerting.Snapshot) []ringEntry {
	rs := snap.Recent
	n := 0
	for i := len(rs) - 1; i >= 0 && n < h.o.ringSize; i-- {
		if rs[i].Seq.Global != snap.Seq-uint64(n) {
			break
		}
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]ringEntry, n)
	for i, ev := range rs[len(rs)-n:] {
		out[i] = h.entry(ev)
	}
	return out
}

// onFlood keeps the floods now and tells every client whose scope the
// flood is in: an enterprise's flood goes to whoever sees that
// enterprise, a park's to the park's and the county's (and admins).
func (h *hub) onFlood(f alerting.Flood) {
	b, err := json.Marshal(struct {
		Type  string         `json:"type"`
		Flood alerting.Flood `json:"flood"`
	}{"flood", f})
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	k := [2]string{f.Scope, f.ID}
	if f.Active {
		h.floods[k] = f
	} else {
		delete(h.floods, k)
	}
	for c := range h.clients {
		if !h.floodIn(c.scope, f) {
			continue
		}
		select {
		case c.q <- frame{data: b}:
		default:
			h.dropLocked(c, websocket.ClosePolicyViolation, "客户端过慢 / client too slow: send queue full", dropSlow)
		}
	}
}

// floodIn says whether a client of scope sc is told of flood f.
func (h *hub) floodIn(sc auth.Scope, f alerting.Flood) bool {
	switch f.Scope {
	case "enterprise":
		ei, ok := h.plant.EnterpriseIndex(f.ID)
		return ok && (sc.Kind == "all" || sc.Covers(h.plant, ei))
	case "park":
		in, _ := within(h.plant, sc, auth.Scope{Kind: "park", ID: f.ID})
		return in
	}
	return false
}

func (h *hub) unlive() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.live = false
	for c := range h.clients {
		h.dropLocked(c, websocket.CloseTryAgainLater, "报警推送重新同步 / alarm feed resync: reconnect", dropResync)
	}
}

func (h *hub) shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed, h.live = true, false
	for c := range h.clients {
		h.dropLocked(c, websocket.CloseGoingAway, "服务器关闭 / server shutting down", dropShutdown)
	}
}

// scopeSeq is one of an event's scopes with its seq there.
type scopeSeq struct {
	key string
	seq uint64
}

// scopesOf lists the scope keys an event counts in, as the Manager's
// Snapshot.Scopes names them ("enterprise:e01" …), and "all".
func scopesOf(src alerting.Source, q alerting.Seqs) []scopeSeq {
	out := []scopeSeq{{"all", q.Global}}
	if src.Enterprise != "" {
		out = append(out, scopeSeq{"enterprise:" + src.Enterprise, q.Enterprise})
	}
	if src.Park != "" {
		out = append(out, scopeSeq{"park:" + src.Park, q.Park})
	}
	if src.County != "" {
		out = append(out, scopeSeq{"county:" + src.County, q.County})
	}
	return out
}

// seqIn is an event's seq in a client's scope.
func seqIn(sc auth.Scope, q alerting.Seqs) uint64 {
	switch sc.Kind {
	case "enterprise":
		return q.Enterprise
	case "park":
		return q.Park
	case "county":
		return q.County
	}
	return q.Global
}

// entry is an event as the ring keeps it, its alarm encoded once for
// every client and replay.
func (h *hub) entry(ev alerting.Event) ringEntry {
	a := ev.Alarm
	a.History = nil
	b, err := json.Marshal(a)
	if err != nil {
		// Still sent, so that the seqs stay gapless; the client refetches
		// the alarm by id.
		h.log.Error("api: alarm event not encodable", "alarm", a.ID, "seq", ev.Seq.Global, "err", err)
		b = []byte(`{"id":` + strconv.Quote(a.ID) + `}`)
	}
	return ringEntry{seq: ev.Seq, src: a.Source, name: ev.Name.String(), at: ev.At, alarm: b}
}

func (h *hub) onEvent(ev alerting.Event) {
	a := ev.Alarm
	a.History = nil
	e := h.entry(ev)

	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.Seq.Global != h.last+1 {
		// The Manager promises a gapless stream; say so if it ever is not.
		h.log.Warn("api: gap in the alarm event stream", "after", h.last, "next", ev.Seq.Global)
	}
	h.last = ev.Seq.Global
	h.push(e)
	for _, s := range scopesOf(e.src, e.seq) {
		h.current[s.key] = s.seq
	}
	if a.State == model.StateNormal {
		delete(h.open, a.ID)
	} else {
		h.open[a.ID] = a
	}
	// A frame differs between clients only by its seq: one per seq the
	// event has (overall, enterprise, park, county), shared.
	var frames [4]struct {
		seq  uint64
		data []byte
	}
	nf := 0
	frameFor := func(seq uint64) []byte {
		for i := range nf {
			if frames[i].seq == seq {
				return frames[i].data
			}
		}
		b := alarmFrame(seq, e)
		if nf < len(frames) {
			frames[nf].seq, frames[nf].data = seq, b
			nf++
		}
		return b
	}
	for c := range h.clients {
		if !inScope(c.scope, e.src) {
			continue
		}
		select {
		case c.q <- frame{data: frameFor(seqIn(c.scope, e.seq)), at: e.at}:
		default:
			h.dropLocked(c, websocket.ClosePolicyViolation, "客户端过慢 / client too slow: send queue full", dropSlow)
		}
	}
}

// push adds e to the ring; an event pushed out raises the floor of its
// scopes: a client behind it can no longer resume.
func (h *hub) push(e ringEntry) {
	if len(h.ring) < h.o.ringSize {
		h.ring = append(h.ring, e)
		return
	}
	for _, s := range scopesOf(h.ring[h.head].src, h.ring[h.head].seq) {
		h.floor[s.key] = s.seq
	}
	h.ring[h.head] = e
	h.head = (h.head + 1) % len(h.ring)
}

// alarmFrame is {"type":"alarm","seq":…,"event":…,"alarm":…}, built
// around the alarm encoded once for every client.
func alarmFrame(seq uint64, e ringEntry) []byte {
	b := make([]byte, 0, len(e.alarm)+64)
	b = append(b, `{"type":"alarm","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"event":`...)
	b = strconv.AppendQuote(b, e.name)
	b = append(b, `,"alarm":`...)
	b = append(b, e.alarm...)
	return append(b, '}')
}

// dropLocked ends a client from the hub's side: removed, counted, told
// why. Never blocks: the kick is a channel close and the connection's own
// goroutine writes the close frame.
func (h *hub) dropLocked(c *client, code int, reason, metric string) {
	if _, ok := h.clients[c]; !ok {
		return
	}
	delete(h.clients, c)
	h.metrics.wsClients.Dec()
	h.metrics.wsDropped.WithLabelValues(metric).Inc()
	c.kick(code, reason)
	if metric != dropShutdown {
		h.log.Info("api: WebSocket client dropped", "reason", metric, "user", c.user, "scope", c.scope.String())
	}
}

// remove ends a client from its own side (it went away, a write failed, its
// token ended). metric is empty for an ordinary close by the client.
func (h *hub) remove(c *client, code int, reason, metric string) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		h.metrics.wsClients.Dec()
		if metric != "" {
			h.metrics.wsDropped.WithLabelValues(metric).Inc()
		}
	}
	h.mu.Unlock()
	c.kick(code, reason)
}

type snapshotFrame struct {
	Type    string           `json:"type"`
	Seq     uint64           `json:"seq"`
	Resumed bool             `json:"resumed,omitempty"`
	Reset   bool             `json:"reset,omitempty"`
	Alarms  []alerting.Alarm `json:"alarms"`
	// Floods are the floods in the client's scope now, in every snapshot.
	Floods []alerting.Flood `json:"floods"`
}

// register adds c and returns the frames it must get before its queue: a
// full snapshot, or with resume a resumed snapshot and the missed events.
func (h *hub) register(c *client, resume *uint64) ([][]byte, error) {
	var (
		snap   = snapshotFrame{Type: "snapshot", Alarms: []alerting.Alarm{}, Floods: []alerting.Flood{}}
		replay []ringEntry
	)
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return nil, errHubClosed
	case !h.live:
		h.mu.Unlock()
		return nil, errHubNotLive
	}
	key := c.scope.String()
	cur := h.current[key]
	if resume != nil && *resume >= h.floor[key] && *resume <= cur {
		// Every event of the scope after *resume is in the ring.
		snap.Seq, snap.Resumed = *resume, true
		for i := range h.ring {
			e := h.ring[(h.head+i)%len(h.ring)]
			if inScope(c.scope, e.src) && seqIn(c.scope, e.seq) > *resume {
				replay = append(replay, e)
			}
		}
	} else {
		snap.Seq, snap.Reset = cur, resume != nil
		for _, a := range h.open {
			if inScope(c.scope, a.Source) {
				snap.Alarms = append(snap.Alarms, a)
			}
		}
	}
	for _, f := range h.floods {
		if h.floodIn(c.scope, f) {
			snap.Floods = append(snap.Floods, f)
		}
	}
	h.clients[c] = struct{}{}
	h.metrics.wsClients.Inc()
	h.mu.Unlock()
	alerting.SortFloods(snap.Floods)

	// Encoding happens outside the lock: the values are immutable.
	if snap.Reset {
		h.log.Info("api: WebSocket resume too old; full snapshot sent", "user", c.user, "scope", key, "resume", *resume, "seq", cur)
	}
	slices.SortFunc(snap.Alarms, func(a, b alerting.Alarm) int { return keyOf(a).compare(keyOf(b)) })
	b, err := json.Marshal(snap)
	if err != nil {
		h.remove(c, 0, "", "")
		return nil, err
	}
	out := make([][]byte, 0, 1+len(replay))
	out = append(out, b)
	for _, e := range replay {
		out = append(out, alarmFrame(seqIn(c.scope, e.seq), e))
	}
	return out, nil
}

type readingJSON struct {
	Sensor string   `json:"sensor"`
	TS     string   `json:"ts"`
	V      *float64 `json:"v"`
	Q      string   `json:"q"`
	R      string   `json:"r,omitempty"`
}

// onReadings passes on at most one reading per sensor per readingsEvery:
// the first goes out at once, later ones wait (the newest kept) until the
// interval has passed, so the last value a client shows is never stale by
// more than about readingsEvery + flushEvery.
func (h *hub) onReadings(rs []model.Reading) {
	now := h.o.Clock()
	out := h.scratch[:0]
	for _, r := range rs {
		s := r.SensorIdx
		if s < 0 || int(s) >= len(h.lastTS) || r.TS <= h.lastTS[s] || (h.held[s] && r.TS <= h.pending[s].TS) {
			continue
		}
		if now.Sub(h.lastSent[s]) >= h.o.readingsEvery {
			if h.held[s] {
				h.held[s] = false
				h.nHeld--
			}
			h.lastSent[s], h.lastTS[s] = now, r.TS
			out = append(out, r)
			continue
		}
		if !h.held[s] {
			h.held[s] = true
			h.nHeld++
		}
		h.pending[s] = r
	}
	h.scratch = out
	h.fanReadings(out)
}

// flushHeld sends the held readings whose interval has passed.
func (h *hub) flushHeld() {
	if h.nHeld == 0 {
		return
	}
	now := h.o.Clock()
	out := h.scratch[:0]
	for s, held := range h.held {
		if held && now.Sub(h.lastSent[s]) >= h.o.readingsEvery {
			h.held[s] = false
			h.nHeld--
			h.lastSent[s], h.lastTS[s] = now, h.pending[s].TS
			out = append(out, h.pending[s])
		}
	}
	h.scratch = out
	h.fanReadings(out)
}

// fanReadings queues one readings frame per client that asked for them,
// with the sensors of its scope; one encoding per scope. A client whose
// queue is half full skips the frame: readings are a view, the next one
// replaces it, and the room is kept for alarm events, which are never
// skipped.
func (h *hub) fanReadings(rs []model.Reading) {
	if len(rs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var byScope map[string][]byte
	for c := range h.clients {
		if !c.readings {
			continue
		}
		key := c.scope.String()
		data, ok := byScope[key]
		if !ok {
			if byScope == nil {
				byScope = map[string][]byte{}
			}
			data = h.readingsFrame(rs, c.scope)
			byScope[key] = data
		}
		if data == nil {
			continue
		}
		if len(c.q) >= cap(c.q)/2 {
			h.metrics.readingsSkipped.Inc()
			continue
		}
		c.q <- frame{data: data} // room is certain: only the hub sends, under h.mu
	}
}

func (h *hub) readingsFrame(rs []model.Reading, sc auth.Scope) []byte {
	var items []readingJSON
	for _, r := range rs {
		sn := &h.plant.Sensors[r.SensorIdx]
		if sc.Kind != "all" && !sc.Covers(h.plant, sn.Enterprise) {
			continue
		}
		it := readingJSON{Sensor: sn.ID, TS: timeMS(r.TS), Q: r.Quality.String()}
		if r.HasValue && !math.IsNaN(r.Value) && !math.IsInf(r.Value, 0) {
			v := r.Value
			it.V = &v
		}
		if r.Reason != model.ReasonNone {
			it.R = r.Reason.String()
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil
	}
	b, err := json.Marshal(struct {
		Type     string        `json:"type"`
		Readings []readingJSON `json:"readings"`
	}{"readings", items})
	if err != nil {
		return nil
	}
	return b
}
