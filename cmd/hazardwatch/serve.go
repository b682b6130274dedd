package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hazardwatch/internal/api"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/bus"
	"hazardwatch/internal/centre"
	"hazardwatch/internal/influx"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "", `
Runs the centre: an embedded MQTT broker (or an external one), ingest into
NATS JetStream (embedded, or an external server), rules, alarms, history
and the HTTP API with its WebSocket and the control-room page. State lives
under --data-dir.

The embedded broker lets in a gateway that gives its id as the username
and its token as the password (hazardwatch token create --role gateway
--scope gateway:ID), or, with --mqtt-client-ca, a client certificate whose
CN is its id; it then publishes only to its own topics. An admin token
connects read-only (mosquitto_sub -u admin -P TOKEN -t 'hw/#').

With --influx-url it also writes readings and alarm events to InfluxDB
(measurements reading and alarm_event), from durable consumers of its own:
an InfluxDB that is down loses nothing, it catches up when it is back.

With --nats-url the streams live in that NATS server's JetStream instead
of an embedded one; the server must sync every write (its jetstream block:
sync_interval: always), as the embedded one does. Credentials: --nats-user
with $`+envNATSPassword+`, or a token, or an nkey seed file.`, stderr)
	dataDir := dataDirFlag(fs)
	af := auditFlag(fs, dataDir)
	cfgDir := configFlag(fs)
	mqttAddr := fs.String("mqtt", "127.0.0.1:1883", "embedded MQTT broker's listen address")
	mqttAuth := fs.String("mqtt-auth", "token", "who may connect to the embedded broker: token (gateways with their token or client certificate, admins read-only) or none (anyone, as any gateway; logs a warning)")
	tlsCert := fs.String("mqtt-tls-cert", "", "PEM certificate (chain) of the embedded broker, which then speaks TLS only; with --mqtt-tls-key")
	tlsKey := fs.String("mqtt-tls-key", "", "PEM private key of --mqtt-tls-cert")
	clientCA := fs.String("mqtt-client-ca", "", "PEM CA bundle for gateways' client certificates: one it signed whose Subject CN is a gateway id authenticates that gateway (needs --mqtt-tls-cert)")
	external := fs.String("external-broker", "", "use this MQTT broker (tcp://host:port) instead of the embedded one")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP API and web page listen address")
	httpCert := fs.String("http-tls-cert", "", "PEM certificate (chain) of the HTTP listener (API, WebSocket, page, metrics), which then speaks TLS only (1.2 or later); with --http-tls-key")
	httpKey := fs.String("http-tls-key", "", "PEM private key of --http-tls-cert")
	var lim api.Limits
	fs.Float64Var(&lim.Rate, "api-rate", 20, "requests per second one API token may make (negative: no limit)")
	fs.IntVar(&lim.Burst, "api-burst", 60, "requests one API token may make at once, above --api-rate")
	fs.IntVar(&lim.AuthFailures, "api-auth-failures", 20, "failed token checks per minute from one client address before it gets 429 for tokens not seen working there (negative: no limit)")
	fs.IntVar(&lim.WSPerToken, "api-ws-per-token", 8, "open WebSockets per API token (negative: no limit)")
	retention := fs.Duration("retention", 0, "how long history is kept (default 720h: 30 days)")
	influxURL := fs.String("influx-url", "", "also write history to this InfluxDB (http://host:8086): 2.x, or 1.8 through its /api/v2 endpoints")
	influxToken := fs.String("influx-token", "", "InfluxDB token: a 2.x API token, or user:password for 1.8 (default $"+envInfluxToken+"; the environment keeps it out of the process list)")
	influxBucket := fs.String("influx-bucket", influx.DefaultBucket, "InfluxDB bucket; for 1.8 database/retention-policy, created at start when missing (with --influx-retention)")
	influxRetention := fs.Duration("influx-retention", influx.DefaultRetention, "InfluxDB 1.8: duration of the retention policy created at start when the bucket's is missing (at least 1h; DOMAIN.md asks for at least 720h, a shorter one logs a warning)")
	influxAlter := fs.Bool("influx-alter-retention", false, "InfluxDB 1.8: also set --influx-retention on the bucket's policy when it exists already (autogen keeps data for ever)")
	influxOrg := fs.String("influx-org", "", "InfluxDB 2.x organisation (1.8 ignores it)")
	notifyHook := fs.String("notify-webhook", "", "post every notification of an alarm (a ring, an escalation step, a reminder, overdue feedback) as JSON to this URL (http:// or https://)")
	var notifyHeader headerFlag
	fs.Var(&notifyHeader, "notify-webhook-header", `a header for the webhook, "Name: value" (repeatable), e.g. "Authorization: Bearer …"`)
	notifyTimeout := fs.Duration("notify-webhook-timeout", 10*time.Second, "how long the webhook may take to answer one notification")
	notifyOff := fs.Bool("notify-sms-off", false, "no SMS and voice notices (without a provider they are written to the log, the number masked)")
	natsURL := fs.String("nats-url", "", "use this NATS server with JetStream (nats://host:4222, tls://host:4222; comma-separated for a cluster) instead of the embedded one; it must have sync_interval: always")
	natsUser := fs.String("nats-user", "", "user at --nats-url; its password is read from $"+envNATSPassword)
	natsToken := fs.String("nats-token", "", "token at --nats-url (default $"+envNATSToken+" when no other credentials are given)")
	natsNKey := fs.String("nats-nkey", "", "file holding the nkey seed (SU…) of the user at --nats-url")
	natsCA := fs.String("nats-ca", "", "PEM CA bundle that verifies the certificate of --nats-url (TLS)")
	debug := fs.Bool("debug", false, "log debug messages")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if msg := checkMQTTFlags(*mqttAuth, *tlsCert, *tlsKey, *clientCA, *external); msg != "" {
		fmt.Fprintf(stderr, "hazardwatch serve: %s\n", msg)
		return exitUsage
	}
	if (*httpCert == "") != (*httpKey == "") {
		fmt.Fprintf(stderr, "hazardwatch serve: --http-tls-cert and --http-tls-key go together: give both or neither\n")
		return exitUsage
	}
	if msg := checkInfluxFlags(fs, *influxURL, *influxRetention); msg != "" {
		fmt.Fprintf(stderr, "hazardwatch serve: %s\n", msg)
		return exitUsage
	}
	if *influxToken == "" {
		*influxToken = os.Getenv(envInfluxToken)
	}
	if *notifyHook != "" {
		if u, err := url.Parse(*notifyHook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(stderr, "hazardwatch serve: --notify-webhook %q: want http://host/path or https://host/path\n", *notifyHook)
			return exitUsage
		}
	} else if len(notifyHeader) > 0 {
		fmt.Fprintf(stderr, "hazardwatch serve: --notify-webhook-header without --notify-webhook\n")
		return exitUsage
	}
	natsOpts, msg := natsFlags(fs, *natsURL, *natsUser, *natsToken, *natsNKey, *natsCA)
	if msg != "" {
		fmt.Fprintf(stderr, "hazardwatch serve: %s\n", msg)
		return exitUsage
	}
	log := newLogger(stderr, *debug)
	cfg, err := loadConfig(*cfgDir)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitFailure
	}
	mqttTLS, err := loadMQTTTLS(*tlsCert, *tlsKey, *clientCA)
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitFailure
	}
	var httpTLS *tls.Config
	if *httpCert != "" {
		if httpTLS, err = loadCert("--http-tls-cert", "--http-tls-key", *httpCert, *httpKey); err != nil {
			fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
			return exitFailure
		}
	}
	if *external != "" {
		*mqttAddr = ""
	}
	auditOpts, err := af.options()
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	cfgFS, cfgName := configSource(*cfgDir)
	c, err := centre.Start(ctx, centre.Options{Config: cfg, ConfigFS: cfgFS, ConfigName: cfgName, DataDir: *dataDir, Audit: auditOpts, MQTTListen: *mqttAddr, ExternalBroker: *external,
		MQTTAuth: *mqttAuth == "token", MQTTTLS: mqttTLS, HTTPListen: *httpAddr, HTTPTLS: httpTLS, APILimits: lim, Retention: *retention, Logger: log,
		Influx: influx.Options{URL: *influxURL, Token: *influxToken, Bucket: *influxBucket, Org: *influxOrg,
			Retention: *influxRetention, AlterRetention: *influxAlter},
		NATS:   natsOpts,
		Notify: centre.NotifyOptions{WebhookURL: *notifyHook, WebhookHeader: http.Header(notifyHeader), WebhookTimeout: *notifyTimeout, Off: *notifyOff}})
	if err != nil {
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "hazardwatch centre: %s  (MQTT %s)\n", c.HTTPURL(), c.MQTTAddr())
	stopReload := reloadOnHangup(ctx, c, log) // SIGHUP: the rule files again
	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-c.Err():
		fmt.Fprintf(stderr, "hazardwatch serve: %v\n", err)
		code = exitFailure
	}
	stopReload()
	if err := c.Close(); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return code
}

// headerFlag collects "Name: value" headers.
type headerFlag http.Header

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("want \"Name: value\", not %q", v)
	}
	if *h == nil {
		*h = headerFlag{}
	}
	http.Header(*h).Add(name, strings.TrimSpace(value))
	return nil
}

// envInfluxToken is where serve reads the InfluxDB token when
// --influx-token is not given.
const envInfluxToken = "HAZARDWATCH_INFLUX_TOKEN"

// Where serve reads the external NATS server's secrets: the environment
// keeps them out of the process list.
const (
	envNATSPassword = "HAZARDWATCH_NATS_PASSWORD"
	envNATSToken    = "HAZARDWATCH_NATS_TOKEN"
)

// natsFlags makes the external NATS server's options of the --nats-*
// flags and the environment, checked together; it returns what is wrong,
// or "". Without --nats-url the options are empty: the embedded server.
func natsFlags(fs *flag.FlagSet, rawURL, user, token, nkey, ca string) (bus.ExternalOptions, string) {
	if rawURL == "" {
		if set := flagsGiven(fs, "nats-"); len(set) > 0 {
			return bus.ExternalOptions{}, strings.Join(set, ", ") + " without --nats-url: give the NATS server's address too"
		}
		return bus.ExternalOptions{}, ""
	}
	o := bus.ExternalOptions{URL: rawURL, User: user, Token: token, NKeyFile: nkey, CAFile: ca}
	if user != "" {
		if o.Password = os.Getenv(envNATSPassword); o.Password == "" {
			return o, "--nats-user " + user + ": its password goes in $" + envNATSPassword + ", which is empty"
		}
	}
	if user == "" && token == "" && nkey == "" {
		o.Token = os.Getenv(envNATSToken)
	}
	if err := o.Check(); err != nil {
		return o, strings.TrimPrefix(err.Error(), "bus: ")
	}
	return o, ""
}

// checkInfluxFlags checks the InfluxDB flags together; it returns what is
// wrong, or "".
func checkInfluxFlags(fs *flag.FlagSet, rawURL string, retention time.Duration) string {
	if rawURL == "" {
		if set := flagsGiven(fs, "influx-"); len(set) > 0 {
			return strings.Join(set, ", ") + " without --influx-url: give the InfluxDB's address too"
		}
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("--influx-url %q: want http://host:port or https://host:port", rawURL)
	}
	if retention < influx.MinRetention {
		return fmt.Sprintf("--influx-retention %s: InfluxDB keeps data at least %s (DOMAIN.md asks for 720h)", retention, influx.MinRetention)
	}
	return ""
}

// flagsGiven returns, as --name, every flag given on the command line
// whose name starts with prefix.
func flagsGiven(fs *flag.FlagSet, prefix string) []string {
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, prefix) {
			set = append(set, "--"+f.Name)
		}
	})
	return set
}

// checkMQTTFlags checks the embedded broker's security flags together; it
// returns what is wrong, or "".
func checkMQTTFlags(mode, cert, key, clientCA, external string) string {
	switch {
	case mode != "token" && mode != "none":
		return fmt.Sprintf("--mqtt-auth %q: want token or none", mode)
	case (cert == "") != (key == ""):
		return "--mqtt-tls-cert and --mqtt-tls-key go together: give both or neither"
	case clientCA != "" && cert == "":
		return "--mqtt-client-ca needs --mqtt-tls-cert and --mqtt-tls-key: client certificates come with TLS"
	case clientCA != "" && mode == "none":
		return "--mqtt-client-ca authenticates gateways, which --mqtt-auth none does not do"
	case external != "" && cert != "":
		return "--mqtt-tls-cert secures the embedded broker; with --external-broker that broker's own settings do"
	}
	return ""
}

// loadMQTTTLS reads the embedded broker's certificate, key and client CA
// bundle; nil without a certificate (plain TCP). Errors name the flag and
// the file.
func loadMQTTTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cfg, err := loadCert("--mqtt-tls-cert", "--mqtt-tls-key", certFile, keyFile)
	if err != nil || caFile == "" {
		return cfg, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--mqtt-client-ca %s: no PEM certificate in it", caFile)
	}
	// Verified if given: a gateway may still authenticate with its token.
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	return cfg, nil
}

// loadCert reads a server certificate and its key into a TLS 1.2+
// config; errors name the flags and the files.
func loadCert(certFlag, keyFlag, certFile, keyFile string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFlag, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFlag, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %s, %s %s: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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

// demoTokens returns the demo's tokens for users: read from the 0600 file
// beside the data (demo only: a real deployment keeps no plain tokens), or
// created in the token store at the first start and written there.
func demoTokens(dataDir, file string, users []demoToken, store *auth.Store, alog *audit.Log) ([]demoToken, error) {
	path := filepath.Join(dataDir, file)
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
		if len(out) == len(users) {
			return out, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("demo tokens: %w", err)
	}
	var b strings.Builder
	var out []demoToken
	for _, u := range users {
		sc, err := auth.ParseScope(u.Scope)
		if err != nil {
			return nil, err
		}
		plain, t, err := store.Create(u.Name, u.Role, sc, 0, time.Now())
		if err != nil {
			return nil, err
		}
		if _, err := alog.Append(context.Background(), audit.Entry{Actor: "demo", From: "system", Action: "token.create",
			Object: "token:" + t.ID, After: tokenJSON(&t)}); err != nil && !errors.Is(err, audit.ErrHead) {
			return nil, fmt.Errorf("demo tokens: %w", err)
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
