package webhook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func recs(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"n":%d}`+"\n", from+i)
	}
	return out
}

// drain reads and commits everything, returning the records.
func drain(t *testing.T, s *spool) []string {
	t.Helper()
	var got []string
	for {
		rs, pos, err := s.peek(7)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			return got
		}
		for _, r := range rs {
			got = append(got, string(r))
		}
		if err := s.commit(pos); err != nil {
			t.Fatal(err)
		}
	}
}

func wantRecords(t *testing.T, got []string, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, g := range got {
		if want := fmt.Sprintf(`{"n":%d}`, from+i); g != want {
			t.Fatalf("record %d = %s, want %s", i, g, want)
		}
	}
}

// TestSpoolRecoversTornWrite: a crash in the middle of a write leaves a
// partial line; the next open cuts it and keeps every full record.
func TestSpoolRecoversTornWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.append(recs(0, 10)); err != nil {
		t.Fatal(err)
	}
	// Deliver three, then "crash" during the next write.
	rs, pos, err := s.peek(3)
	if err != nil || len(rs) != 3 {
		t.Fatalf("peek = %d records, %v", len(rs), err)
	}
	if err := s.commit(pos); err != nil {
		t.Fatal(err)
	}
	seg := s.path(s.segs[len(s.segs)-1].seq)
	_ = s.close()
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"n":10,"torn`)
	_ = f.Close()

	s, err = openSpool(dir, 1<<20, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if p, _ := s.stats(); p != 7 {
		t.Fatalf("pending after recovery = %d, want 7", p)
	}
	if _, _, err := s.append(recs(10, 2)); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, drain(t, s), 3, 9)
}

// TestSpoolUntrustedCursor: a cursor that is garbage, or does not fall on a
// record boundary, means delivering again from the start, never skipping.
func TestSpoolUntrustedCursor(t *testing.T) {
	for name, cursor := range map[string]string{
		"garbage":      "not a cursor",
		"mid-record":   "1 5\n",
		"past the end": "1 999999\n",
		"future seg":   "99 0\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(dir, 1<<20, 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.append(recs(0, 5)); err != nil {
				t.Fatal(err)
			}
			_ = s.close()
			if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte(cursor), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = openSpool(dir, 1<<20, 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			wantRecords(t, drain(t, s), 0, 5)
		})
	}
}

// TestSpoolDropsWholeOldestSegments: making room drops the oldest records
// and counts exactly what was lost, delivered ones excluded.
func TestSpoolDropsWholeOldestSegments(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1000, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	total, dropped := 0, 0
	for i := range 300 { // 300 records of 8 to 10 bytes: about three spools full
		_, d, err := s.append(recs(i, 1))
		if err != nil {
			t.Fatal(err)
		}
		total++
		dropped += d
		if s.bytes > s.maxBytes {
			t.Fatalf("spool holds %d bytes, limit %d", s.bytes, s.maxBytes)
		}
	}
	pending, _ := s.stats()
	if dropped == 0 || dropped+pending != total {
		t.Fatalf("dropped %d + pending %d != %d appended", dropped, pending, total)
	}
	wantRecords(t, drain(t, s), dropped, pending)

	// A batch bigger than the whole spool keeps its newest records.
	w, d, err := s.append(recs(1000, 200))
	if err != nil {
		t.Fatal(err)
	}
	if w+d != 200 || w == 0 || w*11 > 1000 {
		t.Fatalf("oversized batch: wrote %d, dropped %d", w, d)
	}
	wantRecords(t, drain(t, s), 1200-w, w)
}

// TestSpoolRefusesADirectoryOthersCanWrite: a spool directory writable by
// group or others could hold a planted symlink named like a segment.
func TestSpoolRefusesADirectoryOthersCanWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := openSpool(dir, 1<<20, 1<<16); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("openSpool on a 0777 directory: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := openSpool(dir, 1<<20, 1<<16)
	if err != nil {
		t.Fatalf("openSpool on a 0700 directory: %v", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
