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
	// faults are the device's fault bits this read returns; they apply to
	// sensors whose values may come in another request.
	faults []faultBit
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

// faultBit places a sensor's fault bit inside a request's response.
type faultBit struct {
	sensor int32
	// out is where the sensor's reading stands among the device's
	// readings of one poll (requests in order, bindings in order).
	out    int
	offset int
	bit    int
	conv   Converter
	// on is what the bit read in the current poll; false when its request
	// failed or was not sent. Scratch, so that a poll allocates nothing:
	// a plan belongs to the one goroutine that polls its device.
	on bool
}

// devicePlan is every request of one device, planned once at start.
type devicePlan struct {
	device   model.Device
	requests []request
	sensors  int
}

// planned is one place to read: a sensor's value, or its fault bit.
type planned struct {
	sensor int32
	reg    model.Register
	fault  bool
}

// planDevice merges neighbouring registers of one area into as few reads as
// the device allows (its MaxRegisters, 125 at most; 2000 bits; across gaps
// of at most MaxGap unmapped registers), binding each
// sensor's converter once. Fault bits are read in the same merged requests
// as the values, wherever they lie.
func planDevice(p *model.Plant, gw, dev int32) devicePlan {
	d := p.Gateways[gw].Devices[dev]
	var items []planned
	sensors := 0
	for i := range p.Sensors {
		if s := &p.Sensors[i]; s.Gateway == gw && s.Device == dev {
			sensors++
			items = append(items, planned{sensor: int32(i), reg: s.Register})
			if s.Fault != nil {
				items = append(items, planned{sensor: int32(i), reg: *s.Fault, fault: true})
			}
		}
	}
	slices.SortFunc(items, func(a, b planned) int {
		ra, rb := a.reg, b.reg
		return cmp.Or(cmp.Compare(ra.Area, rb.Area), cmp.Compare(ra.Address, rb.Address), cmp.Compare(ra.Bit, rb.Bit))
	})
	plan := devicePlan{device: d, sensors: sensors}
	var cur *request
	for _, it := range items {
		s := &p.Sensors[it.sensor]
		r := it.reg
		bitArea := r.Area == model.Coil || r.Area == model.DiscreteInput
		width, limit := uint16(max(1, r.Type.Words())), uint16(max(1, d.MaxRegisters))
		if bitArea {
			width, limit = 1, maxBits
		}
		end := r.Address + width
		// A new read at another area, at the device's limit, or after a gap
		// wider than the device allows.
		if cur == nil || cur.area != r.Area || end-cur.start > limit || r.Address < cur.start ||
			int(r.Address) > int(cur.start)+int(cur.quantity)+d.MaxGap {
			plan.requests = append(plan.requests, request{area: r.Area, start: r.Address})
			cur = &plan.requests[len(plan.requests)-1]
		}
		cur.quantity = max(cur.quantity, end-cur.start)
		offset, bit := 2*int(r.Address-cur.start), 0
		if bitArea {
			n := int(r.Address - cur.start)
			offset, bit = n/8, n%8
		}
		if it.fault {
			cur.faults = append(cur.faults, faultBit{sensor: it.sensor, offset: offset, bit: bit, conv: NewConverter(r)})
			continue
		}
		cur.bindings = append(cur.bindings, binding{sensor: it.sensor, id: s.ID, offset: offset, bit: bit, conv: NewConverter(r), min: s.RangeMin, max: s.RangeMax})
	}
	// Every request appends one reading per binding whatever happens, so
	// each sensor's place among the readings is known now.
	out := map[int32]int{}
	for i := range plan.requests {
		for _, b := range plan.requests[i].bindings {
			out[b.sensor] = len(out)
		}
	}
	for i := range plan.requests {
		for j := range plan.requests[i].faults {
			f := &plan.requests[i].faults[j]
			f.out = out[f.sensor]
		}
	}
	return plan
}
