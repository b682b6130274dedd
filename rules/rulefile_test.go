package rules

import (
	"os"
	"path/filepath"
	"testing"

	"hazardwatch/internal/config"
	"hazardwatch/internal/golden"
)

// The rule-file cases (testdata/rules/<case>/ at the repository's root)
// run the rules as an engineer writes them: rules.yaml, a real rule file
// (kind: rules), is loaded by the strict loader with the plant of
// testdata/rules/base, so limits in %OEL and %LEL, deadbands, delays,
// voting groups and the stop-order rule go through internal/config as in
// the centre; readings.txt and want.txt are as in testdata/cases (the
// sensor names are the plant's ids).
func TestRuleFiles(t *testing.T) {
	const root = "../testdata/rules"
	dirs, err := filepath.Glob(filepath.Join(root, "*", "rules.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no rule-file cases (%v)", err)
	}
	ref, err := config.Reference()
	if err != nil {
		t.Fatal(err)
	}
	plant, err := os.ReadFile(filepath.Join(root, "base", "plant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range dirs {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			rules, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load([]config.File{
				{Name: "base/plant.yaml", Data: plant},
				{Name: filepath.Base(dir) + "/rules.yaml", Data: rules},
			}, ref)
			if err != nil {
				t.Fatal(err)
			}
			steps := loadReadings(t, filepath.Join(dir, "readings.txt"), cfg.Plant.SensorIndex)
			got := play(New(cfg.Plant, cfg.Rules, cfg.Gateways), cfg.Plant, steps)
			golden.Check(t, filepath.Join(dir, "want.txt"), got)
		})
	}
}
