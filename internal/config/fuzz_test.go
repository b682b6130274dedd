package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hazardwatch/internal/config"
)

// FuzzLoad feeds arbitrary bytes to the loader as a plant file beside the
// base rules: it must never panic, and every error it gives must have a place.
func FuzzLoad(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(testdata, "*", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(testdata, "broken", "*", "*.yaml"))
	for _, p := range append(paths, more...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	rules, err := os.ReadFile(filepath.Join(testdata, "base", "rules.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	ref := reference(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Load([]config.File{{Name: "fuzz.yaml", Data: data}, {Name: "rules.yaml", Data: rules}}, ref)
		var errs config.Errors
		switch {
		case err == nil:
			if cfg.Plant == nil || len(cfg.Rules) != len(cfg.Plant.Sensors) {
				t.Fatalf("loaded without a plant or with %d rules", len(cfg.Rules))
			}
		case errors.As(err, &errs):
			for _, e := range errs {
				if e.File == "" || e.File == "?" || e.Line < 1 || e.Col < 1 {
					t.Fatalf("error without a place: %q", e.Error())
				}
			}
		default:
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
