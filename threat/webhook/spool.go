package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Spool file names: see doc.go.
const (
	segmentSuffix = ".seg"
	cursorFile    = "cursor"
	// readChunk is how much of a segment one peek reads at first.
	readChunk = 256 << 10
)

var errSpoolClosed = errors.New("spool closed")

// segment is one append-only file of the spool: event JSON, one per line.
type segment struct {
	seq   uint64
	size  int64 // bytes, always ending with a full line
	lines int   // records
}

// position names a run of records read by peek, for commit.
type position struct {
	seq      uint64
	from, to int64
	n        int
}

// spool is a bounded FIFO of records on disk. Records are appended to the
// newest segment and read from the oldest; a cursor file remembers how far
// delivery got, so that a restart resumes there. It is safe for concurrent
// use: one appender and one reader in practice.
type spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	mu      sync.Mutex
	segs    []segment // oldest first; records are appended to the last
	w       *os.File  // append handle of the last segment
	r       *os.File  // read handle of segs[0] (nil until needed)
	rSeq    uint64
	off     int64 // read position in segs[0]
	done    int   // records of segs[0] before off
	bytes   int64 // size of all segments
	pending int   // records not yet delivered
	closed  bool
}

// openSpool opens (or creates) the spool in dir, recovering what an earlier
// run left: segments are trimmed to their last full line (a crash can tear
// the last write) and reading resumes at the cursor. Appends go to a fresh
// segment so that older ones are never written again.
func openSpool(dir string, maxBytes, segBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	if err := checkSpoolDir(dir); err != nil {
		return nil, err
	}
	s := &spool{dir: dir, maxBytes: maxBytes, segBytes: segBytes}
	seqs, err := s.listSegments()
	if err != nil {
		return nil, err
	}
	curSeq, curOff, haveCursor := s.readCursor()
	if haveCursor && (len(seqs) == 0 || curSeq > seqs[len(seqs)-1]) {
		// The cursor always names an existing segment or one before
		// them; one past them all is not ours to trust.
		haveCursor = false
	}
	for _, seq := range seqs {
		if haveCursor && seq < curSeq {
			// Delivered entirely before the last run stopped.
			if err := os.Remove(s.path(seq)); err != nil {
				return nil, fmt.Errorf("removing delivered spool segment: %w", err)
			}
			continue
		}
		size, lines, err := recoverSegment(s.path(seq))
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, segment{seq: seq, size: size, lines: lines})
		s.bytes += size
		s.pending += lines
	}
	if haveCursor && len(s.segs) > 0 && s.segs[0].seq == curSeq && curOff > 0 {
		done, ok, err := linesBefore(s.path(curSeq), curOff, s.segs[0].size)
		if err != nil {
			return nil, err
		}
		// A cursor that does not fall on a record boundary is not ours
		// to trust: deliver the segment again rather than lose any of it.
		if ok {
			s.off, s.done = curOff, done
			s.pending -= done
		}
	}
	next := uint64(1)
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1].seq + 1
	}
	if err := s.startSegment(next); err != nil {
		return nil, err
	}
	return s, nil
}

// append adds records (each a line ending in '\n') and syncs them to disk.
// When the spool lacks room it drops the oldest records, whole segments at a
// time; a batch larger than the whole spool loses its own oldest records.
// It returns how many records it wrote and how many it dropped.
func (s *spool) append(recs [][]byte) (written, dropped int, err error) {
	var size int64
	for _, r := range recs {
		size += int64(len(r))
	}
	for len(recs) > 0 && size > s.maxBytes {
		size -= int64(len(recs[0]))
		recs = recs[1:]
		dropped++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, errSpoolClosed
	}
	if len(recs) == 0 {
		return 0, dropped, nil
	}
	for s.bytes+size > s.maxBytes {
		if len(s.segs) == 1 {
			// Only the segment being appended to is left: start a
			// new one so that this one can go.
			if err := s.rotate(); err != nil {
				return 0, dropped, err
			}
		}
		dropped += s.dropHead()
	}
	if last := s.segs[len(s.segs)-1]; last.size > 0 && last.size+size > s.segBytes {
		if err := s.rotate(); err != nil {
			return 0, dropped, err
		}
	}
	buf := make([]byte, 0, size)
	for _, r := range recs {
		buf = append(buf, r...)
	}
	last := &s.segs[len(s.segs)-1]
	if _, err := s.w.Write(buf); err != nil {
		// Cut a partial write off so that the segment still ends with a
		// full line.
		_ = s.w.Truncate(last.size)
		return 0, dropped, fmt.Errorf("writing spool segment: %w", err)
	}
	last.size += size
	last.lines += len(recs)
	s.bytes += size
	s.pending += len(recs)
	if err := s.w.Sync(); err != nil {
		return len(recs), dropped, fmt.Errorf("syncing spool segment: %w", err)
	}
	return len(recs), dropped, nil
}

// peek returns up to max of the oldest undelivered records, without their
// newlines, and where they lie for commit. It returns none when the spool
// is empty.
func (s *spool) peek(max int) ([][]byte, position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, position{}, errSpoolClosed
	}
	for s.off >= s.segs[0].size {
		if len(s.segs) == 1 {
			return nil, position{}, nil
		}
		s.dropHead() // delivered entirely: nothing is lost
	}
	head := s.segs[0]
	if s.r == nil || s.rSeq != head.seq {
		if s.r != nil {
			_ = s.r.Close()
		}
		f, err := os.Open(s.path(head.seq))
		if err != nil {
			s.r = nil
			return nil, position{}, fmt.Errorf("opening spool segment: %w", err)
		}
		s.r, s.rSeq = f, head.seq
	}
	left := head.size - s.off
	for chunk := min(left, readChunk); ; chunk = min(left, 2*chunk) {
		buf := make([]byte, chunk)
		if _, err := s.r.ReadAt(buf, s.off); err != nil && !errors.Is(err, io.EOF) {
			return nil, position{}, fmt.Errorf("reading spool segment: %w", err)
		}
		var recs [][]byte
		used := 0
		for len(recs) < max {
			i := bytes.IndexByte(buf[used:], '\n')
			if i < 0 {
				break
			}
			recs = append(recs, buf[used:used+i])
			used += i + 1
		}
		if len(recs) > 0 {
			return recs, position{seq: head.seq, from: s.off, to: s.off + int64(used), n: len(recs)}, nil
		}
		if chunk == left {
			// Segments always end with a full line, so this is not
			// reachable unless the file changed under us.
			return nil, position{}, fmt.Errorf("spool segment %s: record without end", s.path(head.seq))
		}
	}
}

// commit marks the records at p delivered and saves the cursor. If the
// spool dropped those records for room meanwhile, there is nothing to do.
func (s *spool) commit(p position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.segs[0].seq != p.seq || s.off != p.from {
		return nil
	}
	s.off = p.to
	s.done += p.n
	s.pending -= p.n
	return s.writeCursor()
}

// stats returns the undelivered records and the bytes on disk.
func (s *spool) stats() (pending int, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending, s.bytes
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// dropHead removes the oldest segment and returns how many undelivered
// records went with it. The caller holds mu and leaves at least one segment.
func (s *spool) dropHead() int {
	head := s.segs[0]
	lost := head.lines - s.done
	if s.r != nil && s.rSeq == head.seq {
		_ = s.r.Close()
		s.r = nil
	}
	// Should the remove fail, the next open delivers the segment again:
	// a duplicate, which receivers drop by event id.
	_ = os.Remove(s.path(head.seq))
	s.segs = s.segs[1:]
	s.bytes -= head.size
	s.pending -= lost
	s.off, s.done = 0, 0
	return lost
}

// rotate starts a new segment for appends. The caller holds mu.
func (s *spool) rotate() error {
	return s.startSegment(s.segs[len(s.segs)-1].seq + 1)
}

func (s *spool) startSegment(seq uint64) error {
	f, err := os.OpenFile(s.path(seq), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating spool segment: %w", err)
	}
	syncDir(s.dir)
	if s.w != nil {
		_ = s.w.Close()
	}
	s.w = f
	s.segs = append(s.segs, segment{seq: seq})
	return nil
}

func (s *spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, segmentSuffix))
}

func (s *spool) listSegments() ([]uint64, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("reading spool directory: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		if seq, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// writeCursor saves the read position as "<segment seq> <offset>\n",
// replacing the file atomically. It is not synced: losing the latest cursor
// to a crash only means delivering a few events twice. The caller holds mu.
func (s *spool) writeCursor() error {
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	data := fmt.Appendf(nil, "%d %d\n", s.segs[0].seq, s.off)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("saving spool cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return fmt.Errorf("saving spool cursor: %w", err)
	}
	return nil
}

// readCursor returns the saved read position, if there is a readable one.
func (s *spool) readCursor() (seq uint64, off int64, ok bool) {
	data, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	if err != nil {
		return 0, 0, false
	}
	seqText, offText, found := strings.Cut(strings.TrimSpace(string(data)), " ")
	if !found {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	off, err2 := strconv.ParseInt(offText, 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return 0, 0, false
	}
	return seq, off, true
}

// recoverSegment trims path after its last newline (a crash may have torn
// the last write) and returns its size and record count.
func recoverSegment(path string) (size int64, lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("opening spool segment: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var pos int64
	for {
		n, err := f.Read(buf)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			size = pos + int64(i) + 1
			lines += bytes.Count(buf[:n], []byte{'\n'})
		}
		pos += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("reading spool segment: %w", err)
		}
	}
	if size < pos {
		if err := os.Truncate(path, size); err != nil {
			return 0, 0, fmt.Errorf("trimming torn spool segment: %w", err)
		}
	}
	return size, lines, nil
}

// linesBefore counts the records in path before off, and reports whether
// off is a record boundary within size.
func linesBefore(path string, off, size int64) (int, bool, error) {
	if off > size {
		return 0, false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("opening spool segment: %w", err)
	}
	defer f.Close()
	data := make([]byte, off)
	if _, err := io.ReadFull(f, data); err != nil {
		return 0, false, fmt.Errorf("reading spool segment: %w", err)
	}
	if data[off-1] != '\n' {
		return 0, false, nil
	}
	return bytes.Count(data, []byte{'\n'}), true, nil
}

// syncDir makes a new file's directory entry durable. Best effort: some
// file systems refuse to sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
