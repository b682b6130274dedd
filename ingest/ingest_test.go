package ingest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"hazardwatch/internal/bus"
	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// TestBadContentAcknowledged publishes every bad message of SPEC §2 with a
// real MQTT client: each gets its PUBACK, is counted under its reason, the
// good readings of a partly bad batch are stored, and the same client goes
// on publishing afterwards.
func TestBadContentAcknowledged(t *testing.T) {
	h := start(t, nil)
	c := h.client("gw-bad", nil)
	now := nowMS()
	good := func(sensor string) string {
		return fmt.Sprintf(`{"sensor":%q,"ts":%d,"v":2.5}`, sensor, now)
	}
	msg := func(seq int, readings ...string) []byte {
		return fmt.Appendf(nil, `{"gateway":%q,"boot":"b-bad","seq":%d,"readings":[%s]}`, testGW, seq, strings.Join(readings, ","))
	}
	big := fmt.Appendf(nil, `{"gateway":%q,"boot":"b-bad","seq":99,"pad":"%s","readings":[%s]}`,
		testGW, strings.Repeat("x", 300<<10), good(sensorLT))

	tests := []struct {
		name    string
		topic   string
		payload []byte
		reason  telemetry.Reason
		// message: the message is rejected as a whole; otherwise one
		// reading is, and the message is stored with its good reading.
		message bool
		seq     uint64
	}{
		{"invalid JSON", testTopic, []byte(`{"gateway":"gw-e01-1","boot":`), telemetry.ReasonInvalidJSON, true, 0},
		{"wrong shape", testTopic, []byte(`{"gateway":"gw-e01-1","boot":"b-bad","readings":[]}`), telemetry.ReasonMalformedMessage, true, 0},
		{"array instead of object", testTopic, []byte(`[1,2,3]`), telemetry.ReasonMalformedMessage, true, 0},
		{"oversized content", testTopic, big, telemetry.ReasonOversized, true, 0},
		{"gateway other than the topic's", telemetry.TelemetryTopic(testEnt, "gw-e01-2"), msg(1, good(sensorLT)), telemetry.ReasonBadTopic, true, 0},
		{"unknown gateway", telemetry.TelemetryTopic(testEnt, "gw-nope"), []byte(`{"gateway":"gw-nope","boot":"b","seq":1,"readings":[]}`), telemetry.ReasonUnknownGateway, true, 0},
		{"unknown sensor", testTopic, msg(1, good("e01-NOPE"), good(sensorLT)), telemetry.ReasonUnknownSensor, false, 1},
		{"wrong enterprise", testTopic, msg(2, good(otherEnt), good(sensorLT)), telemetry.ReasonWrongEnterprise, false, 2},
		{"future timestamp", testTopic, msg(3, fmt.Sprintf(`{"sensor":%q,"ts":%d,"v":1}`, sensorPT, now+int64(time.Hour/time.Millisecond)), good(sensorLT)), telemetry.ReasonFutureTimestamp, false, 3},
		{"stale timestamp", testTopic, msg(4, fmt.Sprintf(`{"sensor":%q,"ts":%d,"v":1}`, sensorPT, now-int64(8*24*time.Hour/time.Millisecond)), good(sensorLT)), telemetry.ReasonStaleTimestamp, false, 4},
		{"1e999", testTopic, msg(5, fmt.Sprintf(`{"sensor":%q,"ts":%d,"v":1e999}`, sensorPT, now), good(sensorLT)), telemetry.ReasonNonFinite, false, 5},
		{"malformed reading", testTopic, msg(6, fmt.Sprintf(`{"sensor":%q,"ts":"soon","v":1}`, sensorPT), good(sensorLT)), telemetry.ReasonMalformedReading, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason := h.metric("hw_ingest_rejected_total", "reason", tt.reason.String())
			msgs := h.metric("hw_ingest_messages_total", "result", "rejected")
			accepted := h.metric("hw_ingest_messages_total", "result", "accepted")
			readingsOK := h.metric("hw_ingest_readings_total", "result", "accepted")
			readingsBad := h.metric("hw_ingest_readings_total", "result", "rejected")

			if err := publish(t, c, tt.topic, tt.payload); err != nil {
				t.Fatalf("bad content must still be acknowledged: %v", err)
			}
			if got := h.metric("hw_ingest_rejected_total", "reason", tt.reason.String()) - reason; got != 1 {
				t.Errorf("hw_ingest_rejected_total{reason=%q} rose by %v, want 1", tt.reason, got)
			}
			if tt.message {
				if got := h.metric("hw_ingest_messages_total", "result", "rejected") - msgs; got != 1 {
					t.Errorf("messages rejected rose by %v, want 1", got)
				}
				return
			}
			// A partly bad batch is an accepted message.
			if got := h.metric("hw_ingest_messages_total", "result", "accepted") - accepted; got != 1 {
				t.Errorf("messages accepted rose by %v, want 1", got)
			}
			if ok, bad := h.metric("hw_ingest_readings_total", "result", "accepted")-readingsOK, h.metric("hw_ingest_readings_total", "result", "rejected")-readingsBad; ok != 1 || bad != 1 {
				t.Errorf("readings accepted/rejected rose by %v/%v, want 1/1", ok, bad)
			}
			var found *storedEntry
			for _, e := range h.stored() {
				if e.Boot == "b-bad" && e.Seq == tt.seq {
					found = &e
				}
			}
			if found == nil {
				t.Fatalf("the good reading of seq %d was not stored", tt.seq)
			}
			want := []storedReading{{Sensor: sensorLT, TS: now, Value: 2.5, HasValue: true, Quality: model.Good}}
			if fmt.Sprint(found.Readings) != fmt.Sprint(want) {
				t.Errorf("stored readings %+v, want %+v", found.Readings, want)
			}
		})
	}

	// The broker kept running and the same client still publishes.
	mustPublish(t, c, testTopic, goodMessage("b-bad", 100, nowMS(), 3))
	if n := h.storedSeqs(testGW, "b-bad")[100]; n != 1 {
		t.Fatalf("a good message after the bad ones was stored %d times, want 1", n)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the client lost its connection")
	}
	// Content was refused, never storage: nothing was a write error.
	if n := testutil.ToFloat64(h.in.m.storeErrors); n != 0 {
		t.Errorf("hw_store_write_errors_total = %v, want 0", n)
	}
}

// TestStoredEntry checks what one accepted message becomes in the stream.
func TestStoredEntry(t *testing.T) {
	h := start(t, nil)
	c := h.client("gw-entry", nil)
	ts := nowMS()
	old := ts - int64(10*time.Minute/time.Millisecond)
	payload := telemetry.AppendTelemetry(nil, testGW, "boot-1", 42, true, []telemetry.Out{
		{Sensor: sensorLT, TS: ts, Value: 3.42, HasValue: true},
		{Sensor: sensorPT, TS: old, Quality: model.Bad, Reason: model.ModbusException(2)},
		{Sensor: sensorXV, TS: ts, Value: 1, HasValue: true, Quality: model.Uncertain, Reason: model.ReasonOutOfRange},
	})
	before := time.Now().UnixMilli()
	mustPublish(t, c, testTopic, payload)
	after := time.Now().UnixMilli()

	got := h.stored()
	if len(got) != 1 {
		t.Fatalf("stream holds %d entries, want 1", len(got))
	}
	e := got[0]
	if e.Received < before || e.Received > after {
		t.Errorf("received %d, not within [%d, %d]", e.Received, before, after)
	}
	e.Received = 0
	want := storedEntry{Gateway: testGW, Enterprise: testEnt, Boot: "boot-1", Seq: 42, Replay: true, Readings: []storedReading{
		{Sensor: sensorLT, TS: ts, Value: 3.42, HasValue: true, Late: true, Quality: model.Good},
		{Sensor: sensorPT, TS: old, Late: true, Quality: model.Bad, Reason: model.ModbusException(2)},
		{Sensor: sensorXV, TS: ts, Value: 1, HasValue: true, Late: true, Quality: model.Uncertain, Reason: model.ReasonOutOfRange},
	}}
	if fmt.Sprintf("%+v", e) != fmt.Sprintf("%+v", want) {
		t.Errorf("stored\n%+v\nwant\n%+v", e, want)
	}
	// A replayed message says nothing of the live lag.
	if lag := h.metric("hw_pipeline_lag_seconds", "stage", "ingest"); lag != 0 {
		t.Errorf("lag %v set by a replayed message", lag)
	}
	mustPublish(t, c, testTopic, goodMessage("boot-1", 43, nowMS()-1500, 1))
	if lag := h.metric("hw_pipeline_lag_seconds", "stage", "ingest"); lag < 1.4 || lag > waitLong.Seconds() {
		t.Errorf("hw_pipeline_lag_seconds{stage=ingest} = %v, want about 1.5 s", lag)
	}
}

// TestBadTopicRefused: a publish outside hw/v1/+/+/telemetry|status is
// refused (mochi closes an MQTT 3.1.1 connection on an ACL refusal) and
// counted; the broker serves others as before.
func TestBadTopicRefused(t *testing.T) {
	h := start(t, nil)
	lost := newLossWatch()
	c := h.client("gw-topic", lost.option)
	lost.refused(t, c, "plant/e01/anything", false, []byte("x"))
	if n := h.metric("hw_ingest_rejected_total", "reason", "bad_topic"); n != 1 {
		t.Errorf("bad_topic = %v, want 1", n)
	}
	if n := h.metric("hw_ingest_messages_total", "result", "rejected"); n != 1 {
		t.Errorf("messages rejected = %v, want 1", n)
	}
	c2 := h.client("gw-topic-2", nil)
	mustPublish(t, c2, testTopic, goodMessage("b", 1, nowMS(), 1))
}

// TestPacketAboveTransportCap: a packet above 1 MiB closes the connection
// and is counted oversized.
func TestPacketAboveTransportCap(t *testing.T) {
	h := start(t, nil)
	lost := newLossWatch()
	c := h.client("gw-huge", lost.option)
	lost.refused(t, c, testTopic, false, make([]byte, MaxPacket+1))
	eventually(t, "oversized counted", func() bool { return h.metric("hw_ingest_rejected_total", "reason", "oversized") == 1 })
	if n := h.metric("hw_ingest_messages_total", "result", "rejected"); n != 1 {
		t.Errorf("messages rejected = %v, want 1", n)
	}
	if len(h.stored()) != 0 {
		t.Error("something was stored")
	}
	c2 := h.client("gw-huge-2", nil)
	mustPublish(t, c2, testTopic, goodMessage("b", 1, nowMS(), 1))
}

// TestMetricNames: the series SPEC §3 names are there from the start, at
// zero, so that dashboards and outside checks see zeros rather than gaps.
func TestMetricNames(t *testing.T) {
	h := start(t, nil)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += " " + lp.GetName() + "=" + lp.GetValue()
			}
			have[key] = true
		}
	}
	want := []string{
		"hw_ingest_messages_total result=accepted", "hw_ingest_messages_total result=rejected", "hw_ingest_messages_total result=duplicate",
		"hw_ingest_readings_total result=accepted", "hw_ingest_readings_total result=rejected",
		"hw_broker_dropped_total reason=queue_full", "hw_broker_dropped_total reason=inflight_full", "hw_broker_dropped_total reason=inflight_expired",
		"hw_store_write_errors_total store=jetstream", "hw_gateways_online", "hw_pipeline_lag_seconds stage=ingest",
	}
	for _, r := range telemetry.Reasons() {
		want = append(want, "hw_ingest_rejected_total reason="+r.String())
	}
	for _, r := range refusedReasons {
		want = append(want, "hw_ingest_connect_refused_total reason="+r)
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("no series %s", w)
		}
	}
}

func TestNewChecksOptions(t *testing.T) {
	p := plant(t)
	for name, o := range map[string]Options{
		"no plant":         {Listen: "127.0.0.1:0"},
		"no bus":           {Plant: p, Listen: "127.0.0.1:0"},
		"both brokers":     {Plant: p, Listen: "127.0.0.1:0", ExternalURL: "tcp://127.0.0.1:1883"},
		"url scheme":       {Plant: p, ExternalURL: "127.0.0.1:1883"},
		"payload over cap": {Plant: p, Listen: "127.0.0.1:0", MaxPayload: MaxPacket},
	} {
		if name != "no plant" && name != "no bus" {
			o.Bus = new(bus.Server)
		}
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

// TestStartFailsCleanly: a Start that fails (the port is taken) leaves
// nothing running, and Close after it is harmless.
func TestStartFailsCleanly(t *testing.T) {
	h := start(t, nil)
	b, err := bus.Start(bus.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	in, err := New(Options{Plant: plant(t), Bus: b, Listen: h.in.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(t.Context()); err == nil {
		t.Fatal("Start succeeded on a port in use")
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if in.Ready() == nil {
		t.Error("Ready after a failed Start")
	}
}
