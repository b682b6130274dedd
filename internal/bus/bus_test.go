package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestSyncAlwaysAndRestart: the store syncs every write, and what was
// acknowledged is there after a restart on the same folder.
func TestSyncAlwaysAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !s.SyncAlways() {
		t.Fatal("JetStream runs without SyncAlways: acknowledged data could be lost on power loss")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := s.JetStream("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := js.Publish(ctx, "t.x", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	s.Shutdown()

	s2, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	nc2, js2, err := s2.JetStream("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	st, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 10 {
		t.Fatalf("after restart the stream holds %d messages, want 10", info.State.Msgs)
	}
	if err := s2.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStartNeedsDir(t *testing.T) {
	if _, err := Start(Options{}); err == nil {
		t.Fatal("started without a folder")
	}
}
