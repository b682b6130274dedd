// Package audit owns the audit log: who did what, when, from where, and
// the object before and after, for every acknowledgement, shelve,
// feedback, status change, out-of-service, rule change and token issue or
// revoke (issue #7).
//
// The log is append-only JSON lines, one file per UTC month under
// <data-dir>/audit (2026-12.jsonl). Each record carries a sequence number
// and the hex SHA-256 of the previous record (prev, "" for seq 1), and its
// own hash over its stored bytes without the hash (see encode), so editing
// a record breaks its hash, deleting one leaves a gap in the numbers, and
// recomputing a record's hash breaks the next record's prev. Append makes
// the record durable (write, fsync; fsync of the folder when it creates a
// month file) before it returns.
//
// A chain rewritten from some point on, or cut at its tail, is consistent
// in itself; the head catches it. After every append the head (seq, hash,
// time) is written atomically to a file outside the data directory
// (Options.HeadFile) and logged ("audit head"). Verify refuses a log that
// ends before the head's seq, or whose record at the head's seq has another
// hash. A crash between a record's fsync and the head's write leaves the
// head one record behind: Verify accepts a log that goes on past its head
// when the chain is intact up to and past it, and says how far
// (Report.PastHead); Open brings such a head up to date. When Open finds
// the head disagreeing with the log (missing while there are records,
// ahead of it, another hash), it keeps what it found in a file next to the
// head (<head>.mismatch-<time>), logs an error and carries on with a new
// head, so that the centre keeps running and Verify keeps failing until
// someone has looked and removed that file.
//
// Two processes append to one log: the centre and `hazardwatch token`.
// Appends are serialised by flock(2) on <dir>/.lock; under the lock an
// appender whose view of the newest file is stale reads the last record
// again before chaining on it. An incomplete last line (a crash or a full
// disk in the middle of a write: never acknowledged) is cut off first.
//
// Retention: at Open and at the first append of each month, whole month
// files that ended more than Options.Retention ago (at least 183 days, ≥ 6
// months) are removed, never the newest. The last removed record's seq and
// hash are kept first in <dir>/anchor.json, where Verify starts the chain;
// Verify refuses an anchor younger than the retention.
package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"hazardwatch/internal/atomicfile"
)

// Entry is what a caller records.
type Entry struct {
	Actor  string          `json:"actor"`            // who: token id and name, e.g. "tok-1a2b3c4d 张伟", or "cli root@host"
	Role   string          `json:"role,omitempty"`   // operator | officer | admin | "" (cli/system)
	From   string          `json:"from"`             // where from: the client address "203.0.113.7:51234", or "cli" / "signal" / "system"
	Action string          `json:"action"`           // alarm.ack, alarm.shelve, …, token.create, token.revoke
	Object string          `json:"object"`           // "alarm:<id>", "enterprise:e01", "sensor:<id>", "rules:<source>", "token:<id>"
	Before json.RawMessage `json:"before,omitempty"` // the object before (JSON), absent when none
	After  json.RawMessage `json:"after,omitempty"`
}

// Record is an Entry as stored: numbered, timed and chained.
type Record struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	Entry
	Prev string `json:"prev"` // hex SHA-256 of the previous record; "" for seq 1
	Hash string `json:"hash"` // hex SHA-256 of this record as stored, without the hash
}

// MinRetention is the least time records are kept: 183 days, six months.
const MinRetention = 183 * 24 * time.Hour

// Options of Open and Verify.
type Options struct {
	Dir       string        // the audit folder, under the data directory: <data-dir>/audit
	HeadFile  string        // the chain head's copy OUTSIDE the data directory (required)
	Retention time.Duration // how long records are kept; default and minimum MinRetention
	Logger    *slog.Logger  // gets the head after every append ("audit head" seq=… hash=…); nil: none
	Clock     func() time.Time
}

// Errors callers branch on.
var (
	// ErrHead: Append stored the record durably but could not write the
	// head file; the next Append writes it again.
	ErrHead = errors.New("audit: head file not written")
	// ErrEntry: the entry lacks a field or its before/after is not JSON.
	ErrEntry  = errors.New("audit: bad entry")
	ErrClosed = errors.New("audit: log closed")
)

func (o *Options) check() error {
	if o.Dir == "" || o.HeadFile == "" {
		return errors.New("audit: Dir and HeadFile are required")
	}
	if o.Retention == 0 {
		o.Retention = MinRetention
	}
	if o.Retention < MinRetention {
		return fmt.Errorf("audit: retention %v: records are kept at least %v (6 months)", o.Retention, MinRetention)
	}
	dir, head := o.Dir, o.HeadFile
	if Inside(head, dir) {
		return fmt.Errorf("audit: head file %s is inside the audit folder %s: it must be outside the data directory", o.HeadFile, o.Dir)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ForDataDir is the audit log of a data directory: its folder
// <data-dir>/audit and, unless head is given, a head file beside the data
// directory named after it (/var/lib/hazardwatch →
// /var/lib/hazardwatch.audit-head), the default every command shares. A
// head inside the data directory is refused.
func ForDataDir(dataDir, head string) (Options, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return Options{}, fmt.Errorf("audit: %w", err)
	}
	if head == "" {
		head = filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".audit-head")
	}
	if Inside(head, dir) {
		return Options{}, fmt.Errorf("audit: the head file %s is inside the data directory %s: a copy there is rewritten with the log it guards", head, dataDir)
	}
	return Options{Dir: filepath.Join(dataDir, "audit"), HeadFile: head}, nil
}

// Inside reports whether path is dir or below it, both made absolute: a
// head file there would be rewritten with the log it guards.
func Inside(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Log appends to the audit folder. Its methods are safe for concurrent use.
type Log struct {
	o   Options
	met *metrics
	lk  lockFile

	mu     sync.Mutex
	closed bool
	// The chain's end as this Log last saw it, and the newest month file
	// and its size then: under the lock, a newest file of another name or
	// size means another appender went on, and the tail is read again.
	last mark
	name string
	size int64
}

// Open opens (creating) the audit folder: it cuts an incomplete last line,
// checks the head file against the log's last record, and prunes month
// files older than the retention.
func Open(o Options) (*Log, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	// The head's folder is not made: a missing one is more likely an
	// unmounted disk than a folder to create, and every head write would fail.
	if fi, err := os.Stat(filepath.Dir(o.HeadFile)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("audit: the head file's folder %s: %w", filepath.Dir(o.HeadFile), cmp.Or(err, errors.New("not a folder")))
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lk, err := openLock(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{o: o, lk: lk, met: newMetrics()}
	if err := lk.lock(context.Background()); err != nil {
		lk.f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer lk.unlock()
	if err := l.readTail(); err != nil {
		lk.f.Close()
		return nil, err
	}
	l.checkHead()
	l.prune(o.Clock())
	return l, nil
}

// Close releases the folder.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.lk.f.Close()
}

// Append stores e as the next record, durably, then writes the head file
// and logs the head. A record that cannot be stored is an error and no
// record; one whose head could not be written comes back with ErrHead.
func (l *Log) Append(ctx context.Context, e Entry) (Record, error) {
	if e.Actor == "" || e.From == "" || e.Action == "" || e.Object == "" {
		return Record{}, fmt.Errorf("%w: actor, from, action and object are required", ErrEntry)
	}
	for _, v := range []json.RawMessage{e.Before, e.After} {
		if len(v) > 0 && !json.Valid(v) {
			return Record{}, fmt.Errorf("%w: %s %s: before/after is not JSON", ErrEntry, e.Action, e.Object)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Record{}, ErrClosed
	}
	if err := l.lk.lock(ctx); err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	defer l.lk.unlock()
	rec, err := l.append(e)
	if err != nil {
		l.met.errors.WithLabelValues("write").Inc()
		return Record{}, err
	}
	l.met.records.Inc()
	if err := writeMark(l.o.HeadFile, markOf(rec)); err != nil {
		l.met.errors.WithLabelValues("head").Inc()
		l.o.Logger.Error("audit head not written", "seq", rec.Seq, "hash", rec.Hash, "err", err)
		return rec, fmt.Errorf("%w: %v", ErrHead, err)
	}
	l.o.Logger.Info("audit head", "seq", rec.Seq, "hash", rec.Hash)
	return rec, nil
}

// append writes the record under the lock.
func (l *Log) append(e Entry) (Record, error) {
	names, err := monthFiles(l.o.Dir)
	if err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	if !l.current(names) {
		if err := l.readTail(); err != nil {
			return Record{}, err
		}
	}
	now := l.o.Clock().UTC().Round(0)
	if now.Before(l.last.At) {
		now = l.last.At // a clock stepped back: audit times never go back
	}
	rec := Record{Seq: l.last.Seq + 1, At: now, Entry: e, Prev: l.last.Hash}
	line, err := encode(&rec)
	if err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	if len(line) > MaxLine {
		return Record{}, fmt.Errorf("%w: %s %s: %d bytes, at most %d", ErrEntry, e.Action, e.Object, len(line), MaxLine)
	}
	name := monthOf(now)
	path := filepath.Join(l.o.Dir, name)
	created := len(names) == 0 || names[len(names)-1] != name
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.Write(line)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Leave no part of the line behind, so the next append chains
			// on a whole record; cutTorn would otherwise do it.
			_ = f.Truncate(fi.Size())
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = atomicfile.SyncDir(l.o.Dir)
	}
	if err != nil {
		l.name = "" // read the tail again next time
		return Record{}, fmt.Errorf("audit: append to %s: %w", path, err)
	}
	crossed := l.last.Seq > 0 && monthOf(l.last.At) != name
	l.last, l.name, l.size = markOf(rec), name, fi.Size()+int64(len(line))
	if crossed {
		l.prune(now)
	}
	return rec, nil
}

// current reports whether the newest month file is as this Log left it.
func (l *Log) current(names []string) bool {
	if len(names) == 0 {
		return l.name == "" && l.last.Seq == 0
	}
	newest := names[len(names)-1]
	if newest != l.name {
		return false
	}
	fi, err := os.Stat(filepath.Join(l.o.Dir, newest))
	return err == nil && fi.Size() == l.size
}

// readTail finds the chain's last record, under the lock: the last line of
// the newest month file that has one, else the anchor, else none. It cuts
// an incomplete last line first.
func (l *Log) readTail() error {
	names, err := monthFiles(l.o.Dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.last, l.name, l.size = mark{}, "", 0
	for i := len(names) - 1; i >= 0; i-- {
		path := filepath.Join(l.o.Dir, names[i])
		last, size, found, err := l.tailOf(path, i == len(names)-1)
		if err != nil {
			return err
		}
		if i == len(names)-1 {
			l.name, l.size = names[i], size
		}
		if found {
			l.last = last
			return nil
		}
	}
	a, err := readMark(filepath.Join(l.o.Dir, anchorName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("audit: anchor: %w", err)
	}
	l.last = a
	return nil
}

// tailOf reads a month file's last record; newest says it may be cut.
func (l *Log) tailOf(path string, newest bool) (last mark, size int64, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return mark{}, 0, false, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if newest {
		var dropped int64
		size, dropped, err = cutTorn(f)
		if dropped > 0 {
			l.met.errors.WithLabelValues("torn").Inc()
			l.o.Logger.Warn("audit: cut an incomplete last line (a write a crash or a full disk interrupted, never acknowledged)", "file", path, "bytes", dropped)
		}
	} else {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if err != nil {
		return mark{}, 0, false, fmt.Errorf("audit: %w", err)
	}
	line, err := lastLine(f, size)
	if err != nil {
		return mark{}, 0, false, fmt.Errorf("audit: %w", err)
	}
	if line == nil {
		return mark{}, size, false, nil
	}
	r, err := decode(line)
	if err != nil {
		l.met.errors.WithLabelValues("write").Inc()
		return mark{}, 0, false, fmt.Errorf("audit: %s: last record: %w (run hazardwatch audit verify)", path, err)
	}
	return markOf(r), size, true, nil
}

// checkHead compares the head file with the log's end, under the lock at
// Open, and brings the head up to date.
func (l *Log) checkHead() {
	head, err := readMark(l.o.HeadFile)
	var problem string
	switch {
	case errors.Is(err, os.ErrNotExist):
		if l.last.Seq == 0 {
			return // a new log
		}
		problem = fmt.Sprintf("head file missing, the log ends at seq %d", l.last.Seq)
	case err != nil:
		problem = fmt.Sprintf("head file unreadable: %v", err)
	case head == l.last:
		return
	case head.Seq > l.last.Seq:
		problem = fmt.Sprintf("the log ends at seq %d, before the head's seq %d: a cut tail", l.last.Seq, head.Seq)
	case head.Seq == l.last.Seq:
		problem = fmt.Sprintf("the record at the head's seq %d has hash %s, the head says %s: a rewritten chain", head.Seq, l.last.Hash, head.Hash)
	default:
		r, ok, ferr := findRecord(l.o.Dir, head.Seq)
		switch {
		case ferr != nil:
			problem = fmt.Sprintf("looking for the head's seq %d: %v", head.Seq, ferr)
		case !ok:
			problem = fmt.Sprintf("no record at the head's seq %d", head.Seq)
		case r.Hash != head.Hash:
			problem = fmt.Sprintf("the record at the head's seq %d has hash %s, the head says %s: a rewritten chain", head.Seq, r.Hash, head.Hash)
		}
	}
	if problem != "" {
		l.met.errors.WithLabelValues("mismatch").Inc()
		evidence := l.keepMismatch(problem)
		l.o.Logger.Error("audit: the head file disagrees with the log; run hazardwatch audit verify", "problem", problem, "head_file", l.o.HeadFile, "kept", evidence)
	}
	if l.last.Seq == 0 {
		return
	}
	if err := writeMark(l.o.HeadFile, l.last); err != nil {
		l.met.errors.WithLabelValues("head").Inc()
		l.o.Logger.Error("audit head not written", "seq", l.last.Seq, "err", err)
		return
	}
	l.o.Logger.Info("audit head", "seq", l.last.Seq, "hash", l.last.Hash)
}

// mismatchSuffix names the files keeping what Open found wrong.
const mismatchSuffix = ".mismatch-"

// mismatch is what such a file holds.
type mismatch struct {
	Found   time.Time       `json:"found"`
	Problem string          `json:"problem"`
	Head    json.RawMessage `json:"head,omitempty"` // the head file as it was
	Log     mark            `json:"log"`            // the log's end then
}

func (l *Log) keepMismatch(problem string) string {
	now := l.o.Clock().UTC()
	m := mismatch{Found: now, Problem: problem, Log: l.last}
	if old, err := os.ReadFile(l.o.HeadFile); err == nil && json.Valid(old) {
		m.Head = old
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ""
	}
	path := l.o.HeadFile + mismatchSuffix + now.Format("20060102T150405.000000000Z")
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		l.o.Logger.Error("audit: evidence not kept", "file", path, "err", err)
		return ""
	}
	return path
}

// prune removes month files that ended more than the retention before now,
// under the lock, after keeping the last removed record as the anchor.
// Failures are logged and counted: records kept longer harm nobody.
func (l *Log) prune(now time.Time) {
	names, err := monthFiles(l.o.Dir)
	if err != nil || len(names) < 2 {
		return
	}
	cutoff := now.Add(-l.o.Retention)
	var old []string
	for _, n := range names[:len(names)-1] { // never the newest
		m, _ := fileMonth(n)
		if m.AddDate(0, 1, 0).After(cutoff) {
			break
		}
		old = append(old, n)
	}
	if len(old) == 0 {
		return
	}
	fail := func(err error) {
		l.met.errors.WithLabelValues("prune").Inc()
		l.o.Logger.Error("audit: old records not pruned", "err", err)
	}
	anchorPath := filepath.Join(l.o.Dir, anchorName)
	var a mark
	for i := len(old) - 1; i >= 0 && a.Seq == 0; i-- {
		last, _, found, err := l.tailOf(filepath.Join(l.o.Dir, old[i]), false)
		if err != nil {
			fail(err)
			return
		}
		if found {
			a = last
		}
	}
	if a.Seq > 0 {
		if prev, err := readMark(anchorPath); err == nil && prev.Seq >= a.Seq {
			a = prev
		}
		if err := writeMark(anchorPath, a); err != nil {
			fail(err)
			return
		}
	}
	for _, n := range old {
		if err := os.Remove(filepath.Join(l.o.Dir, n)); err != nil {
			fail(err)
			return
		}
	}
	if err := atomicfile.SyncDir(l.o.Dir); err != nil {
		fail(err)
		return
	}
	l.o.Logger.Info("audit: records older than the retention pruned", "files", old, "through_seq", a.Seq, "retention", l.o.Retention)
}

// findRecord looks for the record of seq, newest files first.
func findRecord(dir string, seq uint64) (Record, bool, error) {
	names, err := monthFiles(dir)
	if err != nil {
		return Record{}, false, err
	}
	for i := len(names) - 1; i >= 0; i-- {
		var found Record
		var ok bool
		err := eachLine(filepath.Join(dir, names[i]), func(_ int, line []byte, _ bool) error {
			r, err := decode(line)
			if err == nil && r.Seq == seq {
				found, ok = r, true
				return io.EOF
			}
			return nil
		})
		if err != nil && err != io.EOF {
			return Record{}, false, err
		}
		if ok {
			return found, true, nil
		}
	}
	return Record{}, false, nil
}
