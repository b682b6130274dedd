// Package notify turns alarm events into messages to people and systems:
// the SMS, the call and the webhook that close the loop of an alarm nobody
// has acknowledged (issue #6, SPEC §4 escalation). Its input is a
// Notification, a plain struct, so that it does not depend on package
// alerting. This first part writes the short texts (Texts): Chinese for
// SMS and voice, fitting one SMS segment where it can, and English beside
// it for other systems.
package notify
