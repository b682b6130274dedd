package notify

import (
	"context"
	"errors"
	"testing"
)

// TestHoldStages: what the shelve and suppress stages let through, for
// every event, including the closed loop's.
func TestHoldStages(t *testing.T) {
	cases := []struct {
		name                             string
		event                            string
		shelved, suppressed, outOfServce bool
		shelve, suppress                 outcome
	}{
		{"no hold", EventRaised, false, false, false, outPending, outPending},
		{"shelved raise", EventRaised, true, false, false, outShelved, outPending},
		{"shelved escalation", EventEscalated, true, false, false, outShelved, outPending},
		{"shelved reminder", EventReminded, true, false, false, outShelved, outPending},
		{"shelved feedback overdue", EventFeedbackOverdue, true, false, false, outShelved, outPending},
		{"unshelved, hold off", EventUnshelved, false, false, false, outPending, outPending},
		{"unshelved under a suppression", EventUnshelved, false, true, false, outPending, outSuppressed},
		{"suppressed escalation", EventEscalated, false, true, false, outPending, outSuppressed},
		{"out of service raise", EventRaised, false, false, true, outPending, outSuppressed},
		{"in service again", EventInService, false, false, false, outPending, outPending},
		{"all holds", EventReminded, true, true, true, outShelved, outSuppressed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := chlorine()
			n.Event, n.Shelved, n.Suppressed, n.OutOfService = tc.event, tc.shelved, tc.suppressed, tc.outOfServce
			for _, s := range []struct {
				stage stage
				want  outcome
			}{{shelveStage{}, tc.shelve}, {suppressStage{}, tc.suppress}} {
				got, err := s.stage.Exec(context.Background(), &delivery{N: n})
				if err != nil || got != s.want {
					t.Errorf("%T: %v, %v; want %v", s.stage, got, err, s.want)
				}
			}
		})
	}
}

// TestPipelineOrder: the first stage that ends a delivery names its
// outcome, and the stages after it never see it; the finish hooks run
// last registered first, with the outcome.
func TestPipelineOrder(t *testing.T) {
	var ran []string
	stage := func(name string, o outcome) stage {
		return stageFunc(func(_ context.Context, d *delivery) (outcome, error) {
			ran = append(ran, name)
			d.onFinish(func(got outcome, _ error) { ran = append(ran, "finish "+name+" "+got.String()) })
			return o, nil
		})
	}
	p := pipeline{stage("a", outPending), stage("b", outDuplicate), stage("c", outPending)}
	o, err := p.Exec(context.Background(), &delivery{})
	want := []string{"a", "b", "finish b duplicate", "finish a duplicate"}
	if o != outDuplicate || err != nil || len(ran) != len(want) {
		t.Fatalf("got %v %v, ran %q; want duplicate, %q", o, err, ran, want)
	}
	for i := range want {
		if ran[i] != want[i] {
			t.Fatalf("ran %q, want %q", ran, want)
		}
	}
	boom := errors.New("boom")
	o, err = pipeline{stageFunc(func(context.Context, *delivery) (outcome, error) { return outPending, boom })}.Exec(context.Background(), &delivery{})
	if o != outPending || err != boom {
		t.Errorf("a stage's error: %v %v", o, err)
	}
	if o, err := (pipeline{}).Exec(context.Background(), &delivery{}); o != outSent || err != nil {
		t.Errorf("empty pipeline: %v %v, want sent", o, err)
	}
}

type stageFunc func(context.Context, *delivery) (outcome, error)

func (f stageFunc) Exec(ctx context.Context, d *delivery) (outcome, error) { return f(ctx, d) }

// TestHandleOutcomes: whole notifications through a Dispatcher, each
// counted once under the outcome a user reads in /metrics.
func TestHandleOutcomes(t *testing.T) {
	sms := &fake{name: "sms"}
	hook := &fake{name: "webhook"}
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: sms, PerRecipient: true}, {Notifier: hook, Steps: []int{StepCounty}}}
	})
	ctx := context.Background()
	base := chlorine()
	handle := func(mod func(*Notification)) error {
		n := base
		mod(&n)
		return d.Handle(ctx, n)
	}
	steps := []struct {
		name    string
		mod     func(*Notification)
		wantErr error
	}{
		{"escalated to the county", func(n *Notification) {}, nil},
		{"the same again", func(n *Notification) {}, nil},
		{"shelved", func(n *Notification) { n.Seq, n.Shelved = 43, true }, nil},
		{"suppressed", func(n *Notification) { n.Seq, n.Suppressed = 44, true }, nil},
		{"no phone, no webhook at step 0", func(n *Notification) {
			n.Seq, n.Step, n.Recipients = 45, StepEnterprise, []Recipient{{Name: "张伟", Role: "操作负责人"}}
		}, nil},
		{"no event", func(n *Notification) { n.Event = "" }, ErrInvalid},
		{"step 3", func(n *Notification) { n.Seq, n.Step = 46, 3 }, ErrInvalid},
	}
	for _, s := range steps {
		if err := handle(s.mod); !errors.Is(err, s.wantErr) && (err != nil || s.wantErr != nil) {
			t.Errorf("%s: %v, want %v", s.name, err, s.wantErr)
		}
	}
	want := map[string]float64{"sent": 1, "duplicate": 1, "dropped_shelved": 1, "dropped_suppressed": 1, "unrouted": 1, "invalid": 2}
	got := results(t, reg)
	if len(got) != len(want) {
		t.Errorf("results %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("hw_notifications_total{result=%q} = %v, want %v", k, got[k], v)
		}
	}
	// Two county officers by SMS, one webhook message, once each.
	if sms.n() != 2 || hook.n() != 1 {
		t.Errorf("sms %d calls, webhook %d; want 2 and 1", sms.n(), hook.n())
	}
	if ids := hook.ids(); len(ids) != 1 || ids[0] != "e01-GT-101.high.1/42/2/webhook" {
		t.Errorf("webhook message ids %q", ids)
	}
	if got := metric(t, reg, "hw_notification_messages_total", "notifier", "sms", "result", "sent"); got != 2 {
		t.Errorf("sms messages sent: %v, want 2", got)
	}
}
