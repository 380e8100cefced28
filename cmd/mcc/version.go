package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/mccgate/mcc/internal/version"
)

// runVersion prints the module version (from the build info the Go
// toolchain embeds), the VCS revision when known, and the Go version.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

func versionString() string {
	in := version.Get()
	if in.Version == "(unknown)" {
		in.Version = "(devel)"
	}
	s := "mcc " + in.Version
	if rev := in.Revision; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (" + rev
		if in.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
