package edge

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hazardwatch/internal/testpki"
)

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	cert, key := testpki.WriteFiles(t, dir, "gw-e01-1", ca.Client(t, "gw-e01-1"))
	caFile := ca.WriteCA(t, dir, "ca.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, broker, ca, cert, key string
		wantErr                     string // "" for none
		wantTLS, wantCert           bool
	}{
		{name: "plain", broker: "tcp://h:1883"},
		{name: "tls flags on a plain URL", broker: "tcp://h:1883", ca: caFile, wantErr: "need a tls:// broker URL"},
		{name: "tls, system roots", broker: "tls://h:8883", wantTLS: true},
		{name: "tls with CA and client cert", broker: "ssl://h:8883", ca: caFile, cert: cert, key: key, wantTLS: true, wantCert: true},
		{name: "CA file missing", broker: "tls://h:8883", ca: filepath.Join(dir, "nope.pem"), wantErr: "--tls-ca"},
		{name: "CA not PEM", broker: "tls://h:8883", ca: notPEM, wantErr: "no PEM certificate"},
		{name: "cert without key", broker: "tls://h:8883", cert: cert, wantErr: "go together"},
		{name: "key does not match", broker: "tls://h:8883", cert: cert, key: notPEM, wantErr: "--tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tlsConfig(tt.broker, tt.ca, tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (c != nil) != tt.wantTLS || (c != nil && (len(c.Certificates) > 0) != tt.wantCert) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestPassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "from-env")
	for _, tt := range []struct{ flag, file, want, wantErr string }{
		{want: "from-env"},
		{flag: "from-flag", want: "from-flag"},
		{file: file, want: "secret-token"},
		{flag: "x", file: file, wantErr: "not both"},
		{file: file + ".missing", wantErr: "--password-file"},
	} {
		got, err := readPassword(tt.flag, tt.file)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("readPassword(%q, %q): err %v, want %q", tt.flag, tt.file, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("readPassword(%q, %q) = %q, %v; want %q", tt.flag, tt.file, got, err, tt.want)
		}
	}
}

// TestMainErrors: flag mistakes exit 2 with a message naming the flag.
func TestMainErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--id is required"},
		{[]string{"--id", "gw-nope", "--data-dir", t.TempDir()}, `"gw-nope" is not a gateway`},
		{[]string{"--id", "gw-e01-1", "--device", "oops"}, "want DEVICE=HOST:PORT"},
		{[]string{"--id", "gw-e01-1", "--tls-cert", "x.pem"}, "need a tls:// broker URL"},
		{[]string{"--id", "gw-e01-1", "--password", "a", "--password-file", "b"}, "not both"},
	} {
		var out, errOut bytes.Buffer
		if code := Main("hw-gateway", tt.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut.String(), tt.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := Main("hw-gateway", []string{"--help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "--tls-cert") || errOut.Len() > 0 {
		t.Errorf("--help: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}
