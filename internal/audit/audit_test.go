package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"hazardwatch/internal/testclock"
	"hazardwatch/internal/testlog"
)

// newClock is a settable clock shared by the Logs of a test, at s
// (RFC 3339).
func newClock(s string) *testclock.Clock {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return testclock.New(t)
}

// testOptions puts the folder and the head file apart, as a data directory
// and the file beside it.
func testOptions(t *testing.T, c *testclock.Clock) Options {
	t.Helper()
	root := t.TempDir()
	return Options{
		Dir:      filepath.Join(root, "data", "audit"),
		HeadFile: filepath.Join(root, "data.audit-head"),
		Clock:    c.Now,
	}
}

func open(t *testing.T, o Options) *Log {
	t.Helper()
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func entry(i int) Entry {
	return Entry{
		Actor: fmt.Sprintf("tok-%08x 张伟", i), Role: "operator", From: "203.0.113.7:51234",
		Action: "alarm.ack", Object: fmt.Sprintf("alarm:%d", i),
		Before: json.RawMessage(`{"state":"unack_active"}`),
		After:  json.RawMessage(`{"state": "ack_active", "note": "<现场确认>"}`),
	}
}

func mustAppend(t *testing.T, l *Log, e Entry) Record {
	t.Helper()
	r, err := l.Append(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustVerify(t *testing.T, o Options) Report {
	t.Helper()
	rep, err := Verify(o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// TestAuditRoundTrip: two Logs on one folder (the centre and the token
// command) append in turn across a month's end and a Close and Open; the
// chain holds, the head is the last record, and every record reads back.
func TestAuditRoundTrip(t *testing.T) {
	c := newClock("2026-11-30T23:59:57Z")
	o := testOptions(t, c)
	var logs testlog.Buffer
	oa := o
	oa.Logger = logs.Logger(slog.LevelInfo)
	a, b := open(t, oa), open(t, o)
	var want []Record
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		want = append(want, mustAppend(t, l, entry(i)))
		c.Add(time.Second)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(t, oa)
	want = append(want, mustAppend(t, a, entry(6)), mustAppend(t, b, entry(7)))

	for i, r := range want {
		if r.Seq != uint64(i+1) || (i > 0 && r.Prev != want[i-1].Hash) || (i == 0 && r.Prev != "") {
			t.Errorf("record %d: seq %d prev %q, previous hash %q", i, r.Seq, r.Prev, want[max(i-1, 0)].Hash)
		}
	}
	rep := mustVerify(t, o)
	if rep.Records != 8 || rep.FirstSeq != 1 || rep.LastSeq != 8 || rep.HeadSeq != 8 || rep.HeadHash != want[7].Hash || rep.PastHead != 0 ||
		strings.Join(rep.Files, " ") != "2026-11.jsonl 2026-12.jsonl" {
		t.Errorf("report %+v", rep)
	}
	var got []Record
	for r, err := range Records(o.Dir, time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Hash != w.Hash || !g.At.Equal(w.At) || g.Actor != w.Actor || g.Object != w.Object || string(g.After) != `{"state":"ack_active","note":"\u003c现场确认\u003e"}` {
			t.Errorf("record %d read back as %+v, appended %+v", i, g, w)
		}
	}
	if n := 0; true {
		for range Records(o.Dir, want[3].At) {
			n++
		}
		if n != 5 {
			t.Errorf("records since seq 4's time: %d, want 5", n)
		}
	}
	// The clock going back does not take audit time back.
	c.Add(-time.Hour)
	if r := mustAppend(t, b, entry(8)); !r.At.Equal(want[7].At) {
		t.Errorf("at %v after a clock step back, want %v", r.At, want[7].At)
	}
	if got := testutil.ToFloat64(b.Collector().(auditCollector).m.records); got != 5 {
		t.Errorf("b's hw_audit_records_total %v, want 5", got)
	}
	if n := logs.Count(`msg="audit head"`); n != 4 {
		t.Errorf("%d head lines logged by a, want 4:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "seq=7 hash="+want[6].Hash) {
		t.Errorf("head of seq 7 not logged:\n%s", logs.String())
	}
}

// TestAuditConcurrent: two Logs appending at once from several goroutines
// each end in one unbroken chain.
func TestAuditConcurrent(t *testing.T) {
	c := newClock("2026-12-07T10:00:00Z")
	o := testOptions(t, c)
	logs := []*Log{open(t, o), open(t, o)}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := logs[g%2].Append(context.Background(), entry(g*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if rep := mustVerify(t, o); rep.Records != 100 || rep.HeadSeq != 100 {
		t.Errorf("report %+v", rep)
	}
}

func TestAuditOptions(t *testing.T) {
	c := newClock("2026-12-07T10:00:00Z")
	for _, tt := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"short retention", func(o *Options) { o.Retention = 182 * 24 * time.Hour }, "records are kept at least 4392h0m0s"},
		{"no head file", func(o *Options) { o.HeadFile = "" }, "HeadFile are required"},
		{"head in the folder", func(o *Options) { o.HeadFile = filepath.Join(o.Dir, "head") }, "inside the audit folder"},
		{"head's folder missing", func(o *Options) { o.HeadFile = filepath.Join(o.HeadFile, "head") }, "the head file's folder"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, c)
			tt.edit(&o)
			if _, err := Open(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v, want %q", err, tt.want)
			}
			if _, err := Verify(o); tt.name != "head's folder missing" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Verify: %v, want %q", err, tt.want)
			}
		})
	}
	l := open(t, testOptions(t, c))
	for _, e := range []Entry{
		{Actor: "a", From: "cli", Object: "token:x"},
		{Actor: "a", From: "cli", Action: "token.create", Object: "token:x", After: json.RawMessage(`{"id":`)},
	} {
		if _, err := l.Append(context.Background(), e); !errors.Is(err, ErrEntry) {
			t.Errorf("Append(%+v): %v, want ErrEntry", e, err)
		}
	}
}

// build makes a log of n records, one a day from late November, and
// returns its options and records.
func build(t *testing.T, n int) (Options, []Record) {
	t.Helper()
	c := newClock("2026-11-28T08:00:00Z")
	o := testOptions(t, c)
	l := open(t, o)
	var recs []Record
	for i := range n {
		recs = append(recs, mustAppend(t, l, entry(i)))
		c.Add(24 * time.Hour)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return o, recs
}

// editLines rewrites a month file's lines.
func editLines(t *testing.T, path string, edit func([]string) []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(edit(lines[:len(lines)-1]), "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rewrite is what someone who can write the data directory does to change
// history: cut the log after keep records and append others in their place
// with this package, so that the chain holds in itself.
func rewrite(t *testing.T, o Options, keep int, recs []Record) {
	t.Helper()
	nov, dec := filepath.Join(o.Dir, "2026-11.jsonl"), filepath.Join(o.Dir, "2026-12.jsonl")
	editLines(t, nov, func(l []string) []string { return l[:min(keep, len(l))] })
	editLines(t, dec, func(l []string) []string { return l[:max(keep-3, 0)] })
	forged := o
	forged.HeadFile = filepath.Join(t.TempDir(), "forged-head")
	c := newClock(recs[keep].At.Format(time.RFC3339))
	forged.Clock = c.Now
	l := open(t, forged)
	for i := keep; i < len(recs); i++ {
		e := recs[i].Entry
		e.Actor = "someone else"
		mustAppend(t, l, e)
		c.Add(24 * time.Hour)
	}
	l.Close()
}

// TestAuditVerifyCatches: each way of changing the log is caught and
// named; an intact log and one a record past its head pass.
func TestAuditVerifyCatches(t *testing.T) {
	// 6 records: seq 1–3 in 2026-11.jsonl (28–30 Nov), 4–6 in 2026-12.jsonl.
	for _, tt := range []struct {
		name   string
		tamper func(t *testing.T, o Options, recs []Record)
		kind   error
		file   string
		line   int
		seq    uint64
	}{
		{"intact", func(*testing.T, Options, []Record) {}, nil, "", 0, 0},
		{"changed record", func(t *testing.T, o Options, _ []Record) {
			editLines(t, filepath.Join(o.Dir, "2026-11.jsonl"), func(l []string) []string {
				l[1] = strings.Replace(l[1], `"object":"alarm:1"`, `"object":"alarm:9"`, 1)
				return l
			})
		}, ErrChanged, "2026-11.jsonl", 2, 0},
		{"removed record", func(t *testing.T, o Options, _ []Record) {
			editLines(t, filepath.Join(o.Dir, "2026-12.jsonl"), func(l []string) []string { return append(l[:1:1], l[2:]...) })
		}, ErrRemoved, "2026-12.jsonl", 2, 6},
		{"removed first record", func(t *testing.T, o Options, _ []Record) {
			editLines(t, filepath.Join(o.Dir, "2026-11.jsonl"), func(l []string) []string { return l[1:] })
		}, ErrRemoved, "2026-11.jsonl", 1, 2},
		{"removed month", func(t *testing.T, o Options, _ []Record) {
			os.Remove(filepath.Join(o.Dir, "2026-11.jsonl"))
		}, ErrRemoved, "2026-12.jsonl", 1, 4},
		{"cut tail", func(t *testing.T, o Options, _ []Record) {
			editLines(t, filepath.Join(o.Dir, "2026-12.jsonl"), func(l []string) []string { return l[:1] })
		}, ErrCutTail, "data.audit-head", 0, 6},
		{"torn last line", func(t *testing.T, o Options, _ []Record) {
			f, _ := os.OpenFile(filepath.Join(o.Dir, "2026-12.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"seq":7,"at":"2026-12-04T08:`)
			f.Close()
		}, ErrTorn, "2026-12.jsonl", 4, 0},
		{"rewritten chain", func(t *testing.T, o Options, recs []Record) { rewrite(t, o, 2, recs) }, ErrRewritten, "2026-12.jsonl", 3, 6},
		{"hash recomputed, next prev kept", func(t *testing.T, o Options, recs []Record) {
			// Record 6 rewritten by the package: the head catches it.
			rewrite(t, o, 5, recs)
		}, ErrRewritten, "2026-12.jsonl", 3, 6},
		{"head missing", func(t *testing.T, o Options, _ []Record) { os.Remove(o.HeadFile) }, ErrHeadMissing, "data.audit-head", 0, 0},
		{"head unreadable", func(t *testing.T, o Options, _ []Record) { os.WriteFile(o.HeadFile, []byte("{"), 0o600) }, ErrHeadMissing, "data.audit-head", 0, 0},
		{"one record past the head", func(t *testing.T, o Options, recs []Record) {
			if err := writeMark(o.HeadFile, markOf(recs[4])); err != nil {
				t.Fatal(err)
			}
		}, nil, "", 0, 0},
		{"head older than the records", func(t *testing.T, o Options, _ []Record) {
			if err := writeMark(o.HeadFile, mark{Seq: 1, Hash: strings.Repeat("ab", 32)}); err != nil {
				t.Fatal(err)
			}
		}, ErrRewritten, "2026-11.jsonl", 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, recs := build(t, 6)
			tt.tamper(t, o, recs)
			rep, err := Verify(o)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if rep.Records != 6 || rep.LastSeq != 6 || rep.PastHead != 6-rep.HeadSeq {
					t.Errorf("report %+v", rep)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || !errors.Is(err, tt.kind) {
				t.Fatalf("verify: %v, want a %v", err, tt.kind)
			}
			if filepath.Base(p.File) != tt.file || p.Line != tt.line || p.Seq != tt.seq {
				t.Errorf("problem at %s:%d seq %d, want %s:%d seq %d: %v", filepath.Base(p.File), p.Line, p.Seq, tt.file, tt.line, tt.seq, err)
			}
		})
	}
}

// TestAuditRecovery: what a crash leaves is repaired at Open; what
// tampering leaves stays caught after the centre starts again.
func TestAuditRecovery(t *testing.T) {
	t.Run("torn line", func(t *testing.T) {
		o, _ := build(t, 4)
		f, _ := os.OpenFile(filepath.Join(o.Dir, "2026-12.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`{"seq":5,"at":"2026-12-02T08:`)
		f.Close()
		l := open(t, o)
		mustAppend(t, l, entry(9))
		if got := testutil.ToFloat64(l.met.errors.WithLabelValues("torn")); got != 1 {
			t.Errorf("torn errors %v, want 1", got)
		}
		if rep := mustVerify(t, o); rep.Records != 5 {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("head behind", func(t *testing.T) {
		o, recs := build(t, 4)
		writeMark(o.HeadFile, markOf(recs[2]))
		open(t, o).Close()
		if rep := mustVerify(t, o); rep.HeadSeq != 4 || rep.PastHead != 0 {
			t.Errorf("report %+v", rep)
		}
		if m, _ := filepath.Glob(o.HeadFile + mismatchSuffix + "*"); len(m) != 0 {
			t.Errorf("a head one behind was taken for tampering: %v", m)
		}
	})
	t.Run("cut tail, then a start", func(t *testing.T) {
		o, _ := build(t, 6)
		editLines(t, filepath.Join(o.Dir, "2026-12.jsonl"), func(l []string) []string { return l[:1] })
		var logs testlog.Buffer
		o.Logger = logs.Logger(slog.LevelInfo)
		l := open(t, o)
		if got := testutil.ToFloat64(l.met.errors.WithLabelValues("mismatch")); got != 1 || !strings.Contains(logs.String(), "a cut tail") {
			t.Errorf("mismatch errors %v; log:\n%s", got, logs.String())
		}
		mustAppend(t, l, entry(7))
		_, err := Verify(o)
		if !errors.Is(err, ErrHeadMismatch) || !strings.Contains(err.Error(), "the log ends at seq 4, before the head's seq 6: a cut tail") {
			t.Errorf("verify after a restart: %v", err)
		}
	})
}

// TestAuditRetention: a year of records, a few a week: whole months older
// than the retention go, nothing younger than 183 days does, and the chain
// still verifies from its anchor, also when a pruning was interrupted.
func TestAuditRetention(t *testing.T) {
	c := newClock("2026-01-01T00:00:00Z")
	o := testOptions(t, c)
	l := open(t, o)
	var recs []Record
	saved := map[string][]byte{}
	for i := range 150 {
		recs = append(recs, mustAppend(t, l, entry(i)))
		for _, n := range mustFiles(t, o.Dir) {
			if _, ok := saved[n]; !ok || n != monthOf(c.Now()) {
				saved[n], _ = os.ReadFile(filepath.Join(o.Dir, n))
			}
		}
		c.Add(58 * time.Hour)
	}
	now := c.Now()
	files := mustFiles(t, o.Dir)
	if len(files) < 7 || len(files) > 8 {
		t.Errorf("files kept at %v: %v, want the last 7 or 8 months", now, files)
	}
	kept := map[uint64]bool{}
	for r, err := range Records(o.Dir, time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		kept[r.Seq] = true
	}
	oldest := recs[len(recs)-1]
	for _, r := range recs {
		if now.Sub(r.At) <= MinRetention && !kept[r.Seq] {
			t.Errorf("seq %d of %v pruned at %v", r.Seq, r.At, now)
		}
		if kept[r.Seq] && r.At.Before(oldest.At) {
			oldest = r
		}
	}
	rep := mustVerify(t, o)
	if rep.Anchor == 0 || rep.FirstSeq != rep.Anchor+1 || rep.LastSeq != 150 || rep.FirstSeq != oldest.Seq {
		t.Errorf("report %+v, oldest kept seq %d", rep, oldest.Seq)
	}
	if age := now.Sub(oldest.At); age < MinRetention || age > MinRetention+62*24*time.Hour {
		t.Errorf("oldest record kept is %v old", age)
	}

	// A pruning interrupted after the anchor was written leaves the file
	// it would have removed: the chain still passes through the anchor.
	last := monthOf(recs[rep.Anchor-1].At)
	if err := os.WriteFile(filepath.Join(o.Dir, last), saved[last], 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, o); rep.FirstSeq >= rep.Anchor {
		t.Errorf("with a left-over file: %+v", rep)
	}
	l.Close()
	open(t, o).Close()
	if _, err := os.Stat(filepath.Join(o.Dir, last)); !os.IsNotExist(err) {
		t.Errorf("Open kept the left-over %s: %v", last, err)
	}

	// An anchor younger than the retention: records removed early.
	a, _ := readMark(filepath.Join(o.Dir, anchorName))
	a.At = now.Add(-100 * 24 * time.Hour)
	writeMark(filepath.Join(o.Dir, anchorName), a)
	if _, err := Verify(o); !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "younger than the retention") {
		t.Errorf("verify with a young anchor: %v", err)
	}
}

func mustFiles(t *testing.T, dir string) []string {
	t.Helper()
	n, err := monthFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func FuzzDecode(f *testing.F) {
	// The seeds in testdata/fuzz/FuzzDecode are lines from a log and
	// edits of them.
	f.Fuzz(func(t *testing.T, line []byte) {
		check := func(line []byte) {
			r, err := decode(line)
			if err == nil {
				roundTrip(t, line, r)
			}
		}
		check(line)
		// Random bytes seldom carry their own SHA-256: give the input one,
		// as a body, so that the JSON behind the hash is fuzzed too.
		if len(line) > 0 && line[len(line)-1] == '}' {
			sum := sha256.Sum256(line)
			check(fmt.Appendf(nil, "%s%s%x\"}", line[:len(line)-1], hashKey, sum))
		}
	})
}

func roundTrip(t *testing.T, line []byte, r Record) {
	{
		// A line that decodes is what encode would write for its record,
		// up to the JSON's spelling: encoding it again decodes to the same.
		again, err := encode(&r)
		if err != nil {
			t.Fatalf("%q decoded to %+v, which does not encode: %v", line, r, err)
		}
		r2, err := decode(bytes.TrimSuffix(again, []byte("\n")))
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if r2.Seq != r.Seq || !r2.At.Equal(r.At) || r2.Entry.Actor != r.Entry.Actor || r2.Prev != r.Prev || r2.Action != r.Action || r2.Object != r.Object {
			t.Fatalf("%+v re-encoded as %+v", r, r2)
		}
	}
}

// BenchmarkAppend: one record made durable and the head written: three
// fsyncs (the line, the head's temp file, the head's folder).
func BenchmarkAppend(b *testing.B) {
	root := b.TempDir()
	l, err := Open(Options{Dir: filepath.Join(root, "data", "audit"), HeadFile: filepath.Join(root, "head")})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := entry(1)
	for b.Loop() {
		if _, err := l.Append(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
}
