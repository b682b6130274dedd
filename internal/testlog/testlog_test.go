package testlog

import (
	"log/slog"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	log := b.Logger(slog.LevelInfo)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			log.Info("alarm raised", "n", 1)
			log.Debug("not kept")
		})
	}
	wg.Wait()
	if n := b.Count("alarm raised"); n != 8 || b.Count("not kept") != 0 {
		t.Errorf("%d lines, %d debug:\n%s", n, b.Count("not kept"), b.String())
	}
}
