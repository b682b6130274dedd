package api

import (
	"context"
	"net/http"
	"time"

	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
)

// Auditor keeps audit entries durable (the centre's audit log): who (the
// token's id and holder), with which role, from where (the client's
// address), what (action, object) and the object before and after.
type Auditor interface {
	Audit(ctx context.Context, e audit.Entry) error
}

// auditTimeout bounds one audit append: an fsync, and the lock shared
// with the token command.
const auditTimeout = 10 * time.Second

// recordAudit records an action that has taken effect. Its failure cannot
// undo the action: it is logged as an error (and counted by the audit log)
// and the answer stands.
func (s *Server) recordAudit(r *http.Request, tok auth.Token, action, object string, before, after any) {
	if s.o.Audit == nil {
		return
	}
	actorName := tok.ID
	if tok.Name != "" {
		actorName += " " + tok.Name
	}
	e := audit.Entry{Actor: actorName, Role: string(tok.Role), From: r.RemoteAddr, Action: action, Object: object}
	if before != nil {
		e.Before = auditJSON(before)
	}
	if after != nil {
		e.After = auditJSON(after)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.o.Audit.Audit(ctx, e); err != nil {
		s.log.Error("api: action not audited", "action", action, "object", object, "token", tok.ID, "err", err)
	}
}
