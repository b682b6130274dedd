package gateway

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/goburrow/modbus"

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
func reasonOf(err error) (reason model.QualityReason, keepConn bool) {
	var me *modbus.ModbusError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		return model.ModbusException(me.ExceptionCode), true
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return model.ReasonTimeout, false
	}
	return model.ReasonConnection, false
}

// pollDevice reads every request of a device once and appends one reading
// per sensor: the decoded value, or q bad with the reason it could not be
// read — never a made-up value.
func pollDevice(c deviceClient, plan *devicePlan, now func() time.Time, out []telemetry.Out) ([]telemetry.Out, error) {
	var firstErr error
	for i := range plan.requests {
		r := &plan.requests[i]
		ts := now().UnixMilli()
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
			if firstErr == nil {
				firstErr = fmt.Errorf("device %s: read %s %d+%d: %w", plan.device.ID, r.area, r.start, r.quantity, err)
			}
			for _, b := range r.bindings {
				out = append(out, telemetry.Out{Sensor: b.id, TS: ts, Quality: model.Bad, Reason: reason})
			}
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
	}
	return out, firstErr
}

func responseBytes(r *request) int {
	if r.area == model.Coil || r.area == model.DiscreteInput {
		return (int(r.quantity) + 7) / 8
	}
	return 2 * int(r.quantity)
}
