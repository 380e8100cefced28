package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// cli runs mcc in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// wantOneLineError checks a failing run: the exit code, and exactly one
// stderr line containing want.
func wantOneLineError(t *testing.T, code int, stderr string, wantCode int, want string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit code %d, want %d (stderr %q)", code, wantCode, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not exactly one line: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
}

func TestPKICommandsHaveHelp(t *testing.T) {
	for _, args := range [][]string{
		{"ca", "--help"},
		{"ca", "init", "--help"},
		{"ca", "audit", "verify", "--help"},
		{"ca", "crl", "--help"},
		{"issue", "--help"},
		{"revoke", "--help"},
		{"certify", "--help"},
		{"certify", "verify", "--help"},
		{"version", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, args...)
			if code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			help := stdout + stderr
			if !strings.Contains(help, "Usage: mcc "+args[0]) {
				t.Errorf("no usage line:\n%s", help)
			}
			if len(args) > 2 || args[0] == "issue" || args[0] == "revoke" {
				if !strings.Contains(help, "-") || !strings.Contains(help, "Flags:") {
					t.Errorf("no flags listed:\n%s", help)
				}
			}
		})
	}
	code, _, stderr := runCLI(t, "ca")
	if code != 2 || !strings.Contains(stderr, "init") {
		t.Errorf("bare 'mcc ca': exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "ca", "destroy")
	wantOneLineError(t, code, stderr, 2, `unknown subcommand "destroy"`)
	code, _, stderr = runCLI(t, "certify", "sign")
	wantOneLineError(t, code, stderr, 2, `unknown subcommand "sign"`)
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "mcc ") || !strings.Contains(stdout, "go1.") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	code, _, stderr := runCLI(t, "version", "extra")
	if code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}
