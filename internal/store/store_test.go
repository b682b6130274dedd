package store

import (
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"hazardwatch/internal/model"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir) // never returns
	}
	// No goroutine of ours or of the TSDB may outlive Close.
	goleak.VerifyTestMain(m)
}

// base is an arbitrary reading time; tests place their points around it.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func ms(t time.Time) int64 { return t.UnixMilli() }

func open(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustAppend(t testing.TB, s *Store, pts ...Point) {
	t.Helper()
	if err := s.Append(context.Background(), pts); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func history(t testing.TB, s *Store, sensor string, from, to time.Time, step time.Duration) []Bucket {
	t.Helper()
	b, err := s.History(context.Background(), sensor, from, to, step)
	if err != nil {
		t.Fatalf("History(%s, %s, %s, %s): %v", sensor, from, to, step, err)
	}
	if b == nil {
		t.Fatalf("History(%s) returned nil, want a non-nil slice", sensor)
	}
	return b
}

// all is a range that holds every test point.
func all(t testing.TB, s *Store, sensor string) []Bucket {
	t.Helper()
	return history(t, s, sensor, base.Add(-30*24*time.Hour), base.Add(30*24*time.Hour), 0)
}

func raw(ts time.Time, v float64) Bucket {
	return Bucket{TS: ms(ts), Mean: v, Min: v, Max: v, Count: 1}
}

func equalBuckets(t testing.TB, got, want []Bucket) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("buckets:\n got %+v\nwant %+v", got, want)
	}
}

func TestAppendAndRawHistory(t *testing.T) {
	s := open(t, Options{})
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	mustAppend(t, s,
		Point{Sensor: "T101", TS: ms(at(0)), Value: 20.5, Quality: model.Good},
		Point{Sensor: "T101", TS: ms(at(1)), Value: 21, Quality: model.Uncertain},
		Point{Sensor: "T101", TS: ms(at(2)), Value: 999, Quality: model.Bad},        // a value, but bad: not history
		Point{Sensor: "T101", TS: ms(at(3)), Value: math.NaN(), Quality: model.Bad}, // no value: quality only
		Point{Sensor: "P201", TS: ms(at(0)), Value: 1.25},
	)
	mustAppend(t, s, Point{Sensor: "T101", TS: ms(at(4)), Value: 22})

	equalBuckets(t, all(t, s, "T101"), []Bucket{raw(at(0), 20.5), raw(at(1), 21), raw(at(4), 22)})
	equalBuckets(t, all(t, s, "P201"), []Bucket{raw(at(0), 1.25)})
	// to is exclusive, from inclusive.
	equalBuckets(t, history(t, s, "T101", at(1), at(4), 0), []Bucket{raw(at(1), 21)})

	if st := s.Stats(); st.Stored != 6 || st.Duplicates != 0 || st.TooOld != 0 || st.Invalid != 0 {
		t.Errorf("Stats = %+v, want 6 stored and nothing else", st)
	}
}

func TestHistoryBucketsAlignedToEpoch(t *testing.T) {
	s := open(t, Options{})
	// 12:00:59.900 and 12:01:00.100 are 200 ms apart but in two 1-minute
	// buckets; 12:00:00.000 opens the first one.
	t0 := base                                            // 12:00:00.000
	t1 := base.Add(59*time.Second + 900*time.Millisecond) // 12:00:59.900
	t2 := base.Add(60*time.Second + 100*time.Millisecond) // 12:01:00.100
	t3 := base.Add(2*time.Minute + 30*time.Second)        // 12:02:30
	mustAppend(t, s,
		Point{Sensor: "L1", TS: ms(t0), Value: 1},
		Point{Sensor: "L1", TS: ms(t1), Value: 4},
		Point{Sensor: "L1", TS: ms(t2), Value: 10},
		Point{Sensor: "L1", TS: ms(t3), Value: -2, Quality: model.Uncertain},
	)
	mustAppend(t, s,
		Point{Sensor: "L1", TS: ms(t3.Add(time.Second)), Value: 100, Quality: model.Bad}, // left out
		Point{Sensor: "L1", TS: ms(t3.Add(2 * time.Second)), Value: 6},
	)
	minute := func(m int) int64 { return ms(base.Add(time.Duration(m) * time.Minute)) }

	cases := []struct {
		name     string
		from, to time.Time
		step     time.Duration
		want     []Bucket
	}{
		{"1m", base.Add(-time.Hour), base.Add(time.Hour), time.Minute, []Bucket{
			{TS: minute(0), Mean: 2.5, Min: 1, Max: 4, Count: 2},
			{TS: minute(1), Mean: 10, Min: 10, Max: 10, Count: 1},
			{TS: minute(2), Mean: 2, Min: -2, Max: 6, Count: 2},
		}},
		{"1h, all in one", base.Add(-time.Hour), base.Add(time.Hour), time.Hour, []Bucket{
			{TS: minute(0), Mean: 19.0 / 5, Min: -2, Max: 10, Count: 5},
		}},
		// The first bucket is cut by from: it keeps its aligned start
		// (12:00) and holds only 12:00:59.900.
		{"from inside a bucket", t0.Add(30 * time.Second), t2.Add(time.Millisecond), time.Minute, []Bucket{
			{TS: minute(0), Mean: 4, Min: 4, Max: 4, Count: 1},
			{TS: minute(1), Mean: 10, Min: 10, Max: 10, Count: 1},
		}},
		// 7 s does not divide a minute: buckets start at multiples of 7 s
		// since 1970 (12:00:00 is 1740830400 s, 12:00:55 is a multiple of 7),
		// not at from, and here :59.900 and :00.100 share one.
		{"7s", t0, t2.Add(time.Second), 7 * time.Second, []Bucket{
			{TS: ms(base.Add(-time.Second)), Mean: 1, Min: 1, Max: 1, Count: 1},
			{TS: ms(base.Add(55 * time.Second)), Mean: 7, Min: 4, Max: 10, Count: 2},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := history(t, s, "L1", c.from, c.to, c.step)
			equalBuckets(t, got, c.want)
			for _, b := range got {
				if b.TS%c.step.Milliseconds() != 0 {
					t.Errorf("bucket %d not aligned to %s from the epoch", b.TS, c.step)
				}
			}
		})
	}
}

func TestHistoryEmptyAndBadRanges(t *testing.T) {
	s := open(t, Options{})
	mustAppend(t, s, Point{Sensor: "F1", TS: ms(base), Value: 3})
	for name, c := range map[string]struct {
		sensor   string
		from, to time.Time
		step     time.Duration
	}{
		"range before the data": {"F1", base.Add(-2 * time.Hour), base.Add(-time.Hour), time.Minute},
		"range after the data":  {"F1", base.Add(time.Millisecond), base.Add(time.Hour), 0},
		"empty range":           {"F1", base, base, 0},
		"unknown sensor":        {"nope", base.Add(-time.Hour), base.Add(time.Hour), time.Minute},
	} {
		if got := history(t, s, c.sensor, c.from, c.to, c.step); len(got) != 0 {
			t.Errorf("%s: %+v, want empty", name, got)
		}
	}
	for name, c := range map[string]struct {
		from, to time.Time
		step     time.Duration
	}{
		"to before from":  {base, base.Add(-time.Second), 0},
		"negative step":   {base, base.Add(time.Hour), -time.Minute},
		"sub-millisecond": {base, base.Add(time.Hour), 1500 * time.Microsecond},
	} {
		if _, err := s.History(context.Background(), "F1", c.from, c.to, c.step); !errors.Is(err, ErrBadRange) {
			t.Errorf("%s: err = %v, want ErrBadRange", name, err)
		}
	}
}

// latestCases are the quality encodings Latest must decode (package doc).
var latestCases = []struct {
	sensor string
	pts    []Point
	want   Point
}{
	{"good", []Point{{TS: 1, Value: 5}, {TS: 2, Value: 6}}, Point{TS: 2, Value: 6}},
	{"bad-no-value", []Point{{TS: 1, Value: 5}, {TS: 2, Value: math.NaN(), Quality: model.Bad}}, Point{TS: 2, Value: math.NaN(), Quality: model.Bad}},
	{"uncertain-value", []Point{{TS: 1, Value: 5, Quality: model.Bad}, {TS: 2, Value: 7, Quality: model.Uncertain}}, Point{TS: 2, Value: 7, Quality: model.Uncertain}},
	{"good-after-bad", []Point{{TS: 1, Value: math.NaN(), Quality: model.Bad}, {TS: 2, Value: 8}}, Point{TS: 2, Value: 8}},
	// An out-of-order point does not replace the newest.
	{"ooo-older", []Point{{TS: 5, Value: 1}, {TS: 3, Value: 2, Quality: model.Bad}}, Point{TS: 5, Value: 1}},
}

func latestPoints() []Point {
	var pts []Point
	for _, c := range latestCases {
		for _, p := range c.pts {
			p.Sensor = c.sensor
			p.TS = ms(base) + p.TS*1000
			pts = append(pts, p)
		}
	}
	return pts
}

func checkLatest(t *testing.T, s *Store) {
	t.Helper()
	for _, c := range latestCases {
		got, ok, err := s.Latest(context.Background(), c.sensor)
		want := c.want
		want.Sensor, want.TS = c.sensor, ms(base)+want.TS*1000
		if err != nil || !ok || got.Sensor != want.Sensor || got.TS != want.TS || got.Quality != want.Quality ||
			math.Float64bits(got.Value) != math.Float64bits(want.Value) && !(math.IsNaN(got.Value) && math.IsNaN(want.Value)) {
			t.Errorf("Latest(%s) = %+v, %v, %v; want %+v", c.sensor, got, ok, err, want)
		}
	}
	if p, ok, err := s.Latest(context.Background(), "never-seen"); ok || err != nil {
		t.Errorf("Latest(never-seen) = %+v, %v, %v; want not ok", p, ok, err)
	}
}

func TestLatest(t *testing.T) {
	s := open(t, Options{})
	for _, p := range latestPoints() {
		mustAppend(t, s, p) // one by one, so "ooo-older" really arrives late
	}
	checkLatest(t, s)
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	for _, p := range latestPoints() {
		mustAppend(t, s, p)
	}
	before := all(t, s, "uncertain-value")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), latestPoints()); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}

	s = open(t, Options{Dir: dir})
	checkLatest(t, s) // from the TSDB this time: the cache is empty
	equalBuckets(t, all(t, s, "uncertain-value"), before)
	// The whole replay again is all duplicates, recognised after the restart.
	mustAppend(t, s, latestPoints()...)
	if st := s.Stats(); st.Stored != 0 || st.Duplicates != uint64(len(latestPoints())) {
		t.Errorf("replay after restart: Stats = %+v, want %d duplicates", st, len(latestPoints()))
	}
}

func TestOutOfOrderWindow(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir}) // default window: 7 days
	mustAppend(t, s, Point{Sensor: "G1", TS: ms(base), Value: 1})

	sixDays := base.Add(-6 * 24 * time.Hour)
	mustAppend(t, s, Point{Sensor: "G1", TS: ms(sixDays), Value: 2}, Point{Sensor: "G2", TS: ms(sixDays), Value: 3})

	tooOld := base.Add(-7*24*time.Hour - time.Minute)
	err := s.Append(context.Background(), []Point{
		{Sensor: "G1", TS: ms(tooOld), Value: 4},
		{Sensor: "G1", TS: ms(sixDays.Add(time.Second)), Value: 5}, // same batch, inside the window
	})
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrTooOld) || len(re.Refused) != 1 || re.Refused[0].Point.TS != ms(tooOld) {
		t.Fatalf("Append 7 days + 1 min back: err = %v, want a RefusedError with ErrTooOld for that point", err)
	}
	t.Logf("the refusal reads: %v", err)
	if st := s.Stats(); st.TooOld != 1 || st.Stored != 4 {
		t.Errorf("Stats = %+v, want 1 too old, 4 stored", st)
	}
	want := []Bucket{raw(sixDays, 2), raw(sixDays.Add(time.Second), 5), raw(base, 1)}
	equalBuckets(t, all(t, s, "G1"), want)
	if p, _, _ := s.Latest(context.Background(), "G1"); p.TS != ms(base) {
		t.Errorf("Latest after late data = %+v, want the reading at base", p)
	}

	// The window is measured from the newest stored reading, which a
	// restart restores from the log.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Dir: dir})
	if err := s.Append(context.Background(), []Point{{Sensor: "G3", TS: ms(tooOld), Value: 6}}); !errors.Is(err, ErrTooOld) {
		t.Errorf("too old after restart: err = %v, want ErrTooOld", err)
	}
	mustAppend(t, s, Point{Sensor: "G3", TS: ms(sixDays), Value: 7})
	equalBuckets(t, all(t, s, "G1"), want)
	equalBuckets(t, all(t, s, "G3"), []Bucket{raw(sixDays, 7)})
}

func TestDuplicatesFirstWriteWins(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	ctx := context.Background()
	at := func(sec int) int64 { return ms(base) + int64(sec)*1000 }

	batch := []Point{{Sensor: "D", TS: at(0), Value: 1}, {Sensor: "D", TS: at(1), Value: 2}, {Sensor: "D", TS: at(2), Value: 3}}
	mustAppend(t, s, batch...)
	steps := []struct {
		name string
		pts  []Point
		dups uint64
	}{
		{"same batch replayed", batch, 3},
		// The TSDB alone would fail this one (ErrDuplicateSampleForTimestamp).
		{"other value at the newest ts", []Point{{Sensor: "D", TS: at(2), Value: 30}}, 1},
		// The TSDB alone would add this to its out-of-order head and
		// answer either value.
		{"other value at an older ts", []Point{{Sensor: "D", TS: at(0), Value: 10}}, 1},
		{"bad quality at a stored ts", []Point{{Sensor: "D", TS: at(1), Value: math.NaN(), Quality: model.Bad}}, 1},
		{"twice in one new batch", []Point{{Sensor: "D", TS: at(3), Value: 4}, {Sensor: "D", TS: at(3), Value: 40}}, 1},
	}
	var dups uint64
	for _, st := range steps {
		if err := s.Append(ctx, st.pts); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		dups += st.dups
		if got := s.Stats().Duplicates; got != dups {
			t.Errorf("%s: %d duplicates counted, want %d", st.name, got, dups)
		}
	}
	want := []Bucket{raw(time.UnixMilli(at(0)), 1), raw(time.UnixMilli(at(1)), 2), raw(time.UnixMilli(at(2)), 3), raw(time.UnixMilli(at(3)), 4)}
	equalBuckets(t, all(t, s, "D"), want)

	// Once the first values are in a block on disk, a replay still changes nothing.
	mustAppend(t, s, Point{Sensor: "D", TS: ms(base.Add(5 * time.Hour)), Value: 5}) // makes the head compactable
	if err := s.db.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.db.Blocks()) == 0 {
		t.Fatal("no block after Compact: the test does not test blocks")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Dir: dir})
	mustAppend(t, s, Point{Sensor: "D", TS: at(1), Value: 20}, Point{Sensor: "D", TS: at(3), Value: 40})
	want = append(want, raw(base.Add(5*time.Hour), 5))
	equalBuckets(t, all(t, s, "D"), want)
	if got := s.Stats().Duplicates; got != 2 {
		t.Errorf("replay into a block: %d duplicates, want 2", got)
	}
}

func TestRetention(t *testing.T) {
	const retention = 3 * time.Hour
	s := open(t, Options{Retention: retention, OutOfOrder: time.Hour})
	// In service the TSDB's own loop compacts as soon as the head spans 1.5
	// blocks, and applies retention then and every minute. Here it would
	// race with the count before compaction, so the test compacts itself.
	s.db.DisableCompactions()
	ctx := context.Background()
	start, end := appendHours(t, s, "R", 12)
	if n := len(all(t, s, "R")); n != 12*60 {
		t.Fatalf("%d points before compaction, want %d", n, 12*60)
	}

	// What the background loop does once the head spans 1.5 blocks: cut
	// 2-hour blocks, then delete blocks whose end is Retention older than
	// the newest block's end.
	if err := s.db.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// Blocks [0,2) … [8,10) h are written; the newest ends at 10 h, so the
	// blocks ending at or before 7 h go: everything before 6 h.
	gone := start.Add(6 * time.Hour)
	if got := history(t, s, "R", start, gone, 0); len(got) != 0 {
		t.Errorf("%d points older than %s survived retention (first %+v)", len(got), gone.Sub(start), got[0])
	}
	if got := len(history(t, s, "R", gone, end, 0)); got != 6*60 {
		t.Errorf("%d points of the last 6 h, want %d", got, 6*60)
	}
	// Never less than Retention is kept.
	if got := len(history(t, s, "R", end.Add(-retention), end, 0)); got != int(retention/time.Minute) {
		t.Errorf("%d points in the last %s, want %d", got, retention, int(retention/time.Minute))
	}
	for _, b := range s.db.Blocks() {
		if b.Meta().MaxTime <= ms(gone) {
			t.Errorf("block %s ending %s is past retention", b.Meta().ULID, time.UnixMilli(b.Meta().MaxTime).UTC())
		}
	}
}

func TestRefusesInvalidPointsKeepsTheRest(t *testing.T) {
	s := open(t, Options{})
	err := s.Append(context.Background(), []Point{
		{Sensor: "", TS: ms(base), Value: 1},
		{Sensor: "V", TS: ms(base), Value: math.Inf(1)},
		{Sensor: "V", TS: ms(base), Value: 1, Quality: 7},
		{Sensor: "V", TS: ms(base) + 1, Value: 2},
	})
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrInvalidPoint) || errors.Is(err, ErrTooOld) || len(re.Refused) != 3 || re.Total != 4 {
		t.Fatalf("err = %v, want 3 of 4 refused as invalid", err)
	}
	equalBuckets(t, all(t, s, "V"), []Bucket{raw(time.UnixMilli(ms(base)+1), 2)})
	if st := s.Stats(); st.Invalid != 3 || st.Stored != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCancelledContextStoresNothing(t *testing.T) {
	s := open(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, []Point{{Sensor: "C", TS: ms(base), Value: 1}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append: %v, want context.Canceled", err)
	}
	if _, err := s.History(ctx, "C", base, base.Add(time.Hour), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("History: %v", err)
	}
	if got := all(t, s, "C"); len(got) != 0 {
		t.Errorf("cancelled Append stored %+v", got)
	}
}

func TestConcurrentAppendAndQuery(t *testing.T) {
	s := open(t, Options{})
	const writers, batches = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			sensor := string(rune('a' + w))
			for i := range batches {
				if err := s.Append(context.Background(), []Point{{Sensor: sensor, TS: ms(base) + int64(i)*1000, Value: float64(i)}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.History(context.Background(), sensor, base, base.Add(time.Hour), time.Minute); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		if n := len(all(t, s, string(rune('a'+w)))); n != batches {
			t.Errorf("writer %d: %d points, want %d", w, n, batches)
		}
	}
	st := s.Stats()
	if st.Syncs == 0 || st.Syncs > writers*batches {
		t.Errorf("%d fsyncs for %d commits", st.Syncs, writers*batches)
	}
	t.Logf("%d commits, %d fsyncs", writers*batches, st.Syncs)
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Error("Open without Dir succeeded")
	}
	if _, err := Open(Options{Dir: t.TempDir(), Retention: 24 * time.Hour, OutOfOrder: 48 * time.Hour}); err == nil {
		t.Error("Open with retention below the out-of-order window succeeded")
	}
	s := open(t, Options{})
	if s.opts.Retention != 30*24*time.Hour || s.opts.OutOfOrder != 7*24*time.Hour {
		t.Errorf("defaults: retention %s, out-of-order %s", s.opts.Retention, s.opts.OutOfOrder)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := s.Latest(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Latest after Close: %v", err)
	}
	if _, err := s.History(context.Background(), "x", base, base, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("History after Close: %v", err)
	}
}

// A sensor silent for longer than the head holds loses its series in the
// head; the store's cached series reference is then stale and the TSDB must
// fall back to the labels.
func TestSensorSilentForBlocksComesBack(t *testing.T) {
	s := open(t, Options{})
	s.db.DisableCompactions()
	mustAppend(t, s, Point{Sensor: "quiet", TS: ms(base), Value: 1})
	for m := 0; m <= 8*60; m += 10 {
		mustAppend(t, s, Point{Sensor: "busy", TS: ms(base.Add(time.Duration(m) * time.Minute)), Value: float64(m)})
	}
	before := s.db.Head().NumSeries()
	if err := s.db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := s.db.Head().NumSeries(); after >= before {
		t.Fatalf("head still has %d series (had %d): the quiet one was not dropped, the test tests nothing", after, before)
	}
	later := base.Add(8*time.Hour + time.Second)
	mustAppend(t, s, Point{Sensor: "quiet", TS: ms(later), Value: 2})
	equalBuckets(t, all(t, s, "quiet"), []Bucket{raw(base, 1), raw(later, 2)})
}

// TestUnsortedBatch: one batch may hold a sensor's readings out of order
// (live readings and a gateway's replay of older ones handled together):
// every one is stored.
func TestUnsortedBatch(t *testing.T) {
	s := open(t, Options{OutOfOrder: time.Hour})
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	mustAppend(t, s, Point{Sensor: "T101", TS: ms(at(0)), Value: 1})
	mustAppend(t, s,
		Point{Sensor: "T101", TS: ms(at(30)), Value: 30}, // live
		Point{Sensor: "P201", TS: ms(at(30)), Value: 30},
		Point{Sensor: "T101", TS: ms(at(10)), Value: 10}, // replayed
		Point{Sensor: "T101", TS: ms(at(20)), Value: 20},
		Point{Sensor: "P201", TS: ms(at(5)), Value: 5},
		Point{Sensor: "T101", TS: ms(at(-10)), Value: -10}, // behind the stored one too
	)
	equalBuckets(t, all(t, s, "T101"), []Bucket{raw(at(-10), -10), raw(at(0), 1), raw(at(10), 10), raw(at(20), 20), raw(at(30), 30)})
	equalBuckets(t, all(t, s, "P201"), []Bucket{raw(at(5), 5), raw(at(30), 30)})
	if st := s.Stats(); st.Stored != 7 || st.Duplicates != 0 || st.TooOld != 0 {
		t.Errorf("Stats = %+v, want 7 stored", st)
	}
}
