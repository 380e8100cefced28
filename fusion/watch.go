package fusion

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
)

// ReloadRevocations re-reads every set's revocation lists and CRLs and swaps
// in the new data. When it returns, the new data is in force: cached
// verdicts of the previous generation no longer apply. A set whose files
// cannot be read keeps its previous data, and the error says which.
func (e *Engine) ReloadRevocations() error {
	var errs []error
	for _, ss := range e.state.Load().sets {
		if err := ss.set.reloadRevocations(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reloadRevocations builds the next revocation generation of s.
func (s *Set) reloadRevocations() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.rev.Load()
	var gen uint64 = 1
	if old != nil {
		gen = old.gen + 1
	}
	rs, errs := s.revSrc.load(gen)
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

// Watch polls the served config's files every interval: the fusion set file,
// CA bundles, revocation lists and CRLs. When one changes (size, mtime or
// content), a file-backed config is reloaded in full: a good file is served
// with Update and passed to onReload; a bad one goes to onError and the last
// good config keeps serving. An inline config (no Path) has its revocation
// data reloaded. Watch returns when ctx is done.
func (e *Engine) Watch(ctx context.Context, interval time.Duration, onReload func(*Config), onError func(error)) {
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
	prints := baseline(cfg)
	// CRL freshness is logged as it changes: stale soon, expired, fresh.
	crls := NewCRLMonitor(e.log)
	crls.Check(cfg, e.clock())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if cur := e.Config(); cur != cfg {
			// Someone else called Update: watch the new files from here.
			cfg = cur
			prints = baseline(cfg)
		}
		crls.Check(cfg, e.clock())
		now := fingerprintFiles(cfg.WatchedFiles())
		if now.equal(prints) {
			continue
		}
		if cfg.Path == "" {
			prints = now // report a bad file once, not on every tick
			if err := e.ReloadRevocations(); err != nil {
				onError(err)
				continue
			}
			onReload(cfg)
			continue
		}
		next, err := LoadFile(cfg.Path)
		if err != nil {
			onError(err)
			prints = now // report a bad file once, not on every tick
			continue
		}
		e.Update(next)
		cfg, prints = next, next.loaded
		crls.Check(cfg, e.clock())
		onReload(next)
	}
}

// baseline is the state of cfg's files to compare against: as loaded when
// known, else as they are now.
func baseline(cfg *Config) filePrints {
	if cfg.loaded != nil {
		return cfg.loaded
	}
	return fingerprintFiles(cfg.WatchedFiles())
}

// fileState is what Watch compares: size, mtime and a content hash (an
// editor can rewrite a file within one mtime tick and keep its size).
type fileState struct {
	exists bool
	size   int64
	mtime  time.Time
	sum    [sha256.Size]byte
}

const (
	hashAlwaysBelow = 1 << 20
	hashRecentFor   = time.Minute
)

type filePrints map[string]fileState

func fingerprintFiles(paths []string) filePrints {
	out := make(filePrints, len(paths))
	for _, p := range paths {
		out[p] = fingerprintFile(p)
	}
	return out
}

func fingerprintFile(path string) fileState {
	f, err := os.Open(path)
	if err != nil {
		return fileState{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileState{}
	}
	st := fileState{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	// Hashing catches a rewrite that kept size and mtime (coarse mtime
	// clocks, fast writers). Old, large files (a million-serial list) are
	// not re-hashed on every tick: their size or mtime would have changed.
	if st.size <= hashAlwaysBelow || time.Since(st.mtime) < hashRecentFor {
		h := sha256.New()
		if _, err := io.Copy(h, io.LimitReader(f, maxRevocationFileSize)); err != nil {
			return fileState{}
		}
		h.Sum(st.sum[:0])
	}
	return st
}

func (a filePrints) equal(b filePrints) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || va.exists != vb.exists || va.size != vb.size || !va.mtime.Equal(vb.mtime) || !bytes.Equal(va.sum[:], vb.sum[:]) {
			return false
		}
	}
	return true
}
