// Package natstest runs, for tests, a NATS server from a configuration
// file as a deployment runs it (configs/compose/nats/nats.conf), in the
// test's process: the same settings, with its JetStream store moved to a
// folder of the test and its ports to loopback.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// FromConfig loads file with nats-server's own loader and runs it with
// its store in dir, clients on 127.0.0.1:port (0: a free port) and
// monitoring on a free loopback port (MonitorAddr). The server stops at
// the end of t; Shutdown stops it sooner, and FromConfig on the same dir
// and port starts it again with its streams.
func FromConfig(t testing.TB, file, dir string, port int) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.StoreDir = dir
	opts.Host, opts.Port = "127.0.0.1", port
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server from %s not ready", file)
	}
	return ns
}
