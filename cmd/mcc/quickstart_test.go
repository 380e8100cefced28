package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuickstartHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, "quickstart", "--help")
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	help := stdout + stderr
	for _, want := range []string{"Usage: mcc quickstart", "-dir", "-listen", "-mode", ".mcc-quickstart", "127.0.0.1:8443"} {
		if !strings.Contains(help, want) {
			t.Errorf("quickstart --help does not mention %q:\n%s", want, help)
		}
	}
}

func TestQuickstartRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, "quickstart", "--dir", dir, "--mode", "block")
	wantOneLineError(t, code, stderr, 1, "--mode")

	code, _, stderr = runCLI(t, "quickstart", "--dir", dir, "--listen", "localhost")
	wantOneLineError(t, code, stderr, 1, "--listen")

	code, _, _ = runCLI(t, "quickstart", "extra")
	if code != 2 {
		t.Errorf("an unexpected argument: exit code %d, want 2", code)
	}
}

// TestSelfCommand: the quickstart's printed mcc lines must run however
// mcc was started. doctest runs the printed revoke line of a real
// `go run ./cmd/mcc quickstart`; this checks the pieces.
func TestSelfCommand(t *testing.T) {
	for path, want := range map[string]bool{
		"/tmp/go-build2841352086/b001/exe/mcc":                      true, // go run, temporary
		"/root/.cache/go-build/c1/c15d263e9ba6-d/mcc":               true, // go run, cached (Go 1.24+)
		"/usr/local/bin/mcc":                                        false,
		"/home/me/src/mcc/bin/mcc":                                  false,
		filepath.Join(os.TempDir(), "go-build-not-really", "x/mcc"): true,
	} {
		t.Setenv("GOCACHE", "")
		if got := builtByGoRun(path); got != want {
			t.Errorf("builtByGoRun(%q) = %v, want %v", path, got, want)
		}
	}
	t.Setenv("GOCACHE", "/var/cache/gobuild")
	if !builtByGoRun("/var/cache/gobuild/ab/abcdef-d/mcc") {
		t.Errorf("a binary under $GOCACHE is not recognised as built by go run")
	}

	root, ok := moduleRoot(filepath.Join("..", "..", "quickstart"))
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	if !ok {
		t.Fatalf("moduleRoot from quickstart/ found no %s module", modulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "mcc", "quickstart.go")); err != nil {
		t.Errorf("moduleRoot = %s, which does not hold cmd/mcc: %v", root, err)
	}
	if _, ok := moduleRoot(t.TempDir()); ok {
		t.Errorf("moduleRoot found the module outside it")
	}

	// The test binary is not mcc on PATH. go test builds it in a go-build
	// directory, as go run does, and runs it in cmd/mcc: the printed lines
	// go through go run in the module root, with absolute paths.
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOCACHE", "")
	self, _ := os.Executable()
	wantCmd, wantAbs := shellWord(self), false
	if builtByGoRun(self) {
		wantCmd, wantAbs = "go -C "+shellWord(root)+" run ./cmd/mcc", true
	}
	if cmd, abs := selfCommand(); cmd != wantCmd || abs != wantAbs {
		t.Errorf("selfCommand() = %q, %v; want %q, %v", cmd, abs, wantCmd, wantAbs)
	}
}
