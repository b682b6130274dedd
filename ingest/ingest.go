package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"hazardwatch/internal/bus"
	"hazardwatch/internal/model"
	"hazardwatch/internal/telemetry"
)

// The stream every accepted telemetry message is written to, and its
// subject. Consumers (rules, alerting, history) read it with durable
// consumers and decode its messages with DecodeBatch.
const (
	StreamName = "READINGS"
	Subject    = "hw.readings"
)

// Defaults of Options.
const (
	DefaultListen        = "127.0.0.1:1883"
	DefaultReplayHorizon = telemetry.DefaultMaxAge
	DefaultClientID      = "hazardwatch-ingest"
	// MaxPacket is the embedded broker's transport cap (SPEC §2): a larger
	// packet closes the connection.
	MaxPacket = 1 << 20
)

const (
	defaultBatchMessages = 512
	defaultWriteTimeout  = 5 * time.Second
	// batchHeadroom is what a batch leaves of the NATS max payload for the
	// protocol's headers.
	batchHeadroom = 4 << 10
)

// Options configure an Ingest; zero fields take their defaults.
type Options struct {
	// Plant resolves gateways and sensors (required).
	Plant *model.Plant
	// Bus is the embedded NATS server with JetStream (required).
	Bus *bus.Server
	// Listen is the embedded broker's address; DefaultListen when both
	// Listen and ExternalURL are empty. Port 0 picks a free port (Addr
	// tells which).
	Listen string
	// ExternalURL (tcp://host:port) makes the centre subscribe to an
	// external broker instead of running its own; Listen must then be
	// empty.
	ExternalURL string
	// ClientID is the centre's MQTT client id at the external broker: its
	// persistent session (unacknowledged messages wait there while the
	// centre is down) is keyed by it. Default DefaultClientID.
	ClientID string
	// MaxPayload is the content limit; larger content is acknowledged and
	// counted oversized. Default 256 KiB.
	MaxPayload int
	// ReplayHorizon is how long a gateway may replay its store: how long
	// the centre remembers (gateway, boot, seq), how long READINGS keeps
	// messages, and the age beyond which a reading is stale. Default 7 days.
	ReplayHorizon time.Duration
	// MaxFuture and LiveWindow tune the decoder (telemetry.Options);
	// defaults 5 minutes and 2 minutes.
	MaxFuture, LiveWindow time.Duration
	// Credentials, when set, make the embedded broker authenticate every
	// client and enforce the topic ACL (access.go): gateways publish only
	// to their own topics, admins only subscribe. Nil leaves the broker
	// open, as it was before, and says so in a warning at start.
	Credentials Credentials
	// TLS, when set, makes the embedded broker speak MQTT over TLS only.
	// With ClientCAs and ClientAuth VerifyClientCertIfGiven (or
	// RequireAndVerifyClientCert), a verified client certificate whose
	// Subject CommonName is a gateway id authenticates that gateway.
	TLS *tls.Config
	// Registerer takes the metrics; nil registers them in a private
	// registry.
	Registerer prometheus.Registerer
	// Logger; nil logs nothing.
	Logger *slog.Logger
	// Clock is the centre's clock; nil means time.Now.
	Clock func() time.Time

	// batchMessages bounds a group commit's messages; 1 writes every
	// message alone (the benchmark's baseline).
	batchMessages int
	// writeTimeout bounds the wait for a JetStream ack.
	writeTimeout time.Duration
}

// checkBrokerSecurity refuses TLS and credentials settings that would not
// secure what they seem to.
func checkBrokerSecurity(o Options) error {
	if o.ExternalURL != "" && (o.TLS != nil || o.Credentials != nil) {
		return errors.New("ingest: TLS and Credentials secure the embedded broker; an external broker enforces its own")
	}
	if o.TLS == nil {
		return nil
	}
	if len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil && o.TLS.GetConfigForClient == nil {
		return errors.New("ingest: Options.TLS has no server certificate")
	}
	switch o.TLS.ClientAuth {
	case tls.RequestClientCert, tls.RequireAnyClientCert:
		return fmt.Errorf("ingest: Options.TLS.ClientAuth %v takes client certificates without verifying them; use VerifyClientCertIfGiven", o.TLS.ClientAuth)
	case tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert:
		// Without ClientCAs crypto/tls verifies against the system's
		// roots: any public CA could then issue a gateway's certificate.
		if o.TLS.ClientCAs == nil {
			return errors.New("ingest: Options.TLS verifies client certificates but has no ClientCAs")
		}
	}
	return nil
}

// Ingest receives telemetry over MQTT and writes what it accepts to the
// READINGS stream before acknowledging it.
type Ingest struct {
	o     Options
	plant *model.Plant
	dec   *telemetry.Decoder
	m     *metrics
	log   *slog.Logger
	clock func() time.Time
	gws   *gateways
	// replays follows each gateway's store-and-forward catch-up.
	replays replays

	nc         *nats.Conn
	com        *committer
	stopCommit chan struct{}
	commitDone chan struct{}

	broker *broker
	ext    *external

	mu      sync.Mutex
	started bool
	closed  bool
}

// New checks o and prepares an Ingest; Start runs it.
func New(o Options) (*Ingest, error) {
	if o.Plant == nil {
		return nil, errors.New("ingest: Options.Plant is required")
	}
	if o.Bus == nil {
		return nil, errors.New("ingest: Options.Bus is required")
	}
	switch {
	case o.ExternalURL != "" && o.Listen != "":
		return nil, errors.New("ingest: set Listen (embedded broker) or ExternalURL (external broker), not both")
	case o.ExternalURL != "":
		if !strings.Contains(o.ExternalURL, "://") {
			return nil, fmt.Errorf("ingest: external broker URL %q has no scheme (tcp://host:port)", o.ExternalURL)
		}
	case o.Listen == "":
		o.Listen = DefaultListen
	}
	if err := checkBrokerSecurity(o); err != nil {
		return nil, err
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = telemetry.DefaultMaxPayload
	}
	if o.MaxPayload >= MaxPacket {
		return nil, fmt.Errorf("ingest: MaxPayload %d is not below the transport cap of %d", o.MaxPayload, MaxPacket)
	}
	if o.ReplayHorizon <= 0 {
		o.ReplayHorizon = DefaultReplayHorizon
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.batchMessages <= 0 {
		o.batchMessages = defaultBatchMessages
	}
	if o.writeTimeout <= 0 {
		o.writeTimeout = defaultWriteTimeout
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ingest: metrics: %w", err)
	}
	return &Ingest{
		o:     o,
		plant: o.Plant,
		dec: telemetry.NewDecoder(o.Plant, telemetry.Options{
			MaxPayload: o.MaxPayload,
			MaxAge:     o.ReplayHorizon,
			MaxFuture:  o.MaxFuture,
			LiveWindow: o.LiveWindow,
		}),
		m:       m,
		log:     o.Logger,
		clock:   o.Clock,
		gws:     newGateways(len(o.Plant.Gateways)),
		replays: replays{gws: make([]replayRun, len(o.Plant.Gateways))},
	}, nil
}

// Start creates or updates the READINGS stream, rebuilds the dedup state
// from it, and starts the committer and then the broker (or the external
// subscription). ctx bounds the setup only; Close stops what Start started.
func (in *Ingest) Start(ctx context.Context) (err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started || in.closed {
		return errors.New("ingest: Start called twice or after Close")
	}
	in.started = true

	nc, js, err := in.o.Bus.JetStream("ingest")
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	in.nc = nc
	defer func() {
		if err != nil {
			in.stop()
		}
	}()
	maxBytes := int(nc.MaxPayload()) - batchHeadroom
	if need := len(batchMagic) + uvarintLen(uint64(in.o.MaxPayload+maxEntryOverhead)) + in.o.MaxPayload + maxEntryOverhead; need > maxBytes {
		return fmt.Errorf("ingest: a message at the payload limit of %d bytes would not fit the NATS max payload of %d", in.o.MaxPayload, nc.MaxPayload())
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Accepted telemetry messages, in batches (ingest.DecodeBatch)",
		Subjects:    []string{Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      in.o.ReplayHorizon,
		MaxMsgSize:  int32(nc.MaxPayload()),
	})
	if err != nil {
		return fmt.Errorf("ingest: stream %s: %w", StreamName, err)
	}

	seen := newSeen(len(in.plant.Gateways))
	t0 := time.Now()
	st, err := in.rebuild(ctx, js, stream, seen)
	if err != nil {
		return fmt.Errorf("ingest: rebuilding dedup from %s: %w", StreamName, err)
	}
	boots := seen.prune(in.clock().Add(-in.o.ReplayHorizon).UnixMilli())
	_, runs := seen.size()
	took := time.Since(t0)
	in.m.rebuildSecs.Set(took.Seconds())
	in.m.dedupBoots.Set(float64(boots))
	in.log.Info("dedup state rebuilt from the stream", "stream", StreamName, "stream_messages", st.msgs,
		"entries", st.entries, "boots", boots, "runs", runs, "unknown_gateway_entries", st.unknown,
		"corrupt_messages", st.corrupt, "took", took)

	in.com = &committer{
		js:       js,
		seen:     seen,
		reqs:     make(chan *request, 1024),
		maxMsgs:  in.o.batchMessages,
		maxBytes: maxBytes,
		timeout:  in.o.writeTimeout,
		horizon:  in.o.ReplayHorizon,
		clock:    in.clock,
		m:        in.m,
		log:      in.log,
	}
	in.stopCommit = make(chan struct{})
	in.commitDone = make(chan struct{})
	go in.com.run(in.stopCommit, in.commitDone)

	if in.o.ExternalURL != "" {
		in.ext, err = in.startExternal()
	} else {
		in.broker, err = in.startBroker()
	}
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// Addr is the embedded broker's listen address, "" without one.
func (in *Ingest) Addr() string {
	if in.broker == nil {
		return ""
	}
	return in.broker.ln.Address()
}

// Ready reports whether messages can flow, for /readyz: the embedded broker
// is listening, or the external broker is connected and subscribed.
func (in *Ingest) Ready() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case !in.started || in.closed:
		return errors.New("ingest: not running")
	case in.ext != nil:
		return in.ext.ready()
	}
	return nil
}

// Close stops the sources first (the broker and its connections, or the
// external subscription), then lets the committer write what they left and
// waits for every goroutine Start started.
func (in *Ingest) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	if !in.started {
		return nil
	}
	in.stop()
	return nil
}

// stop tears down whatever Start got to: sources first, then the
// committer, then the connection to NATS.
func (in *Ingest) stop() {
	if in.broker != nil {
		// Connections finish the publish they are in, which waits for at
		// most one write; one that does not has a bug to find, and must
		// not hold the shutdown forever: stopping the committer answers
		// whatever it waits for.
		_ = in.broker.srv.Close()
		if !in.broker.ln.waitFor(2*in.o.writeTimeout + 5*time.Second) {
			in.log.Error("MQTT connections still busy at shutdown; stopping the committer under them")
		}
	}
	if in.ext != nil {
		in.ext.close()
	}
	if in.stopCommit != nil {
		close(in.stopCommit)
		<-in.commitDone
	}
	if in.broker != nil {
		in.broker.ln.wait()
	}
	if in.nc != nil {
		in.nc.Close()
	}
	// A Close after a failed Start finds nothing left to stop.
	in.broker, in.ext, in.stopCommit, in.nc = nil, nil, nil, nil
}

// conn is the state one connection (or, with an external broker, one
// message handler) reuses from message to message.
type conn struct {
	msg  telemetry.Message
	body []byte
	req  *request
	// failed is set when a store failed: the connection is being closed
	// and nothing more it sent is handled.
	failed bool
}

func newConn() *conn { return &conn{req: newRequest()} }

// origin names where a message came from, for the logs.
type origin struct{ client, remote string }

// telemetry handles one message of a telemetry topic: decode, validate,
// deduplicate, store. It returns false when the message could not be
// stored: the caller must then withhold the acknowledgement and close the
// connection, so that the gateway (or the external broker) sends it again.
// Everything else, bad content included, is to be acknowledged.
func (in *Ingest) telemetry(c *conn, topic string, payload []byte, from origin) bool {
	now := in.clock()
	skew := in.skewOf(topic)
	m := &c.msg
	if err := in.dec.Decode(topic, payload, now, skew, m); err != nil {
		in.rejectMessage(err, topic, len(payload), from)
		return true
	}
	received := now.UnixMilli()
	c.body = appendMessageBody(c.body[:0], in.plant, m, received)
	r := c.req
	r.gw, r.boot, r.seq, r.received, r.body = m.Gateway, m.Boot, m.Seq, received, c.body
	switch a := in.commit(r); a.v {
	case duplicate:
		in.m.msgDuplicate.Inc()
		return true
	case failed:
		return false
	}
	in.m.msgAccepted.Inc()
	in.m.rdAccepted.Add(float64(len(m.Readings)))
	in.noteReplay(m, now)
	if len(m.Rejected) > 0 {
		in.m.rdRejected.Add(float64(len(m.Rejected)))
		for i := range m.Rejected {
			in.m.reject(m.Rejected[i].Reason)
		}
		in.logRejectedReadings(topic, m, from)
	}
	if !m.Replay && len(m.Readings) > 0 {
		newest := m.Readings[0].TS
		for i := range m.Readings {
			newest = max(newest, m.Readings[i].TS)
		}
		in.m.lag.Set(now.Sub(time.UnixMilli(newest).Add(-skew)).Seconds())
	}
	return true
}

var errClosed = errors.New("ingest: closed")

// commit hands r to the committer and waits for its answer.
func (in *Ingest) commit(r *request) answer {
	select {
	case in.com.reqs <- r:
	case <-in.commitDone:
		return answer{v: failed, err: errClosed}
	}
	select {
	case a := <-r.done:
		return a
	case <-in.commitDone:
		// The committer answers everything it took before it stops.
		select {
		case a := <-r.done:
			return a
		default:
			return answer{v: failed, err: errClosed}
		}
	}
}

func (in *Ingest) rejectMessage(err error, topic string, size int, from origin) {
	reason, detail := telemetry.ReasonMalformedMessage, err.Error()
	var te *telemetry.Error
	if errors.As(err, &te) {
		reason, detail = te.Reason, te.Detail
	}
	in.m.msgRejected.Inc()
	in.m.reject(reason)
	in.log.Warn("telemetry message rejected", "reason", reason.String(), "detail", detail,
		"topic", topic, "bytes", size, "client", from.client, "remote", from.remote)
}

// logRejectedReadings writes one line for a message's rejected readings:
// how many per reason, and the first one in full.
func (in *Ingest) logRejectedReadings(topic string, m *telemetry.Message, from origin) {
	var counts [32]int
	for _, r := range m.Rejected {
		if int(r.Reason) < len(counts) {
			counts[r.Reason]++
		}
	}
	var sb strings.Builder
	for _, r := range telemetry.Reasons() {
		if int(r) < len(counts) && counts[r] > 0 {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(r.String())
			sb.WriteByte('=')
			sb.WriteString(strconv.Itoa(counts[r]))
		}
	}
	first := m.Rejected[0]
	in.log.Warn("telemetry readings rejected", "topic", topic, "boot", m.Boot, "seq", m.Seq,
		"accepted", len(m.Readings), "rejected", len(m.Rejected), "reasons", sb.String(),
		"first_index", first.Index, "first_sensor", first.Sensor, "first_reason", first.Reason.String(),
		"first_detail", first.Detail, "client", from.client, "remote", from.remote)
}
