package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hazardwatch/internal/golden"
	"hazardwatch/internal/model"
)

const goldenDir = "../../testdata/telemetry"

// caseSettings are the decoder settings of golden cases that need other than
// the defaults; the golden output repeats them so that it reads on its own.
var caseSettings = map[string]struct {
	skew time.Duration
	opts Options
}{
	"oversized":     {opts: Options{MaxPayload: 64}},
	"skew_ahead":    {skew: 3 * time.Minute},
	"skew_behind":   {skew: -3 * time.Minute},
	"skew_sub_ms":   {skew: 1500 * time.Microsecond},
	"live_window_1": {opts: Options{LiveWindow: time.Second}},
}

type goldenCase struct {
	name    string
	topic   string
	payload []byte
	skew    time.Duration
	opts    Options
}

// goldenCases reads every NAME.txt: the topic on the first line, the payload
// after it.
func goldenCases(tb testing.TB) []goldenCase {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.txt"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no golden cases in %s (%v)", goldenDir, err)
	}
	var cases []goldenCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		topic, payload, _ := bytes.Cut(b, []byte("\n"))
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		s := caseSettings[name]
		cases = append(cases, goldenCase{name: name, topic: string(topic), payload: payload, skew: s.skew, opts: s.opts})
	}
	return cases
}

func TestGolden(t *testing.T) {
	plant := testPlant()
	seen := map[Reason]bool{}
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			var m Message
			err := NewDecoder(plant, c.opts).Decode(c.topic, c.payload, testNow, c.skew, &m)
			var e *Error
			if errors.As(err, &e) {
				seen[e.Reason] = true
			} else if err != nil {
				t.Fatalf("Decode returned %T, want *Error: %v", err, err)
			}
			for _, r := range m.Rejected {
				seen[r.Reason] = true
			}
			got := formatResult(plant, c, &m, err)
			golden.Check(t, filepath.Join(goldenDir, c.name+".golden"), got)
		})
	}
	// The golden cases are the contract's examples: each rejection a
	// third-party gateway can meet has one (not_authorized is the broker's).
	for _, r := range Reasons() {
		if r != ReasonNotAuthorized && !seen[r] {
			t.Errorf("no golden case yields %s", r)
		}
	}
}

// formatResult renders a decoded message as the golden files hold it.
func formatResult(p *model.Plant, c goldenCase, m *Message, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "topic: %s\n", c.topic)
	fmt.Fprintf(&b, "now: %s skew: %s", testNow.Format(time.RFC3339), c.skew)
	if c.opts != (Options{}) {
		o := c.opts.withDefaults()
		fmt.Fprintf(&b, " max_payload: %d live_window: %s", o.MaxPayload, o.LiveWindow)
	}
	b.WriteString("\n")
	if err != nil {
		var e *Error
		errors.As(err, &e)
		fmt.Fprintf(&b, "error: %s\ndetail: %s\n", e.Reason, e.Detail)
		return b.String()
	}
	fmt.Fprintf(&b, "message: enterprise=%s gateway=%s boot=%q seq=%d replay=%t\n",
		p.Enterprises[m.Enterprise].ID, p.Gateways[m.Gateway].ID, m.Boot, m.Seq, m.Replay)
	fmt.Fprintf(&b, "accepted: %d rejected: %d\n", len(m.Readings), len(m.Rejected))
	for _, r := range m.Readings {
		b.WriteString(formatReading(p, r))
		b.WriteString("\n")
	}
	for _, r := range m.Rejected {
		fmt.Fprintf(&b, "rejected #%d sensor=%q %s: %s\n", r.Index, r.Sensor, r.Reason, r.Detail)
	}
	return b.String()
}

func formatReading(p *model.Plant, r model.Reading) string {
	v := "none"
	if r.HasValue {
		v = strconv.FormatFloat(r.Value, 'g', -1, 64)
	}
	s := fmt.Sprintf("reading %s ts=%d (%s) v=%s q=%s", p.Sensors[r.SensorIdx].ID, r.TS,
		time.UnixMilli(r.TS).UTC().Format("2006-01-02T15:04:05.000Z"), v, r.Quality)
	if r.Reason != model.ReasonNone {
		s += " r=" + r.Reason.String()
	}
	if r.Late {
		s += " late"
	}
	return s
}
