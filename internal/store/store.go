// Package store owns the history of readings: the embedded store that the
// demo and small deployments use when no InfluxDB is configured (SPEC §5).
// It keeps every reading on disk for at least Options.Retention (30 days by
// default, DOMAIN.md: 原安监总局令第40号 Art. 13) and answers the history
// and latest-value questions of the HTTP API (SPEC §3).
//
// The storage engine is the Prometheus TSDB (github.com/prometheus/prometheus/tsdb):
// a write-ahead log, a compressed in-memory head, immutable 2-hour blocks on
// disk, time-based retention by whole blocks, and an out-of-order window for
// gateways replaying their store-and-forward queue (SPEC §2: up to 7 days,
// interleaved with live data).
//
// Layout: two series per sensor, both labelled only by the sensor id so that
// a sensor moved to another kind or enterprise in the plant files keeps one
// history:
//
//	reading_value{sensor="e01-T101-LT"}    the value, when the reading has one
//	reading_quality{sensor="e01-T101-LT"}  0/1/2 (SPEC §3 numbers), sparse
//
// The quality series is sparse: it has a sample only where the reading is not
// good, or has no value. A reading at ts is reconstructed as value = the value
// sample at ts (NaN when none) and quality = the quality sample at ts (good
// when none). At 1 Hz with mostly good readings this halves the disk and
// memory of a dense quality series, whose timestamps would cost as much as the
// value series' own.
//
// Durability: Append returns only after its batch is in the WAL and the WAL
// (and, for out-of-order samples, the WBL) has been fsynced; see sync.go.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"

	"hazardwatch/internal/model"
)

// Defaults of Options.
const (
	// DefaultRetention is the legal minimum for electronic records (DOMAIN.md).
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultOutOfOrder is the replay horizon of a gateway's store-and-forward
	// queue (SPEC §2), which is also ingest's stale_timestamp limit.
	DefaultOutOfOrder = 7 * 24 * time.Hour
)

// Series and label names. They are part of the on-disk format: renaming one
// orphans every stored reading.
const (
	metricValue   = "reading_value"
	metricQuality = "reading_quality"
	labelSensor   = "sensor"
)

// blockDuration is the TSDB's head chunk range and smallest block. Two hours
// is what the TSDB is tuned for; retention deletes whole blocks, so it is also
// the granularity of deletion.
const blockDuration = 2 * time.Hour

var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store: closed")
	// ErrTooOld marks a point older than the out-of-order window behind the
	// newest reading stored (of any sensor). Such a point can never be stored:
	// retrying is useless.
	ErrTooOld = errors.New("older than the out-of-order window")
	// ErrInvalidPoint marks a point without a sensor id, with an infinite
	// value or an unknown quality. Retrying is useless.
	ErrInvalidPoint = errors.New("invalid point")
	// ErrNotDurable is returned after an fsync of the log failed. The store
	// then refuses every further Append until it is reopened: on Linux a
	// failed fsync may drop the dirty pages and a second fsync would report
	// success for data that is gone.
	ErrNotDurable = errors.New("store: log not synced to disk")
)

// Options configures Open. Zero fields take the defaults.
type Options struct {
	// Dir holds the TSDB (wal/, wbl/, chunks_head/ and one folder per block).
	// Required. Only one Store may have it open at a time (a lock file says so).
	Dir string
	// Retention is how long readings are kept, measured back from the newest
	// reading on disk, not from the wall clock, so a store that stops
	// receiving data keeps what it has. Default 30 days. Data is deleted in
	// whole blocks (2 h, merged by compaction up to 54 h at the default), so
	// a reading stays at least Retention and at most about Retention + 2.5 days.
	Retention time.Duration
	// OutOfOrder is how far behind the newest stored reading (of any sensor)
	// a reading may be and still be stored. Default 7 days.
	OutOfOrder time.Duration
	// Logger gets the store's and the TSDB's logs. Default: discard.
	Logger *slog.Logger

	// noSync skips the fsync after each commit. Benchmarks only: it shows
	// what durability costs.
	noSync bool
}

// Point is one reading as the store keeps it.
type Point struct {
	Sensor string
	// TS is the reading's own time (the gateway's poll time), Unix ms.
	TS int64
	// Value is NaN when the reading has no value (a bad or uncertain reading
	// whose "v" was absent, SPEC §2): then only its quality is stored.
	Value   float64
	Quality model.Quality
}

// Bucket is one step of a history: the good and uncertain values whose time
// falls in [TS, TS+step). With step 0 each raw value is a bucket of count 1.
type Bucket struct {
	TS             int64 // Unix ms, a multiple of step
	Mean, Min, Max float64
	Count          int
}

// Stats counts what Append did since Open.
type Stats struct {
	Stored     uint64 // points committed (value, quality or both)
	Duplicates uint64 // points whose (sensor, ts) was already stored: ignored
	TooOld     uint64 // refused: older than the out-of-order window
	Invalid    uint64 // refused: ErrInvalidPoint
	Syncs      uint64 // fsyncs of the log (one may cover several Appends)
}

// Store is the embedded history store. Its methods are safe for concurrent use.
type Store struct {
	db     *tsdb.DB
	logger *slog.Logger
	opts   Options

	// closeMu is held shared by every call and exclusively by Close, so Close
	// waits for calls in flight and none starts on a closed TSDB.
	closeMu sync.RWMutex
	closed  bool

	// appendMu serialises appends and guards series and the batch scratch
	// space. One writer makes "first write wins" for a duplicate (sensor, ts)
	// exact; a batch of 60 points holds it for tens of microseconds, and the
	// fsync happens after it is released (group commit, see sync.go).
	appendMu sync.Mutex
	series   map[string]*series
	scratch  batchScratch

	syncer syncer

	stored, duplicates, tooOld, invalid atomic.Uint64
}

// series is what the store remembers about one sensor's two TSDB series.
type series struct {
	valueLabels   labels.Labels
	qualityLabels labels.Labels
	// The head's references skip hashing the labels on each append; 0 when
	// not known yet.
	valueRef, qualityRef storage.SeriesRef
	latest               Point // newest stored point; valid when hasLatest
	hasLatest            bool
}

func newSeries(id string) *series {
	return &series{
		valueLabels:   labels.FromStrings(labels.MetricName, metricValue, labelSensor, id),
		qualityLabels: labels.FromStrings(labels.MetricName, metricQuality, labelSensor, id),
	}
}

// maxTS is the newest timestamp stored for the sensor, or MinInt64.
func (e *series) maxTS() int64 {
	if !e.hasLatest {
		return math.MinInt64
	}
	return e.latest.TS
}

// Open opens (creating when needed) the store in o.Dir and replays its log.
// Everything acknowledged by Append before a crash is there again.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("store: Options.Dir is required")
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.OutOfOrder == 0 {
		o.OutOfOrder = DefaultOutOfOrder
	}
	if o.Retention < 0 || o.OutOfOrder < 0 {
		return nil, fmt.Errorf("store: negative retention %s or out-of-order window %s", o.Retention, o.OutOfOrder)
	}
	if o.Retention <= o.OutOfOrder {
		// A replayed reading would be accepted and then deleted by the next
		// compaction: a configuration mistake, not a policy.
		return nil, fmt.Errorf("store: retention %s must exceed the out-of-order window %s", o.Retention, o.OutOfOrder)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	topts := tsdb.DefaultOptions()
	topts.RetentionDuration = o.Retention.Milliseconds()
	topts.OutOfOrderTimeWindow = o.OutOfOrder.Milliseconds()
	// 255 is the largest the TSDB allows. A 7-day replay arrives as
	// out-of-order samples that stay in the OOO head until the next head
	// compaction; bigger OOO chunks mean 8× fewer of them than the default 32.
	topts.OutOfOrderCapMax = 255
	topts.MinBlockDuration = blockDuration.Milliseconds()
	// As Prometheus does: blocks grow by compaction up to a tenth of the
	// retention (72 h at 30 days), so a month is about a dozen blocks, not 360.
	topts.MaxBlockDuration = max(blockDuration, o.Retention/10).Milliseconds()
	// Prometheus's own default; snappy is skipped per record when it does not help.
	topts.WALCompression = compression.Snappy

	db, err := tsdb.Open(o.Dir, o.Logger.With("component", "tsdb"), nil, topts, nil)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
	}
	s := &Store{
		db:     db,
		logger: o.Logger,
		opts:   o,
		series: make(map[string]*series),
		syncer: newSyncer(filepath.Join(o.Dir, "wal"), filepath.Join(o.Dir, wlog.WblDirName)),
	}
	// DOMAIN.md: the product says at start how long it keeps records.
	lvl := slog.LevelInfo
	if o.Retention < DefaultRetention {
		lvl = slog.LevelWarn // below the legal minimum: only tests should do this
	}
	s.logger.Log(context.Background(), lvl, "history store open",
		"dir", o.Dir, "retention", o.Retention.String(), "out_of_order_window", o.OutOfOrder.String(),
		"blocks", len(db.Blocks()))
	return s, nil
}

// Close flushes and closes the TSDB. Calls in flight finish first; later
// calls return ErrClosed. The TSDB's goroutines have stopped when it returns.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Stats returns the counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Stored:     s.stored.Load(),
		Duplicates: s.duplicates.Load(),
		TooOld:     s.tooOld.Load(),
		Invalid:    s.invalid.Load(),
		Syncs:      s.syncer.syncs.Load(),
	}
}

// acquire takes the shared side of closeMu; the caller must call release.
func (s *Store) acquire() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) release() { s.closeMu.RUnlock() }
