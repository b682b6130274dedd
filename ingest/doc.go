// Package ingest is the centre's entrance for telemetry: an MQTT broker
// (embedded mochi-mqtt, or a subscription at an external one) whose messages
// are decoded and validated by internal/telemetry, deduplicated by
// (gateway, boot, seq), and written to the READINGS JetStream stream before
// they are acknowledged.
//
//	gateway ──MQTT QoS 1 (TLS)──► broker hook / subscription
//	   ├─ CONNECT without valid credentials, publish outside its own topics: refused, counted
//	   ├─ bad content: counted by reason, logged once, acknowledged
//	   └─ accepted: entry encoded ──► committer (one goroutine)
//	         ├─ duplicate (seen, or a copy in the forming batch): acknowledged
//	         └─ batch of what waits ──► JetStream (SyncAlways) ──ack──► seen ──► PUBACK
//	                       └─ failure: no PUBACK, connection closed, gateway resends
//
// It owns the stream's format (DecodeBatch), the dedup state (rebuilt from
// the stream at start), the gateways' status (online, clock skew), the
// embedded broker's security (access.go: who a client is, by token or
// client certificate, and the topic ACL; TLS in the listener) and the
// ingest metrics of SPEC §3. Rejecting content is not refusing delivery: a
// message whose content is bad is acknowledged so that a gateway never sends
// it forever; only a failure to store withholds the acknowledgement.
package ingest
