package sim

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"

	"hazardwatch/internal/model"
)

// device is one simulated Modbus device: its register map, bound once at
// New, and the server (or, while silent, the black hole) on its address.
type device struct {
	s       *Simulator
	gw, dev int32
	key     string // gateway/device, for logs and the Listen map
	unit    uint8
	want    string // the address asked for; may end in :0

	// Register maps by area, sorted by address: holding and input
	// registers (a multi-word value or a bit of a status word is one
	// entry), then coils and discrete inputs. Fault bits are entries too.
	regs [2][]regEntry
	bits [2][]bitEntry

	exception    atomic.Uint32 // Modbus exception every request answers; 0 none
	manualSilent atomic.Bool   // SetSilent, on top of the scenario

	mu      sync.Mutex // guards the fields below
	addr    string     // the address listened on (":0" resolved)
	running bool       // between Start and shutdown: reconcile may open servers
	silent  bool       // the mode applied: hole (true) or Modbus server
	srv     *modbus.ModbusServer
	hole    *hole
}

type regEntry struct {
	sensor int32
	start  uint16
	end    uint32 // exclusive
	bit    bool   // a bit of a status word: other sensors share the register
	fault  bool   // the sensor's fault bit, not its value
}

type bitEntry struct {
	sensor int32
	addr   uint16
	fault  bool // the sensor's fault bit, not its value
}

func newDevice(s *Simulator, g, d int32, key, addr string) *device {
	dev := &device{s: s, gw: g, dev: d, key: key, want: addr, addr: addr, unit: s.plant.Gateways[g].Devices[d].UnitID}
	for i := range s.plant.Sensors {
		sen := &s.plant.Sensors[i]
		if sen.Gateway != g || sen.Device != d {
			continue
		}
		dev.add(int32(i), sen.Register, false)
		if sen.Fault != nil {
			dev.add(int32(i), *sen.Fault, true)
		}
	}
	for a := range dev.regs {
		slices.SortStableFunc(dev.regs[a], func(x, y regEntry) int { return cmp.Compare(x.start, y.start) })
		slices.SortStableFunc(dev.bits[a], func(x, y bitEntry) int { return cmp.Compare(x.addr, y.addr) })
	}
	return dev
}

// add maps register r of sensor i: its value, or its fault bit.
func (d *device) add(i int32, r model.Register, fault bool) {
	switch r.Area {
	case model.Holding, model.Input:
		d.regs[r.Area] = append(d.regs[r.Area], regEntry{
			sensor: i, start: r.Address, end: uint32(r.Address) + uint32(r.Type.Words()), bit: r.Type == model.Bit, fault: fault,
		})
	case model.Coil, model.DiscreteInput:
		d.bits[r.Area-model.Coil] = append(d.bits[r.Area-model.Coil], bitEntry{sensor: i, addr: r.Address, fault: fault})
	}
}

// start opens the device's listener in the mode the schedule wants. A
// ":0" address is resolved by asking the kernel for a free port first: the
// Modbus library binds its own listener and cannot report the port it got.
// Another process may take the port in between, so that case is retried.
func (d *device) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, port, err := net.SplitHostPort(d.want)
	if err != nil {
		return fmt.Errorf("device %s: address %q: %w", d.key, d.want, err)
	}
	silent := d.wantSilent()
	for attempt := 1; ; attempt++ {
		d.addr = d.want
		if port == "0" {
			if d.addr, err = freePort(d.want); err != nil {
				return fmt.Errorf("device %s: %w", d.key, err)
			}
		}
		err = d.up(silent)
		if err == nil {
			break
		}
		if port != "0" || attempt == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("device %s: %w", d.key, err)
		}
	}
	d.silent, d.running = silent, true
	return nil
}

func freePort(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	a := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	return a, nil
}

func (d *device) wantSilent() bool {
	return d.manualSilent.Load() || d.s.silentAt(d.gw, d.dev, d.s.elapsed())
}

// up opens the Modbus server, or the black hole when silent. d.mu is held.
func (d *device) up(silent bool) error {
	if silent {
		h, err := openHole(d.addr, &d.s.wg)
		if err != nil {
			return err
		}
		d.hole = h
		return nil
	}
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{
		URL:        "tcp://" + d.addr,
		Timeout:    time.Minute, // idle sessions; gateways poll every second or so
		MaxClients: 32,
		Logger:     log.New(libLogger(d.s.log.With("device", d.key)), "", 0),
	}, handler{d})
	if err != nil {
		return fmt.Errorf("modbus server on %s: %w", d.addr, err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("modbus server on %s: %w", d.addr, err)
	}
	d.srv = srv
	return nil
}

// down closes whatever listens. d.mu is held.
func (d *device) down() {
	if d.srv != nil {
		// Stop closes the listener and every client socket before it
		// returns; its goroutines end on those closed sockets.
		_ = d.srv.Stop()
		d.srv = nil
	}
	if d.hole != nil {
		d.hole.close()
		d.hole = nil
	}
}

// reconcile applies the wanted mode: a silent device swaps its Modbus
// server for the black hole on the same address, and back. A fresh
// library server is made each time: restarting a stopped one would race
// its old accept goroutine on the listener field.
func (d *device) reconcile() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return
	}
	want := d.wantSilent()
	listening := (d.silent && d.hole != nil) || (!d.silent && d.srv != nil)
	if want == d.silent && listening {
		return
	}
	if want != d.silent {
		if want {
			d.s.log.Info("device silent: requests time out", "device", d.key, "addr", d.addr, "manual", d.manualSilent.Load())
		} else {
			d.s.log.Info("device answering again", "device", d.key, "addr", d.addr)
		}
	}
	d.down()
	d.silent = want
	if err := d.up(want); err != nil {
		// Retried on the next tick; meanwhile clients see a refused connection.
		d.s.log.Warn("simulator: cannot listen", "device", d.key, "err", err)
	}
}

func (d *device) shutdown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = false
	d.down()
}

// Errors the Modbus library turns into exception codes.
var errDeviceFailure = modbus.ErrServerDeviceFailure

func exceptionError(code byte) error {
	switch code {
	case 0x01:
		return modbus.ErrIllegalFunction
	case 0x02:
		return modbus.ErrIllegalDataAddress
	case 0x03:
		return modbus.ErrIllegalDataValue
	case 0x05:
		return modbus.ErrAcknowledge
	case 0x06:
		return modbus.ErrServerDeviceBusy
	case 0x08:
		return modbus.ErrMemoryParityError
	case 0x0A:
		return modbus.ErrGWPathUnavailable
	case 0x0B:
		return modbus.ErrGWTargetFailedToRespond
	}
	return errDeviceFailure
}

// admit answers the checks every request passes first: a forced
// exception, then the unit id.
func (d *device) admit(unit uint8) error {
	if code := d.exception.Load(); code != 0 {
		return exceptionError(byte(code))
	}
	if unit != d.unit {
		return modbus.ErrGWPathUnavailable
	}
	return nil
}

// handler is the library's view of a device. Its methods run on the
// library's connection goroutines, concurrently; they read only the
// immutable maps, atomics and the clock.
type handler struct{ d *device }

func (h handler) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	if err := h.d.admit(req.UnitId); err != nil {
		return nil, err
	}
	if req.IsWrite {
		return nil, modbus.ErrIllegalFunction
	}
	return h.d.readBits(0, req.Addr, req.Quantity)
}

func (h handler) HandleDiscreteInputs(req *modbus.DiscreteInputsRequest) ([]bool, error) {
	if err := h.d.admit(req.UnitId); err != nil {
		return nil, err
	}
	return h.d.readBits(1, req.Addr, req.Quantity)
}

func (h handler) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	if err := h.d.admit(req.UnitId); err != nil {
		return nil, err
	}
	if req.IsWrite {
		return nil, modbus.ErrIllegalFunction
	}
	return h.d.readRegs(model.Holding, req.Addr, req.Quantity)
}

func (h handler) HandleInputRegisters(req *modbus.InputRegistersRequest) ([]uint16, error) {
	if err := h.d.admit(req.UnitId); err != nil {
		return nil, err
	}
	return h.d.readRegs(model.Input, req.Addr, req.Quantity)
}

// readRegs builds the words of [addr, addr+qty) from the sensors mapped
// there. Every address must belong to a sensor, else exception 02. The
// result slice is the one allocation: the library encodes it after the
// handler returns, so a shared buffer would race between connections.
func (d *device) readRegs(area model.Area, addr, qty uint16) ([]uint16, error) {
	entries := d.regs[area]
	end := uint32(addr) + uint32(qty)
	next := uint32(addr)
	for _, e := range entries {
		if uint32(e.start) > next {
			break
		}
		next = max(next, e.end)
		if next >= end {
			break
		}
	}
	if next < end {
		return nil, modbus.ErrIllegalDataAddress
	}
	out := make([]uint16, qty)
	t := d.s.elapsed()
	var buf [8]byte
	for _, e := range entries {
		if e.end <= uint32(addr) || uint32(e.start) >= end {
			continue
		}
		n := int(e.end - uint32(e.start))
		if e.bit {
			// Encode sets or clears one bit of the word it is given: give
			// it the word as the other bits left it.
			binary.BigEndian.PutUint16(buf[:], out[e.start-addr])
		}
		conv, v := d.s.served(e.sensor, e.fault, t)
		conv.Encode(v, buf[:2*n])
		for w := range n {
			a := uint32(e.start) + uint32(w)
			if a >= uint32(addr) && a < end {
				out[a-uint32(addr)] = binary.BigEndian.Uint16(buf[2*w:])
			}
		}
	}
	return out, nil
}

// readBits serves coils (area 0) or discrete inputs (area 1).
func (d *device) readBits(area int, addr, qty uint16) ([]bool, error) {
	entries := d.bits[area]
	end := uint32(addr) + uint32(qty)
	covered := 0
	for _, e := range entries {
		if uint32(e.addr) >= uint32(addr) && uint32(e.addr) < end {
			covered++
		}
	}
	if covered < int(qty) {
		return nil, modbus.ErrIllegalDataAddress
	}
	out := make([]bool, qty)
	t := d.s.elapsed()
	var buf [1]byte
	for _, e := range entries {
		if uint32(e.addr) >= uint32(addr) && uint32(e.addr) < end {
			conv, v := d.s.served(e.sensor, e.fault, t)
			conv.Encode(v, buf[:])
			out[e.addr-addr] = buf[0] == 1
		}
	}
	return out, nil
}

// hole is a silent device: it accepts connections and reads requests but
// never answers, so a client times out as it would behind a cut link
// (refusing the connection would fail fast, which is not what a cut does).
type hole struct {
	ln     net.Listener
	wg     *sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// openHole listens on addr; its goroutines count in wg so that Close waits
// for them.
func openHole(addr string, wg *sync.WaitGroup) (*hole, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("silent device on %s: %w", addr, err)
	}
	h := &hole{ln: ln, wg: wg, conns: map[net.Conn]struct{}{}}
	wg.Add(1)
	go h.accept()
	return h, nil
}

func (h *hole) accept() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return // closed; any other error leaves the backlog hanging, which is silent too
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			_ = c.Close()
			continue
		}
		h.conns[c] = struct{}{}
		h.wg.Add(1) // the accept goroutine's own count keeps the group above zero
		h.mu.Unlock()
		go h.drain(c)
	}
}

// drain reads and drops requests until the client hangs up or the hole
// closes, so that a client's socket never blocks on a full buffer.
func (h *hole) drain(c net.Conn) {
	defer h.wg.Done()
	_, _ = io.Copy(io.Discard, c)
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	_ = c.Close()
}

func (h *hole) close() {
	h.mu.Lock()
	h.closed = true
	conns := make([]net.Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	_ = h.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}
