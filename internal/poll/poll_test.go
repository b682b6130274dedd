package poll

import (
	"testing"
	"time"
)

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) }

func TestUntil(t *testing.T) {
	n := 0
	Until(t, "the third call", time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	r := &recorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Until(r, "never", 30*time.Millisecond, func() bool { return false })
	}()
	if !r.failed {
		t.Fatal("a condition that never holds did not fail")
	}
}
