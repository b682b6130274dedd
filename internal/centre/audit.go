package centre

import (
	"context"
	"fmt"

	"hazardwatch/internal/audit"
)

// The audit log (internal/audit) records every change people make: the
// API's actions (through apiAuditor), rule reloads (ReloadRules) and the
// tokens the token command or the demo issue. The centre opens it for the
// life of the process; the token command appends to the same folder under
// the same file lock.

func (c *Centre) openAudit() error {
	o := c.o.Audit
	if o.Dir == "" {
		def, err := audit.ForDataDir(c.o.DataDir, o.HeadFile)
		if err != nil {
			return fmt.Errorf("centre: %w", err)
		}
		o.Dir, o.HeadFile = def.Dir, def.HeadFile
	}
	o.Logger, o.Clock = c.log.With("stage", "audit"), c.o.Clock
	l, err := audit.Open(o)
	if err != nil {
		return fmt.Errorf("centre: %w", err)
	}
	c.audit = l
	c.closers = append(c.closers, l.Close)
	return c.reg.Register(l.Collector())
}

// Audit is the centre's audit log, for what is changed beside the API
// (the demo's tokens).
func (c *Centre) Audit() *audit.Log { return c.audit }

// apiAuditor hands the API's entries to the audit log.
type apiAuditor struct{ l *audit.Log }

func (a apiAuditor) Audit(ctx context.Context, e audit.Entry) error {
	_, err := a.l.Append(ctx, e)
	return err
}
