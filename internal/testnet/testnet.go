// Package testnet picks loopback addresses for servers that a test starts
// later, often in a child process, and may start again on the same
// address. Only tests import it.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// The kernel's ephemeral range (Linux: 32768–60999) is where an outgoing
// connection takes its source port: a port picked there and closed can be
// taken by any connection before the test binds it again ("address already
// in use", seen when several test packages run at once). FreeAddr picks
// below it, where only another listener could take the port.
const lowest, highest = 20000, 32768

// FreeAddr returns 127.0.0.1:PORT with a port nothing listens on now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", lowest+rand.IntN(highest-lowest))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
