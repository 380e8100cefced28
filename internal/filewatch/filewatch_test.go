package filewatch

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// wait is generous: it bounds a hung test, it asserts no timing.
const wait = 15 * time.Second

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func watch(t *testing.T, paths []string, o Options) *Watcher {
	t.Helper()
	w, err := New(paths, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// next returns the next change set, failing after wait.
func next(t *testing.T, w *Watcher) []string {
	t.Helper()
	select {
	case got, ok := <-w.Changes():
		if !ok {
			t.Fatal("Changes closed")
		}
		return got
	case <-time.After(wait):
		t.Fatal("no change reported")
		return nil
	}
}

func expect(t *testing.T, w *Watcher, want ...string) {
	t.Helper()
	if got := next(t, w); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes = %q, want %q", got, want)
	}
}

// noPoll makes fsnotify the only mechanism, so a test proves it works.
var noPoll = Options{Poll: -1}

func TestWatchInPlaceEdit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sets.yaml")
	write(t, p, "a")
	w := watch(t, []string{p}, noPoll)
	write(t, p, "b")
	expect(t, w, p)
}

func TestWatchAtomicRenameSwap(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sets.yaml")
	write(t, p, "old")
	w := watch(t, []string{p}, noPoll)
	tmp := filepath.Join(dir, ".sets.yaml.tmp")
	write(t, tmp, "new")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	// The replaced inode is gone; the next swap must be seen as well.
	write(t, tmp, "newer")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
}

// configMap lays out a directory the way the kubelet mounts a ConfigMap:
// dir/file -> ..data/file, ..data -> ..<timestamp>, with files inside.
func configMapSwap(t *testing.T, dir, stamp string, files map[string]string) {
	t.Helper()
	ts := filepath.Join(dir, stamp)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		write(t, filepath.Join(ts, name), content)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	configMapSwap(t, dir, "..2026_01_01_00_00_00.1", map[string]string{"sets.yaml": "v1", "ca.pem": "ca"})
	p := filepath.Join(dir, "sets.yaml")
	ca := filepath.Join(dir, "ca.pem")
	w := watch(t, []string{p, ca}, noPoll)
	configMapSwap(t, dir, "..2026_01_01_00_01_00.2", map[string]string{"sets.yaml": "v2", "ca.pem": "ca"})
	// The kubelet then removes the old timestamped directory.
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	// Only the file whose content changed: ca.pem has the same bytes.
	expect(t, w, p)
	configMapSwap(t, dir, "..2026_01_01_00_02_00.3", map[string]string{"sets.yaml": "v2", "ca.pem": "ca2"})
	expect(t, w, ca)
}

func TestWatchSameSizeAndMtimeSeenByContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "revoked.txt")
	write(t, p, "serial-01")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{"notify": noPoll, "poll": {Poll: 20 * time.Millisecond}} {
		t.Run(name, func(t *testing.T) {
			var w *Watcher
			if name == "poll" {
				w = pollOnly(t, []string{p}, o)
				// Let a few polls record the file's metadata, so the
				// rewrite below must get past the poll's metadata
				// shortcut (the change time gives it away).
				time.Sleep(10 * o.Poll)
			} else {
				w = watch(t, []string{p}, o)
			}
			prev, _ := os.ReadFile(p)
			content := "serial-02"
			if string(prev) == content {
				content = "serial-03"
			}
			write(t, p, content)
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			now, _ := os.Stat(p)
			if now.Size() != fi.Size() || !now.ModTime().Equal(fi.ModTime()) {
				t.Fatal("test setup: size or mtime differ")
			}
			expect(t, w, p)
		})
	}
}

// An event whose file keeps its content (a touch, the same bytes rewritten,
// the same bytes swapped in) is not a change. A later real change to another
// file is what arrives first: the no-ops were looked at and dropped.
func TestWatchNoOpEventNotReported(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sets.yaml")
	sentinel := filepath.Join(dir, "sentinel")
	write(t, p, "same")
	write(t, sentinel, "0")
	w := watch(t, []string{p, sentinel}, Options{Poll: 30 * time.Millisecond})
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	write(t, p, "same")
	tmp := filepath.Join(dir, "tmp")
	write(t, tmp, "same")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "unrelated"), "x")
	// Let the debounce and a few polls run over the no-ops before the
	// sentinel; this wait only makes the test stronger, it asserts nothing.
	time.Sleep(200 * time.Millisecond)
	write(t, sentinel, "1")
	expect(t, w, sentinel)
}

func TestWatchBurstCoalesces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sets.yaml")
	other := filepath.Join(dir, "other")
	write(t, p, "0")
	write(t, other, "0")
	// A quiet period long enough that the burst below fits in it even on
	// a loaded machine.
	w := watch(t, []string{p, other}, Options{Quiet: 300 * time.Millisecond, MaxDelay: 10 * time.Second, Poll: -1})
	for i := 1; i <= 30; i++ {
		write(t, p, string(rune('a'+i%26))+"burst")
		write(t, other, string(rune('a'+i%26))+"burst")
	}
	expect(t, w, other, p)
	// Nothing more from the burst: the next report is the next change.
	write(t, other, "after")
	expect(t, w, other)
}

// A writer that never pauses does not hold a change back past MaxDelay.
func TestWatchMaxDelayBoundsDebounce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "busy")
	write(t, p, "start")
	w := watch(t, []string{p}, Options{Quiet: time.Second, MaxDelay: 100 * time.Millisecond, Poll: -1})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.WriteFile(p, []byte{byte(i)}, 0o600)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()
	// The quiet period is never reached while the writer runs, so only
	// MaxDelay can deliver this.
	expect(t, w, p)
}

func TestWatchRemoveAndRecreate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "crl.pem")
	write(t, p, "crl")
	w := watch(t, []string{p}, noPoll)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	write(t, p, "crl")
	expect(t, w, p)
}

// pollOnly starts a watcher as it runs when fsnotify cannot be used.
func pollOnly(t *testing.T, paths []string, o Options) *Watcher {
	t.Helper()
	w, err := start(paths, o, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if w.fs != nil {
		t.Fatal("poll-only watcher uses fsnotify")
	}
	return w
}

func TestWatchPollOnly(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sets.yaml")
	write(t, p, "a")
	w := pollOnly(t, []string{p}, Options{Poll: 20 * time.Millisecond})
	tmp := filepath.Join(dir, "tmp")
	write(t, tmp, "b")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
}

func TestWatchPollOffWithoutNotifyFails(t *testing.T) {
	if _, err := start(nil, Options{Poll: -1}, false); err == nil {
		t.Fatal("a watcher with neither notification nor poll started")
	}
}

// SetPaths takes a new file's current content as its baseline and watches
// its directory; a dropped file is no longer reported.
func TestWatchSetPaths(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	write(t, a, "a")
	write(t, b, "b")
	w := watch(t, []string{a}, noPoll)
	if err := w.SetPaths([]string{b}); err != nil {
		t.Fatal(err)
	}
	write(t, a, "a2")
	write(t, b, "b2")
	expect(t, w, b)
	if err := w.SetPaths([]string{""}); err == nil {
		t.Fatal("empty path accepted")
	}
}

// A change found while nobody receives is kept, merged with later ones.
func TestWatchSlowReceiverMisssesNothing(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "a")
	write(t, b, "b")
	w := watch(t, []string{a, b}, Options{Poll: 20 * time.Millisecond})
	write(t, a, "a2")
	// Wait (by polling the watcher's own state) until a's change is
	// recorded, then change b: both must come in one delivery or two.
	deadline := time.Now().Add(wait)
	for {
		w.mu.Lock()
		st := w.files[a]
		w.mu.Unlock()
		if st == read(a) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("change of a never recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(t, b, "b2")
	seen := map[string]bool{}
	for !seen[a] || !seen[b] {
		for _, p := range next(t, w) {
			seen[p] = true
		}
	}
}

func TestWatchCloseClosesChanges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	write(t, p, "x")
	w, err := New([]string{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, ok := <-w.Changes(); ok {
		t.Fatal("Changes delivered after Close")
	}
	w.Close() // twice is fine
}

// A loader records SumBytes of what it parsed; the watcher's SumFile of the
// same content is equal, of other content or a missing file not.
func TestSumBytesMatchesSumFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	write(t, p, "content")
	if SumBytes([]byte("content")) != SumFile(p) {
		t.Fatal("same content, different sums")
	}
	if SumBytes([]byte("other")) == SumFile(p) {
		t.Fatal("different content, same sum")
	}
	if SumFile(filepath.Join(t.TempDir(), "absent")) != (Sum{}) || SumFile(t.TempDir()) != (Sum{}) {
		t.Fatal("a missing file or a directory has a content sum")
	}
}
