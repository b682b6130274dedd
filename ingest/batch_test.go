package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

func sampleEntries() []Entry {
	return []Entry{
		{Gateway: []byte(testGW), Enterprise: []byte(testEnt), Boot: []byte("2f9c4e1a"), Seq: 1024, Received: 1732442400500,
			Readings: []Reading{
				{Sensor: []byte(sensorLT), TS: 1732442400123, Value: 3.42, HasValue: true},
				{Sensor: []byte(sensorPT), TS: 1732442400124, Quality: model.Bad, Reason: model.ModbusException(2)},
				{Sensor: []byte(sensorXV), TS: 1732442400125, Value: 1, HasValue: true, Late: true, Quality: model.Uncertain, Reason: model.ReasonOutOfRange},
				{Sensor: []byte("e01-储罐-TT"), TS: -5, Value: math.NaN(), HasValue: true, Quality: model.Bad, Reason: model.ReasonOther},
				{Sensor: []byte("x"), TS: math.MaxInt64, Value: math.Inf(-1), HasValue: true, Reason: model.ReasonTimeout},
			}},
		{Gateway: []byte("gw-e02-1"), Enterprise: []byte("e02"), Boot: []byte("b"), Seq: math.MaxUint64, Replay: true, Received: math.MinInt64},
		{Gateway: []byte{}, Enterprise: []byte{}, Boot: []byte{}, Readings: []Reading{{Sensor: []byte{}}}},
	}
}

// sameEntry compares entries, values by their bits (NaN is NaN).
func sameEntry(a, b *Entry) error {
	if !bytes.Equal(a.Gateway, b.Gateway) || !bytes.Equal(a.Enterprise, b.Enterprise) || !bytes.Equal(a.Boot, b.Boot) ||
		a.Seq != b.Seq || a.Replay != b.Replay || a.Received != b.Received || len(a.Readings) != len(b.Readings) {
		return fmt.Errorf("header or count: %s %s %s %d %v %d %d ≠ %s %s %s %d %v %d %d",
			a.Gateway, a.Enterprise, a.Boot, a.Seq, a.Replay, a.Received, len(a.Readings),
			b.Gateway, b.Enterprise, b.Boot, b.Seq, b.Replay, b.Received, len(b.Readings))
	}
	for i := range a.Readings {
		x, y := a.Readings[i], b.Readings[i]
		if !bytes.Equal(x.Sensor, y.Sensor) || x.TS != y.TS || x.HasValue != y.HasValue || x.Late != y.Late ||
			x.Quality != y.Quality || x.Reason != y.Reason || math.Float64bits(x.Value) != math.Float64bits(y.Value) {
			return fmt.Errorf("reading %d: %+v ≠ %+v", i, x, y)
		}
	}
	return nil
}

func decodeAll(t testing.TB, data []byte) []Entry {
	t.Helper()
	var out []Entry
	err := DecodeBatch(data, func(e *Entry) error {
		c := copyEntry(e)
		ce := Entry{Gateway: []byte(c.Gateway), Enterprise: []byte(c.Enterprise), Boot: []byte(c.Boot), Seq: c.Seq, Replay: c.Replay, Received: c.Received}
		for _, r := range c.Readings {
			ce.Readings = append(ce.Readings, Reading{[]byte(r.Sensor), r.TS, r.Value, r.HasValue, r.Late, r.Quality, r.Reason})
		}
		out = append(out, ce)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	in := sampleEntries()
	data := EncodeBatch(nil, in)
	out := decodeAll(t, data)
	if len(out) != len(in) {
		t.Fatalf("%d entries back, want %d", len(out), len(in))
	}
	for i := range in {
		if err := sameEntry(&in[i], &out[i]); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	// Every exception code and quality survives as text.
	var e Entry
	for c := byte(1); c <= 11; c++ {
		e.Readings = append(e.Readings, Reading{Sensor: []byte("s"), Quality: model.Quality(c % 3), Reason: model.ModbusException(c)})
	}
	back := decodeAll(t, EncodeBatch(nil, []Entry{e}))
	if err := sameEntry(&e, &back[0]); err != nil {
		t.Error(err)
	}
	// An empty batch is valid and has no entries.
	if n := len(decodeAll(t, EncodeBatch(nil, nil))); n != 0 {
		t.Errorf("empty batch: %d entries", n)
	}
}

// TestMessageEntry checks the hot path's encoder (from a decoded
// telemetry.Message) against the Entry it must decode to.
func TestMessageEntry(t *testing.T) {
	p := plant(t)
	now := time.Now()
	ts := now.UnixMilli()
	payload := telemetry.AppendTelemetry(nil, testGW, "boot-m", 7, true, []telemetry.Out{
		{Sensor: sensorLT, TS: ts, Value: 3.42, HasValue: true},
		{Sensor: sensorPT, TS: ts - 1, Quality: model.Bad, Reason: model.ReasonTimeout},
	})
	var m telemetry.Message
	if err := telemetry.NewDecoder(p, telemetry.Options{}).Decode(testTopic, payload, now, 0, &m); err != nil {
		t.Fatal(err)
	}
	body := appendMessageBody(nil, p, &m, ts+5)
	data := binary.AppendUvarint([]byte(batchMagic), uint64(len(body)))
	data = append(data, body...)
	got := decodeAll(t, data)
	want := Entry{Gateway: []byte(testGW), Enterprise: []byte(testEnt), Boot: []byte("boot-m"), Seq: 7, Replay: true, Received: ts + 5,
		Readings: []Reading{
			{Sensor: []byte(sensorLT), TS: ts, Value: 3.42, HasValue: true, Late: true},
			{Sensor: []byte(sensorPT), TS: ts - 1, Late: true, Quality: model.Bad, Reason: model.ReasonTimeout},
		}}
	if len(got) != 1 {
		t.Fatalf("%d entries", len(got))
	}
	if err := sameEntry(&want, &got[0]); err != nil {
		t.Fatal(err)
	}
	if len(body) > len(payload)+maxEntryOverhead {
		t.Errorf("entry of %d bytes for a payload of %d: more than %d over", len(body), len(payload), maxEntryOverhead)
	}
	// AppendModel resolves the ids back to this plant's indexes.
	rs, unknown := got[0].AppendModel(nil, p)
	lt, _ := p.SensorIndex(sensorLT)
	if unknown != 0 || len(rs) != 2 || rs[0].SensorIdx != lt || rs[0].Value != 3.42 || rs[1].Reason != model.ReasonTimeout {
		t.Errorf("AppendModel = %+v, %d unknown", rs, unknown)
	}
}

// TestEntryNotLargerThanPayload: for the shortest readings the contract
// allows, the binary entry stays within maxEntryOverhead of the JSON, so
// that Start's size check holds.
func TestEntryNotLargerThanPayload(t *testing.T) {
	p := plant(t)
	now := time.Now()
	ts := now.UnixMilli()
	var readings []string
	for i := range 2000 {
		switch i % 4 {
		case 0:
			readings = append(readings, fmt.Sprintf(`{"sensor":"e01-XV101","ts":%d,"v":0}`, ts))
		case 1:
			readings = append(readings, fmt.Sprintf(`{"sensor":"e01-XV101","ts":%d,"q":"bad"}`, ts))
		case 2:
			readings = append(readings, fmt.Sprintf(`{"sensor":"e01-XV101","ts":%d,"q":"bad","r":"x"}`, ts))
		case 3:
			readings = append(readings, fmt.Sprintf(`{"sensor":"e01-XV101","ts":%d,"v":1,"q":"uncertain","r":""}`, ts))
		}
	}
	payload := fmt.Appendf(nil, `{"gateway":"gw-e01-1","boot":"b","seq":1,"readings":[%s]}`, bytes.Join(toBytes(readings), []byte(",")))
	var m telemetry.Message
	if err := telemetry.NewDecoder(p, telemetry.Options{}).Decode(testTopic, payload, now, 0, &m); err != nil || len(m.Rejected) > 0 {
		t.Fatal(err, m.Rejected)
	}
	body := appendMessageBody(nil, p, &m, ts)
	if len(body) > len(payload)+maxEntryOverhead {
		t.Errorf("entry of %d bytes for a payload of %d", len(body), len(payload))
	}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestDecodeBatchErrors(t *testing.T) {
	good := EncodeBatch(nil, sampleEntries()[:1])
	tests := map[string][]byte{
		"empty":           {},
		"wrong magic":     []byte("HWX\x01"),
		"newer version":   []byte("HWR\x02"),
		"length past end": append([]byte(batchMagic), 0x7f, 1, 2),
		"truncated":       good[:len(good)-3],
		"empty entry":     append([]byte(batchMagic), 0),
		"quality 3":       EncodeBatch(nil, []Entry{{Readings: []Reading{{Quality: 3}}}}),
		// An entry with no room for readings that claims 1000.
		"huge reading count": append([]byte(batchMagic), 8, 0, 0, 0, 0, 0, 0, 0xe8, 0x07),
	}
	for name, data := range tests {
		err := DecodeBatch(data, func(*Entry) error { return nil })
		if !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: %v, want ErrBadBatch", name, err)
		}
	}
	stop := errors.New("stop")
	if err := DecodeBatch(EncodeBatch(nil, sampleEntries()), func(*Entry) error { return stop }); err != stop {
		t.Errorf("the callback's error came back as %v", err)
	}
}

func TestDecodeBatchAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	data := EncodeBatch(nil, sampleEntries())
	var d BatchDecoder
	n := 0
	count := func(e *Entry) error { n += len(e.Readings); return nil }
	_ = d.Decode(data, count)
	if a := testing.AllocsPerRun(100, func() { _ = d.Decode(data, count) }); a != 0 {
		t.Errorf("decoding a batch: %v allocations, want 0", a)
	}
}

// FuzzDecodeBatch: no input makes the decoder panic; whatever it accepts
// encodes back to something that decodes the same; scanKeys, which the
// dedup rebuild uses, sees the same identities.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(EncodeBatch(nil, sampleEntries()))
	f.Add(EncodeBatch(nil, nil))
	f.Add([]byte("HWR\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []Entry
		err := DecodeBatch(data, func(e *Entry) error {
			c := *e
			c.Readings = append([]Reading(nil), e.Readings...)
			got = append(got, c)
			return nil
		})
		var keys []msgKey
		kerr := scanKeys(data, func(k msgKey) { keys = append(keys, k) })
		if err != nil {
			if !errors.Is(err, ErrBadBatch) {
				t.Fatalf("error %v does not wrap ErrBadBatch", err)
			}
			return
		}
		if kerr != nil || len(keys) != len(got) {
			t.Fatalf("DecodeBatch read %d entries, scanKeys %d (%v)", len(got), len(keys), kerr)
		}
		for i, k := range keys {
			if !bytes.Equal(k.gateway, got[i].Gateway) || !bytes.Equal(k.boot, got[i].Boot) || k.seq != got[i].Seq || k.received != got[i].Received {
				t.Fatalf("entry %d: scanKeys %+v, DecodeBatch %+v", i, k, got[i])
			}
		}
		again := decodeAll(t, EncodeBatch(nil, got))
		if len(again) != len(got) {
			t.Fatalf("%d entries after a round trip, want %d", len(again), len(got))
		}
		for i := range got {
			if err := sameEntry(&got[i], &again[i]); err != nil {
				t.Fatalf("entry %d after a round trip: %v", i, err)
			}
		}
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	var entries []Entry
	for i := range 16 {
		e := Entry{Gateway: []byte(testGW), Enterprise: []byte(testEnt), Boot: []byte("2f9c4e1a"), Seq: uint64(i + 1), Received: 1732442400500}
		for j := range 20 {
			e.Readings = append(e.Readings, Reading{Sensor: []byte(fmt.Sprintf("e01-AI-%03d", j)), TS: 1732442400123, Value: float64(j), HasValue: true})
		}
		entries = append(entries, e)
	}
	data := EncodeBatch(nil, entries)
	var d BatchDecoder
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Decode(data, func(*Entry) error { return nil })
	}
	b.ReportMetric(float64(b.N*len(entries)*20)/b.Elapsed().Seconds(), "readings/s")
}
