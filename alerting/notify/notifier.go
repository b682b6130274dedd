package notify

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Notifier delivers messages of one kind (a webhook, SMS, voice). Notify
// says, when it fails, whether the failure is worth another try
// (Alertmanager's notify.Notifier): a timeout or a 503 is, a refused
// phone number or a 400 is not. An error may also say how long to wait
// before the next try, with a method Delay() time.Duration (the webhook's
// *StatusError does, from Retry-After).
type Notifier interface {
	// Name names the notifier in metrics, logs and Message.Notifier.
	Name() string
	Notify(ctx context.Context, m Message) (retry bool, err error)
}

// SMSSender is an SMS provider's client: it sends text to phone. An error
// is retried unless it is Permanent.
type SMSSender interface {
	Send(ctx context.Context, phone, text string) error
}

// VoiceCaller is a voice provider's client: it calls phone and reads text
// out. An error is retried unless it is Permanent.
type VoiceCaller interface {
	Call(ctx context.Context, phone, text string) error
}

// Permanent marks err as not worth a retry (a number the provider refuses,
// a text it will never accept); IsPermanent recognises it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// errNoPhone is a message to a person without a number: nobody can
// deliver it (the escalation stage makes none, but a caller might).
var errNoPhone = Permanent(errors.New("notify: recipient has no phone number"))

// phoneNotifier reads or sends each message's Chinese text to its
// recipient's phone through a provider's function.
type phoneNotifier struct {
	name string
	send func(ctx context.Context, phone, text string) error
}

// NewSMS returns a Notifier named "sms" that sends through s. Use it in a
// Route with PerRecipient.
func NewSMS(s SMSSender) Notifier { return phoneNotifier{"sms", s.Send} }

// NewVoice returns a Notifier named "voice" that calls through c. Use it
// in a Route with PerRecipient, for the notices worth a call.
func NewVoice(c VoiceCaller) Notifier { return phoneNotifier{"voice", c.Call} }

func (n phoneNotifier) Name() string { return n.name }

func (n phoneNotifier) Notify(ctx context.Context, m Message) (bool, error) {
	if m.To.Phone == "" {
		return false, errNoPhone
	}
	err := n.send(ctx, m.To.Phone, m.Text)
	return err != nil && !IsPermanent(err), err
}

// LogProvider is the SMS and voice provider of a centre that has none: it
// writes one log line per message, with the number masked (138****1003),
// and never fails. It lets the chain run end to end, and its lines show
// what a provider would have been asked to send.
type LogProvider struct {
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

// Send implements SMSSender.
func (p LogProvider) Send(ctx context.Context, phone, text string) error {
	p.logger().LogAttrs(ctx, slog.LevelInfo, "notify: SMS (logged, no provider)",
		slog.String("phone", MaskPhone(phone)), slog.String("text", text))
	return nil
}

// Call implements VoiceCaller.
func (p LogProvider) Call(ctx context.Context, phone, text string) error {
	p.logger().LogAttrs(ctx, slog.LevelInfo, "notify: voice call (logged, no provider)",
		slog.String("phone", MaskPhone(phone)), slog.String("text", text))
	return nil
}

func (p LogProvider) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// MaskPhone hides the middle of a phone number for logs: 13800001003 →
// 138****1003. Numbers of 7 digits or fewer keep only their last two.
func MaskPhone(phone string) string {
	r := []rune(phone)
	switch {
	case len(r) > 7:
		return string(r[:3]) + "****" + string(r[len(r)-4:])
	case len(r) > 2:
		return "****" + string(r[len(r)-2:])
	}
	return "****"
}

// delayOf returns the wait an error asks for, if it asks.
func delayOf(err error) (time.Duration, bool) {
	var d interface{ Delay() time.Duration }
	if errors.As(err, &d) {
		return d.Delay(), true
	}
	return 0, false
}
