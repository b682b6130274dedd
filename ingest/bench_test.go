package ingest

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"hazardwatch/internal/bus"
)

// BenchmarkGroupCommit measures durable telemetry messages per second: 16
// gateway-like MQTT clients publish at QoS 1 through the embedded broker,
// each waiting for every PUBACK before its next message, into JetStream
// with SyncAlways. "group" is the committer as it runs; "single" writes
// every message alone (at most one message per JetStream write), the
// baseline group commit is measured against.
//
//	go test -run='^$' -bench=GroupCommit -benchtime=8000x -count=3 ./ingest/
func BenchmarkGroupCommit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		batch int
	}{{"group", 0}, {"single", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			const clients = 16
			h := start(b, func(o *Options) { o.batchMessages = bc.batch })
			conns := make([]func(seq uint64) error, clients)
			for i := range clients {
				c := h.client(fmt.Sprintf("bench-%d", i), nil)
				boot := fmt.Sprintf("bench-%d", i)
				conns[i] = func(seq uint64) error {
					tok := c.Publish(testTopic, 1, false, goodMessage(boot, seq, nowMS(), 15))
					if !tok.WaitTimeout(waitLong) {
						return fmt.Errorf("no PUBACK within %s", waitLong)
					}
					return tok.Error()
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			b.ResetTimer()
			for i := range clients {
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Go(func() {
					for seq := uint64(1); seq <= uint64(n); seq++ {
						if err := conns[i](seq); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			if got := h.metric("hw_ingest_messages_total", "result", "accepted"); got != float64(b.N) {
				b.Fatalf("%v messages accepted, want %d", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/h.metric("hw_ingest_batch_messages"), "msgs/write")
		})
	}
}

var rebuildMsgs = flag.Int("rebuild.msgs", 100_000, "stream messages BenchmarkRebuild reads back")

// BenchmarkRebuild measures the dedup rebuild at start: reading back a
// READINGS stream of -rebuild.msgs messages, each one 15-reading message of
// one gateway (at 1 message/s per gateway the committer has nothing to
// batch). It fills the stream through a server without SyncAlways, which
// only the writing needs, and reads it through the bus as Start does.
//
//	go test -run='^$' -bench=Rebuild -benchtime=3x ./ingest/
func BenchmarkRebuild(b *testing.B) {
	dir := b.TempDir()
	fillStream(b, filepath.Join(dir, "jetstream"), *rebuildMsgs)
	bs, err := bus.Start(bus.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Shutdown()
	in, err := New(Options{Plant: plant(b), Bus: bs, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	nc, js, err := bs.JetStream("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s := newSeen(len(in.plant.Gateways))
		st, err := in.rebuild(ctx, js, stream, s)
		if err != nil {
			b.Fatal(err)
		}
		if st.msgs != *rebuildMsgs || st.entries != *rebuildMsgs {
			b.Fatalf("read %d messages, %d entries; want %d", st.msgs, st.entries, *rebuildMsgs)
		}
	}
	perMsg := b.Elapsed().Seconds() / float64(b.N) / float64(*rebuildMsgs)
	b.ReportMetric(1/perMsg, "stream-msgs/s")
	// 7 days of 4 gateways at 1 message/s.
	b.ReportMetric(perMsg*7*24*3600*4, "s/restart-7d-4gw")
}

// fillStream writes n one-entry batches into a READINGS stream under
// storeDir, as 4 gateways sending 1 message/s would have left them.
func fillStream(b *testing.B, storeDir string, n int) {
	b.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: storeDir, DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(waitLong) {
		b.Fatal("server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamName, Subjects: []string{Subject}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	gws := []string{"gw-e01-1", "gw-e01-2", "gw-e02-1", "gw-e03-1"}
	received := time.Now().Add(-time.Hour).UnixMilli()
	for i := range n {
		e := Entry{Gateway: []byte(gws[i%4]), Enterprise: []byte("e01"), Boot: []byte("2f9c4e1a-77d0"), Seq: uint64(i/4 + 1), Received: received}
		for j := range 15 {
			e.Readings = append(e.Readings, Reading{Sensor: []byte(fmt.Sprintf("e01-V10%d-LT", j)), TS: received - 250, Value: 3.5, HasValue: true})
		}
		if _, err := js.PublishAsync(Subject, EncodeBatch(nil, []Entry{e})); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 4095 {
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(waitLong):
		b.Fatal("async publishes not acknowledged")
	}
}
