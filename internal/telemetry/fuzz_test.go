package telemetry

import (
	"errors"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"hazardwatch/internal/model"
)

// maxFuzzSkew keeps the fuzzed skew in a range where time arithmetic cannot
// overflow; real skews are seconds.
const maxFuzzSkew = int64(30 * 24 * time.Hour)

// FuzzDecode checks that Decode never panics and agrees with refDecode on
// every message-level and reading-level verdict and on every value.
func FuzzDecode(f *testing.F) {
	for _, c := range goldenCases(f) {
		if c.opts == (Options{}) { // the fuzz target decodes with the defaults
			f.Add(c.topic, c.payload, int64(c.skew))
		}
	}
	plant := testPlant()
	dec := NewDecoder(plant, Options{})
	var m Message
	f.Fuzz(func(t *testing.T, topic string, payload []byte, skewNS int64) {
		skew := time.Duration(skewNS % maxFuzzSkew)
		err := dec.Decode(topic, payload, testNow, skew, &m)
		want := refDecode(plant, Options{}, topic, payload, testNow, skew)
		checkAgainstRef(t, &m, err, want)
	})
}

func checkAgainstRef(t *testing.T, m *Message, err error, want refResult) {
	t.Helper()
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Decode returned %T, want *Error: %v", err, err)
		}
		if e.Reason != want.err {
			t.Fatalf("Decode: %v; reference says %v", err, want.err)
		}
		if len(m.Readings)+len(m.Rejected) != 0 {
			t.Fatalf("rejected message left %d readings and %d rejections", len(m.Readings), len(m.Rejected))
		}
		return
	}
	if want.err != 0 {
		t.Fatalf("Decode accepted the message; reference says %v", want.err)
	}
	if m.Enterprise != want.ent || m.Gateway != want.gw || m.Boot != want.boot || m.Seq != want.seq || m.Replay != want.replay {
		t.Fatalf("message = {ent %d gw %d boot %q seq %d replay %t}, reference {ent %d gw %d boot %q seq %d replay %t}",
			m.Enterprise, m.Gateway, m.Boot, m.Seq, m.Replay, want.ent, want.gw, want.boot, want.seq, want.replay)
	}
	if len(m.Readings)+len(m.Rejected) != len(want.outcomes) {
		t.Fatalf("%d accepted + %d rejected readings, reference has %d", len(m.Readings), len(m.Rejected), len(want.outcomes))
	}
	acc, rej := 0, 0
	for i, o := range want.outcomes {
		if o.reason != 0 {
			if rej >= len(m.Rejected) || m.Rejected[rej].Index != i || m.Rejected[rej].Reason != o.reason {
				t.Fatalf("reading %d: reference rejects it as %v; Decode's rejections: %+v", i, o.reason, m.Rejected)
			}
			rej++
			continue
		}
		if acc >= len(m.Readings) || !sameReading(m.Readings[acc], o.reading) {
			t.Fatalf("reading %d: reference accepts %+v; Decode accepted %+v, rejected %+v", i, o.reading, m.Readings, m.Rejected)
		}
		acc++
	}
}

// FuzzRoundTrip checks that what AppendTelemetry writes, Decode reads back:
// every reading, bit for bit, after the encoder's one documented change
// (a reading without a usable value goes out as bad).
func FuzzRoundTrip(f *testing.F) {
	f.Add("2f9c4e1a", uint64(1024), false, uint8(3), int64(123), 3.42, true, uint8(0), uint8(0))
	f.Add("b", uint64(1), true, uint8(7), int64(-86_400_000), math.NaN(), true, uint8(1), uint8(9))
	f.Add("é\xff\"\\\n", uint64(math.MaxUint64), false, uint8(60), int64(0), math.Inf(-1), false, uint8(0), uint8(200))
	f.Add("b", uint64(2), false, uint8(1), int64(5), math.Copysign(0, -1), true, uint8(2), uint8(4))
	plant := testPlant()
	dec := NewDecoder(plant, Options{})
	var m Message
	f.Fuzz(func(t *testing.T, boot string, seq uint64, replay bool, n uint8, tsOff int64, value float64, hasValue bool, q, r uint8) {
		outs := make([]Out, int(n)%(numAnalog+1))
		for i := range outs {
			// Vary every field by reading so one input covers many shapes;
			// ts stays within history's horizon.
			outs[i] = Out{
				Sensor:   plant.Sensors[len(plant.Sensors)-numAnalog+i].ID,
				TS:       testNowMS - (tsOff+int64(i)*7919)%int64(DefaultMaxAge/time.Millisecond),
				Value:    value * float64(i+1),
				HasValue: hasValue != (i%3 == 2),
				Quality:  model.Quality((int(q) + i) % 4),
				Reason:   model.QualityReason(int(r) + i),
			}
			if outs[i].TS > testNowMS {
				outs[i].TS = testNowMS - (outs[i].TS - testNowMS)
			}
		}
		payload := AppendTelemetry(nil, "gw-e01-1", boot, seq, replay, outs)
		err := dec.Decode(TelemetryTopic("e01", "gw-e01-1"), payload, testNow, 0, &m)
		wantBoot := jsonString(boot)
		if wantBoot == "" || len(wantBoot) > maxBoot || seq == 0 {
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonMalformedMessage {
				t.Fatalf("boot %q seq %d: Decode = %v, want malformed_message", boot, seq, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(%s): %v", payload, err)
		}
		if m.Boot != wantBoot || m.Seq != seq || m.Replay != replay || len(m.Rejected) != 0 || len(m.Readings) != len(outs) {
			t.Fatalf("Decode(%s) = %+v", payload, m)
		}
		for i, o := range outs {
			if !sameReading(m.Readings[i], expectRead(o, replay, plant)) {
				t.Fatalf("reading %d: wrote %+v, read %+v (payload %s)", i, o, m.Readings[i], payload)
			}
		}
	})
}

// expectRead is what Decode should make of o after AppendTelemetry.
func expectRead(o Out, replay bool, p *model.Plant) model.Reading {
	idx, _ := p.SensorIndex(o.Sensor)
	r := model.Reading{
		SensorIdx: idx,
		Reason:    model.ParseQualityReason(o.Reason.String()),
		Quality:   o.Quality,
		HasValue:  o.HasValue,
		Late:      replay || o.TS < testNowMS-int64(DefaultLiveWindow/time.Millisecond),
		TS:        o.TS,
		Value:     o.Value,
	}
	if r.Quality > model.Bad {
		r.Quality = model.Bad
	}
	if !r.HasValue || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		r.HasValue, r.Value = false, 0
		if o.Quality == model.Good || o.HasValue {
			r.Quality = model.Bad
			if r.Reason == model.ReasonNone {
				r.Reason = model.ReasonOther
			}
		}
	}
	return r
}

// jsonString is s as encoding/json reads it back: each invalid byte U+FFFD.
func jsonString(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, r)
		i += n
	}
	return string(b)
}
