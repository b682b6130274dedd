// Package edge is the edge gateway's process around package gateway: its
// flags, the uplink's TLS and credentials, the local /healthz and /metrics
// port, and signals. `hazardwatch gateway` and the small `hw-gateway`
// binary both run it.
package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hazardwatch/gateway"
	"hazardwatch/internal/config"
)

// Exit codes, as hazardwatch's.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// PasswordEnv is the environment variable read when no password flag is
// given: a password on the command line shows in the process list.
const PasswordEnv = "HAZARDWATCH_MQTT_PASSWORD"

const about = `
Runs one edge gateway of the plant: polls its Modbus devices, each on its
own poll period, and publishes one telemetry message per poll cycle over
MQTT (QoS 1), with a retained status carrying its clock and an offline last
will. Every cycle is kept on disk (--data-dir) until the broker acknowledges
it, so nothing is lost while the uplink is down or the box restarts.

At the centre's embedded broker a gateway signs in with its id as the
username and its gateway token as the password (hazardwatch token create
--role gateway --scope gateway:ID), or with a client certificate whose
common name is its id (--tls-cert, --tls-key, over a tls:// broker URL).`

// deviceFlag collects --device ID=HOST:PORT overrides.
type deviceFlag map[string]string

func (d deviceFlag) String() string { return fmt.Sprint(map[string]string(d)) }
func (d deviceFlag) Set(s string) error {
	id, addr, ok := strings.Cut(s, "=")
	if !ok || id == "" || addr == "" {
		return fmt.Errorf("want DEVICE=HOST:PORT, not %q", s)
	}
	d[id] = addr
	return nil
}

// QueueFile is a gateway's store-and-forward queue file under the data
// directory.
func QueueFile(dataDir, id string) string {
	return filepath.Join(dataDir, "gateway-"+id+".queue")
}

// Main runs the gateway command; prog names it in messages ("hazardwatch
// gateway" or "hw-gateway").
func Main(prog string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s --id GATEWAY [flags]\n\n%s\n\nFlags:\n", prog, strings.TrimSpace(about))
		fs.PrintDefaults()
	}
	cfgDir := fs.String("config", "", "folder of plant and rule files (default: the embedded demo plant)")
	id := fs.String("id", "", "the gateway's id in the plant files (required)")
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL: tcp://host:port, or tls://host:port")
	user := fs.String("username", "", "MQTT username (default: the gateway id when a password is given)")
	pass := fs.String("password", "", "MQTT password; prefer --password-file or env "+PasswordEnv)
	passFile := fs.String("password-file", "", "file holding the MQTT password (the gateway token)")
	caFile := fs.String("tls-ca", "", "PEM file of the CA that signed the broker's certificate (default: the system's)")
	certFile := fs.String("tls-cert", "", "PEM client certificate (its common name is the gateway id), with --tls-key")
	keyFile := fs.String("tls-key", "", "PEM private key of --tls-cert")
	devices := deviceFlag{}
	fs.Var(devices, "device", "override a device's address: DEVICE=HOST:PORT (repeatable)")
	listen := fs.String("listen", "127.0.0.1:9101", "address of the gateway's own /healthz and /metrics (empty: none)")
	dataDir := fs.String("data-dir", "hazardwatch-data", "folder for the gateway's store-and-forward queue")
	debug := fs.Bool("debug", false, "log debug messages")
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--h" || a == "--help" {
			fs.SetOutput(stdout) // the usage asked for goes to stdout, once
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, prog+": "+format+"\n", a...)
		return code
	}
	if *id == "" {
		return fail(exitUsage, "--id is required")
	}
	password, err := readPassword(*pass, *passFile)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if *user == "" && password != "" {
		*user = *id
	}
	tlsConf, err := tlsConfig(*broker, *caFile, *certFile, *keyFile)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	cfg, err := config.LoadDirOrDemo(*cfgDir)
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fail(exitFailure, "%v", err)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(gateway.Options{Plant: cfg.Plant, Gateway: *id, Broker: *broker, Username: *user, Password: password,
		TLS: tlsConf, DeviceAddr: devices, QueuePath: QueueFile(*dataDir, *id), Logger: log})
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	defer g.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fail(exitFailure, "health and metrics: %v", err)
		}
		srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("health and metrics listening", "addr", ln.Addr().String())
	}
	if err := g.Run(ctx); err != nil {
		return fail(exitFailure, "%v", err)
	}
	return exitOK
}

func readPassword(flagValue, file string) (string, error) {
	switch {
	case flagValue != "" && file != "":
		return "", errors.New("give --password or --password-file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case flagValue != "":
		return flagValue, nil
	}
	return os.Getenv(PasswordEnv), nil
}

// tlsConfig builds the uplink's TLS from the flags; nil for a plain
// tcp:// broker without TLS flags.
func tlsConfig(broker, caFile, certFile, keyFile string) (*tls.Config, error) {
	secure := strings.HasPrefix(broker, "tls://") || strings.HasPrefix(broker, "ssl://") || strings.HasPrefix(broker, "mqtts://")
	if !secure {
		if caFile != "" || certFile != "" || keyFile != "" {
			return nil, fmt.Errorf("--tls-ca, --tls-cert and --tls-key need a tls:// broker URL, not %q", broker)
		}
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
		}
		conf.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", certFile, keyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
