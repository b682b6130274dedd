package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashChildEnv names the store directory for the child process of
// TestSurvivesKill. TestMain runs crashChild instead of the tests when set.
const crashChildEnv = "HW_STORE_CRASH_CHILD_DIR"

const crashSensors = 10

// crashBatch is batch i of the child: one live reading per sensor, and from
// the second batch on a replayed reading 3 days back (an out-of-order sample,
// which the TSDB keeps in a second log, the WBL).
func crashBatch(i int) []Point {
	live := ms(base) + int64(i)*1000
	pts := make([]Point, 0, crashSensors+1)
	for k := range crashSensors {
		pts = append(pts, Point{Sensor: fmt.Sprintf("s%02d", k), TS: live, Value: float64(i*100 + k)})
	}
	late := ms(base) // the first batch sets the late sensor's newest reading
	if i > 0 {
		late = ms(base.Add(-3*24*time.Hour)) + int64(i)*1000
	}
	return append(pts, Point{Sensor: "late", TS: late, Value: float64(i)})
}

// crashChild appends batches for ever, printing "ack i" after batch i's
// Append returned, until the parent kills it. It never closes the store.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		if err := s.Append(context.Background(), crashBatch(i)); err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the parent sees the ack as soon as it is written.
		fmt.Printf("ack %d\n", i)
	}
}

// TestSurvivesKill runs this test binary as a child that appends and is
// killed with SIGKILL mid-stream (no Close, no deferred code), then reopens
// the store and checks that every acknowledged point is there, live and
// out-of-order alike.
//
// SIGKILL tests a process crash, where the kernel still writes what the
// process had written. The fsync that Append adds for a machine crash or a
// power cut cannot be tested without cutting power; sync.go says why it is
// sufficient, and TestAppendFsyncs that it happens.
func TestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const wantAcks = 40
	acked := -1
	sc := bufio.NewScanner(out)
	for acked < wantAcks-1 && sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ack "))
		if err != nil {
			continue // the test framework's own output, if any
		}
		acked = n
	}
	// Kill while the child is appending: it may die in the middle of a commit.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // "signal: killed" is the point
	if acked < wantAcks-1 {
		t.Fatalf("child acknowledged only %d batches", acked+1)
	}

	s := open(t, Options{Dir: dir})
	ctx := context.Background()
	for i := 0; i <= acked; i++ {
		for _, p := range crashBatch(i) {
			b, err := s.History(ctx, p.Sensor, time.UnixMilli(p.TS), time.UnixMilli(p.TS+1), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 1 || b[0].Mean != p.Value {
				t.Fatalf("acknowledged batch %d: %s at %d: got %+v, want %v", i, p.Sensor, p.TS, b, p.Value)
			}
		}
	}
	t.Logf("all %d acknowledged batches (%d points) survived SIGKILL", acked+1, (acked+1)*(crashSensors+1))
	// The store works on after the crash: appending the acknowledged batches
	// again (what a gateway's replay does) is all duplicates.
	for i := 0; i <= acked; i++ {
		mustAppend(t, s, crashBatch(i)...)
	}
	if st := s.Stats(); st.Stored != 0 {
		t.Errorf("replay after the crash stored %d points again", st.Stored)
	}
}

// TestAppendFsyncs checks that an acknowledged Append has fsynced the log,
// and that a no-sync store (benchmarks only) does not.
func TestAppendFsyncs(t *testing.T) {
	s := open(t, Options{})
	mustAppend(t, s, crashBatch(0)...)
	mustAppend(t, s, crashBatch(1)...) // out-of-order: WAL and WBL
	if got := s.Stats().Syncs; got != 2 {
		t.Errorf("%d fsyncs after 2 sequential Appends, want 2", got)
	}
	// Both logs were seen by the syncer: their segment 0 is synced.
	if s.syncer.last != [2]int{0, 0} {
		t.Errorf("synced segments %v, want WAL and WBL segment 0", s.syncer.last)
	}

	n := open(t, Options{noSync: true})
	mustAppend(t, n, crashBatch(0)...)
	if got := n.Stats().Syncs; got != 0 {
		t.Errorf("no-sync store fsynced %d times", got)
	}
}
