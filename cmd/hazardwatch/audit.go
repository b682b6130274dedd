package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"hazardwatch/internal/audit"
)

// auditFlags gives the audit log's options of a command's data directory.
type auditFlags struct{ dataDir, head *string }

// auditFlag adds --audit-head, the copy of the audit chain's head kept
// outside the data directory. Its default, beside the data directory, is
// the same for every command (serve, demo, token, audit), so that they
// agree without being told.
func auditFlag(fs *flag.FlagSet, dataDir *string) *auditFlags {
	return &auditFlags{dataDir: dataDir, head: fs.String("audit-head", "",
		"file OUTSIDE the data directory keeping the audit chain's head, which catches a rewritten or cut audit log\n"+
			"(default: beside the data directory, named after it: /var/lib/hazardwatch → /var/lib/hazardwatch.audit-head)")}
}

// options are the audit log's options: folder <data-dir>/audit, head file
// as --audit-head says or beside the data directory; a head file inside
// the data directory is refused.
func (a *auditFlags) options() (audit.Options, error) {
	o, err := audit.ForDataDir(*a.dataDir, *a.head)
	if err != nil && *a.head != "" {
		err = fmt.Errorf("--audit-head: %w", err)
	}
	return o, err
}

// cliActor names who runs a command, for the audit log.
func cliActor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli " + name + "@" + host
}

// openAudit opens the audit log for a command that changes something,
// logging the head to stderr.
func openAudit(o audit.Options, stderr io.Writer) (*audit.Log, error) {
	o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	return audit.Open(o)
}

func runAudit(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit", "verify|list [flags]", `
The audit log (<data-dir>/audit): who acknowledged, shelved, gave feedback,
changed an enterprise's status, took a sensor out of service, reloaded the
rules, created or revoked a token; when, from where, the object before and
after. Append-only, hash-chained, kept at least 183 days (6 months); the
chain's head is also kept outside the data directory (--audit-head).

  hazardwatch audit verify                 exit 0 when the chain holds, 1 with the first problem
  hazardwatch audit list --since 24h --action alarm
  hazardwatch audit list --since 2026-12-01 --json

verify catches a changed record, a removed record, a cut tail, a chain
rewritten after an edit (its head differs) and a missing head file, each
named with its file and line. A log that goes on past its head (a crash
between a record's write and the head's) passes, and says so.`, stderr)
	dataDir := dataDirFlag(fs)
	af := auditFlag(fs, dataDir)
	since := fs.String("since", "", "list: records from this time on: RFC 3339 (2026-12-01T08:00:00+08:00), a local date (2026-12-01) or an age (24h, 7d)")
	action := fs.String("action", "", "list: one action (alarm.ack) or a group of them (alarm)")
	asJSON := fs.Bool("json", false, "list: JSON lines, one record each, instead of tab-separated columns")
	if len(args) == 0 || askedForHelp(args[:1]) {
		code, _ := parse(fs, args, stdout)
		if len(args) == 0 {
			fs.Usage()
			code = exitUsage
		}
		return code
	}
	verb := args[0]
	if code, ok := parse(fs, args[1:], stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "hazardwatch audit %s: no arguments, flags only\n", verb)
		return exitUsage
	}
	o, err := af.options()
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch audit: %v\n", err)
		return exitUsage
	}
	switch verb {
	case "verify":
		rep, err := audit.Verify(o)
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch audit verify: %v\n审计链不完整 / the audit chain does not hold\n", err)
			return exitFailure
		}
		printReport(stdout, rep)
	case "list":
		from, err := parseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch audit list: --since %q: %v\n", *since, err)
			return exitUsage
		}
		return listAudit(o.Dir, from, *action, *asJSON, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "hazardwatch audit: unknown action %q (verify or list)\n", verb)
		return exitUsage
	}
	return exitOK
}

func printReport(w io.Writer, rep audit.Report) {
	if rep.Records == 0 {
		fmt.Fprintf(w, "audit log %s: no records\n", rep.Dir)
	} else {
		fmt.Fprintf(w, "audit log %s: %d records, seq %d–%d, in %s\n", rep.Dir, rep.Records, rep.FirstSeq, rep.LastSeq, strings.Join(rep.Files, " "))
	}
	if rep.Anchor > 0 {
		fmt.Fprintf(w, "  records up to seq %d pruned (older than the retention); the chain starts from their last hash\n", rep.Anchor)
	}
	if rep.HeadSeq == 0 {
		fmt.Fprintf(w, "head %s: none yet\n", rep.HeadFile)
	} else {
		fmt.Fprintf(w, "head %s: seq %d sha256 %s of %s\n", rep.HeadFile, rep.HeadSeq, rep.HeadHash, rep.HeadAt.Format(time.RFC3339))
	}
	if rep.PastHead > 0 {
		fmt.Fprintf(w, "  the log goes on %d record(s) past the head (a crash between a record's write and the head's): the chain holds through them\n", rep.PastHead)
	}
	fmt.Fprintln(w, "审计链完整 / the audit chain holds")
}

// parseSince reads --since: a time, a local date, or an age before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err == nil && n >= 0 && fmt.Sprint(n) == days {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("want RFC 3339 (2026-12-01T08:00:00+08:00), a date (2026-12-01) or an age (24h, 7d)")
}

func listAudit(dir string, since time.Time, action string, asJSON bool, stdout, stderr io.Writer) int {
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if !asJSON {
		fmt.Fprintln(stdout, "SEQ\tAT\tACTION\tOBJECT\tACTOR\tROLE\tFROM\tBEFORE\tAFTER")
	}
	for r, err := range audit.Records(dir, since) {
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch audit list: %v\n", err)
			return exitFailure
		}
		if action != "" && r.Action != action && !strings.HasPrefix(r.Action, action+".") {
			continue
		}
		if asJSON {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(stderr, "hazardwatch audit list: %v\n", err)
				return exitFailure
			}
			continue
		}
		cols := []string{fmt.Sprint(r.Seq), r.At.Format(time.RFC3339Nano), r.Action, r.Object, r.Actor, r.Role, r.From, string(r.Before), string(r.After)}
		for i, c := range cols {
			if c == "" {
				c = "-"
			}
			cols[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		}
		fmt.Fprintln(stdout, strings.Join(cols, "\t"))
	}
	return exitOK
}
