package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// call sends a request as token name from local address from ("" for the
// default 127.0.0.1) and returns the status, Retry-After and body; every
// 4xx must be {"error":…}.
func (e *env) call(from, method, path, name, body string) (int, string, string) {
	e.t.Helper()
	req := e.request(method, path, name, body)
	client := e.ts.Client()
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 400 {
		var eb errorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
			e.t.Errorf("%s %s: %d with body %q, want {\"error\":…}", method, path, res.StatusCode, b)
		}
	}
	return res.StatusCode, res.Header.Get("Retry-After"), string(b)
}

func (e *env) limited(limit string) float64 {
	e.t.Helper()
	return e.metric("hw_api_limited_total", "limit", limit)
}

// TestRateLimit: each token has its own bucket of Burst requests refilled
// at Rate per second; the next request is 429 with Retry-After, counted,
// and other tokens are unaffected.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{Rate: 2, Burst: 3, AuthFailures: -1} })
	steps := []limitStep{
		{"burst 1", 0, "", "e01", 200, ""},
		{"burst 2", 0, "", "e01", 200, ""},
		{"burst 3", 0, "", "e01", 200, ""},
		{"bucket empty", 0, "", "e01", 429, "1"},
		{"still empty", 0, "", "e01", 429, "1"},
		{"another token has its own", 0, "", "p01", 200, ""},
		{"half a second refills one", 500 * time.Millisecond, "", "e01", 200, ""},
		{"and only one", 0, "", "e01", 429, "1"},
		{"ten seconds refill the burst, not more", 10 * time.Second, "", "e01", 200, ""},
		{"2", 0, "", "e01", 200, ""},
		{"3", 0, "", "e01", 200, ""},
		{"4th", 0, "", "e01", 429, "1"},
		{"a bad token is not rate limited but refused", 0, "", "wrong", 401, ""},
	}
	e.runSteps(t, steps)
	if n := e.limited(limitRate); n != 4 {
		t.Errorf("hw_api_limited_total{limit=rate} = %v, want 4", n)
	}
	// Unauthenticated routes spend no bucket.
	for range 10 {
		if code, _, _ := e.call("", "GET", "/healthz", "", ""); code != 200 {
			t.Fatalf("/healthz: %d", code)
		}
	}
}

// TestAuthFailureLimit: AuthFailures failed token checks from one address
// in a window put it over the limit: 429 for every token it has not used
// successfully since the failures began, without checking them further;
// tokens seen working there go on working; another address is unaffected;
// the window's end lifts it. Missing and malformed tokens do not count.
func TestAuthFailureLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Limits = Limits{Rate: -1, AuthFailures: 3, AuthWindow: time.Minute}
	})
	steps := []limitStep{
		{"missing does not count", 0, "", "missing", 401, ""},
		{"missing does not count", 0, "", "missing", 401, ""},
		{"missing does not count", 0, "", "missing", 401, ""},
		{"malformed does not count", 0, "", "malformed", 401, ""},
		{"malformed does not count", 0, "", "malformed", 401, ""},
		{"malformed does not count", 0, "", "malformed", 401, ""},
		{"failure 1", 0, "", "wrong", 401, ""},
		{"a good token after the first failure is remembered", 0, "", "p01", 200, ""},
		{"failure 2: revoked", 10 * time.Second, "", "revoked", 401, ""},
		{"failure 3: expired", 0, "", "expired", 401, ""},
		{"over: a guess is not checked", 0, "", "wrong", 429, "50"},
		{"over: missing", 0, "", "missing", 429, "50"},
		{"over: a valid token not seen here", 0, "", "e01", 429, "50"},
		{"over: admin neither", 0, "", "admin", 429, "50"},
		{"the token seen working keeps working", 0, "", "p01", 200, ""},
		{"another address: valid", 0, "127.0.0.2", "admin", 200, ""},
		{"another address: its own failures", 0, "127.0.0.2", "wrong", 401, ""},
		{"still over later in the window", 49 * time.Second, "", "e01", 429, "1"},
		{"the window has passed", time.Second, "", "e01", 200, ""},
		{"failures count afresh", 0, "", "wrong", 401, ""},
	}
	e.runSteps(t, steps)
	for _, c := range []struct {
		series string
		value  float64
		want   float64
	}{
		{"limited auth_failures", e.limited(limitAuth), 5},
		{"auth failures unknown", e.metric("hw_api_auth_failures_total", "reason", "unknown"), 3},
		{"auth failures revoked", e.metric("hw_api_auth_failures_total", "reason", "revoked"), 1},
		{"auth failures missing", e.metric("hw_api_auth_failures_total", "reason", "missing"), 3},
	} {
		if c.value != c.want {
			t.Errorf("%s = %v, want %v", c.series, c.value, c.want)
		}
	}
}

// TestWSConnectionLimit: a token holds at most WSPerToken WebSockets; the
// next upgrade is 429 before the upgrade; a closed one frees its place;
// another token is unaffected.
func TestWSConnectionLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{Rate: -1, AuthFailures: -1, WSPerToken: 2} })
	sub := map[string]any{"type": "subscribe"}
	a := e.dial("e01", sub)
	a.next()
	b := e.dial("e01", sub)
	b.next()

	dial := func(name string) (int, string) {
		t.Helper()
		u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + url.QueryEscape(e.tok[name])
		c, res, err := websocket.DefaultDialer.Dial(u, nil)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols, ""
		}
		if res == nil {
			t.Fatalf("dial as %s: %v", name, err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	if code, body := dial("e01"); code != http.StatusTooManyRequests || !strings.Contains(body, `"error":"WebSocket 连接过多`) {
		t.Fatalf("third WebSocket of a token: %d %s, want 429", code, body)
	}
	if n := e.limited(limitWS); n != 1 {
		t.Errorf("hw_api_limited_total{limit=ws_connections} = %v, want 1", n)
	}
	c := e.dial("p01", sub)
	c.next()

	a.c.Close()
	waitFor(t, "the closed WebSocket's place freed", func() bool {
		e.srv.lim.mu.Lock()
		defer e.srv.lim.mu.Unlock()
		total := 0
		for _, n := range e.srv.lim.ws {
			total += n
		}
		return total == 2
	})
	d := e.dial("e01", sub)
	if f := d.next(); f.Type != "snapshot" {
		t.Fatalf("after a close, frame %+v, want the snapshot", f)
	}
	if n := e.limited(limitWS); n != 1 {
		t.Errorf("hw_api_limited_total{limit=ws_connections} = %v after the place was freed, want 1", n)
	}
}

// TestBodyLimit: a body over MaxBody is 413, counted, and changes nothing.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBody = 64 })
	a := e.raise(e.sensorsOf("e01")[0])
	for _, tt := range []struct {
		body string
		want int
	}{
		{`{"comment":"` + strings.Repeat("x", 100) + `"}`, http.StatusRequestEntityTooLarge},
		{`{"comment":"` + strings.Repeat("长", 30) + `"}`, http.StatusRequestEntityTooLarge},
		{`{"comment":"ok"}`, http.StatusOK},
	} {
		if code, _, body := e.call("", "POST", "/api/v1/alarms/"+a.ID+"/ack", "e01", tt.body); code != tt.want {
			t.Errorf("%d bytes: %d %s, want %d", len(tt.body), code, body, tt.want)
		}
		if tt.want == http.StatusRequestEntityTooLarge {
			if got, _ := e.mgr.Get(a.ID); got.State != a.State || len(got.History) != len(a.History) {
				t.Errorf("a refused body changed the alarm: %v with %d events", got.State, len(got.History))
			}
		}
	}
	if n := e.limited(limitBody); n != 2 {
		t.Errorf("hw_api_limited_total{limit=body_size} = %v, want 2", n)
	}
}

// TestLimiterBounded: many tokens and addresses do not grow the limiter's
// maps past maxTracked, and idle entries are what gives way first.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	lm := newLimiter(Limits{Rate: 1, Burst: 1, AuthFailures: 2, AuthWindow: time.Minute}, func() time.Time { return now })
	for i := range 3 * maxTracked {
		lm.allow(fmt.Sprint("token-", i))
		lm.failed(fmt.Sprint("10.0.", i/256, ".", i%256))
	}
	if len(lm.rates) > maxTracked || len(lm.fails) > maxTracked {
		t.Fatalf("%d buckets, %d addresses tracked; at most %d each", len(lm.rates), len(lm.fails), maxTracked)
	}
	// Once the windows have passed, the next new address sweeps them all.
	now = now.Add(time.Minute)
	lm.failed("192.0.2.1")
	if len(lm.fails) != 1 {
		t.Errorf("%d addresses tracked after the windows passed, want 1", len(lm.fails))
	}
}

// TestLimitKey: the failure limit counts an IPv4 address by itself and an
// IPv6 one by its /64.
func TestLimitKey(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"127.0.0.1:5000", "127.0.0.1"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		if got := limitKey(tt.remote); got != tt.want {
			t.Errorf("limitKey(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}

// limitStep is one request of a limits timeline: after moving the clock
// by advance, token's GET /api/v1/alarms from address from ("" the
// default) answers want with Retry-After wantRetry.
type limitStep struct {
	name      string
	advance   time.Duration
	from      string
	token     string
	want      int
	wantRetry string
}

func (e *env) runSteps(t *testing.T, steps []limitStep) {
	t.Helper()
	for _, st := range steps {
		e.clock.Add(st.advance)
		code, retry, body := e.call(st.from, "GET", "/api/v1/alarms", st.token, "")
		if code != st.want || retry != st.wantRetry {
			t.Errorf("%s: %d Retry-After %q, want %d %q (%s)", st.name, code, retry, st.want, st.wantRetry, body)
		}
		if code == 429 && !strings.Contains(body, "请求过于频繁 / too many requests") {
			t.Errorf("%s: body %s", st.name, body)
		}
	}
}
