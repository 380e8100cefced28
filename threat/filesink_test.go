package threat_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// readLines returns the events in a JSON-lines file, checking each against
// the schema.
func readLines(t *testing.T, path string) []*threat.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*threat.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if err := schematest.ValidateEventJSON(sc.Bytes()); err != nil {
			t.Fatalf("%s line %d: %v", path, len(out)+1, err)
		}
		var e threat.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, &e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestFileSinkWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := threat.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode %v, want 0600", got)
	}
	events := sampleEvents(10)
	ctx := context.Background()
	if err := s.Deliver(ctx, events[:4]); err != nil {
		t.Fatal(err)
	}
	// Each batch is flushed: a reader sees it before Close.
	if got := len(readLines(t, path)); got != 4 {
		t.Errorf("%d lines after the first batch, want 4", got)
	}
	if err := s.Deliver(ctx, events[4:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(ctx, events[:1]); err == nil {
		t.Error("Deliver after Close succeeded")
	}
	got := readLines(t, path)
	if len(got) != len(events) {
		t.Fatalf("%d lines, want %d", len(got), len(events))
	}
	for i := range got {
		if got[i].ID != events[i].ID || got[i].Device["deviceID"] != events[i].Device["deviceID"] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], events[i])
		}
	}

	// Reopening appends, and tightens a file someone loosened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = threat.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(ctx, events[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, path)); got != len(events)+1 {
		t.Errorf("%d lines after reopening, want %d", got, len(events)+1)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode after reopening %v, want 0600", got)
	}
}

func TestFileSinkRotatesAtSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	line, err := sampleEvents(1)[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	perFile := 5
	maxBytes := int64(perFile*(len(line)+1) + 10) // room for 5 lines, not 6
	const keep = 3
	s, err := threat.NewFileSink(path, maxBytes, keep)
	if err != nil {
		t.Fatal(err)
	}
	events := sampleEvents(perFile * 8)
	ctx := context.Background()
	for i := 0; i < len(events); i += 3 { // batches that straddle rotations
		if err := s.Deliver(ctx, events[i:min(i+3, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// 40 events, 5 per file: the current file and 3 old ones hold the last
	// 20, oldest in path.3; older files were removed.
	names, _ := filepath.Glob(path + "*")
	if len(names) != keep+1 {
		t.Errorf("files %v, want %s and %d old ones", names, path, keep)
	}
	var got []*threat.Event
	for i := keep; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over the %d limit", p, st.Size(), maxBytes)
		}
		if m := st.Mode().Perm(); m != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, m)
		}
		lines := readLines(t, p)
		if len(lines) != perFile {
			t.Errorf("%s has %d lines, want %d", p, len(lines), perFile)
		}
		got = append(got, lines...)
	}
	want := events[len(events)-len(got):]
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Fatalf("event %d across the rotated files is %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
	if len(got) != (keep+1)*perFile {
		t.Errorf("kept %d events, want %d", len(got), (keep+1)*perFile)
	}
}

func TestFileSinkRotationKeepZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := threat.NewFileSink(path, 1, 0) // every line rotates
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), sampleEvents(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(path + "*")
	if len(names) != 1 {
		t.Errorf("files %v, want only %s", names, path)
	}
	if got := len(readLines(t, path)); got != 1 {
		t.Errorf("%d lines, want the last event only", got)
	}
}

func TestFileSinkErrors(t *testing.T) {
	if _, err := threat.NewFileSink("", 0, 0); err == nil {
		t.Error("empty path accepted")
	}
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "events.jsonl")
	if _, err := threat.NewFileSink(missing, 0, 0); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing directory: %v", err)
	}
}

// Through the pipeline, every emitted event lands in the file, once.
func TestFileSinkThroughPipeline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s, err := threat.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{s}, QueueSize: n})
	events := sampleEvents(n)
	for _, e := range events {
		p.Emit(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(b, []byte("\n")); got != n {
		t.Fatalf("%d lines, want %d", got, n)
	}
	if st := p.Stats()[0]; st.Delivered != n || st.Sink != "file:"+path {
		t.Errorf("stats %+v", st)
	}
}
