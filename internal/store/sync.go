package store

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/tsdb/wlog"

	"hazardwatch/internal/atomicfile"
)

// Why this file exists.
//
// A TSDB commit writes its records to the WAL segment file with write(2)
// (wlog.WL.Log flushes the page of the batch's last record) and returns. The
// WAL fsyncs a segment only when it rotates to the next one (every 128 MiB)
// or on Close. So after Commit a reading survives the death of the process
// (kill -9, OOM, panic: the kernel has the bytes) but not the loss of power
// or a kernel crash, which may lose the last seconds to minutes of
// acknowledged readings. Out-of-order samples are worse: Commit writes them to
// the WAL and then to the WBL (wbl/), and on replay they are taken from the
// WBL; the TSDB even ignores an error of that second write.
//
// The TSDB does not expose its WAL, so after each commit the store fsyncs the
// segment files itself: fsync(2) flushes a file's dirty pages whichever file
// descriptor they were written through. Segments that appeared since the last
// sync are synced too (a rotation's own fsync of the previous segment runs
// asynchronously), and then the directory, because the TSDB does not fsync a
// directory when it creates a segment and a file whose name is not durable is
// lost with its data.
//
// Group commit: concurrent Appends share one fsync. Each Append notes the
// commit counter after its commit; a sync that starts after that number was
// reached covers it.

type syncer struct {
	dirs [2]string // wal, wbl

	committed atomic.Uint64 // bumped after every successful TSDB commit
	syncs     atomic.Uint64

	mu     sync.Mutex // held across an fsync; guards synced and last
	synced uint64     // every commit numbered ≤ synced is on disk
	last   [2]int     // highest segment index already synced per dir; -1 none

	failed atomic.Pointer[error] // sticky: see ErrNotDurable
}

func newSyncer(wal, wbl string) syncer {
	return syncer{dirs: [2]string{wal, wbl}, last: [2]int{-1, -1}}
}

// durable returns once every commit counted so far is on disk.
func (y *syncer) durable() error {
	target := y.committed.Load()
	y.mu.Lock()
	defer y.mu.Unlock()
	if err := y.failedErr(); err != nil {
		return err
	}
	if y.synced >= target {
		return nil // a sync that started after our commit already covered it
	}
	// Everything committed up to now is covered by this sync, not only ours.
	upto := y.committed.Load()
	if err := y.syncLocked(); err != nil {
		err = fmt.Errorf("%w: %w", ErrNotDurable, err)
		y.failed.Store(&err)
		return err
	}
	y.syncs.Add(1)
	y.synced = upto
	return nil
}

func (y *syncer) syncLocked() error {
	for i, dir := range y.dirs {
		first, last, err := wlog.Segments(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no WBL until out-of-order is enabled
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		if last < 0 {
			continue
		}
		// After a restart the first sync covers every segment: the previous
		// process may have died before its last segment reached the disk.
		from := max(y.last[i], first)
		for k := from; k <= last; k++ {
			if err := syncFile(wlog.SegmentName(dir, k)); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // truncated after a checkpoint: its data is in a block
				}
				return err
			}
		}
		if last > y.last[i] {
			if err := syncFile(dir); err != nil {
				return err
			}
		}
		y.last[i] = last
	}
	return nil
}

// syncFile fsyncs a file or a directory by name.
func syncFile(name string) error {
	if err := atomicfile.SyncDir(name); err != nil {
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	return nil
}

// failedErr returns the sticky error of a failed fsync, or nil. It does not
// take mu, so an Append does not wait for another one's fsync to learn it.
func (y *syncer) failedErr() error {
	if p := y.failed.Load(); p != nil {
		return *p
	}
	return nil
}
