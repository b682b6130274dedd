package notify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestDispatcherConcurrent: Handle is safe for concurrent use, and a
// notifier that hangs holds up only the Handle waiting on it; a cancelled
// one returns the context's error, uncounted.
func TestDispatcherConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := &fake{name: "sms", block: make(chan struct{})}
		d, reg := newTest(t, func(o *Options) {
			o.Routes = []Route{{Notifier: slow, PerRecipient: true, Events: []string{EventEscalated}}, {Notifier: &fake{name: "webhook"}}}
		})
		ctx, cancel := context.WithCancel(context.Background())
		stuck := make(chan error, 1)
		n := chlorine() // escalated: the SMS route takes it and hangs
		go func() { stuck <- d.Handle(ctx, n) }()
		synctest.Wait()
		other := chlorine() // reminders: the webhook alone, and never rate-limited
		other.Event = EventReminded
		for i := range 5 {
			other.Seq = uint64(101 + i)
			if err := d.Handle(context.Background(), other); err != nil {
				t.Fatal(err)
			}
		}
		if got := results(t, reg); got["sent"] != 5 || slow.n() != 2 {
			t.Errorf("results %v, %d at the hanging notifier; want 5 sent past its 2", got, slow.n())
		}
		cancel()
		if err := <-stuck; !errors.Is(err, context.Canceled) {
			t.Errorf("the hanging Handle: %v, want the context's error", err)
		}
		if got := results(t, reg); len(got) != 1 {
			t.Errorf("results %v: the cancelled one is counted", got)
		}
	})
}

// TestDispatcherRun: Run's minute tick expires old dedup keys; a second
// Run is refused.
func TestDispatcherRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sms := &fake{name: "sms"}
		store := NewMemStore(0)
		d, reg := newTest(t, func(o *Options) {
			o.Routes = []Route{{Notifier: sms, PerRecipient: true}}
			o.Store = store
			o.DedupTTL = 90 * time.Second
		})
		ctx, stop := context.WithCancel(context.Background())
		ran := make(chan error)
		go func() { ran <- d.Run(ctx) }()
		n := chlorine()
		for i := range 10 {
			n.Seq = uint64(i)
			if err := d.Handle(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := results(t, reg)["sent"]; got != 10 || sms.n() != 20 || store.Len() != 30 {
			t.Fatalf("sent %v, %d SMS, %d keys; want 10, 20, 30", got, sms.n(), store.Len())
		}
		advance(time.Minute) // the first tick, nothing old enough
		synctest.Wait()
		if store.Len() != 30 {
			t.Errorf("%d keys after a minute, want 30", store.Len())
		}
		advance(time.Minute) // the second tick: 120 s > the TTL
		synctest.Wait()
		if store.Len() != 0 {
			t.Errorf("%d keys after two minutes, want 0", store.Len())
		}
		if err := d.Run(context.Background()); err == nil {
			t.Error("a second Run started")
		}
		stop()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
	})
}

// TestNewOptions: what New refuses, and the defaults it fills.
func TestNewOptions(t *testing.T) {
	sms := &fake{name: "sms"}
	for _, tc := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"no route", nil, "no route"},
		{"no notifier", []Route{{}}, "Routes[0]: no notifier"},
		{"two notifiers of one name", []Route{{Notifier: sms}, {Notifier: &fake{name: "sms"}}}, `two notifiers named "sms"`},
	} {
		if _, err := New(Options{Routes: tc.routes}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// One notifier in two routes is fine.
	d, err := New(Options{Routes: []Route{{Notifier: sms, Steps: []int{0}}, {Notifier: sms, Steps: []int{2}, MaxPriority: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	o := d.o
	if o.DedupTTL != DefaultDedupTTL || o.SensorRate != DefaultSensorRate || o.EnterpriseRate != DefaultEnterpriseRate ||
		o.Backoff != DefaultBackoff ||
		d.Texts().Prefix != DefaultPrefix || d.Texts().Location != DefaultLocation || d.Texts().MaxRunes != DefaultMaxRunes {
		t.Errorf("defaults: %+v", o)
	}
	// The same metrics twice in one registry is an error, not a panic.
	_, reg := newTest(t, func(o *Options) { o.Routes = []Route{{Notifier: sms}} })
	if _, err := New(Options{Routes: []Route{{Notifier: sms}}, Registerer: reg}); err == nil {
		t.Error("a second registration succeeded")
	}
}

// TestRoutes: which messages a notification makes, by step, event and
// priority; one per phone number and notifier.
func TestRoutes(t *testing.T) {
	sms, voice, hook := &fake{name: "sms"}, &fake{name: "voice"}, &fake{name: "webhook"}
	routes := []Route{
		{Notifier: hook},
		{Notifier: sms, PerRecipient: true},
		{Notifier: voice, PerRecipient: true, Steps: []int{StepPark, StepCounty}, Events: []string{EventEscalated, EventReminded}},
		{Notifier: voice, PerRecipient: true, MaxPriority: 1, Events: []string{EventRaised}},
	}
	s := &escalationStage{routes: routes, texts: Texts{}.withDefaults()}
	person := func(name, phone string) Recipient { return Recipient{Name: name, Phone: phone} }
	cases := []struct {
		name     string
		event    string
		step     int
		priority int
		to       []Recipient
		want     []string
	}{
		{"raised, priority 2, at the enterprise", EventRaised, 0, 2, []Recipient{person("张伟", "1"), person("李明远", "2")},
			[]string{"k/webhook", "k/sms/1", "k/sms/2"}},
		{"raised, priority 1: a call too", EventRaised, 0, 1, []Recipient{person("张伟", "1")},
			[]string{"k/webhook", "k/sms/1", "k/voice/1"}},
		{"escalated to the park: SMS and a call", EventEscalated, 1, 2, []Recipient{person("园区值班", "3")},
			[]string{"k/webhook", "k/sms/3", "k/voice/3"}},
		{"escalated at step 0: no call", EventEscalated, 0, 2, []Recipient{person("张伟", "1")},
			[]string{"k/webhook", "k/sms/1"}},
		{"one person in two roles, one without a phone", EventReminded, 2, 1,
			[]Recipient{person("王建国", "9"), {Name: "王建国", Phone: "9", Role: "主要负责人"}, person("无号码", "")},
			[]string{"k/webhook", "k/sms/9", "k/voice/9"}},
	}
	for _, tc := range cases {
		n := chlorine()
		n.Key, n.Event, n.Step, n.Priority, n.Recipients = "k", tc.event, tc.step, tc.priority, tc.to
		d := &delivery{N: n}
		if o, err := s.Exec(context.Background(), d); o != outPending || err != nil {
			t.Errorf("%s: %v %v", tc.name, o, err)
		}
		var ids []string
		for _, m := range d.Messages {
			ids = append(ids, m.ID)
			if m.Notification != &d.N || m.Text == "" || m.TextEN == "" || (m.Notifier != "webhook") != (m.To.Phone != "") {
				t.Errorf("%s: message %+v", tc.name, m)
			}
		}
		if strings.Join(ids, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: messages %q, want %q", tc.name, ids, tc.want)
		}
	}
}

// advance lets d pass on the synctest bubble's clock: no real wait.
func advance(d time.Duration) { <-time.After(d) }
