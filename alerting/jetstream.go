package alerting

import (
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
	// subjectPrefix: events are published on alarms.<enterprise>, so a
	// consumer can later take one enterprise's events alone.
	subjectPrefix = "alarms."
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

// Append publishes ev and waits for the stream's acknowledgement.
func (l *JetStreamLog) Append(ctx context.Context, ev Event) (Event, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return Event{}, fmt.Errorf("alerting: encode event %d: %w", ev.Seq.Global, err)
	}
	ent := ev.Alarm.Source.Enterprise
	if ent == "" {
		ent = "_"
	}
	ack, err := l.js.Publish(ctx, subjectPrefix+ent, data,
		jetstream.WithMsgID(strconv.FormatUint(ev.Seq.Global, 10)),
		jetstream.WithExpectStream(StreamName))
	if err != nil {
		return Event{}, fmt.Errorf("alerting: append event %d: %w", ev.Seq.Global, err)
	}
	ev.LogSeq = ack.Sequence
	return ev, nil
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
			var ev Event
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				return fmt.Errorf("alerting: replay %s: message %d: %w", StreamName, seen, err)
			}
			ev.LogSeq = seen
			if err := fn(ev); err != nil {
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
