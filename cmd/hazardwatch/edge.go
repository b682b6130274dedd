package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
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

func runGateway(args []string, stdout, stderr io.Writer) int {
	return edge.Main("hazardwatch gateway", args, stdout, stderr)
}

// gatewayQueue is a gateway's store-and-forward queue file under the data
// directory.
func gatewayQueue(dataDir, id string) string { return edge.QueueFile(dataDir, id) }
