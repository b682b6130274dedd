package telemetry

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"hazardwatch/internal/model"
)

// pollCycle is a gateway's message for one poll of n of the plant's analog
// sensors, as AppendTelemetry writes it: mostly good values, every tenth
// reading bad with a reason, every seventh uncertain with a value.
func pollCycle(tb testing.TB, n int, boot string) (string, []byte) {
	tb.Helper()
	outs := make([]Out, n)
	for i := range outs {
		outs[i] = Out{Sensor: fmt.Sprintf("e01-AI-%03d", i), TS: testNowMS - 250 + int64(i), Value: 20.125 + float64(i)*0.37, HasValue: true}
		switch {
		case i%10 == 9:
			outs[i].HasValue, outs[i].Quality, outs[i].Reason = false, model.Bad, model.ReasonTimeout
		case i%7 == 6:
			outs[i].Quality, outs[i].Reason = model.Uncertain, model.ReasonOutOfRange
		}
	}
	return TelemetryTopic("e01", "gw-e01-1"), AppendTelemetry(nil, "gw-e01-1", boot, 1024, false, outs)
}

func TestDecodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	dec := NewDecoder(testPlant(), Options{})
	topic, payload := pollCycle(t, 60, "2f9c4e1a")
	_, payload2 := pollCycle(t, 60, "7d01b3c5")
	var m Message
	if err := dec.Decode(topic, payload, testNow, 0, &m); err != nil || len(m.Readings) != 60 {
		t.Fatalf("Decode: %v, %d readings %v", err, len(m.Readings), m.Rejected)
	}

	// The steady state of a connection: same boot, reused Message.
	if n := testing.AllocsPerRun(100, func() { _ = dec.Decode(topic, payload, testNow, 0, &m) }); n != 0 {
		t.Errorf("decoding a 60-reading message with an unchanged boot: %v allocations, want 0", n)
	}
	// Alternating boots (a Message shared between gateways): the boot string.
	i := 0
	alternate := func() {
		i++
		if i%2 == 0 {
			_ = dec.Decode(topic, payload, testNow, 0, &m)
		} else {
			_ = dec.Decode(topic, payload2, testNow, 0, &m)
		}
	}
	if n := testing.AllocsPerRun(100, alternate); n > 1 {
		t.Errorf("decoding a 60-reading message with a new boot: %v allocations, want at most 1", n)
	}
	// Nor does the count grow with the readings.
	_, small := pollCycle(t, 1, "2f9c4e1a")
	_ = dec.Decode(topic, small, testNow, 0, &m)
	if n := testing.AllocsPerRun(100, func() { _ = dec.Decode(topic, small, testNow, 0, &m) }); n != 0 {
		t.Errorf("decoding a 1-reading message: %v allocations, want 0", n)
	}
}

// TestDecodeConcurrent has goroutines warm one decoder's sensor cache at
// once, each from its own sensors, then checks every reading resolved to the
// right index; run it with -race.
func TestDecodeConcurrent(t *testing.T) {
	plant := testPlant()
	dec := NewDecoder(plant, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var m Message
			for round := range 20 {
				var outs []Out
				for i := g; i < numAnalog; i += 8 {
					outs = append(outs, Out{Sensor: fmt.Sprintf("e01-AI-%03d", (i+round)%numAnalog), TS: testNowMS, Value: float64(i), HasValue: true})
				}
				payload := AppendTelemetry(nil, "gw-e01-1", "b", uint64(round+1), false, outs)
				if err := dec.Decode(TelemetryTopic("e01", "gw-e01-1"), payload, testNow, 0, &m); err != nil {
					t.Error(err)
					return
				}
				for i, r := range m.Readings {
					if got, want := plant.Sensors[r.SensorIdx].ID, outs[i].Sensor; got != want {
						t.Errorf("reading %d resolved to %s, want %s", i, got, want)
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestDecodeResetsMessage checks that nothing of one message leaks into the
// next through the reused Message.
func TestDecodeResetsMessage(t *testing.T) {
	dec := NewDecoder(testPlant(), Options{})
	topic, payload := pollCycle(t, 5, "b1")
	var m Message
	if err := dec.Decode(topic, []byte(`{"gateway":"gw-e01-1","boot":"b0","seq":9,"replay":true,"readings":[{"sensor":"nope","ts":1,"v":1}]}`), testNow, 0, &m); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(topic, payload, testNow, 0, &m); err != nil {
		t.Fatal(err)
	}
	if m.Replay || m.Boot != "b1" || m.Seq != 1024 || len(m.Rejected) != 0 || len(m.Readings) != 5 {
		t.Fatalf("second message decoded as %+v", m)
	}
	err := dec.Decode(topic, []byte(`{"gateway":"gw-e01-1","boot":"b1","readings":[]}`), testNow, 0, &m)
	if e := (*Error)(nil); !errors.As(err, &e) || e.Reason != ReasonMalformedMessage {
		t.Fatalf("Decode = %v, want malformed_message", err)
	}
	if len(m.Readings) != 0 || len(m.Rejected) != 0 {
		t.Fatalf("a rejected message left %d readings and %d rejections", len(m.Readings), len(m.Rejected))
	}
}

func TestReasons(t *testing.T) {
	var labels []string
	for _, r := range Reasons() {
		labels = append(labels, r.String())
	}
	// SPEC §3's list, in its order: dashboards and outside checks rely on it.
	want := "invalid_json malformed_message oversized bad_topic unknown_gateway not_authorized " +
		"unknown_sensor wrong_enterprise future_timestamp stale_timestamp non_finite malformed_reading"
	if got := strings.Join(labels, " "); got != want {
		t.Errorf("Reasons() = %s\nwant        %s", got, want)
	}
	for _, r := range Reasons() {
		if got, want := r.PerReading(), r >= ReasonUnknownSensor; got != want {
			t.Errorf("%s.PerReading() = %t", r, got)
		}
	}
	if got := Reason(0).String(); got != "reason(0)" {
		t.Errorf("Reason(0) = %q", got)
	}
	e := &Error{Reason: ReasonBadTopic, Detail: `payload gateway "gw-2" is not the topic's "gw-1"`}
	if got, want := e.Error(), `telemetry: bad_topic: payload gateway "gw-2" is not the topic's "gw-1"`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{1, 60, 600} {
		dec := NewDecoder(testPlant(), Options{})
		topic, payload := pollCycle(b, min(n, numAnalog), "2f9c4e1a")
		if n > numAnalog { // a store-and-forward backlog: many cycles in one message
			outs := make([]Out, n)
			for i := range outs {
				outs[i] = Out{Sensor: fmt.Sprintf("e01-AI-%03d", i%numAnalog), TS: testNowMS - int64(n-i)*1000, Value: float64(i) * 0.25, HasValue: true}
			}
			payload = AppendTelemetry(nil, "gw-e01-1", "2f9c4e1a", 7, true, outs)
		}
		b.Run(fmt.Sprintf("readings=%d", n), func(b *testing.B) {
			var m Message
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := dec.Decode(topic, payload, testNow, 0, &m); err != nil || len(m.Readings) != n {
					b.Fatalf("Decode: %v, %d readings", err, len(m.Readings))
				}
			}
		})
	}
	b.Run("readings=60/parallel", func(b *testing.B) {
		dec := NewDecoder(testPlant(), Options{})
		topic, payload := pollCycle(b, 60, "2f9c4e1a")
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var m Message
			for pb.Next() {
				if err := dec.Decode(topic, payload, testNow, 0, &m); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkDecodeBaseline decodes the same 60-reading message with the
// encoding/json reference decoder of the differential fuzz test: the
// baseline that BenchmarkDecode is compared against in docs/PERFORMANCE.md.
func BenchmarkDecodeBaseline(b *testing.B) {
	p := testPlant()
	topic, payload := pollCycle(b, 60, "2f9c4e1a")
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if r := refDecode(p, Options{}.withDefaults(), topic, payload, testNow, 0); r.err != 0 {
			b.Fatalf("reference decode rejected the message: %v", r.err)
		}
	}
}
