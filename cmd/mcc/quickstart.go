package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
	mcc, abs := selfCommand()
	return quickstart.Run(ctx, quickstart.Options{
		Dir:         *dir,
		Listen:      *listen,
		Mode:        *mode,
		Out:         stdout,
		Mcc:         mcc,
		MccAbsPaths: abs,
	})
}

// modulePath is this module's path, to find its root for `go -C`.
const modulePath = "github.com/mccgate/mcc"

// selfCommand returns how a printed line can run this mcc again, as shell
// words, and whether its file arguments must be absolute:
//   - `mcc` when the mcc found on PATH is this very binary;
//   - `go -C <module root> run ./cmd/mcc` when this binary was built by
//     `go run` (it lives in the Go build cache or a go-build temporary
//     directory, and `mcc` is not on PATH); -C runs it in the module root,
//     so the file arguments are made absolute;
//   - else this binary's absolute path.
func selfCommand() (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "mcc", false
	}
	if real, err := filepath.EvalSymlinks(self); err == nil {
		self = real
	}
	if onPath, err := exec.LookPath("mcc"); err == nil {
		if p, err := filepath.Abs(onPath); err == nil {
			if real, err := filepath.EvalSymlinks(p); err == nil && sameFile(real, self) {
				return "mcc", false
			}
		}
	}
	if builtByGoRun(self) {
		if wd, err := os.Getwd(); err == nil {
			if root, ok := moduleRoot(wd); ok {
				return "go -C " + shellWord(root) + " run ./cmd/mcc", true
			}
		}
	}
	return shellWord(self), false
}

func sameFile(a, b string) bool {
	ia, err := os.Stat(a)
	if err != nil {
		return false
	}
	ib, err := os.Stat(b)
	return err == nil && os.SameFile(ia, ib)
}

// builtByGoRun reports whether path is an executable `go run` built: it
// sits in the Go build cache ($GOCACHE, by default a go-build directory)
// or in a go-build* temporary directory.
func builtByGoRun(path string) bool {
	if cache := os.Getenv("GOCACHE"); cache != "" && cache != "off" {
		if rel, err := filepath.Rel(cache, path); err == nil && !strings.HasPrefix(rel, "..") {
			return true
		}
	}
	for _, part := range strings.Split(filepath.ToSlash(filepath.Dir(path)), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}

// moduleRoot walks up from dir to the directory whose go.mod declares this
// module.
func moduleRoot(dir string) (string, bool) {
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" && strings.Trim(fields[1], `"`) == modulePath {
					f.Close()
					return dir, true
				}
			}
			f.Close()
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+@%,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
