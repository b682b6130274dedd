package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

func (s *Server) listAlarms(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	q := r.URL.Query()
	limit, ok := parseLimit(w, q)
	if !ok {
		return
	}
	all := false
	switch q.Get("state") {
	case "", "active":
	case "all":
		all = true
	default:
		writeError(w, http.StatusBadRequest, "state 须为 active 或 all / state must be active or all")
		return
	}
	// A filter is a scope the caller asks for: it must lie inside the
	// token's (403 otherwise, as for the WebSocket), never silently
	// narrowed to it. The token's scope is the first filter; an alarm must
	// pass them all.
	filters := []auth.Scope{tok.Scope}
	for _, kind := range []string{"enterprise", "park"} {
		v := q.Get(kind)
		if v == "" {
			continue
		}
		sc, ok := s.askedScope(w, tok, kind, v)
		if !ok {
			return
		}
		filters = append(filters, sc)
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since 不是 RFC 3339 时间 / since is not an RFC 3339 time: "+v)
			return
		}
		since = t
	}
	var after *alarmKey
	if c := q.Get("cursor"); c != "" {
		var k alarmKey
		if err := decodeCursor(c, "alarms", &k); err != nil {
			writeError(w, http.StatusBadRequest, "游标无效 / bad cursor")
			return
		}
		after = &k
	}

	// state=all: every alarm the Manager holds (it keeps every alarm of
	// its log), in scope, without histories.
	var alarms []alerting.Alarm
	if all {
		alarms = s.o.Alarms.Select(func(a *alerting.Alarm) bool { return inScopes(filters, a.Source) })
	} else {
		alarms = s.o.Alarms.Active()
	}
	type keyed struct {
		k alarmKey
		a alerting.Alarm
	}
	var sel []keyed
	for _, a := range alarms {
		if !s.coversAlarm(tok, a) || !inScopes(filters, a.Source) || (!since.IsZero() && lastChange(a).Before(since)) {
			continue
		}
		k := keyOf(a)
		if after != nil && k.compare(*after) <= 0 {
			continue
		}
		sel = append(sel, keyed{k, a})
	}
	slices.SortFunc(sel, func(a, b keyed) int { return a.k.compare(b.k) })
	out := list[alerting.Alarm]{Items: []alerting.Alarm{}}
	for _, x := range sel {
		if len(out.Items) == limit {
			out.Next = encodeCursor("alarms", keyOf(out.Items[len(out.Items)-1]))
			break
		}
		// A list carries no histories: GET /alarms/{id} has the full one.
		x.a.History = nil
		out.Items = append(out.Items, x.a)
	}
	writeJSON(w, http.StatusOK, out)
}

func inScopes(scopes []auth.Scope, src alerting.Source) bool {
	for _, sc := range scopes {
		if !inScope(sc, src) {
			return false
		}
	}
	return true
}

// inScope reports whether an alarm from src lies in scope sc, by the ids
// the Manager gave it (the ones its per-scope sequence numbers count).
func inScope(sc auth.Scope, src alerting.Source) bool {
	switch sc.Kind {
	case "all":
		return true
	case "enterprise":
		return src.Enterprise == sc.ID
	case "park":
		return src.Park == sc.ID
	case "county":
		return src.County == sc.ID
	}
	return false
}

// lastChange is when the alarm last had an event: what since= filters on,
// so that a client can poll for what changed.
func lastChange(a alerting.Alarm) time.Time {
	if n := len(a.History); n > 0 {
		return a.History[n-1].At
	}
	t := a.RaisedAt
	for _, u := range []time.Time{a.AckedAt, a.ReturnedAt, a.ClearedAt} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// alarmKey orders a list and is its cursor: open before closed, then as
// the Manager's Active (priority, toxic gas first, newest first), then id.
// A cursor is a position in that order, so an alarm raised while a client
// pages does not shift what it has not seen yet.
type alarmKey struct {
	Closed   int    `json:"c"`
	Priority int    `json:"p"`
	Toxic    int    `json:"t"`
	Raised   int64  `json:"r"`
	ID       string `json:"i"`
}

func keyOf(a alerting.Alarm) alarmKey {
	k := alarmKey{Priority: a.Priority, Toxic: 1, Raised: a.RaisedAt.UnixNano(), ID: a.ID}
	if a.State == model.StateNormal {
		k.Closed = 1
	}
	if a.Kind == model.GasToxic {
		k.Toxic = 0
	}
	return k
}

func (a alarmKey) compare(b alarmKey) int {
	return cmp.Or(
		cmp.Compare(a.Closed, b.Closed),
		cmp.Compare(a.Priority, b.Priority),
		cmp.Compare(a.Toxic, b.Toxic),
		cmp.Compare(b.Raised, a.Raised),
		strings.Compare(a.ID, b.ID),
	)
}

func (s *Server) getAlarm(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	a, ok := s.o.Alarms.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "报警不存在 / no such alarm")
		return
	}
	if !s.coversAlarm(tok, a) {
		writeError(w, http.StatusForbidden, msgForbidden)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// ackAlarm acknowledges. The answer comes after the Manager has made the
// event durable, and is the alarm as it is then.
func (s *Server) ackAlarm(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	var req struct {
		Comment string `json:"comment"`
	}
	s.alarmAction(w, r, tok, actAck, mayAck, &req, func(ctx context.Context, id, user string) error {
		return s.o.Alarms.Ack(ctx, id, user, req.Comment)
	})
}

// shelveAlarm shelves for a duration ("30m", Go's notation) of at most the
// Manager's limit, with a reason (SPEC §3).
func (s *Server) shelveAlarm(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	var req struct {
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}
	s.alarmAction(w, r, tok, actShelve, mayShelve, &req, func(ctx context.Context, id, user string) error {
		d, err := time.ParseDuration(req.Duration)
		if err != nil {
			return fmt.Errorf("%w: duration %q is not a duration such as 30m or 2h", alerting.ErrInvalid, req.Duration)
		}
		return s.o.Alarms.Shelve(ctx, id, user, req.Reason, d)
	})
}

// unshelveAlarm ends a shelf by hand: the alarm comes back acknowledged by
// the caller.
func (s *Server) unshelveAlarm(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	var req struct {
		Comment string `json:"comment"`
	}
	s.alarmAction(w, r, tok, actUnshelve, mayShelve, &req, func(ctx context.Context, id, user string) error {
		return s.o.Alarms.Unshelve(ctx, id, user, req.Comment)
	})
}

// feedbackAlarm records the enterprise's handling report (处置反馈): the
// cause found and the action taken. It closes the loop; given once, after
// the alarm was acknowledged (409 otherwise).
func (s *Server) feedbackAlarm(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	var req struct {
		Cause  string `json:"cause"`
		Action string `json:"action"`
	}
	s.alarmAction(w, r, tok, actFeedback, mayFeedback, &req, func(ctx context.Context, id, user string) error {
		return s.o.Alarms.Feedback(ctx, id, user, req.Cause, req.Action)
	})
}

// alarmKPIs answers the alarm figures of one scope over a period for the
// duty report: ?from=&to= (RFC 3339; default the last 24 h) and at most one
// of enterprise=, park=, county= inside the token's scope (default the
// token's own scope).
func (s *Server) alarmKPIs(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	q := r.URL.Query()
	to, from := s.o.Clock(), time.Time{}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, f.name+" 不是 RFC 3339 时间 / "+f.name+" is not an RFC 3339 time: "+v)
				return
			}
			*f.t = t
		}
	}
	if from.IsZero() {
		from = to.Add(-24 * time.Hour)
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, "from 须早于 to / from must be before to")
		return
	}
	sc := tok.Scope
	n := 0
	for _, kind := range []string{"enterprise", "park", "county"} {
		v := q.Get(kind)
		if v == "" {
			continue
		}
		if n++; n > 1 {
			writeError(w, http.StatusBadRequest, "enterprise、park、county 至多给一个 / at most one of enterprise, park, county")
			return
		}
		want, ok := s.askedScope(w, tok, kind, v)
		if !ok {
			return
		}
		sc = want
	}
	kind, id := sc.Kind, sc.ID
	if kind == "all" {
		kind, id = "", ""
	}
	writeJSON(w, http.StatusOK, s.o.Alarms.KPIs(kind, id, from, to))
}

// askedScope is the scope a query names (enterprise=, park=, county=): it
// must exist (400) and lie inside the token's (403, never silently
// narrowed). false: the answer is written.
func (s *Server) askedScope(w http.ResponseWriter, tok auth.Token, kind, id string) (auth.Scope, bool) {
	sc := auth.Scope{Kind: kind, ID: id}
	in, known := within(s.plant, tok.Scope, sc)
	if !known {
		writeError(w, http.StatusBadRequest, "范围不存在 / no such "+kind+": "+id)
		return sc, false
	}
	if !in {
		writeError(w, http.StatusForbidden, msgForbidden)
		return sc, false
	}
	return sc, true
}

// alarmActionKind names an operator action in answers and logs.
type alarmActionKind struct {
	name     string // for the log
	zh, en   string // the action, in answers
	verb     string // what a role may not do, in a 403
	conflict string // 409: the state does not allow it
	audit    string // the audit log's action
}

var (
	actAck      = alarmActionKind{"acknowledged", "确认", "acknowledgement", "acknowledge", "当前状态不可确认 / not ackable", "alarm.ack"}
	actShelve   = alarmActionKind{"shelved", "搁置", "shelving", "shelve", "当前状态不可搁置 / cannot be shelved", "alarm.shelve"}
	actUnshelve = alarmActionKind{"unshelved", "解除搁置", "unshelving", "unshelve", "报警未搁置 / not shelved", "alarm.unshelve"}
	actFeedback = alarmActionKind{"fed back", "处置反馈", "feedback", "give feedback on", "当前不可反馈 / feedback not possible", "alarm.feedback"}
)

// alarmAction runs one operator action on the alarm of the path: 404 when
// there is none, 403 outside the caller's scope or role, 400 for a bad body
// or action, 409 when the alarm's state does not allow it. The answer comes
// after the Manager has made the event durable, and is the alarm as it is
// then. req is decoded from the body before do runs.
func (s *Server) alarmAction(w http.ResponseWriter, r *http.Request, tok auth.Token, kind alarmActionKind,
	allowed func(auth.Token) bool, req any, do func(ctx context.Context, id, user string) error) {
	id := r.PathValue("id")
	a, ok := s.o.Alarms.Get(id)
	if !ok {
		writeError(w, http.StatusNotFound, "报警不存在 / no such alarm")
		return
	}
	if !s.coversAlarm(tok, a) {
		writeError(w, http.StatusForbidden, msgForbidden)
		return
	}
	if !allowed(tok) {
		writeError(w, http.StatusForbidden, "无权"+kind.zh+"：角色 "+string(tok.Role)+" 不可执行 / forbidden: role "+string(tok.Role)+" may not "+kind.verb+" alarms")
		return
	}
	if !readBody(w, r, s.o.MaxBody, req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ackTimeout)
	defer cancel()
	user := actor(tok)
	err := do(ctx, id, user)
	switch {
	case err == nil:
	case errors.Is(err, alerting.ErrNotFound):
		writeError(w, http.StatusNotFound, "报警不存在 / no such alarm")
		return
	case errors.Is(err, alerting.ErrWrongState):
		cur, _ := s.o.Alarms.Get(id)
		writeError(w, http.StatusConflict, kind.conflict+" in state "+cur.State.String()+": "+strings.TrimPrefix(err.Error(), "alerting: "))
		return
	case errors.Is(err, alerting.ErrShelveTooLong):
		writeError(w, http.StatusBadRequest, "搁置时长超过上限 / "+strings.TrimPrefix(err.Error(), "alerting: "))
		return
	case errors.Is(err, alerting.ErrInvalid):
		writeError(w, http.StatusBadRequest, kind.zh+"无效 / invalid "+kind.en+": "+strings.TrimPrefix(err.Error(), "alerting: "))
		return
	case errors.Is(err, alerting.ErrStopped), errors.Is(err, context.DeadlineExceeded):
		// A timed-out action may still take effect (the Manager may have
		// taken it): say so rather than "failed".
		writeError(w, http.StatusServiceUnavailable, "报警服务繁忙，"+kind.zh+"结果未知，请刷新 / alarm service unavailable: the "+kind.en+" may or may not have taken effect")
		return
	case errors.Is(err, context.Canceled):
		return // the client has gone
	default:
		s.log.Error("api: alarm action failed", "action", kind.en, "alarm", id, "user", user, "err", err)
		writeError(w, http.StatusInternalServerError, kind.zh+"失败 / "+kind.en+" failed")
		return
	}
	s.log.Info("api: alarm "+kind.name, "alarm", id, "user", user, "role", tok.Role, "token", tok.ID)
	before := auditAlarmOf(a)
	a, _ = s.o.Alarms.Get(id)
	s.recordAudit(r, tok, kind.audit, "alarm:"+id, before, struct {
		auditAlarm
		Request any `json:"request"`
	}{auditAlarmOf(a), req})
	writeJSON(w, http.StatusOK, a)
}

// auditAlarm is what the audit log keeps of an alarm: its state and who
// did what to it, not its whole history (which the alarm log keeps).
type auditAlarm struct {
	State    string             `json:"state"`
	AckedBy  string             `json:"acked_by,omitempty"`
	Shelf    *alerting.Hold     `json:"shelf,omitempty"`
	Feedback *alerting.Feedback `json:"feedback,omitempty"`
}

func auditAlarmOf(a alerting.Alarm) auditAlarm {
	o := auditAlarm{State: a.State.String(), AckedBy: a.AckedBy}
	if a.Shelf.On() {
		o.Shelf = &a.Shelf
	}
	if a.Feedback.Given() {
		o.Feedback = &a.Feedback
	}
	return o
}

// readBody decodes a JSON object of at most max bytes into v: unknown
// fields and trailing data are 400 (a mistyped field must not pass
// silently on a safety action), too large is 413, an empty body is {}.
func readBody(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if err = dec.Decode(new(json.RawMessage)); err == io.EOF {
			return true
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	} else if err == io.EOF {
		return true
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, "请求体过大 / request body too large: at most "+strconv.FormatInt(max, 10)+" bytes")
		return false
	}
	writeError(w, http.StatusBadRequest, "请求体无效 / bad request body: "+err.Error())
	return false
}
