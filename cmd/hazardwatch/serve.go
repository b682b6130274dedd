package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hazardwatch/internal/auth"
	"hazardwatch/internal/centre"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "", `
Runs the centre: an embedded MQTT broker (or an external one), ingest into
embedded NATS JetStream, rules, alarms, history and the HTTP API with its
WebSocket and the control-room page. State lives under --data-dir.`, stderr)
	dataDir := dataDirFlag(fs)
	cfgDir := configFlag(fs)
	mqttAddr := fs.String("mqtt", "127.0.0.1:1883", "embedded MQTT broker's listen address")
	external := fs.String("external-broker", "", "use this MQTT broker (tcp://host:port) instead of the embedded one")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP API and web page listen address")
	retention := fs.Duration("retention", 0, "how long history is kept (default 720h: 30 days)")
	debug := fs.Bool("debug", false, "log debug messages")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	log := newLogger(stderr, *debug)
	cfg, err := loadConfig(*cfgDir)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitFailure
	}
	if *external != "" {
		*mqttAddr = ""
	}
	ctx, stop := signalContext()
	defer stop()
	c, err := centre.Start(ctx, centre.Options{Config: cfg, DataDir: *dataDir, MQTTListen: *mqttAddr, ExternalBroker: *external, HTTPListen: *httpAddr, Retention: *retention, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "hazardwatch centre: http://%s  (MQTT %s)\n", c.HTTPAddr(), c.MQTTAddr())
	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-c.Err():
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		code = exitFailure
	}
	if err := c.Close(); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return code
}

// demoToken is one of the demo's users.
type demoToken struct {
	Role  auth.Role
	Scope string
	Name  string
	Token string
}

// demoUsers are created at the demo's first start (SPEC §3).
var demoUsers = []demoToken{
	{auth.Operator, "enterprise:e01", "恒安氯碱 控制室操作员 / enterprise operator", ""},
	{auth.Operator, "park:p01", "示范化工园区 控制室 / park control room", ""},
	{auth.Officer, "county:c01", "示范县应急管理局 值班员 / county duty officer", ""},
	{auth.Admin, "all", "管理员 / administrator", ""},
}

// demoTokens returns the demo's tokens: read from the 0600 file beside the
// data (demo only: a real deployment keeps no plain tokens), or created in
// the token store at the first start.
func demoTokens(dataDir string, store *auth.Store) ([]demoToken, error) {
	path := filepath.Join(dataDir, "demo-tokens.txt")
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		var out []demoToken
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.SplitN(sc.Text(), "\t", 4)
			if len(parts) == 4 {
				out = append(out, demoToken{Role: auth.Role(parts[0]), Scope: parts[1], Token: parts[2], Name: parts[3]})
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("demo tokens: %w", err)
		}
		if len(out) == len(demoUsers) {
			return out, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("demo tokens: %w", err)
	}
	var b strings.Builder
	var out []demoToken
	for _, u := range demoUsers {
		sc, err := auth.ParseScope(u.Scope)
		if err != nil {
			return nil, err
		}
		plain, _, err := store.Create(u.Name, u.Role, sc, 0, time.Now())
		if err != nil {
			return nil, err
		}
		u.Token = plain
		out = append(out, u)
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", u.Role, u.Scope, u.Token, u.Name)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("demo tokens: %w", err)
	}
	return out, nil
}
