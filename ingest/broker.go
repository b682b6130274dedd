package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"hazardwatch/internal/telemetry"
)

// The embedded broker is mochi-mqtt with one hook that does the ingest.
//
// What the hook relies on, read from mochi v2.7.9's server.go and measured:
//   - OnPublish runs in the client's read goroutine before the PUBACK is
//     written, one packet at a time per client, so waiting in it for the
//     JetStream ack makes the PUBACK mean "durable".
//   - For an MQTT 3.1.1 client only packets.ErrRejectPacket withholds the
//     PUBACK; any other error from OnPublish is logged and the packet is
//     acknowledged anyway (the error codes reach only MQTT 5 clients).
//     After a failed store the hook closes the socket as well, so mochi's
//     read fails, it publishes the gateway's will, and the gateway
//     reconnects and resends.
//   - A packet whose remaining length is above MaximumPacketSize is refused
//     while reading its fixed header: the connection closes and OnDisconnect
//     sees packets.ErrPacketTooLarge, which is where it is counted.
//   - An ACL refusal of a QoS 1 publish disconnects an MQTT 3.1.1 client;
//     a QoS 0 one is dropped silently. Either way the publish reaches
//     neither OnPublish nor any subscriber.
//   - A client's outbound queue (MaximumClientWritesPending, 8 192) drops
//     when full, calling OnPublishDropped; a full inflight window drops
//     with only Info.InflightDropped counting it.
//   - The last will is published without OnPublish and without OnACLCheck
//     (sendLWT); OnWillSent sees it. Its topic is therefore checked at
//     CONNECT (access.go).
//   - OnConnectAuthenticate runs once the CONNECT is read and parsed
//     (cl.ID, the will), before the session of an earlier client with the
//     same id is taken over. Refusing sends CONNACK "bad username or
//     password" (0x86; 0x05 "not authorized" to an MQTT 3.1.1 client) and
//     ends the connection without calling OnDisconnect.
//   - OnACLCheck with write=false runs for every SUBSCRIBE filter (a
//     refusal answers 0x80 for it) and again for every message delivered
//     to a subscriber.
//   - mochi only reads and writes the net.Conn a listener hands it and
//     never looks at its type, so the listener hands it a *peer that
//     carries the connection's identity (access.go).

type broker struct {
	srv *mqtt.Server
	ln  *tcpListener
}

func (in *Ingest) startBroker() (*broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = MaxPacket
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi logs every connection at info; keep its warnings.
		Logger: slog.New(minLevel{min: slog.LevelWarn, Handler: in.log.Handler()}).With("component", "mqtt"),
		// Each $SYS publish reads the runtime's memory statistics, which
		// stops the world; nobody here reads $SYS every second.
		SysTopicResendInterval: 60,
	})
	if err := srv.AddHook(&hook{in: in}, nil); err != nil {
		return nil, err
	}
	ln := &tcpListener{id: "tcp", addr: in.o.Listen, tls: in.o.TLS, handshakeFailed: in.handshakeFailed,
		conns: make(map[net.Conn]struct{}), served: make(chan struct{})}
	if err := srv.AddListener(ln); err != nil {
		return nil, err
	}
	in.m.dropped.info.Store(srv)
	if err := srv.Serve(); err != nil {
		// Serve fails before it starts serving: nothing to wait for.
		_ = srv.Close()
		return nil, err
	}
	in.log.Info("embedded MQTT broker listening", "addr", ln.Address(), "tls", in.o.TLS != nil,
		"client_certificates", in.o.TLS != nil && in.o.TLS.ClientCAs != nil,
		"authentication", in.o.Credentials != nil, "max_packet", MaxPacket, "max_payload", in.o.MaxPayload)
	if in.o.Credentials == nil {
		in.log.Warn("MQTT clients are not authenticated: whoever reaches the broker may publish as any gateway and subscribe to everything",
			"addr", ln.Address())
	}
	return &broker{srv: srv, ln: ln}, nil
}

// hook is the ingest inside the embedded broker.
type hook struct {
	mqtt.HookBase
	in *Ingest
	// conns holds each client's *conn, keyed by *mqtt.Client: mochi calls
	// OnPublish one packet at a time per client, so a conn needs no lock.
	conns sync.Map
}

func (h *hook) ID() string { return "hazardwatch-ingest" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWillSent,
		mqtt.OnDisconnect, mqtt.OnPublishDropped, mqtt.OnQosDropped:
		return true
	}
	return false
}

// OnConnectAuthenticate lets every client in when the broker has no
// Credentials; otherwise it decides who the client is (access.go) and
// keeps that on the connection for the ACL.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.in.o.Credentials == nil {
		return true
	}
	p := peerOf(cl)
	if p == nil {
		return false // not accepted by this broker's listener: cannot happen
	}
	who, reason, detail := h.in.authenticate(cl, pk, p)
	if who == nil {
		h.in.refuseConnect(reason, detail, cl.ID, cl.Net.Remote, string(pk.Connect.Username))
		return false
	}
	p.checked.Store(h.in.clock().UnixNano())
	p.who.Store(who)
	h.in.log.Info("MQTT client authenticated", "as", who.String(), "via", who.via, "client", cl.ID, "remote", cl.Net.Remote)
	return true
}

// OnACLCheck refuses a publish outside hw/v1/+/+/telemetry|status; with
// Credentials, everything access.go's ACL does not allow. Without them,
// reading (subscribing) is open.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.in.o.Credentials != nil {
		return h.allowed(cl, peerOf(cl), topic, write)
	}
	if !write {
		return true
	}
	if _, err := telemetry.ParseTopic(topic); err == nil {
		return true
	}
	return h.refusePublish(cl, topic, telemetry.ReasonBadTopic, "topic outside hw/v1/+/+/telemetry|status", "")
}

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	t, err := telemetry.ParseTopic(pk.TopicName)
	if err != nil {
		return pk, nil // the ACL check let it through: not a client's
	}
	if t.Kind == telemetry.TopicStatus {
		h.in.status(pk.TopicName, pk.Payload, true, cl.ID)
		return pk, nil
	}
	// Telemetry is never retained: the broker would keep the last poll
	// cycle of every gateway in memory for no reader.
	pk.FixedHeader.Retain = false
	c := h.conn(cl)
	if c.failed {
		return pk, packets.ErrRejectPacket
	}
	if !h.in.telemetry(c, pk.TopicName, pk.Payload, origin{cl.ID, cl.Net.Remote}) {
		c.failed = true
		if cl.Net.Conn != nil {
			_ = cl.Net.Conn.Close()
		}
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (h *hook) conn(cl *mqtt.Client) *conn {
	if v, ok := h.conns.Load(cl); ok {
		return v.(*conn)
	}
	c := newConn()
	h.conns.Store(cl, c)
	return c
}

func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if t, err := telemetry.ParseTopic(pk.TopicName); err == nil && t.Kind == telemetry.TopicStatus {
		h.in.status(pk.TopicName, pk.Payload, false, cl.ID)
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.conns.Delete(cl)
	if errors.Is(err, packets.ErrPacketTooLarge) {
		h.in.m.msgRejected.Inc()
		h.in.m.reject(telemetry.ReasonOversized)
		h.in.log.Warn("packet above the transport cap; connection closed", "max_packet", MaxPacket,
			"client", cl.ID, "remote", cl.Net.Remote)
	}
}

func (h *hook) OnPublishDropped(*mqtt.Client, packets.Packet) { h.in.m.dropped.queueFull.Add(1) }

func (h *hook) OnQosDropped(*mqtt.Client, packets.Packet) { h.in.m.dropped.inflightExpired.Add(1) }

// tcpListener is mochi's TCP listener with what shutdown needs: it keeps
// every accepted connection so that Close can end those mochi does not know
// yet (still before CONNECT, which mochi reads without a deadline), gives
// CONNECT a deadline, and lets the broker wait for every connection's
// goroutine. With tls set it speaks TLS only, and finishes each handshake
// before mochi reads the CONNECT: a failed handshake is then told apart
// from a bad CONNECT and counted, and the client certificate is known when
// OnConnectAuthenticate runs.
type tcpListener struct {
	id, addr string
	ln       net.Listener
	log      *slog.Logger
	tls      *tls.Config
	// handshakeFailed is told of every failed TLS handshake.
	handshakeFailed func(remote string, err error)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	served chan struct{}
}

// connectTimeout bounds the wait for a new connection's CONNECT packet;
// mochi replaces the deadline with the keepalive's once it has it.
const connectTimeout = 10 * time.Second

var _ listeners.Listener = (*tcpListener)(nil)

func (l *tcpListener) ID() string { return l.id }

func (l *tcpListener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	defer close(l.served)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		// The deadline covers the TLS handshake too: a tls.Conn's deadlines
		// are its underlying connection's.
		_ = c.SetDeadline(time.Now().Add(connectTimeout))
		go func() {
			defer l.wg.Done()
			err := l.serveConn(c, establish)
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
			// The raw connection: after a handshake mochi has closed the
			// TLS one, and a close_notify to a peer that failed is moot.
			_ = c.Close()
			if err != nil {
				l.log.Debug("connection ended", "remote", c.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// serveConn hands c to mochi as a *peer, after the TLS handshake when the
// listener has a TLS config.
func (l *tcpListener) serveConn(c net.Conn, establish listeners.EstablishFn) error {
	if l.tls == nil {
		return establish(l.id, &peer{Conn: c})
	}
	tc := tls.Server(c, l.tls)
	if err := tc.Handshake(); err != nil {
		l.handshakeFailed(c.RemoteAddr().String(), err)
		return err
	}
	return establish(l.id, &peer{Conn: tc, tls: tc})
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	closeClients(l.id)
	_ = l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
}

// wait returns when the accept loop and every connection's goroutine have
// finished; call it after Close.
func (l *tcpListener) wait() {
	<-l.served
	l.wg.Wait()
}

// waitFor is wait with a bound; it reports whether everything finished.
func (l *tcpListener) waitFor(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		l.wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// minLevel drops records below min.
type minLevel struct {
	min slog.Level
	slog.Handler
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.min, h.Handler.WithAttrs(as)}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.min, h.Handler.WithGroup(name)}
}
