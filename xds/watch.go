package xds

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/filewatch"
)

// Watch reloads the configuration whenever one of its files changes, until
// ctx is done. Changes are noticed through file notifications (a rename
// into place, a Kubernetes ConfigMap swap, an edit that keeps size and
// time) and by content, so a reload follows an edit within milliseconds;
// a poll every WatchInterval catches what notifications miss. While the
// configuration is refused, it is also retried every WatchInterval: a
// file it names may appear without any watched file changing.
func (s *Server) Watch(ctx context.Context) error {
	s.mu.Lock()
	files := s.watched
	s.mu.Unlock()
	w, err := filewatch.New(files, filewatch.Options{Poll: s.opts.WatchInterval, Logger: s.log.Named("watch")})
	if err != nil {
		return err
	}
	defer w.Close()
	// The watch starts after the first load: a change made in between is
	// caught by loading once more now (unchanged files publish nothing).
	s.reloadAndFollow(ctx, w, false)
	retry := time.NewTicker(s.opts.WatchInterval)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case changed, ok := <-w.Changes():
			if !ok {
				return nil
			}
			s.log.Debug("files changed", zap.Strings("files", changed))
			s.reloadAndFollow(ctx, w, true)
		case <-retry.C:
			s.mu.Lock()
			broken := s.lastErr != ""
			s.mu.Unlock()
			if broken {
				s.reloadAndFollow(ctx, w, false)
			}
		}
	}
}

// reloadAndFollow reloads and points the watcher at the files the new
// configuration is built from. A file watched for the first time gets its
// current content as baseline, which may be newer than what the load read:
// then it loads once more, so that no change is lost in between.
func (s *Server) reloadAndFollow(ctx context.Context, w *filewatch.Watcher, changed bool) {
	for range 2 {
		s.mu.Lock()
		before := s.watched
		s.mu.Unlock()
		if s.reload(ctx, changed) != nil {
			return
		}
		s.mu.Lock()
		after := s.watched
		s.mu.Unlock()
		if err := w.SetPaths(after); err != nil {
			s.log.Warn("watching the configuration's files", zap.Error(err))
			return
		}
		if !addsPaths(before, after) {
			return
		}
		changed = false
	}
}

// addsPaths reports whether after holds a path before does not.
func addsPaths(before, after []string) bool {
	had := make(map[string]bool, len(before))
	for _, p := range before {
		had[p] = true
	}
	for _, p := range after {
		if !had[p] {
			return true
		}
	}
	return false
}
