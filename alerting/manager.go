package alerting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hazardwatch/internal/model"
)

// Log is the durable log of alarm events, as the Manager needs it.
type Log interface {
	// Append makes evs durable, in order, and sets each one's LogSeq. It
	// returns only once they would all survive a power loss. Appending the
	// same events again (same Seq.Global) after an error must not store
	// any of them twice. The Manager hands it every event made while the
	// previous Append was under way: one write for many events is its
	// group commit.
	Append(ctx context.Context, evs []Event) error
	// Replay calls fn with every event in the log, oldest first.
	Replay(ctx context.Context, fn func(Event) error) error
}

// Options configure a Manager. Plant and Log are required.
type Options struct {
	Plant *model.Plant
	// Rules, by sensor index, say which sensors' alarms latch.
	Rules []model.SensorRules
	Log   Log
	// Clock gives the time of operator actions and of handling; default
	// time.Now.
	Clock func() time.Time
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// Queue is how many transitions may wait for the Manager; default 1024.
	Queue int
	// RetryMax caps the wait between attempts to make an event durable;
	// default 5 s.
	RetryMax time.Duration
	// MaxShelve is the longest an operator may shelve an alarm; default
	// Alarms.MaxShelve.
	MaxShelve time.Duration
	// Alarms are the escalation limits and noise settings of the rule
	// files; the zero value means model.DefaultAlarmRules.
	Alarms model.AlarmRules
	// MaxBatch bounds the events made durable in one Append; default 1024.
	MaxBatch int
	// Design is the admin's Design as it was kept durable (SetDesign):
	// statuses and instruments out of service. The zero value sets none.
	Design model.Design
	// Recent is how many of the latest durable events the Manager keeps,
	// from the log at start and then live, to hand out with every
	// SubscribeSnapshot (Snapshot.Recent): what lets a WebSocket client
	// resume across a restart. Default 10 000 (the API's resume ring);
	// negative keeps none.
	Recent int
}

// DefaultRecent is how many of the latest events a Manager keeps for
// Snapshot.Recent unless Options.Recent says otherwise.
const DefaultRecent = 10_000

// DefaultMaxShelve is the shelving limit of the default alarm rules: one
// shift, so that a shelf never outlasts the operator who set it.
const DefaultMaxShelve = 8 * time.Hour

// Manager is the one owner of alarm state. Its Run goroutine takes
// transitions (Submit) and actions (Ack, Shelve, Unshelve, Suppress,
// Unsuppress, RemoveFromService, ReturnToService) over channels, one at a
// time, runs the shelf timers, and is the only writer of alarms; others
// read published snapshots (Active, Get) and subscribe to events
// (Subscribe).
type Manager struct {
	o     Options
	log   *slog.Logger
	clock func() time.Time

	trans       chan model.Transition
	acts        chan actReq
	designs     chan designReq
	ready, done chan struct{}
	running     atomic.Bool

	// Owned by the Run goroutine.
	slots   []string // slot(sensor, rule), gatewaySlot(gateway) → id of that condition's latest alarm
	timers  dueQueue // shelves' ends, escalation and feedback limits; stale entries are skipped
	global  uint64
	scope   [3]map[string]uint64 // enterprise, park, county → last seq (written under mu)
	b       batch                // events waiting to be made durable together
	started time.Time            // when Run began: the start of a suspension it found
	// contacts caches who each escalation step notifies, by source.
	contacts map[Source][model.NumEscalationSteps][]Contact
	floods   *floods
	// design is the admin's Design (SetDesign; Options.Design at start).
	design model.Design

	// mu publishes what the owner changes: the owner writes alarms and
	// lastSeq under it (and reads them without it: nobody else writes),
	// readers take it to read. Subscribers are added and removed under it
	// too, so a subscription and a snapshot taken together are exact.
	// rules, when set, replaces Options.Rules after a reload (SetRules).
	// The Run goroutine loads it for each new occurrence.
	rules atomic.Pointer[[]model.SensorRules]

	mu      sync.RWMutex
	alarms  map[string]Alarm
	met     metrics
	lastSeq uint64
	subs    map[*subscriber]struct{}
	stopped bool
	// flooding is the floods now, published from the owner's detector;
	// floodSubs get each start and end.
	flooding   []Flood
	floodEnded []FloodPeriod
	floodSubs  map[chan Flood]struct{}
	// recent is a ring of the latest Options.Recent durable events,
	// oldest at recentHead once full; written by apply under mu.
	recent     []Event
	recentHead int
}

// actReq is an action on one alarm, answered once its event is durable.
type actReq struct {
	ctx   context.Context
	id    string
	ev    Event
	reply chan error
}

type subscriber struct{ ch chan Event }

// MaxText bounds a user, reason, comment, cause or action of an event: an
// event must fit the log. The API holds the admin's reasons to it too.
const MaxText = 4000

// New checks the options and builds a Manager; Run starts it.
func New(o Options) (*Manager, error) {
	if o.Plant == nil || o.Log == nil {
		return nil, errors.New("alerting: Options.Plant and Options.Log are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.Alarms == (model.AlarmRules{}) {
		o.Alarms = model.DefaultAlarmRules()
	}
	if o.MaxShelve <= 0 {
		o.MaxShelve = o.Alarms.MaxShelve
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	switch {
	case o.Recent == 0:
		o.Recent = DefaultRecent
	case o.Recent < 0:
		o.Recent = 0
	}
	m := &Manager{
		o: o, log: o.Logger, clock: o.Clock,
		trans:   make(chan model.Transition, o.Queue),
		acts:    make(chan actReq),
		designs: make(chan designReq),
		ready:   make(chan struct{}), done: make(chan struct{}),
		slots:     make([]string, len(o.Plant.Sensors)*int(model.NumRuleKinds)+len(o.Plant.Gateways)),
		contacts:  map[Source][model.NumEscalationSteps][]Contact{},
		floods:    newFloods(o.Alarms.Flood),
		alarms:    map[string]Alarm{},
		subs:      map[*subscriber]struct{}{},
		floodSubs: map[chan Flood]struct{}{},
		met:       newMetrics(),
	}
	if err := o.Design.Check(o.Plant); err != nil {
		return nil, fmt.Errorf("alerting: Options.Design: %w", err)
	}
	m.design = o.Design.Clone()
	for i := range m.scope {
		m.scope[i] = map[string]uint64{}
	}
	m.b.reset(0)
	return m, nil
}

// Run replays the log, then owns alarm state until ctx ends. It returns nil
// when ctx ends, or the error that stopped it (a log that cannot be read).
// On return it closes every subscriber's channel. Transitions still queued
// at that point are dropped: stop the rules stage first.
//
// Timers come back from the log with their original due times: a shelf's
// end, an escalation step or reminder, a feedback limit that fell due
// while the centre was down fires before Ready, its event carrying the
// time it was due.
//
// Each turn of the loop takes what is waiting (transitions, actions, due
// timers), up to Options.MaxBatch events, and makes those events durable
// in one Append before anything of them is applied, pushed or answered:
// while one write is under way the next batch gathers, so the log's fsync
// is shared by as many events as arrive meanwhile (group commit).
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("alerting: Run called twice")
	}
	defer m.stop()
	n := 0
	err := m.o.Log.Replay(ctx, func(ev Event) error {
		if ev.Alarm.ID == "" {
			return fmt.Errorf("event %d names no alarm", ev.Seq.Global)
		}
		if ev.Seq.Global != m.global+1 {
			m.log.Warn("gap in the alarm log", "after", m.global, "next", ev.Seq.Global)
		}
		m.apply(ev, false)
		n++
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("alerting: replay: %w", err)
	}
	m.b.reset(m.global)
	m.rebuildTimers()
	m.floods.expire(m.clock())
	m.publishFloods(nil)
	if at, ok := m.floods.next(); ok {
		m.timers.push(at, "", dueFlood)
	}
	nOpen, nShelved := m.openCount()
	m.log.Info("alarms restored from the log", "events", n, "seq", m.global, "open", nOpen, "shelved", nShelved, "timers", m.timers.len())
	m.started = m.clock()
	m.armHolds(m.started)
	m.syncHolds(m.started, m.serviceSet(), "system")
	for ctx.Err() == nil {
		// Everything that fell due while the centre was down, before
		// Ready, a batch at a time.
		m.onDue(ctx)
		full := len(m.b.evs) >= m.o.MaxBatch
		m.flush(ctx)
		if !full {
			break
		}
	}
	close(m.ready)
	// One timer for the earliest due time, armed on the Manager's clock.
	// A wake-up that the clock says is early only re-arms it.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time
	for {
		var due <-chan time.Time
		if at, ok := m.timers.first(); ok {
			if !at.Equal(armed) {
				timer.Reset(max(at.Sub(m.clock()), 0))
				armed = at
			}
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case t := <-m.trans:
			m.onTransition(ctx, t)
		case r := <-m.acts:
			m.onAct(ctx, r)
		case r := <-m.designs:
			m.onDesign(r)
		case <-due:
			armed = time.Time{}
			m.onDue(ctx)
		}
		m.gather(ctx)
		m.flush(ctx)
	}
}

func (m *Manager) stop() {
	m.mu.Lock()
	m.stopped = true
	for s := range m.subs {
		close(s.ch)
		delete(m.subs, s)
	}
	for ch := range m.floodSubs {
		close(ch)
		delete(m.floodSubs, ch)
	}
	m.mu.Unlock()
	close(m.done)
}

// Ready is closed once the log has been replayed: from then on Active and
// Get answer with every alarm.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Done is closed when Run has returned.
func (m *Manager) Done() <-chan struct{} { return m.done }

// Submit hands transitions from the rules stage to the Manager, in order.
// It blocks while the queue is full (an alarm transition is never dropped)
// until ctx ends.
func (m *Manager) Submit(ctx context.Context, ts ...model.Transition) error {
	for _, t := range ts {
		// A select picks at random among ready cases: without this, a
		// stopped Manager with room in its queue would take transitions
		// that nobody will read.
		select {
		case <-m.done:
			return ErrStopped
		default:
		}
		select {
		case m.trans <- t:
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return ErrStopped
		}
	}
	return nil
}

// Ack acknowledges alarm id for user, or resets a latched alarm whose
// condition has ended. It returns once the event is durable, or with
// ErrNotFound, ErrNotAckable, ErrInvalid, ErrStopped or ctx's error. An
// acknowledgement whose caller gave up after the Manager took it may still
// take effect, as a request that timed out may. So may every action below.
func (m *Manager) Ack(ctx context.Context, id, user, comment string) error {
	if user == "" {
		return fmt.Errorf("%w: an acknowledgement needs a user", ErrInvalid)
	}
	return m.act(ctx, id, Event{Op: OpAck, User: user, Comment: comment})
}

// Shelve hides alarm id for d (at most Options.MaxShelve: ErrShelveTooLong
// otherwise) with a reason. The alarm must be one the operator sees
// (ErrNotShelvable otherwise). When d has passed the Manager unshelves it,
// unacknowledged.
func (m *Manager) Shelve(ctx context.Context, id, user, reason string, d time.Duration) error {
	return m.act(ctx, id, Event{Op: OpShelve, User: user, Reason: reason, Duration: d})
}

// Unshelve ends the shelf of alarm id by hand: the alarm comes back
// acknowledged by user (ErrNotShelved when it is not shelved).
func (m *Manager) Unshelve(ctx context.Context, id, user, comment string) error {
	return m.act(ctx, id, Event{Op: OpUnshelve, User: user, Comment: comment})
}

// Suppress suppresses alarm id by design: reason is SuppressSuspended (the
// enterprise's status) or SuppressMaintenance (a planned maintenance
// window); user may be empty when the system decides.
func (m *Manager) Suppress(ctx context.Context, id, user, reason string) error {
	return m.act(ctx, id, Event{Op: OpSuppress, User: user, Reason: reason})
}

// Unsuppress ends the suppression of alarm id.
func (m *Manager) Unsuppress(ctx context.Context, id, user string) error {
	return m.act(ctx, id, Event{Op: OpUnsuppress, User: user})
}

// RemoveFromService takes alarm id out of service, with a reason.
func (m *Manager) RemoveFromService(ctx context.Context, id, user, reason string) error {
	return m.act(ctx, id, Event{Op: OpRemoveFromService, User: user, Reason: reason})
}

// ReturnToService puts alarm id back in service.
func (m *Manager) ReturnToService(ctx context.Context, id, user, comment string) error {
	return m.act(ctx, id, Event{Op: OpReturnToService, User: user, Comment: comment})
}

// Feedback records the enterprise's handling report (处置反馈) of alarm
// id: the cause found and the action taken. It closes the loop. The alarm
// must have been acknowledged (ErrWrongState otherwise); feedback is given
// once (ErrFeedbackGiven).
func (m *Manager) Feedback(ctx context.Context, id, user, cause, action string) error {
	return m.act(ctx, id, Event{Op: OpFeedback, User: user, Cause: cause, Action: action})
}

// act hands an action to the Run goroutine and waits for its answer.
func (m *Manager) act(ctx context.Context, id string, ev Event) error {
	for _, f := range []string{ev.Comment, ev.Reason, ev.User, ev.Cause, ev.Action} {
		if len(f) > MaxText {
			return fmt.Errorf("%w: a user, reason, comment, cause and action of at most %d bytes each", ErrInvalid, MaxText)
		}
	}
	r := actReq{ctx: ctx, id: id, ev: ev, reply: make(chan error, 1)}
	return ask(ctx, m, m.acts, r, r.reply)
}

// ask hands r to the Run goroutine on ch and waits for its answer on
// reply: a request answered once its events are durable.
func ask[R any](ctx context.Context, m *Manager, ch chan<- R, r R, reply <-chan error) error {
	select {
	case ch <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrStopped
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		select {
		case err := <-reply:
			return err
		default:
			return ErrStopped
		}
	}
}

// Active returns every alarm not in state normal, highest priority first;
// within a priority toxic gas first, then the newest.
func (m *Manager) Active() []Alarm {
	m.mu.RLock()
	out := m.activeLocked()
	m.mu.RUnlock()
	return out
}

func (m *Manager) activeLocked() []Alarm {
	var out []Alarm
	for _, a := range m.alarms {
		if a.State != model.StateNormal {
			a.History = slices.Clone(a.History)
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Alarm) int {
		return cmp.Or(
			cmp.Compare(a.Priority, b.Priority),
			cmp.Compare(toxicRank(a), toxicRank(b)),
			b.RaisedAt.Compare(a.RaisedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return out
}

func toxicRank(a Alarm) int {
	if a.Kind == model.GasToxic {
		return 0
	}
	return 1
}

// Select returns every alarm the Manager holds, of any state (it holds
// every alarm of its log), for which keep is true, without their
// histories (Get has each one's). keep runs under the Manager's read
// lock: it must be quick and call nothing of the Manager.
func (m *Manager) Select(keep func(*Alarm) bool) []Alarm {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Alarm
	for _, a := range m.alarms {
		if keep(&a) {
			a.History = nil
			out = append(out, a)
		}
	}
	return out
}

// Get returns alarm id, of any state, with its history.
func (m *Manager) Get(id string) (Alarm, bool) {
	m.mu.RLock()
	a, ok := m.alarms[id]
	m.mu.RUnlock()
	a.History = slices.Clone(a.History)
	return a, ok
}

// Conditions returns, as transitions, the conditions that open alarms say
// hold now. At start the wiring passes them to rules.Engine.Assume, so the
// fresh engine returns an alarm whose value went back to normal while the
// centre was down.
func (m *Manager) Conditions() []model.Transition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []model.Transition
	for _, a := range m.alarms {
		if !a.Active || a.State == model.StateNormal {
			continue
		}
		t := model.Transition{
			Rule: a.Rule, Class: a.Class, Level: a.Level, Active: true,
			Value: a.Value, Limit: a.Limit, TS: a.RaisedAt.UnixMilli(), Late: a.Late,
		}
		var ok bool
		if a.Rule == model.GatewaySilent {
			t.Sensor = -1
			t.Gateway, ok = m.o.Plant.GatewayIndex(a.Source.Gateway)
		} else {
			t.Sensor, ok = m.o.Plant.SensorIndex(a.Source.Sensor)
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}

// Snapshot is the open alarms as of event Seq.
type Snapshot struct {
	Seq    uint64
	Alarms []Alarm
	// Floods are the scopes in a flood as of Seq.
	Floods []Flood
	// Scopes holds the last seq of each scope as of Seq, keyed
	// "enterprise:ID", "park:ID" and "county:ID": the N of a WebSocket
	// snapshot for a client of that scope.
	Scopes map[string]uint64
	// Recent are the latest durable events up to and including Seq,
	// oldest first, consecutive (at most Options.Recent; fewer when the
	// log holds fewer), whether they were replayed from the log at start
	// or made since: a subscriber that replays missed events (the
	// WebSocket's resume) starts its buffer with them, so that a restart
	// of the centre does not empty it.
	Recent []Event
}

// Subscribe returns a channel of events, each delivered after it is
// durable, in order. A subscriber whose buffer (at least 1) is full when an
// event comes is dropped, its channel closed: the owner never waits for a
// reader, and a reader that missed an event must not go on as if it had
// not (it resubscribes and takes a new snapshot). cancel ends the
// subscription and closes the channel; calling it again does nothing.
func (m *Manager) Subscribe(buffer int) (<-chan Event, func()) {
	_, ch, cancel := m.subscribe(buffer, false)
	return ch, cancel
}

// SubscribeSnapshot is Subscribe with the open alarms as of the last event
// before the first one the channel delivers: events on the channel have
// Seq.Global > Snapshot.Seq, with none missing (SPEC §3 WebSocket). The
// snapshot's Recent events end at Seq, so that the events before the
// snapshot and those on the channel join without a gap either.
func (m *Manager) SubscribeSnapshot(buffer int) (Snapshot, <-chan Event, func()) {
	return m.subscribe(buffer, true)
}

func (m *Manager) subscribe(buffer int, snap bool) (Snapshot, <-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, max(buffer, 1))}
	m.mu.Lock()
	var sn Snapshot
	if snap {
		sn = Snapshot{Seq: m.lastSeq, Alarms: m.activeLocked(), Floods: slices.Clone(m.flooding), Scopes: map[string]uint64{}, Recent: m.recentLocked()}
		for i, kind := range [3]string{"enterprise", "park", "county"} {
			for id, seq := range m.scope[i] {
				sn.Scopes[kind+":"+id] = seq
			}
		}
	}
	if m.stopped {
		close(s.ch)
	} else {
		m.subs[s] = struct{}{}
	}
	m.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			m.mu.Lock()
			if _, ok := m.subs[s]; ok {
				delete(m.subs, s)
				close(s.ch)
			}
			m.mu.Unlock()
		})
	}
	return sn, s.ch, cancel
}

// recentLocked copies the recent events out, oldest first.
func (m *Manager) recentLocked() []Event {
	if len(m.recent) == 0 {
		return nil
	}
	out := make([]Event, 0, len(m.recent))
	out = append(out, m.recent[m.recentHead:]...)
	return append(out, m.recent[:m.recentHead]...)
}

// keepRecent adds a durable event to the recent ring, in place once full:
// no allocation per event then.
func (m *Manager) keepRecent(ev Event) {
	if m.o.Recent == 0 {
		return
	}
	ev.Alarm.History = nil
	if len(m.recent) < m.o.Recent {
		m.recent = append(m.recent, ev)
		return
	}
	m.recent[m.recentHead] = ev
	m.recentHead = (m.recentHead + 1) % len(m.recent)
}

// onTransition turns a rule's transition into an event of its condition's
// alarm.
func (m *Manager) onTransition(ctx context.Context, t model.Transition) {
	p := m.o.Plant
	k, where := -1, ""
	switch {
	case t.Rule == model.GatewaySilent && t.Sensor == -1 && t.Gateway >= 0 && int(t.Gateway) < len(p.Gateways):
		k, where = m.gatewaySlot(t.Gateway), p.Gateways[t.Gateway].ID
	case t.Rule != model.GatewaySilent && t.Sensor >= 0 && int(t.Sensor) < len(p.Sensors) && t.Rule < model.NumRuleKinds:
		k, where = slot(t.Sensor, t.Rule), p.Sensors[t.Sensor].ID
	}
	if k < 0 {
		m.log.Warn("transition of an unknown sensor, gateway or rule dropped", "sensor", t.Sensor, "gateway", t.Gateway, "rule", t.Rule)
		return
	}
	a, ok := m.latest(k)
	if !ok {
		a = m.template(t)
	}
	ev := Event{
		Op: OpReturn, Level: t.Level, Value: t.Value, Limit: t.Limit,
		TS: time.UnixMilli(t.TS).UTC(), Late: t.Late,
	}
	if t.ETA != 0 {
		ev.ETA = time.UnixMilli(t.ETA).UTC()
	}
	if t.Reason != model.ReasonNone {
		ev.Reason = t.Reason.String()
	}
	if t.Active {
		ev.Op = OpRaise
		if a.State != model.StateNormal && a.Active {
			ev.Op = OpLevelChange
		}
		ev.LimitKind = m.limitKind(t)
	}
	if err := m.stage(a, ev, m.policy(a, t.Sensor)); err != nil {
		m.log.Error("transition not applied", "source", where, "rule", t.Rule, "err", err)
	}
}

// onAct stages an operator's action; it is answered once the batch it is
// in is durable (flush), a refusal too, so that no answer rests on a state
// that is not durable yet.
func (m *Manager) onAct(_ context.Context, r actReq) {
	var err error
	if err = r.ctx.Err(); err == nil { // else the caller has gone: do not act for it
		if a, ok := m.alarm(r.id); !ok {
			err = fmt.Errorf("%w: %s", ErrNotFound, r.id)
		} else {
			err = m.stage(a, r.ev, m.policyOf(a))
		}
	}
	m.b.replies = append(m.b.replies, reply{ch: r.reply, err: err})
}

// onDue stages the event of every timer whose time has come by the
// Manager's clock, each with the time it was due. A timer whose alarm has
// moved on (unshelved by hand, acknowledged, given its feedback) is
// dropped by Next, which checks the due time against the alarm's own.
func (m *Manager) onDue(ctx context.Context) {
	now := m.clock()
	for len(m.b.evs) < m.o.MaxBatch && ctx.Err() == nil {
		d, ok := m.timers.popDue(now)
		if !ok {
			return
		}
		if d.kind == dueHolds {
			m.syncHolds(now, nil, "")
			continue
		}
		if d.kind == dueService {
			// The period's end: "system", as no one returned it by hand.
			m.syncHolds(now, map[string]bool{d.id: true}, "system")
			continue
		}
		if d.kind == dueFlood {
			m.publishFloods(m.floods.expire(now))
			if at, ok := m.floods.next(); ok && at.After(now) {
				m.timers.push(at, "", dueFlood)
			}
			continue
		}
		a, ok := m.alarm(d.id)
		if !ok {
			continue
		}
		if err := m.stage(a, Event{Op: d.kind, Due: d.at}, m.policyOf(a)); err != nil {
			m.log.Error("timer not applied", "alarm", d.id, "op", d.kind, "due", d.at, "err", err)
		}
	}
}

// apply makes a durable event the current state: live (deliver) or from
// the log at start.
func (m *Manager) apply(ev Event, deliver bool) {
	a := ev.Alarm
	prev := m.alarms[a.ID]
	// Appended in place: readers get clones (Get, Active), and writing
	// past the end of the slice the map held changes nothing they hold.
	a.History = append(prev.History, Entry{
		Seq: ev.Seq.Global, Event: ev.Name, At: ev.At, TS: ev.TS, State: a.State, Level: a.Level,
		Value: a.Value, User: ev.User, Comment: ev.Comment, Reason: ev.Reason, Due: ev.Due, Late: ev.Late,
		Notified: ev.Notified,
	})
	if deliver {
		m.pushTimers(a, prev)
	}
	var started []Flood
	if ev.Name == Raised && prev.ID == "" && !a.Held() && m.floods.on() {
		// A new alarm in view counts towards a flood of its enterprise
		// and of its park.
		for _, sc := range [...][2]string{{"enterprise", a.Source.Enterprise}, {"park", a.Source.Park}} {
			if f, ok := m.floods.add(sc[0], sc[1], ev.At); ok {
				started = append(started, f)
			}
		}
		if deliver {
			m.timers.push(ev.At.Add(m.floods.w.Window), "", dueFlood)
		}
	}
	m.global = max(m.global, ev.Seq.Global)
	if sl, ok := m.slotOf(a); ok && m.newer(a, m.slots[sl]) {
		m.slots[sl] = a.ID
	}
	m.mu.Lock()
	// The scope counters are written under mu too, so that a snapshot can
	// say the last seq of each scope it includes.
	for i, id := range m.scopeIDs(a.Source) {
		if id != "" {
			m.scope[i][id] = max(m.scope[i][id], *m.scopeSeq(&ev.Seq, i))
		}
	}
	m.alarms[a.ID] = a
	m.lastSeq = m.global
	m.keepRecent(ev)
	if started != nil {
		m.flooding = m.floods.active()
		if deliver {
			m.sendFloods(started)
		}
	}
	if deliver {
		m.met.events.WithLabelValues(ev.Name.String()).Inc()
		for s := range m.subs {
			select {
			case s.ch <- ev:
			default:
				delete(m.subs, s)
				close(s.ch)
				m.log.Warn("alarm subscriber too slow: dropped", "seq", ev.Seq.Global, "buffer", cap(s.ch))
			}
		}
	}
	m.mu.Unlock()
}

func slot(sensor int32, r model.RuleKind) int {
	return int(sensor)*int(model.NumRuleKinds) + int(r)
}

// gatewaySlot is the slot of a gateway's condition, after the sensors'.
func (m *Manager) gatewaySlot(g int32) int {
	return len(m.o.Plant.Sensors)*int(model.NumRuleKinds) + int(g)
}

func (m *Manager) scopeIDs(s Source) [3]string {
	return [3]string{s.Enterprise, s.Park, s.County}
}

func (m *Manager) scopeSeq(q *Seqs, i int) *uint64 {
	return [3]*uint64{&q.Enterprise, &q.Park, &q.County}[i]
}

// template is the never-raised alarm of a condition: where it comes from
// and what it measures, in state normal.
func (m *Manager) template(t model.Transition) Alarm {
	p := m.o.Plant
	if t.Rule == model.GatewaySilent {
		// A gateway's condition: no sensor, no hazard source.
		g := &p.Gateways[t.Gateway]
		src := Source{Gateway: g.ID}
		m.enterpriseScope(&src, g.Enterprise)
		return Alarm{Class: t.Class, Rule: t.Rule, Source: src, Unit: "s"}
	}
	s := &p.Sensors[t.Sensor]
	src := Source{Sensor: s.ID}
	m.enterpriseScope(&src, s.Enterprise)
	if s.HazardSource >= 0 {
		src.HazardSource = p.HazardSources[s.HazardSource].ID
	}
	if s.Gateway >= 0 {
		src.Gateway = p.Gateways[s.Gateway].ID
	}
	unit := s.Unit
	switch t.Rule {
	case model.Silent:
		unit = "s"
	case model.RateRise, model.RateFall:
		unit = s.Unit + "/min"
	case model.BadQuality, model.Voted:
		unit = "" // a count of readings, of detectors
	case model.SISBypass:
		unit = "" // a state and a hazard source's level
	}
	return Alarm{Class: t.Class, Rule: t.Rule, Source: src, SensorName: s.Name, Kind: s.Kind, Unit: unit}
}

// enterpriseScope fills in the enterprise, park and county of enterprise e.
func (m *Manager) enterpriseScope(src *Source, e int32) {
	p := m.o.Plant
	if e < 0 {
		return
	}
	en := &p.Enterprises[e]
	src.Enterprise = en.ID
	if en.Park >= 0 {
		pk := &p.Parks[en.Park]
		src.Park = pk.ID
		if pk.County >= 0 {
			src.County = p.Counties[pk.County].ID
		}
	}
}

// SetRules makes the occurrences that start from now on follow rs, by
// sensor index (whether they latch, the names of their limits): the
// centre calls it when a reload of the rule files takes effect. An open
// occurrence keeps the latch it started with. Safe to call from any
// goroutine.
func (m *Manager) SetRules(rs []model.SensorRules) { m.rules.Store(&rs) }

// sensorRules are the rules in force: the last SetRules, else
// Options.Rules.
func (m *Manager) sensorRules() []model.SensorRules {
	if rs := m.rules.Load(); rs != nil {
		return *rs
	}
	return m.o.Rules
}

// policyOf is policy for an alarm found by id: its sensor may have left
// the plant files.
func (m *Manager) policyOf(a Alarm) Policy {
	si, ok := m.o.Plant.SensorIndex(a.Source.Sensor)
	if !ok {
		si = -1
	}
	return m.policy(a, si)
}

// policy is the rules' word for a new occurrence; an open one keeps the
// latch it started with, so a rules reload does not change an alarm
// half-way.
func (m *Manager) policy(a Alarm, sensor int32) Policy {
	pol := Policy{Latch: a.Latch, MaxShelve: m.o.MaxShelve, Escalation: m.o.Alarms.Escalation,
		Chatter: m.o.Alarms.Chatter, Contacts: m.contactsOf(a.Source)}
	if a.State == model.StateNormal {
		// A new occurrence starts under the suppression by design in
		// force (the enterprise suspended, a maintenance window), and out
		// of service while its instrument is.
		now := m.clock()
		pol.Suppression = m.holdOf(a.Source, now)
		pol.OutOfService = m.serviceOf(a.Source, now)
	}
	if a.Rule == model.GatewaySilent {
		// Offline never latches; a gateway ranks by the most hazardous
		// source its sensors watch.
		if a.State == model.StateNormal {
			pol.Latch = false
		}
		pol.SourceLevel = m.gatewaySourceLevel(a.Source.Gateway)
		return pol
	}
	if sensor < 0 {
		return pol
	}
	if a.State == model.StateNormal {
		// Latching is for alarms of the value (gas alarms, GDS panels): a
		// prewarning, a fault or offline ends with its condition.
		rs := m.sensorRules()
		pol.Latch = a.Class == model.ClassAlarm && int(sensor) < len(rs) && rs[sensor].Latch
	}
	if hs := m.o.Plant.Sensors[sensor].HazardSource; hs >= 0 {
		pol.SourceLevel = m.o.Plant.HazardSources[hs].Level
	}
	return pol
}

// gatewaySourceLevel is the highest GB 18218 level (1 is the highest) of
// the hazard sources that gateway id's sensors watch; 0 when none. A scan
// of the sensors: gateway alarms are rare.
func (m *Manager) gatewaySourceLevel(id string) int {
	p := m.o.Plant
	g, ok := p.GatewayIndex(id)
	if !ok {
		return 0
	}
	level := 0
	for i := range p.Sensors {
		s := &p.Sensors[i]
		if s.Gateway != g || s.HazardSource < 0 {
			continue
		}
		if l := p.HazardSources[s.HazardSource].Level; l > 0 && (level == 0 || l < level) {
			level = l
		}
	}
	return level
}

// limitKind finds which configured limit a threshold transition or a
// prediction names, by its value; an edited rule file falls back to the
// level's usual limit.
func (m *Manager) limitKind(t model.Transition) string {
	switch t.Rule {
	case model.ThresholdHigh, model.ThresholdLow, model.PredictHigh, model.PredictLow:
	default:
		return ""
	}
	if all := m.sensorRules(); t.Sensor >= 0 && int(t.Sensor) < len(all) {
		rs := &all[t.Sensor]
		for k := range model.NumLimits {
			if l := rs.Limits[k]; l.Set && l.Value == t.Limit && k.High() == t.Rule.High() {
				return k.String()
			}
		}
	}
	return limitKindOf(t.Rule, t.Level)
}

// openCount counts the open alarms, and the shelved ones among them.
func (m *Manager) openCount() (open, shelved int) {
	for _, a := range m.alarms {
		if a.State != model.StateNormal {
			open++
		}
		if a.Shelf.On() {
			shelved++
		}
	}
	return open, shelved
}
