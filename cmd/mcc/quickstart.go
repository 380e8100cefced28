package main

import (
	"context"
	"io"

	"github.com/mccgate/mcc/quickstart"
)

// runQuickstart starts a protected Caddy gateway on localhost with a demo
// PKI and prints the curl lines to try it; Ctrl-C stops it.
func runQuickstart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("quickstart", "quickstart [--dir DIR] [--listen ADDR] [--mode defense|detection]", stderr)
	dir := fs.String("dir", quickstart.DefaultDir, "directory for the demo PKI, the generated Caddyfile and fusion set, and the events file (kept between runs)")
	listen := fs.String("listen", quickstart.DefaultListen, "host:port the gateway listens on")
	mode := fs.String("mode", quickstart.DefaultMode, "fusion set mode: defense (block) or detection (report and pass on)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return quickstart.Run(ctx, quickstart.Options{
		Dir:    *dir,
		Listen: *listen,
		Mode:   *mode,
		Out:    stdout,
	})
}
