package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/model"
)

// Design is what the API needs to read and change the admin's Design
// (model.Design: enterprise statuses, instruments out of service): the
// centre, which keeps it durable and has the alarms and rules follow it.
type Design interface {
	Design() model.Design
	// UpdateDesign applies change to a copy of the Design, as user, and
	// returns once the new Design is durable and in force.
	UpdateDesign(ctx context.Context, user string, change func(*model.Design) error) (before, after model.Design, err error)
}

// conflict is a change the object's state does not allow (409), its text
// the answer's.
type conflict string

func (c conflict) Error() string { return string(c) }

// statusJSON is an enterprise's status as GET and PUT
// /enterprises/{id}/status answer it.
type statusJSON struct {
	Enterprise  string       `json:"enterprise"`
	Name        string       `json:"name"`
	Park        string       `json:"park"`
	County      string       `json:"county"`
	Status      string       `json:"status"`
	Configured  string       `json:"configured"`
	Until       string       `json:"until,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	SetBy       string       `json:"set_by,omitempty"`
	SetAt       string       `json:"set_at,omitempty"`
	Maintenance []windowJSON `json:"maintenance"`
}

type windowJSON struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// serviceJSON is a sensor's out-of-service period in the sensor object.
type serviceJSON struct {
	Since  string `json:"since"`
	Until  string `json:"until,omitempty"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// rfc3339 is timeMS for a time.Time, "" for the zero time (an absent
// end).
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func (s *Server) design() model.Design {
	if s.o.Design == nil {
		return model.Design{}
	}
	return s.o.Design.Design()
}

func (s *Server) statusObject(e int32, d model.Design) statusJSON {
	p := s.plant
	ent := &p.Enterprises[e]
	park := &p.Parks[ent.Park]
	st, set := d.StatusOf(p, e, s.clock())
	o := statusJSON{Enterprise: ent.ID, Name: ent.Name, Park: park.ID, County: p.Counties[park.County].ID,
		Status: st.Status.String(), Configured: ent.Status.String(), Maintenance: []windowJSON{}}
	if set {
		o.Until, o.Reason, o.SetBy, o.SetAt = rfc3339(st.Until), st.Reason, st.By, rfc3339(st.At)
	}
	for _, w := range ent.Maintenance {
		o.Maintenance = append(o.Maintenance, windowJSON{From: rfc3339(w.From), To: rfc3339(w.To), Reason: w.Reason})
	}
	return o
}

// enterpriseOf finds the enterprise of the path and checks the caller's
// scope (404, 403).
func (s *Server) enterpriseOf(w http.ResponseWriter, r *http.Request, tok auth.Token) (int32, bool) {
	e, ok := s.plant.EnterpriseIndex(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "企业不存在 / no such enterprise")
		return 0, false
	}
	if !s.coversEnterprise(tok, e) {
		writeError(w, http.StatusForbidden, msgForbidden)
		return 0, false
	}
	return e, true
}

// sensorOf finds the sensor of the path and checks the caller's scope.
func (s *Server) sensorOf(w http.ResponseWriter, r *http.Request, tok auth.Token) (int32, bool) {
	i, ok := s.plant.SensorIndex(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "传感器不存在 / no such sensor")
		return 0, false
	}
	if !s.coversEnterprise(tok, s.plant.Sensors[i].Enterprise) {
		writeError(w, http.StatusForbidden, msgForbidden)
		return 0, false
	}
	return i, true
}

func (s *Server) getEnterpriseStatus(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	e, ok := s.enterpriseOf(w, r, tok)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.statusObject(e, s.design()))
}

// statusReq is PUT /enterprises/{id}/status's body.
type statusReq struct {
	Status string `json:"status"`
	Until  string `json:"until"`
	Reason string `json:"reason"`
}

// check validates the request at now and returns the setting it asks for.
func (q statusReq) check(now time.Time) (model.StatusSetting, error) {
	st, ok := model.ParseEnterpriseStatus(q.Status)
	if !ok {
		return model.StatusSetting{}, errors.New("status: want operating, stop_ordered or suspended")
	}
	until, err := untilOf(q.Until, now)
	if err != nil {
		return model.StatusSetting{}, err
	}
	if err := reasonOK("reason", q.Reason, true); err != nil {
		return model.StatusSetting{}, err
	}
	return model.StatusSetting{Status: st, At: now, Until: until, Reason: strings.TrimSpace(q.Reason)}, nil
}

// untilOf reads an optional RFC 3339 end, which must lie ahead of now.
func untilOf(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("until: want an RFC 3339 time such as 2026-12-08T08:00:00+08:00")
	}
	if !t.After(now) {
		return time.Time{}, errors.New("until: must lie in the future")
	}
	return t, nil
}

func reasonOK(field, v string, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return errors.New(field + ": required")
	case len(v) > alerting.MaxText:
		return fmt.Errorf("%s: at most %d bytes", field, alerting.MaxText)
	}
	return nil
}

// putEnterpriseStatus sets an enterprise's status (admin): a stop order
// (停产整顿), a suspension (停产/检修) until a time, or operating. Setting
// the plant file's status with no end removes the admin's setting.
func (s *Server) putEnterpriseStatus(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	e, ok := s.enterpriseOf(w, r, tok)
	if !ok || !s.adminOnly(w, tok, "设置企业状态", "set an enterprise's status") {
		return
	}
	var req statusReq
	if !readBody(w, r, s.o.MaxBody, &req) {
		return
	}
	set, err := req.check(s.clock())
	if err != nil {
		writeError(w, http.StatusBadRequest, "企业状态无效 / invalid status: "+err.Error())
		return
	}
	user := actor(tok)
	set.By = user
	ent := &s.plant.Enterprises[e]
	before, after, ok := s.updateDesign(w, r, user, func(d *model.Design) error {
		if set.Status == ent.Status && set.Until.IsZero() {
			delete(d.Status, ent.ID)
			return nil
		}
		if d.Status == nil {
			d.Status = map[string]model.StatusSetting{}
		}
		d.Status[ent.ID] = set
		return nil
	})
	if !ok {
		return
	}
	b, a := s.statusObject(e, before), s.statusObject(e, after)
	s.recordAudit(r, tok, "enterprise.status", "enterprise:"+ent.ID, b, a)
	s.log.Info("api: enterprise status set", "enterprise", ent.ID, "status", a.Status, "until", a.Until, "user", user, "token", tok.ID)
	writeJSON(w, http.StatusOK, a)
}

// serviceReq is POST /sensors/{id}/out_of_service's body, and in_service's
// (comment only).
type serviceReq struct {
	Reason  string `json:"reason"`
	Until   string `json:"until"`
	Comment string `json:"comment"`
}

// outOfService takes an instrument out of service (admin), with a reason
// and an optional end: its alarms are recorded but do not ring nor
// escalate until it is back.
func (s *Server) outOfService(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	s.service(w, r, tok, true)
}

// inService puts an instrument back in service (admin).
func (s *Server) inService(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	s.service(w, r, tok, false)
}

func (s *Server) service(w http.ResponseWriter, r *http.Request, tok auth.Token, out bool) {
	i, ok := s.sensorOf(w, r, tok)
	if !ok {
		return
	}
	what, whatEN := "停用仪表", "take instruments out of service"
	if !out {
		what, whatEN = "恢复仪表", "return instruments to service"
	}
	if !s.adminOnly(w, tok, what, whatEN) {
		return
	}
	var req serviceReq
	if !readBody(w, r, s.o.MaxBody, &req) {
		return
	}
	now := s.clock()
	var hold model.ServiceHold
	var err error
	if out {
		if req.Comment != "" {
			err = errors.New("comment: not a field of out_of_service (give a reason)")
		} else if hold.Until, err = untilOf(req.Until, now); err == nil {
			err = reasonOK("reason", req.Reason, true)
		}
	} else if req.Reason != "" || req.Until != "" {
		err = errors.New("in_service takes a comment only")
	} else {
		err = reasonOK("comment", req.Comment, false)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "请求无效 / invalid request: "+err.Error())
		return
	}
	id := s.plant.Sensors[i].ID
	user := actor(tok)
	hold.Since, hold.By, hold.Reason = now, user, strings.TrimSpace(req.Reason)
	before, after, ok := s.updateDesign(w, r, user, func(d *model.Design) error {
		_, isOut := d.OutOfServiceAt(id, now)
		switch {
		case out && isOut:
			return conflict("传感器已停用 / the sensor is out of service already")
		case !out && !isOut:
			return conflict("传感器未停用 / the sensor is not out of service")
		case out:
			if d.OutOfService == nil {
				d.OutOfService = map[string]model.ServiceHold{}
			}
			d.OutOfService[id] = hold
		default:
			delete(d.OutOfService, id)
		}
		return nil
	})
	if !ok {
		return
	}
	action := "sensor.out_of_service"
	if !out {
		action = "sensor.in_service"
	}
	worst := worstBySensor(s.o.Alarms.Active())
	b, a := s.sensorObjectIn(i, worst, before), s.sensorObjectIn(i, worst, after)
	var audited any = a
	if req.Comment != "" {
		audited = struct {
			sensorJSON
			Comment string `json:"comment"`
		}{a, req.Comment}
	}
	s.recordAudit(r, tok, action, "sensor:"+id, b, audited)
	s.log.Info("api: "+action, "sensor", id, "reason", hold.Reason, "until", rfc3339(hold.Until), "user", user, "token", tok.ID)
	writeJSON(w, http.StatusOK, a)
}

// adminOnly answers 403 unless tok is an admin's.
func (s *Server) adminOnly(w http.ResponseWriter, tok auth.Token, zh, en string) bool {
	if tok.Role == auth.Admin {
		return true
	}
	writeError(w, http.StatusForbidden, "无权"+zh+"：仅管理员 / forbidden: only an admin may "+en)
	return false
}

// updateDesign runs change through the centre and answers the errors:
// 409 for a conflict, 503 without a Design or when it did not answer.
func (s *Server) updateDesign(w http.ResponseWriter, r *http.Request, user string, change func(*model.Design) error) (before, after model.Design, ok bool) {
	if s.o.Design == nil {
		writeError(w, http.StatusServiceUnavailable, "此服务未提供设计状态 / not available on this server")
		return before, after, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), ackTimeout)
	defer cancel()
	before, after, err := s.o.Design.UpdateDesign(ctx, user, change)
	var c conflict
	switch {
	case err == nil:
		return before, after, true
	case errors.As(err, &c):
		writeError(w, http.StatusConflict, string(c))
	case errors.Is(err, alerting.ErrInvalid):
		writeError(w, http.StatusBadRequest, "请求无效 / invalid request: "+err.Error())
	case errors.Is(err, context.Canceled):
	default:
		s.log.Error("api: design change failed", "user", user, "err", err)
		writeError(w, http.StatusServiceUnavailable, "变更结果未知，请刷新 / the change may or may not have taken effect: "+err.Error())
	}
	return before, after, false
}

// auditJSON encodes v for an audit record.
func auditJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
