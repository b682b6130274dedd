package store

import (
	"testing"
	"time"

	"hazardwatch/internal/poll"
)

// TestRetentionByItself: with nothing but appends, as in service, the
// TSDB's own loop cuts the head into blocks and deletes those past
// retention: nobody calls Compact. (TestRetention drives the same steps by
// hand, to check which readings go.)
func TestRetentionByItself(t *testing.T) {
	const retention = 3 * time.Hour
	s := open(t, Options{Retention: retention, OutOfOrder: time.Hour})
	start, end := appendHours(t, s, "R", 12)
	// Once the head spans more than 1.5 blocks of 2 h, the loop cuts blocks
	// [0,2) … [8,10) h and deletes those ending 3 h or more before the
	// newest block's end: everything before 6 h.
	gone := start.Add(6 * time.Hour)
	poll.Until(t, "the store to compact and prune by itself", time.Minute, func() bool {
		return len(history(t, s, "R", start, gone, 0)) == 0
	})
	if got := len(history(t, s, "R", gone, end, 0)); got != 6*60 {
		t.Errorf("%d readings of the last 6 h, want %d", got, 6*60)
	}
	blocks := s.db.Blocks()
	if len(blocks) != 2 || blocks[0].Meta().MinTime != ms(gone) || blocks[1].Meta().MaxTime != ms(start.Add(10*time.Hour)) {
		for _, b := range blocks {
			t.Logf("block %s – %s", time.UnixMilli(b.Meta().MinTime).UTC(), time.UnixMilli(b.Meta().MaxTime).UTC())
		}
		t.Errorf("%d blocks, want [6 h, 8 h) and [8 h, 10 h)", len(blocks))
	}
}

// appendHours appends hours of one reading a minute of sensor, in hourly
// batches, from a midnight; it returns the first reading's time and the
// end.
func appendHours(t *testing.T, s *Store, sensor string, hours int) (start, end time.Time) {
	t.Helper()
	start = base.Truncate(24 * time.Hour)
	end = start.Add(time.Duration(hours) * time.Hour)
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		var pts []Point
		for m := range 60 {
			pts = append(pts, Point{Sensor: sensor, TS: ms(h.Add(time.Duration(m) * time.Minute)), Value: float64(m)})
		}
		mustAppend(t, s, pts...)
	}
	return start, end
}
