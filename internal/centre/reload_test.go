package centre

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
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
	c, err := Start(context.Background(), Options{
		Config: cfg, ConfigFS: os.DirFS(dir), ConfigName: dir, DataDir: t.TempDir(),
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

	edit(rulesFile, "limits: {HH: 1.50, H: 0.50}", "limits: {HH: 1.50, H: 0.60}")
	ev, err = c.ReloadRules(ctx, "SIGHUP from tester")
	if err != nil {
		t.Fatalf("changed limit: %v\n%s", err, logs)
	}
	if !slices.Equal(ev.Changed, []string{"e01-V103-LT"}) || len(ev.Added)+len(ev.Removed) != 0 || ev.Before == ev.After {
		t.Errorf("changed H of e01-V103-LT: %+v", ev)
	}
	if i, _ := cfg.Plant.SensorIndex("e01-V103-LT"); c.cfg.Rules[i].Limits[model.H].Value != 0.60 {
		got := c.cfg.Rules[i].Limits[model.H].Value
		t.Errorf("running H after the reload = %v, want 0.60", got)
	}
	if !strings.Contains(logs.String(), "rules reloaded") || !strings.Contains(logs.String(), "who=\"SIGHUP from tester\"") {
		t.Errorf("no reload line with who in the log:\n%s", logs)
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
