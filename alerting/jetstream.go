package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream names of the alarm log.
const (
	// StreamName is the stream that holds every alarm event.
	StreamName = "ALARMS"
	// subjectPrefix: the stream's subjects. Events are written as batches
	// (group commit) on alarms.events; logs written before batching hold
	// one event per message on alarms.<enterprise>, and still replay.
	subjectPrefix = "alarms."
	subject       = subjectPrefix + "events"
	// maxMessage bounds one message of the log, well under NATS's
	// default max_payload (1 MiB): a larger batch takes several.
	maxMessage = 512 << 10
)

// JetStreamLog is the Log on a JetStream file stream. On internal/bus's
// server (SyncAlways) an Append returns only after the event is on disk.
//
// The stream keeps every event (no age limit): replaying it is how alarms
// come back after a restart, and DOMAIN.md asks for at least 30 days of
// records. Compaction (a snapshot event, then trimming) comes when the
// stream grows large enough to slow the start.
type JetStreamLog struct {
	js jetstream.JetStream
}

// OpenJetStreamLog creates the ALARMS stream, or checks and updates it.
func OpenJetStreamLog(ctx context.Context, js jetstream.JetStream) (*JetStreamLog, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "hazardwatch alarm events (package alerting), one JSON event per message",
		Subjects:    []string{subjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// An append retried after an error carries the same message id (the
		// event's global seq): the server drops the copy within this window.
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("alerting: stream %s: %w", StreamName, err)
	}
	return &JetStreamLog{js: js}, nil
}

// Append writes evs as few messages as fit maxMessage, each a JSON array
// of events, and waits for the stream's acknowledgement of every one. On
// internal/bus's server (SyncAlways) each acknowledgement comes after that
// message's fsync, so one write holds a whole batch. A message's id is the
// range of global seqs it holds: an Append retried after an error writes
// the same messages, and the server drops what it already has.
func (l *JetStreamLog) Append(ctx context.Context, evs []Event) error {
	type pending struct {
		ack      jetstream.PubAckFuture
		from, to int
	}
	var out []pending
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	from := 0
	send := func(to int) error {
		buf.WriteByte(']')
		id := strconv.FormatUint(evs[from].Seq.Global, 10) + "-" + strconv.FormatUint(evs[to-1].Seq.Global, 10)
		// The future keeps the message to resend it when the stream has
		// no responder yet: it gets a copy of its own.
		f, err := l.js.PublishAsync(subject, bytes.Clone(buf.Bytes()), jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamName))
		if err != nil {
			return fmt.Errorf("alerting: append events %s: %w", id, err)
		}
		out = append(out, pending{f, from, to})
		buf.Reset()
		from = to
		return nil
	}
	for i := range evs {
		mark := buf.Len()
		if buf.Len() == 0 {
			buf.WriteByte('[')
		} else {
			buf.WriteByte(',')
		}
		if err := enc.Encode(evs[i].wire()); err != nil {
			return fmt.Errorf("alerting: encode event %d: %w", evs[i].Seq.Global, err)
		}
		if i > from && buf.Len()+1 > maxMessage {
			// This event does not fit: send the others, then it alone
			// starts the next message.
			rest := append([]byte{'['}, buf.Bytes()[mark+1:]...)
			buf.Truncate(mark)
			if err := send(i); err != nil {
				return err
			}
			buf.Write(rest)
		}
	}
	if len(evs) > 0 {
		if err := send(len(evs)); err != nil {
			return err
		}
	}
	for _, p := range out {
		select {
		case ack := <-p.ack.Ok():
			for i := p.from; i < p.to; i++ {
				evs[i].LogSeq = ack.Sequence
			}
		case err := <-p.ack.Err():
			return fmt.Errorf("alerting: append events %d-%d: %w", evs[p.from].Seq.Global, evs[p.to-1].Seq.Global, err)
		case <-ctx.Done():
			return fmt.Errorf("alerting: append events %d-%d: %w", evs[p.from].Seq.Global, evs[p.to-1].Seq.Global, ctx.Err())
		}
	}
	return nil
}

// DecodeMessage calls fn with each event of one message of the log: a
// batch (a JSON array) or, as written before batching, a single event.
func DecodeMessage(data []byte, fn func(Event) error) error {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) > 0 && data[0] == '{' {
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return err
		}
		return fn(ev)
	}
	var evs []Event
	if err := json.Unmarshal(data, &evs); err != nil {
		return err
	}
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// Replay reads the stream from the start with an ordered consumer, to the
// last event stored when it began.
func (l *JetStreamLog) Replay(ctx context.Context, fn func(Event) error) error {
	s, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("alerting: stream %s: %w", StreamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("alerting: stream %s: %w", StreamName, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("alerting: replay %s: %w", StreamName, err)
	}
	defer func() {
		// Ordered consumers are ephemeral; deleting it now spares the
		// server keeping it until its inactivity threshold.
		if ci := c.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = l.js.DeleteConsumer(dctx, StreamName, ci.Name)
			cancel()
		}
	}()
	seen := uint64(0)
	for empty := 0; ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		// NoWait: the events are all stored already; a batch ends as soon
		// as the server has sent what it has.
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("alerting: replay %s: %w", StreamName, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("alerting: replay %s: %w", StreamName, err)
			}
			seen = meta.Sequence.Stream
			err = DecodeMessage(msg.Data(), func(ev Event) error {
				ev.LogSeq = seen
				return fn(ev)
			})
			if err != nil {
				return fmt.Errorf("alerting: replay %s: message %d: %w", StreamName, seen, err)
			}
			if seen >= last || meta.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("alerting: replay %s: %w", StreamName, err)
		}
		if got == 0 {
			// The server said it has nothing although the stream holds
			// more: retry a few times, then say where replay stopped.
			if empty++; empty > 20 {
				return fmt.Errorf("alerting: replay %s stopped at message %d of %d", StreamName, seen, last)
			}
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}
