package dashboards_test

// The dashboards' PromQL queries against the metrics the code really
// registers: a centre (internal/centre, with an InfluxDB URL so that the
// InfluxDB feed's metrics exist too) and a gateway of the demo plant
// polling the simulator, started here on free ports, scraped and gathered
// once they have exported every series the dashboards read. Each query is
// parsed with Prometheus's own parser; every metric it selects must be
// exported, every label it matches, groups by or shows in a legend must
// be one of that metric's, and a label value it matches exactly must be
// one the code exports (job: one of prometheus.yml's jobs).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/centre"
	"hazardwatch/internal/config"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/poll"
)

// family is what the test knows of one exported metric.
type family struct {
	typ    string              // counter, gauge, histogram, summary, untyped
	labels map[string][]string // label name → values seen
}

// families by metric name.
type families map[string]*family

func (fs families) add(name, typ string) *family {
	f := fs[name]
	if f == nil {
		f = &family{typ: typ, labels: map[string][]string{}}
		fs[name] = f
	}
	if typ != "" {
		f.typ = typ
	}
	return f
}

func (f *family) addLabel(name, value string) {
	if !slices.Contains(f.labels[name], value) {
		f.labels[name] = append(f.labels[name], value)
	}
}

// lookup resolves a selected series name to its family: a histogram's
// _bucket, _sum and _count, a summary's _sum and _count.
func (fs families) lookup(name string) (f *family, suffix string) {
	if f := fs[name]; f != nil {
		return f, ""
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, s); ok {
			if f := fs[base]; f != nil && (f.typ == "histogram" || f.typ == "summary" && s != "_bucket") {
				return f, s
			}
		}
	}
	return nil, ""
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseExposition reads Prometheus's text format: the # TYPE lines and the
// samples' label names and values.
func parseExposition(r io.Reader, fs families) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			fs.add(f[2], f[3])
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			return fmt.Errorf("unparsable sample %q", line)
		}
		f, _ := fs.lookup(m[1])
		if f == nil {
			f = fs.add(m[1], "untyped")
		}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if lp[1] != "le" && lp[1] != "quantile" {
				f.addLabel(lp[1], lp[2])
			}
		}
	}
	return sc.Err()
}

func addGathered(mfs []*dto.MetricFamily, fs families) {
	for _, mf := range mfs {
		f := fs.add(mf.GetName(), strings.ToLower(mf.GetType().String()))
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				f.addLabel(lp.GetName(), lp.GetValue())
			}
		}
	}
}

// liveMetrics starts the pieces and returns what they export once every
// series the dashboards need is there: the centre's clock skew of a
// gateway (after its first status message) and the gateway's polls, read
// errors and back-off (one of its devices points at a closed port).
func liveMetrics(t *testing.T) families {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	closed := closedAddr(t)
	c, err := centre.Start(context.Background(), centre.Options{Config: cfg, DataDir: t.TempDir(),
		MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		// Nothing answers there: the feed retries, and its metrics exist.
		Influx: influx.Options{URL: "http://" + closed, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, RequestTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	s, err := sim.New(p, nil, sim.Options{Listen: sim.Loopback(p)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const gwID = "gw-e01-1"
	gi, _ := p.GatewayIndex(gwID)
	devs := p.Gateways[gi].Devices
	addrs := map[string]string{devs[0].ID: s.Addr(gwID, devs[0].ID)}
	for _, d := range devs[1:] {
		addrs[d.ID] = closed
	}
	gw, err := gateway.New(gateway.Options{Plant: p, Gateway: gwID, Broker: "tcp://" + c.MQTTAddr(), DeviceAddr: addrs,
		QueuePath: filepath.Join(t.TempDir(), "queue"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = gw.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = gw.Close()
		_ = s.Close()
	})

	var fs families
	poll.Until(t, "the centre and the gateway export every series", 60*time.Second, func() bool {
		fs = families{}
		resp, err := http.Get("http://" + c.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := parseExposition(resp.Body, fs); err != nil {
			t.Fatal(err)
		}
		mfs, err := gw.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		addGathered(mfs, fs)
		for _, name := range []string{"hw_gateway_clock_skew_seconds", "hw_gateway_polls_total", "hw_gateway_read_errors_total", "hw_gateway_backoff_seconds"} {
			if f := fs[name]; f == nil || len(f.labels["gateway"]) == 0 {
				return false
			}
		}
		return true
	})
	return fs
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// jobNames are the scrape jobs of the compose deployment's Prometheus.
func jobNames(t *testing.T) []string {
	t.Helper()
	cfg, err := promconfig.LoadFile("../configs/compose/prometheus/prometheus.yml", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		out = append(out, sc.JobName)
	}
	return out
}

// Labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// checkPromQL reports what in q the code does not export.
func checkPromQL(q query, fs families, jobs []string) []string {
	text := strings.TrimSpace(q.text)
	wantLabel := ""
	if m := labelValues.FindStringSubmatch(text); m != nil {
		text, wantLabel = m[1], m[2]
	}
	// Grafana's variables, as it would substitute them.
	text = varRef.ReplaceAllStringFunc(text, func(v string) string {
		switch strings.Trim(v, "${}") {
		case "__rate_interval", "__interval":
			return "1m"
		case "__range":
			return "1h"
		}
		return "x"
	})
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(text)
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	selected := 0
	// labelsOf returns the labels a subtree's series may carry.
	var labelsOf func(n parser.Node) map[string]bool
	labelsOf = func(n parser.Node) map[string]bool {
		out := map[string]bool{}
		parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				if f, suffix := fs.lookup(vs.Name); f != nil {
					for l := range f.labels {
						out[l] = true
					}
					if suffix == "_bucket" {
						out["le"] = true
					}
				}
				for _, l := range targetLabels {
					out[l] = true
				}
			}
			return nil
		})
		return out
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			selected++
			f, suffix := fs.lookup(n.Name)
			if f == nil {
				errs = append(errs, fmt.Sprintf("metric %s is not exported by the centre or a gateway", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name == labels.MetricName {
					continue
				}
				switch {
				case m.Name == "job":
					if m.Type == labels.MatchEqual && !slices.Contains(jobs, m.Value) {
						errs = append(errs, fmt.Sprintf("job %q is not a job of prometheus.yml %v", m.Value, jobs))
					}
				case m.Name == "instance" || m.Name == "le" && suffix == "_bucket":
				case f.labels[m.Name] == nil:
					errs = append(errs, fmt.Sprintf("%s has no label %s (it has %v)", n.Name, m.Name, slices.Sorted(maps.Keys(f.labels))))
				case m.Type == labels.MatchEqual && !slices.Contains(f.labels[m.Name], m.Value):
					errs = append(errs, fmt.Sprintf("%s{%s=%q}: no such series (values: %v)", n.Name, m.Name, m.Value, f.labels[m.Name]))
				}
			}
		case *parser.AggregateExpr:
			have := labelsOf(n.Expr)
			for _, l := range n.Grouping {
				if !have[l] {
					errs = append(errs, fmt.Sprintf("%s by %s: no series under it has that label", n.Op, l))
				}
			}
		}
		return nil
	})
	if selected == 0 {
		errs = append(errs, "selects no metric")
	}
	out := outputLabels(expr, labelsOf)
	if wantLabel != "" && !out[wantLabel] {
		errs = append(errs, fmt.Sprintf("label_values: the series have no label %s", wantLabel))
	}
	for _, m := range legendLabel.FindAllStringSubmatch(q.legend, -1) {
		if !out[m[1]] {
			errs = append(errs, fmt.Sprintf("legend {{%s}}: the query's series have no such label (they have %v)", m[1], slices.Sorted(maps.Keys(out))))
		}
	}
	return errs
}

// outputLabels returns the labels of a query's result series.
func outputLabels(n parser.Expr, labelsOf func(parser.Node) map[string]bool) map[string]bool {
	switch n := n.(type) {
	case *parser.ParenExpr:
		return outputLabels(n.Expr, labelsOf)
	case *parser.BinaryExpr:
		if _, ok := n.LHS.(*parser.NumberLiteral); ok {
			return outputLabels(n.RHS, labelsOf)
		}
		return outputLabels(n.LHS, labelsOf)
	case *parser.AggregateExpr:
		out := map[string]bool{}
		if n.Without {
			out = labelsOf(n.Expr)
			for _, l := range n.Grouping {
				delete(out, l)
			}
			return out
		}
		for _, l := range n.Grouping {
			out[l] = true
		}
		return out
	case *parser.Call:
		for _, a := range n.Args {
			switch a.(type) {
			case *parser.NumberLiteral, *parser.StringLiteral:
				continue
			}
			out := outputLabels(a, labelsOf)
			if n.Func.Name == "histogram_quantile" {
				delete(out, "le")
			}
			return out
		}
		return map[string]bool{}
	case *parser.NumberLiteral:
		return map[string]bool{}
	}
	return labelsOf(n)
}

func promQueries(t *testing.T) []query { return queriesTo(t, prometheusUID, 20) }

// TestPromQLNames: every PromQL query of the dashboards selects metrics,
// labels and label values that a running centre and gateway export; and
// the check fails what it must.
func TestPromQLNames(t *testing.T) {
	fs := liveMetrics(t)
	jobs := jobNames(t)
	for _, q := range promQueries(t) {
		for _, e := range checkPromQL(q, fs, jobs) {
			t.Errorf("%s: %s", q, e)
		}
	}

	for _, c := range []struct{ expr, legend, want string }{
		{`hw_gateway_queue_depth`, "", "hw_gateway_queue_depth is not exported"},
		{`sum by (reason) (rate(hw_ingest_rejected_totals[5m]))`, "", "hw_ingest_rejected_totals is not exported"},
		{`hw_pipeline_lag_seconds{stage="influxdb"}`, "", `no such series`},
		{`hw_pipeline_lag_seconds{job="centre"}`, "", `job "centre"`},
		{`hw_gateway_queue_messages{gw=~"$gateway"}`, "", "has no label gw"},
		{`sum by (device) (hw_gateway_queue_messages)`, "", "sum by device"},
		{`sum by (gateway) (hw_gateway_queue_messages)`, "{{device}}", "legend {{device}}"},
		{`label_values(hw_gateway_uplink_up, gw)`, "", "label_values"},
		{`histogram_quantile(0.9, sum by (le) (rate(hw_gateway_publish_seconds_bucket[5m])))`, "{{gateway}}", "legend {{gateway}}"},
	} {
		errs := checkPromQL(query{text: c.expr, legend: c.legend}, fs, jobs)
		if !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s: errors %q, want one with %q", c.expr, errs, c.want)
		}
	}
}
