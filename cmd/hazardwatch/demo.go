package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/centre"
	"hazardwatch/internal/netcut"
)

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "", `
Runs the demo plant end to end in one process, on embedded defaults: the
plant simulator (Modbus TCP devices on loopback playing a scenario), one
gateway per plant gateway polling them over real Modbus TCP, the centre
with its embedded MQTT broker and NATS JetStream, rules, alarms, history,
and the web page. Prints the page's address and one token per demo user.`, stderr)
	dataDir := dataDirFlag(fs)
	af := auditFlag(fs, dataDir)
	httpAddr := fs.String("http", "127.0.0.1:8080", "web page and API listen address")
	gwMetrics := fs.String("gateway-metrics", "127.0.0.1:9101", "address of the demo gateways' /metrics, as a gateway box serves its own (empty: none)")
	debug := fs.Bool("debug", false, "log debug messages")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	log := newLogger(stderr, *debug)
	cfg, err := loadConfig("")
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	for _, w := range cfg.Warnings {
		log.Warn("demo plant: " + w.Error())
	}
	sc, err := loadScenario("", "", cfg.Plant)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	auditOpts, err := af.options()
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitUsage
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	if _, err := os.Stat(auditOpts.Dir); errors.Is(err, os.ErrNotExist) {
		// A new demo data directory: a head left beside it by an earlier
		// one, deleted to start the demo afresh, guards nothing now. (A
		// real deployment keeps it: serve reports the log cut short.)
		if err := os.Remove(auditOpts.HeadFile); err == nil {
			log.Info("demo: the audit head of an earlier demo data directory removed", "file", auditOpts.HeadFile)
		}
	}
	ctx, stop := signalContext()
	defer stop()

	// The broker asks every gateway for its token, as `serve` does.
	cfgFS, cfgName := configSource("")
	c, err := centre.Start(ctx, centre.Options{Config: cfg, ConfigFS: cfgFS, ConfigName: cfgName, DataDir: *dataDir, Audit: auditOpts, MQTTListen: "127.0.0.1:0", HTTPListen: *httpAddr, MQTTAuth: true, Logger: log.With("part", "centre")})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	defer reloadOnHangup(ctx, c, log)() // SIGHUP: the embedded rules again, so nothing changes
	tokens, err := demoTokens(*dataDir, "demo-tokens.txt", demoUsers, c.Tokens(), c.Audit())
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	var gwUsers []demoToken
	for _, g := range cfg.Plant.Gateways {
		gwUsers = append(gwUsers, demoToken{Role: auth.Gateway, Scope: auth.GatewayScope(g.ID).String(), Name: g.ID})
	}
	gwTokens, err := demoTokens(*dataDir, "demo-gateway-tokens.txt", gwUsers, c.Tokens(), c.Audit())
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	gwPassword := map[string]string{}
	for _, t := range gwTokens {
		gwPassword[t.Name] = t.Token
	}

	// Each gateway reaches the broker through a proxy the scenario can cut
	// (an uplink episode): the gateway's queue fills while it is cut and
	// drains when it is back.
	proxies := map[string]*netcut.Proxy{}
	for _, g := range cfg.Plant.Gateways {
		px, err := netcut.Listen(ctx, "127.0.0.1:0", c.MQTTAddr(), log.With("part", "uplink", "gateway", g.ID))
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
			return exitFailure
		}
		defer px.Close()
		proxies[g.ID] = px
	}
	// The simulated devices listen on free ports, so the demo never
	// collides with anything already on the machine.
	s, err := sim.New(cfg.Plant, sc, sim.Options{Listen: sim.Loopback(cfg.Plant), Logger: log.With("part", "simulator"),
		OnUplink: func(gw string, up bool) { proxies[gw].SetCut(!up) }})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	if err := s.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	defer s.Close()

	gctx, gstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var gws []*gateway.Gateway
	defer func() {
		gstop()
		wg.Wait()
		for _, gw := range gws {
			_ = gw.Close()
		}
	}()
	for _, g := range cfg.Plant.Gateways {
		addrs := map[string]string{}
		for _, d := range g.Devices {
			addrs[d.ID] = s.Addr(g.ID, d.ID)
		}
		gw, err := gateway.New(gateway.Options{Plant: cfg.Plant, Gateway: g.ID, Broker: "tcp://" + proxies[g.ID].Addr(), Username: g.ID, Password: gwPassword[g.ID], DeviceAddr: addrs, QueuePath: gatewayQueue(*dataDir, g.ID), Logger: log.With("part", "gateway")})
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
			return exitFailure
		}
		gws = append(gws, gw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gw.Run(gctx); err != nil {
				log.Error("gateway stopped", "gateway", g.ID, "err", err)
			}
		}()
	}

	metricsURL := ""
	if *gwMetrics != "" {
		gs := prometheus.Gatherers{}
		for _, gw := range gws {
			gs = append(gs, gw.Gatherer())
		}
		ln, err := net.Listen("tcp", *gwMetrics)
		if err != nil {
			log.Warn("gateway metrics not served", "err", err)
		} else {
			srv := &http.Server{Handler: promhttp.HandlerFor(gs, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			metricsURL = "http://" + ln.Addr().String() + "/metrics"
		}
	}

	url := "http://" + c.HTTPAddr()
	fmt.Fprintf(stdout, "\nhazardwatch demo — 重大危险源监测预警演示\n\n")
	fmt.Fprintf(stdout, "  web page / 监控页面:  %s\n", url)
	fmt.Fprintf(stdout, "  (signed in as the park control room: %s/#token=%s )\n\n", url, tokens[1].Token)
	fmt.Fprintf(stdout, "  tokens / 访问令牌 (role, scope, token):\n")
	for _, t := range tokens {
		fmt.Fprintf(stdout, "    %-8s %-15s %s   %s\n", t.Role, t.Scope, t.Token, t.Name)
	}
	fmt.Fprintf(stdout, "\n  try: curl -H 'Authorization: Bearer %s' %s/api/v1/alarms\n", tokens[0].Token, url)
	if metricsURL != "" {
		fmt.Fprintf(stdout, "  gateway metrics / 网关指标: %s  (hw_gateway_queue_messages: the store-and-forward queue)\n", metricsURL)
	}
	if sc != nil {
		fmt.Fprintf(stdout, "  the scenario repeats every %s; the first alarm comes within a minute.\n", sc.Cycle())
		for _, e := range sc.UplinkCuts() {
			fmt.Fprintf(stdout, "  at %s of each cycle gateway %s loses its uplink for %s: its queue fills, then drains.\n", e.Start, e.Gateway, e.Duration)
		}
	}
	fmt.Fprintf(stdout, "  Ctrl-C stops.\n\n")
	select {
	case <-ctx.Done():
	case err := <-c.Err():
		fmt.Fprintf(stderr, "hazardwatch demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}
