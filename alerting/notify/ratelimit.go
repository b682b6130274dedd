package notify

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Rate is a token bucket: Burst notices at once, then one more each Every.
// The zero Rate takes the default; a negative Every means no limit.
type Rate struct {
	Burst int
	Every time.Duration
}

// The default rates. A sensor may send three first notices at once (a
// raise, its level going up to L2, a second raise) and then one each
// 10 minutes: a chattering sensor is the Manager's to group, and these
// limits only keep the phones usable when it has not. An enterprise may
// send 20 at once and one a minute after: a flood (more than 10 alarms in
// 10 minutes, DOMAIN.md) still reaches people, without hundreds of SMS.
var (
	DefaultSensorRate     = Rate{Burst: 3, Every: 10 * time.Minute}
	DefaultEnterpriseRate = Rate{Burst: 20, Every: time.Minute}
)

func (r Rate) orDefault(def Rate) Rate {
	if r == (Rate{}) {
		return def
	}
	if r.Burst < 1 {
		r.Burst = 1
	}
	return r
}

func (r Rate) unlimited() bool { return r.Every < 0 }

// rateStage limits the first notices of an alarm ("raised",
// "level_changed") per sensor and per enterprise. Escalations, reminders
// and feedback_overdue are never limited: they are the closed loop, and a
// first notice dropped here is still followed by them when nobody
// acknowledges the alarm. What is dropped is counted per notice and logged
// once a minute per sensor or enterprise, with how many.
type rateStage struct {
	sensor, enterprise Rate
	clock              func() time.Time
	log                *slog.Logger
	met                *metrics

	mu        sync.Mutex
	buckets   map[bucketKey]*bucket
	lastFlush time.Time
}

type bucketKey struct {
	scope string // "sensor" or "enterprise"
	id    string
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped int // since the last log line
}

func newRateStage(sensor, enterprise Rate, clock func() time.Time, log *slog.Logger, met *metrics) *rateStage {
	return &rateStage{sensor: sensor, enterprise: enterprise, clock: clock, log: log, met: met,
		buckets: make(map[bucketKey]*bucket), lastFlush: clock()}
}

// limited reports whether an event is subject to the rate limits.
func limited(event string) bool { return event == EventRaised || event == EventLevelChanged }

func (s *rateStage) Exec(_ context.Context, d *delivery) (outcome, error) {
	if !limited(d.N.Event) {
		return outPending, nil
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastFlush) >= time.Minute {
		s.flushLocked(now)
	}
	sensorID := firstOf(d.N.Sensor, d.N.Gateway, d.N.AlarmID)
	sb := s.take(bucketKey{"sensor", sensorID}, s.sensor, now)
	var eb *bucket
	if d.N.Enterprise != "" {
		eb = s.take(bucketKey{"enterprise", d.N.Enterprise}, s.enterprise, now)
	}
	// Both must have a token before either is spent, so that a notice the
	// enterprise refuses does not use up its sensor's.
	switch {
	case sb != nil && sb.tokens < 1:
		sb.dropped++
		s.met.rateLimited[0].Inc()
		return outRateLimited, nil
	case eb != nil && eb.tokens < 1:
		eb.dropped++
		s.met.rateLimited[1].Inc()
		return outRateLimited, nil
	}
	if sb != nil {
		sb.tokens--
	}
	if eb != nil {
		eb.tokens--
	}
	return outPending, nil
}

// take returns k's bucket refilled to now, or nil when r has no limit.
func (s *rateStage) take(k bucketKey, r Rate, now time.Time) *bucket {
	if r.unlimited() {
		return nil
	}
	b := s.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(r.Burst), last: now}
		s.buckets[k] = b
		return b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(r.Burst), b.tokens+float64(el)/float64(r.Every))
		b.last = now
	}
	return b
}

// flush logs what was dropped since the last flush, one line per sensor or
// enterprise, and forgets buckets that are full again (memory stays bounded
// by what was active in the last refill period).
func (s *rateStage) flush() {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked(now)
}

func (s *rateStage) flushLocked(now time.Time) {
	var keys []bucketKey
	for k, b := range s.buckets {
		if b.dropped > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].scope != keys[j].scope {
			return keys[i].scope > keys[j].scope
		}
		return keys[i].id < keys[j].id
	})
	for _, k := range keys {
		b := s.buckets[k]
		s.log.Warn("notify: first notices dropped by the rate limit", k.scope, k.id, "dropped", b.dropped, "since", s.lastFlush)
		b.dropped = 0
	}
	for k, b := range s.buckets {
		r := s.sensor
		if k.scope == "enterprise" {
			r = s.enterprise
		}
		if b.dropped == 0 && b.tokens+float64(now.Sub(b.last))/float64(r.Every) >= float64(r.Burst) {
			delete(s.buckets, k)
		}
	}
	s.lastFlush = now
}
