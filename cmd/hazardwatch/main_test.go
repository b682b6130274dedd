package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hazardwatch/internal/golden"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCheckDemo: check on the demo plant exits 0 and prints the summary
// with every hazard source's R and level, as the golden file has them.
func TestCheckDemo(t *testing.T) {
	code, out, errOut := runCmd("check", "../../configs/demo")
	if code != exitOK {
		t.Fatalf("check exit %d, want 0; stderr:\n%s", code, errOut)
	}
	for _, w := range []string{"e01-hs1", "e02-hs1", "e03-hs2", "128.0", "R = α·Σβq/Q", "stop_ordered"} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %q:\n%s", w, out)
		}
	}
	golden.Check(t, filepath.Join("../../testdata/cmd", "check-demo.golden"), out)
	// Unverified reference rows are named, never silently used.
	if !strings.Contains(errOut, "unverified") {
		t.Errorf("no warning about unverified reference rows:\n%s", errOut)
	}
}

func TestCheckBroken(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../testdata/config/broken/three-mistakes-two-files/sensors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sensors.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd("check", dir)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d", code, exitFailure)
	}
	if out != "" {
		t.Errorf("a failed check printed a summary:\n%s", out)
	}
	want := filepath.Join(dir, "sensors.yaml") + `:8:14: sensors[0].gateway: no gateway "gw9": none is defined`
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
}

func TestCommands(t *testing.T) {
	// The NATS cases read these; whatever this machine has set must not
	// change them.
	t.Setenv(envNATSPassword, "")
	t.Setenv(envNATSToken, "")
	tests := []struct {
		args     []string
		code     int
		inOut    string
		inStderr string
	}{
		{[]string{"--help"}, exitOK, "Commands:", ""},
		{nil, exitUsage, "", "Commands:"},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{[]string{"serve", "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{[]string{"serve", "--config", "/nonexistent-folder"}, exitFailure, "", "nonexistent-folder"},
		{[]string{"serve", "--mqtt-auth", "open"}, exitUsage, "", `--mqtt-auth "open": want token or none`},
		{[]string{"serve", "--mqtt-tls-cert", "cert.pem"}, exitUsage, "", "--mqtt-tls-cert and --mqtt-tls-key go together"},
		{[]string{"serve", "--mqtt-client-ca", "ca.pem"}, exitUsage, "", "--mqtt-client-ca needs --mqtt-tls-cert"},
		{[]string{"serve", "--mqtt-tls-cert", "c.pem", "--mqtt-tls-key", "k.pem", "--mqtt-client-ca", "ca.pem", "--mqtt-auth", "none"}, exitUsage, "", "--mqtt-auth none"},
		{[]string{"serve", "--mqtt-tls-cert", "c.pem", "--mqtt-tls-key", "k.pem", "--external-broker", "tcp://127.0.0.1:1883"}, exitUsage, "", "--external-broker"},
		{[]string{"serve", "--mqtt-tls-cert", "/nonexistent/cert.pem", "--mqtt-tls-key", "/nonexistent/key.pem"}, exitFailure, "", "--mqtt-tls-cert: open /nonexistent/cert.pem"},
		{[]string{"serve", "--help"}, exitOK, "--mqtt-client-ca", ""},
		{[]string{"serve", "--help"}, exitOK, "-influx-bucket string", ""},
		{[]string{"serve", "--influx-url", "127.0.0.1:8086"}, exitUsage, "", `--influx-url "127.0.0.1:8086": want http://host:port`},
		{[]string{"serve", "--influx-bucket", "db/rp", "--influx-org", "o"}, exitUsage, "", "--influx-bucket, --influx-org without --influx-url"},
		{[]string{"serve", "--influx-url", "http://127.0.0.1:8086", "--influx-retention", "30m"}, exitUsage, "", "--influx-retention 30m0s: InfluxDB keeps data at least 1h0m0s"},
		{[]string{"serve", "--nats-user", "centre", "--nats-ca", "ca.pem"}, exitUsage, "", "--nats-ca, --nats-user without --nats-url"},
		{[]string{"serve", "--nats-url", "127.0.0.1:4222"}, exitUsage, "", `NATS URL "127.0.0.1:4222": want nats://host:port or tls://host:port`},
		{[]string{"serve", "--nats-url", "nats://127.0.0.1:4222", "--nats-user", "centre"}, exitUsage, "", "--nats-user centre: its password goes in $HAZARDWATCH_NATS_PASSWORD"},
		{[]string{"serve", "--nats-url", "nats://127.0.0.1:4222", "--nats-token", "t", "--nats-nkey", "u.nk"}, exitUsage, "", "give one kind of NATS credentials"},
		{[]string{"serve", "--help"}, exitOK, "-nats-url string", ""},
		{[]string{"gateway"}, exitUsage, "", "--id is required"},
		{[]string{"gateway", "--id", "gw-nope"}, exitUsage, "", `"gw-nope" is not a gateway`},
		{[]string{"gateway", "--id", "gw-e01-1", "--device", "oops"}, exitUsage, "", "want DEVICE=HOST:PORT"},
		{[]string{"simulate", "--scenario", "nope.yaml"}, exitFailure, "", "nope.yaml"},
		{[]string{"token"}, exitUsage, "", "create|list|revoke"},
		{[]string{"token", "frob"}, exitUsage, "", `unknown action "frob"`},
		{[]string{"check", "--help"}, exitOK, "Usage: hazardwatch check", ""},
		{[]string{"check", "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{[]string{"check", "a", "b"}, exitUsage, "", "give one folder"},
		{[]string{"check", "/nonexistent-folder"}, exitFailure, "", "nonexistent-folder"},
		{[]string{"demo", "--help"}, exitOK, "data-dir", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.inOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.inOut, out)
			}
			if !strings.Contains(errOut, tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, errOut)
			}
			if slices.Contains(tt.args, "--help") && errOut != "" {
				t.Errorf("--help wrote to stderr too:\n%s", errOut)
			}
		})
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCmd("token", "create", "--data-dir", dir, "--role", "operator", "--scope", "enterprise:e01", "--name", "张伟")
	if code != exitOK {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	fields := strings.Fields(out)
	if len(fields) != 4 || !strings.HasPrefix(fields[3], "hw_") {
		t.Fatalf("create printed %q", out)
	}
	id := fields[0]
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--role", "officer", "--scope", "enterprise:e01", "--name", "x"}, exitUsage, "role officer takes a scope of park or county"},
		{[]string{"--role", "operator", "--scope", "enterprise:e99", "--name", "x"}, exitUsage, `no enterprise "e99"`},
		{[]string{"--role", "operator", "--scope", "enterprise:e01"}, exitUsage, "--name, --role and --scope are required"},
		{[]string{"--role", "gateway", "--scope", "gateway:gw-e01-1", "--name", "网关"}, exitOK, ""},
		{[]string{"--role", "gateway", "--scope", "gateway:gw-nope", "--name", "x"}, exitUsage, `no gateway "gw-nope"`},
		{[]string{"--role", "gateway", "--scope", "enterprise:e01", "--name", "x"}, exitUsage, "role gateway takes a scope of gateway"},
		{[]string{"--role", "operator", "--scope", "gateway:gw-e01-1", "--name", "x"}, exitUsage, "role operator takes a scope of enterprise or park"},
	} {
		code, _, errOut := runCmd(append([]string{"token", "create", "--data-dir", dir}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.err) {
			t.Errorf("create %v: exit %d %q, want %d %q", c.args, code, errOut, c.code, c.err)
		}
	}
	_, out, _ = runCmd("token", "list", "--data-dir", dir)
	if !strings.Contains(out, id) || !strings.Contains(out, "active") || strings.Contains(out, fields[3]) || !strings.Contains(out, "gateway:gw-e01-1") {
		t.Errorf("list:\n%s", out)
	}
	if code, _, errOut := runCmd("token", "revoke", "--data-dir", dir, id); code != exitOK {
		t.Fatalf("revoke: %d %s", code, errOut)
	}
	_, out, _ = runCmd("token", "list", "--data-dir", dir)
	if !strings.Contains(out, "revoked") {
		t.Errorf("list after revoke:\n%s", out)
	}
}
