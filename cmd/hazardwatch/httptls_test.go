package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/testpki"
)

// TestServeHTTPTLS: with --http-tls-cert and --http-tls-key the HTTP
// listener speaks TLS only: the API answers over TLS to a client trusting
// the CA, refuses TLS 1.1, and a plain HTTP request to the same port gets
// no API answer.
func TestServeHTTPTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	dataDir, httpAddr, mqttAddr, admin := newDataDir(t, "admin", "all", "tls")
	dir := t.TempDir()
	ca := testpki.NewCA(t, "hazardwatch test CA")
	certFile, keyFile := testpki.WriteFiles(t, dir, "server", ca.Server(t))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	startCentreWith(t, client, "https://"+httpAddr, dataDir, httpAddr, mqttAddr, "--http-tls-cert", certFile, "--http-tls-key", keyFile)

	req, _ := http.NewRequest(http.MethodGet, "https://"+httpAddr+"/api/v1/alarms", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"items":`) || res.TLS == nil || res.TLS.NegotiatedProtocol == "h2" {
		t.Fatalf("over TLS: %d %s (TLS state %v)", res.StatusCode, body, res.TLS != nil)
	}

	old := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", httpAddr, old); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// Plain HTTP: Go's server answers a bare 400 that names the mistake,
	// never the API.
	conn, err := net.DialTimeout("tcp", httpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: "+httpAddr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	plain, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("plain HTTP on the TLS port: %v, want the server's 400", err)
	}
	b, _ := io.ReadAll(plain.Body)
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
		t.Errorf("plain HTTP on the TLS port: %d %s, want a 400 naming HTTPS and no API answer", plain.StatusCode, b)
	}
}

// TestServeHTTPTLSFlags: the certificate and key go together, and a file
// that cannot be read is named with its flag.
func TestServeHTTPTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	cert, key := testpki.WriteFiles(t, dir, "server", ca.Server(t))
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"--http-tls-cert", cert}, exitUsage, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--http-tls-key", key}, exitUsage, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--http-tls-cert", missing, "--http-tls-key", key}, exitFailure, "--http-tls-cert: open " + missing},
		{[]string{"--http-tls-cert", cert, "--http-tls-key", missing}, exitFailure, "--http-tls-key: open " + missing},
		{[]string{"--http-tls-cert", cert, "--http-tls-key", cert}, exitFailure, "--http-tls-cert " + cert + ", --http-tls-key " + cert + ":"},
	} {
		code, _, errOut := runCmd(append([]string{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("serve %v: exit %d, %q; want %d and %q", tt.args, code, errOut, tt.code, tt.wantErr)
		}
	}
}
