//go:build unix

package api

import (
	"net"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// smallBufferDialer dials with a 4 KiB receive buffer, set before the
// connection so that TCP's window stays small: a client that does not read
// then stops the server's writes after kilobytes, not megabytes.
func smallBufferDialer() *websocket.Dialer {
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	return &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second}
}
