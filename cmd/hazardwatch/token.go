package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"hazardwatch/internal/audit"
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
revoked token included. A created token is shown once. Creating and
revoking are recorded in the audit log (token.create, token.revoke; never
the token nor its hash).`, stderr)
	dataDir := dataDirFlag(fs)
	af := auditFlag(fs, dataDir)
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
	var alog *audit.Log
	if verb == "create" || verb == "revoke" {
		o, err := af.options()
		if err != nil {
			fmt.Fprintf(stderr, "hazardwatch token %s: %v\n", verb, err)
			return exitUsage
		}
		// Opened before the change: a change the log cannot take is not made.
		if alog, err = openAudit(o, stderr); err != nil {
			fmt.Fprintf(stderr, "hazardwatch token %s: %v\n", verb, err)
			return exitFailure
		}
		defer alog.Close()
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
		return auditToken(alog, "token.create", nil, &t, stderr)
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
		before, _ := findToken(store.List(), fs.Arg(0))
		if err := store.Revoke(fs.Arg(0), now); err != nil {
			fmt.Fprintf(stderr, "hazardwatch token revoke: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
		after, _ := findToken(store.List(), fs.Arg(0))
		return auditToken(alog, "token.revoke", before, after, stderr)
	default:
		fmt.Fprintf(stderr, "hazardwatch token: unknown action %q (create, list or revoke)\n", verb)
		return exitUsage
	}
	return exitOK
}

func findToken(ts []auth.Token, id string) (*auth.Token, bool) {
	for i := range ts {
		if ts[i].ID == id {
			return &ts[i], true
		}
	}
	return nil, false
}

// tokenState is a token as the audit log shows it: never the token nor
// its hash.
type tokenState struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Scope   string    `json:"scope"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
}

func tokenJSON(t *auth.Token) json.RawMessage {
	if t == nil {
		return nil
	}
	b, _ := json.Marshal(tokenState{ID: t.ID, Name: t.Name, Role: t.Role, Scope: t.Scope.String(), Created: t.Created, Expires: t.Expires, Revoked: t.Revoked})
	return b
}

// auditToken records a token's change; the change is made, so a record
// that could not be stored is a failure to report, not to undo.
func auditToken(alog *audit.Log, action string, before, after *auth.Token, stderr io.Writer) int {
	id := after.ID
	_, err := alog.Append(context.Background(), audit.Entry{
		Actor: cliActor(), From: "cli", Action: action, Object: "token:" + id,
		Before: tokenJSON(before), After: tokenJSON(after),
	})
	switch {
	case errors.Is(err, audit.ErrHead):
		fmt.Fprintf(stderr, "hazardwatch %s: recorded in the audit log, but: %v\n", strings.ReplaceAll(action, ".", " "), err)
	case err != nil:
		fmt.Fprintf(stderr, "hazardwatch %s: %s is done but NOT in the audit log: %v\n", strings.ReplaceAll(action, ".", " "), id, err)
		return exitFailure
	}
	return exitOK
}
