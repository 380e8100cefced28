package filewatch

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// OpenRegular opens path for reading only if it is a regular file. The open
// itself does not block: a FIFO swapped in for a watched file (or named by a
// config) would otherwise block a plain open until a writer came, hanging a
// reload for good. The type is checked on the open file, so a swap between
// a check and the open cannot slip a FIFO or device through.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("not a regular file: %s", path)
	}
	return f, fi, nil
}
