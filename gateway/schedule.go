package gateway

import (
	"context"
	"sync/atomic"
	"time"

	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// device is one Modbus device's schedule, connection and back-off.
type device struct {
	plan   devicePlan
	client deviceClient
	period time.Duration

	// next is the device's next poll slot; the scheduler's alone.
	next time.Time
	// busy is set by the scheduler when it hands a slot over and cleared by
	// the device's goroutine when the poll's readings are with the
	// collector.
	busy atomic.Bool
	slot chan time.Time // capacity 1: the slot handed over

	// The device goroutine's own.
	out    []telemetry.Out // the last poll's readings, reused
	count  *deviceCounters
	fails  int           // polls in a row the device did not answer
	until  time.Time     // no request before this slot (back-off)
	wait   time.Duration // the back-off's current wait
	reason model.QualityReason
}

// schedule hands each device its poll slots until ctx ends. Slots are
// start + k × period on the monotonic clock, so they do not drift; a device
// whose previous poll has not ended misses the slot (counted as an overrun),
// and nothing else waits for it.
func (g *Gateway) schedule(ctx context.Context) {
	start := time.Now()
	for _, d := range g.devs {
		d.next = start
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		next := now.Add(time.Hour)
		for _, d := range g.devs {
			if !d.next.After(now) {
				if d.busy.CompareAndSwap(false, true) {
					g.col.started()
					d.slot <- d.next
				} else {
					g.m.overruns.WithLabelValues(d.plan.device.ID).Inc()
				}
				// The first slot after now; slots passed over while the
				// scheduler was late are missed too.
				k := now.Sub(d.next)/d.period + 1
				if k > 1 {
					g.m.overruns.WithLabelValues(d.plan.device.ID).Add(float64(k - 1))
				}
				d.next = d.next.Add(k * d.period)
			}
			if d.next.Before(next) {
				next = d.next
			}
		}
		timer.Reset(time.Until(next))
	}
}

// pollLoop polls d at each slot the scheduler hands over until ctx ends.
func (g *Gateway) pollLoop(ctx context.Context, d *device) {
	for {
		select {
		case <-ctx.Done():
			return
		case slot := <-d.slot:
			g.pollOnce(d, slot)
			g.col.add(d.out)
			d.busy.Store(false)
		}
	}
}

// pollOnce polls d for the slot, or, while d is in back-off, marks its
// sensors bad with the reason of the back-off without asking it.
//
// Back-off: a device that does not answer is tried again at the next slot;
// after that the wait doubles from one period up to MaxBackoff. A device
// that says it is busy (exception 06) backs off the same way but keeps its
// connection: it answered, so the link is fine.
func (g *Gateway) pollOnce(d *device, slot time.Time) {
	id := d.plan.device.ID
	if slot.Before(d.until) {
		d.out = d.plan.appendBad(d.out[:0], g.o.Clock().UnixMilli(), d.reason)
		g.m.count(d.count, d.out, false)
		return
	}
	var res pollResult
	d.out, res = pollDevice(d.client, &d.plan, g.o.Clock, d.out[:0])
	g.m.count(d.count, d.out, true)
	if !res.halted {
		if d.fails > 0 {
			g.log.Info("device answers again", "device", id, "after_failures", d.fails)
			g.m.backoff.WithLabelValues(id).Set(0)
		}
		d.fails, d.until, d.wait = 0, time.Time{}, 0
		if res.err != nil {
			g.log.Debug("poll failed", "device", id, "err", res.err)
		}
		return
	}
	d.fails++
	d.reason = res.reason
	wait := time.Duration(0)
	if d.fails >= 2 {
		wait = d.period << min(d.fails-2, 20)
		if wait > g.o.MaxBackoff || wait <= 0 {
			wait = g.o.MaxBackoff
		}
		d.until = slot.Add(wait)
	}
	g.m.backoff.WithLabelValues(id).Set(wait.Seconds())
	switch {
	case d.fails == 1:
		g.log.Warn("device does not answer; its sensors are sent as bad", "device", id, "reason", res.reason, "err", res.err)
	case wait != d.wait: // said once per step, quiet at the longest wait
		g.log.Warn("device still does not answer; backing off", "device", id, "reason", res.reason, "failures", d.fails, "next_try_in", wait)
	}
	d.wait = wait
}
