package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"hazardwatch/internal/auth"
	"hazardwatch/internal/config"
)

// tokenFile is where tokens live under the data directory.
func tokenFile(dataDir string) string { return filepath.Join(dataDir, "tokens.json") }

// configFlag adds --config, the folder of plant and rule files.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "folder of plant and rule files (default: the embedded demo plant)")
}

// loadConfig loads the folder, or the embedded demo plant when dir is "".
func loadConfig(dir string) (*config.Config, error) { return config.LoadDirOrDemo(dir) }

func runToken(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("token", "create|list|revoke [flags]", `
Manages tokens (stored hashed under the data directory): the API's users,
and the gateways' passwords at the embedded MQTT broker.

  hazardwatch token create --role operator --scope enterprise:e01 --name 张伟
  hazardwatch token create --role gateway --scope gateway:gw-e01-1 --name "gw-e01-1 box"
  hazardwatch token list
  hazardwatch token revoke tok-1a2b3c4d

Roles and scopes (SPEC §3): operator of an enterprise or a park; officer of
a park or a county; admin of all. A gateway token (role gateway, scope
gateway:ID) is that gateway's MQTT password, with the gateway id as the
username; it may publish only to the gateway's own topics, and the HTTP API
refuses it. An admin token may also connect to the broker to subscribe
(read only, e.g. mosquitto_sub -u admin -P TOKEN). Tokens created or revoked
while the centre runs take effect there within seconds, connections of a
revoked token included. A created token is shown once.`, stderr)
	dataDir := dataDirFlag(fs)
	cfgDir := configFlag(fs)
	role := fs.String("role", "", "create: operator, officer, admin or gateway")
	scope := fs.String("scope", "", "create: enterprise:ID, park:ID, county:ID, all, or gateway:ID (role gateway)")
	name := fs.String("name", "", "create: who holds the token")
	ttl := fs.Duration("ttl", 0, "create: how long the token is valid (0: no expiry)")
	if len(args) == 0 {
		fs.Usage()
		return exitUsage
	}
	verb := args[0]
	if code, ok := parse(fs, args[1:], stdout); !ok {
		return code
	}
	store, err := auth.Open(tokenFile(*dataDir))
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch token: %v\n", err)
		return exitFailure
	}
	now := time.Now()
	switch verb {
	case "create":
		if *name == "" || *role == "" || *scope == "" {
			fmt.Fprintln(stderr, "hazardwatch token create: --name, --role and --scope are required")
			return exitUsage
		}
		sc, err := auth.ParseScope(*scope)
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch token create: %v\n", err)
			return exitUsage
		}
		cfg, err := loadConfig(*cfgDir)
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch token create: %v\n", err)
			return exitFailure
		}
		if err := auth.Check(auth.Role(*role), sc, cfg.Plant); err != nil {
			fmt.Fprintf(stderr, "hazardwatch token create: %v\n", err)
			return exitUsage
		}
		plain, t, err := store.Create(*name, auth.Role(*role), sc, *ttl, now)
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch token create: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Scope, plain)
		fmt.Fprintln(stderr, "The token is shown this once; it is stored hashed.")
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tSCOPE\tCREATED\tEXPIRES\tSTATE\tNAME")
		for _, t := range store.List() {
			state, expires := "active", "never"
			if !t.Expires.IsZero() {
				expires = t.Expires.Format(time.RFC3339)
				if !now.Before(t.Expires) {
					state = "expired"
				}
			}
			if !t.Revoked.IsZero() {
				state = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Scope, t.Created.Format(time.RFC3339), expires, state, t.Name)
		}
		tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "hazardwatch token revoke: give one token id")
			return exitUsage
		}
		if err := store.Revoke(fs.Arg(0), now); err != nil {
			fmt.Fprintf(stderr, "hazardwatch token revoke: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
	default:
		fmt.Fprintf(stderr, "hazardwatch token: unknown action %q (create, list or revoke)\n", verb)
		return exitUsage
	}
	return exitOK
}
