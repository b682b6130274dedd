// Package poll waits in tests for something to become true, by asking
// again every few milliseconds until a deadline: the way process-level
// tests wait, instead of fixed sleeps. Only tests import it.
package poll

import (
	"testing"
	"time"
)

// Every is how often Until asks again.
const Every = 10 * time.Millisecond

// Until calls cond until it returns true, and fails t naming what it waited
// for when it has not within the given time.
func Until(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(Every)
	}
}
