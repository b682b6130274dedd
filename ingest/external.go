package ingest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"hazardwatch/internal/telemetry"
)

// External broker mode (SPEC §2): Mosquitto or EMQX sends the gateways'
// PUBACKs and enforces its own ACL; the centre is one subscriber with a
// persistent session (clean session off, a fixed client id) and acknowledges
// each message to the broker only after JetStream holds it. A message the
// centre has not acknowledged stays in its session at the broker, which
// sends it again when the centre reconnects, also after a restart.
//
// paho hands each message to its own goroutine (order does not matter:
// every message carries its own identity, and the committer needs many
// messages at once to batch), with acknowledgements manual. When a store
// fails the centre drops its connection to the broker, because an MQTT
// 3.1.1 broker resends unacknowledged messages only on a new connection;
// paho then reconnects by itself.

var topicFilters = map[string]byte{
	"hw/v1/+/+/telemetry": 1,
	"hw/v1/+/+/status":    1,
}

type external struct {
	in     *Ingest
	client paho.Client
	pool   sync.Pool

	mu         sync.Mutex
	closed     bool
	subscribed bool
	netConn    *droppable
	// handlers counts message handlers at work; onConnects counts the
	// subscribing goroutines paho starts on every connection.
	handlers, onConnects sync.WaitGroup
}

func (in *Ingest) startExternal() (*external, error) {
	u, err := url.Parse(in.o.ExternalURL)
	if err != nil {
		return nil, fmt.Errorf("external broker URL: %w", err)
	}
	if u.Scheme != "tcp" && u.Scheme != "mqtt" {
		return nil, fmt.Errorf("external broker URL %q: scheme %q is not supported (tcp://host:port)", in.o.ExternalURL, u.Scheme)
	}
	e := &external{in: in}
	e.pool.New = func() any { return newConn() }
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + u.Host).
		SetClientID(in.o.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(e.handle).
		SetOnConnectHandler(e.onConnect).
		SetConnectionLostHandler(e.onLost).
		SetCustomOpenConnectionFn(e.dial)
	e.client = paho.NewClient(opts)
	// With ConnectRetry the client keeps trying in the background; Ready
	// says when it is through.
	e.client.Connect()
	in.log.Info("subscribing at the external MQTT broker", "url", in.o.ExternalURL, "client_id", in.o.ClientID)
	return e, nil
}

// dial opens the TCP connection and keeps it, so that a failed store can
// cut it.
func (e *external) dial(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := net.Dialer{Timeout: o.ConnectTimeout}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	dc := &droppable{Conn: c}
	e.mu.Lock()
	e.netConn = dc
	e.mu.Unlock()
	return dc, nil
}

// droppable is a connection that the centre can fail on purpose. Closing
// it would not do: paho takes "use of closed network connection" for its
// own doing and neither reports the loss nor reconnects. Instead drop makes
// the pending read return errDropped, which paho handles as a lost
// connection: it closes the socket, reconnects, and the broker resends
// what was not acknowledged.
type droppable struct {
	net.Conn
	dropped atomic.Bool
}

var errDropped = errors.New("ingest: connection dropped after a failed store, so that the broker resends")

func (c *droppable) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.dropped.Load() {
		err = errDropped
	}
	return n, err
}

func (c *droppable) drop() {
	c.dropped.Store(true)
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// onConnect subscribes on every connection: the broker keeps the
// subscriptions of a persistent session, but a new session (the broker
// lost it, or expired it) has none. Messages the broker sends before the
// SUBACK reach the default handler, which is the same.
func (e *external) onConnect(c paho.Client) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.onConnects.Add(1)
	e.mu.Unlock()
	defer e.onConnects.Done()
	tok := c.SubscribeMultiple(topicFilters, e.handle)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		err := tok.Error()
		if err == nil {
			err = errors.New("no SUBACK within 30s")
		}
		e.in.log.Error("subscribing at the external broker failed; reconnecting", "error", err)
		e.drop()
		return
	}
	e.mu.Lock()
	e.subscribed = true
	e.mu.Unlock()
	e.in.log.Info("subscribed at the external MQTT broker", "url", e.in.o.ExternalURL)
}

func (e *external) onLost(_ paho.Client, err error) {
	e.mu.Lock()
	e.subscribed = false
	e.mu.Unlock()
	e.in.log.Warn("connection to the external MQTT broker lost; reconnecting", "error", err)
}

// drop cuts the connection to the broker, which resends what the centre
// did not acknowledge once paho has reconnected.
func (e *external) drop() {
	e.mu.Lock()
	c := e.netConn
	e.mu.Unlock()
	if c != nil {
		c.drop()
	}
}

// handle is called by paho in a goroutine of its own per message.
func (e *external) handle(_ paho.Client, msg paho.Message) {
	e.mu.Lock()
	if e.closed {
		// Left unacknowledged: the broker keeps it for the next session.
		e.mu.Unlock()
		return
	}
	e.handlers.Add(1)
	e.mu.Unlock()
	defer e.handlers.Done()

	topic := msg.Topic()
	t, err := telemetry.ParseTopic(topic)
	if err != nil {
		// Only a broker whose ACL lets gateways publish elsewhere, or a
		// subscription changed by hand, delivers this.
		e.in.m.msgRejected.Inc()
		e.in.m.reject(telemetry.ReasonBadTopic)
		e.in.log.Warn("message outside hw/v1/+/+/telemetry|status from the external broker", "topic", topic)
		msg.Ack()
		return
	}
	if t.Kind == telemetry.TopicStatus {
		// A retained copy is the broker's, delivered on subscribing: the
		// state, not the clock.
		e.in.status(topic, msg.Payload(), !msg.Retained(), "external")
		msg.Ack()
		return
	}
	c := e.pool.Get().(*conn)
	ok := e.in.telemetry(c, topic, msg.Payload(), origin{client: "external", remote: e.in.o.ExternalURL})
	e.pool.Put(c)
	if !ok {
		e.drop()
		return
	}
	msg.Ack()
}

func (e *external) ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.subscribed || !e.client.IsConnectionOpen() {
		return errors.New("ingest: not subscribed at the external broker")
	}
	return nil
}

// close lets running handlers finish (their acknowledgements go out on the
// open connection), then disconnects.
func (e *external) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.handlers.Wait()
	e.client.Disconnect(250)
	e.onConnects.Wait()
}
