// Package gateway is the edge side of hazardwatch: Modbus poll plans and
// the converters that turn register words into values, store-and-forward
// and the MQTT publisher (issues #3 and #4 build the rest on this).
package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"hazardwatch/internal/model"
)

// ErrShort is returned when a response holds fewer bytes than the value needs.
var ErrShort = errors.New("gateway: response too short for the value")

// Converter turns the bytes Modbus returned for one sensor into its value.
// It is bound once per sensor at start, so a poll does no lookups.
type Converter struct {
	reg model.Register
}

// NewConverter binds a converter to a register description.
func NewConverter(r model.Register) Converter { return Converter{reg: r} }

// Bytes is how many response bytes the value spans: 2 per register, and
// for a coil or discrete input the one byte holding its bit.
func (c Converter) Bytes() int {
	if c.bitArea() {
		return 1
	}
	return 2 * c.reg.Type.Words()
}

func (c Converter) bitArea() bool {
	return c.reg.Area == model.Coil || c.reg.Area == model.DiscreteInput
}

// raw assembles the value's words into one integer: registers arrive
// big-endian on the wire; byte_order little means the device swapped the two
// bytes of each register, word_order little that the least significant
// register comes first.
func (c Converter) raw(b []byte) uint64 {
	n := c.reg.Type.Words()
	var u uint64
	for i := range n {
		j := i
		if c.reg.WordOrder == model.LittleEndian {
			j = n - 1 - i
		}
		w := binary.BigEndian.Uint16(b[2*j:])
		if c.reg.ByteOrder == model.LittleEndian {
			w = w<<8 | w>>8
		}
		u = u<<16 | uint64(w)
	}
	return u
}

// Decode returns the value in the sensor's unit: raw · scale + offset; a
// bit is 0 or 1. b starts at the value's first byte. For a coil or discrete
// input, b[0] is the byte holding the bit and bitIndex says which bit.
func (c Converter) Decode(b []byte, bitIndex int) (float64, error) {
	if len(b) < c.Bytes() {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrShort, len(b), c.Bytes())
	}
	if c.bitArea() {
		return float64(b[0] >> (bitIndex & 7) & 1), nil
	}
	u := c.raw(b)
	var v float64
	switch c.reg.Type {
	case model.Uint16, model.Uint32:
		v = float64(u)
	case model.Int16:
		v = float64(int16(u))
	case model.Int32:
		v = float64(int32(u))
	case model.Float32:
		v = float64(math.Float32frombits(uint32(u)))
	case model.Float64:
		v = math.Float64frombits(u)
	case model.Bit:
		return float64(u >> uint(c.reg.Bit) & 1), nil
	}
	return v*c.reg.Scale + c.reg.Offset, nil
}

// Encode writes v (in the sensor's unit) as the device would hold it: the
// inverse of Decode, for the plant simulator. Integer types round and clamp
// to their range. For a bit of a register, the bit is set or cleared in dst
// and the other bits are kept.
func (c Converter) Encode(v float64, dst []byte) {
	if c.bitArea() {
		dst[0] = 0
		if v >= 0.5 {
			dst[0] = 1
		}
		return
	}
	var u uint64
	raw := (v - c.reg.Offset) / c.reg.Scale
	switch c.reg.Type {
	case model.Uint16:
		u = uint64(clampRound(raw, 0, math.MaxUint16))
	case model.Int16:
		u = uint64(uint16(int16(clampRound(raw, math.MinInt16, math.MaxInt16))))
	case model.Uint32:
		u = uint64(clampRound(raw, 0, math.MaxUint32))
	case model.Int32:
		u = uint64(uint32(int32(clampRound(raw, math.MinInt32, math.MaxInt32))))
	case model.Float32:
		u = uint64(math.Float32bits(float32(raw)))
	case model.Float64:
		u = math.Float64bits(raw)
	case model.Bit:
		u = c.raw(dst)
		mask := uint64(1) << uint(c.reg.Bit)
		u &^= mask
		if v >= 0.5 {
			u |= mask
		}
	}
	n := c.reg.Type.Words()
	for i := range n {
		w := uint16(u >> (16 * (n - 1 - i)))
		if c.reg.ByteOrder == model.LittleEndian {
			w = w<<8 | w>>8
		}
		j := i
		if c.reg.WordOrder == model.LittleEndian {
			j = n - 1 - i
		}
		binary.BigEndian.PutUint16(dst[2*j:], w)
	}
}

func clampRound(v, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, math.Round(v)))
}
