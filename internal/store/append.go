package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"hazardwatch/internal/model"
)

// RefusedError is returned by Append when some points of a batch could not
// be stored and never will be (ErrTooOld, ErrInvalidPoint). The rest of the
// batch IS committed and durable: a caller counts the refusals and moves on
// (acknowledges the batch); retrying would refuse them again. errors.Is
// reports each distinct cause.
type RefusedError struct {
	Total   int // points in the batch
	Refused []Refusal
}

// Refusal is one refused point and why.
type Refusal struct {
	Point Point
	Err   error
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: %d of %d points refused", len(e.Refused), e.Total)
	for i, r := range e.Refused {
		if i == 3 {
			fmt.Fprintf(&b, "; …")
			break
		}
		fmt.Fprintf(&b, "; %s at %s: %v", r.Point.Sensor, time.UnixMilli(r.Point.TS).UTC().Format(time.RFC3339Nano), r.Err)
	}
	return b.String()
}

// Unwrap returns the distinct causes, so errors.Is(err, ErrTooOld) works.
func (e *RefusedError) Unwrap() []error {
	var errs []error
	for _, r := range e.Refused {
		if !slices.ContainsFunc(errs, func(x error) bool { return errors.Is(r.Err, x) }) {
			errs = append(errs, rootCause(r.Err))
		}
	}
	return errs
}

func rootCause(err error) error {
	for _, s := range []error{ErrTooOld, ErrInvalidPoint} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// Point states within one Append.
const (
	stNew     uint8 = iota // newer than anything stored for its sensor
	stOld                  // at or before the sensor's newest: may be a duplicate
	stDup                  // (sensor, ts) already stored or earlier in the batch
	stRefused              // invalid or too old
	stStored               // appended to the TSDB appender
)

type batchKey struct {
	s  *series
	ts int64
}

// batchScratch is reused by every Append (under appendMu) so a batch costs
// no allocation for bookkeeping.
type batchScratch struct {
	state []uint8
	ser   []*series
	old   []int
	seen  map[batchKey]struct{}
}

// Append stores one batch in one TSDB commit and returns when it is durable
// (in the fsynced write-ahead log): an Append that returned nil, or a
// *RefusedError, survives a crash of the process or the machine.
//
// It is idempotent. A (sensor, ts) already stored, or seen earlier in the
// same batch, is ignored without error and counted in Stats.Duplicates:
// the first write wins, even when the value or quality differs. The store
// decides this before the TSDB sees the point because the TSDB alone would
// fail a different value at a series' newest timestamp, keep a second copy
// of an older one for the query's merge to choose between, and add a late
// "bad" quality sample to a stored good value, hiding it from History.
// Points older than the out-of-order window and invalid points are refused
// and reported in a *RefusedError while the rest is stored. Any other error
// means nothing of the batch was stored; the call may be retried.
//
// ctx is honoured until the commit; once the batch is committed Append waits
// for its fsync regardless, so a retry after a cancel finds duplicates, not
// a half-written batch.
func (s *Store) Append(ctx context.Context, pts []Point) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: append: %w", err)
	}
	if len(pts) == 0 {
		return nil
	}
	refused, err := s.appendBatch(ctx, pts)
	if err != nil {
		return err
	}
	if !s.opts.noSync {
		if err := s.syncer.durable(); err != nil {
			s.logger.Error("history store: fsync failed; appends refused until restart", "err", err)
			return err
		}
	}
	if len(refused) > 0 {
		return &RefusedError{Total: len(pts), Refused: refused}
	}
	return nil
}

// appendBatch does everything up to and including the commit, under appendMu.
func (s *Store) appendBatch(ctx context.Context, pts []Point) ([]Refusal, error) {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if err := s.syncer.failedErr(); err != nil {
		return nil, err
	}

	sc := &s.scratch
	sc.state = slices.Grow(sc.state[:0], len(pts))[:len(pts)]
	sc.ser = slices.Grow(sc.ser[:0], len(pts))[:len(pts)]
	sc.old = sc.old[:0]
	if sc.seen == nil {
		sc.seen = make(map[batchKey]struct{}, len(pts))
	}
	defer clear(sc.seen)
	defer clear(sc.ser) // do not keep series alive through the scratch space

	var refused []Refusal
	refuse := func(i int, err error) {
		sc.state[i] = stRefused
		refused = append(refused, Refusal{Point: pts[i], Err: err})
	}

	// Classify. A point newer than its sensor's newest stored point cannot be
	// a duplicate of stored data; only older ones need a look at the TSDB.
	for i := range pts {
		p := &pts[i]
		if err := validate(p); err != nil {
			refuse(i, err)
			continue
		}
		e, err := s.seriesFor(ctx, p.Sensor)
		if err != nil {
			return nil, err
		}
		sc.ser[i] = e
		k := batchKey{e, p.TS}
		if _, dup := sc.seen[k]; dup {
			sc.state[i] = stDup
			continue
		}
		sc.seen[k] = struct{}{}
		if p.TS > e.maxTS() {
			sc.state[i] = stNew
		} else {
			sc.state[i] = stOld
			sc.old = append(sc.old, i)
		}
	}
	if len(sc.old) > 0 {
		if err := s.markStored(ctx, pts, sc); err != nil {
			return nil, err
		}
	}

	app := s.db.AppenderV2(ctx)
	rollback := func(err error) ([]Refusal, error) {
		if rerr := app.Rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("store: rollback: %w", rerr))
		}
		return nil, err
	}
	dups, stored := 0, 0
	for i := range pts {
		switch sc.state[i] {
		case stDup:
			dups++
			continue
		case stRefused:
			continue
		}
		p, e := &pts[i], sc.ser[i]
		err := s.appendPoint(app, e, p)
		switch {
		case err == nil:
			sc.state[i] = stStored
			stored++
		case errors.Is(err, storage.ErrTooOldSample), errors.Is(err, storage.ErrOutOfBounds):
			refuse(i, fmt.Errorf("%w (%s behind the newest stored reading): %w",
				ErrTooOld, s.opts.OutOfOrder, err))
		case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
			// Cannot happen with one writer and the check above; kept so
			// that a replay never fails if it does.
			sc.state[i] = stDup
			dups++
		default:
			return rollback(fmt.Errorf("store: append %s at %d: %w", p.Sensor, p.TS, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return rollback(fmt.Errorf("store: append: %w", err))
	}
	if stored == 0 {
		// All duplicates or refused: nothing to write, nothing new to fsync
		// (Append still waits for a sync in flight that covers the originals).
		if _, err := rollback(nil); err != nil {
			return nil, err
		}
	} else {
		if err := app.Commit(); err != nil {
			return nil, fmt.Errorf("store: commit: %w", err)
		}
		s.syncer.committed.Add(1)
	}

	for i := range pts {
		if e := sc.ser[i]; sc.state[i] == stStored && pts[i].TS > e.maxTS() {
			e.latest, e.hasLatest = pts[i], true
		}
	}
	s.stored.Add(uint64(stored))
	s.duplicates.Add(uint64(dups))
	for _, r := range refused {
		if errors.Is(r.Err, ErrTooOld) {
			s.tooOld.Add(1)
		} else {
			s.invalid.Add(1)
		}
	}
	if len(refused) > 0 {
		// One line per batch, not per point: a replay of stale data could
		// otherwise flood the log.
		s.logger.Warn("history store refused readings", "refused", len(refused), "batch", len(pts),
			"first_sensor", refused[0].Point.Sensor, "first_ts", refused[0].Point.TS, "reason", refused[0].Err)
	}
	return refused, nil
}

// appendPoint adds a point's value and, when needed, quality sample.
func (s *Store) appendPoint(app storage.AppenderV2, e *series, p *Point) error {
	hasValue := !math.IsNaN(p.Value)
	if hasValue {
		ref, err := app.Append(e.valueRef, e.valueLabels, 0, p.TS, p.Value, nil, nil, storage.AOptions{})
		if err != nil {
			return err
		}
		// The reference skips hashing the labels next time. If the head
		// drops the series (silent for a whole block), the TSDB ignores the
		// stale reference and recreates the series from the labels.
		e.valueRef = ref
	}
	if p.Quality != model.Good || !hasValue {
		ref, err := app.Append(e.qualityRef, e.qualityLabels, 0, p.TS, float64(p.Quality), nil, nil, storage.AOptions{})
		if err != nil {
			return err
		}
		e.qualityRef = ref
	}
	return nil
}

func validate(p *Point) error {
	switch {
	case p.Sensor == "":
		return fmt.Errorf("%w: empty sensor id", ErrInvalidPoint)
	case !utf8.ValidString(p.Sensor):
		return fmt.Errorf("%w: sensor id is not UTF-8", ErrInvalidPoint)
	case math.IsInf(p.Value, 0):
		return fmt.Errorf("%w: infinite value", ErrInvalidPoint)
	case p.Quality > model.Bad:
		return fmt.Errorf("%w: quality %d", ErrInvalidPoint, p.Quality)
	}
	return nil
}

// seriesFor returns the sensor's cache entry, loading its newest stored point
// from the TSDB the first time the sensor is seen after Open. Caller holds
// appendMu.
func (s *Store) seriesFor(ctx context.Context, id string) (*series, error) {
	if e, ok := s.series[id]; ok {
		return e, nil
	}
	p, ok, err := s.loadLatest(ctx, id)
	if err != nil {
		return nil, err
	}
	e := newSeries(id)
	e.latest, e.hasLatest = p, ok
	s.series[id] = e
	return e, nil
}

// markStored looks the batch's older points up in the TSDB and marks those
// whose (sensor, ts) is stored as duplicates: one querier for the batch, one
// Select per sensor, one forward Seek per point.
func (s *Store) markStored(ctx context.Context, pts []Point, sc *batchScratch) error {
	old := sc.old
	slices.SortFunc(old, func(a, b int) int {
		if c := strings.Compare(pts[a].Sensor, pts[b].Sensor); c != 0 {
			return c
		}
		return compareInt64(pts[a].TS, pts[b].TS)
	})
	mint, maxt := int64(math.MaxInt64), int64(math.MinInt64)
	for _, i := range old {
		mint, maxt = min(mint, pts[i].TS), max(maxt, pts[i].TS)
	}
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return fmt.Errorf("store: duplicate check: %w", err)
	}
	defer q.Close()

	for start := 0; start < len(old); {
		end := start + 1
		for end < len(old) && pts[old[end]].Sensor == pts[old[start]].Sensor {
			end++
		}
		group := old[start:end]
		start = end

		ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, labelSensor, pts[group[0]].Sensor))
		for ss.Next() {
			it := ss.At().Iterator(nil)
			for _, i := range group {
				if it.Seek(pts[i].TS) == chunkenc.ValNone { // past the end
					break
				}
				if it.AtT() == pts[i].TS {
					sc.state[i] = stDup
				}
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("store: duplicate check %s: %w", pts[group[0]].Sensor, err)
			}
		}
		if err := ss.Err(); err != nil {
			return fmt.Errorf("store: duplicate check %s: %w", pts[group[0]].Sensor, err)
		}
	}
	return nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
