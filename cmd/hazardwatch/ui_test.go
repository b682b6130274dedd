package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/poll"
)

// uiTools finds node, playwright-core (installed by test.sh under the
// cache folder) and Chromium. On CI they must be there; elsewhere the test
// says what is missing and skips.
func uiTools(t *testing.T) (node, modules string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	cache := os.Getenv("HAZARDWATCH_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "hazardwatch")
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			cache = filepath.Join(x, "hazardwatch")
		}
	}
	modules = filepath.Join(cache, "node", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "playwright-core")); err != nil {
		missing = append(missing, "playwright-core in "+modules)
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium)
	}
	if len(missing) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("the browser test needs %s: test.sh installs them", strings.Join(missing, ", "))
		}
		t.Skipf("no %s: run ./test.sh, which installs them", strings.Join(missing, ", "))
	}
	return node, modules
}

// TestBrowserAcknowledge: in a real Chromium the page shows live values and
// an alarm raised from a Modbus register; clicking 确认 / Ack acknowledges
// it, and the API says the same.
func TestBrowserAcknowledge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary and a browser")
	}
	node, modules := uiTools(t)
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	dataDir, httpAddr, mqttAddr, token := newDataDir(t, "operator", "park:p01", "园区控制室")
	startCentre(t, dataDir, httpAddr, mqttAddr)
	s, _, _ := startPlant(t, cfg, mqttAddr, gatewayTokens(t, dataDir))
	const sensor = "e01-V101-LT"
	if err := s.Set(sensor, 2.6); err != nil { // above HH
		t.Fatal(err)
	}
	base := "http://" + httpAddr
	var id string
	poll.Until(t, "the alarm", 30*time.Second, func() bool {
		var page struct {
			Items []struct {
				ID     string            `json:"id"`
				Source map[string]string `json:"source"`
			} `json:"items"`
		}
		apiCall(t, "GET", base+"/api/v1/alarms", token, nil, &page)
		for _, a := range page.Items {
			if a.Source["sensor"] == sensor {
				id = a.ID
				return true
			}
		}
		return false
	})

	shots := filepath.Join(t.TempDir(), "ui")
	if dir := os.Getenv("HAZARDWATCH_ARTIFACTS"); dir != "" {
		shots = filepath.Join(dir, "ui")
	}
	cmd := exec.Command(node, "testdata/ui_ack.mjs", base, token, id, shots)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	// playwright-core is an ES module resolved from the script's folder or
	// NODE_PATH; link it beside the script for ESM resolution.
	link := filepath.Join("testdata", "node_modules")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(modules, link); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(link) })
	}
	outB, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser: %v\n%s", err, outB)
	}
	t.Logf("browser: %s (screenshots %s-*.png)", strings.TrimSpace(string(outB)), shots)
	var a map[string]any
	if code := apiCall(t, http.MethodGet, base+"/api/v1/alarms/"+id, token, nil, &a); code != http.StatusOK {
		t.Fatalf("alarm: %d", code)
	}
	if a["state"] != "ack_active" || a["acked_by"] != "园区控制室" {
		t.Fatalf("after the click the API says %v by %v", a["state"], a["acked_by"])
	}
	fb, _ := a["feedback"].(map[string]any)
	if fb["by"] != "园区控制室" || fb["cause"] != "液位计进料阀开度过大" || fb["action"] != "关小进料阀，液位回落，加强巡检" {
		t.Fatalf("after the feedback the API says %v", a["feedback"])
	}
}
