//go:build unix

package webhook

import (
	"fmt"
	"os"
	"syscall"
)

// checkSpoolDir refuses a spool directory that someone else could write
// in, as sshd's StrictModes does for ~/.ssh: whoever can create files there
// can plant a symlink named like a segment, and the spool would send the
// file it points to (to the receiver, with the sink's credentials) and
// truncate it. Owned by this process's user and writable by no one else is
// what `spool_dir` must be; mcc creates it 0700.
func checkSpoolDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("spool directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("spool directory %s is writable by group or others (mode %04o): make it 0700", dir, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("spool directory %s is owned by uid %d, not by this process's user (uid %d)", dir, st.Uid, os.Geteuid())
	}
	return nil
}
