package centre

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"hazardwatch/configs"
	"hazardwatch/internal/audit"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

// A reload of the rules (SIGHUP) reads the rule files again from the
// folder the centre started with, checks them with the strict loader, and
// hands the compiled rules to the pipeline's goroutine, which owns the
// engine and swaps them between two batches (rules.Engine.Reload). Rules
// with errors, or a plant that changed, are refused and the running rules
// stay. Each reload that takes effect is logged as a RulesReloaded event,
// and one that changed the files is kept in the audit log.

// ErrPlantChanged refuses a reload whose plant files changed the plant:
// sensors, gateways and the rest are fixed for the life of the process.
var ErrPlantChanged = errors.New("the plant changed (sensors, gateways, hazard sources …): a restart is needed; the running rules stay")

// ruleSwap asks the pipeline to take new rules; it answers on done, after
// setting transitions (the send orders the write before the reader's
// receive).
type ruleSwap struct {
	rules       []model.SensorRules
	gateways    []model.GatewayRules
	transitions *int
	done        chan error
}

// RulesReloaded records one change of the rules: who asked, what changed,
// and digests of the rule files before and after (sha256 over their names
// and contents, in load order).
type RulesReloaded struct {
	At      time.Time
	Who     string
	Source  string
	Before  string
	After   string
	Sensors int // sensors in the plant
	// Changed lists the sensors whose rules changed; Added and Removed the
	// rules (sensor:rule) that appeared or went.
	Changed, Added, Removed []string
	// Gateways lists the gateways whose rules (silent_periods) changed.
	Gateways []string
	// Transitions the swap itself caused (returns of removed rules).
	Transitions int
}

// maxListed bounds the lists written to the log line; the counts are
// always complete.
const maxListed = 20

// LogValue writes the event as one group of key–values.
func (r RulesReloaded) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("who", r.Who), slog.String("source", r.Source),
		slog.Int("sensors_changed", len(r.Changed)), slog.Any("changed", capList(r.Changed)),
		slog.Int("rules_added", len(r.Added)), slog.Any("added", capList(r.Added)),
		slog.Int("rules_removed", len(r.Removed)), slog.Any("removed", capList(r.Removed)),
		slog.Int("gateways_changed", len(r.Gateways)), slog.Any("gateways", capList(r.Gateways)),
		slog.Int("transitions", r.Transitions),
		slog.String("digest_before", r.Before), slog.String("digest_after", r.After),
	)
}

func capList(s []string) []string {
	if len(s) > maxListed {
		return append(slices.Clip(s[:maxListed]), fmt.Sprintf("… %d more", len(s)-maxListed))
	}
	return s
}

// ReloadRules reads the rule files again from Options.ConfigFS and, when
// they are valid for the same plant, makes the pipeline use them. who says
// who asked (for the log and the audit event). Every error of the files is
// logged with its file:line:col; on any error the running rules stay.
func (c *Centre) ReloadRules(ctx context.Context, who string) (RulesReloaded, error) {
	c.designMu.Lock()
	defer c.designMu.Unlock()
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	ev := RulesReloaded{Who: who, Source: c.o.ConfigName, Before: c.digest}
	if c.o.ConfigFS == nil {
		err := errors.New("centre: no config folder to reload from")
		c.log.Error("rules not reloaded", "who", who, "err", err)
		return ev, err
	}
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		return ev, fmt.Errorf("centre: reference tables: %w", err)
	}
	cfg, err := config.LoadFS(c.o.ConfigFS, ".", c.o.ConfigName, ref)
	if err != nil {
		var diags config.Errors
		if errors.As(err, &diags) {
			for _, d := range diags {
				c.log.Error("rule file error", "err", d.Error())
			}
		}
		c.log.Error("rules not reloaded: the files have errors; the running rules stay", "who", who, "source", c.o.ConfigName, "err", err)
		return ev, err
	}
	if !reflect.DeepEqual(cfg.Plant, c.cfg.Plant) {
		c.log.Error("rules not reloaded", "who", who, "source", c.o.ConfigName, "err", ErrPlantChanged)
		return ev, ErrPlantChanged
	}
	if ev.After, err = ruleDigest(c.o.ConfigFS); err != nil {
		return ev, fmt.Errorf("centre: rule files: %w", err)
	}
	ev.Sensors = len(cfg.Plant.Sensors)
	ev.Changed, ev.Added, ev.Removed = diffRules(cfg.Plant, c.cfg.Rules, cfg.Rules)
	for g := range cfg.Plant.Gateways {
		var o, n model.GatewayRules
		if g < len(c.cfg.Gateways) {
			o = c.cfg.Gateways[g]
		}
		if g < len(cfg.Gateways) {
			n = cfg.Gateways[g]
		}
		if o != n {
			ev.Gateways = append(ev.Gateways, cfg.Plant.Gateways[g].ID)
		}
	}
	n, err := c.swap(ctx, c.runningRules(cfg.Rules, c.o.Clock()), cfg.Gateways)
	if err != nil {
		c.log.Error("rules not reloaded", "who", who, "err", err)
		return ev, err
	}
	ev.Transitions = n
	if err := c.api.SetRules(cfg.Rules); err != nil {
		return ev, fmt.Errorf("centre: %w", err) // the same plant: cannot happen
	}
	c.cfg = &config.Config{Plant: c.cfg.Plant, Rules: cfg.Rules, Gateways: cfg.Gateways, Grades: c.cfg.Grades, Files: cfg.Files}
	c.digest = ev.After
	ev.At = c.o.Clock()
	c.log.Info("rules reloaded", "event", ev)
	if ev.Before != ev.After {
		c.auditReload(ctx, ev)
	}
	return ev, nil
}

// auditReload records a reload that changed the rule files. Its failure
// is logged (and counted by the audit log): the rules are in force.
func (c *Centre) auditReload(ctx context.Context, ev RulesReloaded) {
	type digest struct {
		Digest string `json:"digest"`
	}
	type change struct {
		Digest   string   `json:"digest"`
		Changed  []string `json:"sensors_changed,omitempty"`
		Added    []string `json:"rules_added,omitempty"`
		Removed  []string `json:"rules_removed,omitempty"`
		Gateways []string `json:"gateways_changed,omitempty"`
	}
	before, _ := json.Marshal(digest{ev.Before})
	after, _ := json.Marshal(change{ev.After, ev.Changed, ev.Added, ev.Removed, ev.Gateways})
	_, err := c.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: ev.Who, From: "signal", Action: "rules.reload",
		Object: "rules:" + ev.Source, Before: before, After: after})
	if err != nil {
		c.log.Error("rule reload not audited", "who", ev.Who, "err", err)
	}
}

// swapRules runs on the pipeline's goroutine: the engine and the alarm
// manager take the new rules, and the returns of removed rules go to the
// alarms.
func (p *pipeline) swapRules(ctx context.Context, sw ruleSwap) {
	var err error
	p.trans, err = p.engine.Reload(p.plant, sw.rules, sw.gateways, p.clock(), p.trans[:0])
	if err == nil {
		// Before any transition of the new rules reaches the alarms, so
		// that an occurrence they start latches and names its limit by
		// them.
		p.alarms.SetRules(sw.rules)
		if n := len(p.trans); n > 0 {
			p.log.Info("rules removed while raised: their conditions end", "transitions", n)
		}
		*sw.transitions = len(p.trans)
		err = p.submit(ctx)
	}
	sw.done <- err
}

// ruleDigest is sha256 over the names and contents of the rule files
// (kind: rules) below fsys, in name order.
func ruleDigest(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := p[max(len(p)-5, 0):]; ext != ".yaml" && p[max(len(p)-4, 0):] != ".yml" {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		if yaml.Unmarshal(data, &head) != nil || head.Kind != "rules" {
			return nil
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diffRules names the sensors whose rules differ, and the rules
// (sensor:rule) that only the new or only the old rules have.
func diffRules(p *model.Plant, old, new []model.SensorRules) (changed, added, removed []string) {
	for i := range p.Sensors {
		var o, n model.SensorRules
		if i < len(old) {
			o = old[i]
		}
		if i < len(new) {
			n = new[i]
		}
		if reflect.DeepEqual(o, n) {
			continue
		}
		id := p.Sensors[i].ID
		changed = append(changed, id)
		ho, hn := ruleNames(&o), ruleNames(&n)
		for _, r := range hn {
			if !slices.Contains(ho, r) {
				added = append(added, id+":"+r)
			}
		}
		for _, r := range ho {
			if !slices.Contains(hn, r) {
				removed = append(removed, id+":"+r)
			}
		}
	}
	return changed, added, removed
}

// ruleNames lists the rules a sensor has, limits by their kind.
func ruleNames(rs *model.SensorRules) []string {
	var out []string
	for k := range model.NumLimits {
		if rs.Limits[k].Set {
			out = append(out, k.String())
		}
	}
	for _, r := range []struct {
		on   bool
		name string
	}{
		{rs.Rate.Rise > 0, "rate_rise"}, {rs.Rate.Fall > 0, "rate_fall"},
		{rs.Prediction.On(), "prediction"}, {rs.Frozen.On(), "frozen"},
		{rs.OutOfRange, "out_of_range"}, {rs.BadQuality > 0, "bad_quality"},
		{rs.SilentPeriods > 0, "silent"}, {rs.Vote.On(), "voting"},
	} {
		if r.on {
			out = append(out, r.name)
		}
	}
	return out
}
