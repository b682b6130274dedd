package centre

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"hazardwatch/ingest"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/store"
)

// TestInfluxHistory runs a centre with InfluxDB configured: readings go
// through the real pipeline into both the embedded store and InfluxDB, and
// the API's history (which reads InfluxDB) answers what the store holds,
// bad readings left out. A point written to InfluxDB alone then shows in
// the API's answer: the API reads InfluxDB, not the store.
func TestInfluxHistory(t *testing.T) {
	e := newInfluxEnv(t)
	p := e.cfg.Plant
	s := &p.Sensors[0]
	// Real time: the pipeline stores readings relative to the newest it
	// has seen, and the API's default range ends now.
	ts0 := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	var rs []ingest.Reading
	good := 0
	for i := range 40 {
		r := ingest.Reading{Sensor: []byte(s.ID), TS: ts0 + int64(i)*500, Value: 10 + math.Cos(float64(i)*0.7), HasValue: true}
		switch {
		case i%7 == 3:
			r.Quality, r.Reason, r.Value = model.Bad, model.ReasonDeviceFault, 999
		case i%11 == 5:
			r.Quality, r.Reason = model.Uncertain, model.ReasonOutOfRange
		}
		if r.Quality != model.Bad {
			good++
		}
		rs = append(rs, r)
	}
	e.publish([]ingest.Entry{{Gateway: []byte(p.Gateways[s.Gateway].ID), Enterprise: []byte(p.Enterprises[s.Enterprise].ID),
		Boot: []byte("boot-1"), Seq: 1, Received: time.Now().UnixMilli(), Readings: rs}})

	ctx := context.Background()
	from, to := time.UnixMilli(ts0-1000), time.UnixMilli(ts0+30_000)
	e.waitCount(`SELECT count(quality) FROM reading WHERE sensor='`+s.ID+`'`, int64(len(rs)))
	poll.Until(t, "the store to hold the readings", waitLong, func() bool {
		bs, err := e.c.hist.History(ctx, s.ID, from, to, 0)
		return err == nil && len(bs) == good
	})

	admin, _, err := e.c.Tokens().Create("history test", auth.Admin, auth.Scope{Kind: "all"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []time.Duration{0, time.Second, 7 * time.Second, time.Minute} {
		want, err := e.c.hist.History(ctx, s.ID, from, to, step)
		if err != nil {
			t.Fatal(err)
		}
		got := apiHistory(t, e.c.HTTPAddr(), admin, s.ID, from, to, step)
		if len(got) != len(want) {
			t.Fatalf("step %s: the API answered %d buckets, the store holds %d", step, len(got), len(want))
		}
		for i := range want {
			w, g := want[i], got[i]
			// Means within a relative 1e-12: InfluxDB may add the same
			// values in another grouping (see the influx package's
			// agreement test); everything else is exact.
			if w.TS != g.TS || w.Count != g.Count || w.Min != g.Min || w.Max != g.Max || math.Abs(w.Mean-g.Mean) > 1e-12*math.Abs(w.Mean) {
				t.Fatalf("step %s: bucket %d is %+v, the store's %+v", step, i, g, w)
			}
			if g.Max == 999 {
				t.Fatalf("step %s: a bad reading's value was counted: %+v", step, g)
			}
		}
	}

	// A point in InfluxDB alone, after the readings.
	extra := ts0 + 25_000
	line := fmt.Sprintf("reading,sensor=%s value=12345,quality=0i %d", s.ID, extra)
	req, err := http.NewRequest(http.MethodPost, e.influx.URL()+"/write?db="+influxDB+"&precision=ms", strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left for the leak check
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write to InfluxDB: %s", resp.Status)
	}
	got := apiHistory(t, e.c.HTTPAddr(), admin, s.ID, time.UnixMilli(extra), time.UnixMilli(extra+1000), 0)
	if len(got) != 1 || got[0].TS != extra || got[0].Mean != 12345 {
		t.Errorf("the API's history after a point written to InfluxDB alone: %+v, want that point", got)
	}
}

// apiGet asks the centre's API for path as token and decodes the answer,
// which must be 200 OK, into out.
func apiGet(t *testing.T, addr, token, path string, out any) {
	t.Helper()
	if code, msg := apiCall(t, addr, token, http.MethodGet, path, "", out); code != http.StatusOK {
		t.Fatalf("GET %s: %d: %s", path, code, msg)
	}
}

// apiCall sends one request to the centre's API and decodes a 200's body
// into out; it returns the status and, for an error, its message.
func apiCall(t *testing.T, addr, token, method, path, body string, out any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode, ""
}

// apiHistory asks the centre's API for a sensor's history.
func apiHistory(t *testing.T, addr, token, sensor string, from, to time.Time, step time.Duration) []store.Bucket {
	t.Helper()
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	if step > 0 {
		q.Set("step", step.String())
	}
	var body struct {
		Items []struct {
			TS             time.Time
			Mean, Min, Max float64
			Count          int
		}
	}
	apiGet(t, addr, token, "/api/v1/sensors/"+url.PathEscape(sensor)+"/history?"+q.Encode(), &body)
	out := make([]store.Bucket, len(body.Items))
	for i, it := range body.Items {
		out[i] = store.Bucket{TS: it.TS.UnixMilli(), Mean: it.Mean, Min: it.Min, Max: it.Max, Count: it.Count}
	}
	return out
}
