package notify

import (
	"context"
	"fmt"
)

// outcome is what became of a notification; its name is the result label
// of hw_notifications_total.
type outcome uint8

const (
	// outPending: no stage has finished with it yet; the next one takes it.
	outPending outcome = iota
	// outSent: every message was delivered (or had been before).
	outSent
	// outShelved: the alarm is shelved.
	outShelved
	// outSuppressed: the alarm is suppressed by design or out of
	// service.
	outSuppressed
	// outDuplicate: the Key was delivered before.
	outDuplicate
	// outRateLimited: a first notice over its sensor's or enterprise's rate.
	outRateLimited
	// outUnrouted: no route gave it a message (no notifier for its step, or
	// no recipient with a phone number and no webhook).
	outUnrouted
	// outFailed: some message was refused, or not delivered by the deadline.
	outFailed
	// outInvalid: see ErrInvalid.
	outInvalid
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"pending", "sent", "dropped_shelved", "dropped_suppressed", "duplicate",
	"rate_limited", "unrouted", "failed", "invalid"}

func (o outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// delivery is one notification on its way through the stages.
type delivery struct {
	N Notification
	// Messages are made by the escalation stage and delivered by the
	// retry stage.
	Messages []Message
	// gaveUp is set by the retry stage when a message was not delivered
	// by the deadline but might be later: the Key is then not recorded,
	// so that a redelivery tries again (only what is missing).
	gaveUp bool
	// refused is set when a message was refused for good.
	refused bool
	// finish runs when the pipeline ends, last registered first.
	finish []func(outcome, error)
}

// onFinish registers f to run when the pipeline is done with d.
func (d *delivery) onFinish(f func(outcome, error)) { d.finish = append(d.finish, f) }

// A stage is one step of the chain: it looks at a delivery and either ends
// it with an outcome or returns outPending to pass it on (Alertmanager's
// notify.Stage, with one delivery in place of a group of alerts). An error
// ends the pipeline too: the context ended, or a stage could not work.
type stage interface {
	Exec(ctx context.Context, d *delivery) (outcome, error)
}

// pipeline runs its stages in order until one ends the delivery; a
// delivery that passes every stage was sent.
type pipeline []stage

// Exec implements stage.
func (p pipeline) Exec(ctx context.Context, d *delivery) (o outcome, err error) {
	defer func() {
		for i := len(d.finish) - 1; i >= 0; i-- {
			d.finish[i](o, err)
		}
		d.finish = nil
	}()
	for _, s := range p {
		if o, err = s.Exec(ctx, d); err != nil || o != outPending {
			return o, err
		}
	}
	return outSent, nil
}

// shelveStage drops notices about a shelved alarm, whatever the event: an
// operator shelved it on purpose, for a reason and a limited time, so
// nothing about it is sent, not even an escalation or a reminder (the
// Manager does not escalate what is hidden; one that was due when the shelf
// began arrives with Shelved set and goes no further). The end of the shelf
// is an "unshelved" event without the hold, which passes.
type shelveStage struct{}

func (shelveStage) Exec(_ context.Context, d *delivery) (outcome, error) {
	if d.N.Shelved {
		return outShelved, nil
	}
	return outPending, nil
}

// suppressStage drops notices about an alarm suppressed by design (the
// enterprise suspended, a maintenance window) or out of service: planned
// holds, under which the alarm is owed nothing until they end.
type suppressStage struct{}

func (suppressStage) Exec(_ context.Context, d *delivery) (outcome, error) {
	if d.N.Suppressed || d.N.OutOfService {
		return outSuppressed, nil
	}
	return outPending, nil
}
