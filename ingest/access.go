package ingest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"hazardwatch/internal/auth"
	"hazardwatch/internal/telemetry"
)

// Who may do what at the embedded broker, when Options.Credentials is set.
//
// A client authenticates with a token as its password: a gateway's token
// (role gateway, scope gateway:ID) with the gateway id as the username, or
// an admin token with any username, which may subscribe (mosquitto_sub, for
// debugging) and never publish. Over TLS with client certificates, a
// certificate verified against the configured CAs whose Subject CommonName
// is a gateway id authenticates that gateway without a password. A client
// that gives both must name the same gateway with each.
//
// A gateway publishes to hw/v1/{its enterprise}/{itself}/telemetry and
// .../status and nothing else, its last will included, and subscribes to
// nothing. A client id that is a gateway's id is that gateway's alone.

// Credentials checks the token an MQTT client gives as its password.
// *auth.Store is one: it rereads its file (at most once a second) when
// `hazardwatch token` changed it, so a token created while the centre runs
// works at the next CONNECT, and a revoked one ends its connections at
// their next publish or delivery once the store and then the broker
// (recheckEvery) have looked again: within about two seconds.
type Credentials interface {
	Authenticate(token string, now time.Time) (auth.Token, error)
}

// Reasons of hw_ingest_connect_refused_total.
const (
	refusedNoCredentials  = "no_credentials"      // neither a password nor a client certificate
	refusedBadCredentials = "bad_credentials"     // an unknown, revoked or expired token, or one of an API role
	refusedWrongGateway   = "wrong_gateway"       // credentials of another gateway than the username or client id says
	refusedBadCertificate = "bad_certificate"     // a certificate that did not verify, or whose CN is no gateway
	refusedWill           = "will_not_authorized" // a last will outside the gateway's own status topic
	refusedHandshake      = "tls_handshake"       // a TLS handshake that failed for another reason (plain MQTT on the TLS port)
)

var refusedReasons = []string{refusedNoCredentials, refusedBadCredentials, refusedWrongGateway,
	refusedBadCertificate, refusedWill, refusedHandshake}

// recheckEvery bounds how long a connection outlives the revocation or
// expiry of its token.
const recheckEvery = time.Second

// identity is who a connection authenticated as.
type identity struct {
	// gateway and enterprise are the gateway's ids; both empty for an admin.
	gateway, enterprise string
	admin               bool
	// via says how, for the logs: token, certificate or both.
	via string
	// token is the password, kept to check it again while the connection
	// lasts; tokenID names it in the logs. Both empty for a certificate.
	token, tokenID string
}

func (id *identity) String() string {
	if id.admin {
		return "admin (" + id.tokenID + ")"
	}
	return id.gateway
}

// peer is a connection of the embedded broker as mochi holds it
// (Client.Net.Conn): the TCP or TLS connection and who authenticated on it.
// Kept on the connection rather than in a map of clients, the identity ends
// with the connection, also when mochi drops a client after
// OnConnectAuthenticate without calling OnDisconnect (a CONNACK that cannot
// be written returns from attachClient before that hook).
type peer struct {
	net.Conn
	tls *tls.Conn // nil on plain TCP
	who atomic.Pointer[identity]
	// checked is when the token was last found valid, in Unix ns; ended is
	// set once the connection is closed for a token no longer valid.
	checked atomic.Int64
	ended   atomic.Bool
}

// peerOf is the connection of cl; nil for a client the listener did not
// accept (mochi's inline client, which this broker does not enable).
func peerOf(cl *mqtt.Client) *peer {
	p, _ := cl.Net.Conn.(*peer)
	return p
}

// gatewayIdentity is gateway id's identity, false when the plant has no
// such gateway.
func (in *Ingest) gatewayIdentity(id string) (*identity, bool) {
	gi, ok := in.plant.GatewayIndex(id)
	if !ok {
		return nil, false
	}
	return &identity{gateway: id, enterprise: in.plant.Enterprises[in.plant.GatewayEnterprise(gi)].ID}, true
}

// authenticate decides who a CONNECT comes from: the identity, or the
// reason of hw_ingest_connect_refused_total and a detail for the log.
func (in *Ingest) authenticate(cl *mqtt.Client, pk packets.Packet, p *peer) (*identity, string, string) {
	user := string(pk.Connect.Username)
	var byCert, byToken *identity
	if p != nil && p.tls != nil {
		// The listener finished the handshake before mochi read the
		// CONNECT, so the peer's certificates are known here.
		st := p.tls.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			cn := st.PeerCertificates[0].Subject.CommonName
			// crypto/tls fills VerifiedChains only when it verified the
			// chain against ClientCAs; New refuses the ClientAuth modes that
			// take a certificate without verifying it, so this is a guard.
			if len(st.VerifiedChains) == 0 {
				return nil, refusedBadCertificate, fmt.Sprintf("client certificate %q was not verified", cn)
			}
			id, ok := in.gatewayIdentity(cn)
			if !ok {
				return nil, refusedBadCertificate, fmt.Sprintf("client certificate CN %q is not a gateway of the plant", cn)
			}
			id.via = "certificate"
			byCert = id
		}
	}
	if len(pk.Connect.Password) > 0 {
		tok, err := in.o.Credentials.Authenticate(string(pk.Connect.Password), in.clock())
		if err != nil {
			return nil, refusedBadCredentials, err.Error()
		}
		switch {
		case tok.Role == auth.Admin:
			byToken = &identity{admin: true}
		case tok.Role == auth.Gateway && tok.Scope.Kind == "gateway":
			if user != tok.Scope.ID {
				return nil, refusedWrongGateway, fmt.Sprintf("username %q with token %s of gateway %s", user, tok.ID, tok.Scope.ID)
			}
			id, ok := in.gatewayIdentity(tok.Scope.ID)
			if !ok {
				return nil, refusedWrongGateway, fmt.Sprintf("token %s is of gateway %s, which the plant does not have", tok.ID, tok.Scope.ID)
			}
			byToken = id
		default:
			return nil, refusedBadCredentials, fmt.Sprintf("token %s of role %s is not for MQTT", tok.ID, tok.Role)
		}
		byToken.via, byToken.token, byToken.tokenID = "token", string(pk.Connect.Password), tok.ID
	}

	var id *identity
	switch {
	case byCert == nil && byToken == nil:
		if user != "" {
			return nil, refusedNoCredentials, fmt.Sprintf("username %q without a password", user)
		}
		return nil, refusedNoCredentials, "neither a password nor a client certificate"
	case byCert != nil && byToken != nil:
		if byToken.admin || byToken.gateway != byCert.gateway {
			return nil, refusedWrongGateway, fmt.Sprintf("certificate of gateway %s, token of %s", byCert.gateway, byToken)
		}
		id = byToken // it keeps the token, to check it again
		id.via = "certificate and token"
	case byCert != nil:
		if user != "" && user != byCert.gateway {
			return nil, refusedWrongGateway, fmt.Sprintf("username %q with the certificate of gateway %s", user, byCert.gateway)
		}
		id = byCert
	default:
		id = byToken
	}

	// A CONNECT with a client id already connected takes over that
	// session and disconnects the other client (mochi's
	// inheritClientSession): with a gateway's id, another client could
	// keep that gateway off the broker.
	if _, ok := in.plant.GatewayIndex(cl.ID); ok && cl.ID != id.gateway {
		return nil, refusedWrongGateway, fmt.Sprintf("client id %q is another gateway's, as %s", cl.ID, id)
	}
	// mochi publishes the will without OnACLCheck (sendLWT in server.go
	// goes straight to the subscribers), so its topic is checked here.
	if pk.Connect.WillFlag && (id.admin || pk.Connect.WillTopic != telemetry.StatusTopic(id.enterprise, id.gateway)) {
		return nil, refusedWill, fmt.Sprintf("last will on %q, as %s", pk.Connect.WillTopic, id)
	}
	return id, "", ""
}

// refuseConnect counts and logs a refused connection. The password is
// never logged.
func (in *Ingest) refuseConnect(reason, detail, client, remote, user string) {
	in.m.connectRefused.WithLabelValues(reason).Inc()
	in.log.Warn("MQTT connection refused", "reason", reason, "detail", detail,
		"client", client, "remote", remote, "username", user)
}

// handshakeFailed counts and logs a TLS handshake that failed. A
// connection closed before it said anything (a port probe) is not a
// refusal.
func (in *Ingest) handshakeFailed(remote string, err error) {
	if errors.Is(err, io.EOF) {
		in.log.Debug("TLS connection closed before its handshake", "remote", remote)
		return
	}
	reason := refusedHandshake
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		reason = refusedBadCertificate
	}
	in.refuseConnect(reason, err.Error(), "", remote, "")
}

// stillValid reports whether the token p authenticated with is still
// valid, asking Credentials at most once a recheckEvery. A connection
// whose token was revoked or expired is closed: mochi's read then fails,
// and a gateway's will says it is offline.
func (in *Ingest) stillValid(cl *mqtt.Client, p *peer, who *identity) bool {
	if who.token == "" {
		return true
	}
	now := in.clock()
	if now.UnixNano()-p.checked.Load() < int64(recheckEvery) {
		return true
	}
	if _, err := in.o.Credentials.Authenticate(who.token, now); err != nil {
		if p.ended.CompareAndSwap(false, true) {
			in.log.Warn("MQTT connection closed: its token is no longer valid", "error", err,
				"as", who.String(), "client", cl.ID, "remote", cl.Net.Remote)
			_ = p.Close()
		}
		return false
	}
	p.checked.Store(now.UnixNano())
	return true
}

// allowed is the ACL of an authenticating broker: what the client on p
// may publish (write) or read. A refused publish is counted like a
// rejected message.
func (h *hook) allowed(cl *mqtt.Client, p *peer, topic string, write bool) bool {
	in := h.in
	var who *identity
	if p != nil {
		who = p.who.Load()
	}
	if who == nil || !in.stillValid(cl, p, who) {
		// mochi checks only clients that passed OnConnectAuthenticate;
		// no identity is a client it should not have let in.
		if write {
			h.refusePublish(cl, topic, telemetry.ReasonNotAuthorized, "no valid credentials", "")
		}
		return false
	}
	if !write {
		// Also called for every message delivered to a subscriber
		// (publishToClient), so a refusal here also stops a subscription
		// a gateway inherited with a session's client id.
		if who.admin {
			return true
		}
		in.log.Warn("subscription refused: a gateway may not subscribe", "filter", topic,
			"as", who.String(), "client", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	if who.admin {
		return h.refusePublish(cl, topic, telemetry.ReasonNotAuthorized, "an admin token is read-only", who.String())
	}
	t, err := telemetry.ParseTopic(topic)
	if err != nil {
		return h.refusePublish(cl, topic, telemetry.ReasonBadTopic, "topic outside hw/v1/+/+/telemetry|status", who.String())
	}
	if t.Gateway == who.gateway && t.Enterprise == who.enterprise {
		return true
	}
	return h.refusePublish(cl, topic, telemetry.ReasonNotAuthorized, "a gateway publishes only to its own topics", who.String())
}

// refusePublish counts a publish the ACL refused under reason and logs it;
// it returns false, the ACL's answer.
func (h *hook) refusePublish(cl *mqtt.Client, topic string, reason telemetry.Reason, why, as string) bool {
	h.in.m.msgRejected.Inc()
	h.in.m.reject(reason)
	h.in.log.Warn("publish refused: "+why, "reason", reason.String(), "topic", topic,
		"as", as, "client", cl.ID, "remote", cl.Net.Remote)
	return false
}
