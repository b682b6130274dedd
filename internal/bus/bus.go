// Package bus owns NATS with JetStream: the durable spine between ingest,
// rules, alerting and history. By default it starts an embedded server
// with every write synced to disk before it is acknowledged (SyncAlways:
// the file store's default syncs only every two minutes, and a power loss
// would then lose acknowledged data) and hands out in-process connections;
// Dial instead connects to an external server (external.go), whose
// configuration must sync every write the same way.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure the embedded server.
type Options struct {
	// Dir is where JetStream keeps its files (required).
	Dir string
	// Listen is a host:port for outside NATS clients (tools, a second
	// process); empty means in-process connections only.
	Listen string
	// MaxPayload is the largest message the server takes; default 1 MiB.
	MaxPayload int32
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to start; default 10 s.
	ReadyTimeout time.Duration
}

// Server is NATS with JetStream for the centre: a running embedded server
// (Start), or the connection to an external one (Dial).
type Server struct {
	ns   *server.Server // embedded; nil with an external server
	opts *server.Options
	ext  *external // external; nil when embedded
	log  *slog.Logger
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("bus: Options.Dir is required")
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 1 << 20
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	so := &server.Options{
		ServerName: "hazardwatch",
		JetStream:  true,
		StoreDir:   filepath.Join(o.Dir, "jetstream"),
		SyncAlways: true,
		MaxPayload: o.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
		DontListen: o.Listen == "",
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen address %q: %w", o.Listen, err)
		}
		so.Host, so.Port = host, port
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("bus: server not ready within %s", o.ReadyTimeout)
	}
	o.Logger.Info("embedded NATS JetStream started", "store", so.StoreDir, "sync_always", so.SyncAlways)
	return &Server{ns: ns, opts: so, log: o.Logger}, nil
}

// SyncAlways reports whether the running embedded server syncs every write
// to disk before acknowledging it. Tests assert it: a kill -9 alone cannot
// tell. An external server's setting cannot be seen by a client: false.
func (s *Server) SyncAlways() bool {
	return s.ns != nil && s.ns.JetStreamConfig() != nil && s.ns.JetStreamConfig().SyncAlways
}

// Connect opens a client connection, in-process to the embedded server or
// over the network to the external one; name shows in the server's
// connection list.
func (s *Server) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	if s.ext != nil {
		return s.ext.connect(name, s.log, extra...)
	}
	opts := append([]nats.Option{nats.Name(name), nats.InProcessServer(s.ns), nats.MaxReconnects(-1)}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", name, err)
	}
	return nc, nil
}

// JetStream opens a connection and its JetStream context.
func (s *Server) JetStream(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := s.Connect(name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return nc, js, nil
}

// ClientURL is the address outside clients use: the embedded server's when
// Listen was set, the external server's (without credentials) otherwise.
func (s *Server) ClientURL() string {
	if s.ext != nil {
		return s.ext.url
	}
	return s.ns.ClientURL()
}

// Ready reports whether JetStream can be used, for /readyz: the embedded
// server is running; or every open connection to the external server is
// connected and its JetStream answers.
func (s *Server) Ready(ctx context.Context) error {
	if s.ext != nil {
		return s.ext.ready(ctx)
	}
	if !s.ns.Running() || s.ns.JetStreamConfig() == nil {
		return errors.New("bus: JetStream is not running")
	}
	return nil
}

// Shutdown stops the embedded server and waits for it, or closes the
// bus's own connection to the external one (each caller closes those it
// opened).
func (s *Server) Shutdown() {
	if s.ext != nil {
		s.ext.close(s.log)
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.log.Info("embedded NATS JetStream stopped")
}
