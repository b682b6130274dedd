package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "[dir]", `
Validates every plant and rule file below dir (default configs/demo) without
starting anything: unknown fields, wrong types, missing references, ranges,
GB/T 50493 gas set-point maxima. Prints every error as file:line:col: field:
what is wrong, then a summary with each hazard source's GB 18218-2018 R and
level. Exit status 1 when there are errors.`, stderr)
	quiet := fs.Bool("q", false, "print errors only, no summary")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "hazardwatch check: give one folder")
		return exitUsage
	}
	dir := "configs/demo"
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch check: reference tables: %v\n", err)
		return exitFailure
	}
	cfg, err := config.LoadDir(dir, ref)
	return report(dir, cfg, err, *quiet, stdout, stderr)
}

// report prints a loaded config's errors, warnings and summary.
func report(dir string, cfg *config.Config, err error, quiet bool, stdout, stderr io.Writer) int {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(stderr, e.Error())
		}
	} else if err != nil {
		fmt.Fprintf(stderr, "hazardwatch check: %v\n", err)
		return exitFailure
	}
	if cfg != nil {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w.Error())
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "%s: %d error(s), %d warning(s)\n", dir, len(errs), len(cfg.Warnings))
		return exitFailure
	}
	if !quiet {
		summary(stdout, dir, cfg)
	}
	return exitOK
}

func summary(w io.Writer, dir string, cfg *config.Config) {
	p := cfg.Plant
	devices := 0
	for _, g := range p.Gateways {
		devices += len(g.Devices)
	}
	statuses := map[model.EnterpriseStatus]int{}
	for _, e := range p.Enterprises {
		statuses[e.Status]++
	}
	fmt.Fprintf(w, "%s: %d file(s) OK, %d warning(s)\n", dir, len(cfg.Files), len(cfg.Warnings))
	fmt.Fprintf(w, "  %d county(ies), %d park(s), %d enterprise(s) (%d operating, %d stop_ordered, %d suspended)\n",
		len(p.Counties), len(p.Parks), len(p.Enterprises), statuses[model.Operating], statuses[model.StopOrdered], statuses[model.Suspended])
	fmt.Fprintf(w, "  %d hazard source(s), %d gateway(s) with %d Modbus device(s), %d sensor(s)\n",
		len(p.HazardSources), len(p.Gateways), devices, len(p.Sensors))

	kinds := map[model.Kind]int{}
	limits := 0
	for i, s := range p.Sensors {
		kinds[s.Kind]++
		for _, l := range cfg.Rules[i].Limits {
			if l.Set {
				limits++
			}
		}
	}
	var parts []string
	for _, k := range model.Kinds() {
		if kinds[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, kinds[k]))
		}
	}
	fmt.Fprintf(w, "  sensors by kind: %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "  alarm limits: %d over %d sensors\n\n", limits, len(p.Sensors))

	fmt.Fprintln(w, "Hazard sources (GB 18218-2018: R = α·Σβq/Q; level 1 R≥100, 2 R≥50, 3 R≥10, 4 below):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tENTERPRISE\tΣq/Q\tR\tLEVEL\tNAME")
	for i, h := range p.HazardSources {
		lvl := fmt.Sprintf("%d", h.Level)
		if h.LevelDeclared {
			lvl += " (declared)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.2f\t%.1f\t%s\t%s\n", h.ID, p.Enterprises[h.Enterprise].ID, cfg.Grades[i].Sum, h.R, lvl, h.Name)
	}
	tw.Flush()

	a := &cfg.Alarms
	fmt.Fprintf(w, "\nEscalation (包保责任 / 源长制), from the alarm shown unacknowledged (off: never):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PRIORITY\tPARK\tCOUNTY\tREMIND\tFEEDBACK")
	for prio := 1; prio <= 4; prio++ {
		l := a.Escalation[prio]
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", prio, offOr(l.Park), offOr(l.County), offOr(l.Remind), offOr(l.Feedback))
	}
	tw.Flush()
	fmt.Fprintf(w, "Noise: chattering %d in %s · flood above %d in %s · shelving at most %s · notices of new alarms at most %d per %s a sensor, %d per %s an enterprise\n",
		a.Chatter.Count, a.Chatter.Window, a.Flood.Count, a.Flood.Window, a.MaxShelve,
		a.RateLimit.Sensor.Count, a.RateLimit.Sensor.Window, a.RateLimit.Enterprise.Count, a.RateLimit.Enterprise.Window)
}

// offOr writes a limit, "off" for zero.
func offOr(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}
