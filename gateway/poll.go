package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/goburrow/modbus"
	"github.com/goburrow/serial"

	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// modbusReader is the part of a Modbus client a poll needs.
type modbusReader interface {
	ReadCoils(address, quantity uint16) ([]byte, error)
	ReadDiscreteInputs(address, quantity uint16) ([]byte, error)
	ReadHoldingRegisters(address, quantity uint16) ([]byte, error)
	ReadInputRegisters(address, quantity uint16) ([]byte, error)
}

// deviceClient is a Modbus client whose connection can be dropped.
type deviceClient interface {
	modbusReader
	Close() error
}

func read(c modbusReader, r *request) ([]byte, error) {
	switch r.area {
	case model.Coil:
		return c.ReadCoils(r.start, r.quantity)
	case model.DiscreteInput:
		return c.ReadDiscreteInputs(r.start, r.quantity)
	case model.Input:
		return c.ReadInputRegisters(r.start, r.quantity)
	}
	return c.ReadHoldingRegisters(r.start, r.quantity)
}

// reasonOf classifies a failed read. Anything but a Modbus exception leaves
// the connection in doubt: goburrow keeps its socket after a timeout, so a
// late answer could be taken for the next request's; the caller closes it.
//
// goburrow v0.1.0 (pinned) reports a frame it cannot use with errors made by
// fmt.Errorf, all starting "modbus: response" or "modbus: length in
// response" (a transaction, protocol or unit id that does not match, a byte
// count that disagrees with the frame): those are malformed responses. A
// frame cut off by the device closing the connection is a short response.
// Over a serial line (RTU) goburrow/serial reports no answer in time as
// serial.ErrTimeout, a plain error: it is a timeout too.
func reasonOf(err error) (reason model.QualityReason, keepConn bool) {
	var me *modbus.ModbusError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		return model.ModbusException(me.ExceptionCode), true
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, serial.ErrTimeout):
		return model.ReasonTimeout, false
	case errors.Is(err, io.ErrUnexpectedEOF):
		return model.ReasonShortResponse, false
	}
	if msg := err.Error(); strings.Contains(msg, "modbus: response") || strings.Contains(msg, "modbus: length in response") {
		return model.ReasonMalformedResponse, false
	}
	return model.ReasonConnection, false
}

// pollResult is what a device's poll says about the device itself.
type pollResult struct {
	// err is the first failure, for the log.
	err error
	// halted: the device did not answer (timeout, connection refused or
	// lost) or said it is busy (exception 06), so the rest of its requests
	// were not sent; every sensor of those requests carries reason.
	halted bool
	busy   bool
	reason model.QualityReason
}

// pollDevice reads every request of a device once and appends one reading
// per sensor: the decoded value, or q bad with the reason it could not be
// read — never a made-up value. When the device does not answer or is busy
// the remaining requests are not sent (each would wait out its own
// timeout): their sensors get the same reason at once. Once every request
// is done, a sensor whose fault bit reads 1 is marked bad device_fault
// (markFaults).
func pollDevice(c deviceClient, plan *devicePlan, now func() time.Time, out []telemetry.Out) ([]telemetry.Out, pollResult) {
	var res pollResult
	base := len(out)
	for i := range plan.requests {
		r := &plan.requests[i]
		r.readFaults(nil)
		ts := now().UnixMilli()
		if res.halted {
			out = r.appendBad(out, ts, res.reason)
			continue
		}
		data, err := read(c, r)
		if err == nil && len(data) < responseBytes(r) {
			err = fmt.Errorf("%w: %d bytes for %d %s", ErrShort, len(data), r.quantity, r.area)
		}
		if err != nil {
			reason, keep := reasonOf(err)
			if errors.Is(err, ErrShort) {
				reason, keep = model.ReasonShortResponse, false
			}
			if !keep {
				_ = c.Close() // reconnect on the next request
			}
			if res.err == nil {
				res.err = fmt.Errorf("device %s: read %s %d+%d: %w", plan.device.ID, r.area, r.start, r.quantity, err)
			}
			switch reason {
			case model.ReasonTimeout, model.ReasonConnection:
				res.halted, res.reason = true, reason
			case model.ModbusException(6): // slave device busy: ask again later
				res.halted, res.busy, res.reason = true, true, reason
			}
			out = r.appendBad(out, ts, reason)
			continue
		}
		for _, b := range r.bindings {
			v, err := b.conv.Decode(data[b.offset:], b.bit)
			o := telemetry.Out{Sensor: b.id, TS: ts, Value: v, HasValue: err == nil}
			switch {
			case err != nil:
				o.Quality, o.Reason = model.Bad, model.ReasonMalformedResponse
			case v < b.min || v > b.max:
				// A real reading outside the instrument's range: sent as it
				// is, marked so that the centre raises a fault, not an alarm.
				o.Quality, o.Reason = model.Bad, model.ReasonOutOfRange
			}
			out = append(out, o)
		}
		r.readFaults(data)
	}
	plan.markFaults(out[base:])
	return out, res
}

// readFaults notes what each fault bit of r reads in data, the response;
// nil (a read that failed or was not sent) notes none as on.
func (r *request) readFaults(data []byte) {
	for i := range r.faults {
		f := &r.faults[i]
		f.on = false
		if data != nil {
			v, err := f.conv.Decode(data[f.offset:], f.bit)
			f.on = err == nil && v == 1
		}
	}
}

// markFaults marks bad device_fault every reading of outs (the device's
// readings of this poll) whose sensor's fault bit is on. The value stays,
// as read: the device said it is not to be trusted, and the centre shows
// it beside the fault. A reading that could not be read keeps the reason
// of its failed read, which says more about why there is no value.
func (p *devicePlan) markFaults(outs []telemetry.Out) {
	for i := range p.requests {
		faults := p.requests[i].faults
		for j := range faults {
			if o := &outs[faults[j].out]; faults[j].on && o.HasValue {
				o.Quality, o.Reason = model.Bad, model.ReasonDeviceFault
			}
		}
	}
}

// appendBad appends q bad with reason and no value for every sensor of r.
func (r *request) appendBad(out []telemetry.Out, ts int64, reason model.QualityReason) []telemetry.Out {
	for _, b := range r.bindings {
		out = append(out, telemetry.Out{Sensor: b.id, TS: ts, Quality: model.Bad, Reason: reason})
	}
	return out
}

// appendBad appends q bad with reason for every sensor of the device: the
// slots a device in back-off is not asked.
func (p *devicePlan) appendBad(out []telemetry.Out, ts int64, reason model.QualityReason) []telemetry.Out {
	for i := range p.requests {
		out = p.requests[i].appendBad(out, ts, reason)
	}
	return out
}

func responseBytes(r *request) int {
	if r.area == model.Coil || r.area == model.DiscreteInput {
		return (int(r.quantity) + 7) / 8
	}
	return 2 * int(r.quantity)
}
