// Package sim is the plant simulator: one Modbus TCP server per device of
// the plant, serving each sensor's current value in the registers, coils or
// discrete inputs the plant file maps it to, encoded exactly as the gateway
// will decode it (gateway.Converter.Encode). Values follow a scenario file
// that repeats, so the demo always has something happening.
//
// # Scenario files
//
// A scenario (`kind: scenario`, e.g. configs/demo/scenario.yaml) is decoded
// as strictly as the plant files, every error as file:line:col: field: what.
//
//	kind: scenario
//	cycle: 10m                  # required: the scenario repeats with this period
//	noise_pct:                  # per kind: noise amplitude in % of the instrument's span
//	  gas_toxic: 0.2            # (defaults below); valve, sis and energy have none
//	sensors:                    # per-sensor settings, by sensor id (all optional)
//	  e01-V101-LT: {baseline: 1.65, noise: 0.005}   # in the sensor's unit
//	  e03-PM-001-I: {follows: e03-PM-001, gain: 0.0642}  # A = gain × kW
//	  e03-PM-001-E: {baseline: 1284031.7, integrates: e03-PM-001}  # kWh counter
//	episodes:                   # times from the cycle start; they must end within it
//	  - {name: leak, type: ramp, sensor: e01-GT-101, start: 5s, rise: 2m, hold: 1m, fall: 150s, peak: 1.0}
//	  - {name: stuck, type: hold, sensor: e02-GT-402, start: 200s, duration: 150s, value: 4.0}
//	  - {name: cut, type: silent, gateway: gw-e02-1, device: plc2, start: 470s, duration: 60s}
//	  - {name: offline, type: uplink, gateway: gw-e01-1, start: 530s, duration: 60s}
//	  - {name: broken, type: fault, sensor: e02-GT-402, start: 350s, duration: 90s}
//
// A sensor's value at time t is its baseline (or gain × the noise-free value
// of the sensor it follows, or for an energy counter its baseline plus the
// integral of a power sensor since the simulator started), changed by the
// episode in force at t's place in the cycle, plus noise, clamped to the
// instrument's range. Episode types:
//
//   - ramp: from the value beneath it to peak in rise, held for hold, back
//     in fall (linear; noise stays on). A peak below the baseline is a dip.
//     The peak must lie within the range.
//   - hold: value, constant and without noise, for duration: a stuck
//     detector, a valve or SIS state, or a fault code out of the range
//     (no clamp). Without value, the sensor freezes at what it showed
//     when the episode began.
//   - silent: the device (or every device of the gateway when device is
//     left out) stops answering for duration: connections are accepted and
//     requests read but never answered, so clients time out, as they do
//     when a link is cut.
//   - uplink: the gateway's link to the centre is cut for duration. The
//     simulator has no such link itself: it tells Options.OnUplink when the
//     cut begins and ends, and the demo cuts a proxy between the gateway and
//     the MQTT broker (internal/netcut), so the gateway's queue fills and
//     drains. Its devices keep answering.
//   - fault: the sensor's fault bit (its `fault:` in the plant files) is
//     set for duration: the device says the sensor's reading is not to be
//     trusted. The value goes on as the sensor's other episodes make it,
//     so a fault may be given the same start and duration as a hold that
//     shows the fault code.
//
// Episodes of one sensor, one device, one gateway's uplink or one sensor's
// fault bit may not overlap; a fault episode may overlap the sensor's ramps
// and holds. Defaults when the file says nothing: level, pressure,
// temperature and flow at 40 % of the span; gas detectors at the bottom of
// the range, oxygen 20.9 %VOL; valves closed (0), SIS normal (0), counters
// at the bottom of the range; power and current at 40 % of the span for an
// operating enterprise, else power at 80 % of its idle_power_kw (2 % of the
// span when none). Noise amplitudes: combustible 0.5 %, toxic 0.2 %, oxygen
// 0.4 %, flow 0.3 %, the other measured kinds 0.2 % of the span: inside the
// demo rules' deadbands.
//
// # Modbus behaviour
//
// Each device listens on its configured address (or Options.Listen's).
// A request that touches any address where no sensor's value or fault bit
// lies answers exception 02 (illegal data address), as strict PLCs do: a
// poll plan must not read across gaps. A request for another unit id than
// the device's answers 0A (gateway path unavailable): the address reaches
// something, but not that unit, which is what a Modbus gateway says and
// what points an engineer at a wrong unit_id. Writes answer 01 (illegal
// function): the simulated devices are read-only. Bits of a status word,
// values and fault bits alike, are set or cleared one by one in the same
// register; a fault bit reads 0 unless a fault episode or SetFault sets it.
//
// # Time and goroutines
//
// Values are computed from the clock at request time, not by a ticker: a
// value is then exact for any injected clock, tests need no waiting for a
// tick, and nothing runs for devices nobody polls. The one thing that must
// change without a request is a device going silent or answering again
// (a silent device has no server to ask) and an uplink being cut or
// restored, so one goroutine owned by the Simulator follows the silent and
// uplink episodes, calls Options.OnUplink, and logs episodes as they begin
// and end. UplinkCut and fault bits answer from the clock, like a value.
// Lock order: Simulator.mu before device.mu.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hazardwatch/gateway"
	"hazardwatch/internal/model"
)

// Options configures a Simulator; the zero value is usable.
type Options struct {
	// Listen maps a device (gateway id + "/" + device id) to the address to
	// listen on; a device not in the map listens on its configured address;
	// "127.0.0.1:0" picks a free port.
	Listen map[string]string
	Clock  func() time.Time // nil: time.Now
	Seed   int64            // noise seed; fixed in tests
	Logger *slog.Logger     // nil: discard

	// OnUplink is called when a scenario's uplink episode cuts a gateway's
	// link to the centre (up false) and when the link is whole again (up
	// true); a cut already in force when the simulator starts is reported
	// once, soon after Start. Calls come one at a time, in order, from the
	// goroutine that switches devices silent, so OnUplink must not block;
	// none comes after Close returns, and a cut in force when the simulator
	// stops is left as it is. nil: uplink episodes are only logged, as in a
	// process that has no link of its own to cut.
	OnUplink func(gateway string, up bool)
}

// Simulator serves the plant's devices over Modbus TCP.
type Simulator struct {
	plant *model.Plant
	sc    *Scenario // nil: baselines only
	plans []sensorPlan
	conv  []gateway.Converter
	clock func() time.Time
	epoch time.Time
	seed  int64
	log   *slog.Logger

	onUplink func(gateway string, up bool) // nil: uplink episodes are only logged

	// pins holds each sensor's pinned value as float64 bits; noPin (a NaN,
	// which Set refuses) means the scenario rules. Atomics let every
	// connection's goroutine read pins without a lock.
	pins []atomic.Uint64
	// faultConv encodes each sensor's fault bit (zero for a sensor without
	// one); faultSet is SetFault's, on top of the scenario's fault episodes.
	faultConv []gateway.Converter
	faultSet  []atomic.Bool

	devices []*device
	byKey   map[string]*device

	mu      sync.Mutex // guards started, closed, and the start of goroutines
	started bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

const noPin = 0x7FF8_0000_DEAD_BEEF // a quiet NaN

// New builds a simulator of plant p following scenario sc (nil: every
// sensor at its baseline with noise). Nothing listens until Start.
func New(p *model.Plant, sc *Scenario, opts Options) (*Simulator, error) {
	if p == nil {
		return nil, errors.New("sim: no plant")
	}
	if sc != nil && sc.plant != p {
		return nil, fmt.Errorf("sim: scenario %s was checked against another plant", sc.file)
	}
	s := &Simulator{
		plant: p, sc: sc, clock: opts.Clock, seed: opts.Seed, log: opts.Logger, onUplink: opts.OnUplink,
		pins:      make([]atomic.Uint64, len(p.Sensors)),
		faultConv: make([]gateway.Converter, len(p.Sensors)),
		faultSet:  make([]atomic.Bool, len(p.Sensors)),
		byKey:     map[string]*device{},
		stop:      make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.epoch = s.clock()
	if sc != nil {
		s.plans = sc.sensors
	} else {
		s.plans = defaultPlans(p, defaultNoisePct)
	}
	s.conv = make([]gateway.Converter, len(p.Sensors))
	for i := range p.Sensors {
		s.conv[i] = gateway.NewConverter(p.Sensors[i].Register)
		s.pins[i].Store(noPin)
		if f := p.Sensors[i].Fault; f != nil {
			s.faultConv[i] = gateway.NewConverter(*f)
		}
	}
	listen := map[string]string{}
	for k, v := range opts.Listen {
		listen[k] = v
	}
	for g := range p.Gateways {
		gw := &p.Gateways[g]
		for d := range gw.Devices {
			dev := &gw.Devices[d]
			key := gw.ID + "/" + dev.ID
			addr, mapped := listen[key]
			delete(listen, key)
			if !mapped {
				if dev.Transport != model.ModbusTCP {
					// A serial device has no TCP address of its own; a test
					// that wants it served over TCP maps it in Listen.
					s.log.Warn("simulator: skipping a serial device", "device", key)
					continue
				}
				addr = dev.Address
			}
			sd := newDevice(s, int32(g), int32(d), key, addr)
			s.devices = append(s.devices, sd)
			s.byKey[key] = sd
		}
	}
	if len(listen) > 0 {
		keys := make([]string, 0, len(listen))
		for k := range listen {
			keys = append(keys, k)
		}
		return nil, fmt.Errorf("sim: Options.Listen names devices the plant does not have: %s", strings.Join(keys, ", "))
	}
	return s, nil
}

// defaultPlans is every sensor at its default baseline and noise.
func defaultPlans(p *model.Plant, noisePct map[model.Kind]float64) []sensorPlan {
	plans := make([]sensorPlan, len(p.Sensors))
	for i := range p.Sensors {
		s := &p.Sensors[i]
		n := noisePct[s.Kind] / 100 * (s.RangeMax - s.RangeMin)
		if noiseless(s.Kind) {
			n = 0
		}
		plans[i] = sensorPlan{baseline: defaultBaseline(p, s), noise: n, follows: -1, integrates: -1, gain: 1}
	}
	return plans
}

// Start listens on every device and returns when all listen, or with the
// first error (after closing what it opened). The servers stop when ctx
// ends or Close is called.
func (s *Simulator) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sim: start: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("sim: start: the simulator is closed")
	case s.started:
		return errors.New("sim: start: already started")
	}
	for _, d := range s.devices {
		if err := d.start(); err != nil {
			for _, d := range s.devices {
				d.shutdown()
			}
			return fmt.Errorf("sim: start: %w", err)
		}
		s.log.Debug("simulated device listening", "device", d.key, "addr", d.addr, "unit", d.unit)
	}
	s.started = true
	s.wg.Add(1)
	go s.run(ctx)
	cycle := time.Duration(0)
	file := ""
	if s.sc != nil {
		cycle, file = s.sc.Cycle(), s.sc.file
	}
	s.log.Info("simulator started", "devices", len(s.devices), "sensors", len(s.plant.Sensors), "scenario", file, "cycle", cycle)
	if s.onUplink == nil && len(s.uplinks()) > 0 {
		s.log.Info("simulator: uplink episodes are only logged here: nothing in this process cuts a gateway's link")
	}
	return nil
}

// tick is how often the silent and uplink schedules are looked at.
// Silences and cuts last tens of seconds and gateways time out in hundreds
// of milliseconds, so a fifth of a second is plenty and costs nothing
// measurable.
const tick = 200 * time.Millisecond

// run follows the schedule until ctx ends or Close; then it stops the
// servers, so that "ctx ended" and "Close called" end the same way.
func (s *Simulator) run(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	st := newFollowed(s)
	for {
		p := s.sc.phase(s.elapsed())
		s.logEpisodes(st, p)
		s.followUplinks(st, p)
		for _, d := range s.devices {
			d.reconcile()
		}
		select {
		case <-ctx.Done():
			s.shutdown()
			s.log.Info("simulator stopped", "reason", ctx.Err())
			return
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Simulator) silences() []silence {
	if s.sc == nil {
		return nil
	}
	return s.sc.silences
}

func (s *Simulator) uplinks() []uplinkCut {
	if s.sc == nil {
		return nil
	}
	return s.sc.uplinks
}

func (s *Simulator) faults() []faultSpan {
	if s.sc == nil {
		return nil
	}
	return s.sc.faults
}

// followed is what the run goroutine last saw of the schedule, so that it
// acts on changes only. Only that goroutine touches it.
type followed struct {
	episodes map[*episode]bool
	silences []bool
	uplinks  []bool // per uplink episode
	faults   []bool // per fault episode
	cut      []bool // per gateway: the state last given to OnUplink
}

func newFollowed(s *Simulator) *followed {
	return &followed{
		episodes: map[*episode]bool{},
		silences: make([]bool, len(s.silences())),
		uplinks:  make([]bool, len(s.uplinks())),
		faults:   make([]bool, len(s.faults())),
		cut:      make([]bool, len(s.plant.Gateways)),
	}
}

// logEpisodes writes one line when an episode begins or ends at phase p:
// what a person watching the demo's console wants to know.
func (s *Simulator) logEpisodes(st *followed, p float64) {
	if s.sc == nil {
		return
	}
	active, activeSilence := st.episodes, st.silences
	for i := range s.plans {
		for j := range s.plans[i].episodes {
			e := &s.plans[i].episodes[j]
			on := p >= e.start && p < e.end
			if on != active[e] {
				active[e] = on
				s.log.Info(episodeMsg(on), "episode", e.name, "sensor", s.plant.Sensors[i].ID)
			}
		}
	}
	for j, si := range s.sc.silences {
		on := p >= si.start && p < si.end
		if on != activeSilence[j] {
			activeSilence[j] = on
			gw := &s.plant.Gateways[si.gateway]
			s.log.Info(episodeMsg(on), "episode", si.name, "device", gw.ID+"/"+gw.Devices[si.device].ID)
		}
	}
	for j, u := range s.sc.uplinks {
		on := u.at(p)
		if on != st.uplinks[j] {
			st.uplinks[j] = on
			s.log.Info(episodeMsg(on), "episode", u.name, "uplink", s.plant.Gateways[u.gateway].ID)
		}
	}
	for j, f := range s.sc.faults {
		on := f.at(p)
		if on != st.faults[j] {
			st.faults[j] = on
			s.log.Info(episodeMsg(on), "episode", f.name, "fault_bit", s.plant.Sensors[f.sensor].ID)
		}
	}
}

// followUplinks tells OnUplink of every gateway whose link changed at
// phase p. The state is per gateway, not per episode, so that two cuts
// back to back stay one cut.
func (s *Simulator) followUplinks(st *followed, p float64) {
	if s.onUplink == nil {
		return
	}
	for g := range st.cut {
		cut := s.uplinkCutAt(int32(g), p)
		if cut != st.cut[g] {
			st.cut[g] = cut
			s.onUplink(s.plant.Gateways[g].ID, !cut)
		}
	}
}

// UplinkCut reports whether a scenario episode cuts the gateway's link to
// the centre now; false for a gateway the plant does not have.
func (s *Simulator) UplinkCut(gateway string) bool {
	g, ok := s.plant.GatewayIndex(gateway)
	if !ok {
		return false
	}
	return s.uplinkCutAt(g, s.sc.phase(s.elapsed()))
}

// uplinkCutAt reports whether an uplink episode of gateway g is in force
// at phase p.
func (s *Simulator) uplinkCutAt(g int32, p float64) bool {
	for _, u := range s.uplinks() {
		if u.gateway == g && u.at(p) {
			return true
		}
	}
	return false
}

func episodeMsg(on bool) string {
	if on {
		return "scenario episode begins"
	}
	return "scenario episode ends"
}

// shutdown stops every device's server; safe to call more than once.
func (s *Simulator) shutdown() {
	for _, d := range s.devices {
		d.shutdown()
	}
}

// Close stops all servers and waits for the simulator's goroutines. The
// Modbus library's own accept and connection goroutines end as soon as
// their sockets close, which happens before Close returns; it gives no
// way to wait for them, so a leak check polls briefly.
func (s *Simulator) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.shutdown()
	s.wg.Wait()
	return nil
}

// Loopback is an Options.Listen that puts every device of p on a free
// loopback port: the demo and the tests never collide with anything on the
// machine, nor with each other.
func Loopback(p *model.Plant) map[string]string {
	listen := map[string]string{}
	for _, g := range p.Gateways {
		for _, d := range g.Devices {
			listen[g.ID+"/"+d.ID] = "127.0.0.1:0"
		}
	}
	return listen
}

// Addr returns the address the device listens on (":0" resolved once
// started), or "" for a device the simulator does not serve.
func (s *Simulator) Addr(gateway, device string) string {
	d := s.byKey[gateway+"/"+device]
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

func (s *Simulator) sensorIndex(sensor string) (int32, error) {
	i, ok := s.plant.SensorIndex(sensor)
	if !ok {
		return -1, fmt.Errorf("sim: no sensor %q", sensor)
	}
	return i, nil
}

// Set pins a sensor's value, overriding the scenario until Release.
func (s *Simulator) Set(sensor string, v float64) error {
	i, err := s.sensorIndex(sensor)
	if err != nil {
		return err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("sim: set %s: %v is not a finite number", sensor, v)
	}
	s.pins[i].Store(math.Float64bits(v))
	return nil
}

// Release gives a pinned sensor back to the scenario.
func (s *Simulator) Release(sensor string) error {
	i, err := s.sensorIndex(sensor)
	if err != nil {
		return err
	}
	s.pins[i].Store(noPin)
	return nil
}

func (s *Simulator) pinned(i int32) (float64, bool) {
	b := s.pins[i].Load()
	if b == noPin {
		return 0, false
	}
	return math.Float64frombits(b), true
}

// SetFault sets (on) or clears the sensor's fault bit, on top of the
// scenario's fault episodes: while either sets it, the device serves it as
// 1. The sensor must have a fault bit in the plant files.
func (s *Simulator) SetFault(sensor string, on bool) error {
	i, err := s.sensorIndex(sensor)
	if err != nil {
		return err
	}
	if s.plant.Sensors[i].Fault == nil {
		return fmt.Errorf("sim: set fault of %s: the sensor has no fault bit in the plant files", sensor)
	}
	s.faultSet[i].Store(on)
	return nil
}

// faultAt reports whether sensor i's fault bit is set t seconds after the
// epoch: by SetFault, or by a fault episode at that point of the cycle.
func (s *Simulator) faultAt(i int32, t float64) bool {
	if s.faultSet[i].Load() {
		return true
	}
	p, faults := s.sc.phase(t), s.faults()
	for j := range faults {
		if f := &faults[j]; f.sensor == i && f.at(p) {
			return true
		}
	}
	return false
}

// served is what the device holds for a sensor at t, with the converter
// that encodes it: the sensor's value, or (fault) its fault bit as 0 or 1.
func (s *Simulator) served(i int32, fault bool, t float64) (gateway.Converter, float64) {
	if !fault {
		return s.conv[i], s.current(i, t)
	}
	if s.faultAt(i, t) {
		return s.faultConv[i], 1
	}
	return s.faultConv[i], 0
}

// SetException makes every request to the device answer Modbus exception
// code (0: answer normally). The library can send 01–06, 08, 0A and 0B;
// any other code is sent as 04 (server device failure).
func (s *Simulator) SetException(gateway, device string, code byte) {
	d := s.byKey[gateway+"/"+device]
	if d == nil {
		s.log.Warn("simulator: SetException on an unknown device", "device", gateway+"/"+device)
		return
	}
	if code != 0 && exceptionError(code) == errDeviceFailure && code != 4 {
		s.log.Warn("simulator: exception code not supported by the Modbus library, sending 04", "code", code)
	}
	d.exception.Store(uint32(code))
}

// SetSilent makes the device stop answering (requests time out) while
// silent is true, on top of the scenario's silent episodes. It takes
// effect before it returns when the simulator is running.
func (s *Simulator) SetSilent(gateway, device string, silent bool) {
	d := s.byKey[gateway+"/"+device]
	if d == nil {
		s.log.Warn("simulator: SetSilent on an unknown device", "device", gateway+"/"+device)
		return
	}
	d.manualSilent.Store(silent)
	d.reconcile()
}

// Value returns the value the sensor's device serves now, as a client
// decodes it (after the register's scale and integer rounding), and false
// for an unknown sensor. A silent device still holds the value.
func (s *Simulator) Value(sensor string) (float64, bool) {
	i, ok := s.plant.SensorIndex(sensor)
	if !ok {
		return 0, false
	}
	var buf [8]byte
	c := s.conv[i]
	c.Encode(s.current(i, s.elapsed()), buf[:])
	v, err := c.Decode(buf[:], 0)
	if err != nil {
		return 0, false
	}
	return v, true
}

// elapsed is the time since the epoch in seconds.
func (s *Simulator) elapsed() float64 { return s.clock().Sub(s.epoch).Seconds() }

// current is the value served for sensor i at t: the pin, else the scenario.
func (s *Simulator) current(i int32, t float64) float64 {
	if v, ok := s.pinned(i); ok {
		return v
	}
	return s.value(i, t)
}

// silentAt reports whether a scenario episode silences device (g, d) at t.
func (s *Simulator) silentAt(g, d int32, t float64) bool {
	if s.sc == nil {
		return false
	}
	p := s.sc.phase(t)
	for _, si := range s.sc.silences {
		if si.gateway == g && si.device == d && p >= si.start && p < si.end {
			return true
		}
	}
	return false
}

// libLogger turns the Modbus library's log lines into debug records: they
// are about single connections (a client hung up), not events a person
// wants to read.
func libLogger(l *slog.Logger) *slogWriter { return &slogWriter{l: l} }

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(b []byte) (int, error) {
	w.l.Debug("modbus server", "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}

var _ io.Writer = (*slogWriter)(nil)
