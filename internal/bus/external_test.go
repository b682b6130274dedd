package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"hazardwatch/internal/poll"
	"hazardwatch/internal/testpki"
)

// natsServer runs a NATS server with JetStream on a free loopback port, as
// an external server would run, with o's authentication and TLS, and its
// store in dir.
func natsServer(t *testing.T, o server.Options, dir string) *server.Server {
	t.Helper()
	o.ServerName, o.Host, o.JetStream, o.StoreDir, o.SyncAlways = "external", "127.0.0.1", true, dir, true
	o.NoLog, o.NoSigs = true, true
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("external NATS server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func natsURL(ns *server.Server) string {
	return fmt.Sprintf("nats://%s", ns.Addr())
}

// useStream makes a stream through s, publishes n messages and reads them
// back with a durable consumer: what ingest, the pipeline and the alarm
// log do over any Server.
func useStream(t *testing.T, s *Server, name string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := s.JetStream("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, strings.ToLower(name)+".x", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
			got++
		}
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages back", got, n)
		}
	}
}

// TestDialCredentials: with each kind of credentials the server takes, a
// Server from Dial holds streams and durable consumers as the embedded one
// does, and is ready; wrong credentials fail at once, not after the wait
// for a server that is starting.
func TestDialCredentials(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "nats test CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	nkeyPub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	nkeyFile := filepath.Join(dir, "centre.nk")
	if err := os.WriteFile(nkeyFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server server.Options
		dial   ExternalOptions // URL filled in
		tls    bool
	}{
		{name: "no authentication"},
		{name: "user and password", server: server.Options{Users: []*server.User{{Username: "centre", Password: "pw-centre"}}},
			dial: ExternalOptions{User: "centre", Password: "pw-centre"}},
		{name: "token", server: server.Options{Authorization: "a-token"}, dial: ExternalOptions{Token: "a-token"}},
		{name: "nkey", server: server.Options{Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}}, dial: ExternalOptions{NKeyFile: nkeyFile}},
		{name: "TLS with a CA file and a password", tls: true,
			server: server.Options{Users: []*server.User{{Username: "centre", Password: "pw-centre"}}},
			dial:   ExternalOptions{User: "centre", Password: "pw-centre", CAFile: caFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tls {
				tt.server.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Server(t)}, MinVersion: tls.VersionTLS12}
			}
			ns := natsServer(t, tt.server, t.TempDir())
			tt.dial.URL = natsURL(ns)
			if tt.tls {
				tt.dial.URL = strings.Replace(tt.dial.URL, "nats://", "tls://", 1)
			}
			s, err := Dial(context.Background(), tt.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Shutdown()
			useStream(t, s, "T", 20)
			if err := s.Ready(context.Background()); err != nil {
				t.Errorf("not ready: %v", err)
			}
			if s.SyncAlways() {
				t.Error("SyncAlways claims to know an external server's setting")
			}
			if strings.Contains(s.ClientURL(), "pw-") {
				t.Errorf("ClientURL %q shows a password", s.ClientURL())
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		ns := natsServer(t, server.Options{Users: []*server.User{{Username: "centre", Password: "pw-centre"}}}, t.TempDir())
		start := time.Now()
		_, err := Dial(context.Background(), ExternalOptions{URL: natsURL(ns), User: "centre", Password: "wrong", ReadyTimeout: time.Minute})
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("Dial with a wrong password: %v, want an authorization violation", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("a refused password took %s to report: it was retried", d)
		}
	})
	t.Run("no JetStream", func(t *testing.T) {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		defer ns.Shutdown()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("not ready")
		}
		if _, err := Dial(context.Background(), ExternalOptions{URL: natsURL(ns)}); err == nil || !strings.Contains(err.Error(), "JetStream") {
			t.Fatalf("Dial to a server without JetStream: %v", err)
		}
	})
}

// TestDialOptionsChecked: URLs and credentials that cannot work are
// refused before anything is dialled, and no message shows a password.
func TestDialOptionsChecked(t *testing.T) {
	tests := []struct {
		o    ExternalOptions
		want string
	}{
		{ExternalOptions{}, "URL is required"},
		{ExternalOptions{URL: "http://host:4222"}, "want nats://host:port"},
		{ExternalOptions{URL: "nats://u:secret@host:4222,mqtt://h:1"}, "want nats://host:port"},
		{ExternalOptions{URL: "nats://h:4222", User: "u"}, "needs a password"},
		{ExternalOptions{URL: "nats://h:4222", Password: "p"}, "needs a password"},
		{ExternalOptions{URL: "nats://h:4222", User: "u", Password: "p", Token: "t"}, "one kind"},
		{ExternalOptions{URL: "nats://h:4222", Token: "t", NKeyFile: "u.nk"}, "one kind"},
		{ExternalOptions{URL: "nats://h:4222", NKeyFile: "/nonexistent/u.nk"}, "nkey seed file /nonexistent/u.nk"},
		{ExternalOptions{URL: "tls://h:4222", CAFile: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		_, err := Dial(context.Background(), tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Dial(%+v): %v, want %q", tt.o, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows a password: %v", err)
		}
	}
	if got := redact("nats://u:secret@a:4222, tls://tok@b:4222"); got != "nats://a:4222,tls://b:4222" {
		t.Errorf("redact: %q", got)
	}
}

// TestDialWaitsAndReadiness: Dial waits for a server that is not up yet;
// readiness follows the connections when the server goes away and comes
// back on its store, and the streams carry on.
func TestDialWaitsAndReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	type result struct {
		s   *Server
		err error
	}
	dialled := make(chan result, 1)
	go func() {
		s, err := Dial(context.Background(), ExternalOptions{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), ReadyTimeout: time.Minute})
		dialled <- result{s, err}
	}()
	select {
	case r := <-dialled:
		t.Fatalf("Dial returned while no server listened: %v", r.err)
	case <-time.After(700 * time.Millisecond):
	}
	dir := t.TempDir()
	ns := natsServer(t, server.Options{Port: port}, dir)
	r := <-dialled
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	defer s.Shutdown()
	useStream(t, s, "T", 20)
	// A connection of a stage, held open as ingest's is.
	stage, err := s.Connect("stage")
	if err != nil {
		t.Fatal(err)
	}
	defer stage.Close()
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	// Until the clients notice, JetStream's silence says it; then each
	// connection's state.
	var notReady error
	poll.Until(t, "readiness to report the stage's lost connection", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		notReady = s.Ready(ctx)
		return notReady != nil && strings.Contains(notReady.Error(), "stage reconnecting")
	})

	natsServer(t, server.Options{Port: port}, dir)
	poll.Until(t, "readiness once the server is back", 30*time.Second, func() bool { return s.Ready(ctx) == nil })
	if stage.Status() != nats.CONNECTED {
		t.Errorf("the stage's connection is %s after the server came back", stage.Status())
	}
	// The stream and its durable consumer came back with the server's store.
	useStream(t, s, "T", 5)
	nc, js, err := s.JetStream("check")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 25 {
		t.Fatalf("stream T after the server's restart holds %d messages, want 25", info.State.Msgs)
	}

	// A connection closed by its owner no longer counts.
	stage.Close()
	if err := s.Ready(ctx); err != nil {
		t.Errorf("a closed connection made the bus not ready: %v", err)
	}
}
