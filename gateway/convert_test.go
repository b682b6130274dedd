package gateway

import (
	"bytes"
	"math"
	"testing"

	"hazardwatch/internal/model"
)

func reg(t model.DataType, bo, wo model.ByteOrder, scale, offset float64) model.Register {
	return model.Register{Area: model.Holding, Type: t, Bit: -1, ByteOrder: bo, WordOrder: wo, Scale: scale, Offset: offset}
}

func TestDecode(t *testing.T) {
	big, little := model.BigEndian, model.LittleEndian
	tests := []struct {
		name string
		reg  model.Register
		wire []byte
		want float64
	}{
		{"uint16", reg(model.Uint16, big, big, 1, 0), []byte{0x01, 0x02}, 258},
		{"uint16 scaled", reg(model.Uint16, big, big, 0.1, 0), []byte{0x03, 0xE8}, 100},
		{"uint16 byte-swapped", reg(model.Uint16, little, big, 1, 0), []byte{0x02, 0x01}, 258},
		{"int16 negative with offset", reg(model.Int16, big, big, 0.1, -40), []byte{0xFF, 0x9C}, -50},
		{"uint32 ABCD", reg(model.Uint32, big, big, 1, 0), []byte{0x00, 0x01, 0x00, 0x02}, 65538},
		{"uint32 CDAB", reg(model.Uint32, big, little, 1, 0), []byte{0x00, 0x02, 0x00, 0x01}, 65538},
		{"uint32 BADC", reg(model.Uint32, little, big, 1, 0), []byte{0x01, 0x00, 0x02, 0x00}, 65538},
		{"uint32 DCBA", reg(model.Uint32, little, little, 1, 0), []byte{0x02, 0x00, 0x01, 0x00}, 65538},
		{"int32 negative", reg(model.Int32, big, big, 0.01, 0), []byte{0xFF, 0xFF, 0xFF, 0x9C}, -1},
		{"float32 ABCD", reg(model.Float32, big, big, 1, 0), []byte{0x40, 0x49, 0x0F, 0xDB}, float64(float32(math.Pi))},
		{"float32 CDAB", reg(model.Float32, big, little, 1, 0), []byte{0x0F, 0xDB, 0x40, 0x49}, float64(float32(math.Pi))},
		{"float64", reg(model.Float64, big, big, 1, 0), []byte{0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18}, math.Pi},
		{"bit 3 set", model.Register{Area: model.Holding, Type: model.Bit, Bit: 3, Scale: 1}, []byte{0x00, 0x08}, 1},
		{"bit 9 set", model.Register{Area: model.Holding, Type: model.Bit, Bit: 9, Scale: 1}, []byte{0x02, 0x00}, 1},
		{"bit 3 clear", model.Register{Area: model.Holding, Type: model.Bit, Bit: 3, Scale: 1}, []byte{0xFF, 0xF7}, 0},
		{"coil", model.Register{Area: model.Coil, Type: model.Bit, Bit: -1, Scale: 1}, []byte{0x01}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConverter(tt.reg)
			got, err := c.Decode(tt.wire, 0)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Decode = %v, want %v", got, tt.want)
			}
			// Encode must give the same wire bytes back.
			dst := make([]byte, len(tt.wire))
			if tt.reg.Type == model.Bit {
				copy(dst, tt.wire)
			}
			c.Encode(tt.want, dst)
			if !bytes.Equal(dst, tt.wire) {
				t.Errorf("Encode(%v) = % x, want % x", tt.want, dst, tt.wire)
			}
		})
	}
}

func TestDecodeShort(t *testing.T) {
	c := NewConverter(reg(model.Float32, model.BigEndian, model.BigEndian, 1, 0))
	if _, err := c.Decode([]byte{1, 2}, 0); err == nil {
		t.Fatal("Decode of 2 bytes for a float32 gave no error")
	}
}

func TestCoilBitIndex(t *testing.T) {
	c := NewConverter(model.Register{Area: model.DiscreteInput, Type: model.Bit, Bit: -1, Scale: 1})
	for i := range 8 {
		got, _ := c.Decode([]byte{0xA5}, i)
		if want := float64(byte(0xA5) >> uint(i) & 1); got != want {
			t.Errorf("bit %d = %v, want %v", i, got, want)
		}
	}
}

// FuzzConvertRoundTrip checks that Encode and Decode agree for every type
// and byte and word order: a raw value written as a device would hold it
// reads back as the same number.
func FuzzConvertRoundTrip(f *testing.F) {
	f.Add(uint8(4), uint8(0), uint8(1), uint64(0x40490FDB))
	f.Add(uint8(1), uint8(1), uint8(0), uint64(0xFF9C))
	f.Add(uint8(5), uint8(1), uint8(1), uint64(0x400921FB54442D18))
	f.Fuzz(func(t *testing.T, typ, bo, wo uint8, bits uint64) {
		r := reg(model.DataType(typ%6), model.ByteOrder(bo%2), model.ByteOrder(wo%2), 1, 0)
		var want float64
		switch r.Type {
		case model.Uint16:
			want = float64(uint16(bits))
		case model.Int16:
			want = float64(int16(bits))
		case model.Uint32:
			want = float64(uint32(bits))
		case model.Int32:
			want = float64(int32(bits))
		case model.Float32:
			want = float64(math.Float32frombits(uint32(bits)))
		case model.Float64:
			want = math.Float64frombits(bits)
		}
		if math.IsNaN(want) {
			return
		}
		c := NewConverter(r)
		buf := make([]byte, c.Bytes())
		c.Encode(want, buf)
		got, err := c.Decode(buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s bo=%d wo=%d: wrote %v, read %v (% x)", r.Type, r.ByteOrder, r.WordOrder, want, got, buf)
		}
	})
}
