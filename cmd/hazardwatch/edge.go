package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"hazardwatch/configs"
	"hazardwatch/gateway/edge"
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
order, a device going silent. It repeats until stopped.

In a container, --listen-host 0.0.0.0 keeps each device's port and listens
on every interface; gateways then reach the devices with --device
DEVICE=HOST:PORT.`, stderr)
	cfgDir := configFlag(fs)
	scenario := fs.String("scenario", "", "scenario file, relative to the config folder (default scenario.yaml)")
	listenHost := fs.String("listen-host", "", "listen on this host with each device's configured port, e.g. 0.0.0.0 in a container (default: each device's configured address)")
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
	listen, err := listenOnHost(cfg.Plant, *listenHost)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch simulate: %v\n", err)
		return exitFailure
	}
	ctx, stop := signalContext()
	defer stop()
	s, err := sim.New(cfg.Plant, sc, sim.Options{Listen: listen, Logger: log})
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

// listenOnHost maps every Modbus TCP device of the plant to host and the
// port of its configured address: the devices' addresses in the plant
// files are what gateways dial (loopback in the demo), which a simulator
// in a container of its own cannot bind. Empty host: no mapping.
func listenOnHost(p *model.Plant, host string) (map[string]string, error) {
	if host == "" {
		return nil, nil
	}
	listen := map[string]string{}
	for _, g := range p.Gateways {
		for _, d := range g.Devices {
			if d.Transport != model.ModbusTCP {
				continue
			}
			_, port, err := net.SplitHostPort(d.Address)
			if err != nil {
				return nil, fmt.Errorf("--listen-host: device %s of %s: address %q: %w", d.ID, g.ID, d.Address, err)
			}
			listen[g.ID+"/"+d.ID] = net.JoinHostPort(host, port)
		}
	}
	return listen, nil
}

func runGateway(args []string, stdout, stderr io.Writer) int {
	return edge.Main("hazardwatch gateway", args, stdout, stderr)
}

// gatewayQueue is a gateway's store-and-forward queue file under the data
// directory.
func gatewayQueue(dataDir, id string) string { return edge.QueueFile(dataDir, id) }
