package ingest

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"hazardwatch/internal/telemetry"
)

// gateways tracks what the status topic says: which gateways are online and
// how far each one's clock is off the centre's.
type gateways struct {
	mu     sync.Mutex
	online []bool
	count  int
	// skew is gateway clock minus centre clock, in nanoseconds, read by
	// every telemetry message of the gateway without a lock.
	skew []atomic.Int64
}

func newGateways(n int) *gateways {
	return &gateways{online: make([]bool, n), skew: make([]atomic.Int64, n)}
}

// status handles a message on hw/v1/{e}/{g}/status. fresh is false for a
// copy the broker kept (a retained message delivered on subscribe) and for a
// last will, whose timestamp is from when the gateway connected: neither
// says what the gateway's clock reads now, so they set the state but not the
// skew. The skew is measured from online messages only, for the same
// reason: an offline message may be the will.
func (in *Ingest) status(topic string, payload []byte, fresh bool, source string) {
	now := in.clock()
	t, err := telemetry.ParseTopic(topic)
	if err != nil || t.Kind != telemetry.TopicStatus {
		in.rejectStatus(topic, source, "not a status topic")
		return
	}
	gi, ok := in.plant.GatewayIndex(t.Gateway)
	if !ok {
		in.rejectStatus(topic, source, "gateway is not in the plant")
		return
	}
	if ei, ok := in.plant.EnterpriseIndex(t.Enterprise); !ok || in.plant.GatewayEnterprise(gi) != ei {
		in.rejectStatus(topic, source, "gateway does not belong to the topic's enterprise")
		return
	}
	st, err := telemetry.DecodeStatus(payload)
	if err != nil {
		detail := err.Error()
		var te *telemetry.Error
		if errors.As(err, &te) {
			detail = te.Reason.String() + ": " + te.Detail
		}
		in.rejectStatus(topic, source, detail)
		return
	}
	in.m.status.WithLabelValues("accepted").Inc()

	g := in.gws
	online := st.State == telemetry.StateOnline
	g.mu.Lock()
	changed := g.online[gi] != online
	if changed {
		g.online[gi] = online
		if online {
			g.count++
		} else {
			g.count--
		}
		in.m.online.Set(float64(g.count))
	}
	g.mu.Unlock()

	var skew time.Duration
	measured := fresh && online
	if measured {
		skew = time.UnixMilli(st.TS).Sub(now)
		g.skew[gi].Store(int64(skew))
		in.m.skew.WithLabelValues(t.Gateway).Set(skew.Seconds())
	}
	if changed {
		attrs := []any{"gateway", t.Gateway, "state", st.State, "boot", st.Boot, "fresh", fresh}
		if measured {
			attrs = append(attrs, "clock_skew", skew)
		}
		in.log.Info("gateway status", attrs...)
	}
}

func (in *Ingest) rejectStatus(topic, source, detail string) {
	in.m.status.WithLabelValues("rejected").Inc()
	in.log.Warn("status message rejected", "topic", topic, "client", source, "detail", detail)
}

// skewOf returns the measured clock skew of the gateway a telemetry topic
// names; zero when the topic or gateway is unknown or nothing was measured.
func (in *Ingest) skewOf(topic string) time.Duration {
	t, err := telemetry.ParseTopic(topic)
	if err != nil {
		return 0
	}
	gi, ok := in.plant.GatewayIndex(t.Gateway)
	if !ok {
		return 0
	}
	return time.Duration(in.gws.skew[gi].Load())
}
