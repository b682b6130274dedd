package api

import (
	"errors"
	"net/http"
	"strings"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

// maxTokenLen bounds what is hashed and compared: real tokens are 46
// characters ("hw_" and 43 of base64url).
const maxTokenLen = 256

type authedHandler func(w http.ResponseWriter, r *http.Request, tok auth.Token)

// authed authenticates the request before h runs; h then authorises on the
// object it touches.
func (s *Server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _, ok := s.authenticate(w, r, false)
		if ok {
			h(w, r, tok)
		}
	}
}

// authenticate finds the caller's token. On failure it answers 401 (403
// for a valid token of a role the API does not serve), counts the reason
// and returns false. allowQuery accepts ?token= (the WebSocket
// only: browsers cannot set headers on one); elsewhere a token in a URL
// would end up in logs and browser history.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, allowQuery bool) (auth.Token, string, bool) {
	plain, reason := bearer(r, allowQuery)
	var tok auth.Token
	var err error
	if reason == "" {
		tok, err = s.o.Tokens.Authenticate(plain, s.clock())
	}
	// The failure limit (limits.go) comes before any answer that depends on
	// the token: an address over it learns nothing from its guesses.
	addr := limitKey(r.RemoteAddr)
	good := ""
	if reason == "" && err == nil && apiRole(tok.Role) {
		good = tok.ID
	}
	if blocked, wait := s.lim.authBlocked(addr, good); blocked {
		s.log.Info("api: client over the limit of failed token checks", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		s.tooMany(w, limitAuth, wait, msgTooMany)
		return auth.Token{}, "", false
	}
	if reason == "" {
		switch {
		case err == nil && !apiRole(tok.Role):
			// A gateway's token is its password at the MQTT broker. It is
			// a valid token, so the answer is 403, not 401: retrying with
			// the same token can never help.
			s.metrics.authFailures.WithLabelValues(authNotForAPI).Inc()
			s.log.Info("api: token refused: not for the API", "role", tok.Role, "token", tok.ID,
				"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, "此令牌不能用于接口 / forbidden: a "+string(tok.Role)+" token is for the MQTT broker, not the API")
			return auth.Token{}, "", false
		case err == nil:
			if ok, wait := s.lim.allow(tok.ID); !ok {
				s.tooMany(w, limitRate, wait, msgTooMany)
				return auth.Token{}, "", false
			}
			return tok, plain, true
		case errors.Is(err, auth.ErrExpired):
			reason = authExpired
		case errors.Is(err, auth.ErrRevoked):
			reason = authRevoked
		default:
			reason = authUnknown
		}
		// Only checks against the store count: a missing or malformed
		// token costs nothing and tells nothing.
		s.lim.failed(addr)
	}
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	// The remote address and path, never the token: a log must not become
	// a place to steal one from.
	s.log.Info("api: authentication failed", "reason", reason, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="hazardwatch"`)
	writeError(w, http.StatusUnauthorized, map[string]string{
		authMissing:   "缺少令牌 / missing token: send Authorization: Bearer <token>",
		authMalformed: "令牌格式错误 / malformed Authorization header or token",
		authUnknown:   "令牌无效 / invalid token",
		authRevoked:   "令牌已吊销 / token revoked",
		authExpired:   "令牌已过期 / token expired",
	}[reason])
	return auth.Token{}, "", false
}

// bearer extracts the token, or says why there is none.
func bearer(r *http.Request, allowQuery bool) (string, string) {
	hs := r.Header.Values("Authorization")
	switch {
	case len(hs) > 1:
		return "", authMalformed
	case len(hs) == 1:
		scheme, tok, ok := strings.Cut(strings.TrimSpace(hs[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", authMalformed
		}
		tok = strings.TrimSpace(tok)
		if !wellFormed(tok) {
			return "", authMalformed
		}
		return tok, ""
	case allowQuery && r.URL.Query().Has("token"):
		qs := r.URL.Query()["token"]
		if len(qs) != 1 || !wellFormed(qs[0]) {
			return "", authMalformed
		}
		return qs[0], ""
	}
	return "", authMissing
}

// wellFormed accepts what a token may hold (base64url and the prefix), so
// that junk is told apart from a token that is merely wrong.
func wellFormed(tok string) bool {
	if tok == "" || len(tok) > maxTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '~' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// coversEnterprise reports whether tok may see enterprise e.
func (s *Server) coversEnterprise(tok auth.Token, e int32) bool {
	return tok.Scope.Kind == "all" || tok.Scope.Covers(s.plant, e)
}

// coversAlarm reports whether tok may see alarm a, by its enterprise. An
// alarm of an enterprise no longer in the plant files is an admin's only.
func (s *Server) coversAlarm(tok auth.Token, a alerting.Alarm) bool {
	if tok.Scope.Kind == "all" {
		return true
	}
	e, ok := s.plant.EnterpriseIndex(a.Source.Enterprise)
	return ok && tok.Scope.Covers(s.plant, e)
}

// within reports whether scope inner lies wholly inside outer; known is
// false when inner names nothing in the plant. A narrower view is allowed
// (a county officer may watch one enterprise), a wider one is not (an
// enterprise operator may not ask for its park).
func within(p *model.Plant, outer, inner auth.Scope) (ok, known bool) {
	switch inner.Kind {
	case "all":
		return outer.Kind == "all", true
	case "enterprise":
		e, known := p.EnterpriseIndex(inner.ID)
		return known && (outer.Kind == "all" || outer.Covers(p, e)), known
	case "park":
		pk, known := p.ParkIndex(inner.ID)
		if !known {
			return false, false
		}
		switch outer.Kind {
		case "all":
			return true, true
		case "park":
			return outer.ID == inner.ID, true
		case "county":
			return p.Counties[p.Parks[pk].County].ID == outer.ID, true
		}
		return false, true
	case "county":
		_, known := p.CountyIndex(inner.ID)
		return known && (outer.Kind == "all" || outer.Kind == "county" && outer.ID == inner.ID), known
	}
	return false, false
}

// actor is the user an action is recorded under. An officer acknowledges as
// a supervisor (SPEC §3): marked so, so that it is never taken for the
// enterprise's own acknowledgement.
func actor(tok auth.Token) string {
	name := tok.Name
	if name == "" {
		name = tok.ID
	}
	if tok.Role == auth.Officer {
		return "officer:" + name
	}
	return name
}

// apiRole reports whether the API serves tokens of role r: SPEC §3's
// roles, not a gateway's.
func apiRole(r auth.Role) bool {
	switch r {
	case auth.Operator, auth.Officer, auth.Admin:
		return true
	}
	return false
}

// mayAck: every role of SPEC §3's table may acknowledge.
func mayAck(tok auth.Token) bool { return apiRole(tok.Role) }

// mayShelve: operators and admins (SPEC §3); a duty officer reads,
// comments and acknowledges as a supervisor, but does not hide alarms from
// the control room. Unshelving is shelving's own undoing, so the same.
func mayShelve(tok auth.Token) bool { return tok.Role == auth.Operator || tok.Role == auth.Admin }

// mayFeedback: the enterprise's handling report is an operator's (an
// enterprise's or the park control room's) or an admin's (SPEC §3); a
// duty officer reads it.
func mayFeedback(tok auth.Token) bool { return tok.Role == auth.Operator || tok.Role == auth.Admin }

const msgForbidden = "无权访问：超出令牌范围 / forbidden: outside your token's scope"
