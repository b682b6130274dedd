package centre

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"hazardwatch/internal/config"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/testlog"
)

// startWithInflux starts a centre writing to srv with token and returns it
// with its log.
func startWithInflux(t *testing.T, srv *influxtest.Server, token string, retention time.Duration) (*Centre, *testlog.Buffer) {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	c, err := Start(context.Background(), Options{
		Config: cfg, DataDir: t.TempDir(), MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Influx: influx.Options{URL: srv.URL(), Token: token, Bucket: influxDB + "/autogen", Retention: retention,
			FlushInterval: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
			RequestTimeout: 2 * time.Second},
	})
	if err != nil {
		t.Fatalf("centre: %v\n%s", err, logs)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, logs
}

// TestInfluxCreatesBucket: a centre started on a fresh InfluxDB 1.8.10
// creates the bucket's database with a 30-day policy; a shorter retention
// is logged as below DOMAIN.md's 30 days.
func TestInfluxCreatesBucket(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	srv := influxtest.Start(t)
	_, logs := startWithInflux(t, srv, "", 0)
	series, err := srv.Query("", `SHOW RETENTION POLICIES ON "`+influxDB+`"`)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	if len(series) != 1 || len(series[0].Values) != 1 || series[0].Values[0][0] != "autogen" || series[0].Values[0][1] != "720h0m0s" {
		t.Fatalf("policies %+v, want autogen 720h0m0s\n%s", series, logs)
	}
	if strings.Contains(logs.String(), "shorter than the 30 days") {
		t.Errorf("a warning about the default retention:\n%s", logs)
	}

	srv2 := influxtest.Start(t)
	_, logs = startWithInflux(t, srv2, "", 24*time.Hour)
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "shorter than the 30 days DOMAIN.md asks for") {
		t.Errorf("no warning about a 24h retention:\n%s", logs)
	}
}

// TestInfluxBucketWithoutRights: credentials InfluxDB refuses do not stop
// the centre: it starts, logs that it could not create the bucket, and
// keeps running.
func TestInfluxBucketWithoutRights(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	srv := influxtest.StartAuth(t, "admin", "s3cret")
	c, logs := startWithInflux(t, srv, "admin:wrong", 0)
	if !strings.Contains(logs.String(), "lack the rights") {
		t.Fatalf("no warning about the rights:\n%s", logs)
	}
	select {
	case err := <-c.Err():
		t.Fatalf("the centre stopped: %v\n%s", err, logs)
	case <-time.After(500 * time.Millisecond):
	}
}
