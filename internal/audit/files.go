package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hazardwatch/internal/atomicfile"
)

const (
	fileExt    = ".jsonl"
	monthFmt   = "2006-01"
	lockName   = ".lock"
	anchorName = "anchor.json"
)

// monthOf names the file a record of time t goes to: months are UTC.
func monthOf(t time.Time) string { return t.UTC().Format(monthFmt) + fileExt }

// monthFiles lists the folder's month files, oldest first; a missing
// folder has none.
func monthFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, ok := fileMonth(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// fileMonth is the first instant of a month file's month.
func fileMonth(name string) (time.Time, bool) {
	stem, ok := strings.CutSuffix(name, fileExt)
	if !ok || len(stem) != len(monthFmt) {
		return time.Time{}, false
	}
	t, err := time.Parse(monthFmt, stem)
	return t, err == nil
}

// mark is a point of the chain: the head file and the anchor hold one.
type mark struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	At   time.Time `json:"at"`
}

func markOf(r Record) mark { return mark{Seq: r.Seq, Hash: r.Hash, At: r.At} }

// readMark reads a head or anchor file; a missing file is os.ErrNotExist.
func readMark(path string) (mark, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return mark{}, err
	}
	var m mark
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return mark{}, fmt.Errorf("%s: %w", path, err)
	}
	if m.Seq == 0 || len(m.Hash) != hashHexLen || !isLowerHex([]byte(m.Hash)) {
		return mark{}, fmt.Errorf("%s: not a seq and a SHA-256", path)
	}
	return m, nil
}

// writeMark replaces path atomically: a crash leaves the old or the new
// content, never a mix.
func writeMark(path string, m mark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// lockFile is the folder's lock: flock(2) on .lock, which serialises the
// appenders of every process (the centre and `hazardwatch token`) and of
// every Log in one process, since each Log opens the file itself.
type lockFile struct{ f *os.File }

func openLock(dir string) (lockFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	return lockFile{f}, err
}

// lock takes the exclusive lock, or gives up when ctx ends: flock cannot
// be interrupted, so it tries without blocking and waits a little between.
func (l lockFile) lock(ctx context.Context) error {
	wait := time.Millisecond
	for {
		err := unix.Flock(int(l.f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", l.f.Name(), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func (l lockFile) unlock() { _ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN) }

// sharedLock holds off appenders while Verify reads, when the folder has a
// lock file; release undoes it.
func sharedLock(dir string) (release func(), err error) {
	f, err := os.Open(filepath.Join(dir, lockName))
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// lastLine returns the last complete line of f (size bytes long, ending
// in a newline) without its newline, reading backwards; nil when f is
// empty.
func lastLine(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	var buf []byte // the bytes from off up to the final newline
	for off := size - 1; off > 0; {
		n := min(int64(64<<10), off)
		off -= n
		chunk := make([]byte, n)
		if _, err := f.ReadAt(chunk, off); err != nil {
			return nil, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return append(chunk[i+1:], buf...), nil
		}
		buf = append(chunk, buf...)
		if len(buf) > MaxLine {
			return nil, fmt.Errorf("%s: last line longer than %d bytes", f.Name(), MaxLine)
		}
	}
	return buf, nil
}

// cutTorn drops an incomplete last line, which only a crash or a full disk
// in the middle of a write leaves: Append makes a record durable whole
// before it returns, so such a line was never acknowledged. It returns the
// size of the file afterwards and how many bytes it dropped.
func cutTorn(f *os.File) (size, dropped int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = fi.Size()
	if size == 0 {
		return 0, 0, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, 0, err
	}
	if last[0] == '\n' {
		return size, 0, nil
	}
	keep := int64(0)
	for off := size; off > 0 && keep == 0; {
		n := min(int64(64<<10), off)
		off -= n
		chunk := make([]byte, n)
		if _, err := f.ReadAt(chunk, off); err != nil && err != io.EOF {
			return 0, 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			keep = off + int64(i) + 1
		}
	}
	if err := f.Truncate(keep); err != nil {
		return 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	return keep, size - keep, nil
}
