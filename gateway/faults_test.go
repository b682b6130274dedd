package gateway_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hazardwatch/gateway"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testnet"
)

// rawDevice is a Modbus TCP server on loopback that misbehaves on purpose,
// in ways a maintained server library will not: any exception code, a
// frame with fewer registers than asked, a frame cut off mid-way, a
// transaction id that does not match, no answer, or a late one.
type rawDevice struct {
	ln    net.Listener
	mode  atomic.Value // string
	conns atomic.Int64 // connections accepted
	wg    sync.WaitGroup
}

func newRawDevice(t *testing.T, mode string) *rawDevice {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &rawDevice{ln: ln}
	d.mode.Store(mode)
	var mu sync.Mutex
	var open []net.Conn
	d.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			d.wg.Go(func() { d.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		d.wg.Wait()
	})
	return d
}

func (d *rawDevice) addr() string { return d.ln.Addr().String() }

// serve answers each request on c as the mode says: "exception N",
// "short", "cut", "wrong_tid", "silent" or "late".
func (d *rawDevice) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var hdr [7]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
		if _, err := io.ReadFull(r, pdu); err != nil || len(pdu) < 5 {
			return
		}
		fn, qty := pdu[0], binary.BigEndian.Uint16(pdu[3:])
		var body []byte
		mode := d.mode.Load().(string)
		switch {
		case strings.HasPrefix(mode, "exception "):
			code, _ := strconv.Atoi(strings.TrimPrefix(mode, "exception "))
			body = []byte{fn | 0x80, byte(code)}
		case mode == "short", mode == "cut", mode == "wrong_tid", mode == "late":
			n := 2 * int(qty)
			if fn == 1 || fn == 2 {
				n = (int(qty) + 7) / 8
			}
			if mode == "short" {
				n = max(0, n-2) // one register (or two bytes of bits) too few
			}
			body = append([]byte{fn, byte(n)}, make([]byte, n)...)
		case mode == "silent":
			continue
		}
		frame := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(hdr[0:]))
		if mode == "wrong_tid" {
			frame[1]++
		}
		frame = append(frame, 0, 0)
		frame = binary.BigEndian.AppendUint16(frame, uint16(len(body)+1))
		frame = append(frame, hdr[6])
		frame = append(frame, body...)
		switch mode {
		case "cut":
			_, _ = c.Write(frame[:len(frame)/2+4])
			return
		case "late":
			time.Sleep(600 * time.Millisecond) // past the client's 300 ms timeout
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

// metric reads one sample of the gateway's /metrics.
func metric(t *testing.T, g *gateway.Gateway, name, device string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `device="`+device+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// TestFaultMatrix runs gw-e02-1 against the simulator with its first
// device (plc1: holding registers, coils and a discrete input, so three
// requests) made to fail in every way a plant network shows: each
// exception code, a device that does not answer, a refused connection, a
// frame with too few registers, a frame cut off, a transaction id that
// does not match, a late answer. Every sensor of plc1 gets q bad with the
// right reason and no value, the reason is counted in /metrics, and the
// other four devices keep their own schedule: while plc1 times out they
// are polled several times as often.
func TestFaultMatrix(t *testing.T) {
	p, s, addrs := simulated(t, "gw-e02-1", 5)
	gi, _ := p.GatewayIndex("gw-e02-1")
	p.Gateways[gi].PollPeriodMS = 100
	for di := range p.Gateways[gi].Devices {
		d := &p.Gateways[gi].Devices[di]
		d.PollPeriodMS, d.TimeoutMS = 100, 300
	}
	const faulty, healthy = "plc1", "gds1"
	var faultySensors []int32
	for i, sn := range p.Sensors {
		if sn.Gateway == gi && p.Gateways[gi].Devices[sn.Device].ID == faulty {
			faultySensors = append(faultySensors, int32(i))
		}
	}
	url := broker(t)
	col := collect(t, url, p)
	refused := testnet.FreeAddr(t) // nobody listens there

	type fault struct {
		name   string
		raw    string // rawDevice mode; "" uses the simulator
		simExc byte   // simulator exception code
		silent bool   // simulator device silent
		addr   string // fixed address instead
		want   model.QualityReason
		// keepsConn: the raw device sees a single connection however many
		// polls fail (an exception answers; the link is fine).
		keepsConn bool
		backoff   bool // hw_gateway_backoff_seconds rises
		slow      bool // each poll waits out the timeout
	}
	cases := []fault{
		{name: "timeout", silent: true, want: model.ReasonTimeout, backoff: true, slow: true},
		{name: "connection refused", addr: refused, want: model.ReasonConnection, backoff: true},
		{name: "short frame", raw: "short", want: model.ReasonShortResponse},
		{name: "frame cut off", raw: "cut", want: model.ReasonShortResponse},
		{name: "transaction id mismatch", raw: "wrong_tid", want: model.ReasonMalformedResponse},
		{name: "late answer", raw: "late", want: model.ReasonTimeout, backoff: true, slow: true},
		{name: "exception 06 busy", raw: "exception 6", want: model.ModbusException(6), keepsConn: true, backoff: true},
		{name: "exception 04 keeps the connection", raw: "exception 4", want: model.ModbusException(4), keepsConn: true},
		{name: "exception 07", raw: "exception 7", want: model.ModbusException(7), keepsConn: true},
		{name: "exception 09", raw: "exception 9", want: model.ModbusException(9), keepsConn: true},
	}
	for _, code := range []byte{1, 2, 3, 4, 5, 6, 8, 0x0A, 0x0B} {
		cases = append(cases, fault{name: "simulator exception " + strconv.Itoa(int(code)), simExc: code, want: model.ModbusException(code), backoff: code == 6})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			devAddrs := map[string]string{}
			for k, v := range addrs {
				devAddrs[k] = v
			}
			var raw *rawDevice
			switch {
			case tc.raw != "":
				raw = newRawDevice(t, tc.raw)
				devAddrs[faulty] = raw.addr()
			case tc.addr != "":
				devAddrs[faulty] = tc.addr
			case tc.silent:
				s.SetSilent("gw-e02-1", faulty, true)
				defer s.SetSilent("gw-e02-1", faulty, false)
			default:
				s.SetException("gw-e02-1", faulty, tc.simExc)
				defer s.SetException("gw-e02-1", faulty, 0)
			}
			g, err := gateway.New(gateway.Options{Plant: p, Gateway: "gw-e02-1", Broker: url, DeviceAddr: devAddrs,
				PublishTimeout: 2 * time.Second, QueuePath: filepath.Join(t.TempDir(), "queue"), MaxBackoff: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			defer func() { cancel(); <-done }()

			// Every sensor of plc1 reports the fault; the healthy devices'
			// sensors are good.
			poll.Until(t, "every sensor of "+faulty+" bad with "+tc.want.String(), 15*time.Second, func() bool {
				latest := col.latest(g.Boot())
				for _, si := range faultySensors {
					r, ok := latest[si]
					if !ok || r.Quality != model.Bad || r.Reason != tc.want {
						return false
					}
				}
				return true
			})
			latest := col.latest(g.Boot())
			for si, r := range latest {
				dev := p.Gateways[gi].Devices[p.Sensors[si].Device].ID
				if dev == faulty && r.HasValue {
					t.Errorf("%s: a failed read carries a value %v", p.Sensors[si].ID, r.Value)
				}
				if dev != faulty && r.Quality == model.Bad && r.Reason != model.ReasonOutOfRange {
					t.Errorf("%s of the healthy device %s: %s %s", p.Sensors[si].ID, dev, r.Quality, r.Reason)
				}
			}
			if n := metric(t, g, "hw_gateway_read_errors_total", faulty); n < float64(len(faultySensors)) {
				t.Errorf("hw_gateway_read_errors_total{device=%q} = %v, want ≥ %d", faulty, n, len(faultySensors))
			}
			if tc.backoff {
				poll.Until(t, "a back-off", 10*time.Second, func() bool { return metric(t, g, "hw_gateway_backoff_seconds", faulty) > 0 })
			}
			if tc.slow {
				// The healthy devices keep their 100 ms schedule while
				// each of plc1's polls waits out 300 ms (and backs off).
				poll.Until(t, "three polls of "+faulty, 15*time.Second, func() bool { return metric(t, g, "hw_gateway_polls_total", faulty) >= 3 })
				f, h := metric(t, g, "hw_gateway_polls_total", faulty), metric(t, g, "hw_gateway_polls_total", healthy)
				t.Logf("polls: %s %v, %s %v", faulty, f, healthy, h)
				if h < 2*f {
					t.Errorf("%s polled %v times while %s was polled %v times: the healthy device waited for the faulty one", healthy, h, faulty, f)
				}
			}
			if raw != nil {
				if tc.keepsConn {
					if n := raw.conns.Load(); n != 1 {
						t.Errorf("%d connections: an exception must not drop the connection", n)
					}
				} else if n := raw.conns.Load(); n < 2 {
					t.Errorf("%d connection: a bad frame must drop the connection", n)
				}
			}
		})
	}
}
