// Command hazardwatch is the one binary of hazardwatch: the demo, the
// centre, the edge gateway, the plant simulator and the tools around them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem (config errors, …)
	exitUsage   = 2 // bad flags, unknown command, or a command not built yet
)

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"demo":     {"run the demo plant end to end on embedded defaults", runDemo},
	"serve":    {"run the centre: broker, ingest, rules, alarms, API and web UI", runServe},
	"gateway":  {"run an edge gateway: poll Modbus devices, publish over MQTT", runGateway},
	"simulate": {"run the plant simulator: Modbus TCP devices playing a scenario", runSimulate},
	"check":    {"validate plant and rule files and print a summary", runCheck},
	"token":    {"create, list and revoke API tokens", runToken},
	"audit":    {"verify the audit log's hash chain, list its records", runAudit},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "hazardwatch", version())
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "hazardwatch: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `hazardwatch: real-time monitoring and early warning for major hazard sources
(危险化学品重大危险源在线监测预警)

Usage:
  hazardwatch <command> [flags] [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run "hazardwatch <command> --help" for a command's flags.
`)
}

// newFlags makes a command's flag set; --help prints its usage.
func newFlags(name, args, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: hazardwatch %s [flags] %s\n\n%s\n", name, args, strings.TrimSpace(about))
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses flags; ok is false with the exit code when the command must stop.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	if askedForHelp(args) {
		fs.SetOutput(stdout) // the usage asked for goes to stdout, once
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// askedForHelp reports whether the flags ask for the usage: the flag
// package prints it while parsing, to the flag set's output.
func askedForHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--h", "--help":
			return true
		}
	}
	return false
}

// dataDirFlag adds the --data-dir flag every stateful command shares.
func dataDirFlag(fs *flag.FlagSet) *string {
	return fs.String("data-dir", "hazardwatch-data", "folder for state: stored readings, alarms, tokens")
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
