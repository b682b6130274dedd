//go:build !unix

package api

import "github.com/gorilla/websocket"

// smallBufferDialer: without SO_RCVBUF the slow-client test only needs
// more events to fill the socket buffers.
func smallBufferDialer() *websocket.Dialer { return websocket.DefaultDialer }
