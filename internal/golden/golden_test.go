package golden

import (
	"path/filepath"
	"testing"
)

// recorder keeps what Check reports instead of failing the real test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Fatal(...any)          { r.failed = true }

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	r := &recorder{TB: t}
	Check(r, path, "a\n")
	if !r.failed {
		t.Fatal("a missing golden file passed")
	}
	*update = true
	r = &recorder{TB: t}
	Check(r, path, "a\n")
	*update = false
	if r.failed {
		t.Fatal("-update failed to write")
	}
	for _, c := range []struct {
		got  string
		fail bool
	}{{"a\n", false}, {"b\n", true}} {
		r = &recorder{TB: t}
		Check(r, path, c.got)
		if r.failed != c.fail {
			t.Errorf("Check(%q) failed=%v, want %v", c.got, r.failed, c.fail)
		}
	}
}
