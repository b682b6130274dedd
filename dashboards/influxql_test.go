package dashboards_test

// The dashboards' InfluxQL queries against what internal/influx writes.
// InfluxQL answers a query that names a tag or field nobody writes with no
// rows rather than an error, so a misspelt name would leave a panel empty
// without a word: each query is checked by name against
// influx.Measurements, and, with a real InfluxDB 1.8.10, run against points
// the writer wrote, where it must return rows (and the alarm panels the
// right ones).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hazardwatch/internal/config"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/influxtest"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
)

type tokKind uint8

const (
	tWord   tokKind = iota // a bare word: keyword, function or identifier
	tQuoted                // a double-quoted identifier
	tString                // a single-quoted string
	tRegex                 // /…/ after =~ or !~
	tNumber                // a number or a duration literal
	tVar                   // a Grafana variable: $name, ${name}
	tPunct                 // operators and punctuation
)

type token struct {
	kind tokKind
	text string
}

// lexInfluxQL splits an InfluxQL statement (with Grafana variables) into
// tokens. It knows as much of InfluxQL as the dashboards use.
func lexInfluxQL(q string) ([]token, error) {
	var out []token
	i := 0
	until := func(end byte) (string, error) {
		start := i
		for i++; i < len(q); i++ {
			switch q[i] {
			case '\\':
				i++
			case end:
				i++
				return q[start+1 : i-1], nil
			}
		}
		return "", fmt.Errorf("unterminated %c at %d", end, start)
	}
	isWord := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			s, err := until('\'')
			if err != nil {
				return nil, err
			}
			out = append(out, token{tString, s})
		case c == '"':
			s, err := until('"')
			if err != nil {
				return nil, err
			}
			out = append(out, token{tQuoted, s})
		case c == '/' && len(out) > 0 && out[len(out)-1].kind == tPunct && (out[len(out)-1].text == "=~" || out[len(out)-1].text == "!~"):
			s, err := until('/')
			if err != nil {
				return nil, err
			}
			out = append(out, token{tRegex, s})
		case c == '$':
			start := i
			i++
			if i < len(q) && q[i] == '{' {
				end := strings.IndexByte(q[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", start)
				}
				i += end + 1
			} else {
				for i < len(q) && isWord(q[i]) {
					i++
				}
			}
			out = append(out, token{tVar, q[start:i]})
		case c >= '0' && c <= '9':
			start := i
			for i < len(q) && (isWord(q[i]) || q[i] == '.') {
				i++
			}
			out = append(out, token{tNumber, q[start:i]})
		case isWord(c):
			start := i
			for i < len(q) && isWord(q[i]) {
				i++
			}
			out = append(out, token{tWord, q[start:i]})
		default:
			two := ""
			if i+1 < len(q) {
				two = q[i : i+2]
			}
			switch two {
			case "=~", "!~", "!=", "<>", ">=", "<=", "::":
				out = append(out, token{tPunct, two})
				i += 2
				continue
			}
			if !strings.ContainsRune("=<>(),*+-/.;%", rune(c)) {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			out = append(out, token{tPunct, string(c)})
			i++
		}
	}
	return out, nil
}

var influxqlKeywords = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`select from where group by order limit offset slimit soffset as and or not
		fill null none previous linear asc desc show tag tags field keys key values with measurement measurements
		in tz into on series true false`) {
		influxqlKeywords[k] = true
	}
}

// numericFunctions fail or mean nothing on a string field.
var numericFunctions = map[string]bool{
	"mean": true, "median": true, "spread": true, "stddev": true, "sum": true, "max": true, "min": true,
	"percentile": true, "integral": true, "derivative": true, "non_negative_derivative": true,
	"difference": true, "non_negative_difference": true, "moving_average": true, "cumulative_sum": true,
}

var influxqlFunctions = map[string]bool{
	"count": true, "distinct": true, "first": true, "last": true, "mode": true, "now": true, "time": true,
	"fill": true, "top": true, "bottom": true, "sample": true, "elapsed": true, "abs": true,
}

// influxQLNames is what a query names: measurements, identifiers used as
// tags (GROUP BY, WITH KEY), the first argument of each numeric function,
// every other identifier, and the aliases it defines.
type influxQLNames struct {
	measurements, tags, numeric, idents, aliases []string
}

func parseInfluxQL(q string) (influxQLNames, error) {
	toks, err := lexInfluxQL(q)
	if err != nil {
		return influxQLNames{}, err
	}
	var n influxQLNames
	isIdent := func(t token) bool {
		return t.kind == tQuoted || t.kind == tWord && !influxqlKeywords[strings.ToLower(t.text)]
	}
	kw := func(i int, word string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == tWord && strings.EqualFold(toks[i].text, word)
	}
	// A GROUP BY clause ends at the next keyword or at the parenthesis
	// that closes its subquery.
	depth, groupDepth := 0, -1
	for i, t := range toks {
		switch {
		case t.text == "(":
			depth++
			continue
		case t.text == ")":
			if depth--; depth < groupDepth {
				groupDepth = -1
			}
			continue
		case kw(i, "by") && kw(i-1, "group"):
			groupDepth = depth
			continue
		case t.kind == tWord && influxqlKeywords[strings.ToLower(t.text)]:
			groupDepth = -1
			continue
		case !isIdent(t):
			continue
		}
		inGroupBy := groupDepth == depth
		next := token{}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case t.kind == tWord && next.text == "(":
			fn := strings.ToLower(t.text)
			if !numericFunctions[fn] && !influxqlFunctions[fn] {
				return n, fmt.Errorf("unknown function %s", t.text)
			}
			if numericFunctions[fn] && i+2 < len(toks) && isIdent(toks[i+2]) {
				n.numeric = append(n.numeric, toks[i+2].text)
			}
		case kw(i-1, "as"):
			n.aliases = append(n.aliases, t.text)
		case kw(i-1, "from"):
			n.measurements = append(n.measurements, t.text)
		case i > 0 && toks[i-1].text == "::":
			// a type cast: ::field, ::tag
		case inGroupBy || (i >= 2 && toks[i-1].text == "=" && kw(i-2, "key")):
			n.tags = append(n.tags, t.text)
		case strings.EqualFold(t.text, "time"):
		default:
			n.idents = append(n.idents, t.text)
		}
	}
	return n, nil
}

// schema is influx.Measurements by name.
func schema() map[string]influx.Measurement {
	out := map[string]influx.Measurement{}
	for _, m := range influx.Measurements() {
		out[m.Name] = m
	}
	return out
}

func influxQueries(t *testing.T) []query { return queriesTo(t, influxUID, 10) }

// checkInfluxQL reports what in q the writer does not write.
func checkInfluxQL(q query, sch map[string]influx.Measurement) []string {
	n, err := parseInfluxQL(q.text)
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	if len(n.measurements) == 0 {
		errs = append(errs, "names no measurement")
	}
	tags, fields := map[string]bool{}, map[string]influx.FieldType{}
	for _, m := range n.measurements {
		ms, ok := sch[m]
		if !ok {
			errs = append(errs, fmt.Sprintf("measurement %q is not written (known: %v)", m, slices.Sorted(maps.Keys(sch))))
			continue
		}
		for _, tag := range ms.Tags {
			tags[tag] = true
		}
		maps.Copy(fields, ms.Fields)
	}
	alias := map[string]bool{}
	for _, a := range n.aliases {
		alias[a] = true
	}
	for _, id := range n.idents {
		if !tags[id] && fields[id] == "" && !alias[id] {
			errs = append(errs, fmt.Sprintf("%q is neither a tag nor a field of %v", id, n.measurements))
		}
	}
	for _, id := range n.tags {
		if !tags[id] {
			errs = append(errs, fmt.Sprintf("%q is used as a tag (GROUP BY, WITH KEY) but is not a tag of %v", id, n.measurements))
		}
	}
	for _, id := range n.numeric {
		if typ := fields[id]; !alias[id] && typ != influx.Float && typ != influx.Integer {
			errs = append(errs, fmt.Sprintf("%q is aggregated as a number but is a %q field", id, typ))
		}
	}
	// Grafana's $tag_X in an alias needs X among the series' tags.
	for _, m := range varRef.FindAllStringSubmatch(q.alias, -1) {
		if name := m[1] + m[2]; strings.HasPrefix(name, "tag_") && !slices.Contains(n.tags, strings.TrimPrefix(name, "tag_")) {
			errs = append(errs, fmt.Sprintf("alias %q: %s is not a tag the query groups by", q.alias, name))
		}
	}
	return errs
}

// TestInfluxQLNames: every InfluxQL query of the dashboards names only
// measurements, tags and fields that internal/influx writes.
func TestInfluxQLNames(t *testing.T) {
	sch := schema()
	for _, q := range influxQueries(t) {
		for _, e := range checkInfluxQL(q, sch) {
			t.Errorf("%s: %s", q, e)
		}
	}
}

// TestInfluxQLCheckerCatches: the checker above fails what it must, so
// TestInfluxQLNames passing means something.
func TestInfluxQLCheckerCatches(t *testing.T) {
	sch := schema()
	for _, c := range []struct{ q, alias, want string }{
		{`SELECT mean("valu") FROM "reading" WHERE $timeFilter`, "", `"valu" is neither`},
		{`SELECT mean("value") FROM "readings"`, "", `measurement "readings"`},
		{`SELECT mean("value") FROM "reading" GROUP BY time($__interval), "quality"`, "", `"quality" is used as a tag`},
		{`SELECT mean("message") FROM "alarm_event"`, "", `"message" is aggregated as a number`},
		{`SHOW TAG VALUES FROM "reading" WITH KEY = "value"`, "", `"value" is used as a tag`},
		{`SELECT last("alarm_id") FROM "alarm_event" WHERE "hazard" = 'x'`, "", `"hazard" is neither`},
		{`SELECT mean("value") FROM "reading" GROUP BY "sensor"`, "$tag_unit", `$tag_unit`},
		{`SELECT count("n") FROM (SELECT count("alarm_id") AS "n" FROM "alarm_event" GROUP BY "sensr")`, "", `"sensr" is used as a tag`},
	} {
		errs := checkInfluxQL(query{text: c.q, alias: c.alias}, sch)
		if !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s: errors %q, want one with %q", c.q, errs, c.want)
		}
	}
	if errs := checkInfluxQL(query{text: `SELECT count("n") AS "s" FROM (SELECT count("alarm_id") AS "n" FROM (SELECT last("alarm_id") AS "alarm_id", "event" FROM "alarm_event" WHERE time > now() - 30d GROUP BY "hazard_source") WHERE "event" != 'cleared' GROUP BY "hazard_source") GROUP BY "hazard_source"`, alias: "$tag_hazard_source"}, sch); len(errs) > 0 {
		t.Errorf("a correct nested query: %q", errs)
	}
}

// The demo values the live test gives the dashboards' variables, as
// Grafana substitutes them into InfluxQL regexes: one value as itself,
// several as (a|b).
const (
	testHazardSource  = "e01-hs1"
	testHazardSource2 = "e02-hs1"
)

// TestInfluxQLOnInfluxDB runs every InfluxQL query of the dashboards
// against a real InfluxDB 1.8.10 holding readings and alarm events the
// writer wrote: each must run and return rows, and the alarm panels must
// count what the events say.
func TestInfluxQLOnInfluxDB(t *testing.T) {
	srv := influxtest.Start(t)
	const db = "hazardwatch"
	srv.CreateDatabase(db)
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	w, err := influx.New(influx.Options{URL: srv.URL(), Bucket: db + "/autogen", Plant: p, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = w.Run(ctx)
	}()
	defer func() {
		cancel()
		<-stopped
	}()

	in := func(hs string) []int32 {
		hi, ok := p.HazardSourceIndex(hs)
		if !ok {
			t.Fatalf("the demo plant has no hazard source %s", hs)
		}
		var out []int32
		for i := range p.Sensors {
			if p.Sensors[i].HazardSource == hi {
				out = append(out, int32(i))
			}
		}
		if len(out) < 4 {
			t.Fatalf("%s has %d sensors, the test needs 4", hs, len(out))
		}
		return out
	}
	hs1, hs2 := in(testHazardSource), in(testHazardSource2)

	// Readings: every sensor of the two hazard sources once a minute for
	// ten minutes, and one bad reading with its reason.
	now := time.Now().Truncate(time.Second)
	var readings []model.Reading
	for m := 10; m >= 1; m-- {
		for _, s := range append(slices.Clone(hs1), hs2...) {
			readings = append(readings, model.Reading{SensorIdx: s, TS: now.Add(-time.Duration(m) * time.Minute).UnixMilli(), Value: float64(m), HasValue: true})
		}
	}
	readings = append(readings, model.Reading{SensorIdx: hs1[0], TS: now.Add(-30 * time.Second).UnixMilli(), Quality: model.Bad, Reason: model.ReasonTimeout})

	// Alarm events. In alarm now (class alarm): A (two alarms, one
	// acknowledged) and E at hs1, D at hs2. Open but not in alarm: B
	// (returned). Over: C (cleared). A's offline alarm is another class.
	A, B, C, E, D := hs1[0], hs1[1], hs1[2], hs1[3], hs2[0]
	ev := func(s int32, rule model.RuleKind, class model.AlarmClass, event string, ago time.Duration) influx.AlarmEvent {
		sn := &p.Sensors[s]
		return influx.AlarmEvent{Time: now.Add(-ago), Enterprise: p.Enterprises[sn.Enterprise].ID, HazardSource: p.HazardSources[sn.HazardSource].ID,
			Sensor: sn.ID, Class: class.String(), Level: "L1", Rule: rule.String(), Event: event, Value: 2, Limit: 1,
			Message: sn.ID + " " + event, AlarmID: fmt.Sprintf("%s.%s.1", sn.ID, rule)}
	}
	events := []influx.AlarmEvent{
		ev(A, model.ThresholdHigh, model.ClassAlarm, "raised", 9*time.Minute),
		ev(A, model.ThresholdHigh, model.ClassAlarm, "acknowledged", 8*time.Minute),
		ev(A, model.ThresholdLow, model.ClassAlarm, "raised", 7*time.Minute),
		ev(A, model.Silent, model.ClassOffline, "raised", 6*time.Minute),
		ev(B, model.ThresholdHigh, model.ClassAlarm, "raised", 9*time.Minute),
		ev(B, model.ThresholdHigh, model.ClassAlarm, "returned", 5*time.Minute),
		ev(C, model.ThresholdHigh, model.ClassAlarm, "raised", 9*time.Minute),
		ev(C, model.ThresholdHigh, model.ClassAlarm, "cleared", 4*time.Minute),
		ev(E, model.ThresholdHigh, model.ClassAlarm, "raised", 3*time.Minute),
		ev(D, model.ThresholdLow, model.ClassAlarm, "raised", 9*time.Minute),
		ev(D, model.ThresholdLow, model.ClassAlarm, "level_changed", 2*time.Minute),
	}
	var done atomic.Int64
	if err := w.AddReadings(readings, func() { done.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := w.AddAlarmEvents(events, func() { done.Add(1) }); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the writer wrote the points", 30*time.Second, func() bool { return done.Load() == 2 })

	ids := func(list []int32) string {
		var s []string
		for _, i := range list {
			s = append(s, p.Sensors[i].ID)
		}
		return "(" + strings.Join(s, "|") + ")"
	}
	vars := map[string]string{
		"park":          "p01",
		"enterprise":    "(e01|e02|e03)",
		"class":         "(alarm)",
		"hazard_source": testHazardSource,
		"sensor":        ids(hs1),
		"timeFilter":    "time >= now() - 1h",
		"__interval":    "1m",
	}
	substitute := func(q string) string {
		return varRef.ReplaceAllStringFunc(q, func(v string) string {
			m := varRef.FindStringSubmatch(v)
			val, ok := vars[m[1]+m[2]]
			if !ok {
				t.Fatalf("no test value for %s in %q", v, q)
			}
			return val
		})
	}

	results := map[string][]influxtest.Series{}
	for _, q := range influxQueries(t) {
		series, err := srv.Query(db, substitute(q.text))
		if err != nil {
			t.Errorf("%s:\n%v", q, err)
			continue
		}
		rows := 0
		for _, s := range series {
			rows += len(s.Values)
		}
		if rows == 0 {
			t.Errorf("%s: no rows: the query names something the writer does not write, or filters it all out", q)
		}
		results[q.file+": "+q.where] = series
	}

	// What the alarm panels show.
	perHazard := func(key string) map[string]int64 {
		out := map[string]int64{}
		for _, s := range results[key] {
			out[s.Tags["hazard_source"]] = influxtest.Int(t, s.Values[0][1])
		}
		return out
	}
	if got, want := perHazard("park-overview.json: 报警中的传感器（按重大危险源） / Sensors in alarm per hazard source"),
		map[string]int64{testHazardSource: 2, testHazardSource2: 1}; !maps.Equal(got, want) {
		t.Errorf("sensors in alarm per hazard source: %v, want %v", got, want)
	}
	if got, want := perHazard("hazard-source.json: 报警中的传感器 / Sensors in alarm"),
		map[string]int64{testHazardSource: 2}; !maps.Equal(got, want) {
		t.Errorf("sensors in alarm at %s: %v, want %v", testHazardSource, got, want)
	}
	open := func(key string) []string {
		var out []string
		for _, s := range results[key] {
			col := slices.Index(s.Columns, "alarm_id")
			for _, v := range s.Values {
				out = append(out, v[col].(string))
			}
		}
		slices.Sort(out)
		return out
	}
	alarmID := func(s int32, rule model.RuleKind) string { return fmt.Sprintf("%s.%s.1", p.Sensors[s].ID, rule) }
	want := []string{alarmID(A, model.ThresholdHigh), alarmID(A, model.ThresholdLow), alarmID(B, model.ThresholdHigh), alarmID(D, model.ThresholdLow), alarmID(E, model.ThresholdHigh)}
	slices.Sort(want)
	if got := open("park-overview.json: 未关闭的报警 / Open alarms"); !slices.Equal(got, want) {
		t.Errorf("open alarms of class alarm: %v, want %v", got, want)
	}
	want = append(slices.DeleteFunc(slices.Clone(want), func(id string) bool { return id == alarmID(D, model.ThresholdLow) }), alarmID(A, model.Silent))
	slices.Sort(want)
	if got := open("hazard-source.json: 未关闭的报警 / Open alarms"); !slices.Equal(got, want) {
		t.Errorf("open alarms at %s: %v, want %v", testHazardSource, got, want)
	}
}
