package testnet

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		addr := FreeAddr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("%q: %v", addr, err)
		}
		if p, _ := strconv.Atoi(port); p < lowest || p >= highest {
			t.Errorf("%s: outside [%d, %d)", addr, lowest, highest)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		ln.Close()
		seen[addr] = true
	}
	if len(seen) < 15 {
		t.Errorf("%d different addresses in 20 picks", len(seen))
	}
}
