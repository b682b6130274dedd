package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"sync"
	"syscall"

	"hazardwatch/configs"
	"hazardwatch/internal/centre"
)

// configSource is the folder the config is read from, for the centre's
// reloads: dir, or the demo plant embedded in the binary when dir is "".
func configSource(dir string) (fs.FS, string) {
	if dir == "" {
		return configs.Demo(), "configs/demo"
	}
	return os.DirFS(dir), dir
}

// reloadOnHangup reloads the centre's rules on every SIGHUP until ctx ends
// or stop is called; stop returns once the watcher has gone.
func reloadOnHangup(ctx context.Context, c *centre.Centre, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// Errors are logged by the centre; the old rules stay.
				_, _ = c.ReloadRules(ctx, "SIGHUP from "+signalUser())
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// signalUser names who a signal most likely came from: the user the
// process runs as (only it and root may signal it), or "signal".
func signalUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "signal"
}
