package caddymod

import (
	"context"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
)

// The app polls its files itself rather than through Engine.Watch, because
// its configuration is the fusion set file plus the inline sets of the
// Caddyfile: a change to any file they reference must rebuild both, and
// Engine.Watch only knows how to reload a file.

// fileStamp is what a poll compares: a file's size and modification time, or
// that it is missing.
type fileStamp struct {
	missing bool
	size    int64
	mod     time.Time
}

func stampFiles(paths []string) map[string]fileStamp {
	out := make(map[string]fileStamp, len(paths))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			out[p] = fileStamp{missing: true}
			continue
		}
		out[p] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out
}

func sameStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for p, s := range a {
		if t, ok := b[p]; !ok || t != s {
			return false
		}
	}
	return true
}

// watch polls the files of the current configuration every WatchInterval
// until ctx ends. On a change it rebuilds the configuration: a good one
// replaces the engine's (and revoked certificates stop passing), a bad one is
// logged and the last good one keeps serving.
func (a *App) watch(ctx context.Context) {
	interval := time.Duration(a.WatchInterval)
	cfg, stamps := a.cfg, a.stamps
	t := time.NewTicker(interval)
	defer t.Stop()
	// Warns once per state change as a CRL nears or passes its NextUpdate.
	crls := fusion.NewCRLMonitor(a.logger)
	crls.Check(cfg, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		crls.Check(cfg, time.Now())
		now := stampFiles(cfg.WatchedFiles())
		if sameStamps(stamps, now) {
			continue
		}
		// Record what was seen before reading, so that a write racing the
		// reload is picked up by the next poll.
		stamps = now
		next, err := a.buildConfig()
		if err != nil {
			a.state.reloadFailures.Add(1)
			configLoadFailed(triggerWatch)
			a.logger.Error("fusion set files changed but are invalid; keeping the last good configuration",
				zap.Error(err))
			continue
		}
		// A newer config may have started while this one was shutting
		// down: only the app that owns the engine may swap its config.
		if a.state.owner.Load() != a {
			return
		}
		a.state.engine.Update(next)
		a.state.reloads.Add(1)
		configLoaded(triggerWatch)
		cfg = next
		// Files the new configuration added get their first stamp now;
		// the others keep the stamp taken before the rebuild read them.
		fresh := stampFiles(cfg.WatchedFiles())
		for p := range fresh {
			if s, ok := stamps[p]; ok {
				fresh[p] = s
			}
		}
		stamps = fresh
		a.logger.Info("fusion sets reloaded", zap.Strings("fusion_sets", next.IDs))
	}
}
