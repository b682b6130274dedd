package api

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one token or one client address may cost the centre
// (issue #7). Zero fields take the product's defaults; a negative one
// switches that limit off.
type Limits struct {
	// Rate is the requests per second one token may make, with bursts of
	// Burst: a control room's page polls and acts a few times a second; a
	// script may be faster. Defaults 20/s and 60.
	Rate  float64
	Burst int
	// AuthFailures failed token checks from one client address within
	// AuthWindow put that address over the limit until the window ends.
	// Defaults 20 and 1 minute.
	AuthFailures int
	AuthWindow   time.Duration
	// WSPerToken caps the open WebSockets of one token; default 8.
	WSPerToken int
}

// Values of hw_api_limited_total{limit}.
const (
	limitRate    = "rate"
	limitAuth    = "auth_failures"
	limitWS      = "ws_connections"
	limitBody    = "body_size"
	msgTooMany   = "请求过于频繁 / too many requests"
	msgTooManyWS = "WebSocket 连接过多 / too many WebSocket connections for this token"
)

// maxTracked caps each limiter's map, so that many tokens or addresses
// cannot grow memory without bound. Idle entries (a full bucket, a passed
// window) are swept when a map is full; if that frees less than an eighth,
// arbitrary entries give way down to seven eighths (Go's map order is
// random), which at worst forgets some addresses' counts early. Sweeping
// an eighth at a time keeps the cost per new entry constant on average.
const maxTracked = 10_000

// maxKnownGood bounds the tokens remembered per address (limits.knownGood).
const maxKnownGood = 32

func (l *Limits) defaults() {
	if l.Rate == 0 {
		l.Rate = 20
	}
	if l.Burst == 0 {
		l.Burst = 60
	}
	if l.AuthFailures == 0 {
		l.AuthFailures = 20
	}
	if l.AuthWindow == 0 {
		l.AuthWindow = time.Minute
	}
	if l.WSPerToken == 0 {
		l.WSPerToken = 8
	}
}

// limiter holds the per-token and per-address state of the limits. One
// mutex: every operation is a map lookup and a little arithmetic.
type limiter struct {
	l     Limits
	clock func() time.Time

	mu    sync.Mutex
	rates map[string]*rate.Limiter // by token id
	fails map[string]*failures     // by client address (limitKey)
	ws    map[string]int           // open WebSockets by token id; no zero entries
}

// failures are one address's failed token checks in its current window.
type failures struct {
	start time.Time // of the window, at its first failure
	n     int
	// knownGood are the tokens that authenticated from this address while
	// it had failures counted (limits.authBlocked).
	knownGood map[string]struct{}
}

func newLimiter(l Limits, clock func() time.Time) *limiter {
	l.defaults()
	return &limiter{l: l, clock: clock, rates: map[string]*rate.Limiter{}, fails: map[string]*failures{}, ws: map[string]int{}}
}

// allow takes one request of token id from its bucket; when it is empty
// it says how long until the next request would be allowed.
func (lm *limiter) allow(id string) (bool, time.Duration) {
	if lm.l.Rate < 0 {
		return true, 0
	}
	now := lm.clock()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	b, ok := lm.rates[id]
	if !ok {
		if len(lm.rates) >= maxTracked {
			// A full bucket is the same as a new one: forgetting it
			// changes nothing.
			sweep(lm.rates, func(b *rate.Limiter) bool { return b.TokensAt(now) >= float64(b.Burst()) })
		}
		b = rate.NewLimiter(rate.Limit(lm.l.Rate), lm.l.Burst)
		lm.rates[id] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - b.TokensAt(now)
	return false, time.Duration(need / lm.l.Rate * float64(time.Second))
}

// The failed-token-check limit is per client address, and it limits
// failures, not requests: many operators of a park may sit behind one NAT
// address, and their good tokens must not be counted against each other.
// An address over the limit gets 429 for any token it has not already
// used successfully since its failures began: a guesser learns nothing
// from its guesses (right or wrong, the answer is 429), while the
// operators at the same address whose tokens were seen working before
// keep working, so that a broken script (a mistyped or revoked token,
// polling) cannot lock a whole control room out of its alarms. A token
// first used from that address while it is over the limit waits until the
// window passes.

// authBlocked reports whether addr is over the failure limit for a
// request whose token check gave id (valid) or "" (failed), and how long
// until its window ends.
func (lm *limiter) authBlocked(addr, id string) (bool, time.Duration) {
	if lm.l.AuthFailures < 0 {
		return false, 0
	}
	now := lm.clock()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	f, ok := lm.fails[addr]
	if !ok {
		return false, 0
	}
	end := f.start.Add(lm.l.AuthWindow)
	if !now.Before(end) {
		// The window has passed: a new one starts at the next failure; the
		// tokens seen working stay known.
		f.n = 0
		return false, 0
	}
	if id != "" {
		if f.n < lm.l.AuthFailures {
			if len(f.knownGood) < maxKnownGood {
				f.knownGood[id] = struct{}{}
			}
			return false, 0
		}
		if _, known := f.knownGood[id]; known {
			return false, 0
		}
	}
	if f.n < lm.l.AuthFailures {
		return false, 0
	}
	return true, end.Sub(now)
}

// failed counts a failed token check from addr.
func (lm *limiter) failed(addr string) {
	if lm.l.AuthFailures < 0 {
		return
	}
	now := lm.clock()
	lm.mu.Lock()
	defer lm.mu.Unlock()
	f, ok := lm.fails[addr]
	if !ok {
		if len(lm.fails) >= maxTracked {
			sweep(lm.fails, func(f *failures) bool { return !now.Before(f.start.Add(lm.l.AuthWindow)) })
		}
		f = &failures{knownGood: map[string]struct{}{}}
		lm.fails[addr] = f
	}
	if f.n == 0 || !now.Before(f.start.Add(lm.l.AuthWindow)) {
		f.start, f.n = now, 0
	}
	f.n++
}

// openWS takes a WebSocket place of token id; false when it has none left.
// The caller gives the place back with closeWS.
func (lm *limiter) openWS(id string) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.l.WSPerToken >= 0 && lm.ws[id] >= lm.l.WSPerToken {
		return false
	}
	lm.ws[id]++
	return true
}

func (lm *limiter) closeWS(id string) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.ws[id]--; lm.ws[id] <= 0 {
		delete(lm.ws, id)
	}
}

// sweep removes the idle entries of a full map, then arbitrary ones down
// to seven eighths of maxTracked.
func sweep[V any](m map[string]V, idle func(V) bool) {
	for k, v := range m {
		if idle(v) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) <= maxTracked-maxTracked/8 {
			break
		}
		delete(m, k)
	}
}

// limitKey is the client address the failure limit counts by: the host of
// RemoteAddr, an IPv6 address by its /64 (one host's usual share, which it
// could otherwise walk through). Behind a reverse proxy every client is the
// proxy: X-Forwarded-For is not trusted, since anyone can write it.
func limitKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// tooMany answers 429 with Retry-After (whole seconds, at least 1) and
// counts the limit.
func (s *Server) tooMany(w http.ResponseWriter, limit string, wait time.Duration, msg string) {
	s.metrics.limited.WithLabelValues(limit).Inc()
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, http.StatusTooManyRequests, msg)
}
