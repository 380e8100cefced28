package fusion

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/filewatch"
)

// ReloadRevocations re-reads every set's revocation lists and CRLs and swaps
// in the new data. When it returns, the new data is in force: cached
// verdicts of the previous generation no longer apply. A set whose files
// cannot be read keeps its previous data, and the error says which.
func (e *Engine) ReloadRevocations() error {
	var errs []error
	files := newLoadFiles() // sets naming the same file read it once
	for _, ss := range e.state.Load().sets {
		if err := ss.set.reloadRevocations(files); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reloadRevocations builds the next revocation generation of s.
func (s *Set) reloadRevocations(files *loadFiles) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.rev.Load()
	var gen uint64 = 1
	if old != nil {
		gen = old.gen + 1
	}
	rs, errs := s.revSrc.loadWith(gen, files)
	if len(errs) > 0 {
		var joined []error
		for _, fe := range errs {
			joined = append(joined, fmt.Errorf("fusion set %q: %s: %s", s.ID, fe.field, fe.msg))
		}
		return errors.Join(joined...)
	}
	s.rev.Store(rs)
	return nil
}

// Watch reloads the served config when one of its files changes: the fusion
// set file, CA bundles, revocation lists and CRLs. Changes are noticed by
// internal/filewatch (file notification, content hashes, one debounce
// rule); interval is its safety poll, and how often CRL freshness is
// checked. A file-backed config is reloaded in full: a good file is served
// with Update and passed to onReload; a bad one goes to onError and the last
// good config keeps serving. An inline config (no Path) has its revocation
// data reloaded. Watch also follows the sets' revocation URLs
// (FollowRevocationURLs). Watch returns when ctx is done.
func (e *Engine) Watch(ctx context.Context, interval time.Duration, onReload func(*Config), onError func(error)) {
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		e.FollowRevocationURLs(followCtx)
	}()
	defer func() {
		stopFollowing()
		<-followed
	}()
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if onReload == nil {
		onReload = func(*Config) {}
	}
	if onError == nil {
		onError = func(err error) { e.log.Error("fusion set reload failed", zap.Error(err)) }
	}
	cfg := e.Config()
	w, err := filewatch.New(cfg.WatchedFiles(), filewatch.Options{Poll: interval, Logger: e.log})
	if err != nil {
		onError(fmt.Errorf("watching the fusion set files: %w", err))
		return
	}
	defer w.Close()
	// CRL freshness is logged as it changes: stale soon, expired, fresh.
	crls := NewCRLMonitor(e.log)
	crls.Check(cfg, e.clock())
	t := time.NewTicker(interval)
	defer t.Stop()
	// A file changed between the load and the watcher's start is a change.
	changed := cfg.changedSinceLoad()
	// A refused file is tried again at every tick: it may name a file that
	// does not exist yet (a new revocation list written after the fusion
	// file), which no watch covers. The same error is reported once.
	failing, lastErr := false, ""
	for {
		if changed {
			changed = false
			next, err := e.reload(cfg)
			if err != nil {
				failing = true
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					onError(err)
				}
			} else {
				failing, lastErr = false, ""
				cfg = next
				if err := w.SetPaths(cfg.WatchedFiles()); err != nil {
					onError(err)
				}
				// SetPaths took the files as they are now as the
				// baseline: a write since the load is a change.
				changed = cfg.changedSinceLoad()
				crls.Check(cfg, e.clock())
				onReload(cfg)
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
			crls.Check(cfg, e.clock())
			changed = changed || failing
			if cur := e.Config(); cur != cfg {
				// Someone else called Update: watch the new files from here.
				cfg = cur
				if err := w.SetPaths(cfg.WatchedFiles()); err != nil {
					onError(err)
				}
				changed = cfg.changedSinceLoad()
			}
		}
	}
}

// reload loads cfg's file again and serves it, or, for an inline config,
// reloads its revocation data.
func (e *Engine) reload(cfg *Config) (*Config, error) {
	if cfg.Path == "" {
		// Stamped before the read, so a write racing it is a change.
		sums := filewatch.SumFiles(cfg.WatchedFiles())
		if err := e.ReloadRevocations(); err != nil {
			return nil, err
		}
		cfg.loaded = sums
		return cfg, nil
	}
	next, err := LoadFile(cfg.Path)
	if err != nil {
		return nil, err
	}
	e.Update(next)
	return next, nil
}

// changedSinceLoad reports whether a file of cfg differs from what was
// loaded (always false when that is unknown).
func (c *Config) changedSinceLoad() bool { return filewatch.ChangedSince(c.loaded) }
