// Package centre wires the centre together: NATS JetStream (embedded, or
// an external server), ingest (broker, validation, dedup, group commit),
// the pipeline that feeds rules, alarms and history from the READINGS
// stream, and the HTTP API with its WebSocket and the control-room page.
// It starts the stages from the store up and stops them from the sources
// down.
package centre

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"hazardwatch/alerting"
	"hazardwatch/ingest"
	"hazardwatch/internal/api"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/bus"
	"hazardwatch/internal/config"
	"hazardwatch/internal/influx"
	"hazardwatch/internal/model"
	"hazardwatch/internal/store"
	"hazardwatch/rules"
)

// Options configure the centre.
type Options struct {
	Config *config.Config
	// ConfigFS is the folder Config was loaded from and ConfigName its name
	// in messages; ReloadRules reads the rule files from it again.
	ConfigFS   fs.FS
	ConfigName string
	DataDir    string
	// MQTTListen is the embedded broker's address (port 0: a free one);
	// ExternalBroker, when set, replaces it (SPEC §2's external mode).
	MQTTListen, ExternalBroker string
	// MQTTAuth makes the embedded broker authenticate every client against
	// the token store (Tokens): a gateway with its own token, username =
	// its id, or a client certificate (MQTTTLS); an admin token read-only.
	// It then enforces the topic ACL. False leaves the broker open, with a
	// warning in the log.
	MQTTAuth bool
	// MQTTTLS, when set, makes the embedded broker speak TLS only
	// (ingest.Options.TLS).
	MQTTTLS *tls.Config
	// HTTPListen is the API's address (port 0: a free one).
	HTTPListen string
	// HTTPTLS, when set, makes the HTTP listener (API, WebSocket, page,
	// metrics) speak TLS only.
	HTTPTLS *tls.Config
	// APILimits are the API's limits per token and per client address
	// (api.Limits); zero fields take the product's defaults.
	APILimits api.Limits
	// Retention of the history store; default 30 days.
	Retention time.Duration
	Logger    *slog.Logger
	Clock     func() time.Time

	// Influx, when its URL is set, writes history to InfluxDB as well
	// (SPEC §3's reading and alarm_event measurements), fed by durable
	// consumers of its own on READINGS and ALARMS; the API's history then
	// reads from it (influx.History) instead of the embedded store, which
	// is still written. The centre fills in Plant, Registerer and Logger.
	Influx influx.Options
	// Notify configures the notifications of escalations (notify.go).
	Notify NotifyOptions
	// Audit is the audit log's folder and head file; the zero value is
	// <DataDir>/audit with the head beside DataDir (audit.ForDataDir). The
	// centre fills in Logger and Clock.
	Audit audit.Options
	// NATS, when its URL is set, makes the centre use that external NATS
	// server with JetStream (bus.Dial) instead of starting the embedded
	// one under DataDir. The centre fills in Logger.
	NATS bus.ExternalOptions
}

// Centre is a running centre.
type Centre struct {
	o      Options
	log    *slog.Logger
	reg    *prometheus.Registry
	bus    *bus.Server
	nc     *nats.Conn
	alarms *alerting.Manager
	hist   *store.Store
	// influxHist answers the API's history when InfluxDB is configured.
	influxHist *influx.History
	ingest     *ingest.Ingest
	api        *api.Server
	http       *http.Server
	httpAddr   string
	tokens     *auth.Store
	audit      *audit.Log

	// The running config and its rule files' digest; reloads hand new
	// rules to the pipeline (reload.go).
	reloadMu sync.Mutex
	cfg      *config.Config
	digest   string
	reloads  chan ruleSwap
	// running are the rules the pipeline runs: cfg's with the stop orders
	// of the Design turned on (design.go).
	running []model.SensorRules

	// The admin's Design (design.go); designMu is taken before reloadMu.
	designMu   sync.Mutex
	design     model.Design
	designWake chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
	// closers run after the stages stopped (notify's store, its webhook).
	closers []func() error
}

// TokenFile is where the centre keeps its API tokens under the data directory.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "tokens.json") }

// Start starts every stage; on error, what was started is stopped again.
func Start(ctx context.Context, o Options) (_ *Centre, err error) {
	if o.Config == nil || o.Config.Plant == nil || o.DataDir == "" {
		return nil, errors.New("centre: Options.Config and Options.DataDir are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	c := &Centre{o: o, log: o.Logger, reg: prometheus.NewRegistry(), errs: make(chan error, 4), cfg: o.Config, reloads: make(chan ruleSwap), designWake: make(chan struct{}, 1)}
	if o.ConfigFS != nil {
		if c.digest, err = ruleDigest(o.ConfigFS); err != nil {
			return nil, fmt.Errorf("centre: rule files: %w", err)
		}
	}
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	plant := o.Config.Plant

	if o.NATS.URL != "" {
		o.NATS.Logger = o.Logger
		c.bus, err = bus.Dial(ctx, o.NATS)
	} else {
		c.bus, err = bus.Start(bus.Options{Dir: o.DataDir, Logger: o.Logger})
	}
	if err != nil {
		return nil, err
	}
	nc, js, err := c.bus.JetStream("centre")
	if err != nil {
		return nil, err
	}
	c.nc = nc

	// Alarms first: they replay their log, and the rules start from the
	// conditions the alarms say are active.
	alog, err := alerting.OpenJetStreamLog(ctx, js)
	if err != nil {
		return nil, err
	}
	if c.design, err = loadDesign(DesignFile(o.DataDir), plant); err != nil {
		return nil, err
	}
	if c.alarms, err = alerting.New(alerting.Options{Plant: plant, Rules: o.Config.Rules, Alarms: o.Config.Alarms, Log: alog, Clock: o.Clock, Logger: o.Logger, Design: c.design}); err != nil {
		return nil, err
	}
	if err := c.reg.Register(c.alarms.Collector()); err != nil {
		return nil, fmt.Errorf("centre: alarm metrics: %w", err)
	}
	c.goRun("alarms", func() error { return c.alarms.Run(runCtx) })
	select {
	case <-c.alarms.Ready():
	case <-c.alarms.Done():
		return nil, errors.New("centre: the alarm manager stopped while starting")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.running = c.runningRules(o.Config.Rules, o.Clock())
	engine := rules.New(plant, c.running, o.Config.Gateways)
	for _, t := range c.alarms.Conditions() {
		engine.Assume(t)
	}

	// The store accepts 10 minutes beyond ingest's replay horizon: its
	// out-of-order window counts from its newest reading, which may be ahead
	// of the centre's clock by up to the future limit.
	if c.hist, err = store.Open(store.Options{Dir: filepath.Join(o.DataDir, "history"), Retention: o.Retention, OutOfOrder: ingest.DefaultReplayHorizon + 10*time.Minute, Logger: o.Logger}); err != nil {
		return nil, err
	}
	o.Logger.Info("history kept in the embedded store", "retention", orDefault(o.Retention, store.DefaultRetention))

	// SPEC §3's hw_pipeline_lag_seconds, one series per stage: ingest and
	// the API register theirs with the same help text.
	lag := map[string]prometheus.Gauge{}
	for _, stage := range []string{"rules", "history"} {
		lag[stage] = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw_pipeline_lag_seconds", Help: ingest.HelpPipelineLag, ConstLabels: prometheus.Labels{"stage": stage}})
		c.reg.MustRegister(lag[stage])
	}
	lat, fd := newLatest(len(plant.Sensors)), newFeed()
	pl := &pipeline{plant: plant, engine: engine, alarms: c.alarms, hist: c.hist, latest: lat, feed: fd, log: o.Logger.With("stage", "pipeline"), clock: o.Clock, lag: lag, reloads: c.reloads}

	if err = c.openAudit(); err != nil {
		return nil, err
	}
	// The broker checks MQTT clients' tokens, the API its callers'.
	if c.tokens, err = auth.Open(TokenFile(o.DataDir)); err != nil {
		return nil, err
	}
	// Ingest creates the READINGS stream the pipeline consumes.
	inOpts := ingest.Options{Plant: plant, Bus: c.bus, Listen: o.MQTTListen, ExternalURL: o.ExternalBroker, TLS: o.MQTTTLS,
		Registerer: c.reg, Logger: o.Logger.With("stage", "ingest"), Clock: o.Clock}
	if o.MQTTAuth && o.ExternalBroker == "" {
		inOpts.Credentials = c.tokens
	}
	if c.ingest, err = ingest.New(inOpts); err != nil {
		return nil, err
	}
	if err = c.ingest.Start(ctx); err != nil {
		return nil, err
	}
	if err = pl.open(ctx, js); err != nil {
		return nil, err
	}
	c.goRun("pipeline", func() error { return pl.run(runCtx) })
	c.goRun("design", func() error { return c.runDesignTimer(runCtx) })
	if o.Influx.URL != "" {
		if err = c.startInflux(ctx, runCtx, js); err != nil {
			return nil, err
		}
	}
	if err = c.startNotify(ctx, runCtx, js); err != nil {
		return nil, err
	}

	// The API reads history from InfluxDB when it is configured, from the
	// embedded store otherwise; the store is written either way.
	var history api.History = c.hist
	if o.Influx.URL != "" {
		if c.influxHist, err = influx.NewHistory(o.Influx); err != nil {
			return nil, err
		}
		history = c.influxHist
		o.Logger.Info("API history read from InfluxDB", "url", o.Influx.URL, "bucket", orString(o.Influx.Bucket, influx.DefaultBucket))
	}
	c.api, err = api.New(api.Options{
		Plant: plant, Rules: o.Config.Rules, Tokens: c.tokens,
		Alarms: c.alarms, History: history, Latest: lat, Readings: fd, Design: c, Audit: apiAuditor{c.audit},
		Checks: append([]api.Check{
			{Name: "nats", Ready: c.bus.Ready},
			{Name: "broker", Ready: func(context.Context) error { return c.ingest.Ready() }},
			{Name: "alarms", Ready: func(context.Context) error { return running(c.alarms) }},
		}, c.influxChecks()...),
		Registry: c.reg, Logger: o.Logger.With("stage", "api"), Clock: o.Clock, Limits: o.APILimits,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.HTTPListen)
	if err != nil {
		return nil, fmt.Errorf("centre: HTTP listen: %w", err)
	}
	c.httpAddr = ln.Addr().String()
	if o.HTTPTLS != nil {
		// HTTP/1.1 only: the WebSocket upgrade needs it (HTTP/2 has no
		// Upgrade), and a browser offered h2 would try it there.
		cfg := o.HTTPTLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, cfg)
	}
	c.http = &http.Server{Handler: c.api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	c.goRun("http", func() error {
		if err := c.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	o.Logger.Info("centre started", "http", c.HTTPURL(), "mqtt", c.MQTTAddr(), "data_dir", o.DataDir)
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func running(m *alerting.Manager) error {
	select {
	case <-m.Done():
		return errors.New("the alarm manager has stopped")
	default:
		return nil
	}
}

// goRun runs a stage; its failure is reported on Err.
func (c *Centre) goRun(name string, fn func() error) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := fn(); err != nil {
			c.log.Error("stage failed", "stage", name, "err", err)
			select {
			case c.errs <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// Err delivers the first failure of a running stage.
func (c *Centre) Err() <-chan error { return c.errs }

// HTTPAddr is the API's listen address.
func (c *Centre) HTTPAddr() string { return c.httpAddr }

// HTTPURL is the API's base URL: https:// with HTTPTLS, else http://.
func (c *Centre) HTTPURL() string {
	if c.o.HTTPTLS != nil {
		return "https://" + c.httpAddr
	}
	return "http://" + c.httpAddr
}

// MQTTAddr is the embedded broker's address ("" with an external broker).
func (c *Centre) MQTTAddr() string {
	if c.ingest == nil {
		return ""
	}
	return c.ingest.Addr()
}

// Tokens is the token store: the API's users and the gateways' MQTT
// passwords.
func (c *Centre) Tokens() *auth.Store { return c.tokens }

// Close stops the stages from the sources down: HTTP, ingest, the
// pipeline and the InfluxDB feeds, the alarms, history, then NATS.
func (c *Centre) Close() error {
	var errs []error
	if c.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, c.http.Shutdown(ctx))
		cancel()
	}
	if c.api != nil {
		errs = append(errs, c.api.Close())
	}
	if c.ingest != nil {
		errs = append(errs, c.ingest.Close())
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	for _, f := range c.closers {
		errs = append(errs, f())
	}
	if c.hist != nil {
		errs = append(errs, c.hist.Close())
	}
	if c.influxHist != nil {
		errs = append(errs, c.influxHist.Close())
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.bus != nil {
		c.bus.Shutdown()
	}
	c.log.Info("centre stopped")
	return errors.Join(errs...)
}
