package gateway

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hazardwatch/internal/model"
)

// rtuSlave is a Modbus RTU device at the far end of a pseudo-terminal: the
// gateway's goburrow RTU client opens the pty's serial side as it would
// /dev/ttyS0 and talks RTU frames (CRC and all) over it.
type rtuSlave struct {
	master *os.File
	keep   *os.File // a second opening of the serial side, so the pty never hangs up between the client's reopenings
	path   string
	unit   byte
	regs   []uint16
	mode   atomic.Value // "", "exception N" (as a byte), "silent"
	wg     sync.WaitGroup
}

func newRTUSlave(t *testing.T, unit byte, regs []uint16) *rtuSlave {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	keep, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &rtuSlave{master: master, keep: keep, path: path, unit: unit, regs: regs}
	s.mode.Store("")
	s.wg.Go(s.serve)
	t.Cleanup(func() {
		_ = master.Close()
		_ = keep.Close()
		s.wg.Wait()
	})
	return s
}

// crc16 is the Modbus RTU CRC (polynomial 0xA001, initial 0xFFFF).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func withCRC(b []byte) []byte { return binary.LittleEndian.AppendUint16(b, crc16(b)) }

// serve answers read-holding-registers requests (8-byte frames).
func (s *rtuSlave) serve() {
	var req [8]byte
	for {
		if _, err := io.ReadFull(s.master, req[:]); err != nil {
			return
		}
		if crc16(req[:6]) != binary.LittleEndian.Uint16(req[6:]) || req[0] != s.unit {
			continue // a real slave ignores frames with a bad CRC or for another unit
		}
		fn, start, qty := req[1], binary.BigEndian.Uint16(req[2:]), binary.BigEndian.Uint16(req[4:])
		var resp []byte
		switch mode := s.mode.Load().(string); {
		case mode == "silent":
			continue
		case mode != "":
			resp = withCRC([]byte{s.unit, fn | 0x80, mode[0]})
		case fn != 3 || int(start)+int(qty) > len(s.regs):
			resp = withCRC([]byte{s.unit, fn | 0x80, 2})
		default:
			resp = []byte{s.unit, fn, byte(2 * qty)}
			for _, r := range s.regs[start : start+qty] {
				resp = binary.BigEndian.AppendUint16(resp, r)
			}
			resp = withCRC(resp)
		}
		if _, err := s.master.Write(resp); err != nil {
			return
		}
	}
}

// TestRTUOverSerialLine polls a device over Modbus RTU on a real serial line
// (a pseudo-terminal): values decode, an exception gives its reason, a
// device that stops answering times out (serial.ErrTimeout is a timeout),
// and the line is reopened and read again when it answers.
func TestRTUOverSerialLine(t *testing.T) {
	f := math.Float32bits(12.5)
	slave := newRTUSlave(t, 7, []uint16{421, 9, uint16(f >> 16), uint16(f)})
	p := &model.Plant{
		Enterprises: []model.Enterprise{{ID: "e"}},
		Gateways: []model.Gateway{{ID: "g", Devices: []model.Device{{ID: "rtu1", Transport: model.ModbusRTU,
			Address: slave.path, BaudRate: 19200, UnitID: 7, TimeoutMS: 300, MaxRegisters: 125}}}},
		Sensors: []model.Sensor{
			{ID: "level", RangeMin: 0, RangeMax: 10, Register: model.Register{Area: model.Holding, Address: 0, Type: model.Uint16, Bit: -1, Scale: 0.01}},
			{ID: "valve", RangeMin: 0, RangeMax: 1, Register: model.Register{Area: model.Holding, Address: 1, Type: model.Bit, Bit: 0, Scale: 1}},
			{ID: "temp", RangeMin: -40, RangeMax: 200, Register: model.Register{Area: model.Holding, Address: 2, Type: model.Float32, Bit: -1, Scale: 1}},
		},
	}
	p.Index()
	plan := planDevice(p, 0, 0)
	c, err := NewModbusClient(plan.device)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }

	tests := []struct {
		name   string
		mode   string
		want   []float64 // values when good
		reason model.QualityReason
		halted bool
	}{
		{name: "values", want: []float64{4.21, 1, 12.5}},
		{name: "exception 02", mode: "\x02", reason: model.ModbusException(2)},
		{name: "busy", mode: "\x06", reason: model.ModbusException(6), halted: true},
		{name: "silent", mode: "silent", reason: model.ReasonTimeout, halted: true},
		{name: "answers again", want: []float64{4.21, 1, 12.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slave.mode.Store(tt.mode)
			out, res := pollDevice(c, &plan, now, nil)
			if len(out) != 3 {
				t.Fatalf("%d readings, want 3", len(out))
			}
			if res.halted != tt.halted {
				t.Errorf("halted %v, want %v (%v)", res.halted, tt.halted, res.err)
			}
			for i, o := range out {
				switch {
				case tt.want != nil && (o.Quality != model.Good || math.Abs(o.Value-tt.want[i]) > 1e-9):
					t.Errorf("%s = %v (%s %s, %v), want %v", o.Sensor, o.Value, o.Quality, o.Reason, res.err, tt.want[i])
				case tt.want == nil && (o.Quality != model.Bad || o.Reason != tt.reason || o.HasValue):
					t.Errorf("%s: %s %s value %v, want bad %s and no value", o.Sensor, o.Quality, o.Reason, o.HasValue, tt.reason)
				}
			}
		})
	}
}
