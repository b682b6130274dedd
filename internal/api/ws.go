package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"hazardwatch/internal/auth"
)

// The WebSocket protocol (SPEC §3), as built:
//
//	client → {"type":"subscribe","scope":{"enterprise"|"park"|"county":"<id>"},"resume":<seq>,"readings":true}
//	server → {"type":"snapshot","seq":N,"alarms":[…],"floods":[…]}          (no resume)
//	         {"type":"snapshot","seq":R,"resumed":true,"alarms":[],"floods":[…]}, then the missed events
//	         {"type":"snapshot","seq":N,"reset":true,"alarms":[…],"floods":[…]} (resume too old)
//	         {"type":"alarm","seq":N+1,"event":"raised",…,"alarm":{…}} …   gapless, in order
//	         {"type":"flood","flood":{"scope":"enterprise"|"park","id":…,"active":…,"since":…,"count":…}}
//	         {"type":"readings","readings":[{"sensor":…,"ts":…,"v":…,"q":…}]}
//
// Floods (more than 10 new alarms in 10 minutes in an enterprise or a
// park) are not alarm events: they carry no seq, every snapshot lists the
// floods in the client's scope as they are, and a flood frame says when
// one starts or ends.
//	         {"type":"error","error":"…"} then a close frame, when refused
//
// Each connection has three goroutines: the handler (which supervises and
// closes), a reader (pongs, the client's close) and a writer (the only one
// that writes data frames). Whoever ends the connection kicks the client
// with a close code; the handler then sends the close frame, gives the
// client a moment to answer and closes the socket, which unblocks the
// other two.

// closeGrace bounds the close handshake: the wait for the writer's lock to
// send the close frame, and then for the client's answer.
const closeGrace = time.Second

// maxClientMessage caps what a client may send: only a subscribe message
// is expected.
const maxClientMessage = 4096

type client struct {
	conn     *websocket.Conn
	plain    string // the token, re-checked at every ping: a revoked token ends the stream
	user     string
	scope    auth.Scope
	readings bool
	q        chan frame

	once   sync.Once
	kicked chan struct{}
	code   int // close code to send; 0 for none (the socket is gone)
	reason string
}

// kick ends the connection once; the first caller's code and reason win.
func (c *client) kick(code int, reason string) {
	c.once.Do(func() {
		c.code, c.reason = code, reason
		close(c.kicked)
	})
}

type subscribeMsg struct {
	Type     string            `json:"type"`
	Scope    map[string]string `json:"scope"`
	Resume   *uint64           `json:"resume"`
	Readings bool              `json:"readings"`
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	tok, plain, ok := s.authenticate(w, r, true)
	if !ok {
		return
	}
	if !s.lim.openWS(tok.ID) {
		// A place frees when one of the token's connections closes, at
		// no known time: a ping period is a fair wait.
		s.tooMany(w, limitWS, s.o.pingEvery, msgTooManyWS)
		return
	}
	defer s.lim.closeWS(tok.ID)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "服务器正在关闭 / server shutting down")
		return
	}
	s.conns.Add(1)
	s.mu.Unlock()
	defer s.conns.Done()

	conn, err := s.upg.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered (400, 403 for a foreign Origin …)
	}
	defer conn.Close()
	conn.SetReadLimit(maxClientMessage)

	// Until the client is registered with the hub, Close reaches it here.
	stop := context.AfterFunc(s.ctx, func() {
		_ = conn.WriteControl(websocket.CloseMessage, closeMsg(websocket.CloseGoingAway, "服务器关闭 / server shutting down"), time.Now().Add(closeGrace))
		_ = conn.Close()
	})
	sub, code, msg := s.readSubscribe(conn, tok)
	if !stop() || code < 0 {
		return // closed by Close, or the client has gone
	}
	if code != 0 {
		s.refuse(conn, code, msg)
		return
	}
	c := &client{
		conn: conn, plain: plain, user: actor(tok), scope: sub.scope, readings: sub.readings,
		q: make(chan frame, s.o.clientQueue), kicked: make(chan struct{}),
	}
	start, err := s.hub.register(c, sub.resume)
	if err != nil {
		code := websocket.CloseTryAgainLater
		if errors.Is(err, errHubClosed) {
			code = websocket.CloseGoingAway
		}
		s.refuse(conn, code, "报警推送不可用 / "+err.Error())
		return
	}
	s.log.Info("api: WebSocket subscribed", "user", c.user, "token", tok.ID, "scope", c.scope.String(),
		"resume", sub.resume != nil, "readings", c.readings, "remote", r.RemoteAddr)

	readerDone, writerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readLoop(c)
	}()
	go func() {
		defer close(writerDone)
		s.writeLoop(c, start)
	}()
	<-c.kicked
	s.hub.remove(c, 0, "", "") // when the hub did not drop it itself
	if c.code != 0 {
		_ = conn.WriteControl(websocket.CloseMessage, closeMsg(c.code, c.reason), time.Now().Add(closeGrace))
		// Closing the socket with the client's answer unread could reset
		// the connection before the client reads our close frame.
		t := time.NewTimer(closeGrace)
		select {
		case <-readerDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = conn.Close()
	<-readerDone
	<-writerDone
	s.log.Info("api: WebSocket closed", "user", c.user, "scope", c.scope.String(), "code", c.code, "reason", c.reason)
}

type subscription struct {
	scope    auth.Scope
	resume   *uint64
	readings bool
}

// readSubscribe waits for the client's subscribe message and checks its
// scope against the token's. A positive code refuses the client with msg;
// a negative one says the client has gone.
func (s *Server) readSubscribe(conn *websocket.Conn, tok auth.Token) (subscription, int, string) {
	_ = conn.SetReadDeadline(time.Now().Add(s.o.subscribeWait))
	typ, data, err := conn.ReadMessage()
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return subscription{}, websocket.ClosePolicyViolation, "未收到订阅消息 / no subscribe message in time"
		}
		return subscription{}, -1, ""
	}
	if typ != websocket.TextMessage {
		return subscription{}, websocket.CloseUnsupportedData, "需要 JSON 文本消息 / a JSON text message is expected"
	}
	var m subscribeMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return subscription{}, websocket.CloseInvalidFramePayloadData, "订阅消息无效 / bad subscribe message: " + err.Error()
	}
	if m.Type != "subscribe" {
		return subscription{}, websocket.ClosePolicyViolation, `首条消息须为订阅 / the first message must be {"type":"subscribe",…}`
	}
	sub := subscription{scope: tok.Scope, resume: m.Resume, readings: m.Readings}
	if len(m.Scope) > 1 {
		return subscription{}, websocket.ClosePolicyViolation, "scope 只能有一项 / scope names one of enterprise, park or county"
	}
	for kind, id := range m.Scope {
		if kind != "enterprise" && kind != "park" && kind != "county" {
			return subscription{}, websocket.ClosePolicyViolation, "scope 须为 enterprise、park 或 county / scope must be enterprise, park or county"
		}
		sc := auth.Scope{Kind: kind, ID: id}
		in, known := within(s.plant, tok.Scope, sc)
		if !known {
			return subscription{}, websocket.ClosePolicyViolation, "范围不存在 / no such " + kind + ": " + id
		}
		if !in {
			return subscription{}, websocket.ClosePolicyViolation, msgForbidden
		}
		sub.scope = sc
	}
	return sub, 0, ""
}

// refuse sends an error frame and a close frame, waits briefly for the
// client's close and returns; the caller closes the socket. Only the
// handler goroutine writes at this point.
func (s *Server) refuse(conn *websocket.Conn, code int, msg string) {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error string `json:"error"`
	}{"error", msg})
	_ = conn.SetWriteDeadline(time.Now().Add(closeGrace))
	if conn.WriteMessage(websocket.TextMessage, b) != nil {
		return
	}
	if conn.WriteControl(websocket.CloseMessage, closeMsg(code, msg), time.Now().Add(closeGrace)) != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return
		}
	}
}

// readLoop reads until the connection ends. Pongs (and anything the client
// sends, which is otherwise ignored) extend the read deadline; silence past
// it means the client or the network is gone.
func (s *Server) readLoop(c *client) {
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(s.o.pongWait)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				s.hub.remove(c, websocket.ClosePolicyViolation, "心跳超时 / pong timeout", dropPong)
			} else {
				s.hub.remove(c, 0, "", "")
			}
			return
		}
		extend()
	}
}

// writeLoop writes the start frames (snapshot, replay), then queued
// frames, with pings throughout, until the client is kicked or a write
// fails. Queued frames wait until the start frames are out: that order is
// what makes the stream gapless.
func (s *Server) writeLoop(c *client, start [][]byte) {
	write := func(b []byte) bool {
		_ = c.conn.SetWriteDeadline(time.Now().Add(s.o.writeWait))
		if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
			s.hub.remove(c, 0, "", dropWrite)
			return false
		}
		return true
	}
	// ping also re-checks the token: a revoked or expired one ends the
	// stream within one ping period.
	ping := func() bool {
		if _, err := s.o.Tokens.Authenticate(c.plain, s.clock()); err != nil {
			s.hub.remove(c, websocket.ClosePolicyViolation, "令牌失效 / token revoked or expired", dropToken)
			return false
		}
		if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.o.writeWait)); err != nil {
			s.hub.remove(c, 0, "", dropWrite)
			return false
		}
		return true
	}
	ticker := time.NewTicker(s.o.pingEvery)
	defer ticker.Stop()
	for _, b := range start {
		select {
		case <-c.kicked:
			return
		case <-ticker.C:
			if !ping() {
				return
			}
		default:
		}
		if !write(b) {
			return
		}
	}
	for {
		select {
		case <-c.kicked:
			return
		case f := <-c.q:
			if !write(f.data) {
				return
			}
			if !f.at.IsZero() {
				s.metrics.pushLag.Set(s.clock().Sub(f.at).Seconds())
			}
		case <-ticker.C:
			if !ping() {
				return
			}
		}
	}
}

// closeMsg builds a close frame's payload; its reason may hold at most 123
// bytes, cut at a character boundary.
func closeMsg(code int, reason string) []byte {
	const maxReason = 123
	if len(reason) > maxReason {
		n := maxReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	return websocket.FormatCloseMessage(code, reason)
}
