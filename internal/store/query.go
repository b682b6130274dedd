package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"hazardwatch/internal/model"
)

// ErrBadRange is returned by History for a range that ends before it starts
// or a step that is negative or not a whole number of milliseconds.
var ErrBadRange = errors.New("store: bad history range")

// maxPrealloc bounds the buckets History allocates up front; the slice still
// grows past it when the data is there.
const maxPrealloc = 4096

// History returns the sensor's readings in [from, to).
//
// With step 0 every stored value is a bucket of count 1. With step > 0
// values are grouped into buckets aligned to the step from the Unix epoch
// (SPEC §3: a bucket starts at a multiple of step since 1970-01-01T00:00Z,
// so a 1-day step starts at 08:00 Beijing time); a bucket cut by from or to
// holds only the values inside the range. Buckets without values are left
// out.
//
// Only good and uncertain values count: a bad reading is a failed
// measurement (timeout, device fault), and folding its value into a mean or
// a maximum would draw a spike that never happened. Readings without a value
// have nothing to count. Latest still reports bad readings.
//
// An empty result is an empty, non-nil slice.
func (s *Store) History(ctx context.Context, sensor string, from, to time.Time, step time.Duration) ([]Bucket, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: history %s: %w", sensor, err)
	}
	if step < 0 || step%time.Millisecond != 0 {
		return nil, fmt.Errorf("%w: step %s", ErrBadRange, step)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("%w: to %s before from %s", ErrBadRange, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	mint, maxt := from.UnixMilli(), to.UnixMilli()-1 // the TSDB's ranges are closed
	out := []Bucket{}
	if maxt < mint {
		return out, nil
	}
	stepMs := step.Milliseconds()
	if stepMs > 0 {
		out = make([]Bucket, 0, min((maxt-mint)/stepMs+1, maxPrealloc))
	}

	values, quality, err := s.selectSensor(ctx, sensor, mint, maxt)
	if err != nil {
		return nil, err
	}
	defer values.close()
	if values.it == nil {
		return out, nil
	}

	var (
		qit = quality.it // nil when the sensor never had a non-good reading in range
		sum float64
		n   int
	)
	for vt := values.it.Next(); vt != chunkenc.ValNone; vt = values.it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("store: history %s: %w", sensor, err)
			}
		}
		t, v := values.it.At()
		if qit != nil {
			if qit.Seek(t) == chunkenc.ValNone {
				qit = nil
			} else if qt, q := qit.At(); qt == t && model.Quality(q) == model.Bad {
				continue
			}
		}
		if stepMs == 0 {
			out = append(out, Bucket{TS: t, Mean: v, Min: v, Max: v, Count: 1})
			continue
		}
		start := floorDiv(t, stepMs) * stepMs
		if len(out) == 0 || out[len(out)-1].TS != start {
			if len(out) > 0 {
				out[len(out)-1].Mean = sum / float64(out[len(out)-1].Count)
			}
			out = append(out, Bucket{TS: start, Min: v, Max: v})
			sum = 0
		}
		b := &out[len(out)-1]
		sum += v
		b.Count++
		b.Min, b.Max = min(b.Min, v), max(b.Max, v)
	}
	if stepMs > 0 && len(out) > 0 {
		out[len(out)-1].Mean = sum / float64(out[len(out)-1].Count)
	}
	if err := values.it.Err(); err != nil {
		return nil, fmt.Errorf("store: history %s: %w", sensor, err)
	}
	if qit != nil {
		if err := qit.Err(); err != nil {
			return nil, fmt.Errorf("store: history %s: %w", sensor, err)
		}
	}
	return out, nil
}

// Latest returns the sensor's newest reading (by its own timestamp, not by
// arrival): its value (NaN when it had none) and quality, bad included.
// ok is false when nothing of the sensor is stored.
func (s *Store) Latest(ctx context.Context, sensor string) (Point, bool, error) {
	if err := s.acquire(); err != nil {
		return Point{}, false, err
	}
	defer s.release()
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	// The cache is exact: Append updates it under appendMu after each commit.
	if e, ok := s.series[sensor]; ok {
		return e.latest, e.hasLatest, nil
	}
	p, ok, err := s.loadLatest(ctx, sensor)
	if err != nil || !ok {
		// An unknown sensor is not cached: ids come from API callers too.
		return Point{}, false, err
	}
	e := newSeries(sensor)
	e.latest, e.hasLatest = p, true
	s.series[sensor] = e
	return p, true, nil
}

// loadLatest finds the sensor's newest stored reading in the TSDB. The
// iterators only go forward, so it reads windows ending at the newest data
// of the store, widening them until one has the sensor: a live sensor is
// found in the first, and only a sensor silent for days costs a full scan.
func (s *Store) loadLatest(ctx context.Context, sensor string) (Point, bool, error) {
	newest := s.db.Head().MaxTime()
	for _, b := range s.db.Blocks() {
		newest = max(newest, b.Meta().MaxTime-1)
	}
	for _, w := range []time.Duration{2 * time.Hour, 2 * 24 * time.Hour, 0} {
		mint := int64(math.MinInt64)
		if w > 0 && newest != math.MinInt64 {
			mint = newest - w.Milliseconds()
		}
		p, ok, err := s.lastIn(ctx, sensor, mint)
		if err != nil || ok {
			return p, ok, err
		}
		if mint == math.MinInt64 {
			break
		}
	}
	return Point{}, false, nil
}

// lastIn returns the newest reading of the sensor at or after mint.
func (s *Store) lastIn(ctx context.Context, sensor string, mint int64) (Point, bool, error) {
	values, quality, err := s.selectSensor(ctx, sensor, mint, math.MaxInt64)
	if err != nil {
		return Point{}, false, err
	}
	defer values.close()
	vt, v, vok, err := last(values.it)
	if err != nil {
		return Point{}, false, fmt.Errorf("store: latest %s: %w", sensor, err)
	}
	qt, q, qok, err := last(quality.it)
	if err != nil {
		return Point{}, false, fmt.Errorf("store: latest %s: %w", sensor, err)
	}
	if !vok && !qok {
		return Point{}, false, nil
	}
	// Decode the sparse quality series (package doc): a quality sample at the
	// newest timestamp says the quality, none says good; a reading with no
	// value sample there had no value.
	p := Point{Sensor: sensor, Value: math.NaN(), Quality: model.Good}
	switch {
	case vok && (!qok || vt > qt):
		p.TS, p.Value = vt, v
	case qok && (!vok || qt > vt):
		p.TS, p.Quality = qt, model.Quality(q)
	default: // same timestamp: a non-good reading with a value
		p.TS, p.Value, p.Quality = vt, v, model.Quality(q)
	}
	return p, true, nil
}

func last(it chunkenc.Iterator) (t int64, v float64, ok bool, err error) {
	if it == nil {
		return 0, 0, false, nil
	}
	for it.Next() != chunkenc.ValNone {
		t, v = it.At()
		ok = true
	}
	return t, v, ok, it.Err()
}

// sensorSeries is one of a sensor's two series within a querier.
type sensorSeries struct {
	it chunkenc.Iterator // nil when the series has no data in range
	q  storage.Querier   // set on the value half only; closes both
}

func (ss sensorSeries) close() {
	if ss.q != nil {
		_ = ss.q.Close() // a querier's Close only releases reads; nothing to report
	}
}

// selectSensor opens a querier over [mint, maxt] and returns iterators over
// the sensor's value and quality series. The caller closes values.
func (s *Store) selectSensor(ctx context.Context, sensor string, mint, maxt int64) (values, quality sensorSeries, err error) {
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		return values, quality, fmt.Errorf("store: query %s: %w", sensor, err)
	}
	values.q = q
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, labelSensor, sensor))
	for set.Next() {
		series := set.At()
		switch series.Labels().Get(labels.MetricName) {
		case metricValue:
			values.it = series.Iterator(nil)
		case metricQuality:
			quality.it = series.Iterator(nil)
		}
	}
	if err := set.Err(); err != nil {
		values.close()
		return sensorSeries{}, sensorSeries{}, fmt.Errorf("store: query %s: %w", sensor, err)
	}
	return values, quality, nil
}

// floorDiv rounds toward minus infinity, so buckets stay aligned to the
// epoch for times before 1970 too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
