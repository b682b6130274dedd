package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"hazardwatch/internal/golden"
	"hazardwatch/internal/testclock"
)

// receiver is a webhook receiver on 127.0.0.1 that answers each request
// from a script and keeps what it got.
type receiver struct {
	srv     *httptest.Server
	answers []answer
	release chan struct{} // closed at the end: a hanging answer returns

	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

type answer struct {
	code       int
	retryAfter string
	body       string
	hang       bool // wait until the client gives up
}

func newReceiver(t *testing.T, answers ...answer) *receiver {
	t.Helper()
	r := &receiver{answers: answers, release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		i := len(r.reqs)
		r.reqs = append(r.reqs, req)
		r.body = append(r.body, b)
		r.mu.Unlock()
		a := answer{code: http.StatusOK}
		if len(r.answers) > 0 {
			a = r.answers[min(i, len(r.answers)-1)]
		}
		if a.hang {
			select {
			case <-req.Context().Done():
			case <-r.release:
			}
			return
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(func() {
		close(r.release)
		r.srv.Close()
	})
	return r
}

func (r *receiver) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// webhookDispatcher is a Dispatcher whose one route is a webhook to url,
// on a fake clock whose sleeps it records.
func webhookDispatcher(t *testing.T, url string, b Backoff, timeout time.Duration) (*Dispatcher, *Webhook, *sleeps, func(string, ...string) float64) {
	t.Helper()
	clk := &sleeps{clock: clock{testclock.New(t0.Add(25 * time.Minute))}}
	hook, err := NewWebhook(WebhookOptions{URL: url, Timeout: timeout, Clock: clk.Now,
		Header: http.Header{"Authorization": {"Bearer s3cret"}, "X-Park": {"p01"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hook.Close)
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: hook}}
		o.Backoff = b
		o.Clock, o.Sleep = clk.Now, clk.Sleep
	})
	return d, hook, clk, func(name string, labels ...string) float64 { return metric(t, reg, name, labels...) }
}

// sleeps is a fake clock that records how long each Sleep was.
type sleeps struct {
	clock
	mu  sync.Mutex
	got []time.Duration
}

func (s *sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.got = append(s.got, d)
	s.mu.Unlock()
	return s.clock.Sleep(ctx, d)
}

// TestWebhookBody: one POST with the configured headers, an
// Idempotency-Key, and the JSON body of the package doc (golden).
func TestWebhookBody(t *testing.T) {
	r := newReceiver(t)
	d, _, _, m := webhookDispatcher(t, r.srv.URL+"/hw/alarms", Backoff{}, 0)
	if err := d.Handle(context.Background(), chlorine()); err != nil {
		t.Fatal(err)
	}
	if r.n() != 1 {
		t.Fatalf("%d requests, want 1", r.n())
	}
	req := r.reqs[0]
	for k, want := range map[string]string{
		"Authorization": "Bearer s3cret", "X-Park": "p01", "Content-Type": "application/json; charset=utf-8",
		"Idempotency-Key": "e01-GT-101.high.1/42/2/webhook", "User-Agent": "hazardwatch",
	} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
	if req.Method != http.MethodPost || req.URL.Path != "/hw/alarms" {
		t.Errorf("%s %s", req.Method, req.URL.Path)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, r.body[0], "", "  "); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body[0])
	}
	golden.Check(t, filepath.Join("testdata", "webhook.json"), pretty.String()+"\n")
	if m("hw_notification_messages_total", "notifier", "webhook", "result", "sent") != 1 ||
		m("hw_notification_delivery_seconds", "notifier", "webhook") != 1 {
		t.Error("the delivery was not counted")
	}
}

// TestWebhookAnswers: what each answer of a real receiver leads to: how
// many requests, which waits between them, and what Handle returns.
func TestWebhookAnswers(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 8 * time.Second, Deadline: 20 * time.Second}
	// The fake clock stands at t0 + 25 min; the deadline is 20 s.
	in10 := t0.Add(25*time.Minute + 10*time.Second).UTC().Format(http.TimeFormat)
	in30 := t0.Add(25*time.Minute + 30*time.Second).UTC().Format(http.TimeFormat)
	cases := []struct {
		name     string
		answers  []answer
		requests int
		sleeps   []time.Duration
		err      error
		code     int
	}{
		{"200", []answer{{code: 200}}, 1, nil, nil, 0},
		{"204", []answer{{code: 204}}, 1, nil, nil, 0},
		{"500 twice, then 200", []answer{{code: 500}, {code: 502}, {code: 200}}, 3, []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond}, nil, 0},
		{"400 is not retried", []answer{{code: 400, body: `{"error":"bad alarm"}`}}, 1, nil, ErrRefused, 400},
		{"404 is not retried", []answer{{code: 404}}, 1, nil, ErrRefused, 404},
		{"408 is", []answer{{code: 408}, {code: 200}}, 2, []time.Duration{750 * time.Millisecond}, nil, 0},
		{"429 with Retry-After seconds", []answer{{code: 429, retryAfter: "7"}, {code: 200}}, 2, []time.Duration{7 * time.Second}, nil, 0},
		{"503 with Retry-After date", []answer{{code: 503, retryAfter: in10}, {code: 200}}, 2, []time.Duration{10 * time.Second}, nil, 0},
		{"503 with Retry-After past the deadline", []answer{{code: 503, retryAfter: in30}, {code: 200}}, 1, nil, ErrGaveUp, 503},
		{"429 with a bad Retry-After: the backoff", []answer{{code: 429, retryAfter: "soon"}, {code: 200}}, 2, []time.Duration{750 * time.Millisecond}, nil, 0},
		// Tries at 0, 0.75, 2.25, 5.25, 11.25 and 17.25 s; the next would
		// be at 23.25 s.
		{"500 until the deadline", []answer{{code: 500}}, 6,
			[]time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 6 * time.Second}, ErrGaveUp, 500},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, tc.answers...)
			d, _, clk, m := webhookDispatcher(t, r.srv.URL, b, 0)
			err := d.Handle(context.Background(), chlorine())
			if r.n() != tc.requests || len(clk.got) != len(tc.sleeps) {
				t.Fatalf("%d requests, sleeps %v; want %d, %v (err %v)", r.n(), clk.got, tc.requests, tc.sleeps, err)
			}
			for i := range tc.sleeps {
				if clk.got[i] != tc.sleeps[i] {
					t.Errorf("sleeps %v, want %v", clk.got, tc.sleeps)
				}
			}
			if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			var se *StatusError
			if tc.code != 0 && (!errors.As(err, &se) || se.Code != tc.code) {
				t.Errorf("err %v, want a StatusError %d", err, tc.code)
			}
			if tc.code == 400 && se.Body != `{"error":"bad alarm"}` {
				t.Errorf("the answer's body is not in the error: %q", se.Body)
			}
			if got := m("hw_notification_attempts_total", "notifier", "webhook", "result", "error"); int(got) != tc.requests-btoi(err == nil) {
				t.Errorf("failed attempts %v, want %d", got, tc.requests-btoi(err == nil))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWebhookTimeout: a receiver that never answers is given up on after
// the webhook's Timeout, each try; the retries stop at the deadline.
func TestWebhookTimeout(t *testing.T) {
	r := newReceiver(t, answer{hang: true})
	d, _, clk, m := webhookDispatcher(t, r.srv.URL, Backoff{Initial: time.Second, Max: time.Second, Deadline: 2 * time.Second}, 50*time.Millisecond)
	start := time.Now()
	err := d.Handle(context.Background(), chlorine())
	if !errors.Is(err, ErrGaveUp) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrGaveUp after a timeout", err)
	}
	// Tries at 0, 0.75 and 1.5 s on the fake clock; the next would be at
	// 2.25 s, past the deadline.
	if r.n() != 3 || len(clk.got) != 2 || m("hw_notification_messages_total", "result", "gave_up") != 1 {
		t.Errorf("%d requests, sleeps %v; want 3 and 2", r.n(), clk.got)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("three tries of 50 ms took %s", el)
	}
}

// TestWebhookDown: a receiver that is not there is a network error,
// retried until the deadline.
func TestWebhookDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close() // nobody listens there now
	d, _, clk, _ := webhookDispatcher(t, url, Backoff{Initial: time.Second, Max: time.Second, Deadline: 2 * time.Second}, time.Second)
	err = d.Handle(context.Background(), chlorine())
	var op *net.OpError
	if !errors.Is(err, ErrGaveUp) || !errors.As(err, &op) || len(clk.got) != 2 {
		t.Errorf("err %v, sleeps %v; want ErrGaveUp over a network error, after 2 waits", err, clk.got)
	}
}

// TestWebhookNotify: the notifier alone: its verdicts, and what
// NewWebhook refuses.
func TestWebhookNotify(t *testing.T) {
	r := newReceiver(t, answer{code: 302})
	hook, err := NewWebhook(WebhookOptions{URL: r.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Close()
	n := chlorine()
	n.Value = 1 / zero() // NaN or Inf would break the JSON: left out
	retry, err := hook.Notify(context.Background(), Message{ID: "x", Notification: &n})
	// A redirect without a Location is an answer like another: not 2xx, not
	// worth a retry.
	var se *StatusError
	if retry || !errors.As(err, &se) || se.Code != 302 {
		t.Errorf("302: retry %v, err %v", retry, err)
	}
	if b := r.body[0]; bytes.Contains(b, []byte(`"value"`)) || !bytes.Contains(b, []byte(`"limit":2`)) {
		t.Errorf("a non-finite value was not left out: %s", b)
	}
	if hook.Name() != "webhook" {
		t.Errorf("name %q", hook.Name())
	}
	for _, bad := range []string{"", "ftp://x/y", "http://", "://x", "localhost:8080"} {
		if _, err := NewWebhook(WebhookOptions{URL: bad}); err == nil {
			t.Errorf("URL %q accepted", bad)
		}
	}
	for code, want := range map[int]bool{200: false, 400: false, 401: false, 403: false, 404: false, 408: true, 409: false, 429: true, 500: true, 502: true, 503: true, 504: true} {
		if code/100 != 2 && Retryable(code) != want {
			t.Errorf("Retryable(%d) = %v, want %v", code, !want, want)
		}
	}
}

func zero() float64 { return 0 }

// TestParseRetryAfter: both forms of RFC 9110, and what is not one.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 6, 2, 27, 0, 0, time.UTC)
	cases := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"86400", MaxRetryAfter, true},
		{"99999999999999999999999", MaxRetryAfter, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"12abc", 0, false},
		{"Thu, 06 Mar 2025 02:27:30 GMT", 30 * time.Second, true},
		{"Thursday, 06-Mar-25 02:28:00 GMT", time.Minute, true}, // RFC 850
		{"Thu Mar  6 02:27:10 2025", 10 * time.Second, true},    // asctime
		{"Wed, 05 Mar 2025 02:27:30 GMT", 0, true},              // in the past
		{"Fri, 06 Mar 2026 02:27:30 GMT", MaxRetryAfter, true},
		{"tomorrow", 0, false},
	}
	for _, c := range cases {
		if got, ok := ParseRetryAfter(c.v, now); got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", c.v, got, ok, c.want, c.ok)
		}
	}
	if strconv.Itoa(int(MaxRetryAfter/time.Second)) != "86400" {
		t.Error("MaxRetryAfter is not a day")
	}
}
