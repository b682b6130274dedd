// Package influxtest runs a real InfluxDB 1.8 server (influxd) for tests:
// on free loopback ports, in the test's temporary directory, stopped when
// the test ends. ./test.sh builds influxd once into the cache and names it
// in HAZARDWATCH_INFLUXD; without it, and without the cached build, the
// tests that need it skip and say how to get it.
package influxtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Version is the InfluxDB release the tests run against.
const Version = "1.8.10"

// EnvBinary names the influxd binary to run; ./test.sh sets it.
const EnvBinary = "HAZARDWATCH_INFLUXD"

// Deadlines: influxd takes a few seconds to open its stores on a loaded
// 2-core machine; waits poll, so a fast machine never pays them.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	pollStep     = 20 * time.Millisecond
)

// CachedBinary is where ./test.sh builds influxd:
// ${XDG_CACHE_HOME:-$HOME/.cache}/hazardwatch/influxd-1.8.10/influxd.
func CachedBinary() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "hazardwatch", "influxd-"+Version, "influxd")
}

// Binary returns the influxd to run: $HAZARDWATCH_INFLUXD, else the cached
// build when it is there, else "".
func Binary() string {
	if b := os.Getenv(EnvBinary); b != "" {
		return b
	}
	if b := CachedBinary(); b != "" {
		if st, err := os.Stat(b); err == nil && !st.IsDir() {
			return b
		}
	}
	return ""
}

// Server is a running influxd.
type Server struct {
	t        testing.TB
	bin, dir string
	httpAddr string
	rpcAddr  string
	cmd      *exec.Cmd
	exited   chan struct{}
	logPath  string
	// admin: with authentication on, Query's credentials ("" when off).
	admin, password string
}

// Start starts influxd with its data under t.TempDir and stops it at the
// end of t. It skips t when there is no influxd (see Binary).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "", "")
}

// StartAuth is Start with authentication on and an admin user (with all
// privileges) named admin with password, whose credentials Query uses.
func StartAuth(t testing.TB, admin, password string) *Server {
	t.Helper()
	s := start(t, admin, password)
	// The first user may be created without credentials, and only an admin.
	form := url.Values{"q": {"CREATE USER " + quoteIdent(admin) + " WITH PASSWORD " + quoteString(password) + " WITH ALL PRIVILEGES"}}
	resp, err := http.PostForm(s.URL()+"/query", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("influxd: creating the admin user: %s %s", resp.Status, body)
	}
	return s
}

func start(t testing.TB, admin, password string) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skipf("needs InfluxDB %s: ./test.sh builds it into %s, or build it yourself with "+
			"GOBIN=DIR go install github.com/influxdata/influxdb/cmd/influxd@v%s and set %s=DIR/influxd",
			Version, filepath.Dir(CachedBinary()), Version, EnvBinary)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v", EnvBinary, bin, err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), admin: admin, password: password}
	s.logPath = filepath.Join(s.dir, "influxd.log")
	t.Cleanup(s.Stop)
	// A free port found here may be taken by someone else before influxd
	// binds it: try again on new ports when that happens.
	for try := 1; ; try++ {
		s.httpAddr, s.rpcAddr = freeAddr(t), freeAddr(t)
		err := s.start()
		if err == nil {
			return s
		}
		if try == 3 || !strings.Contains(s.logTail(), "address already in use") {
			t.Fatalf("influxd: %v\n%s", err, s.logTail())
		}
	}
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs influxd and waits until /ping answers.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "run")
	cmd.Env = append(os.Environ(),
		"INFLUXDB_BIND_ADDRESS="+s.rpcAddr,
		"INFLUXDB_HTTP_BIND_ADDRESS="+s.httpAddr,
		"INFLUXDB_META_DIR="+filepath.Join(s.dir, "meta"),
		"INFLUXDB_DATA_DIR="+filepath.Join(s.dir, "data"),
		"INFLUXDB_DATA_WAL_DIR="+filepath.Join(s.dir, "wal"),
		"INFLUXDB_HTTP_FLUX_ENABLED=true",
		"INFLUXDB_REPORTING_DISABLED=true",
		"INFLUXDB_HTTP_LOG_ENABLED=false",
		"INFLUXDB_DATA_QUERY_LOG_ENABLED=false",
		"INFLUXDB_MONITOR_STORE_ENABLED=false",
		"INFLUXDB_LOGGING_LEVEL=warn",
		fmt.Sprintf("INFLUXDB_HTTP_AUTH_ENABLED=%t", s.admin != ""),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("exited while starting (%v)", cmd.ProcessState)
		case <-time.After(pollStep):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("no answer to /ping within %s", startTimeout)
		}
	}
}

// URL is the server's HTTP address, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return "http://" + s.httpAddr }

// Dir is where influxd keeps its data and log.
func (s *Server) Dir() string { return s.dir }

// Stop stops influxd (SIGTERM, then SIGKILL after a deadline) and waits
// for it; its data stays, and Restart starts it again on the same ports.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Logf("influxd did not stop within %s; killing it", stopTimeout)
		s.kill()
	}
	s.cmd = nil
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts a stopped server again on its ports, with its data.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("influxtest: Restart of a running server")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("influxd restart: %v\n%s", err, s.logTail())
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// CreateDatabase creates database db (InfluxDB 1.x: the /api/v2 write
// endpoint writes only to a database that exists).
func (s *Server) CreateDatabase(db string) {
	s.t.Helper()
	if _, err := s.Query("", "CREATE DATABASE "+quoteIdent(db)); err != nil {
		s.t.Fatal(err)
	}
}

// Series is one series of an InfluxQL result.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Query runs an InfluxQL statement against database db ("" for none)
// and returns the series of its first result. Numbers come as
// json.Number.
func (s *Server) Query(db, q string) ([]Series, error) {
	form := url.Values{"q": {q}, "epoch": {"ms"}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.admin != "" {
		req.SetBasicAuth(s.admin, s.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("influxql %q: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("influxql %q: %w", q, err)
	}
	var out struct {
		Results []struct {
			Series []Series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("influxql %q: %s: %w", q, resp.Status, err)
	}
	switch {
	case out.Error != "":
		return nil, fmt.Errorf("influxql %q: %s", q, out.Error)
	case len(out.Results) == 0:
		return nil, errors.New("influxql: no result")
	case out.Results[0].Error != "":
		return nil, fmt.Errorf("influxql %q: %s", q, out.Results[0].Error)
	}
	return out.Results[0].Series, nil
}

// Count returns the result of a query selecting one count, e.g.
// SELECT count(quality) FROM reading; 0 when there are no points.
func (s *Server) Count(db, q string) (int64, error) {
	series, err := s.Query(db, q)
	if err != nil {
		return 0, err
	}
	if len(series) == 0 || len(series[0].Values) == 0 || len(series[0].Values[0]) < 2 {
		return 0, nil
	}
	n, ok := series[0].Values[0][1].(json.Number)
	if !ok {
		return 0, fmt.Errorf("influxql %q: count is %T", q, series[0].Values[0][1])
	}
	return n.Int64()
}

// Int returns a number of a Query result (a json.Number) as an integer,
// failing t when it is not one.
func Int(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v is %T, not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
