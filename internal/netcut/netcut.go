// Package netcut is a TCP proxy for loopback use whose link can be cut and
// restored: the demo puts one between each gateway and the centre's MQTT
// broker, so that a scenario can take a gateway's uplink away and a user
// can watch the gateway's store-and-forward queue fill and drain.
//
// A cut does what a failed link does to a client: every connection through
// the proxy is closed at once, and while the cut lasts a new connection is
// accepted and closed straight away, so reconnects fail fast and keep
// failing. Accepting and closing, rather than not listening, keeps the
// proxy's address stable for the whole run, so a client never needs to be
// told a new one.
//
// Each connection costs two goroutines, one per direction, each copying
// bytes until its source ends. An end of stream in one direction is passed
// on as a half-close (the other direction keeps flowing, as TCP allows);
// an error in either direction closes both sides. Every goroutine belongs
// to the Proxy and has ended when Close returns.
package netcut

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the proxy's counters since Listen.
type Stats struct {
	Accepted  int64 // connections passed on to the target
	Refused   int64 // connections closed at once because the link was cut (or closing)
	Failed    int64 // connections closed because the target could not be dialled
	Open      int   // connections passing now
	Cuts      int64 // times the link was cut
	BytesUp   int64 // bytes from clients to the target
	BytesDown int64 // bytes from the target to clients
}

// Proxy forwards TCP connections from its address to a target until Close.
type Proxy struct {
	ln     net.Listener
	target string
	log    *slog.Logger
	dialer net.Dialer

	// dialCtx ends on Close, so that a dial in flight does not hold Close up.
	dialCtx    context.Context
	cancelDial context.CancelFunc
	done       chan struct{} // closed by Close: the context watcher stops
	wg         sync.WaitGroup

	mu     sync.Mutex // guards cut, closed, links
	cut    bool
	closed bool
	links  map[*link]struct{}

	accepted, refused, failed, cuts atomic.Int64
	up, down                        atomic.Int64
}

// link is one client connection and its connection to the target.
type link struct {
	client, server net.Conn
}

// abort closes both sides; both copy goroutines then end on errors.
func (l *link) abort() {
	_ = l.client.Close()
	_ = l.server.Close()
}

// dialTimeout bounds a dial to the target. On loopback a dial either
// succeeds or is refused at once; the bound is for a target that stopped
// accepting with a full backlog.
const dialTimeout = 5 * time.Second

// Listen starts a proxy on listenAddr ("127.0.0.1:0" picks a free port; Addr
// tells which) forwarding every connection to target. The proxy runs until
// Close, or until ctx ends, which closes it the same way (Close must still
// be called to wait for its goroutines). log may be nil; give it the
// attributes that say whose link this is (e.g. the gateway's id).
func Listen(ctx context.Context, listenAddr, target string, log *slog.Logger) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("netcut: no target address")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("netcut: %w", err)
	}
	p := &Proxy{
		ln: ln, target: target, log: log,
		dialer: net.Dialer{Timeout: dialTimeout},
		done:   make(chan struct{}),
		links:  map[*link]struct{}{},
	}
	p.dialCtx, p.cancelDial = context.WithCancel(context.Background())
	p.wg.Add(2)
	go p.accept()
	go p.watch(ctx)
	log.Debug("proxy listening", "addr", p.Addr(), "target", target)
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Cut reports whether the link is cut.
func (p *Proxy) Cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// SetCut cuts the link (true): every connection through the proxy is closed
// before SetCut returns, and new ones are closed as soon as they are
// accepted. SetCut(false) lets new connections pass again. Each change is
// logged once at info; setting the state the link is already in does
// nothing.
func (p *Proxy) SetCut(cut bool) {
	p.mu.Lock()
	if p.cut == cut || p.closed {
		p.mu.Unlock()
		return
	}
	p.cut = cut
	n := len(p.links)
	if cut {
		p.cuts.Add(1)
		// The links leave the map now, not when their goroutines notice,
		// so that Stats.Open is 0 as soon as SetCut returns.
		for l := range p.links {
			l.abort()
			delete(p.links, l)
		}
	}
	p.mu.Unlock()
	if cut {
		p.log.Info("uplink cut / 上行链路中断", "addr", p.Addr(), "target", p.target, "closed", n)
	} else {
		p.log.Info("uplink restored / 上行链路恢复", "addr", p.Addr(), "target", p.target)
	}
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted: p.accepted.Load(), Refused: p.refused.Load(), Failed: p.failed.Load(),
		Open: open, Cuts: p.cuts.Load(), BytesUp: p.up.Load(), BytesDown: p.down.Load(),
	}
}

// Close stops listening, closes every connection and waits for every
// goroutine of the proxy. It may be called more than once.
func (p *Proxy) Close() error {
	p.shutdown()
	p.wg.Wait()
	return nil
}

// shutdown closes the listener and the connections; safe to call more than
// once and from the context watcher.
func (p *Proxy) shutdown() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.cancelDial()
	_ = p.ln.Close()
	for l := range p.links {
		l.abort()
	}
	p.mu.Unlock()
	p.log.Debug("proxy closed", "addr", p.Addr(), "target", p.target)
}

// watch closes the proxy when ctx ends before Close.
func (p *Proxy) watch(ctx context.Context) {
	defer p.wg.Done()
	select {
	case <-ctx.Done():
		p.shutdown()
	case <-p.done:
	}
}

// accept takes connections until the listener closes. A connection that
// arrives while the link is cut is closed here, without a goroutine.
func (p *Proxy) accept() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: wait a little rather
			// than spin, as net/http does, and give up when closed.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("proxy: accept failed", "addr", p.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-p.done:
				return
			}
		}
		backoff = 0
		p.mu.Lock()
		refuse := p.cut || p.closed
		if !refuse {
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			_ = c.Close()
			p.log.Debug("proxy: connection refused, the link is cut", "addr", p.Addr(), "client", c.RemoteAddr())
			continue
		}
		go p.serve(c)
	}
}

// serve dials the target for client c and copies both ways until both
// directions end. The upstream copy runs on a goroutine that serve waits
// for, so serve's own end (counted in p.wg) covers both.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := p.dialer.DialContext(p.dialCtx, "tcp", p.target)
	if err != nil {
		p.failed.Add(1)
		_ = c.Close()
		p.log.Warn("proxy: cannot reach the target", "addr", p.Addr(), "target", p.target, "err", err)
		return
	}
	l := &link{client: c, server: s}
	// The link may have been cut, or the proxy closed, while dialling.
	p.mu.Lock()
	if p.cut || p.closed {
		p.mu.Unlock()
		p.refused.Add(1)
		l.abort()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)
	p.log.Debug("proxy: connection open", "addr", p.Addr(), "client", c.RemoteAddr())

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		pipe(l, s, c, &p.up)
	}()
	pipe(l, c, s, &p.down)
	<-upDone
	// Both directions ended, cleanly (each half-closed) or not: the sockets
	// are of no more use.
	l.abort()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	p.log.Debug("proxy: connection closed", "addr", p.Addr(), "client", c.RemoteAddr())
}

// pipe copies src to dst, counting bytes in n. A clean end of src is passed
// on as a half-close of dst, so the other direction keeps flowing; an error
// on either side aborts the link, which ends the other direction too.
func pipe(l *link, dst, src net.Conn, n *atomic.Int64) {
	_, err := io.Copy(counter{dst, n}, src)
	if err != nil {
		l.abort()
		return
	}
	cw, ok := dst.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		l.abort()
	}
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}
