package ingest

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Why the dedup state is rebuilt from READINGS rather than kept in a KV
// bucket: the stream already holds the (gateway, boot, seq) of every stored
// message within the replay horizon (its max age), written in the same
// JetStream message as the readings, so the two can never disagree. A KV
// bucket would be a second write per batch on the PUBACK path (another
// fsync with SyncAlways) or, written behind, a copy that lags the stream
// and would need the stream's tail read anyway. The price is reading the
// stream at start; see docs/PERFORMANCE.md and BenchmarkRebuild for what
// that costs.

type rebuildStats struct {
	msgs, entries, unknown, corrupt int
}

// rebuild reads every message of the stream once, with an ordered consumer
// (ephemeral, no acks), and records the identity of every entry in seen.
// Readings are skipped by their entries' lengths, not decoded.
func (in *Ingest) rebuild(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, seen *seen) (rebuildStats, error) {
	var st rebuildStats
	info, err := stream.Info(ctx)
	if err != nil {
		return st, err
	}
	if info.State.Msgs == 0 {
		return st, nil
	}
	last := info.State.LastSeq
	cons, err := js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return st, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return st, err
	}
	defer it.Stop()
	record := func(k msgKey) {
		st.entries++
		gi, ok := in.plant.GatewayIndex(string(k.gateway))
		if !ok {
			// The gateway left the plant: its messages would be
			// rejected as unknown_gateway now, so there is nothing to
			// deduplicate.
			st.unknown++
			return
		}
		seen.addBytes(gi, k.boot, k.seq, k.received)
	}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return st, fmt.Errorf("after %d of the stream's messages: %w", st.msgs, err)
		}
		st.msgs++
		if err := scanKeys(msg.Data(), record); err != nil {
			// What was read of the message before the corrupt entry
			// stays recorded; the rest cannot be told apart.
			st.corrupt++
			in.log.Warn("corrupt message in the stream; its entries may be stored again", "stream", StreamName, "error", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return st, err
		}
		// NumPending covers a last message that expired meanwhile.
		if meta.Sequence.Stream >= last || meta.NumPending == 0 {
			return st, nil
		}
	}
}
