package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auditLine is one of the audit log's records, in order: the file and the line
// of each, across month files.
type auditLine struct {
	file string
	text string
}

func readAudit(t *testing.T, dataDir string) []auditLine {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "audit", "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no audit files: %v", err)
	}
	var all []auditLine
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.Lines(string(data)) {
			all = append(all, auditLine{f, l})
		}
	}
	return all
}

// writeAudit writes the records back, each to its file.
func writeAudit(t *testing.T, dataDir string, lines []auditLine) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "audit", "*.jsonl"))
	content := map[string]string{}
	for _, f := range files {
		content[f] = ""
	}
	for _, l := range lines {
		content[l.file] += l.text
	}
	for f, c := range content {
		if err := os.WriteFile(f, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func createTokens(t *testing.T, dataDir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if code, _, errOut := runCmd("token", "create", "--data-dir", dataDir, "--role", "operator", "--scope", "enterprise:e01", "--name", n); code != exitOK {
			t.Fatalf("token create %s: exit %d: %s", n, code, errOut)
		}
	}
}

// TestAuditToken: creating and revoking a token are recorded, with who and
// what, never the token or its hash; audit list shows them.
func TestAuditToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runCmd("token", "create", "--data-dir", dir, "--role", "operator", "--scope", "enterprise:e01", "--name", "张伟", "--ttl", "24h")
	if code != exitOK {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	id, plain := strings.Fields(out)[0], strings.Fields(out)[3]
	if !strings.Contains(errOut, `msg="audit head" seq=1`) {
		t.Errorf("the head was not logged:\n%s", errOut)
	}
	if code, _, errOut := runCmd("token", "revoke", "--data-dir", dir, id); code != exitOK {
		t.Fatalf("revoke: exit %d: %s", code, errOut)
	}
	tokens, _ := os.ReadFile(filepath.Join(dir, "tokens.json"))
	var stored []struct {
		Hash string `json:"sha256"`
	}
	if err := json.Unmarshal(tokens, &stored); err != nil || len(stored) != 1 {
		t.Fatalf("tokens.json: %v %s", err, tokens)
	}

	code, out, errOut = runCmd("audit", "list", "--data-dir", dir, "--json")
	if code != exitOK {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	if strings.Contains(out, plain) || strings.Contains(out, stored[0].Hash) {
		t.Fatalf("the audit log holds the token or its hash:\n%s", out)
	}
	type record struct {
		Seq                 uint64
		Actor, From, Action string
		Object              string
		Before, After       map[string]any
	}
	var recs []record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2:\n%s", len(recs), out)
	}
	for i, want := range []string{"token.create", "token.revoke"} {
		r := recs[i]
		if r.Seq != uint64(i+1) || r.Action != want || r.Object != "token:"+id || r.From != "cli" || !strings.HasPrefix(r.Actor, "cli ") || !strings.Contains(r.Actor, "@") {
			t.Errorf("record %d: %+v", i, r)
		}
		if r.After["name"] != "张伟" || r.After["role"] != "operator" || r.After["scope"] != "enterprise:e01" || r.After["expires"] == nil {
			t.Errorf("record %d after: %v", i, r.After)
		}
	}
	if recs[0].Before != nil || recs[1].Before["revoked"] != nil || recs[1].After["revoked"] == nil {
		t.Errorf("before/after: %v %v / %v %v", recs[0].Before, recs[0].After, recs[1].Before, recs[1].After)
	}

	for _, tt := range []struct {
		args []string
		rows int
	}{
		{nil, 2},
		{[]string{"--action", "token"}, 2},
		{[]string{"--action", "token.revoke"}, 1},
		{[]string{"--action", "alarm"}, 0},
		{[]string{"--since", "1h"}, 2},
		{[]string{"--since", "2099-01-01"}, 0},
	} {
		code, out, errOut := runCmd(append([]string{"audit", "list", "--data-dir", dir}, tt.args...)...)
		rows := strings.Split(strings.TrimSpace(out), "\n")
		if code != exitOK || rows[0] != "SEQ\tAT\tACTION\tOBJECT\tACTOR\tROLE\tFROM\tBEFORE\tAFTER" || len(rows)-1 != tt.rows {
			t.Errorf("list %v: exit %d, %d rows, want %d:\n%s%s", tt.args, code, len(rows)-1, tt.rows, out, errOut)
		}
	}
}

// TestAuditVerify is the acceptance of #7's audit log: hazardwatch audit
// verify catches a changed record, a removed record, a cut tail, a chain
// rewritten after an edit and a missing head file, and passes on an intact
// log and on one a record past its head.
func TestAuditVerify(t *testing.T) {
	for _, tt := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		code   int
		want   string // in stdout when the chain holds, in stderr when not
	}{
		{"intact", func(*testing.T, string) {}, exitOK, "5 records, seq 1–5"},
		{"changed record", func(t *testing.T, dir string) {
			l := readAudit(t, dir)
			l[1].text = strings.Replace(l[1].text, `"name":"b"`, `"name":"x"`, 1)
			writeAudit(t, dir, l)
		}, exitFailure, ".jsonl:2: changed record: the hash does not match"},
		{"removed record", func(t *testing.T, dir string) {
			l := readAudit(t, dir)
			writeAudit(t, dir, append(l[:2:2], l[3:]...))
		}, exitFailure, ".jsonl:3: seq 4: removed record: seq 4 follows seq 2: records 3–3 removed"},
		{"cut tail", func(t *testing.T, dir string) {
			writeAudit(t, dir, readAudit(t, dir)[:3])
		}, exitFailure, "seq 5: cut tail: the log ends at seq 3"},
		{"rewritten chain", func(t *testing.T, dir string) {
			// Cut after seq 2 and append three others with this very
			// program, its head kept elsewhere: a chain whole in itself.
			writeAudit(t, dir, readAudit(t, dir)[:2])
			forged := filepath.Join(t.TempDir(), "forged-head")
			for _, n := range []string{"x", "y", "z"} {
				if code, _, errOut := runCmd("token", "create", "--data-dir", dir, "--audit-head", forged, "--role", "operator", "--scope", "enterprise:e01", "--name", n); code != exitOK {
					t.Fatalf("forging: %s", errOut)
				}
			}
		}, exitFailure, "seq 5: rewritten chain: hash"},
		{"head missing", func(t *testing.T, dir string) {
			if err := os.Remove(dir + ".audit-head"); err != nil {
				t.Fatal(err)
			}
		}, exitFailure, "data.audit-head: head file missing or unreadable: no head file, and the log goes to seq 5"},
		{"one past the head", func(t *testing.T, dir string) {
			// The head as it was after seq 4: a crash between seq 5's
			// write and the head's.
			var head struct {
				Seq  uint64 `json:"seq"`
				Hash string `json:"hash"`
				At   string `json:"at"`
			}
			if err := json.Unmarshal([]byte(readAudit(t, dir)[3].text), &head); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(head)
			if err := os.WriteFile(dir+".audit-head", b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, exitOK, "1 record(s) past the head"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			createTokens(t, dir, "a", "b", "c", "d", "e")
			tt.tamper(t, dir)
			code, out, errOut := runCmd("audit", "verify", "--data-dir", dir)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			got := out
			if code != exitOK {
				got = errOut
				if out != "" || !strings.Contains(errOut, "the audit chain does not hold") {
					t.Errorf("a failed verify printed:\n%s\n%s", out, errOut)
				}
			} else if !strings.Contains(out, "审计链完整 / the audit chain holds") {
				t.Errorf("stdout:\n%s", out)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, got)
			}
		})
	}
}

func TestAuditCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, tt := range []struct {
		args     []string
		code     int
		inOut    string
		inStderr string
	}{
		{[]string{"audit"}, exitUsage, "", "verify|list"},
		{[]string{"audit", "--help"}, exitOK, "--audit-head", ""},
		{[]string{"audit", "verify", "--help"}, exitOK, "/var/lib/hazardwatch.audit-head", ""},
		{[]string{"audit", "frob"}, exitUsage, "", `unknown action "frob"`},
		{[]string{"audit", "verify", "--data-dir", dir, "extra"}, exitUsage, "", "no arguments"},
		{[]string{"audit", "verify", "--data-dir", dir, "--audit-head", filepath.Join(dir, "head")}, exitUsage, "", "is inside the data directory"},
		{[]string{"token", "create", "--data-dir", dir, "--audit-head", filepath.Join(dir, "x", "head"), "--role", "admin", "--scope", "all", "--name", "n"}, exitUsage, "", "is inside the data directory"},
		{[]string{"audit", "list", "--data-dir", dir, "--since", "yesterday"}, exitUsage, "", `--since "yesterday": want RFC 3339`},
		{[]string{"audit", "verify", "--data-dir", dir}, exitOK, "no records", ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.inOut) || !strings.Contains(errOut, tt.inStderr) {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "tokens.json")); !os.IsNotExist(err) {
		t.Errorf("a token was made with the head inside the data directory: %v", err)
	}
}
