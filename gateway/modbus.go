package gateway

import (
	"fmt"
	"time"

	"github.com/goburrow/modbus"

	"hazardwatch/internal/model"
)

// ModbusClient is a Modbus client for one device and the handler that owns
// its connection. goburrow/modbus keeps its socket after a timeout, so the
// next answer can be the late one: callers close the handler after a
// timeout and let the next request reconnect.
type ModbusClient struct {
	modbus.Client
	closer interface{ Close() error }
}

// Close drops the connection; the next request opens a new one.
func (c ModbusClient) Close() error { return c.closer.Close() }

// NewModbusClient makes a client for dev, over TCP or RTU as configured.
func NewModbusClient(dev model.Device) (ModbusClient, error) {
	timeout := time.Duration(dev.TimeoutMS) * time.Millisecond
	switch dev.Transport {
	case model.ModbusTCP:
		h := modbus.NewTCPClientHandler(dev.Address)
		h.Timeout, h.SlaveId = timeout, dev.UnitID
		return ModbusClient{Client: modbus.NewClient(h), closer: h}, nil
	case model.ModbusRTU:
		h := modbus.NewRTUClientHandler(dev.Address)
		h.BaudRate, h.DataBits, h.Parity, h.StopBits = dev.BaudRate, 8, "N", 1
		h.Timeout, h.SlaveId = timeout, dev.UnitID
		return ModbusClient{Client: modbus.NewClient(h), closer: h}, nil
	}
	return ModbusClient{}, fmt.Errorf("gateway: device %s: unknown transport %d", dev.ID, dev.Transport)
}
