//go:build unix

package filewatch

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestOpenRegularRefusesAFIFOWithoutBlocking: a FIFO with no writer would
// block a plain open for good; OpenRegular returns at once with an error,
// and read gives the empty Sum.
func TestOpenRegularRefusesAFIFOWithoutBlocking(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fusion-sets.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, _, err := OpenRegular(fifo)
		if f != nil {
			f.Close()
		}
		_ = read(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("OpenRegular opened a FIFO")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OpenRegular blocked on a FIFO")
	}
	regular := filepath.Join(t.TempDir(), "ok.yaml")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, fi, err := OpenRegular(regular)
	if err != nil || fi.Size() != 1 {
		t.Fatalf("regular file: %v", err)
	}
	f.Close()
}
