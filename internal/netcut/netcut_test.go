package netcut_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hazardwatch/internal/netcut"
	"hazardwatch/internal/poll"
)

// noLeaks fails t when goroutines started during the test outlive it.
// Registered first, it runs after the test's other cleanups (proxies and
// echo servers closed), polling because a closed socket's reader ends a
// moment after the close.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		poll.Until(t, fmt.Sprintf("goroutines back to %d", before), 5*time.Second, func() bool {
			return runtime.NumGoroutine() <= before
		})
	})
}

// echo is a TCP server on loopback that writes back what it reads, and
// half-closes its side when the client half-closes its own.
type echo struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echo) addr() string { return e.ln.Addr().String() }

func (e *echo) close() {
	_ = e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// logs collects the messages of info records.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

func listen(t *testing.T, target string, h slog.Handler) *netcut.Proxy {
	t.Helper()
	var log *slog.Logger
	if h != nil {
		log = slog.New(h)
	}
	p, err := netcut.Listen(context.Background(), "127.0.0.1:0", target, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads as many bytes back.
func roundTrip(c net.Conn, msg string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// closedByPeer reports whether a read on c ends with EOF or a reset
// within a few seconds (a timeout means the connection is still open).
func closedByPeer(c net.Conn) error {
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	var b [1]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("read %q, want the connection closed", b[:n])
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return nil
	case err != nil && strings.Contains(err.Error(), "reset"):
		return nil
	}
	return fmt.Errorf("read: %v, want EOF or a reset", err)
}

func TestBytesPass(t *testing.T) {
	noLeaks(t)
	e := startEcho(t)
	p := listen(t, e.addr(), nil)
	if p.Target() != e.addr() {
		t.Errorf("Target = %q, want %q", p.Target(), e.addr())
	}
	if strings.HasSuffix(p.Addr(), ":0") {
		t.Fatalf("Addr did not resolve :0: %q", p.Addr())
	}
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	big := strings.Repeat("氯气 Cl2 0.339 ppm ", 20000) // larger than a socket buffer
	for i, c := range []net.Conn{a, b, a} {
		msg := fmt.Sprintf("hello %d", i)
		if i == 2 {
			msg = big
		}
		got, err := roundTrip(c, msg)
		if err != nil || got != msg {
			t.Fatalf("round trip %d: %d bytes, %v", i, len(got), err)
		}
	}
	want := int64(len("hello 0") + len("hello 1") + len(big))
	poll.Until(t, "byte counters", 5*time.Second, func() bool {
		s := p.Stats()
		return s.BytesUp == want && s.BytesDown == want
	})
	s := p.Stats()
	if s.Accepted != 2 || s.Open != 2 || s.Refused != 0 || s.Cuts != 0 {
		t.Errorf("stats = %+v, want 2 accepted and open, nothing refused or cut", s)
	}
}

// TestHalfClose: a client that half-closes still gets its answer, and the
// server's half-close reaches it as EOF after the bytes.
func TestHalfClose(t *testing.T) {
	noLeaks(t)
	e := startEcho(t)
	p := listen(t, e.addr(), nil)
	c := dial(t, p.Addr())
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "last words"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("after a half-close: %q, %v; want the echo then EOF", got, err)
	}
	poll.Until(t, "the link to be gone", 5*time.Second, func() bool { return p.Stats().Open == 0 })
}

func TestCutAndRestore(t *testing.T) {
	noLeaks(t)
	e := startEcho(t)
	h := &logs{}
	p := listen(t, e.addr(), h)
	live := dial(t, p.Addr())
	if got, err := roundTrip(live, "ping"); err != nil || got != "ping" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}

	p.SetCut(true)
	p.SetCut(true) // no second cut, no second log line
	if !p.Cut() {
		t.Error("Cut() = false after SetCut(true)")
	}
	if n := p.Stats().Open; n != 0 {
		t.Errorf("%d connections open right after the cut, want 0", n)
	}
	if err := closedByPeer(live); err != nil {
		t.Errorf("live connection after the cut: %v", err)
	}
	// A new connection is accepted and closed at once, every time.
	for i := range 3 {
		if err := closedByPeer(dial(t, p.Addr())); err != nil {
			t.Errorf("dial %d during the cut: %v", i, err)
		}
	}
	poll.Until(t, "refusals counted", 5*time.Second, func() bool { return p.Stats().Refused == 3 })

	p.SetCut(false)
	if p.Cut() {
		t.Error("Cut() = true after SetCut(false)")
	}
	again := dial(t, p.Addr())
	if got, err := roundTrip(again, "pong"); err != nil || got != "pong" {
		t.Fatalf("after the restore: %q, %v", got, err)
	}
	s := p.Stats()
	if s.Cuts != 1 || s.Accepted != 2 || s.Refused != 3 || s.Open != 1 {
		t.Errorf("stats = %+v, want 1 cut, 2 accepted, 3 refused, 1 open", s)
	}
	want := []string{"uplink cut / 上行链路中断", "uplink restored / 上行链路恢复"}
	if got := h.all(); !slices.Equal(got, want) {
		t.Errorf("info logs = %q, want %q", got, want)
	}
}

// TestTargetDown: a client of a proxy whose target refuses is closed, and
// the proxy keeps serving once the target is back.
func TestTargetDown(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := listen(t, target, nil)
	if err := closedByPeer(dial(t, p.Addr())); err != nil {
		t.Errorf("with the target down: %v", err)
	}
	if s := p.Stats(); s.Failed != 1 {
		t.Errorf("Failed = %d, want 1", s.Failed)
	}
}

// TestCloseEndsEverything: Close ends open connections, the listener and
// every goroutine, and the proxy's address stops accepting.
func TestCloseEndsEverything(t *testing.T) {
	noLeaks(t)
	e := startEcho(t)
	before := runtime.NumGoroutine()
	p, err := netcut.Listen(context.Background(), "127.0.0.1:0", e.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	conns := []net.Conn{dial(t, p.Addr()), dial(t, p.Addr())}
	for _, c := range conns {
		if got, err := roundTrip(c, "x"); err != nil || got != "x" {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for i, c := range conns {
		if err := closedByPeer(c); err != nil {
			t.Errorf("connection %d after Close: %v", i, err)
		}
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Error("the proxy still accepts after Close")
	}
	p.SetCut(true) // after Close: nothing to do, no panic
	// The echo server's own goroutines end when the proxy's sockets close.
	poll.Until(t, "goroutines back to the count before Listen", 5*time.Second, func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestContextEndCloses: a proxy whose context ends stops as Close does.
func TestContextEndCloses(t *testing.T) {
	noLeaks(t)
	e := startEcho(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := netcut.Listen(ctx, "127.0.0.1:0", e.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "x"); err != nil || got != "x" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	cancel()
	if err := closedByPeer(c); err != nil {
		t.Errorf("connection after the context ended: %v", err)
	}
	poll.Until(t, "the listener to close", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", p.Addr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

func TestListenErrors(t *testing.T) {
	noLeaks(t)
	if _, err := netcut.Listen(context.Background(), "127.0.0.1:0", "", nil); err == nil {
		t.Error("Listen without a target succeeded")
	}
	if _, err := netcut.Listen(context.Background(), "127.0.0.1:99999", "127.0.0.1:1", nil); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
}
