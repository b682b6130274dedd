package notify

import (
	"log/slog"

	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"hazardwatch/internal/testlog"
)

// provider is an SMS and voice provider that fails as told.
type provider struct {
	err   error
	calls []string
}

func (p *provider) Send(_ context.Context, phone, text string) error {
	p.calls = append(p.calls, "sms "+phone)
	return p.err
}

func (p *provider) Call(_ context.Context, phone, text string) error {
	p.calls = append(p.calls, "call "+phone)
	return p.err
}

// TestProviderNotifiers: SMS and voice say a provider's error is worth a
// retry unless it is Permanent, and refuse a message without a number.
func TestProviderNotifiers(t *testing.T) {
	busy := errors.New("gateway busy")
	cases := []struct {
		name      string
		err       error
		phone     string
		wantRetry bool
		wantErr   bool
		wantCalls int
	}{
		{"delivered", nil, "13800001003", false, false, 1},
		{"a provider error", busy, "13800001003", true, true, 1},
		{"a wrapped provider error", fmt.Errorf("send: %w", busy), "13800001003", true, true, 1},
		{"a permanent error", Permanent(errors.New("unknown number")), "13800001003", false, true, 1},
		{"a wrapped permanent error", fmt.Errorf("send: %w", Permanent(busy)), "13800001003", false, true, 1},
		{"no number", nil, "", false, true, 0},
	}
	for _, tc := range cases {
		for _, mk := range []func(*provider) Notifier{
			func(p *provider) Notifier { return NewSMS(p) },
			func(p *provider) Notifier { return NewVoice(p) },
		} {
			p := &provider{err: tc.err}
			n := mk(p)
			retry, err := n.Notify(context.Background(), Message{To: Recipient{Phone: tc.phone}, Text: "测试"})
			if retry != tc.wantRetry || (err != nil) != tc.wantErr || len(p.calls) != tc.wantCalls {
				t.Errorf("%s %s: retry %v, err %v, calls %q", n.Name(), tc.name, retry, err, p.calls)
			}
		}
	}
	if Permanent(nil) != nil || IsPermanent(busy) || !IsPermanent(Permanent(busy)) || !errors.Is(Permanent(busy), busy) {
		t.Error("Permanent and IsPermanent disagree")
	}
	if NewSMS(&provider{}).Name() != "sms" || NewVoice(&provider{}).Name() != "voice" {
		t.Error("names")
	}
}

// TestLogProvider: one log line per message, the number masked, through a
// whole Dispatcher with SMS and voice routes.
func TestLogProvider(t *testing.T) {
	var logs testlog.Buffer
	p := LogProvider{Logger: logs.Logger(slog.LevelDebug)}
	d, reg := newTest(t, func(o *Options) {
		o.Routes = []Route{{Notifier: NewSMS(p), PerRecipient: true}, {Notifier: NewVoice(p), PerRecipient: true, Steps: []int{StepCounty}}}
	})
	if err := d.Handle(context.Background(), chlorine()); err != nil {
		t.Fatal(err)
	}
	if logs.Count("SMS (logged") != 2 || logs.Count("voice call (logged") != 2 || logs.Count("phone=139****2001") != 2 ||
		strings.Contains(logs.String(), "13900002001") {
		t.Errorf("log:\n%s", logs.String())
	}
	if metric(t, reg, "hw_notification_messages_total", "notifier", "voice", "result", "sent") != 2 {
		t.Error("calls not counted")
	}
}

func TestMaskPhone(t *testing.T) {
	for in, want := range map[string]string{
		"13800001003": "138****1003", "+8613800001003": "+86****1003", "0571888": "****88", "12": "****", "": "****",
	} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}
