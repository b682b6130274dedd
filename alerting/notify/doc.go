// Package notify turns alarm events into messages to people and systems:
// the SMS, the call and the webhook that close the loop of an alarm nobody
// has acknowledged (issue #6, SPEC §4 escalation). Its input is a
// Notification, a plain struct, so that it does not depend on package
// alerting.
//
// A Dispatcher runs each notification through a chain of stages, each a
// small type with one method (Alertmanager's notify.Stage): shelve →
// suppress → dedup → rate limit → escalation (the step's short text, one
// Message per route and recipient) → retry (each Message to its Notifier,
// with backoff and jitter, while the notifier says the failure is worth
// it, until a deadline). Handle returns when a notification is delivered
// or has finally failed, for a durable consumer to acknowledge it then.
package notify
