package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ExternalOptions configure the connection to an external NATS server with
// JetStream, which Dial uses instead of starting the embedded one.
//
// Durability is then that server's: its JetStream must sync every write
// before it acknowledges it (sync_interval: always in its configuration;
// the default syncs every two minutes, and a power loss would lose what
// was acknowledged since). A client cannot see that setting, so Dial only
// says so in the log; configs/compose/nats/nats.conf has it, and its test
// asserts it.
type ExternalOptions struct {
	// URL is the server's address: nats://host:4222, or tls://host:4222
	// for TLS; several, comma-separated, for a cluster (required).
	URL string
	// Credentials, at most one kind: User and Password; or Token; or
	// NKeyFile, a file holding the user's nkey seed ("SU…", as `nk -gen
	// user` makes it; the server's configuration names its public key).
	// None for a server without authentication.
	User, Password string
	Token          string
	NKeyFile       string
	// CAFile is a PEM bundle that verifies the server's certificate; it
	// makes the connection TLS. Without it a tls:// URL verifies the
	// server against the system's roots.
	CAFile string
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the first connection (the server
	// may still be starting); default 30 s.
	ReadyTimeout time.Duration
}

// Check says what is wrong with o, if anything, without dialling: the
// URL's form and the credentials given together.
func (o ExternalOptions) Check() error {
	if o.URL == "" {
		return errors.New("bus: ExternalOptions.URL is required")
	}
	for _, raw := range strings.Split(o.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("bus: NATS URL %q: want nats://host:port or tls://host:port", redact(raw))
		}
	}
	kinds := 0
	for _, set := range []bool{o.User != "" || o.Password != "", o.Token != "", o.NKeyFile != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return errors.New("bus: give one kind of NATS credentials: a user and password, a token, or an nkey seed file")
	case (o.User == "") != (o.Password == ""):
		return errors.New("bus: a NATS user needs a password, and a password a user")
	}
	return nil
}

// external is the state of a Server connected to an external NATS server.
type external struct {
	o    ExternalOptions
	url  string        // o.URL without credentials, for messages
	auth []nats.Option // credentials and TLS, made once
	// mon is the bus's own connection: readiness asks JetStream through it.
	mon   *nats.Conn
	monJS jetstream.JetStream

	mu    sync.Mutex
	conns []*nats.Conn // every connection handed out and not yet closed
}

// Dial connects to an external NATS server with JetStream and returns a
// Server whose connections go there: ingest, the pipeline, the alarm log
// and the InfluxDB feeds use it as they use the embedded one. It waits up
// to ReadyTimeout for a server that does not answer yet, and fails at once
// when the server refuses the credentials or has no JetStream for them.
func Dial(ctx context.Context, o ExternalOptions) (*Server, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &external{o: o, url: redact(o.URL)}
	switch {
	case o.User != "":
		e.auth = append(e.auth, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		e.auth = append(e.auth, nats.Token(o.Token))
	case o.NKeyFile != "":
		// Read now: a seed file that is missing or wrong is a setup error
		// that waiting does not mend.
		nkey, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus: NATS nkey seed file %s: %w", o.NKeyFile, err)
		}
		e.auth = append(e.auth, nkey)
	}
	if o.CAFile != "" {
		e.auth = append(e.auth, nats.RootCAs(o.CAFile))
	}
	var probe nats.Options
	for _, opt := range e.auth {
		if err := opt(&probe); err != nil {
			return nil, fmt.Errorf("bus: NATS credentials or CA file: %w", err)
		}
	}
	s := &Server{ext: e, log: o.Logger}
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	for {
		nc, err := s.Connect("hazardwatch-bus")
		if err == nil {
			e.mon = nc
			break
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited %s)", err, o.ReadyTimeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
	js, err := jetstream.New(e.mon)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		e.mon.Close()
		return nil, fmt.Errorf("bus: JetStream at %s: %w", e.url, err)
	}
	e.monJS = js
	o.Logger.Info("connected to an external NATS JetStream", "url", e.url, "server", e.mon.ConnectedServerName(),
		"version", e.mon.ConnectedServerVersion(), "max_payload", e.mon.MaxPayload(),
		"durability", "the server's: its jetstream block must have sync_interval: always")
	return s, nil
}

// connect opens a connection to the external server.
func (e *external) connect(name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		// For ever: a NATS server that restarts is waited for, and the
		// streams' consumers carry on from where they were.
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() { // closed by its owner, not lost
				return
			}
			log.Warn("NATS connection lost; reconnecting", "connection", name, "url", e.url, "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection back", "connection", name, "server", nc.ConnectedServerName())
		}),
	}
	opts = append(opts, e.auth...)
	nc, err := nats.Connect(e.o.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s to %s: %w", name, e.url, err)
	}
	e.mu.Lock()
	e.conns = append(e.conns, nc)
	e.mu.Unlock()
	return nc, nil
}

// ready reports the state of every open connection to the external server
// and asks its JetStream for the account's information, for /readyz.
func (e *external) ready(ctx context.Context) error {
	e.mu.Lock()
	open := e.conns[:0]
	for _, nc := range e.conns {
		if !nc.IsClosed() {
			open = append(open, nc)
		}
	}
	clear(e.conns[len(open):])
	e.conns = open
	var bad []string
	for _, nc := range open {
		if st := nc.Status(); st != nats.CONNECTED {
			bad = append(bad, nc.Opts.Name+" "+strings.ToLower(st.String()))
		}
	}
	e.mu.Unlock()
	if len(bad) > 0 {
		return fmt.Errorf("bus: NATS at %s: connection %s", e.url, strings.Join(bad, ", "))
	}
	if _, err := e.monJS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("bus: JetStream at %s: %w", e.url, err)
	}
	return nil
}

func (e *external) close(log *slog.Logger) {
	e.mon.Close()
	log.Info("disconnected from the external NATS JetStream", "url", e.url)
}

// redact removes credentials (user and password, or a token in the user's
// place) from a comma-separated list of URLs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil {
			u.User = nil
			parts[i] = u.String()
		} else if at := strings.LastIndex(p, "@"); at >= 0 {
			parts[i] = "…" + p[at:]
		}
	}
	return strings.Join(parts, ",")
}
