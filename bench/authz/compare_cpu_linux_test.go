package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// The CPU figure reads /proc/<pid>/stat: a parse that went wrong would
// report zero or nonsense per check, so check it moves with real work.
func TestProcessCPUCountsWork(t *testing.T) {
	before, ok := processCPU(os.Getpid())
	if !ok {
		t.Fatal("processCPU found no figure for this process")
	}
	// Spin until the figure moves by 50ms (never: the parse is wrong), then
	// check it did not move by more than the CPU time that can have passed
	// (too much: wrong fields or unit).
	start := time.Now()
	var after time.Duration
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			if after, ok = processCPU(os.Getpid()); !ok {
				t.Fatal("processCPU found no figure for this process")
			}
			if after-before >= 50*time.Millisecond {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("30s of spinning moved the CPU figure from %s to %s", before, after)
			}
		}
	}
	if limit := time.Since(start)*time.Duration(runtime.NumCPU()) + 2*clockTick; after-before > limit {
		t.Errorf("the CPU figure moved by %s in %s of wall time on %d CPUs", after-before, time.Since(start), runtime.NumCPU())
	}
	if _, ok := processCPU(-1); ok {
		t.Error("processCPU reported a figure for pid -1")
	}
}
