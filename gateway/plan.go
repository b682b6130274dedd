package gateway

import (
	"cmp"
	"slices"

	"hazardwatch/internal/model"
)

// maxBits is the Modbus limit of one coil or discrete-input read.
const maxBits = 2000

// request is one Modbus read and the sensors it feeds.
type request struct {
	area     model.Area
	start    uint16
	quantity uint16 // registers, or bits for coils and discrete inputs
	bindings []binding
}

// binding places one sensor's value inside a request's response.
type binding struct {
	sensor int32
	id     string
	offset int // byte offset of the value in the response
	bit    int // for coils and discrete inputs: bit within the byte at offset
	conv   Converter
	min    float64
	max    float64
}

// devicePlan is every request of one device, planned once at start.
type devicePlan struct {
	device   model.Device
	requests []request
	sensors  int
}

// planDevice merges neighbouring registers of one area into as few reads as
// the device allows (its MaxRegisters, 125 at most; 2000 bits), binding each
// sensor's converter once.
func planDevice(p *model.Plant, gw, dev int32) devicePlan {
	d := p.Gateways[gw].Devices[dev]
	var idx []int32
	for i := range p.Sensors {
		if s := &p.Sensors[i]; s.Gateway == gw && s.Device == dev {
			idx = append(idx, int32(i))
		}
	}
	slices.SortFunc(idx, func(a, b int32) int {
		ra, rb := p.Sensors[a].Register, p.Sensors[b].Register
		return cmp.Or(cmp.Compare(ra.Area, rb.Area), cmp.Compare(ra.Address, rb.Address), cmp.Compare(ra.Bit, rb.Bit))
	})
	plan := devicePlan{device: d, sensors: len(idx)}
	var cur *request
	for _, si := range idx {
		s := &p.Sensors[si]
		r := s.Register
		bitArea := r.Area == model.Coil || r.Area == model.DiscreteInput
		width, limit := uint16(max(1, r.Type.Words())), uint16(max(1, d.MaxRegisters))
		if bitArea {
			width, limit = 1, maxBits
		}
		end := r.Address + width
		if cur == nil || cur.area != r.Area || end-cur.start > limit || r.Address < cur.start {
			plan.requests = append(plan.requests, request{area: r.Area, start: r.Address})
			cur = &plan.requests[len(plan.requests)-1]
		}
		cur.quantity = max(cur.quantity, end-cur.start)
		b := binding{sensor: si, id: s.ID, conv: NewConverter(r), min: s.RangeMin, max: s.RangeMax}
		if bitArea {
			n := int(r.Address - cur.start)
			b.offset, b.bit = n/8, n%8
		} else {
			b.offset = 2 * int(r.Address-cur.start)
		}
		cur.bindings = append(cur.bindings, b)
	}
	return plan
}
