package centre

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hazardwatch/alerting"
	"hazardwatch/configs"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/auth"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
	"hazardwatch/internal/poll"
	"hazardwatch/internal/testlog"
)

func mustRef(t *testing.T) *chem.Reference {
	t.Helper()
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestReloadRules: a changed limit reaches the running centre and is
// reported; a rule file with an error and a changed plant are refused with
// the running rules kept.
func TestReloadRules(t *testing.T) {
	dir := t.TempDir()
	err := fs.WalkDir(configs.Demo(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(configs.Demo(), p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFS(os.DirFS(dir), ".", dir, mustRef(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	dataDir := t.TempDir()
	c, err := Start(context.Background(), Options{
		Config: cfg, ConfigFS: os.DirFS(dir), ConfigName: dir, DataDir: dataDir,
		MQTTListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatalf("centre: %v\n%s", err, logs)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()

	rulesFile := filepath.Join(dir, "rules", "process.yaml")
	orig, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(file, old, new string) {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(data), old) {
			t.Fatalf("%s: %q not found (%v)", file, old, err)
		}
		if err := os.WriteFile(file, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ev, err := c.ReloadRules(ctx, "SIGHUP from tester")
	if err != nil || len(ev.Changed) != 0 || ev.Before != ev.After || ev.Before == "" {
		t.Fatalf("unchanged files: %+v, %v; want no change and equal digests", ev, err)
	}

	// An H alarm of the process sensor e01-V103-LT does not latch: raised,
	// returned and acknowledged, it is over.
	const v103 = "e01-V103-LT"
	si, _ := cfg.Plant.SensorIndex(v103)
	admin, _, err := c.Tokens().Create("admin", auth.Admin, auth.Scope{Kind: "all"}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := apiLimits(t, c.HTTPAddr(), admin, v103); got["H"] != 0.50 {
		t.Fatalf("GET /api/v1/sensors before the reload: %s limits %v, want H 0.5", v103, got)
	}
	occurrence := func(n int) alerting.Alarm {
		t.Helper()
		raise := model.Transition{Sensor: si, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1, Active: true,
			Value: 0.7, Limit: c.cfg.Rules[si].Limits[model.H].Value, TS: time.Now().UnixMilli()}
		if err := c.alarms.Submit(ctx, raise); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%s.threshold_high.%d", v103, n)
		var a alerting.Alarm
		poll.Until(t, id, waitLong, func() bool { a, _ = c.alarms.Get(id); return a.Active })
		return a
	}
	if a := occurrence(1); a.Latch {
		t.Fatalf("%s before the reload: latched, want not (a process value)", a.ID)
	}
	back := model.Transition{Sensor: si, Rule: model.ThresholdHigh, Class: model.ClassAlarm, Level: model.L1, Value: 0.1, Limit: 0.5, TS: time.Now().UnixMilli()}
	if err := c.alarms.Submit(ctx, back); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the return", waitLong, func() bool { a, _ := c.alarms.Get(v103 + ".threshold_high.1"); return !a.Active })
	if err := c.alarms.Ack(ctx, v103+".threshold_high.1", "tester", ""); err != nil {
		t.Fatal(err)
	}

	// The reload moves H and makes the sensor's alarms latch: the API shows
	// the new limit, and the next occurrence latches.
	edit(rulesFile, "limits: {HH: 1.50, H: 0.50}", "limits: {HH: 1.50, H: 0.60}\n    latch: true")
	ev, err = c.ReloadRules(ctx, "SIGHUP from tester")
	if err != nil {
		t.Fatalf("changed limit: %v\n%s", err, logs)
	}
	if !slices.Equal(ev.Changed, []string{v103}) || len(ev.Added)+len(ev.Removed) != 0 || ev.Before == ev.After {
		t.Errorf("changed H of %s: %+v", v103, ev)
	}
	if got := c.cfg.Rules[si].Limits[model.H].Value; got != 0.60 {
		t.Errorf("running H after the reload = %v, want 0.60", got)
	}
	if got := apiLimits(t, c.HTTPAddr(), admin, v103); got["H"] != 0.60 || got["HH"] != 1.50 {
		t.Errorf("GET /api/v1/sensors after the reload: %s limits %v, want H 0.6, HH 1.5", v103, got)
	}
	if a := occurrence(2); !a.Latch || a.LimitKind != "H" || a.Limit != 0.60 {
		t.Errorf("%s after the reload: latch %v, limit %s %v; want latched, H 0.6", a.ID, a.Latch, a.LimitKind, a.Limit)
	}
	if !strings.Contains(logs.String(), "rules reloaded") || !strings.Contains(logs.String(), "who=\"SIGHUP from tester\"") {
		t.Errorf("no reload line with who in the log:\n%s", logs)
	}
	// The change, and only it (the first reload changed nothing), is in
	// the audit log.
	var reloads []audit.Record
	for r, err := range audit.Records(filepath.Join(dataDir, "audit"), time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Action == "rules.reload" {
			reloads = append(reloads, r)
		}
	}
	if len(reloads) != 1 || reloads[0].Actor != "SIGHUP from tester" || !strings.Contains(string(reloads[0].After), `"sensors_changed":["`+v103+`"]`) ||
		!strings.Contains(string(reloads[0].Before), ev.Before) {
		t.Errorf("audit records of the reloads: %+v", reloads)
	}

	before := c.digest
	edit(rulesFile, "deadband: 0.02", "deadbnd: 0.02")
	_, err = c.ReloadRules(ctx, "SIGHUP from tester")
	var diags config.Errors
	if !errors.As(err, &diags) || c.digest != before {
		t.Fatalf("misspelt field: %v; want config errors and the running rules kept", err)
	}
	if want := filepath.Join(dir, "rules", "process.yaml") + ":"; !strings.Contains(logs.String(), want) {
		t.Errorf("the log does not name %sline:col:\n%s", want, logs)
	}

	if err := os.WriteFile(rulesFile, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	edit(filepath.Join(dir, "e01-chlor-alkali.yaml"), "poll_period: 1s", "poll_period: 2s")
	if _, err = c.ReloadRules(ctx, "SIGHUP from tester"); !errors.Is(err, ErrPlantChanged) || c.digest != before {
		t.Errorf("changed plant: %v; want ErrPlantChanged and the running rules kept", err)
	}
}

// apiLimits asks the centre's API for the limits of sensor id.
func apiLimits(t *testing.T, addr, token, id string) map[string]float64 {
	t.Helper()
	var body struct {
		Items []struct {
			ID     string
			Limits map[string]float64
		}
	}
	apiGet(t, addr, token, "/api/v1/sensors?limit=1000", &body)
	for _, s := range body.Items {
		if s.ID == id {
			return s.Limits
		}
	}
	t.Fatalf("GET /api/v1/sensors: no %s", id)
	return nil
}
