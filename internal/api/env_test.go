package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"hazardwatch/alerting"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/config"
	"hazardwatch/internal/metrictest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/store"
	"hazardwatch/internal/testclock"
)

// demo is the demo plant and rules, loaded once.
var demo *config.Config

func TestMain(m *testing.M) {
	var err error
	if demo, err = config.LoadDemo(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// twoParks is the demo plant with e03 moved into a second park of a second
// county. The demo has one park and one county, so a park operator and a
// county officer would otherwise have nothing foreign to be refused.
func twoParks(p *model.Plant) *model.Plant {
	q := *p
	q.Counties = append(slices.Clone(p.Counties), model.County{ID: "c02", Name: "邻县"})
	q.Parks = append(slices.Clone(p.Parks), model.Park{ID: "p02", Name: "邻县化工园区", County: int32(len(q.Counties) - 1)})
	q.Enterprises = slices.Clone(p.Enterprises)
	e03, _ := p.EnterpriseIndex("e03")
	q.Enterprises[e03].Park = int32(len(q.Parks) - 1)
	q.Index()
	return &q
}

// memLog is an alerting.Log in memory.
type memLog struct {
	mu  sync.Mutex
	evs []alerting.Event
	at  []time.Time // when each event became durable, for the load run's latencies
}

func (l *memLog) Append(ctx context.Context, evs []alerting.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for i := range evs {
		l.evs = append(l.evs, evs[i])
		l.at = append(l.at, now)
		evs[i].LogSeq = uint64(len(l.evs))
	}
	return nil
}

func (l *memLog) Replay(ctx context.Context, fn func(alerting.Event) error) error {
	l.mu.Lock()
	evs := slices.Clone(l.evs)
	l.mu.Unlock()
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// fakeLatest holds the newest reading per sensor.
type fakeLatest struct {
	mu sync.Mutex
	r  map[int32]model.Reading
}

func (f *fakeLatest) Latest(s int32) (model.Reading, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.r[s]
	return r, ok
}

func (f *fakeLatest) set(r model.Reading) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.r[r.SensorIdx] = r
}

// feed is Readings with one subscriber and an unbuffered channel: a send
// returns when the hub has taken the batch, and a second send returns only
// after the hub has finished with the first.
type feed struct{ ch chan []model.Reading }

func (f *feed) SubscribeReadings(int) (<-chan []model.Reading, func()) { return f.ch, func() {} }

func (f *feed) send(t *testing.T, rs ...model.Reading) {
	t.Helper()
	select {
	case f.ch <- rs:
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not take a readings batch")
	}
}

// env is a running API on loopback over a real Manager, history store and
// token store.
type env struct {
	t     testing.TB
	plant *model.Plant
	log   *memLog
	mgr   *alerting.Manager
	// stopManager stops mgr's Run and waits for it; again does nothing.
	stopManager func()
	tune        func(*Options)
	tokens      *auth.Store
	hist        *store.Store
	latest      *fakeLatest
	feed        *feed
	clock       *testclock.Clock
	reg         *prometheus.Registry
	srv         *Server
	ts          *httptest.Server
	tok         map[string]string // token name → plain token
	rules       []model.SensorRules
	design      *designs
	audit       *audits
}

// designs is the centre's part of the Design in memory: the Manager
// follows it as in the centre; the file is the centre's own test's.
type designs struct {
	mu  sync.Mutex
	d   model.Design
	mgr *alerting.Manager
}

func (ds *designs) Design() model.Design {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.d.Clone()
}

func (ds *designs) UpdateDesign(ctx context.Context, user string, change func(*model.Design) error) (model.Design, model.Design, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	before, after := ds.d.Clone(), ds.d.Clone()
	if err := change(&after); err != nil {
		return before, before, err
	}
	if err := ds.mgr.SetDesign(ctx, after, user); err != nil {
		return before, before, err
	}
	ds.d = after
	return before, after, nil
}

// audits keeps the audit entries in memory.
type audits struct {
	mu sync.Mutex
	es []audit.Entry
}

func (a *audits) Audit(_ context.Context, e audit.Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.es = append(a.es, e)
	return nil
}

func (a *audits) entries() []audit.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.es)
}

// tokenNames are the callers of the authorisation table; the first four
// are valid.
var tokenNames = []string{"e01", "p01", "c01", "admin", "revoked", "expired", "wrong", "malformed", "missing"}

func newEnv(t testing.TB, tune func(*Options)) *env {
	t.Helper()
	return newEnvWith(t, twoParks(demo.Plant), demo.Rules, tune)
}

// newEnvWith is newEnv on another plant and its rules.
func newEnvWith(t testing.TB, plant *model.Plant, rules []model.SensorRules, tune func(*Options)) *env {
	t.Helper()
	e := &env{
		t: t, plant: plant, rules: rules, design: &designs{}, audit: &audits{},
		latest: &fakeLatest{r: map[int32]model.Reading{}},
		feed:   &feed{ch: make(chan []model.Reading)},
		clock:  testclock.New(time.Now()),
		tok:    map[string]string{},
	}
	e.log = &memLog{}
	e.startManager()

	var err error
	if e.hist, err = store.Open(store.Options{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.hist.Close() })

	e.tokens, err = auth.Open(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := e.mkToken
	mk("e01", auth.Operator, "enterprise:e01", 0, now)
	mk("p01", auth.Operator, "park:p01", 0, now)
	mk("c01", auth.Officer, "county:c01", 0, now)
	mk("admin", auth.Admin, "all", 0, now)
	rv := mk("revoked", auth.Admin, "all", 0, now)
	if err := e.tokens.Revoke(rv.ID, now); err != nil {
		t.Fatal(err)
	}
	mk("expired", auth.Admin, "all", time.Minute, now.Add(-time.Hour))
	e.tok["wrong"] = "hw_" + strings.Repeat("A", 43)
	e.tok["malformed"] = "not a token!"
	e.tok["missing"] = ""

	e.tune = tune
	e.startServer()
	return e
}

// startManager runs a Manager on e.log until stopManager or the end of
// the test.
func (e *env) startManager() {
	t := e.t
	var err error
	e.mgr, err = alerting.New(alerting.Options{Plant: e.plant, Rules: e.rules, Log: e.log, Queue: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	mgr := e.mgr
	go func() { errc <- mgr.Run(ctx) }()
	var once sync.Once
	e.stopManager = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Manager.Run: %v", err)
			}
		})
	}
	t.Cleanup(e.stopManager)
	<-e.mgr.Ready()
}

// startServer serves the API over e.mgr on loopback until the end of the
// test, with a fresh metrics registry.
func (e *env) startServer() {
	t := e.t
	e.reg = prometheus.NewRegistry()
	o := Options{
		Plant: e.plant, Rules: e.rules, Tokens: e.tokens, Alarms: e.mgr, History: e.hist,
		Latest: e.latest, Readings: e.feed, Registry: e.reg, Clock: e.clock.Now,
		Design: e.design, Audit: e.audit,
		// The clock stands still unless a test moves it, so a token's
		// bucket would never refill: the limits are off but where a test
		// turns them on (limits_test.go).
		Limits: Limits{Rate: -1, AuthFailures: -1, WSPerToken: -1},
	}
	e.design.mgr = e.mgr
	if e.tune != nil {
		e.tune(&o)
	}
	var err error
	if e.srv, err = New(o); err != nil {
		t.Fatal(err)
	}
	srv, ts := e.srv, httptest.NewServer(e.srv.Handler())
	e.ts = ts
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		ts.Close()
	})
	waitFor(t, "the hub to subscribe", func() bool { return e.srv.hub.ready(context.Background()) == nil })
}

// mkToken creates a token named name of role in scope, valid for ttl
// (0: for ever) from at, and keeps it plain in e.tok.
func (e *env) mkToken(name string, role auth.Role, scope string, ttl time.Duration, at time.Time) auth.Token {
	e.t.Helper()
	sc, err := auth.ParseScope(scope)
	if err != nil {
		e.t.Fatal(err)
	}
	plain, tok, err := e.tokens.Create(name, role, sc, ttl, at)
	if err != nil {
		e.t.Fatal(err)
	}
	e.tok[name] = plain
	return tok
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, 10*time.Second, cond)
}

func (e *env) sensor(id string) int32 {
	e.t.Helper()
	i, ok := e.plant.SensorIndex(id)
	if !ok {
		e.t.Fatalf("no sensor %s", id)
	}
	return i
}

// sensorsOf returns the ids of enterprise ent's sensors, in plant order.
func (e *env) sensorsOf(ent string) []string {
	var out []string
	for _, s := range e.plant.Sensors {
		if e.plant.Enterprises[s.Enterprise].ID == ent {
			out = append(out, s.ID)
		}
	}
	return out
}

// transition builds a high-limit transition of sensor id.
func (e *env) transition(id string, active bool) model.Transition {
	return model.Transition{
		Sensor: e.sensor(id), Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1,
		Active: active, Value: 99, Limit: 1, TS: time.Now().UnixMilli(),
	}
}

func (e *env) submit(ts ...model.Transition) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.mgr.Submit(ctx, ts...); err != nil {
		e.t.Fatal(err)
	}
}

// raise raises the high alarm of sensor id and returns it once the Manager
// has it.
func (e *env) raise(id string) alerting.Alarm {
	e.t.Helper()
	return e.raiseBy(e.transition(id, true))
}

// raiseBy submits tr, a raise of sensor id's high alarm, and returns the
// alarm once the Manager has it.
func (e *env) raiseBy(tr model.Transition) alerting.Alarm {
	e.t.Helper()
	id := e.plant.Sensors[tr.Sensor].ID
	e.submit(tr)
	var a alerting.Alarm
	waitFor(e.t, "alarm of "+id, func() bool {
		for _, x := range e.mgr.Active() {
			if x.Source.Sensor == id && x.Rule == model.ThresholdHigh && x.State == model.StateUnackActive {
				a = x
				return true
			}
		}
		return false
	})
	return a
}

// do sends a request as token name and decodes the JSON answer into out
// (when not nil). It returns the status and the raw body.
func (e *env) do(method, path, name string, body string, out any) (int, string) {
	e.t.Helper()
	res, err := e.ts.Client().Do(e.request(method, path, name, body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && path != "/metrics" && !strings.HasPrefix(ct, "text/") {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if res.StatusCode >= 400 {
		var eb errorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" {
			e.t.Errorf("%s %s: %d with body %q, want {\"error\":…}", method, path, res.StatusCode, b)
		}
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return res.StatusCode, string(b)
}

// request builds a request as token name with a JSON body (none when "").
func (e *env) request(method, path, name, body string) *http.Request {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok := e.tok[name]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// metric returns the value of a series of the registry, 0 when absent.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	return metrictest.Value(e.t, e.reg, name, labels...)
}

// wsFrame is any server frame.
type wsFrame struct {
	Type     string        `json:"type"`
	Seq      uint64        `json:"seq"`
	Event    string        `json:"event"`
	Resumed  bool          `json:"resumed"`
	Reset    bool          `json:"reset"`
	Alarms   []alarmView   `json:"alarms"`
	Alarm    *alarmView    `json:"alarm"`
	Readings []readingView `json:"readings"`
	Error    string        `json:"error"`
	// Raw is the frame as it came.
	Raw []byte `json:"-"`
}

type alarmView struct {
	ID     string          `json:"id"`
	State  string          `json:"state"`
	Source alerting.Source `json:"source"`
}

type readingView struct {
	Sensor string   `json:"sensor"`
	TS     string   `json:"ts"`
	V      *float64 `json:"v"`
	Q      string   `json:"q"`
}

type wsClient struct {
	t testing.TB
	c *websocket.Conn
}

// dial opens a WebSocket as token name (in ?token=) and sends sub unless
// it is nil.
func (e *env) dial(name string, sub any) *wsClient {
	e.t.Helper()
	return e.dialWith(websocket.DefaultDialer, name, sub)
}

func (e *env) dialWith(d *websocket.Dialer, name string, sub any) *wsClient {
	e.t.Helper()
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/v1/ws?token=" + url.QueryEscape(e.tok[name])
	c, res, err := d.Dial(u, nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		e.t.Fatalf("dial as %s: %v (HTTP %d)", name, err, status)
	}
	w := &wsClient{t: e.t, c: c}
	e.t.Cleanup(func() { c.Close() })
	if sub != nil {
		if err := c.WriteJSON(sub); err != nil {
			e.t.Fatal(err)
		}
	}
	return w
}

// next reads the next frame, failing the test after 10 s.
func (w *wsClient) next() wsFrame {
	w.t.Helper()
	f, err := w.read(10 * time.Second)
	if err != nil {
		w.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (w *wsClient) read(d time.Duration) (wsFrame, error) {
	_ = w.c.SetReadDeadline(time.Now().Add(d))
	_, b, err := w.c.ReadMessage()
	if err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{Raw: b}
	if err := json.Unmarshal(b, &f); err != nil {
		w.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

// nextAlarm reads frames up to the next alarm frame, skipping readings
// and floods.
func (w *wsClient) nextAlarm() wsFrame {
	w.t.Helper()
	for {
		f := w.next()
		if f.Type != "readings" && f.Type != "flood" {
			if f.Type != "alarm" {
				w.t.Fatalf("frame %+v, want an alarm", f)
			}
			return f
		}
	}
}

// closeCode reads until the connection ends and returns the close code
// the server sent.
func (w *wsClient) closeCode() int {
	w.t.Helper()
	for {
		_, err := w.read(10 * time.Second)
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		w.t.Fatalf("connection ended with %v, want a close frame", err)
	}
}
