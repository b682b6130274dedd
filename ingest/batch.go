package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// The READINGS stream's message format, version 1.
//
// One JetStream message is a batch: the messages of many gateways that one
// group commit wrote together. Integers are varints as encoding/binary
// writes them (uvarint unsigned, varint zig-zag signed); a string is a
// uvarint length and its bytes.
//
//	batch   = "HWR" 0x01 entry*                  (entries run to the end)
//	entry   = uvarint(len(body)) body
//	body    = flags gateway enterprise boot uvarint(seq) varint(received)
//	          uvarint(n) reading*n [bytes a later version adds]
//	reading = sensor varint(ts) rflags reason [float64 little-endian, 8 bytes]
//
//	flags   bit 0: replay
//	rflags  bit 0: has value (the 8 value bytes follow), bit 1: late,
//	        bits 2–3: quality (0 good, 1 uncertain, 2 bad; 3 is corrupt)
//	reason  the quality reason's text ("timeout", "exception_02", …), empty
//	        for none
//
// received and ts are Unix milliseconds: received on the centre's clock, ts
// on the gateway's. Sensors, gateways and enterprises travel as their ids,
// not as the dense indexes of model.Plant, because indexes change whenever
// the plant files do and the stream outlives a plant reload. The reason
// travels as text for the same cause: model.QualityReason's numbers are an
// implementation detail.
//
// Each entry carries its length so that a reader that wants only the
// identity of the messages (dedup rebuild) skips the readings, and so that a
// later version may append fields to a body that this version's decoder
// skips.

// batchMagic starts every batch: "HWR" and the format version.
const batchMagic = "HWR\x01"

const (
	flagReplay = 1 << 0

	rflagValue      = 1 << 0
	rflagLate       = 1 << 1
	rflagQualityPos = 2
)

// ErrBadBatch is wrapped by every error DecodeBatch returns for data that is
// not a well-formed batch.
var ErrBadBatch = errors.New("ingest: malformed READINGS batch")

// Entry is one accepted telemetry message as the READINGS stream holds it.
//
// The byte slices alias the batch being decoded and are valid only until the
// callback returns; copy what you keep. Resolving an id costs no allocation
// when written as plant.SensorIndex(string(r.Sensor)).
type Entry struct {
	Gateway, Enterprise, Boot []byte
	Seq                       uint64
	// Replay is set when the gateway sent the message from its
	// store-and-forward queue.
	Replay bool
	// Received is the centre's receive time, Unix milliseconds.
	Received int64
	// Readings are the accepted readings, in payload order.
	Readings []Reading
}

// Reading is one stored reading.
type Reading struct {
	Sensor []byte
	// TS is the gateway's poll time, Unix milliseconds (not skew-corrected).
	TS       int64
	Value    float64
	HasValue bool
	// Late: replayed or older than the live window (SPEC §2).
	Late    bool
	Quality model.Quality
	Reason  model.QualityReason
}

// SensorDirectory resolves sensor ids; *model.Plant implements it.
type SensorDirectory interface {
	SensorIndex(id string) (int32, bool)
}

// AppendModel appends e's readings as model.Readings resolved through dir
// and returns the extended slice and how many readings named a sensor that
// dir does not know (the plant changed since the reading was stored).
func (e *Entry) AppendModel(dst []model.Reading, dir SensorDirectory) ([]model.Reading, int) {
	unknown := 0
	for i := range e.Readings {
		r := &e.Readings[i]
		idx, ok := dir.SensorIndex(string(r.Sensor))
		if !ok {
			unknown++
			continue
		}
		dst = append(dst, model.Reading{
			SensorIdx: idx,
			Reason:    r.Reason,
			Quality:   r.Quality,
			HasValue:  r.HasValue,
			Late:      r.Late,
			TS:        r.TS,
			Value:     r.Value,
		})
	}
	return dst, unknown
}

// BatchDecoder decodes batches of the READINGS stream, reusing one Entry and
// its readings between calls: decoding a batch costs no allocation once the
// readings slice has grown to the largest message's size. A BatchDecoder is
// not safe for concurrent use.
type BatchDecoder struct {
	e Entry
}

// DecodeBatch calls fn with every entry of one READINGS message, in the
// order they were written. It stops at the first error fn returns and
// returns it. Malformed data gives an error wrapping ErrBadBatch; entries
// before the malformed one have been passed to fn already.
func DecodeBatch(data []byte, fn func(*Entry) error) error {
	var d BatchDecoder
	return d.Decode(data, fn)
}

// Decode is DecodeBatch with d's reused Entry.
func (d *BatchDecoder) Decode(data []byte, fn func(*Entry) error) error {
	r, err := batchReader(data)
	if err != nil {
		return err
	}
	for n := 0; !r.done(); n++ {
		body, ok := r.bytes()
		if !ok {
			return fmt.Errorf("%w: entry %d: length runs past the end", ErrBadBatch, n)
		}
		if err := decodeBody(body, &d.e); err != nil {
			return fmt.Errorf("%w: entry %d: %s", ErrBadBatch, n, err.Error())
		}
		if err := fn(&d.e); err != nil {
			return err
		}
	}
	return nil
}

// msgKey is what dedup needs of a stored entry.
type msgKey struct {
	gateway, boot []byte
	seq           uint64
	received      int64
}

// scanKeys calls fn with the identity of every entry of a batch without
// decoding its readings: the dedup rebuild reads the whole stream at start.
func scanKeys(data []byte, fn func(msgKey)) error {
	r, err := batchReader(data)
	if err != nil {
		return err
	}
	for n := 0; !r.done(); n++ {
		body, ok := r.bytes()
		if !ok {
			return fmt.Errorf("%w: entry %d: length runs past the end", ErrBadBatch, n)
		}
		b := reader{b: body}
		var k msgKey
		var ok1, ok2, ok3, ok4, ok5 bool
		_, ok1 = b.byte()
		k.gateway, ok = b.bytes()
		_, ok2 = b.bytes()
		k.boot, ok3 = b.bytes()
		k.seq, ok4 = b.uvarint()
		k.received, ok5 = b.varint()
		if !(ok && ok1 && ok2 && ok3 && ok4 && ok5) {
			return fmt.Errorf("%w: entry %d: header runs past the end", ErrBadBatch, n)
		}
		fn(k)
	}
	return nil
}

func batchReader(data []byte) (reader, error) {
	if len(data) < len(batchMagic) || string(data[:3]) != batchMagic[:3] {
		return reader{}, fmt.Errorf("%w: no HWR header", ErrBadBatch)
	}
	if data[3] != batchMagic[3] {
		return reader{}, fmt.Errorf("%w: version %d, this decoder reads version %d", ErrBadBatch, data[3], batchMagic[3])
	}
	return reader{b: data[len(batchMagic):]}, nil
}

func decodeBody(body []byte, e *Entry) error {
	b := reader{b: body}
	flags, ok := b.byte()
	if !ok {
		return errors.New("empty entry")
	}
	var ok1, ok2, ok3, ok4, ok5 bool
	e.Replay = flags&flagReplay != 0
	e.Gateway, ok1 = b.bytes()
	e.Enterprise, ok2 = b.bytes()
	e.Boot, ok3 = b.bytes()
	e.Seq, ok4 = b.uvarint()
	e.Received, ok5 = b.varint()
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return errors.New("header runs past the end")
	}
	n, ok := b.uvarint()
	if !ok {
		return errors.New("reading count runs past the end")
	}
	// Every reading takes at least 4 bytes: a count beyond that is corrupt,
	// and checking it first keeps a corrupt count from growing the slice.
	if n > uint64(len(b.b))/4 {
		return fmt.Errorf("%d readings cannot fit in %d bytes", n, len(b.b))
	}
	e.Readings = e.Readings[:0]
	for i := range n {
		var r Reading
		var okS, okT, okF, okR bool
		r.Sensor, okS = b.bytes()
		r.TS, okT = b.varint()
		rflags, okF := b.byte()
		reason, okR := b.bytes()
		if !(okS && okT && okF && okR) {
			return fmt.Errorf("reading %d runs past the end", i)
		}
		r.HasValue = rflags&rflagValue != 0
		r.Late = rflags&rflagLate != 0
		r.Quality = model.Quality(rflags >> rflagQualityPos & 3)
		if r.Quality > model.Bad {
			return fmt.Errorf("reading %d: quality %d", i, r.Quality)
		}
		r.Reason = model.ParseQualityReason(string(reason))
		if r.HasValue {
			v, ok := b.uint64le()
			if !ok {
				return fmt.Errorf("reading %d: value runs past the end", i)
			}
			r.Value = math.Float64frombits(v)
		}
		e.Readings = append(e.Readings, r)
	}
	return nil
}

// reader walks a byte slice; every method reports false instead of reading
// past the end, so that no input can make a decoder panic.
type reader struct{ b []byte }

func (r *reader) done() bool { return len(r.b) == 0 }

func (r *reader) byte() (byte, bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, true
}

func (r *reader) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, false
	}
	r.b = r.b[n:]
	return v, true
}

func (r *reader) varint() (int64, bool) {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		return 0, false
	}
	r.b = r.b[n:]
	return v, true
}

func (r *reader) bytes() ([]byte, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.b)) {
		return nil, false
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s, true
}

func (r *reader) uint64le() (uint64, bool) {
	if len(r.b) < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v, true
}

// EncodeBatch appends a batch holding entries to dst. Ingest writes batches
// itself, on its hot path; this is for consumers' tests and tools.
func EncodeBatch(dst []byte, entries []Entry) []byte {
	dst = append(dst, batchMagic...)
	var body []byte
	for i := range entries {
		body = appendEntryBody(body[:0], &entries[i])
		dst = binary.AppendUvarint(dst, uint64(len(body)))
		dst = append(dst, body...)
	}
	return dst
}

func appendEntryBody(dst []byte, e *Entry) []byte {
	dst = appendHeader(dst, e.Replay, e.Gateway, e.Enterprise, e.Boot, e.Seq, e.Received, len(e.Readings))
	for i := range e.Readings {
		r := &e.Readings[i]
		dst = appendReading(dst, r.Sensor, r.TS, r.HasValue, r.Late, r.Quality, r.Reason, r.Value)
	}
	return dst
}

// appendMessageBody appends the body of the entry for a decoded telemetry
// message: what the hot path stores for every accepted message.
func appendMessageBody(dst []byte, p *model.Plant, m *telemetry.Message, received int64) []byte {
	dst = appendHeader(dst, m.Replay, p.Gateways[m.Gateway].ID, p.Enterprises[m.Enterprise].ID, m.Boot, m.Seq, received, len(m.Readings))
	for i := range m.Readings {
		r := &m.Readings[i]
		dst = appendReading(dst, p.Sensors[r.SensorIdx].ID, r.TS, r.HasValue, r.Late, r.Quality, r.Reason, r.Value)
	}
	return dst
}

func appendHeader[S string | []byte](dst []byte, replay bool, gateway, enterprise, boot S, seq uint64, received int64, n int) []byte {
	var flags byte
	if replay {
		flags |= flagReplay
	}
	dst = append(dst, flags)
	dst = appendStr(dst, gateway)
	dst = appendStr(dst, enterprise)
	dst = appendStr(dst, boot)
	dst = binary.AppendUvarint(dst, seq)
	dst = binary.AppendVarint(dst, received)
	return binary.AppendUvarint(dst, uint64(n))
}

func appendReading[S string | []byte](dst []byte, sensor S, ts int64, hasValue, late bool, q model.Quality, reason model.QualityReason, v float64) []byte {
	dst = appendStr(dst, sensor)
	dst = binary.AppendVarint(dst, ts)
	flags := byte(q&3) << rflagQualityPos
	if hasValue {
		flags |= rflagValue
	}
	if late {
		flags |= rflagLate
	}
	dst = append(dst, flags)
	if reason == model.ReasonNone {
		dst = append(dst, 0)
	} else {
		dst = appendStr(dst, reason.String())
	}
	if hasValue {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	}
	return dst
}

func appendStr[S string | []byte](dst []byte, s S) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// maxEntryOverhead bounds how much larger a message's entry is than its JSON
// payload. Every field of a reading is shorter in binary than in the JSON
// that carried it: the shortest accepted reading is 38 bytes of JSON plus
// its sensor id against 17 bytes of binary plus the id, and a reason is the
// text the payload's "r" gave, or "other" (6 bytes) for one the centre does
// not know, whose `,"r":"…"` took at least 8. Only the header can grow: the
// enterprise id comes from the topic, not the payload (at most 64 bytes by
// the config rules), and the varints. Start checks that a payload at the
// size limit plus this fits one JetStream message; TestEntryNotLargerThanPayload
// checks the bound.
const maxEntryOverhead = 128
