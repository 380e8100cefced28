package filewatch

import (
	"os"
	"syscall"
)

// statKey is what the poll compares before hashing a file again.
type statKey struct {
	size, mtime, ctime int64
	ino, dev           uint64
}

// statOf is the metadata of the file path names (symlinks followed); ok is
// false when it cannot say, and the poll then hashes.
func statOf(path string) (statKey, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return statKey{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return statKey{}, false
	}
	return statKey{
		size:  fi.Size(),
		mtime: fi.ModTime().UnixNano(),
		ctime: st.Ctim.Nano(),
		ino:   st.Ino,
		dev:   uint64(st.Dev),
	}, true
}
