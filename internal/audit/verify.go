package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"time"
)

// What Verify finds wrong; a *Problem unwraps to one of these.
var (
	ErrChanged      = errors.New("changed record")
	ErrRemoved      = errors.New("removed record")
	ErrCutTail      = errors.New("cut tail")
	ErrRewritten    = errors.New("rewritten chain")
	ErrTorn         = errors.New("incomplete last line")
	ErrHeadMissing  = errors.New("head file missing or unreadable")
	ErrHeadMismatch = errors.New("the log disagreed with its head when opened")
)

// Problem is the first thing Verify found wrong, and where.
type Problem struct {
	File string // the file it is in
	Line int    // 1-based line of File; 0 when not about one line
	Seq  uint64 // the record's seq; 0 when not about one record
	Kind error  // ErrChanged, ErrRemoved, …
	What string
}

func (p *Problem) Error() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	if p.Seq > 0 {
		s += fmt.Sprintf(": seq %d", p.Seq)
	}
	return fmt.Sprintf("%s: %v: %s", s, p.Kind, p.What)
}

func (p *Problem) Unwrap() error { return p.Kind }

// Report is what Verify checked.
type Report struct {
	Dir      string
	Files    []string // month files read, oldest first
	Records  int
	FirstSeq uint64 // the first and last record's seq; 0 when none
	LastSeq  uint64
	Anchor   uint64 // the last pruned record's seq, which the chain starts after; 0 when none
	HeadFile string
	HeadSeq  uint64 // 0 when there is no head (an empty log)
	HeadHash string
	HeadAt   time.Time
	// PastHead is how many records follow the head's: a crash between a
	// record's fsync and the head's write leaves one.
	PastHead uint64
}

// Verify checks the chain of the audit folder from its anchor (or seq 1)
// to its end and against the head file. The error, a *Problem, names the
// first problem found. Verify takes a shared lock: appenders wait.
func Verify(o Options) (Report, error) {
	if err := o.check(); err != nil {
		return Report{}, err
	}
	rep := Report{Dir: o.Dir, HeadFile: o.HeadFile}
	release, err := sharedLock(o.Dir)
	if err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	defer release()

	anchorPath := filepath.Join(o.Dir, anchorName)
	anchor, err := readMark(anchorPath)
	hasAnchor := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, &Problem{File: anchorPath, Kind: ErrChanged, What: fmt.Sprintf("anchor unreadable: %v", err)}
	}
	if hasAnchor {
		rep.Anchor = anchor.Seq
		if oldest := o.Clock().Add(-o.Retention); !anchor.At.Before(oldest) {
			return rep, &Problem{File: anchorPath, Seq: anchor.Seq, Kind: ErrRemoved,
				What: fmt.Sprintf("records up to seq %d of %s were removed, younger than the retention of %v", anchor.Seq, anchor.At.Format(time.RFC3339), o.Retention)}
		}
	}
	head, headErr := readMark(o.HeadFile)
	if headErr == nil {
		rep.HeadSeq, rep.HeadHash, rep.HeadAt = head.Seq, head.Hash, head.At
	}

	names, err := monthFiles(o.Dir)
	if err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	var (
		last      mark // the record before, or the anchor
		have      bool // a record was read
		headFound bool
	)
	if hasAnchor {
		last = anchor
	}
	for _, name := range names {
		path := filepath.Join(o.Dir, name)
		rep.Files = append(rep.Files, name)
		err := eachLine(path, func(n int, line []byte, complete bool) error {
			at := func(seq uint64, kind error, format string, args ...any) error {
				return &Problem{File: path, Line: n, Seq: seq, Kind: kind, What: fmt.Sprintf(format, args...)}
			}
			if !complete {
				return at(0, ErrTorn, "no newline after the last line (a write a crash interrupted: the centre cuts it at its next start)")
			}
			if len(line) == 0 {
				return at(0, ErrChanged, "empty line")
			}
			r, err := decode(line)
			if err != nil {
				return at(0, ErrChanged, "%v", err)
			}
			if m := monthOf(r.At); m != name {
				return at(r.Seq, ErrChanged, "a record of %s in %s", r.At.Format(time.RFC3339), name)
			}
			switch {
			case !have && hasAnchor && r.Seq <= anchor.Seq:
				// Left by a pruning a crash interrupted: the chain must
				// still pass through the anchor.
			case !have && hasAnchor && r.Seq == anchor.Seq+1 || have && r.Seq == last.Seq+1:
				if r.Prev != last.Hash {
					return at(r.Seq, ErrChanged, "prev %.12s… is not the hash %.12s… of seq %d: that record was changed and its hash recomputed", r.Prev, last.Hash, last.Seq)
				}
				if r.At.Before(last.At) {
					return at(r.Seq, ErrChanged, "time %s is before the previous record's %s", r.At.Format(time.RFC3339Nano), last.At.Format(time.RFC3339Nano))
				}
			case !have && !hasAnchor && r.Seq == 1:
				if r.Prev != "" {
					return at(r.Seq, ErrChanged, "the first record has a prev")
				}
			case !have:
				want := uint64(1)
				if hasAnchor {
					want = anchor.Seq + 1
				}
				return at(r.Seq, ErrRemoved, "the chain starts at seq %d, not %d: records %d–%d removed", r.Seq, want, want, r.Seq-1)
			case r.Seq > last.Seq+1:
				return at(r.Seq, ErrRemoved, "seq %d follows seq %d: records %d–%d removed", r.Seq, last.Seq, last.Seq+1, r.Seq-1)
			default:
				return at(r.Seq, ErrChanged, "seq %d follows seq %d", r.Seq, last.Seq)
			}
			if hasAnchor && r.Seq == anchor.Seq && r.Hash != anchor.Hash {
				return at(r.Seq, ErrChanged, "hash %.12s… is not the anchor's %.12s…", r.Hash, anchor.Hash)
			}
			if headErr == nil && r.Seq == head.Seq {
				headFound = true
				if r.Hash != head.Hash {
					return at(r.Seq, ErrRewritten, "hash %.12s…, the head file %s says %.12s… (at %s)", r.Hash, o.HeadFile, head.Hash, head.At.Format(time.RFC3339))
				}
			}
			if !have {
				rep.FirstSeq = r.Seq
			}
			have, last = true, markOf(r)
			rep.Records++
			rep.LastSeq = r.Seq
			return nil
		})
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				err = &Problem{File: path, Kind: ErrChanged, What: err.Error()}
			}
			return rep, err
		}
	}
	if hasAnchor && last.Seq < anchor.Seq {
		return rep, &Problem{File: anchorPath, Seq: anchor.Seq, Kind: ErrRemoved, What: fmt.Sprintf("the log ends at seq %d, before the anchor", last.Seq)}
	}

	switch {
	case errors.Is(headErr, os.ErrNotExist):
		if last.Seq > 0 {
			return rep, &Problem{File: o.HeadFile, Kind: ErrHeadMissing, What: fmt.Sprintf("no head file, and the log goes to seq %d", last.Seq)}
		}
	case headErr != nil:
		return rep, &Problem{File: o.HeadFile, Kind: ErrHeadMissing, What: headErr.Error()}
	case head.Seq > last.Seq:
		return rep, &Problem{File: o.HeadFile, Seq: head.Seq, Kind: ErrCutTail,
			What: fmt.Sprintf("the log ends at seq %d, the head (of %s) is seq %d: %d record(s) cut", last.Seq, head.At.Format(time.RFC3339), head.Seq, head.Seq-last.Seq)}
	case hasAnchor && head.Seq == anchor.Seq:
		if head.Hash != anchor.Hash {
			return rep, &Problem{File: o.HeadFile, Seq: head.Seq, Kind: ErrRewritten, What: "the head's hash is not the anchor's"}
		}
	case !headFound:
		return rep, &Problem{File: o.HeadFile, Seq: head.Seq, Kind: ErrRewritten, What: fmt.Sprintf("the head's seq %d is older than the records kept (from %d)", head.Seq, rep.FirstSeq)}
	}
	if headErr == nil {
		rep.PastHead = last.Seq - head.Seq
	}

	found, _ := filepath.Glob(globEscape(o.HeadFile) + mismatchSuffix + "*")
	if len(found) > 0 {
		what := "see the file; remove it once looked into"
		if data, err := os.ReadFile(found[0]); err == nil {
			var m mismatch
			if json.Unmarshal(data, &m) == nil {
				what = fmt.Sprintf("on %s: %s; remove the file once looked into", m.Found.Format(time.RFC3339), m.Problem)
			}
		}
		return rep, &Problem{File: found[0], Kind: ErrHeadMismatch, What: what}
	}
	return rep, nil
}

// globEscape quotes the pattern characters of a path for filepath.Glob.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// Records yields the records of the audit folder from since on, oldest
// first, each checked against its own hash (Verify checks the chain). It
// stops at the first error.
func Records(dir string, since time.Time) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		names, err := monthFiles(dir)
		if err != nil {
			yield(Record{}, fmt.Errorf("audit: %w", err))
			return
		}
		stop := errors.New("stop")
		for _, name := range names {
			if m, _ := fileMonth(name); !since.IsZero() && !m.AddDate(0, 1, 0).After(since) {
				continue
			}
			path := filepath.Join(dir, name)
			err := eachLine(path, func(n int, line []byte, complete bool) error {
				if !complete {
					return nil // being written, or cut at the next start
				}
				r, err := decode(line)
				if err != nil {
					return fmt.Errorf("audit: %s:%d: %w", path, n, err)
				}
				if r.At.Before(since) {
					return nil
				}
				if !yield(r, nil) {
					return stop
				}
				return nil
			})
			if err == stop {
				return
			}
			if err != nil {
				yield(Record{}, err)
				return
			}
		}
	}
}

// errLong is a line longer than MaxLine.
var errLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// eachLine calls fn with each line of path, numbered from 1, without its
// newline; complete is false for a last line without one. An error of fn
// stops it and is returned.
func eachLine(path string, fn func(n int, line []byte, complete bool) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var long []byte
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			if len(long) > MaxLine {
				return &Problem{File: path, Line: n, Kind: ErrChanged, What: errLong.Error()}
			}
			line, err = r.ReadSlice('\n')
		}
		if long != nil {
			line, long = append(long, line...), nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			if ferr := fn(n, line, complete); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}
