package configs_test

// The docker-compose deployment: docker-compose.yml and the Dockerfile at
// the root, and the files they mount from configs/compose. No Docker
// engine runs here, so the compose file is checked by what it says (and by
// `docker-compose config` when Debian's docker-compose is installed:
// ./test.sh installs it), Mosquitto's configuration by running Debian's
// Mosquitto on it, and Prometheus's by Prometheus's own loader.

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"hazardwatch/ingest"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/natstest"
	"hazardwatch/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	root        = ".."
	composeFile = "../docker-compose.yml"
	composeDir  = "compose"
)

// composeSpec is what the test reads of the Compose specification.
type composeSpec struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
}

// interpolation is Compose's ${VAR:-default}; the test resolves it with
// every variable unset, as a user who sets none gets it.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

func loadCompose(t *testing.T) composeSpec {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	b = interpolation.ReplaceAll(b, []byte("$2"))
	var c composeSpec
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	if len(c.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return c
}

func demoPlant(t *testing.T) *model.Plant {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Plant
}

// flagValues returns the values of --name=value (or --name value) in cmd.
func flagValues(cmd []string, name string) []string {
	var out []string
	for i, a := range cmd {
		switch {
		case strings.HasPrefix(a, "--"+name+"="):
			out = append(out, strings.TrimPrefix(a, "--"+name+"="))
		case a == "--"+name && i+1 < len(cmd):
			out = append(out, cmd[i+1])
		}
	}
	return out
}

func flagValue(t *testing.T, svc string, cmd []string, name string) string {
	t.Helper()
	v := flagValues(cmd, name)
	if len(v) != 1 {
		t.Fatalf("service %s: --%s given %d times, want once: %q", svc, name, len(v), cmd)
	}
	return v[0]
}

// pinned is name:1.2.3, with a variant after the version allowed
// (nats:2.15.2-alpine): never a bare name, latest, or a major or minor
// alone, which move with every release.
var pinned = regexp.MustCompile(`^[a-z0-9]+(?:[._/-][a-z0-9]+)*:v?[0-9]+(?:\.[0-9]+){2,}(?:-[a-z][a-z0-9.]*)?$`)

func TestPinned(t *testing.T) {
	for image, want := range map[string]bool{
		"nats:2.15.2-alpine": true, "nats:2.15.2": true, "prom/prometheus:v3.5.0": true, "grafana/grafana:12.1.1": true,
		"nats:2.15.2-alpine3.22": true,
		"nats":                   false, "nats:latest": false, "nats:alpine": false, "nats:2": false, "nats:2.15": false, "nats:2.15-alpine": false,
	} {
		if got := pinned.MatchString(image); got != want {
			t.Errorf("pinned(%q) = %v, want %v", image, got, want)
		}
	}
}

// TestComposeServices: every image pinned to a version, every service
// with a health check, every depends_on on an existing service with one,
// every mounted file or folder in the repository, every named volume
// declared.
func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	for _, want := range []string{"mosquitto", "nats", "influxdb", "prometheus", "grafana", "centre", "simulator"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	for name, s := range c.Services {
		switch {
		case s.Build != nil:
			// Built from this repository: the image is only its local name,
			// but it must still name a tag that is not "latest".
			repo, tag, ok := strings.Cut(s.Image, ":")
			if !ok || repo == "" || tag == "" || tag == "latest" {
				t.Errorf("%s: built as %q: want a name with a tag other than latest", name, s.Image)
			}
			if b, ok := s.Build.(map[string]any); !ok || b["context"] != "." {
				t.Errorf("%s: build %v, want context . (the repository)", name, s.Build)
			}
		case !pinned.MatchString(s.Image):
			t.Errorf("%s: image %q is not pinned to a version (name:1.2.3)", name, s.Image)
		}
		if s.Healthcheck == nil || s.Healthcheck.Disable || len(s.Healthcheck.Test) < 2 ||
			(s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL") {
			t.Errorf("%s: no health check", name)
		}
		for dep, d := range s.DependsOn {
			ds, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			case ds.Healthcheck == nil || len(ds.Healthcheck.Test) == 0:
				t.Errorf("%s depends on %s, which has no health check", name, dep)
			case d.Condition != "service_healthy":
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, d.Condition)
			}
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				t.Errorf("%s: volume %q: want SOURCE:TARGET[:MODE]", name, v)
				continue
			}
			src := parts[0]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if filepath.IsAbs(src) || strings.HasPrefix(filepath.Clean(src), "..") {
					t.Errorf("%s: mounts %s, outside the repository", name, src)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s: mounts %s, which is not in the repository: %v", name, src, err)
				}
				if len(parts) != 3 || parts[2] != "ro" {
					t.Errorf("%s: mounts %s read-write; configuration is mounted :ro", name, src)
				}
				continue
			}
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %s is not declared under volumes:", name, src)
			}
		}
	}
}

// dockerStage is one FROM of the Dockerfile with its instructions, each
// with its continuation lines joined.
type dockerStage struct {
	image, name string
	lines       []string // "RUN …", "ENV …", …
}

func readDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		ins := cur.String()
		cur.Reset()
		if f := strings.Fields(ins); len(f) > 0 && f[0] == "FROM" {
			st := dockerStage{image: f[1]}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				st.name = f[3]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %q before the first FROM", ins)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, ins)
	}
	return stages
}

// TestDockerfile: the one image of the hazardwatch services is built in
// two stages from pinned images, with a Go no older than go.mod's, as
// static binaries, and runs as a user without privileges on a base that
// has what those services' health checks call. The build stage's go build
// commands are run here as the Dockerfile writes them, and what they make
// must need no dynamic loader or library.
func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a small run stage", len(stages))
	}
	build, run := stages[0], stages[len(stages)-1]
	for _, st := range stages {
		if !pinned.MatchString(st.image) {
			t.Errorf("Dockerfile: FROM %s is not pinned to a version", st.image)
		}
	}
	goImage, goVersion, _ := strings.Cut(build.image, ":")
	if goImage != "golang" || versionLess(goVersion, strings.TrimPrefix(moduleLine(t, "go"), "go ")) {
		t.Errorf("Dockerfile: builds with %s; go.mod asks for %s", build.image, moduleLine(t, "go"))
	}
	var goBuilds []string
	static := false
	for _, l := range build.lines {
		switch {
		case l == "ENV CGO_ENABLED=0":
			static = true
		case strings.HasPrefix(l, "RUN go build"):
			if !static {
				t.Errorf("Dockerfile: %q before ENV CGO_ENABLED=0: not a static binary", l)
			}
			for _, c := range strings.Split(strings.TrimPrefix(l, "RUN "), "&&") {
				goBuilds = append(goBuilds, strings.TrimSpace(c))
			}
		}
	}
	// Every binary with the same flags, so that building one here tells
	// for all.
	for _, c := range goBuilds {
		if flags, _, _ := strings.Cut(c, " -o "); flags != strings.SplitN(goBuilds[0], " -o ", 2)[0] {
			t.Errorf("Dockerfile: %q and %q build with different flags", goBuilds[0], c)
		}
	}
	var copied, user string
	for _, l := range run.lines {
		if rest, ok := strings.CutPrefix(l, "COPY --from="+build.name+" "); ok {
			copied += rest
		}
		if rest, ok := strings.CutPrefix(l, "USER "); ok {
			user = rest
		}
	}
	for _, bin := range []string{"/out/hazardwatch", "/out/hw-gateway"} {
		if !strings.Contains(copied, bin) {
			t.Errorf("Dockerfile: the run stage does not copy %s from the build stage", bin)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("Dockerfile: the run stage's USER is %q: it runs as root", user)
	}
	for name, svc := range loadCompose(t).Services {
		if svc.Build != nil && !strings.HasPrefix(run.image, "alpine:") {
			t.Errorf("%s: its health check %q needs busybox's wget or nc, which %s may lack", name, svc.Healthcheck.Test, run.image)
		}
	}

	// The smaller binary, built here by its own command (a first run
	// compiles its dependencies anew: -trimpath has a cache of its own).
	i := slices.IndexFunc(goBuilds, func(c string) bool { return strings.HasSuffix(c, " ./cmd/hw-gateway") })
	if i < 0 {
		t.Fatalf("Dockerfile: no go build of ./cmd/hw-gateway in %q", goBuilds)
	}
	if testing.Short() {
		return
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(goBuilds[i], "/out/", out+"/"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's %q: %v\n%s", goBuilds[i], err, b)
	}
	f, err := elf.Open(filepath.Join(out, "hw-gateway"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	if interp := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }); interp || len(libs) > 0 {
		t.Errorf("hw-gateway as the Dockerfile builds it: a dynamic loader %v, libraries %v: not static", interp, libs)
	}
}

// versionLess compares dotted versions such as 1.26.8 and 1.26.7.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			fmt.Sscan(as[i], &x)
		}
		if i < len(bs) {
			fmt.Sscan(bs[i], &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// TestComposeConfig: `docker-compose config` (Debian's docker-compose,
// which needs no engine for it) accepts the file.
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("no docker-compose: ./test.sh installs Debian's docker-compose, which validates the file without a Docker engine")
	}
	cmd := exec.Command(bin, "--project-directory", root, "-f", composeFile, "config", "-q")
	// Only what it needs of the environment, so that nothing set on this
	// machine changes the file's defaults.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	// And what it makes of the anchors and merges: the services the
	// test's own reading found, each gateway depending on the broker.
	cmd = exec.Command(bin, "--project-directory", root, "-f", composeFile, "config", "--services")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	var want []string
	for name := range loadCompose(t).Services {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("docker-compose config --services: %v, want %v", got, want)
	}
}

// TestComposePlant: the compose file runs the demo plant as its files say:
// a gateway service for each gateway, each device of it reached on the
// simulator at its configured port, each gateway signed in at Mosquitto
// with its own password file, and the centre and Grafana using the
// InfluxDB users the influxdb service creates.
func TestComposePlant(t *testing.T) {
	c := loadCompose(t)
	p := demoPlant(t)
	gateways := map[string]string{} // gateway id → service
	for name, s := range c.Services {
		if len(s.Command) > 0 && s.Command[0] == "hw-gateway" {
			gateways[flagValue(t, name, s.Command, "id")] = name
		}
	}
	var want []string
	for _, g := range p.Gateways {
		want = append(want, g.ID)
	}
	got := make([]string, 0, len(gateways))
	for id := range gateways {
		got = append(got, id)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("gateway services run %v; the demo plant's gateways are %v", got, want)
	}
	for _, g := range p.Gateways {
		name, ok := gateways[g.ID]
		if !ok {
			continue
		}
		s := c.Services[name]
		if name != g.ID {
			t.Errorf("the service of gateway %s is called %s: prometheus.yml scrapes it by its id", g.ID, name)
		}
		if b := flagValue(t, name, s.Command, "broker"); b != "tcp://mosquitto:1883" {
			t.Errorf("%s: --broker %s, want tcp://mosquitto:1883 (the gateways' listener)", name, b)
		}
		if l := flagValue(t, name, s.Command, "listen"); l != "0.0.0.0:9101" {
			t.Errorf("%s: --listen %s, want 0.0.0.0:9101 (Prometheus and the health check)", name, l)
		}
		devices := map[string]string{}
		for _, d := range flagValues(s.Command, "device") {
			id, addr, _ := strings.Cut(d, "=")
			devices[id] = addr
		}
		for _, d := range g.Devices {
			_, port, _ := net.SplitHostPort(d.Address)
			if got, want := devices[d.ID], "simulator:"+port; got != want {
				t.Errorf("%s: device %s at %q, want %q (the simulator listens on the configured port)", name, d.ID, got, want)
			}
			delete(devices, d.ID)
		}
		for id := range devices {
			t.Errorf("%s: --device %s: the gateway has no such device", name, id)
		}
		pwFile := flagValue(t, name, s.Command, "password-file")
		mount := "./configs/compose/gateways/" + g.ID + ".password:" + pwFile + ":ro"
		if !slices.Contains(s.Volumes, mount) {
			t.Errorf("%s: does not mount its password file: want volume %q", name, mount)
		}
		if !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+flagValue(t, name, s.Command, "data-dir")) }) {
			t.Errorf("%s: its --data-dir (the store-and-forward queue) is not on a volume", name)
		}
	}

	// The simulator listens where the gateways look for the devices.
	sim := c.Services["simulator"]
	if len(sim.Command) < 2 || sim.Command[0] != "hazardwatch" || sim.Command[1] != "simulate" ||
		flagValue(t, "simulator", sim.Command, "listen-host") != "0.0.0.0" {
		t.Errorf("simulator: command %q, want hazardwatch simulate --listen-host=0.0.0.0", sim.Command)
	}

	// The centre subscribes on Mosquitto's read-only listener and writes
	// to the influxdb service's database as its write user.
	centre, influx := c.Services["centre"], c.Services["influxdb"]
	if len(centre.Command) < 2 || centre.Command[0] != "hazardwatch" || centre.Command[1] != "serve" {
		t.Fatalf("centre: command %q, want hazardwatch serve", centre.Command)
	}
	if b := flagValue(t, "centre", centre.Command, "external-broker"); b != "tcp://mosquitto:1884" {
		t.Errorf("centre: --external-broker %s, want tcp://mosquitto:1884 (the centre's listener)", b)
	}
	if u := flagValue(t, "centre", centre.Command, "influx-url"); u != "http://influxdb:8086" {
		t.Errorf("centre: --influx-url %s", u)
	}
	if b := flagValue(t, "centre", centre.Command, "influx-bucket"); b != influx.Environment["INFLUXDB_DB"]+"/autogen" {
		t.Errorf("centre: --influx-bucket %s, but the influxdb service creates database %q", b, influx.Environment["INFLUXDB_DB"])
	}
	if got, want := centre.Environment["HAZARDWATCH_INFLUX_TOKEN"], influx.Environment["INFLUXDB_WRITE_USER"]+":"+influx.Environment["INFLUXDB_WRITE_USER_PASSWORD"]; got != want || want == ":" {
		t.Errorf("centre: HAZARDWATCH_INFLUX_TOKEN %q, want the influxdb service's write user %q", got, want)
	}
	if influx.Environment["INFLUXDB_HTTP_AUTH_ENABLED"] != "true" {
		t.Error("influxdb: authentication is off: anyone on the network could write history")
	}
	grafana := c.Services["grafana"]
	for _, k := range []string{"INFLUXDB_READ_USER", "INFLUXDB_READ_USER_PASSWORD"} {
		if grafana.Environment[k] == "" || grafana.Environment[k] != influx.Environment[k] {
			t.Errorf("grafana: %s %q, want the influxdb service's %q", k, grafana.Environment[k], influx.Environment[k])
		}
	}

	// Prometheus scrapes the centre and every gateway where they listen.
	scrape := scrapeTargets(t)
	if !slices.Contains(scrape["hazardwatch-centre"], "centre:8080") {
		t.Errorf("prometheus.yml: job hazardwatch-centre scrapes %v, want centre:8080 (serve --http)", scrape["hazardwatch-centre"])
	}
	var gwTargets []string
	for id := range gateways {
		gwTargets = append(gwTargets, id+":9101")
	}
	slices.Sort(gwTargets)
	if got := slices.Sorted(slices.Values(scrape["hazardwatch-gateways"])); !slices.Equal(got, gwTargets) {
		t.Errorf("prometheus.yml: job hazardwatch-gateways scrapes %v, want %v", got, gwTargets)
	}
}

// TestComposeNATS: the nats service's configuration, loaded by
// nats-server's own loader, runs JetStream with every write synced before
// it is acknowledged, its store on the service's volume, and the centre's
// user with the password the centre is given; a server started from it
// (its store and ports moved to a temporary folder and free loopback
// ports) passes the compose health check and lets that user use
// JetStream. The image is the nats-server release the centre is tested
// with (go.mod).
func TestComposeNATS(t *testing.T) {
	c := loadCompose(t)
	svc, centre := c.Services["nats"], c.Services["centre"]
	if len(svc.Command) == 0 || svc.Command[0] != "nats-server" {
		t.Fatalf("nats: command %q, want nats-server --config FILE", svc.Command)
	}
	confPath := mountedFile(t, "nats", svc, flagValue(t, "nats", svc.Command, "config"))
	// The password is an environment variable of the service.
	t.Setenv("NATS_CENTRE_PASSWORD", svc.Environment["NATS_CENTRE_PASSWORD"])
	opts, err := server.ProcessConfigFile(confPath)
	if err != nil {
		t.Fatalf("%s: %v", confPath, err)
	}
	if !opts.JetStream {
		t.Error("nats.conf: JetStream is off")
	}
	if !opts.SyncAlways {
		t.Error("nats.conf: JetStream does not sync every write (want sync_interval: always): a power loss would lose acknowledged readings and alarm events")
	}
	if opts.MaxPayload < ingest.MaxPacket {
		t.Errorf("nats.conf: max_payload %d, below the %d of the centre's group commit", opts.MaxPayload, ingest.MaxPacket)
	}
	if !slices.ContainsFunc(svc.Volumes, func(v string) bool {
		src, target, _ := strings.Cut(v, ":")
		return !strings.HasPrefix(src, ".") && (opts.StoreDir == target || strings.HasPrefix(opts.StoreDir, target+"/"))
	}) {
		t.Errorf("nats: the JetStream store %q is not on a named volume: %v", opts.StoreDir, svc.Volumes)
	}
	if want := fmt.Sprintf("nats:%s-alpine", strings.TrimPrefix(moduleVersion(t, "github.com/nats-io/nats-server/v2"), "v")); svc.Image != want {
		t.Errorf("nats: image %s, want %s: the release the centre is tested with, and Alpine for wget", svc.Image, want)
	}
	if _, ok := centre.DependsOn["nats"]; !ok {
		t.Error("centre: does not wait for the nats service")
	}

	// The centre connects where the server listens, as its user, with the
	// password the server has for it.
	if u := flagValue(t, "centre", centre.Command, "nats-url"); u != fmt.Sprintf("nats://nats:%d", opts.Port) {
		t.Errorf("centre: --nats-url %s, want nats://nats:%d (nats.conf's port)", u, opts.Port)
	}
	user := flagValue(t, "centre", centre.Command, "nats-user")
	password := centre.Environment["HAZARDWATCH_NATS_PASSWORD"]
	if password == "" || !slices.ContainsFunc(opts.Users, func(u *server.User) bool {
		return u.Username == user && u.Password == password && u.Account != nil && u.Account.Name != "$G"
	}) {
		t.Errorf("nats.conf has no user %s in an account of its own with the centre's $HAZARDWATCH_NATS_PASSWORD %q", user, password)
	}
	health := composeHealthcheck(t, "nats")
	hu, err := url.Parse(health[len(health)-1])
	if err != nil || hu.Port() != fmt.Sprint(opts.HTTPPort) || hu.Path != "/healthz" || hu.Query().Get("js-enabled-only") != "true" {
		t.Fatalf("nats: health check %q, want http://127.0.0.1:%d/healthz?js-enabled-only=true (nats.conf's http_port)", health, opts.HTTPPort)
	}

	// The same configuration, run here.
	ns := natstest.FromConfig(t, confPath, t.TempDir(), 0)
	hu.Host = ns.MonitorAddr().String()
	req, err := http.NewRequest(http.MethodGet, hu.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health check %s: %s %s", hu, resp.Status, body)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, password))
	if err != nil {
		t.Fatalf("the centre's credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream for the centre's user: %v", err)
	}
	if _, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, "not-"+password)); err == nil {
		t.Error("a wrong password was let in")
	}
}

// mountedFile returns the repository file that service svc mounts at
// target.
func mountedFile(t *testing.T, name string, svc service, target string) string {
	t.Helper()
	for _, v := range svc.Volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == target && strings.HasPrefix(parts[0], "./") {
			return filepath.Join(root, parts[0])
		}
	}
	t.Fatalf("%s: nothing of the repository is mounted at %s", name, target)
	return ""
}

// moduleVersion is the version of module path that go.mod requires (a
// test binary carries no dependency versions of its own).
func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	f := strings.Fields(moduleLine(t, path))
	if len(f) < 2 {
		t.Fatalf("go.mod: %q has no version", f)
	}
	return f[1]
}

// moduleLine is the line of go.mod that starts with word (a directive, or
// a module path in a require block), without "require ".
func moduleLine(t *testing.T, word string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "require ")
		if f := strings.Fields(line); len(f) >= 2 && f[0] == word {
			return line
		}
	}
	t.Fatalf("go.mod has no %s", word)
	return ""
}

// scrapeTargets loads prometheus.yml with Prometheus's own loader (strict,
// as Prometheus is at start) and returns each job's static targets.
func scrapeTargets(t *testing.T) map[string][]string {
	t.Helper()
	cfg, err := promconfig.LoadFile(filepath.Join(composeDir, "prometheus", "prometheus.yml"), false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, sd := range sc.ServiceDiscoveryConfigs {
			static, ok := sd.(discovery.StaticConfig)
			if !ok {
				t.Errorf("job %s: %T; the compose deployment uses static targets", sc.JobName, sd)
				continue
			}
			for _, g := range static {
				for _, tg := range g.Targets {
					out[sc.JobName] = append(out[sc.JobName], string(tg["__address__"]))
				}
			}
		}
	}
	return out
}

// aclRule is one line of a Mosquitto ACL file under its user ("" before
// the first user line: anonymous clients).
type aclRule struct{ user, access, topic string }

func readACL(t *testing.T, name string) []aclRule {
	t.Helper()
	f, err := os.Open(filepath.Join(composeDir, "mosquitto", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []aclRule
	user := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch {
		case fields[0] == "user" && len(fields) == 2:
			user = fields[1]
		case fields[0] == "topic" && len(fields) == 3:
			out = append(out, aclRule{user, fields[1], fields[2]})
		default:
			t.Errorf("%s:%d: %q: the deployment's ACLs use only user and topic lines", name, n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMosquittoFiles: the ACLs and the password file against the demo
// plant's gateways. A gateway may write its own two topics and nothing
// else, as at the embedded broker; the centre's listener reads and never
// writes; every gateway has a password and a password file, and nobody
// else does.
func TestMosquittoFiles(t *testing.T) {
	p := demoPlant(t)
	want := map[string][]aclRule{}
	for _, g := range p.Gateways {
		ent := p.Enterprises[g.Enterprise].ID
		want[g.ID] = []aclRule{
			{g.ID, "write", "hw/v1/" + ent + "/" + g.ID + "/telemetry"},
			{g.ID, "write", "hw/v1/" + ent + "/" + g.ID + "/status"},
		}
	}
	got := map[string][]aclRule{}
	for _, r := range readACL(t, "acl-gateways") {
		if r.user == "" {
			t.Errorf("acl-gateways: %s %s for anonymous clients: the gateways' listener has none", r.access, r.topic)
			continue
		}
		got[r.user] = append(got[r.user], r)
	}
	for id, rules := range want {
		if !slices.Equal(got[id], rules) {
			t.Errorf("acl-gateways: user %s has %v, want exactly %v", id, got[id], rules)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("acl-gateways: user %s is not a gateway of the plant", id)
		}
	}

	centre := readACL(t, "acl-centre")
	if len(centre) == 0 {
		t.Error("acl-centre: empty: the centre could read nothing")
	}
	for _, r := range centre {
		if r.user != "" || r.access != "read" {
			t.Errorf("acl-centre: %+v: the centre's listener is anonymous and read only", r)
		}
	}
	for _, topic := range []string{"hw/v1/+/+/telemetry", "hw/v1/+/+/status"} {
		if !slices.Contains(centre, aclRule{"", "read", topic}) {
			t.Errorf("acl-centre: no read of %s, which the centre subscribes to", topic)
		}
	}

	b, err := os.ReadFile(filepath.Join(composeDir, "mosquitto", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		user, hash, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(hash, "$7$") {
			t.Errorf("passwd: %q: want user:$7$… (mosquitto_passwd's hash)", line)
		}
		users[user] = true
	}
	for id := range want {
		if !users[id] {
			t.Errorf("passwd: no password for gateway %s", id)
		}
		pw, err := os.ReadFile(filepath.Join(composeDir, "gateways", id+".password"))
		if err != nil || len(bytes.TrimSpace(pw)) < 16 {
			t.Errorf("gateways/%s.password: %v, %d characters; want a password of 16 or more", id, err, len(bytes.TrimSpace(pw)))
		}
	}
	if len(users) != len(want) {
		t.Errorf("passwd has %d users, the plant %d gateways", len(users), len(want))
	}
}

// mosquittoConf returns configs/compose/mosquitto/mosquitto.conf made to
// run here: the two listeners on the given loopback ports, the files read
// from the repository, persistence in dir.
func mosquittoConf(t *testing.T, gwPort, centrePort, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeDir, "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(filepath.Join(composeDir, "mosquitto"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "listener" && f[1] == "1883":
			line = "listener " + gwPort + " 127.0.0.1"
		case len(f) == 2 && f[0] == "listener" && f[1] == "1884":
			line = "listener " + centrePort + " 127.0.0.1"
		case len(f) == 2 && f[0] == "persistence_location":
			line = "persistence_location " + dir + "/"
		case len(f) == 2 && (f[0] == "password_file" || f[0] == "acl_file"):
			if !strings.HasPrefix(f[1], "/mosquitto/config/") {
				t.Fatalf("mosquitto.conf: %s %s: not where docker-compose.yml mounts the files", f[0], f[1])
			}
			line = f[0] + " " + filepath.Join(abs, strings.TrimPrefix(f[1], "/mosquitto/config/"))
		case len(f) == 2 && f[0] == "log_dest":
			line = "log_dest stderr"
		}
		if f := strings.Fields(line); len(f) > 0 {
			seen[f[0]] = true
		}
		out = append(out, line)
	}
	for _, k := range []string{"per_listener_settings", "listener", "password_file", "acl_file", "allow_anonymous"} {
		if !seen[k] {
			t.Fatalf("mosquitto.conf has no %s", k)
		}
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(testnet.FreeAddr(t))
	return port
}

// composeHealthcheck returns a service's health check command.
func composeHealthcheck(t *testing.T, svc string) []string {
	t.Helper()
	s := loadCompose(t).Services[svc]
	if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
		t.Fatalf("%s: no CMD health check", svc)
	}
	// Compose writes a literal $ as $$.
	cmd := slices.Clone(s.Healthcheck.Test[1:])
	for i := range cmd {
		cmd[i] = strings.ReplaceAll(cmd[i], "$$", "$")
	}
	return cmd
}

// brokerURL is the tcp:// address of a listener of the test's Mosquitto.
func brokerURL(port string) string {
	return (&url.URL{Scheme: "tcp", Host: net.JoinHostPort("127.0.0.1", port)}).String()
}
