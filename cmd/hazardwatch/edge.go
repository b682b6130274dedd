package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hazardwatch/configs"
	"hazardwatch/gateway"
	"hazardwatch/gateway/sim"
	"hazardwatch/internal/model"
)

// signalContext ends on SIGINT or SIGTERM: every long-running command
// shuts down in order on either.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// loadScenario reads scenario.yaml beside the plant files (or the embedded
// demo's); a missing file means baselines only.
func loadScenario(cfgDir, file string, p *model.Plant) (*sim.Scenario, error) {
	var fsys fs.FS = configs.Demo()
	display := "configs/demo"
	if cfgDir != "" {
		fsys, display = os.DirFS(cfgDir), cfgDir
	}
	if file == "" {
		file = "scenario.yaml"
		if _, err := fs.Stat(fsys, file); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return sim.LoadScenario(fsys, file, display, p)
}

func runSimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("simulate", "", `
Runs the plant simulator: one Modbus TCP server per device of the plant, on
the device's configured address, serving values that follow the scenario
(scenario.yaml beside the plant files): noise, a slow toxic leak, a tank
overfill, a pressure surge, a detector fault, power drawn under a stop
order, a device going silent. It repeats until stopped.`, stderr)
	cfgDir := configFlag(fs)
	scenario := fs.String("scenario", "", "scenario file, relative to the config folder (default scenario.yaml)")
	debug := fs.Bool("debug", false, "log debug messages")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	log := newLogger(stderr, *debug)
	cfg, err := loadConfig(*cfgDir)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch simulate: %v\n", err)
		return exitFailure
	}
	sc, err := loadScenario(*cfgDir, *scenario, cfg.Plant)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch simulate: %v\n", err)
		return exitFailure
	}
	ctx, stop := signalContext()
	defer stop()
	s, err := sim.New(cfg.Plant, sc, sim.Options{Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch simulate: %v\n", err)
		return exitFailure
	}
	if err := s.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "hazardwatch simulate: %v\n", err)
		return exitFailure
	}
	for _, g := range cfg.Plant.Gateways {
		for _, d := range g.Devices {
			log.Info("device listening", "gateway", g.ID, "device", d.ID, "addr", s.Addr(g.ID, d.ID))
		}
	}
	<-ctx.Done()
	if err := s.Close(); err != nil {
		log.Error("simulator stopped with an error", "err", err)
		return exitFailure
	}
	return exitOK
}

// deviceFlag collects --device ID=HOST:PORT overrides.
type deviceFlag map[string]string

func (d deviceFlag) String() string { return fmt.Sprint(map[string]string(d)) }
func (d deviceFlag) Set(s string) error {
	id, addr, ok := strings.Cut(s, "=")
	if !ok || id == "" || addr == "" {
		return fmt.Errorf("want DEVICE=HOST:PORT, not %q", s)
	}
	d[id] = addr
	return nil
}

func runGateway(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gateway", "", `
Runs one edge gateway of the plant: polls its Modbus devices every poll
period and publishes one telemetry message per cycle over MQTT (QoS 1), with
a retained status carrying its clock and an offline last will.`, stderr)
	cfgDir := configFlag(fs)
	id := fs.String("id", "", "the gateway's id in the plant files (required)")
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	user := fs.String("username", "", "MQTT username")
	pass := fs.String("password", "", "MQTT password (or env HAZARDWATCH_MQTT_PASSWORD)")
	devices := deviceFlag{}
	fs.Var(devices, "device", "override a device's address: DEVICE=HOST:PORT (repeatable)")
	listen := fs.String("listen", "127.0.0.1:9101", "address of the gateway's own /healthz and /metrics (empty: none)")
	dataDir := dataDirFlag(fs)
	debug := fs.Bool("debug", false, "log debug messages")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if *id == "" {
		fmt.Fprintln(stderr, "hazardwatch gateway: --id is required")
		return exitUsage
	}
	if *pass == "" {
		*pass = os.Getenv("HAZARDWATCH_MQTT_PASSWORD")
	}
	cfg, err := loadConfig(*cfgDir)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch gateway: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "hazardwatch gateway: %v\n", err)
		return exitFailure
	}
	g, err := gateway.New(gateway.Options{Plant: cfg.Plant, Gateway: *id, Broker: *broker, Username: *user, Password: *pass, DeviceAddr: devices, QueuePath: gatewayQueue(*dataDir, *id), Logger: newLogger(stderr, *debug)})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch gateway: %v\n", err)
		return exitUsage
	}
	defer g.Close()
	ctx, stop := signalContext()
	defer stop()
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch gateway: health and metrics: %v\n", err)
			return exitFailure
		}
		srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "hazardwatch gateway: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// gatewayQueue is a gateway's store-and-forward queue file under the data
// directory.
func gatewayQueue(dataDir, id string) string {
	return filepath.Join(dataDir, "gateway-"+id+".queue")
}
