package caddymod

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/filewatch"
)

// The app watches its files itself rather than through Engine.Watch, because
// its configuration is the fusion set file plus the inline sets of the
// Caddyfile: a change to any file they reference must rebuild both, and
// Engine.Watch only knows how to reload a file. Change detection and the
// debounce are internal/filewatch's, as for mcc authz and mcc xds.

// fileStamp is a file's content as the watcher compares it.
type fileStamp = filewatch.Sum

// stampFiles records the content of paths, to compare against later.
func stampFiles(paths []string) map[string]fileStamp { return filewatch.SumFiles(paths) }

// watch reloads the configuration when one of its files changes, until ctx
// ends; WatchInterval is the watcher's safety poll and how often CRL
// freshness is checked. A good configuration replaces the engine's (and
// revoked certificates stop passing), a bad one is logged and the last good
// one keeps serving.
func (a *App) watch(ctx context.Context) {
	interval := time.Duration(a.WatchInterval)
	cfg, stamps := a.cfg, a.stamps
	// Revocation URLs are fetched beside the file watch (for whichever
	// configuration the engine serves), until the watch ends.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		a.state.engine.FollowRevocationURLs(followCtx)
	}()
	defer func() {
		stopFollowing()
		<-followed
	}()
	w, err := filewatch.New(cfg.WatchedFiles(), filewatch.Options{Poll: interval, Logger: a.logger})
	if err != nil {
		a.logger.Error("cannot watch the fusion set files; changes need a Caddy reload", zap.Error(err))
		return
	}
	defer w.Close()
	// Warns once per state change as a CRL nears or passes its NextUpdate.
	crls := fusion.NewCRLMonitor(a.logger)
	crls.Check(cfg, time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	// The stamps were taken when Provision read the files: a change made
	// since then (before the watcher started) is a change.
	changed := filewatch.ChangedSince(stamps)
	// A refused configuration is tried again at every tick: it may name a
	// file that does not exist yet, which no watch covers (rebuild reports
	// the same error once).
	failing := false
	for {
		if changed {
			changed = false
			// Stamp before reading, so that a write racing the rebuild
			// is seen as a change afterwards.
			stamps = stampFiles(cfg.WatchedFiles())
			next, ok := a.rebuild()
			if !ok {
				if a.state.owner.Load() != a {
					return
				}
				failing = true
			} else {
				failing = false
				cfg = next
				if err := w.SetPaths(cfg.WatchedFiles()); err != nil {
					a.logger.Error("watching the reloaded configuration's files", zap.Error(err))
				}
				changed = filewatch.ChangedSince(stamps)
				// A file the new configuration added was read before it
				// had a stamp: a write between that read and SetPaths
				// would go unseen, so read once more with stamps on all.
				for _, p := range cfg.WatchedFiles() {
					if _, known := stamps[p]; !known {
						changed = true
						break
					}
				}
				crls.Check(cfg, time.Now())
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.Changes():
			if !ok {
				return
			}
			changed = true
		case <-t.C:
			crls.Check(cfg, time.Now())
			changed = changed || failing
		}
	}
}

// rebuild builds the configuration from the files and serves it; ok is
// false when it is invalid (logged; the last good one keeps serving) or
// when this app no longer owns the engine.
func (a *App) rebuild() (next *fusion.Config, ok bool) {
	next, err := a.buildConfig()
	if err != nil {
		// Retried at every tick while it fails: counted and logged
		// once per distinct error.
		if msg := err.Error(); msg != a.lastReloadErr {
			a.lastReloadErr = msg
			a.state.reloadFailures.Add(1)
			configLoadFailed(triggerWatch)
			a.logger.Error("fusion set files changed but are invalid; keeping the last good configuration",
				zap.Error(err))
		}
		return nil, false
	}
	a.lastReloadErr = ""
	// A newer config may have started while this one was shutting down:
	// only the app that owns the engine may swap its config.
	if a.state.owner.Load() != a {
		return nil, false
	}
	a.state.engine.Update(next)
	a.state.reloads.Add(1)
	configLoaded(triggerWatch)
	a.logger.Info("fusion sets reloaded", zap.Strings("fusion_sets", next.IDs))
	return next, true
}
