package xds

import (
	"os"
	"time"
)

// filePrint is what a poll compares: size, modification time and inode. The
// inode catches files replaced by rename, as Kubernetes does when it swaps
// a mounted ConfigMap or Secret, even when size and time happen to match.
type filePrint struct {
	exists bool
	size   int64
	mtime  time.Time
	inode  uint64
}

func fingerprints(files []string) map[string]filePrint {
	out := make(map[string]filePrint, len(files))
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			out[p] = filePrint{}
			continue
		}
		out[p] = filePrint{exists: true, size: fi.Size(), mtime: fi.ModTime(), inode: inode(fi)}
	}
	return out
}

func samePrints(a, b map[string]filePrint) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		y, ok := b[p]
		if !ok || x.exists != y.exists || x.size != y.size || !x.mtime.Equal(y.mtime) || x.inode != y.inode {
			return false
		}
	}
	return true
}
