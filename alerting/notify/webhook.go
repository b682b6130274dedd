package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookOptions configure NewWebhook.
type WebhookOptions struct {
	// Name names the notifier; default "webhook". Two webhooks need two
	// names.
	Name string
	// URL receives the POSTs; http or https.
	URL string
	// Header is sent with every request, e.g. Authorization: Bearer ….
	Header http.Header
	// Timeout bounds one attempt, from connecting to the answer read;
	// default 10 s.
	Timeout time.Duration
	// Client sends the requests; default a client of its own (Close
	// closes its idle connections).
	Client *http.Client
	// Clock is the "now" a Retry-After date is counted from; default
	// time.Now.
	Clock func() time.Time
}

// DefaultWebhookTimeout is WebhookOptions.Timeout's default.
const DefaultWebhookTimeout = 10 * time.Second

// WebhookVersion is the version of the JSON body; a receiver refuses one it
// does not know rather than misread it.
const WebhookVersion = 1

// Webhook posts each message as JSON (the package doc shows the body).
// A 2xx answer is success; 408, 429, 5xx and network errors are worth a
// retry, other answers are not; a Retry-After (seconds or an HTTP date) is
// honoured through StatusError.Delay.
type Webhook struct {
	o      WebhookOptions
	url    string
	client *http.Client
	own    bool
}

// NewWebhook checks o and returns the notifier.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("notify: webhook URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("notify: webhook URL %q: want http:// or https:// and a host", o.URL)
	}
	if o.Name == "" {
		o.Name = "webhook"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultWebhookTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	w := &Webhook{o: o, url: u.String(), client: o.Client}
	if w.client == nil {
		w.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		w.own = true
	}
	return w, nil
}

// Name implements Notifier.
func (w *Webhook) Name() string { return w.o.Name }

// Close closes the idle connections of the webhook's own client.
func (w *Webhook) Close() {
	if w.own {
		w.client.CloseIdleConnections()
	}
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Code int
	// Body is the start of the answer, for the log.
	Body string
	// RetryAfter is what the answer's Retry-After asked for; 0 if nothing.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Delay is the wait the receiver asked for before the next try.
func (e *StatusError) Delay() time.Duration { return e.RetryAfter }

// Retryable reports whether a status is worth another try: a timeout
// (408), too many requests (429) and server errors.
func Retryable(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// Notify implements Notifier.
func (w *Webhook) Notify(ctx context.Context, m Message) (bool, error) {
	body, err := json.Marshal(webhookBody(m))
	if err != nil {
		return false, fmt.Errorf("webhook body: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	for k, vs := range w.o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "hazardwatch")
	req.Header.Set("Idempotency-Key", m.ID)
	resp, err := w.client.Do(req)
	if err != nil {
		// Refused, reset, timed out, DNS: the receiver may be back soon.
		return true, err
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Read a little more so the connection can be reused, not all of a
	// huge answer.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	e := &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(head))}
	if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), w.o.Clock()); ok {
		e.RetryAfter = d
	}
	return Retryable(resp.StatusCode), e
}

// MaxRetryAfter caps what a Retry-After may ask for; the retry stage gives
// up anyway when the wait passes its deadline.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number
// of seconds, or an HTTP date counted from now (a date in the past is 0).
// It reports false for an empty or malformed value. The result is in
// [0, MaxRetryAfter].
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return MaxRetryAfter, true
			}
			return 0, false
		}
		if secs >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// The JSON body, documented in the package doc: change both together and
// raise WebhookVersion for anything a receiver could misread.
type webhookJSON struct {
	Version      int             `json:"version"`
	ID           string          `json:"id"`
	Key          string          `json:"key"`
	AlarmID      string          `json:"alarm_id"`
	Event        string          `json:"event"`
	Seq          uint64          `json:"seq"`
	At           time.Time       `json:"at"`
	Due          *time.Time      `json:"due_at,omitempty"`
	RaisedAt     *time.Time      `json:"raised_at,omitempty"`
	Step         int             `json:"step"`
	StepName     string          `json:"step_name"`
	Reminder     int             `json:"reminder"`
	Priority     int             `json:"priority"`
	Class        string          `json:"class"`
	Level        string          `json:"level,omitempty"`
	State        string          `json:"state"`
	Source       webhookSource   `json:"source"`
	Value        *float64        `json:"value,omitempty"`
	Limit        *float64        `json:"limit,omitempty"`
	Unit         string          `json:"unit,omitempty"`
	AlarmMessage string          `json:"alarm_message"`
	Text         webhookText     `json:"text"`
	Recipients   []recipientJSON `json:"recipients"`
}

type webhookSource struct {
	County           string `json:"county,omitempty"`
	Park             string `json:"park,omitempty"`
	Enterprise       string `json:"enterprise,omitempty"`
	EnterpriseName   string `json:"enterprise_name,omitempty"`
	HazardSource     string `json:"hazard_source,omitempty"`
	HazardSourceName string `json:"hazard_source_name,omitempty"`
	Sensor           string `json:"sensor,omitempty"`
	SensorName       string `json:"sensor_name,omitempty"`
	Kind             string `json:"kind,omitempty"`
	Gas              string `json:"gas,omitempty"`
	Gateway          string `json:"gateway,omitempty"`
}

type webhookText struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
}

type recipientJSON struct {
	Name  string `json:"name"`
	Phone string `json:"phone,omitempty"`
	Role  string `json:"role,omitempty"`
}

func webhookBody(m Message) webhookJSON {
	n := m.Notification
	if n == nil {
		n = &Notification{}
	}
	b := webhookJSON{
		Version: WebhookVersion, ID: m.ID, Key: n.Key, AlarmID: n.AlarmID, Event: n.Event, Seq: n.Seq,
		At: n.At, Due: timePtr(n.Due), RaisedAt: timePtr(n.RaisedAt),
		Step: n.Step, Reminder: n.Reminder, Priority: n.Priority, Class: n.Class, Level: n.Level, State: n.State,
		Source: webhookSource{County: n.County, Park: n.Park, Enterprise: n.Enterprise, EnterpriseName: n.EnterpriseName,
			HazardSource: n.HazardSource, HazardSourceName: n.HazardSourceName, Sensor: n.Sensor, SensorName: n.SensorName,
			Kind: n.Kind, Gas: n.Gas, Gateway: n.Gateway},
		Value: finite(n.Value), Limit: finite(n.Limit), Unit: n.Unit, AlarmMessage: n.Message,
		Text:       webhookText{ZH: m.Text, EN: m.TextEN},
		Recipients: make([]recipientJSON, 0, len(n.Recipients)),
	}
	if n.Step >= 0 && n.Step < len(stepNames) {
		b.StepName = stepNames[n.Step]
	}
	for _, r := range n.Recipients {
		b.Recipients = append(b.Recipients, recipientJSON(r))
	}
	return b
}

// finite leaves out what JSON cannot carry: NaN and ±Inf would fail the
// whole body, and with it every retry.
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
