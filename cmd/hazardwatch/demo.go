package main

import (
	"fmt"
	"io"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
)

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "", `
Runs the demo plant on embedded defaults. The end-to-end pipeline (simulator,
gateway, broker, rules, alarms, web UI) comes with issue #3; until then demo
validates the embedded demo plant and prints it.`, stderr)
	_ = dataDirFlag(fs)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch demo: reference tables: %v\n", err)
		return exitFailure
	}
	cfg, err := config.LoadFS(configs.Demo(), ".", "configs/demo", ref)
	code := report("demo plant (embedded configs/demo)", cfg, err, false, stdout, stderr)
	if code == exitOK {
		fmt.Fprintln(stdout, "\nThe live demo (simulator → gateway → MQTT → JetStream → rules → alarms → web UI) is not built yet: it comes with issue #3.")
	}
	return code
}
