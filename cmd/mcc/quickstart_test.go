package main

import (
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
