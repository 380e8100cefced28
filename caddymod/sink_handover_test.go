package caddymod

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
)

// fileSinkModule is a provisioned file sink module (resolved as Provision
// leaves it) writing to path, rotated at maxSize.
func fileSinkModule(path string, maxSize fusion.ByteSize) *Sink {
	c := fusion.SinkConfig{Type: fusion.SinkFile, Path: path, MaxSize: maxSize}
	return &Sink{SinkConfig: c, resolved: c}
}

// TestSinkHandoverWaitsForStart: a config that provisions a sink with new
// settings for a running sink's resource, and is then refused (its
// pipeline torn down without Start), leaves the running sink as it was;
// one that starts hands it over.
func TestSinkHandoverWaitsForStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	running, err := newPipelineEntry([]EventSink{fileSinkModule(path, 1<<20)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = running.Destruct() })
	entry := running.sinks[0].entry
	_, original := fileSinkModule(path, 1<<20).SinkKey()
	settings := func() string {
		entry.mu.RLock()
		defer entry.mu.RUnlock()
		return entry.settings
	}

	// Refused: provisioned, never started, cleaned up.
	refused, err := newPipelineEntry([]EventSink{fileSinkModule(path, 2<<20)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got := settings(); got != original {
		t.Fatalf("provisioning alone changed the running sink's settings to %s", got)
	}
	if err := refused.Destruct(); err != nil {
		t.Fatal(err)
	}
	if got := settings(); got != original {
		t.Fatalf("a refused config left the running sink with its settings %s", got)
	}

	// Accepted: Start commits the handover.
	accepted, err := newPipelineEntry([]EventSink{fileSinkModule(path, 3<<20)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = accepted.Destruct() })
	if err := accepted.commit(); err != nil {
		t.Fatal(err)
	}
	_, want := fileSinkModule(path, 3<<20).SinkKey()
	if got := settings(); got != want {
		t.Fatalf("after Start the running sink has %s, want %s", got, want)
	}
	if n := poolLen(sinkPool); n != 1 {
		t.Fatalf("%d running sinks for one file, want 1", n)
	}
}
