package influx

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testlog"
)

// newLogBuf is a logger whose output the test reads.
func newLogBuf() (*testlog.Buffer, *slog.Logger) {
	l := &testlog.Buffer{}
	return l, l.Logger(slog.LevelInfo)
}

// policies returns the retention policies of db on srv: name → duration,
// and the name of the default one.
func policies(t *testing.T, srv *influxtest.Server, db string) (map[string]string, string) {
	t.Helper()
	series, err := srv.Query("", "SHOW RETENTION POLICIES ON "+quoteIdent(db))
	if err != nil {
		t.Fatal(err)
	}
	out, def := map[string]string{}, ""
	for _, s := range series {
		for _, row := range s.Values {
			p, ok := parsePolicy(s.Columns, row)
			if !ok {
				t.Fatalf("row %v of %v", row, s.Columns)
			}
			out[p.name] = durationText(p.duration)
			if p.isDefault {
				def = p.name
			}
		}
	}
	return out, def
}

// TestEnsureBucket runs EnsureBucket against a real InfluxDB 1.8.10: a
// missing database is created with the bucket's policy and duration, a
// missing policy is created in an existing database, an existing policy is
// left as it is unless AlterRetention asks, and the writer then writes to
// a database it created.
func TestEnsureBucket(t *testing.T) {
	srv := influxtest.Start(t)
	ctx := context.Background()
	ensure := func(o Options) string {
		t.Helper()
		l, log := newLogBuf()
		o.URL, o.Logger = srv.URL(), log
		if err := EnsureBucket(ctx, o); err != nil {
			t.Fatal(err)
		}
		return l.String()
	}

	// A fresh server, the default bucket's policy name: autogen with 30 days.
	log := ensure(Options{Bucket: "fresh/autogen"})
	if ps, def := policies(t, srv, "fresh"); ps["autogen"] != "720h0m0s" || def != "autogen" || len(ps) != 1 {
		t.Fatalf("fresh: policies %v, default %q; want autogen 720h0m0s only", ps, def)
	}
	if !strings.Contains(log, "created the InfluxDB database") {
		t.Errorf("fresh: log %s", log)
	}
	// Again: nothing to do.
	if log := ensure(Options{Bucket: "fresh/autogen"}); !strings.Contains(log, "retention policy in place") {
		t.Errorf("again: log %s", log)
	}
	// A fresh database with a named policy and a duration of its own.
	ensure(Options{Bucket: "named/month", Retention: 48 * time.Hour})
	if ps, def := policies(t, srv, "named"); ps["month"] != "48h0m0s" || def != "month" || len(ps) != 1 {
		t.Fatalf("named: policies %v, default %q; want month 48h0m0s only", ps, def)
	}

	// An existing database (autogen for ever) without the bucket's policy.
	srv.CreateDatabase("old")
	ensure(Options{Bucket: "old/month"})
	if ps, def := policies(t, srv, "old"); ps["month"] != "720h0m0s" || ps["autogen"] != "infinite" || def != "month" {
		t.Fatalf("old: policies %v, default %q; want month 720h0m0s (default) and autogen infinite", ps, def)
	}
	// An existing policy is left as it is...
	log = ensure(Options{Bucket: "old/autogen"})
	if ps, _ := policies(t, srv, "old"); ps["autogen"] != "infinite" {
		t.Fatalf("old/autogen was changed: %v", ps)
	}
	if !strings.Contains(log, "left as it is") {
		t.Errorf("old/autogen: log %s", log)
	}
	// ...unless AlterRetention asks.
	ensure(Options{Bucket: "old/autogen", AlterRetention: true, Retention: 31 * 24 * time.Hour})
	if ps, _ := policies(t, srv, "old"); ps["autogen"] != "744h0m0s" || ps["month"] != "720h0m0s" {
		t.Fatalf("old/autogen altered: %v; want autogen 744h0m0s, month untouched", ps)
	}
	// A bucket without a policy: the database's default one.
	srv.CreateDatabase("plain")
	if log := ensure(Options{Bucket: "plain"}); !strings.Contains(log, "left as it is") {
		t.Errorf("plain: log %s", log)
	}

	// The writer writes to a database EnsureBucket created.
	w := runWriter(t, Options{URL: srv.URL(), Bucket: "fresh/autogen", Plant: demoPlant(t), FlushInterval: 20 * time.Millisecond})
	if err := w.AddAlarmEvents([]AlarmEvent{{Time: time.Now(), Sensor: "s", Event: "raised", AlarmID: "a1"}}, nil); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the alarm event in the database EnsureBucket created", 30*time.Second, func() bool {
		n, err := srv.Count("fresh", `SELECT count("alarm_id") FROM "alarm_event"`)
		if err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Fatalf("%d alarm events in the created database, want 1", n)
		}
		return n == 1
	})
}

// TestEnsureBucketAuth: without the rights to create (a wrong password,
// a user who is not an admin) EnsureBucket logs a warning and returns nil;
// an admin's credentials create the bucket.
func TestEnsureBucketAuth(t *testing.T) {
	srv := influxtest.StartAuth(t, "admin", "s3cret")
	if _, err := srv.Query("", `CREATE USER "writer" WITH PASSWORD 'w'`); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"admin:wrong", "writer:w", ""} {
		l, log := newLogBuf()
		err := EnsureBucket(context.Background(), Options{URL: srv.URL(), Token: token, Bucket: "hw/autogen", Logger: log})
		if err != nil {
			t.Fatalf("token %q: %v", token, err)
		}
		if !strings.Contains(l.String(), "level=WARN") || !strings.Contains(l.String(), "lack the rights") {
			t.Errorf("token %q: log %s", token, l.String())
		}
	}
	if hasDatabase(t, srv, "hw") {
		t.Fatal("a database was created without the rights")
	}
	if err := EnsureBucket(context.Background(), Options{URL: srv.URL(), Token: "admin:s3cret", Bucket: "hw/autogen"}); err != nil {
		t.Fatal(err)
	}
	if ps, _ := policies(t, srv, "hw"); ps["autogen"] != "720h0m0s" {
		t.Fatalf("admin: policies %v", ps)
	}
}

func hasDatabase(t *testing.T, srv *influxtest.Server, db string) bool {
	t.Helper()
	series, err := srv.Query("", "SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range series {
		for _, row := range s.Values {
			if len(row) > 0 && row[0] == db {
				return true
			}
		}
	}
	return false
}

// TestEnsureBucketOther: an InfluxDB 2.x (by its /ping version, or by
// refusing the statements) is logged and left alone; a server that cannot
// be reached is an error, for the caller to try again.
func TestEnsureBucketOther(t *testing.T) {
	var created bool
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			w.Header().Set("X-Influxdb-Version", "v2.7.11")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		created = true
		w.WriteHeader(http.StatusOK)
	}))
	defer v2.Close()
	noVersion := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ping":
			w.WriteHeader(http.StatusNoContent)
		case r.FormValue("q") == "SHOW DATABASES":
			_, _ = w.Write([]byte(`{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"]}]}]}`))
		default:
			_, _ = w.Write([]byte(`{"results":[{"statement_id":0,"error":"not implemented: CREATE DATABASE"}]}`))
		}
	}))
	defer noVersion.Close()
	for _, url := range []string{v2.URL, noVersion.URL} {
		l, log := newLogBuf()
		if err := EnsureBucket(context.Background(), Options{URL: url, Logger: log}); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if !strings.Contains(l.String(), "the bucket's own setting") {
			t.Errorf("%s: log %s", url, l.String())
		}
	}
	if created {
		t.Error("EnsureBucket sent a statement to a 2.x server")
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	if err := EnsureBucket(context.Background(), Options{URL: down.URL, RequestTimeout: time.Second}); err == nil {
		t.Error("EnsureBucket on a closed port: no error")
	}
}
