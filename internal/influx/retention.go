package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultRetention is how long InfluxDB keeps what the writer writes when
// EnsureBucket creates the retention policy: DOMAIN.md's 30 days.
const DefaultRetention = 30 * 24 * time.Hour

// MinRetention is InfluxDB 1.8's shortest retention policy duration.
const MinRetention = time.Hour

// Errors of the InfluxQL statements of EnsureBucket, for its own use.
var (
	errForbidden = errors.New("not authorised")
	errNotV1     = errors.New("not an InfluxDB 1.x server")
	errRefused   = errors.New("refused")
)

// EnsureBucket makes sure that the bucket of o exists on an InfluxDB 1.x
// server with a retention policy, so that the writer has somewhere to write
// and what it writes is kept Options.Retention (default 30 days), not for
// ever as 1.x's autogen policy does:
//
//   - a database that does not exist is created with the bucket's policy
//     as its default: CREATE DATABASE "db" WITH DURATION d REPLICATION 1
//     NAME "rp" (autogen when the bucket names no policy);
//   - a policy that does not exist in an existing database is created as
//     its default: CREATE RETENTION POLICY "rp" ON "db" DURATION d
//     REPLICATION 1 DEFAULT;
//   - an existing policy is left as it is, unless Options.AlterRetention
//     asks for ALTER RETENTION POLICY "rp" ON "db" DURATION d.
//
// On InfluxDB 2.x (the /ping version is 2 or more, or the server refuses
// these statements as unsupported) the retention is the bucket's own
// setting: EnsureBucket logs so and returns nil. Without the rights to look
// or create (authentication failed, or a user who is not an admin) it logs
// a warning and returns nil: the writer retries its writes until the bucket
// is there. It returns an error only when the server could not be asked
// (down, unreachable, a 5xx), for the caller to try again later; a
// statement it refuses for another reason is logged as an error.
func EnsureBucket(ctx context.Context, o Options) error {
	if o.URL == "" {
		return errors.New("influx: Options.URL is required")
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want := orDur(o.Retention, DefaultRetention)
	db, rp, _ := strings.Cut(o.Bucket, "/")
	if db == "" {
		return fmt.Errorf("influx: bucket %q names no database", o.Bucket)
	}
	q := &ql{client: &http.Client{Timeout: orDur(o.RequestTimeout, DefaultRequestTimeout)},
		url: strings.TrimRight(o.URL, "/"), token: o.Token}
	defer q.client.CloseIdleConnections()

	err := q.ensure(ctx, log, db, rp, want, o.AlterRetention)
	switch {
	case errors.Is(err, errNotV1):
		log.Info("InfluxDB is not 1.x: the retention of what is written there is the bucket's own setting (DOMAIN.md asks for at least 30 days)",
			"bucket", o.Bucket, "detail", err)
		return nil
	case errors.Is(err, errForbidden):
		log.Warn("could not check or create the InfluxDB database and retention policy: the credentials lack the rights "+
			"(an admin creates them, or create them yourself); writes are retried until the bucket exists",
			"bucket", o.Bucket, "retention", want, "err", err)
		return nil
	case errors.Is(err, errRefused):
		log.Error("InfluxDB refused to set up the database or retention policy; writes are retried until the bucket exists",
			"bucket", o.Bucket, "retention", want, "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("influx: checking the database and retention policy of %q: %w", o.Bucket, err)
	}
	return nil
}

func (q *ql) ensure(ctx context.Context, log *slog.Logger, db, rp string, want time.Duration, alter bool) error {
	version, err := q.ping(ctx)
	if err != nil {
		return err
	}
	// A release number other than 1.x is 2.x or later; no number at all
	// (influxd built from source says "unknown") decides nothing, the
	// statements' answers do.
	if v := strings.TrimPrefix(version, "v"); v != "" && v[0] >= '0' && v[0] <= '9' && !strings.HasPrefix(v, "1.") {
		return fmt.Errorf("%w: version %s", errNotV1, version)
	}
	dbs, err := q.run(ctx, "", "SHOW DATABASES")
	if err != nil {
		return err
	}
	exists := false
	for _, s := range dbs {
		for _, row := range s.Values {
			if len(row) > 0 && row[0] == db {
				exists = true
			}
		}
	}
	d := durationLit(want)
	if !exists {
		name := rp
		if name == "" {
			name = "autogen"
		}
		stmt := fmt.Sprintf("CREATE DATABASE %s WITH DURATION %s REPLICATION 1 NAME %s", quoteIdent(db), d, quoteIdent(name))
		if _, err := q.run(ctx, "", stmt); err != nil {
			return err
		}
		log.Info("created the InfluxDB database with its retention policy", "database", db, "retention_policy", name, "duration", want)
		return nil
	}
	rps, err := q.run(ctx, "", "SHOW RETENTION POLICIES ON "+quoteIdent(db))
	if err != nil {
		return err
	}
	var have *policy
	for _, s := range rps {
		for _, row := range s.Values {
			p, ok := parsePolicy(s.Columns, row)
			if ok && (p.name == rp || rp == "" && p.isDefault) {
				have = &p
			}
		}
	}
	if have == nil {
		if rp == "" {
			// A database without a default policy: the writer's points have
			// nowhere to go; say so rather than guess a policy for it.
			log.Warn("the InfluxDB database has no default retention policy; name one in the bucket (database/policy)", "database", db)
			return nil
		}
		stmt := fmt.Sprintf("CREATE RETENTION POLICY %s ON %s DURATION %s REPLICATION 1 DEFAULT", quoteIdent(rp), quoteIdent(db), d)
		if _, err := q.run(ctx, "", stmt); err != nil {
			return err
		}
		log.Info("created the InfluxDB retention policy as the database's default", "database", db, "retention_policy", rp, "duration", want)
		return nil
	}
	if have.duration == want {
		log.Info("InfluxDB retention policy in place", "database", db, "retention_policy", have.name, "duration", want)
		return nil
	}
	if alter {
		stmt := fmt.Sprintf("ALTER RETENTION POLICY %s ON %s DURATION %s", quoteIdent(have.name), quoteIdent(db), d)
		if _, err := q.run(ctx, "", stmt); err != nil {
			return err
		}
		log.Info("changed the duration of the InfluxDB retention policy", "database", db, "retention_policy", have.name,
			"from", durationText(have.duration), "to", want)
		return nil
	}
	attrs := []any{"database", db, "retention_policy", have.name, "duration", durationText(have.duration), "asked", want}
	if have.duration != 0 && have.duration < DefaultRetention {
		log.Warn("the existing InfluxDB retention policy keeps data less than the 30 days DOMAIN.md asks for; left as it is "+
			"(--influx-alter-retention changes it)", attrs...)
	} else {
		log.Info("the existing InfluxDB retention policy is left as it is (--influx-alter-retention changes it)", attrs...)
	}
	return nil
}

// policy is a row of SHOW RETENTION POLICIES.
type policy struct {
	name      string
	duration  time.Duration // 0: for ever
	isDefault bool
}

func parsePolicy(cols []string, row []any) (policy, bool) {
	var p policy
	for i, c := range cols {
		if i >= len(row) {
			break
		}
		switch c {
		case "name":
			p.name, _ = row[i].(string)
		case "duration":
			s, _ := row[i].(string)
			d, err := time.ParseDuration(s)
			if err != nil {
				return p, false
			}
			p.duration = d
		case "default":
			p.isDefault, _ = row[i].(bool)
		}
	}
	return p, p.name != ""
}

// durationLit is d as an InfluxQL duration literal: whole hours when it is
// in hours, seconds otherwise.
func durationLit(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
}

func durationText(d time.Duration) string {
	if d == 0 {
		return "infinite"
	}
	return d.String()
}

// ql runs InfluxQL statements on a 1.x /query endpoint.
type ql struct {
	client *http.Client
	url    string
	token  string
}

type qlSeries struct {
	Columns []string `json:"columns"`
	Values  [][]any  `json:"values"`
}

// ping returns the server's version (X-Influxdb-Version; "" when it gives
// none).
func (q *ql) ping(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.url+"/ping", nil)
	if err != nil {
		return "", err
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 500 {
		return "", fmt.Errorf("/ping: %s", resp.Status)
	}
	return resp.Header.Get("X-Influxdb-Version"), nil
}

// run runs one statement (POST, as 1.x wants for those that change
// anything) and returns the series of its result. Authorisation failures
// wrap errForbidden, statements the server does not support errNotV1.
func (q *ql) run(ctx context.Context, db, stmt string) ([]qlSeries, error) {
	form := url.Values{"q": {stmt}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if q.token != "" {
		// 1.8 reads "Token user:password" as its credentials.
		req.Header.Set("Authorization", "Token "+q.token)
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []struct {
			Series []qlSeries `json:"series"`
			Error  string     `json:"error"`
		} `json:"results"`
		Error   string `json:"error"`
		Message string `json:"message"` // 2.x's error body
	}
	decErr := json.Unmarshal(body, &out)
	msg := out.Error + out.Message
	if decErr == nil && msg == "" && len(out.Results) > 0 {
		msg = out.Results[0].Error
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		strings.Contains(msg, "authoriz") || strings.Contains(msg, "requires admin"):
		return nil, fmt.Errorf("%s: %w (%s %s)", stmt, errForbidden, resp.Status, strings.TrimSpace(msg))
	case resp.StatusCode == http.StatusNotFound || strings.Contains(msg, "not implemented") ||
		strings.Contains(msg, "not supported") || strings.Contains(msg, "unsupported"):
		return nil, fmt.Errorf("%s: %w (%s %s)", stmt, errNotV1, resp.Status, strings.TrimSpace(msg))
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%s: %s %s", stmt, resp.Status, strings.TrimSpace(string(body)))
	case resp.StatusCode >= 300:
		return nil, fmt.Errorf("%s: %w: %s %s", stmt, errRefused, resp.Status, strings.TrimSpace(string(body)))
	case decErr != nil:
		return nil, fmt.Errorf("%s: %w", stmt, decErr)
	case msg != "":
		return nil, fmt.Errorf("%s: %w: %s", stmt, errRefused, msg)
	case len(out.Results) == 0:
		return nil, fmt.Errorf("%s: no result", stmt)
	}
	return out.Results[0].Series, nil
}

func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
