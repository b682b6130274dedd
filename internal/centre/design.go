package centre

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"hazardwatch/internal/atomicfile"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

// An admin's Design (model.Design: enterprise statuses such as a stop
// order or a suspension until a time, instruments out of service) is kept
// in one JSON file under the data directory, rewritten atomically and
// fsynced before anything acts on it. Then the alarm Manager suppresses or
// takes alarms out of service by it, and the pipeline's engine gets the
// stop-order power rules its statuses turn on or off. A crash between the
// file and the rest redoes the rest at the next start, which reads the file
// first.

// DesignFile is where the centre keeps the admin's Design.
func DesignFile(dataDir string) string { return filepath.Join(dataDir, "design.json") }

// loadDesign reads the Design file; a missing file is an empty Design.
func loadDesign(path string, p *model.Plant) (model.Design, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return model.Design{}, nil
	}
	if err != nil {
		return model.Design{}, fmt.Errorf("centre: %w", err)
	}
	var d model.Design
	if err := json.Unmarshal(data, &d); err != nil {
		return model.Design{}, fmt.Errorf("centre: %s: %w", path, err)
	}
	if err := d.Check(p); err != nil {
		return model.Design{}, fmt.Errorf("centre: %s: %w", path, err)
	}
	return d, nil
}

// saveDesign writes the Design file atomically: a crash leaves the old or
// the new one.
func saveDesign(path string, d model.Design) error {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("centre: design: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("centre: save %s: %w", path, err)
	}
	return nil
}

// Design returns the admin's Design as it is now.
func (c *Centre) Design() model.Design {
	c.designMu.Lock()
	defer c.designMu.Unlock()
	return c.design.Clone()
}

// UpdateDesign changes the admin's Design by change, as user: it keeps the
// new Design durable, then has the alarms and the rules follow it, and
// returns the Design before and after. change gets a copy; an error from
// it changes nothing.
func (c *Centre) UpdateDesign(ctx context.Context, user string, change func(*model.Design) error) (before, after model.Design, err error) {
	c.designMu.Lock()
	defer c.designMu.Unlock()
	before, after = c.design.Clone(), c.design.Clone()
	after.Prune(c.o.Clock())
	if err := change(&after); err != nil {
		return before, before, err
	}
	if err := after.Check(c.o.Config.Plant); err != nil {
		return before, before, err
	}
	if err := saveDesign(DesignFile(c.o.DataDir), after); err != nil {
		return before, before, err
	}
	c.design = after
	if err := c.alarms.SetDesign(ctx, after, user); err != nil {
		return before, after, fmt.Errorf("centre: the alarms did not take the change (it is kept and applied at the next start): %w", err)
	}
	select {
	case c.designWake <- struct{}{}:
	default:
	}
	if err := c.applyStatusRules(ctx); err != nil {
		return before, after, err
	}
	c.log.Info("plant design changed", "by", user, "statuses", len(after.Status), "out_of_service", len(after.OutOfService))
	return before, after, nil
}

// statusAt is each enterprise's status at now, by the Design.
func (c *Centre) statusAt(d model.Design, now time.Time) func(int32) model.EnterpriseStatus {
	p := c.o.Config.Plant
	return func(e int32) model.EnterpriseStatus {
		st, _ := d.StatusOf(p, e, now)
		return st.Status
	}
}

// runningRules are the rule files' rules with the stop-order power rules
// that the Design's statuses at now turn on.
func (c *Centre) runningRules(rs []model.SensorRules, now time.Time) []model.SensorRules {
	return config.WithStatus(c.o.Config.Plant, rs, c.statusAt(c.design, now))
}

// applyStatusRules hands the pipeline the running rules when the stop
// orders in force changed since it last took rules. The caller holds
// designMu.
func (c *Centre) applyStatusRules(ctx context.Context) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	rs := c.runningRules(c.cfg.Rules, c.o.Clock())
	if slices.EqualFunc(rs, c.running, func(a, b model.SensorRules) bool { return a.StopOrder == b.StopOrder }) {
		return nil
	}
	n, err := c.swap(ctx, rs, c.cfg.Gateways)
	if err != nil {
		return fmt.Errorf("centre: stop-order rules not applied: %w", err)
	}
	c.log.Info("stop-order power monitoring follows the enterprises' statuses", "transitions", n)
	return nil
}

// swap hands the pipeline rs and gateways and waits until it runs them;
// it returns how many transitions the swap itself made. The caller holds
// reloadMu.
func (c *Centre) swap(ctx context.Context, rs []model.SensorRules, gateways []model.GatewayRules) (int, error) {
	sw := ruleSwap{rules: rs, gateways: gateways, transitions: new(int), done: make(chan error, 1)}
	select {
	case c.reloads <- sw:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case err := <-sw.done:
		if err != nil {
			return 0, err
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	c.running = rs
	return *sw.transitions, nil
}

// runDesignTimer applies the stop-order rules again at the end of every
// status period of the Design, until ctx ends. (The alarms keep their own
// timers for suppressions and instruments out of service.)
func (c *Centre) runDesignTimer(ctx context.Context) error {
	// Go 1.23 timers: Reset and Stop leave no stale tick to drain.
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.designMu.Lock()
		now := c.o.Clock()
		ends := c.design.Ends(now)
		c.designMu.Unlock()
		var due <-chan time.Time
		if len(ends) > 0 {
			t.Reset(slices.MinFunc(ends, time.Time.Compare).Sub(now) + 10*time.Millisecond)
			due = t.C
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.designWake:
		case <-due:
			c.designMu.Lock()
			err := c.applyStatusRules(ctx)
			c.designMu.Unlock()
			if err != nil && ctx.Err() == nil {
				c.log.Error("stop-order rules not applied at the end of a status period", "err", err)
			}
		}
	}
}
