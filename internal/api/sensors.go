package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
)

// sensorJSON is SPEC §3's sensor object. Absent things are null (no
// reading yet, no hazard source for a whole-plant meter) rather than left
// out, so that a client can tell "none" from an older server.
type sensorJSON struct {
	ID            string             `json:"id"`
	Name          string             `json:"name"`
	Enterprise    string             `json:"enterprise"`
	HazardSource  *string            `json:"hazard_source"`
	Gateway       string             `json:"gateway"`
	Kind          string             `json:"kind"`
	Unit          string             `json:"unit"`
	Limits        map[string]float64 `json:"limits"`
	Value         *float64           `json:"value"`
	Quality       *string            `json:"quality"`
	QualityReason string             `json:"quality_reason,omitempty"`
	TS            *string            `json:"ts"`
	AlarmState    string             `json:"alarm_state"`
	// OutOfService is the instrument's out-of-service period (admin),
	// absent while it is in service.
	OutOfService *serviceJSON `json:"out_of_service,omitempty"`
}

type list[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

func (s *Server) listSensors(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	q := r.URL.Query()
	limit, ok := parseLimit(w, q)
	if !ok {
		return
	}
	ent, hs, kind := int32(-1), int32(-1), model.KindUnknown
	if v := q.Get("enterprise"); v != "" {
		i, known := s.plant.EnterpriseIndex(v)
		if !known {
			writeError(w, http.StatusBadRequest, "企业不存在 / no such enterprise: "+v)
			return
		}
		if !s.coversEnterprise(tok, i) {
			writeError(w, http.StatusForbidden, msgForbidden)
			return
		}
		ent = i
	}
	if v := q.Get("hazard_source"); v != "" {
		i, known := s.plant.HazardSourceIndex(v)
		if !known {
			writeError(w, http.StatusBadRequest, "危险源不存在 / no such hazard source: "+v)
			return
		}
		if !s.coversEnterprise(tok, s.plant.HazardSources[i].Enterprise) {
			writeError(w, http.StatusForbidden, msgForbidden)
			return
		}
		hs = i
	}
	if v := q.Get("kind"); v != "" {
		k, known := model.ParseKind(v)
		if !known {
			writeError(w, http.StatusBadRequest, "未知类型 / unknown sensor kind: "+v)
			return
		}
		kind = k
	}
	start := 0
	if c := q.Get("cursor"); c != "" {
		var after string
		i, known := int32(-1), false
		if decodeCursor(c, "sensors", &after) == nil {
			i, known = s.plant.SensorIndex(after)
		}
		if !known {
			writeError(w, http.StatusBadRequest, "游标无效 / bad cursor")
			return
		}
		start = int(i) + 1
	}

	worst, d := worstBySensor(s.o.Alarms.Active()), s.design()
	out := list[sensorJSON]{Items: []sensorJSON{}}
	for i := start; i < len(s.plant.Sensors); i++ {
		sn := &s.plant.Sensors[i]
		if (ent >= 0 && sn.Enterprise != ent) || (hs >= 0 && sn.HazardSource != hs) ||
			(kind != model.KindUnknown && sn.Kind != kind) || !s.coversEnterprise(tok, sn.Enterprise) {
			continue
		}
		if len(out.Items) == limit {
			out.Next = encodeCursor("sensors", out.Items[len(out.Items)-1].ID)
			break
		}
		out.Items = append(out.Items, s.sensorObjectIn(int32(i), worst, d))
	}
	writeJSON(w, http.StatusOK, out)
}

// worstBySensor picks, per sensor, the open alarm that matters most: the
// highest priority (Active's order breaks ties).
func worstBySensor(active []alerting.Alarm) map[string]alerting.Alarm {
	m := make(map[string]alerting.Alarm, len(active))
	for _, a := range active {
		if cur, ok := m[a.Source.Sensor]; !ok || a.Priority < cur.Priority {
			m[a.Source.Sensor] = a
		}
	}
	return m
}

// sensorObjectIn is sensorObject with its out-of-service period by d.
func (s *Server) sensorObjectIn(i int32, worst map[string]alerting.Alarm, d model.Design) sensorJSON {
	o := s.sensorObject(i, worst)
	if h, ok := d.OutOfServiceAt(o.ID, s.clock()); ok {
		o.OutOfService = &serviceJSON{Since: rfc3339(h.Since), Until: rfc3339(h.Until), By: h.By, Reason: h.Reason}
	}
	return o
}

func (s *Server) sensorObject(i int32, worst map[string]alerting.Alarm) sensorJSON {
	p := s.plant
	sn := &p.Sensors[i]
	o := sensorJSON{
		ID: sn.ID, Name: sn.Name, Kind: sn.Kind.String(), Unit: sn.Unit,
		Limits: map[string]float64{}, AlarmState: model.StateNormal.String(),
	}
	if sn.Enterprise >= 0 {
		o.Enterprise = p.Enterprises[sn.Enterprise].ID
	}
	if sn.HazardSource >= 0 {
		h := p.HazardSources[sn.HazardSource].ID
		o.HazardSource = &h
	}
	if sn.Gateway >= 0 {
		o.Gateway = p.Gateways[sn.Gateway].ID
	}
	if rs := s.sensorRules(); rs != nil {
		for k, l := range rs[i].Limits {
			if l.Set {
				o.Limits[model.LimitKind(k).String()] = l.Value
			}
		}
	}
	if s.o.Latest != nil {
		if rd, ok := s.o.Latest.Latest(i); ok {
			if rd.HasValue && !math.IsNaN(rd.Value) && !math.IsInf(rd.Value, 0) {
				v := rd.Value
				o.Value = &v
			}
			q, ts := rd.Quality.String(), timeMS(rd.TS)
			o.Quality, o.TS = &q, &ts
			if rd.Reason != model.ReasonNone {
				o.QualityReason = rd.Reason.String()
			}
		}
	}
	if a, ok := worst[sn.ID]; ok {
		o.AlarmState = a.State.String()
	}
	return o
}

// SetRules makes the sensor objects show the limits of rs, by sensor
// index, from now on: the centre calls it when a reload of the rule files
// has taken effect. rs must have one entry per sensor of the plant.
func (s *Server) SetRules(rs []model.SensorRules) error {
	if len(rs) != len(s.plant.Sensors) {
		return fmt.Errorf("api: %d sensor rules for %d sensors", len(rs), len(s.plant.Sensors))
	}
	s.rules.Store(&rs)
	return nil
}

// sensorRules are the rules in force: the last SetRules, else Options.Rules.
func (s *Server) sensorRules() []model.SensorRules {
	if rs := s.rules.Load(); rs != nil {
		return *rs
	}
	return s.o.Rules
}

type bucketJSON struct {
	TS    string  `json:"ts"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Count int     `json:"count"`
}

func (s *Server) sensorHistory(w http.ResponseWriter, r *http.Request, tok auth.Token) {
	id := r.PathValue("id")
	i, known := s.plant.SensorIndex(id)
	if !known {
		writeError(w, http.StatusNotFound, "监测点位不存在 / no such sensor: "+id)
		return
	}
	if !s.coversEnterprise(tok, s.plant.Sensors[i].Enterprise) {
		writeError(w, http.StatusForbidden, msgForbidden)
		return
	}
	if s.o.History == nil {
		writeError(w, http.StatusServiceUnavailable, "历史数据不可用 / history is not configured")
		return
	}
	q := r.URL.Query()
	to := s.clock()
	if v := q.Get("to"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "to 不是 RFC 3339 时间 / to is not an RFC 3339 time: "+v)
			return
		}
		to = t
	}
	from := to.Add(-time.Hour)
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "from 不是 RFC 3339 时间 / from is not an RFC 3339 time: "+v)
			return
		}
		from = t
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, "from 须早于 to / from must be before to")
		return
	}
	var step time.Duration
	if v := q.Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d%time.Millisecond != 0 {
			writeError(w, http.StatusBadRequest, "step 无效 / step must be a duration such as 1m or 1h, in whole milliseconds: "+v)
			return
		}
		step = d
	}
	span := to.Sub(from)
	switch {
	case step == 0 && span > maxRawRange:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("原始数据最多 %s，请指定 step / raw history spans at most %s: give a step", maxRawRange, maxRawRange))
		return
	case step > 0:
		// Buckets are aligned to the step from the epoch, so a range may
		// touch one more bucket than span/step.
		sm := step.Milliseconds()
		n := floorDiv(to.UnixMilli()-1, sm) - floorDiv(from.UnixMilli(), sm) + 1
		if n > maxBuckets {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("数据桶过多，请加大 step / %d buckets is more than %d: use a step of at least %s",
				n, maxBuckets, minStep(span)))
			return
		}
	}
	bs, err := s.o.History.History(r.Context(), id, from, to, step)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrBadRange):
		writeError(w, http.StatusBadRequest, "时间范围无效 / bad range: "+err.Error())
		return
	case errors.Is(err, influx.ErrUnavailable):
		// InfluxDB is down or too slow: the writer says so in the log and
		// /readyz's influxdb check; the caller may try again.
		s.metrics.historyErrors.WithLabelValues(historyUnavailable).Inc()
		s.log.Debug("api: history unavailable", "sensor", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "历史数据暂不可用，请稍后重试 / history unavailable: InfluxDB does not answer, try again later")
		return
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		s.metrics.historyErrors.WithLabelValues(historyUnavailable).Inc()
		writeError(w, http.StatusServiceUnavailable, "历史数据暂不可用 / history unavailable")
		return
	default:
		s.metrics.historyErrors.WithLabelValues(historyFailed).Inc()
		s.log.Error("api: history query failed", "sensor", id, "err", err)
		writeError(w, http.StatusInternalServerError, "历史数据查询失败 / history query failed")
		return
	}
	if len(bs) > maxBuckets {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("数据点过多，请指定 step 或缩短时间范围 / more than %d readings: give a step or a shorter range", maxBuckets))
		return
	}
	items := make([]bucketJSON, len(bs))
	for k, b := range bs {
		items[k] = bucketJSON{TS: timeMS(b.TS), Mean: b.Mean, Min: b.Min, Max: b.Max, Count: b.Count}
	}
	writeJSON(w, http.StatusOK, struct {
		Sensor string       `json:"sensor"`
		Unit   string       `json:"unit"`
		From   string       `json:"from"`
		To     string       `json:"to"`
		Step   string       `json:"step"`
		Items  []bucketJSON `json:"items"`
	}{id, s.plant.Sensors[i].Unit, timeMS(from.UnixMilli()), timeMS(to.UnixMilli()), step.String(), items})
}

// minStep is the smallest whole-second step that keeps span within
// maxBuckets (with room for the alignment's extra bucket).
func minStep(span time.Duration) time.Duration {
	d := span / (maxBuckets - 1)
	return d.Truncate(time.Second) + time.Second
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// parseLimit reads ?limit=: default 100, at most 1000 (larger is clamped,
// so a page asking for "everything" still works).
func parseLimit(w http.ResponseWriter, q url.Values) (int, bool) {
	v := q.Get("limit")
	if v == "" {
		return defaultLimit, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		writeError(w, http.StatusBadRequest, "limit 须为正整数 / limit must be a positive integer")
		return 0, false
	}
	return min(n, maxLimit), true
}

// A cursor is opaque to clients: base64url of the list it belongs to and
// where the last page ended, so one list's cursor is refused by another.
type cursor struct {
	List  string          `json:"l"`
	After json.RawMessage `json:"a"`
}

func encodeCursor(listName string, after any) string {
	a, _ := json.Marshal(after)
	b, _ := json.Marshal(cursor{List: listName, After: a})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, listName string, after any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	if c.List != listName {
		return errors.New("cursor of another list")
	}
	return json.Unmarshal(c.After, after)
}
