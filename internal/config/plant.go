package config

import (
	"net"
	"regexp"
	"strconv"
	"time"

	"hazardwatch/internal/chem"
	"hazardwatch/internal/model"
)

var (
	hazardTypes = []string{"tank_farm", "storage_tank", "sphere", "warehouse", "process_unit"}
	phoneRE     = regexp.MustCompile(`^\+?[0-9][0-9 -]{4,19}$`)
)

const (
	defaultPollPeriod = time.Second
	// minPollPeriod: Modbus TCP on a plant LAN answers in a few ms, so a
	// fast loop (a compressor's discharge pressure) may be polled at 20 Hz.
	minPollPeriod       = 50 * time.Millisecond
	defaultTimeout      = time.Second
	defaultMaxRegisters = 125
)

// compilePlant checks the plant documents together and builds the model.
// It returns nil only when there is no plant at all.
func (l *loader) compilePlant() *model.Plant {
	if len(l.plants) == 0 {
		if len(l.rules) > 0 || len(l.errs) == 0 {
			l.errs = append(l.errs, Diag{Pos: Pos{File: "(config)", Line: 1, Col: 1}, Msg: "no plant file (kind: plant) among the files"})
		}
		return nil
	}
	p := &model.Plant{}
	counties := newIndex(l, "county")
	parks := newIndex(l, "park")
	ents := newIndex(l, "enterprise")
	hazards := newIndex(l, "hazard source")
	gws := newIndex(l, "gateway")
	sensors := newIndex(l, "sensor")

	// Ids first, over all files, so references may point forwards and
	// across files.
	for _, d := range l.plants {
		for i := range d.Counties {
			c := &d.Counties[i]
			if counties.add(&c.ID) {
				p.Counties = append(p.Counties, model.County{ID: c.ID, Name: c.Name, Duty: l.persons(c.Duty)})
			}
		}
		for i := range d.Parks {
			if parks.add(&d.Parks[i].ID) {
				p.Parks = append(p.Parks, model.Park{ID: d.Parks[i].ID, Name: d.Parks[i].Name})
			}
		}
		for i := range d.Enterprises {
			if ents.add(&d.Enterprises[i].ID) {
				p.Enterprises = append(p.Enterprises, model.Enterprise{ID: d.Enterprises[i].ID, Name: d.Enterprises[i].Name})
			}
		}
		for i := range d.HazardSources {
			if hazards.add(&d.HazardSources[i].ID) {
				p.HazardSources = append(p.HazardSources, model.HazardSource{ID: d.HazardSources[i].ID, Name: d.HazardSources[i].Name})
			}
		}
		for i := range d.Gateways {
			if gws.add(&d.Gateways[i].ID) {
				p.Gateways = append(p.Gateways, model.Gateway{ID: d.Gateways[i].ID})
			}
		}
		for i := range d.Sensors {
			if sensors.add(&d.Sensors[i].ID) {
				p.Sensors = append(p.Sensors, model.Sensor{ID: d.Sensors[i].ID, Name: d.Sensors[i].Name})
			}
		}
	}
	l.grades = make([]chem.Grade, len(p.HazardSources))
	gwDocs := make([]*gatewayDoc, len(p.Gateways))
	used := newUsage(l)
	for _, d := range l.plants {
		for i := range d.Parks {
			doc := &d.Parks[i]
			if pi, ok := parks.ids[doc.ID]; ok && parks.ptrs[pi] == &doc.ID {
				p.Parks[pi].County, _ = counties.ref(&doc.County)
				p.Parks[pi].Duty = l.persons(doc.Duty)
			}
		}
		for i := range d.Enterprises {
			doc := &d.Enterprises[i]
			ei, ok := ents.ids[doc.ID]
			if !ok || ents.ptrs[ei] != &doc.ID {
				continue
			}
			e := &p.Enterprises[ei]
			e.Park, _ = parks.ref(&doc.Park)
			st, ok := model.ParseEnterpriseStatus(doc.Status)
			if !ok {
				l.errorf(&doc.Status, "must be operating, stop_ordered or suspended, not %q", doc.Status)
			}
			e.Status = st
			e.Duty = l.persons(doc.Duty)
			e.Maintenance = l.maintenance(doc.Maintenance)
			if doc.IdlePowerKW != nil {
				if *doc.IdlePowerKW < 0 {
					l.errorf(doc.IdlePowerKW, "must not be negative")
				}
				e.IdlePowerKW = *doc.IdlePowerKW
			}
		}
		for i := range d.HazardSources {
			doc := &d.HazardSources[i]
			hi, ok := hazards.ids[doc.ID]
			if !ok || hazards.ptrs[hi] != &doc.ID {
				continue
			}
			l.hazardSource(doc, &p.HazardSources[hi], &l.grades[hi], ents)
		}
		for i := range d.Gateways {
			doc := &d.Gateways[i]
			gi, ok := gws.ids[doc.ID]
			if !ok || gws.ptrs[gi] != &doc.ID {
				continue
			}
			gwDocs[gi] = doc
			l.gateway(doc, &p.Gateways[gi], ents)
		}
	}
	l.sensorDocs = make([]*sensorDoc, len(p.Sensors))
	for _, d := range l.plants {
		for i := range d.Sensors {
			doc := &d.Sensors[i]
			si, ok := sensors.ids[doc.ID]
			if !ok || sensors.ptrs[si] != &doc.ID {
				continue
			}
			l.sensorDocs[si] = doc
			l.sensor(doc, &p.Sensors[si], p, ents, hazards, gws, gwDocs, used)
		}
	}
	l.reportUnverified()
	for gi, g := range p.Gateways {
		if gwDocs[gi] != nil && !used.gatewayUsed[int32(gi)] {
			l.warnf(&gwDocs[gi].ID, "gateway %q has no sensors", g.ID)
		}
	}
	p.Index()
	return p
}

func (l *loader) hazardSource(doc *hazardDoc, h *model.HazardSource, g *chem.Grade, ents *index) {
	h.Enterprise, _ = ents.ref(&doc.Enterprise)
	h.Type = doc.Type
	if !oneOf(doc.Type, hazardTypes...) {
		l.errorf(&doc.Type, "must be one of %s, not %q", quoteAll(hazardTypes), doc.Type)
	}
	if doc.People500m < 0 {
		l.errorf(&doc.People500m, "must not be negative")
	}
	h.People500m = doc.People500m
	h.Responsible = model.Responsible{
		Principal:   l.person(&doc.Responsible.Principal),
		Technical:   l.person(&doc.Responsible.Technical),
		Operational: l.person(&doc.Responsible.Operational),
	}
	if len(doc.Chemicals) == 0 {
		l.errorf(&doc.Chemicals, "a hazard source holds at least one chemical")
		return
	}
	factors := make([]chem.Factors, 0, len(doc.Chemicals))
	qs := make([]float64, 0, len(doc.Chemicals))
	seen := map[string]*string{}
	for i := range doc.Chemicals {
		c := &doc.Chemicals[i]
		ok := true
		if !chem.ValidCAS(c.CAS) {
			l.errorf(&c.CAS, "%q is not a CAS number (check digit or form)", c.CAS)
			ok = false
		} else if first, dup := seen[c.CAS]; dup {
			l.errorf(&c.CAS, "%s is already listed at %s: give one quantity per chemical", c.CAS, where(l.at(first)))
			ok = false
		}
		seen[c.CAS] = &c.CAS
		if c.QuantityT <= 0 {
			l.errorf(&c.QuantityT, "must be more than 0 t")
			ok = false
		}
		if c.Category != "" {
			if _, known := l.ref.Table2[c.Category]; !known {
				l.errorf(&c.Category, "%q is not a GB 18218-2018 Table 2 category (J1-J5, W1.1-W11)", c.Category)
				ok = false
			}
		}
		if !ok {
			continue
		}
		f, err := l.ref.Factors(chem.Holding{CAS: c.CAS, Category: c.Category, QuantityT: c.QuantityT})
		if err != nil {
			if c.Category == "" {
				l.fieldErrorf(&doc.Chemicals[i], "category", "%v", err)
			} else {
				l.errorf(&c.Category, "%v", err)
			}
			continue
		}
		factors = append(factors, f)
		qs = append(qs, c.QuantityT)
		h.Chemicals = append(h.Chemicals, model.Chemical{CAS: c.CAS, Name: c.Name, Category: c.Category, QuantityT: c.QuantityT, CriticalT: f.CriticalT, Beta: f.Beta})
	}
	if len(factors) != len(doc.Chemicals) {
		return
	}
	*g = chem.GradeOf(factors, qs, doc.People500m)
	h.R, h.Level = g.R, g.Level
	if !g.Major() {
		l.warnf(&doc.ID, "by GB 18218-2018 this is not a major hazard source: Σq/Q = %.2f < 1", g.Sum)
	}
	if doc.Level != nil {
		if *doc.Level < 1 || *doc.Level > 4 {
			l.errorf(doc.Level, "must be 1, 2, 3 or 4")
			return
		}
		h.Level, h.LevelDeclared = *doc.Level, true
		if *doc.Level != g.Level {
			l.warnf(doc.Level, "declared level %d, but GB 18218-2018 gives level %d (R = %.1f)", *doc.Level, g.Level, g.R)
		}
	}
}

func (l *loader) person(d *personDoc) model.Person {
	if !phoneRE.MatchString(d.Phone) {
		l.errorf(&d.Phone, "%q is not a phone number", d.Phone)
	}
	return model.Person{Name: d.Name, Phone: d.Phone}
}

// maintenance checks an enterprise's planned maintenance windows: RFC 3339
// times with their zone (a plant's clock and the centre's may differ), the
// end after the start, no two overlapping.
func (l *loader) maintenance(ds []maintenanceDoc) []model.MaintenanceWindow {
	var out []model.MaintenanceWindow
	for i := range ds {
		d := &ds[i]
		from, err1 := time.Parse(time.RFC3339, d.From)
		if err1 != nil {
			l.errorf(&d.From, "%q is not an RFC 3339 time with its zone, such as 2026-12-08T08:00:00+08:00", d.From)
		}
		to, err2 := time.Parse(time.RFC3339, d.To)
		if err2 != nil {
			l.errorf(&d.To, "%q is not an RFC 3339 time with its zone, such as 2026-12-08T18:00:00+08:00", d.To)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		if !to.After(from) {
			l.errorf(&d.To, "must be after from (%s)", d.From)
			continue
		}
		for j, w := range out {
			if from.Before(w.To) && w.From.Before(to) {
				l.errorf(&d.From, "overlaps maintenance window %d (%s to %s)", j+1, w.From.Format(time.RFC3339), w.To.Format(time.RFC3339))
			}
		}
		out = append(out, model.MaintenanceWindow{From: from, To: to, Reason: d.Reason})
	}
	return out
}

// persons checks a list of people on duty; nil when there is none.
func (l *loader) persons(ds []personDoc) []model.Person {
	var out []model.Person
	for i := range ds {
		out = append(out, l.person(&ds[i]))
	}
	return out
}

func (l *loader) gateway(doc *gatewayDoc, g *model.Gateway, ents *index) {
	g.Enterprise, _ = ents.ref(&doc.Enterprise)
	period := doc.PollPeriod
	if period == 0 {
		period = defaultPollPeriod
	} else if period < minPollPeriod {
		l.errorf(&doc.PollPeriod, "must be at least %s", minPollPeriod)
	}
	g.PollPeriodMS = period.Milliseconds()
	if len(doc.Devices) == 0 {
		l.errorf(&doc.Devices, "a gateway polls at least one device")
	}
	ids := map[string]*string{}
	for i := range doc.Devices {
		dd := &doc.Devices[i]
		if dd.ID == "" {
			// left out: the decoder reported it
		} else if !idRE.MatchString(dd.ID) {
			l.errorf(&dd.ID, "%q is not a valid id: use 1-64 letters, digits, - and _", dd.ID)
		} else if first, ok := ids[dd.ID]; ok {
			l.errorf(&dd.ID, "device %q is already defined at %s", dd.ID, where(l.at(first)))
		}
		ids[dd.ID] = &dd.ID
		dev := model.Device{ID: dd.ID, Address: dd.Address, BaudRate: dd.BaudRate, TimeoutMS: defaultTimeout.Milliseconds(), PollPeriodMS: g.PollPeriodMS, MaxRegisters: defaultMaxRegisters}
		switch dd.Transport {
		case "", "tcp":
			dev.Transport = model.ModbusTCP
			if _, port, err := net.SplitHostPort(dd.Address); err != nil {
				l.errorf(&dd.Address, "must be host:port for a tcp device, not %q", dd.Address)
			} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				l.errorf(&dd.Address, "port %q must be a number from 1 to 65535", port)
			}
			if dd.BaudRate != 0 {
				l.errorf(&dd.BaudRate, "applies to rtu devices only")
			}
			if dd.UnitID < 0 || dd.UnitID > 247 {
				l.errorf(&dd.UnitID, "must be 0-247 (Modbus TCP), not %d", dd.UnitID)
			}
		case "rtu":
			dev.Transport = model.ModbusRTU
			if dd.BaudRate <= 0 {
				l.errorf(&dd.Transport, "an rtu device needs baud_rate")
			}
			if dd.UnitID < 1 || dd.UnitID > 247 {
				l.errorf(&dd.UnitID, "must be 1-247 (Modbus RTU), not %d", dd.UnitID)
			}
		default:
			l.errorf(&dd.Transport, "must be tcp or rtu, not %q", dd.Transport)
		}
		dev.UnitID = uint8(max(0, min(dd.UnitID, 247)))
		if dd.Timeout != 0 {
			if dd.Timeout < 10*time.Millisecond {
				l.errorf(&dd.Timeout, "must be at least 10ms")
			}
			dev.TimeoutMS = dd.Timeout.Milliseconds()
		}
		if dd.PollPeriod != 0 {
			if dd.PollPeriod < minPollPeriod {
				l.errorf(&dd.PollPeriod, "must be at least %s", minPollPeriod)
			}
			dev.PollPeriodMS = dd.PollPeriod.Milliseconds()
		}
		if dev.TimeoutMS >= dev.PollPeriodMS {
			l.warnf(&dd.ID, "timeout %dms is not shorter than the poll period %dms: one silent device delays its own next poll", dev.TimeoutMS, dev.PollPeriodMS)
		}
		if dd.MaxRegisters != nil {
			if *dd.MaxRegisters < 1 || *dd.MaxRegisters > 125 {
				l.errorf(dd.MaxRegisters, "must be 1-125 (the Modbus limit for one read)")
			}
			dev.MaxRegisters = *dd.MaxRegisters
		}
		if dd.MaxGap != nil {
			if *dd.MaxGap < 0 || *dd.MaxGap > 123 {
				l.errorf(dd.MaxGap, "must be 0-123 (unmapped registers one read may span)")
			}
			dev.MaxGap = *dd.MaxGap
		}
		g.Devices = append(g.Devices, dev)
	}
}

// usage finds register overlaps within each device and which gateways are used.
type usage struct {
	l           *loader
	gatewayUsed map[int32]bool
	owners      map[regKey]claimant
}

type regKey struct {
	gw, dev int32
	area    model.Area
	addr    uint16
	bit     int8
}

// claimant is the sensor that reads a register or a bit, and whether it
// reads it as its fault bit rather than as its value.
type claimant struct {
	doc   *sensorDoc
	fault bool
}

func newUsage(l *loader) *usage {
	return &usage{l: l, gatewayUsed: map[int32]bool{}, owners: map[regKey]claimant{}}
}

// claim marks the registers (or the bit) r occupies as read by doc, and
// reports at the value at ptr the first one another reading already took.
// A bit of a register may share it with other bits, never with a whole
// value: so several detectors' fault bits may sit in one status word.
func (u *usage) claim(doc *sensorDoc, ptr any, fault bool, gw, dev int32, r model.Register) {
	words := r.Type.Words()
	for w := range words {
		k := regKey{gw: gw, dev: dev, area: r.Area, addr: r.Address + uint16(w), bit: r.Bit}
		whole := k
		whole.bit = -1
		var other claimant
		if r.Bit >= 0 {
			other = u.owners[whole] // a bit inside a register a whole value uses
			if other.doc == nil {
				other = u.owners[k]
			}
		} else {
			other = u.owners[whole]
			for b := int8(0); b < 16 && other.doc == nil; b++ {
				k2 := whole
				k2.bit = b
				other = u.owners[k2]
			}
		}
		switch {
		case other.doc == doc:
			u.l.errorf(ptr, "%s register %d holds the sensor's own value: its fault bit lies elsewhere", r.Area, k.addr)
			return
		case other.doc != nil:
			as := ""
			if other.fault {
				as = " as its fault bit"
			}
			u.l.errorf(ptr, "%s register %d is already read by sensor %q%s (%s)", r.Area, k.addr, other.doc.ID, as, where(u.l.at(&other.doc.ID)))
			return
		}
		u.owners[k] = claimant{doc: doc, fault: fault}
	}
}

var dataTypes = map[string]model.DataType{
	"uint16": model.Uint16, "int16": model.Int16, "uint32": model.Uint32, "int32": model.Int32,
	"float32": model.Float32, "float64": model.Float64,
}

func (l *loader) sensor(doc *sensorDoc, s *model.Sensor, p *model.Plant, ents, hazards, gws *index, gwDocs []*gatewayDoc, used *usage) {
	kind, ok := model.ParseKind(doc.Kind)
	if !ok {
		names := make([]string, 0)
		for _, k := range model.Kinds() {
			names = append(names, k.String())
		}
		if sg := Suggest(doc.Kind, names); sg != "" {
			l.errorf(&doc.Kind, "unknown kind %q (did you mean %s?)", doc.Kind, sg)
		} else {
			l.errorf(&doc.Kind, "unknown kind %q (known: %s)", doc.Kind, quoteAll(names))
		}
	}
	s.Kind, s.Unit = kind, doc.Unit
	if ok && !oneOf(doc.Unit, kind.Units()...) {
		l.errorf(&doc.Unit, "a %s sensor reports in %s, not %q", kind, quoteAll(kind.Units()), doc.Unit)
	}
	s.Enterprise, s.HazardSource, s.Gateway, s.Device = -1, -1, -1, -1
	switch {
	case doc.HazardSource != "":
		if hi, ok := hazards.ref(&doc.HazardSource); ok {
			s.HazardSource = hi
			s.Enterprise = p.HazardSources[hi].Enterprise
			if doc.Enterprise != "" && doc.Enterprise != p.Enterprises[s.Enterprise].ID {
				l.errorf(&doc.Enterprise, "hazard source %q belongs to enterprise %q", doc.HazardSource, p.Enterprises[s.Enterprise].ID)
			}
		}
	case doc.Enterprise != "":
		s.Enterprise, _ = ents.ref(&doc.Enterprise)
	default:
		l.fieldErrorf(doc, "hazard_source", "required (or enterprise, for a sensor of the whole plant such as its power meter)")
	}
	if gi, ok := gws.ref(&doc.Gateway); ok && gwDocs[gi] != nil {
		s.Gateway = gi
		used.gatewayUsed[gi] = true
		g := p.Gateways[gi]
		if s.Enterprise >= 0 && g.Enterprise >= 0 && g.Enterprise != s.Enterprise {
			l.errorf(&doc.Gateway, "gateway %q belongs to enterprise %q, the sensor to %q", g.ID, p.Enterprises[g.Enterprise].ID, p.Enterprises[s.Enterprise].ID)
		}
		for di, d := range g.Devices {
			if d.ID == doc.Device {
				s.Device = int32(di)
			}
		}
		if s.Device < 0 {
			names := make([]string, len(g.Devices))
			for i, d := range g.Devices {
				names[i] = d.ID
			}
			l.errorf(&doc.Device, "gateway %q has no device %q (it has %s)", g.ID, doc.Device, quoteAll(names))
		}
	}
	if doc.Range.Min >= doc.Range.Max {
		l.errorf(&doc.Range.Max, "must be above min (%g)", doc.Range.Min)
	}
	s.RangeMin, s.RangeMax = doc.Range.Min, doc.Range.Max
	onDevice := s.Gateway >= 0 && s.Device >= 0
	if r, ok := l.register(&doc.Register, kind); ok {
		s.Register = r
		if onDevice {
			used.claim(doc, &doc.Register.Address, false, s.Gateway, s.Device, r)
		}
	}
	if doc.Fault != nil {
		if f, ok := l.fault(doc.Fault); ok {
			s.Fault = &f
			if onDevice {
				used.claim(doc, &doc.Fault.Address, true, s.Gateway, s.Device, f)
			}
		}
	}
	s.Gas = l.gas(doc, kind)
}

func (l *loader) register(d *registerDoc, kind model.Kind) (model.Register, bool) {
	r := model.Register{Bit: -1, Scale: 1, Offset: d.Offset}
	area, ok := l.area(&d.Area)
	r.Area = area
	bad := func(ptr any, format string, args ...any) {
		l.errorf(ptr, format, args...)
		ok = false
	}
	bitArea := ok && (r.Area == model.Coil || r.Area == model.DiscreteInput)
	switch {
	case bitArea:
		r.Type = model.Bit
		if d.Type != "" {
			bad(&d.Type, "a %s is one bit: leave type out", d.Area)
		}
		if d.Bit != nil {
			bad(d.Bit, "a %s is one bit already", d.Area)
		}
		if d.ByteOrder != "" || d.WordOrder != "" {
			bad(&d.ByteOrder, "byte and word order apply to registers only")
		}
	case d.Type == "":
		r.Type = model.Uint16
	default:
		t, known := dataTypes[d.Type]
		if !known {
			bad(&d.Type, "must be int16, uint16, int32, uint32, float32 or float64, not %q", d.Type)
		}
		r.Type = t
	}
	if d.Bit != nil && !bitArea {
		if *d.Bit < 0 || *d.Bit > 15 {
			bad(d.Bit, "must be 0-15")
		} else if r.Type != model.Uint16 && r.Type != model.Int16 {
			bad(d.Bit, "a bit is taken from a 16-bit register: type must be uint16 or int16")
		} else {
			r.Bit = int8(*d.Bit)
			r.Type = model.Bit
		}
	}
	if kind.Discrete() && r.Type != model.Bit && r.Type != model.Uint16 && r.Type != model.Int16 {
		bad(&d.Type, "a %s state is a coil, a discrete input, a bit or a 16-bit register", kind)
	}
	for _, o := range []struct {
		v   *string
		dst *model.ByteOrder
	}{{&d.ByteOrder, &r.ByteOrder}, {&d.WordOrder, &r.WordOrder}} {
		switch *o.v {
		case "", "big":
			*o.dst = model.BigEndian
		case "little":
			*o.dst = model.LittleEndian
		default:
			bad(o.v, "must be big or little, not %q", *o.v)
		}
	}
	if d.WordOrder != "" && !bitArea && r.Type.Words() < 2 {
		bad(&d.WordOrder, "applies to 32- and 64-bit types only")
	}
	if d.Address < 0 || d.Address+max(1, r.Type.Words()) > 65536 {
		bad(&d.Address, "must be 0-65535 (0-based) with room for its %d register(s)", r.Type.Words())
	} else {
		r.Address = uint16(d.Address)
	}
	if d.Scale != nil {
		if *d.Scale == 0 {
			bad(d.Scale, "must not be 0")
		}
		r.Scale = *d.Scale
	}
	if r.Type == model.Bit && (r.Scale != 1 || r.Offset != 0) {
		bad(&d.Offset, "a bit has no scale or offset")
	}
	return r, ok
}

var areas = map[string]model.Area{
	"holding": model.Holding, "input": model.Input, "coil": model.Coil, "discrete_input": model.DiscreteInput,
}

// area reads a Modbus data table's name.
func (l *loader) area(name *string) (model.Area, bool) {
	a, ok := areas[*name]
	if !ok {
		l.errorf(name, "must be holding, input, coil or discrete_input, not %q", *name)
	}
	return a, ok
}

// fault checks a sensor's fault bit: a coil or a discrete input, or one
// bit of a holding or input register. It is compiled as a one-bit
// register, so that the gateway and the simulator decode and encode it
// with the same converter as a valve's bit.
func (l *loader) fault(d *faultDoc) (model.Register, bool) {
	r := model.Register{Type: model.Bit, Bit: -1, Scale: 1}
	a, ok := l.area(&d.Area)
	r.Area = a
	switch {
	case !ok:
	case a == model.Coil || a == model.DiscreteInput:
		if d.Bit != nil {
			l.errorf(d.Bit, "a %s is one bit already", d.Area)
			ok = false
		}
	case d.Bit == nil:
		l.fieldErrorf(d, "bit", "required with area %s: which bit (0-15) of the status word says the device is at fault", d.Area)
		ok = false
	case *d.Bit < 0 || *d.Bit > 15:
		l.errorf(d.Bit, "must be 0-15")
		ok = false
	default:
		r.Bit = int8(*d.Bit)
	}
	switch {
	case l.missing[&d.Address]:
		ok = false // reported as required; claiming address 0 would only add noise
	case d.Address < 0 || d.Address > 65535:
		l.errorf(&d.Address, "must be 0-65535 (0-based)")
		ok = false
	default:
		r.Address = uint16(d.Address)
	}
	return r, ok
}

func (l *loader) gas(doc *sensorDoc, kind model.Kind) *model.Gas {
	g := doc.Gas
	needs := kind == model.GasCombustible || kind == model.GasToxic
	if g == nil {
		if needs {
			l.fieldErrorf(doc, "gas", "required for a %s sensor (the gas by CAS number)", kind)
		}
		return nil
	}
	if !needs {
		l.errorf(g, "applies to gas_combustible and gas_toxic sensors only")
		return nil
	}
	if !chem.ValidCAS(g.CAS) {
		l.errorf(&g.CAS, "%q is not a CAS number (check digit or form)", g.CAS)
		return nil
	}
	out := &model.Gas{CAS: g.CAS}
	if kind == model.GasToxic {
		if g.LELBasis != "" || g.LELPctVol != nil {
			l.errorf(&g.LELBasis, "lel_basis and lel_pct_vol apply to combustible gas only")
		}
		o, ok := l.ref.OELs[g.CAS]
		if !ok {
			l.errorf(&g.CAS, "no GBZ 2.1-2019 occupational exposure limit for %s in the reference data", g.CAS)
			return nil
		}
		out.Name = o.Name
		out.OELMgM3, out.OELKind = o.Limit()
		out.PPMPerMgM3 = o.PPMPerMgM3
		out.Unverified = o.Unverified
		if o.Unverified {
			l.noteUnverified(&g.CAS, "GBZ 2.1-2019 "+out.OELKind+" of "+o.Name+" ("+g.CAS+")")
		}
		return out
	}
	switch g.LELBasis {
	case "IEC 60079-20-1":
		e, ok := l.ref.LELs[g.CAS]
		if !ok {
			l.errorf(&g.CAS, "no IEC 60079-20-1 LEL for %s in the reference data: use lel_basis: calibration with lel_pct_vol", g.CAS)
			return nil
		}
		if g.LELPctVol != nil && *g.LELPctVol != e.PctVol {
			l.errorf(g.LELPctVol, "IEC 60079-20-1 gives %g %%vol for %s; leave lel_pct_vol out, or use lel_basis: calibration", e.PctVol, g.CAS)
		}
		out.Name, out.LELPctVol, out.Unverified = e.Name, e.PctVol, e.Unverified
		if e.Unverified {
			l.noteUnverified(&g.CAS, "the LEL of "+e.Name+" ("+g.CAS+")")
		}
	case "NFPA 497", "calibration":
		if g.LELPctVol == nil {
			l.errorf(&g.LELBasis, "lel_pct_vol: required with lel_basis %s (the %%vol that is 100 %%LEL)", g.LELBasis)
			return nil
		}
		if *g.LELPctVol <= 0 || *g.LELPctVol >= 100 {
			l.errorf(g.LELPctVol, "must be between 0 and 100 %%vol")
			return nil
		}
		out.LELPctVol = *g.LELPctVol
		if e, ok := l.ref.LELs[g.CAS]; ok {
			out.Name = e.Name
		}
	case "":
		l.fieldErrorf(g, "lel_basis", "required for combustible gas: IEC 60079-20-1, NFPA 497 or calibration (which %%vol is 100 %%LEL)")
		return nil
	default:
		l.errorf(&g.LELBasis, "must be IEC 60079-20-1, NFPA 497 or calibration, not %q", g.LELBasis)
		return nil
	}
	out.LELBasis = g.LELBasis
	return out
}

// noteUnverified remembers a use of a reference row marked unverified; one
// warning per row is given, at its first use, with the count of uses.
func (l *loader) noteUnverified(at *string, what string) {
	for i := range l.unverified {
		if l.unverified[i].what == what {
			l.unverified[i].uses++
			return
		}
	}
	l.unverified = append(l.unverified, unverifiedUse{what: what, at: at, uses: 1})
}

func (l *loader) reportUnverified() {
	for _, u := range l.unverified {
		l.warnf(u.at, "%s comes from a reference row marked unverified: an engineer must confirm it against the standard (used by %d sensor(s))", u.what, u.uses)
	}
}
