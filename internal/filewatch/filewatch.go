// Package filewatch reports when the content of a set of files changes. It is
// the one file watcher of mcc: Caddy's app, mcc authz and mcc xds all reload
// through it, so they share one debounce rule and one notion of "changed".
//
// Files are watched through their parent directories (fsnotify), not the
// files themselves: an editor's or Kubernetes' atomic replace (write a temp
// file, rename it over the old one; or swap a ConfigMap's "..data" symlink)
// removes the inode a file watch would hold. An event only says "look again":
// whether a file changed is decided by a SHA-256 of its content, so a rewrite
// that keeps size and mtime is seen, and an event that changes nothing (a
// touch, a rewrite with the same bytes) is not reported. A safety poll
// re-hashes every file now and then; when fsnotify cannot be used (for
// example the inotify watch limit is reached) the poll is the only mechanism.
package filewatch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultQuiet    = 20 * time.Millisecond
	DefaultMaxDelay = 200 * time.Millisecond
	DefaultPoll     = time.Second
)

// MaxHashBytes bounds how much of a file is read to hash it: the largest
// input mcc accepts (a revocation list or CRL). A larger file is compared by
// the hash of its first MaxHashBytes plus its size and mtime, so watching a
// huge file cannot pin a CPU; non-regular files (a FIFO, a device) are never
// read.
const MaxHashBytes = 256 << 20

// Options tunes a Watcher. The zero value is the defaults.
type Options struct {
	// Quiet: events are coalesced until no new event arrived for Quiet (default 20ms),
	// but a change is never held longer than MaxDelay (default 200ms) after its first event.
	Quiet, MaxDelay time.Duration
	// Poll: the safety poll that re-hashes every watched file (default 1s; also the only
	// mechanism when fsnotify cannot be used, e.g. inotify limits reached); 0 = default, <0 = off.
	Poll   time.Duration
	Logger *zap.Logger
}

// Watcher watches a set of files. Create it with New; receive from Changes.
type Watcher struct {
	o   Options
	log *zap.Logger
	fs  *fsnotify.Watcher // nil: poll only

	mu    sync.Mutex
	files map[string]Sum  // watched path (cleaned) -> last reported content
	dirs  map[string]bool // directories added to fs

	// polled is, per path, the file's metadata when the poll last hashed
	// it and found the content it last reported (run's goroutine only).
	polled map[string]statKey

	kick    chan struct{} // an event arrived: (re)start the debounce
	changes chan []string
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Sum is a file's content as the watcher compares it. The zero Sum is a
// missing, unreadable or non-regular file. Sums are comparable with ==.
type Sum struct {
	exists bool
	sum    [sha256.Size]byte
	// Set only for a file larger than MaxHashBytes, whose tail is not hashed.
	size  int64
	mtime time.Time
}

// New starts watching paths (files; their parent directories are what is watched, so atomic
// rename-swaps and Kubernetes ConfigMap ..data symlink swaps are seen). Change detection is by
// content (SHA-256), so a rewrite that keeps size and mtime is seen, and an event that changes
// nothing is not reported.
func New(paths []string, o Options) (*Watcher, error) { return start(paths, o, true) }

// start is New; notify false is the poll-only fallback, forced (for tests).
func start(paths []string, o Options, notify bool) (*Watcher, error) {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.Quiet {
		o.MaxDelay = o.Quiet
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	w := &Watcher{
		o:       o,
		log:     log,
		files:   map[string]Sum{},
		dirs:    map[string]bool{},
		kick:    make(chan struct{}, 1),
		changes: make(chan []string),
		done:    make(chan struct{}),
	}
	fs, err := fsnotify.NewWatcher()
	if !notify && err == nil {
		err = fs.Close()
		fs = nil
		if err == nil {
			err = errors.New("notification disabled")
		}
	}
	if err != nil {
		if o.Poll < 0 {
			return nil, fmt.Errorf("filewatch: fsnotify unavailable and polling is off: %w", err)
		}
		log.Warn("file change notification unavailable; polling only", zap.Duration("interval", o.Poll), zap.Error(err))
	} else {
		w.fs = fs
	}
	if err := w.SetPaths(paths); err != nil {
		w.closeFS()
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	if w.fs != nil {
		w.wg.Add(1)
		go w.events()
	}
	return w, nil
}

// Changes delivers, after the debounce, the set of watched paths whose content changed
// (a removed/unreadable file counts as changed). One receiver.
func (w *Watcher) Changes() <-chan []string { return w.changes }

// SetPaths replaces the watched set (e.g. after a reload found new referenced files);
// the current content of new paths becomes their baseline.
func (w *Watcher) SetPaths(paths []string) error {
	next := make(map[string]Sum, len(paths))
	for _, p := range paths {
		if p == "" {
			return errors.New("filewatch: empty path")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range paths {
		abs := filepath.Clean(p)
		if st, ok := w.files[abs]; ok {
			next[abs] = st
		} else if _, dup := next[abs]; !dup {
			next[abs] = read(abs)
		}
	}
	w.files = next
	w.syncDirsLocked()
	return nil
}

// Close stops the watcher and closes Changes.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		w.mu.Lock()
		err = w.closeFSLocked()
		w.mu.Unlock()
		w.wg.Wait()
		close(w.changes)
	})
	return err
}

func (w *Watcher) closeFS() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.closeFSLocked()
}

func (w *Watcher) closeFSLocked() error {
	if w.fs == nil {
		return nil
	}
	err := w.fs.Close()
	w.fs = nil
	return err
}

// syncDirsLocked watches the directories the files live in: each path's own
// parent, and the parent of what its symlinks resolve to (a ConfigMap's
// current timestamped directory), so an in-place edit of a symlink's target
// is seen too. Directories no file needs any more are dropped.
func (w *Watcher) syncDirsLocked() {
	if w.fs == nil {
		return
	}
	want := map[string]bool{}
	for p := range w.files {
		want[filepath.Dir(p)] = true
		if real, err := filepath.EvalSymlinks(p); err == nil {
			want[filepath.Dir(real)] = true
		}
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.fs.Remove(d) // it may be gone already
			delete(w.dirs, d)
		}
	}
	for d := range want {
		if w.dirs[d] {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			// A missing directory, or the inotify watch limit: the
			// safety poll still covers the files in it.
			w.log.Warn("cannot watch directory; relying on the poll", zap.String("dir", d), zap.Error(err))
			continue
		}
		w.dirs[d] = true
	}
}

// events forwards fsnotify's events as kicks. Any event in a watched
// directory is a reason to look again: the content hash decides.
func (w *Watcher) events() {
	defer w.wg.Done()
	w.mu.Lock()
	fs := w.fs
	w.mu.Unlock()
	if fs == nil {
		return
	}
	for {
		select {
		case _, ok := <-fs.Events:
			if !ok {
				return
			}
		case err, ok := <-fs.Errors:
			if !ok {
				return
			}
			// An overflow loses events: looking again at everything is
			// the remedy, which the kick does.
			w.log.Warn("file change notification error", zap.Error(err))
		}
		select {
		case w.kick <- struct{}{}:
		default: // a kick is already pending
		}
	}
}

// run is the debounce and the poll. Changes found wait in pending until the
// receiver takes them, merged with any found meanwhile, so a slow receiver
// never blocks the watcher and never misses a path.
func (w *Watcher) run() {
	defer w.wg.Done()
	var pollC <-chan time.Time
	if w.o.Poll > 0 {
		t := time.NewTicker(w.o.Poll)
		defer t.Stop()
		pollC = t.C
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var first time.Time // of the burst being coalesced; zero: none
	pending := map[string]bool{}
	debounce := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		wait := w.o.Quiet
		if left := first.Add(w.o.MaxDelay).Sub(now); left < wait {
			wait = left
		}
		quiet.Reset(max(wait, 0))
	}
	for {
		// The send case's value is evaluated on every pass, so the sorted
		// list is built only when there is something to send.
		var out chan []string
		var paths []string
		if len(pending) > 0 {
			out, paths = w.changes, sortedKeys(pending)
		}
		select {
		case <-w.done:
			return
		case <-w.kick:
			debounce()
		case <-quiet.C:
			first = time.Time{}
			w.check(pending)
		case <-pollC:
			// What the poll finds goes through the debounce too, so a
			// file caught mid-write is read again once writes pause.
			if w.differs() {
				debounce()
			}
		case out <- paths:
			pending = map[string]bool{}
		}
	}
}

// differs reports whether a watched file's content differs from the last
// seen, without recording it.
//
// The poll hashes a file again only when its metadata moved since it last
// hashed it (size, mtime, inode, and ctime, which every write moves and
// no one can set back): a 256 MiB revocation list is not read every second
// for nothing. File notifications always hash (check).
func (w *Watcher) differs() bool {
	w.mu.Lock()
	files := make(map[string]Sum, len(w.files))
	for p, st := range w.files {
		files[p] = st
	}
	w.mu.Unlock()
	if w.polled == nil {
		w.polled = make(map[string]statKey, len(files))
	}
	for p := range w.polled {
		if _, ok := files[p]; !ok {
			delete(w.polled, p)
		}
	}
	for p, st := range files {
		k, ok := statOf(p)
		if ok && w.polled[p] == k {
			continue
		}
		// Stat before the read: a write after the stat moves the
		// metadata, so the next poll hashes again.
		if read(p) != st {
			delete(w.polled, p)
			return true
		}
		if ok {
			w.polled[p] = k
		}
	}
	return false
}

// check re-hashes every watched file and adds those whose content differs
// from the last seen to pending. Every file is checked, not only those an
// event named: a symlink swap names the link, not the files behind it, and
// hashing the few files mcc watches is cheap next to a reload.
func (w *Watcher) check(pending map[string]bool) {
	w.mu.Lock()
	paths := make([]string, 0, len(w.files))
	for p := range w.files {
		paths = append(paths, p)
	}
	w.mu.Unlock()
	fresh := make(map[string]Sum, len(paths))
	for _, p := range paths {
		fresh[p] = read(p) // outside the lock: reads may be slow
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for p, st := range fresh {
		old, ok := w.files[p]
		if !ok { // dropped by SetPaths meanwhile
			continue
		}
		if old != st {
			w.files[p] = st
			pending[p] = true
			changed = true
		}
	}
	if changed {
		// A swap may have moved a symlink's target to a new directory.
		w.syncDirsLocked()
	}
}

// SumBytes is the Sum of a file whose whole content is data (a loader that
// read the file records what it parsed, so a change made after the read is
// still seen as a change).
func SumBytes(data []byte) Sum {
	st := Sum{exists: true, sum: sha256.Sum256(data[:min(len(data), MaxHashBytes)])}
	if len(data) > MaxHashBytes {
		// Without the file's mtime this never equals SumFile's: the
		// caller reloads once more, which is safe.
		st.size = int64(len(data))
	}
	return st
}

// SumFile is the Sum of the file at path now.
func SumFile(path string) Sum { return read(path) }

// SumFiles records the content of paths now, to compare against later
// with ChangedSince (a reader stamps its files before or while it reads
// them, so that a write racing the read is seen as a change).
func SumFiles(paths []string) map[string]Sum {
	out := make(map[string]Sum, len(paths))
	for _, p := range paths {
		out[p] = read(p)
	}
	return out
}

// ChangedSince reports whether a file's content differs from its Sum in
// sums: what a watcher started after the files were read must check once,
// since it takes the content at its start as its baseline.
func ChangedSince(sums map[string]Sum) bool {
	for p, s := range sums {
		if read(p) != s {
			return true
		}
	}
	return false
}

// read returns the content Sum of path.
func read(path string) Sum {
	// Only regular files are read (OpenRegular: a FIFO would block).
	f, fi, err := OpenRegular(path)
	if err != nil {
		return Sum{}
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, MaxHashBytes+1))
	if err != nil {
		return Sum{}
	}
	st := Sum{exists: true}
	h.Sum(st.sum[:0])
	if n > MaxHashBytes {
		st.size, st.mtime = fi.Size(), fi.ModTime()
	}
	return st
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
