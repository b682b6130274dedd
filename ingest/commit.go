package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Group commit.
//
// With SyncAlways the server fsyncs every JetStream message on its own, and
// mochi runs OnPublish one packet at a time per client, so writing each
// telemetry message alone caps the whole centre at one fsync per message.
// The committer is one goroutine that owns the dedup state and the write:
// connections hand it their encoded entry and wait; it takes what is
// waiting, writes it as one JetStream message, and answers each waiter
// after the ack. Whatever arrives while a write is in flight queues in its
// channel and becomes the next batch, so batches grow with load by
// themselves and a lone message is written at once, with no timer.

// verdict is the committer's answer to one request.
type verdict uint8

const (
	stored verdict = iota + 1
	duplicate
	failed
)

// request is one accepted message waiting for its write. It belongs to the
// connection that sends it and is reused for that connection's next message.
type request struct {
	gw   int32
	boot string
	seq  uint64
	// received is the centre's receive time, Unix ms, for the dedup
	// horizon.
	received int64
	// body is the encoded entry, without its length prefix.
	body []byte
	// done receives exactly one answer (capacity 1).
	done chan answer
	// followers are requests for the same (gateway, boot, seq) that
	// arrived while this one was in the batch being formed: a gateway
	// that republished on a new connection before the first copy was
	// written. They share this request's fate: stored makes them
	// duplicates, a failure fails them too, so that no copy is
	// acknowledged before one is durable.
	followers []*request
}

type answer struct {
	v   verdict
	err error
}

func newRequest() *request { return &request{done: make(chan answer, 1)} }

type msgID struct {
	gw   int32
	boot string
	seq  uint64
}

// committer writes batches to the READINGS stream.
type committer struct {
	js      jetstream.JetStream
	seen    *seen
	reqs    chan *request
	maxMsgs int
	// maxBytes bounds a batch's encoding: the NATS max payload less room
	// for the protocol's headers.
	maxBytes int
	timeout  time.Duration
	horizon  time.Duration
	clock    func() time.Time
	m        *metrics
	log      *slog.Logger

	batch   []*request
	inBatch map[msgID]*request
	size    int
	carry   *request
	buf     []byte
}

// run serves requests until stop is closed and no request is left, then
// closes done. Requests sent after done is closed are never answered:
// senders select on done too.
func (c *committer) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	c.inBatch = make(map[msgID]*request)
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		select {
		case r := <-c.reqs:
			c.round(r)
			// What did not fit is written now, not when the next
			// request happens to come.
			for c.carry != nil {
				c.round(nil)
			}
		case <-prune.C:
			c.prune()
		case <-stop:
			// The sources stopped before stop was closed; answer what
			// they left behind.
			for {
				select {
				case r := <-c.reqs:
					c.round(r)
					for c.carry != nil {
						c.round(nil)
					}
				default:
					return
				}
			}
		}
	}
}

// round forms one batch, starting with what did not fit the last one, then
// first, then whatever else is waiting, and writes it.
func (c *committer) round(first *request) {
	if c.carry != nil {
		r := c.carry
		c.carry = nil
		c.admit(r)
	}
	if first != nil {
		c.admit(first)
	}
drain:
	for c.carry == nil && len(c.batch) < c.maxMsgs {
		select {
		case r := <-c.reqs:
			c.admit(r)
		default:
			break drain
		}
	}
	c.write()
}

// admit decides a request: a duplicate is answered at once, a copy of one
// in the forming batch follows it, anything else joins the batch (or waits
// for the next when the batch is full).
func (c *committer) admit(r *request) {
	id := msgID{r.gw, r.boot, r.seq}
	if c.seen.has(r.gw, r.boot, r.seq) {
		r.done <- answer{v: duplicate}
		return
	}
	if leader := c.inBatch[id]; leader != nil {
		leader.followers = append(leader.followers, r)
		return
	}
	n := entrySize(len(r.body))
	if len(batchMagic)+n > c.maxBytes {
		// Start refuses a payload limit that lets this happen; a request
		// that still does is failed rather than written over the limit.
		c.log.Error("telemetry entry exceeds the JetStream message limit", "gateway_index", r.gw, "boot", r.boot, "seq", r.seq, "bytes", n, "limit", c.maxBytes)
		r.done <- answer{v: failed, err: fmt.Errorf("entry of %d bytes exceeds the batch limit of %d", n, c.maxBytes)}
		return
	}
	if len(c.batch) >= c.maxMsgs || len(batchMagic)+c.size+n > c.maxBytes {
		c.carry = r
		return
	}
	c.batch = append(c.batch, r)
	c.inBatch[id] = r
	c.size += n
}

func entrySize(body int) int {
	return uvarintLen(uint64(body)) + body
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// write stores the batch and answers its requests.
func (c *committer) write() {
	if len(c.batch) == 0 {
		return
	}
	c.buf = append(c.buf[:0], batchMagic...)
	for _, r := range c.batch {
		c.buf = binary.AppendUvarint(c.buf, uint64(len(r.body)))
		c.buf = append(c.buf, r.body...)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	_, err := c.js.Publish(ctx, Subject, c.buf, jetstream.WithExpectStream(StreamName))
	cancel()
	c.m.writeSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no JetStream ack within %s: %w", c.timeout, err)
		}
		c.m.storeErrors.Inc()
		// One line per failed write, not per message: the connections
		// it closes log nothing more.
		c.log.Error("JetStream write failed; withholding the acknowledgements and closing the connections, so that the messages are sent again",
			"stream", StreamName, "messages", len(c.batch), "bytes", len(c.buf), "error", err)
		err = fmt.Errorf("ingest: store %s: %w", StreamName, err)
		for _, r := range c.batch {
			c.answer(r, answer{v: failed, err: err}, answer{v: failed, err: err})
		}
	} else {
		c.m.batchMessages.Observe(float64(len(c.batch)))
		for _, r := range c.batch {
			// Recorded only now: a failed write must leave the seq
			// unseen so that the resend is stored.
			c.seen.add(r.gw, r.boot, r.seq, r.received)
			c.answer(r, answer{v: stored}, answer{v: duplicate})
		}
	}
	clear(c.batch)
	c.batch = c.batch[:0]
	clear(c.inBatch)
	c.size = 0
}

func (c *committer) answer(r *request, a, followers answer) {
	for i, f := range r.followers {
		f.done <- followers
		r.followers[i] = nil
	}
	r.followers = r.followers[:0]
	r.done <- a
}

func (c *committer) prune() {
	cutoff := c.clock().Add(-c.horizon).UnixMilli()
	boots := c.seen.prune(cutoff)
	c.m.dedupBoots.Set(float64(boots))
}
