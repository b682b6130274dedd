// Package notify turns alarm events into messages to people and systems:
// the SMS, the call and the webhook that close the loop of an alarm nobody
// has acknowledged (issue #6, SPEC §4 escalation). It owns the chain, not
// the escalation timers: package alerting decides when a step is due; a
// caller (internal/centre) turns each event into a Notification, a plain
// struct, so that this package does not depend on alerting.
//
// # The chain
//
// A Notification goes through stages, each a small type with one method
// (Alertmanager's notify.Stage), in this order:
//
//	Notification
//	   │ shelve      shelved: dropped, whatever the event (hidden on purpose)
//	   │ suppress    suppressed by design or out of service: dropped
//	   │ dedup       Key done before (Store, TTL 7 days): dropped; one delivery per Key at a time
//	   │ rate limit  raised / level_changed over the sensor's or enterprise's token bucket: dropped
//	   │ escalation  the step's short text → one Message per route and recipient
//	   ▼ retry       each Message to its Notifier, backoff with jitter, until the deadline
//	sent | failed                                        hw_notifications_total{result}
//
// Holds are the alarm's after the event, so the event that ends a hold
// ("unshelved", "unsuppressed", "in_service") passes, unless another hold
// is still on. Nothing about a shelved alarm is sent, not even an
// escalation or a reminder: an operator shelved it for a reason and a
// limited time, and its end is an event of its own.
//
// Escalations, reminders and feedback_overdue are never rate-limited: they
// are the closed loop. A first notice the limit drops is counted, logged
// once a minute per sensor or enterprise with how many, and still followed
// by the escalation when nobody acknowledges the alarm.
//
// # Delivery, at least once
//
// Dispatcher.Handle returns when every message is delivered or has finally
// failed, so a durable consumer acknowledges an event only then. The dedup
// Store remembers a Key when its notification is done with, and each
// Message.ID when that message is delivered (or refused for good): a
// notification redelivered after a crash, or after Handle returned
// ErrGaveUp, sends only what it still owes. A Store that fails is logged
// and taken as "not delivered": a notice sent twice is better than an alarm
// nobody hears of. With a FileStore (bbolt, fsynced per record) this holds
// across restarts.
//
// A notifier says whether a failure is worth a retry (Alertmanager's
// notify/retry_stage.go). The retry stage waits Backoff.Initial (1 s),
// doubling to Backoff.Max (1 min), each wait between half and all of it
// (jitter), lengthened to a Retry-After the receiver asks for, and gives
// up when the next try would fall after Backoff.Deadline (10 min) from the
// first: counted as gave_up, and Handle returns ErrGaveUp. A refusal
// (a 4xx, a Permanent provider error) is not retried: ErrRefused.
//
// Handle is safe for concurrent use: a caller that must not wait for a
// slow notifier runs several at once (internal/centre's consumer works on
// eight messages of the log at a time). Run only keeps house: once a
// minute it logs what the rate limits dropped and expires old dedup keys.
//
// # Texts
//
// Texts writes a short Chinese text per event and step, which fits one SMS
// segment (70 characters) where it can, and the same in English for the
// webhook. With the demo's names:
//
//	raised            【危险源预警】示范县恒安氯碱化工有限公司 液氯储罐区 氯气二级报警 10:02起，请立即确认处置。
//	escalated, step 2 【危险源预警】示范县恒安氯碱化工有限公司 液氯储罐区 氯气二级报警 10:02起 企业、园区已25分钟未确认，已升级至县应急值班。
//
// testdata/text/*.txt holds every event for every step (go test -update
// rewrites them).
//
// # Notifiers
//
// A Notifier is named (the label of its metrics) and says whether its
// error is worth a retry. NewWebhook posts JSON; NewSMS and NewVoice wrap
// a provider's client (SMSSender, VoiceCaller), whose errors are retried
// unless marked Permanent. LogProvider is the only provider so far: one
// log line per message, the number masked.
//
// The webhook POSTs one message per notification, Content-Type
// application/json, with the configured headers, User-Agent hazardwatch
// and Idempotency-Key: the message id (a receiver may see a message twice,
// never lose one). 2xx is success; 408, 429, 5xx and network errors are
// retried; other answers are not; Retry-After (seconds or an HTTP date) is
// honoured. The body (WebhookVersion 1; fields with empty values are left
// out where marked ?):
//
//	{
//	  "version": 1,
//	  "id": "e01-GT-101.high.1/42/2/webhook",  // message id, also the Idempotency-Key
//	  "key": "e01-GT-101.high.1/42/2",         // the notification's dedup key
//	  "alarm_id": "e01-GT-101.high.1",
//	  "event": "escalated",                    // raised, level_changed, escalated, reminded, feedback_overdue, unshelved, …
//	  "seq": 42,                               // the event's global sequence number
//	  "at": "2025-03-06T10:27:00+08:00",       // when the event was made durable (RFC 3339)
//	  "due_at": "…",                           // ? when the step was due
//	  "raised_at": "…",                        // ? when the alarm was raised
//	  "step": 2, "step_name": "county",        // 0 enterprise, 1 park, 2 county
//	  "reminder": 0,                           // n for the step's n-th reminder
//	  "priority": 1, "class": "alarm", "level": "L2"?, "state": "unack_active",
//	  "source": {"county", "park", "enterprise", "enterprise_name", "hazard_source",
//	             "hazard_source_name", "sensor", "sensor_name", "kind", "gas", "gateway"},  // each ?
//	  "value": 2.4?, "limit": 2?, "unit": "ppm"?,  // value and limit absent when not finite
//	  "alarm_message": "…中文 / English",       // the alarm's own text
//	  "text": {"zh": "【危险源预警】…", "en": "[Hazard alert] …"},
//	  "recipients": [{"name": "…", "phone": "…"?, "role": "县应急值班"?}]
//	}
//
// # Configuration
//
// Options is what a deployment gives, with defaults: the routes (which
// notifier serves which steps, events and priorities; a webhook's URL,
// headers and timeout in WebhookOptions), the dedup Store and TTL (7 days),
// the per-sensor and per-enterprise rates (3 at once then one per 10 min;
// 20 then one a minute), the Backoff (1 s to 1 min, 10 min deadline), the
// queue (1024) and workers (4), and the texts' prefix and zone (UTC+8).
// A sketch:
//
//	hook, _ := notify.NewWebhook(notify.WebhookOptions{URL: "https://platform.example/hw",
//		Header: http.Header{"Authorization": {"Bearer …"}}, Timeout: 10 * time.Second})
//	store, _ := notify.OpenFileStore(filepath.Join(dataDir, "notify.db"))
//	logp := notify.LogProvider{Logger: logger}
//	d, _ := notify.New(notify.Options{
//		Routes: []notify.Route{
//			{Notifier: hook},
//			{Notifier: notify.NewSMS(logp), PerRecipient: true},
//			{Notifier: notify.NewVoice(logp), PerRecipient: true, Steps: []int{1, 2},
//				Events: []string{"escalated", "reminded"}},
//		},
//		Store: store, Logger: logger, Registerer: reg,
//	})
//	go d.Run(ctx)
//	err := d.Handle(ctx, n) // from the durable consumer; ack unless errors.Is(err, notify.ErrGaveUp)
//
// # Metrics
//
//	hw_notifications_total{result}                   per notification: sent, dropped_shelved, dropped_suppressed,
//	                                                 duplicate, rate_limited, unrouted, failed, invalid
//	hw_notifications_rate_limited_total{scope}       sensor, enterprise
//	hw_notification_messages_total{notifier,result}  sent, refused, gave_up
//	hw_notification_attempts_total{notifier,result}  ok, error
//	hw_notification_retries_total{notifier}
//	hw_notification_delivery_seconds{notifier}       from the event made durable to the message delivered
package notify
