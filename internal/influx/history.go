package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"hazardwatch/internal/store"
)

// History answers the API's history questions (SPEC §3's
// /sensors/{id}/history) from the reading measurement, with the answers
// of store.Store.History on the same readings: the same range, the same
// buckets, the same values counted.
//
// It asks with InfluxQL over the /query endpoint, the simplest on 1.8. On
// InfluxDB 2.x the same endpoint answers InfluxQL only for a bucket with a
// DBRP mapping (database and retention policy mapped to the bucket);
// Options.Bucket then names the mapped "database/retention-policy". Only
// 1.8 is tested here.
//
// Only good and uncertain values count, as in the store: the query keeps
// points whose quality field is not QualityBad, and a point without a
// value field (a reading that had none) has nothing to count. Buckets
// start at multiples of the step from the Unix epoch, InfluxQL's own
// alignment for GROUP BY time without an offset, which is the store's; a
// bucket cut by from or to holds only the values inside the range and is
// stamped with its aligned start, and fill(none) leaves empty buckets out.
type History struct {
	client  *http.Client
	url     string // the /query endpoint
	ping    string // the /ping endpoint
	token   string
	db, rp  string
	timeout time.Duration
}

// ErrUnavailable is wrapped by the errors of a History whose InfluxDB
// cannot answer for now: it cannot be reached, it does not answer within
// the request timeout, it breaks off an answer, or it answers with a 5xx
// status. The API answers them with 503; anything else (a 4xx answer such
// as wrong credentials, an answer it cannot read) is a failure.
var ErrUnavailable = errors.New("influx: InfluxDB unavailable")

// NewHistory makes a History on the server and bucket of o (URL, Token,
// Bucket and RequestTimeout; the rest is the writer's).
func NewHistory(o Options) (*History, error) {
	if o.URL == "" {
		return nil, errors.New("influx: Options.URL is required")
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	db, rp, _ := strings.Cut(o.Bucket, "/")
	if db == "" {
		return nil, fmt.Errorf("influx: bucket %q names no database", o.Bucket)
	}
	return &History{
		client:  &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		url:     strings.TrimRight(o.URL, "/") + "/query",
		ping:    strings.TrimRight(o.URL, "/") + "/ping",
		token:   o.Token,
		db:      db,
		rp:      rp,
		timeout: orDur(o.RequestTimeout, DefaultRequestTimeout),
	}, nil
}

// Close closes the idle connections to InfluxDB. A query after Close
// opens new ones.
func (h *History) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// History returns the sensor's readings in [from, to), as
// store.Store.History does: step 0 gives every value as a bucket of count
// 1, step > 0 buckets aligned to the step from the epoch. Errors wrap
// store.ErrBadRange for a bad range or step (the API answers 400),
// ErrUnavailable when InfluxDB cannot answer for now (503), and the
// context's error when it ends.
func (h *History) History(ctx context.Context, sensor string, from, to time.Time, step time.Duration) ([]store.Bucket, error) {
	if step < 0 || step%time.Millisecond != 0 {
		return nil, fmt.Errorf("%w: step %s", store.ErrBadRange, step)
	}
	if to.Before(from) {
		return nil, fmt.Errorf("%w: to %s before from %s", store.ErrBadRange, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	out := []store.Bucket{}
	// Whole milliseconds, as the store takes them: readings are stamped
	// in milliseconds, so [from, to) holds the same readings.
	fromMs, toMs := from.UnixMilli(), to.UnixMilli()
	if toMs <= fromMs {
		return out, nil
	}
	where := fmt.Sprintf(`WHERE "sensor" = %s AND "quality" <> %d AND time >= %dms AND time < %dms`,
		quoteString(sensor), QualityBad, fromMs, toMs)
	var q string
	if step == 0 {
		q = `SELECT "value" FROM "` + MeasurementReading + `" ` + where
	} else {
		q = fmt.Sprintf(`SELECT mean("value"), min("value"), max("value"), count("value") FROM "%s" %s GROUP BY time(%dms) fill(none)`,
			MeasurementReading, where, step.Milliseconds())
	}
	err := h.query(ctx, q, func(row []json.Number) error {
		if step == 0 {
			if len(row) != 2 {
				return fmt.Errorf("%d columns, want 2", len(row))
			}
			if row[1] == "" { // a point without a value field
				return nil
			}
			ts, v := parseTime(row[0]), parseFloat(row[1])
			if err := errors.Join(ts.err, v.err); err != nil {
				return err
			}
			out = append(out, store.Bucket{TS: ts.v, Mean: v.v, Min: v.v, Max: v.v, Count: 1})
			return nil
		}
		if len(row) != 5 {
			return fmt.Errorf("%d columns, want 5", len(row))
		}
		if row[4] == "" || row[4] == "0" { // a bucket of points without values
			return nil
		}
		ts, mean, lo, hi := parseTime(row[0]), parseFloat(row[1]), parseFloat(row[2]), parseFloat(row[3])
		n, err := strconv.Atoi(string(row[4]))
		if err = errors.Join(ts.err, mean.err, lo.err, hi.err, err); err != nil {
			return err
		}
		out = append(out, store.Bucket{TS: ts.v, Mean: mean.v, Min: lo.v, Max: hi.v, Count: n})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("influx: history %s: %w", sensor, err)
	}
	return out, nil
}

// query runs one InfluxQL statement, chunked (so the server's row limit
// for whole answers does not cut it short), and calls row for every row
// of its series in order. A null column is "".
func (h *History) query(parent context.Context, q string, row func([]json.Number) error) error {
	ctx, cancel := context.WithTimeout(parent, h.timeout)
	defer cancel()
	params := url.Values{"q": {q}, "db": {h.db}, "epoch": {"ms"}, "chunked": {"true"}, "chunk_size": {"10000"}}
	if h.rp != "" {
		params.Set("rp", h.rp)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	if h.token != "" {
		// 1.8 reads "Token user:password" as its credentials; 2.x an API token.
		req.Header.Set("Authorization", "Token "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return h.unavailable(parent, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	for {
		var chunk struct {
			Results []struct {
				Series []struct {
					Values [][]*json.Number `json:"values"`
				} `json:"series"`
				Error string `json:"error"`
			} `json:"results"`
			Error string `json:"error"`
		}
		if err := dec.Decode(&chunk); err == io.EOF {
			return nil
		} else if err != nil {
			var syntax *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if errors.As(err, &syntax) || errors.As(err, &typ) {
				return err
			}
			// The answer broke off: the connection, or the timeout.
			return h.unavailable(parent, err)
		}
		if chunk.Error != "" {
			return errors.New(chunk.Error)
		}
		for _, r := range chunk.Results {
			if r.Error != "" {
				return errors.New(r.Error)
			}
			for _, s := range r.Series {
				for _, vals := range s.Values {
					cols := make([]json.Number, len(vals))
					for i, v := range vals {
						if v != nil {
							cols[i] = *v
						}
					}
					if err := row(cols); err != nil {
						return err
					}
				}
			}
		}
	}
}

// unavailable wraps err, met while talking to InfluxDB, in ErrUnavailable;
// when the caller's own context ended (the client went away) it is the
// caller's doing, and err stays as it is.
func (h *History) unavailable(caller context.Context, err error) error {
	if caller.Err() != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Ping asks InfluxDB's /ping (1.8 and 2.x) whether it is up, within the
// request timeout, for the centre's readiness check; its errors wrap
// ErrUnavailable.
func (h *History) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.ping, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: /ping: %s", ErrUnavailable, resp.Status)
	}
	return nil
}

type parsed[T any] struct {
	v   T
	err error
}

func parseTime(n json.Number) parsed[int64] {
	v, err := strconv.ParseInt(string(n), 10, 64)
	return parsed[int64]{v, err}
}

// parseFloat reads InfluxDB's shortest decimal form of a float64, which
// gives back the very float written.
func parseFloat(n json.Number) parsed[float64] {
	v, err := strconv.ParseFloat(string(n), 64)
	return parsed[float64]{v, err}
}

// quoteString quotes s as an InfluxQL string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
