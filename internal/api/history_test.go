package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/influx"
	"hazardwatch/internal/store"
)

// historyFunc is a History that answers with a function.
type historyFunc func() ([]store.Bucket, error)

func (f historyFunc) History(context.Context, string, time.Time, time.Time, time.Duration) ([]store.Bucket, error) {
	return f()
}

// TestHistoryErrors: a history store that cannot answer for now (InfluxDB
// down, the store closing, a deadline) gives 503 with a JSON error that
// says history is unavailable; any other failure 500; each counted by
// reason.
func TestHistoryErrors(t *testing.T) {
	var answer error
	e := newEnv(t, func(o *Options) {
		o.History = historyFunc(func() ([]store.Bucket, error) { return nil, answer })
	})
	path := "/api/v1/sensors/" + e.sensorsOf("e01")[0] + "/history"
	for i, tt := range []struct {
		err      error
		code     int
		inError  string
		reason   string
		countNow float64
	}{
		{fmt.Errorf("influx: history s: %w: dial tcp: connection refused", influx.ErrUnavailable), http.StatusServiceUnavailable,
			"history unavailable: InfluxDB does not answer", historyUnavailable, 1},
		{store.ErrClosed, http.StatusServiceUnavailable, "history unavailable", historyUnavailable, 2},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, "history unavailable", historyUnavailable, 3},
		{errors.New("influx: history s: 401 Unauthorized"), http.StatusInternalServerError, "history query failed", historyFailed, 1},
	} {
		answer = tt.err
		// do checks that an error answer is {"error":…}.
		code, body := e.do("GET", path, "admin", "", nil)
		if code != tt.code || !strings.Contains(body, tt.inError) {
			t.Errorf("%d: %v: %d %s, want %d with %q", i, tt.err, code, body, tt.code, tt.inError)
		}
		if got := e.metric("hw_api_history_errors_total", "reason", tt.reason); got != tt.countNow {
			t.Errorf("%d: hw_api_history_errors_total{reason=%s} = %v, want %v", i, tt.reason, got, tt.countNow)
		}
	}
}

// TestReadyzOptional: a failing optional check (InfluxDB's) leaves
// /readyz 200 "degraded" and says which; with a required one failing too
// it is 503 "unavailable", naming only that one as the reason.
func TestReadyzOptional(t *testing.T) {
	influxDown := errors.New("influx: InfluxDB unavailable: dial tcp: connection refused")
	var natsDown error
	e := newEnv(t, func(o *Options) {
		o.Checks = []Check{
			{Name: "nats", Ready: func(context.Context) error { return natsDown }},
			{Name: "influxdb", Ready: func(context.Context) error { return influxDown }, Optional: true},
		}
	})
	code, body := e.do("GET", "/readyz", "missing", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || strings.Contains(body, `"error":"未就绪`) ||
		!strings.Contains(body, `{"name":"influxdb","ok":false,"optional":true,"error":"influx: InfluxDB unavailable: dial tcp: connection refused"}`) ||
		!strings.Contains(body, `{"name":"nats","ok":true}`) {
		t.Errorf("readyz with InfluxDB down: %d %s", code, body)
	}
	natsDown = errors.New("not connected")
	code, body = e.do("GET", "/readyz", "missing", "", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"unavailable","error":"未就绪 / not ready: nats"`) ||
		!strings.Contains(body, `"name":"influxdb","ok":false,"optional":true`) {
		t.Errorf("readyz with NATS and InfluxDB down: %d %s", code, body)
	}
	influxDown, natsDown = nil, nil
	if code, body := e.do("GET", "/readyz", "missing", "", nil); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) ||
		!strings.Contains(body, `{"name":"influxdb","ok":true,"optional":true}`) {
		t.Errorf("readyz with all up: %d %s", code, body)
	}
}
